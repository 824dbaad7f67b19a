package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to write from Main's goroutines and read here.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runMain runs Main to completion with args and returns stdout and the exit code.
func runMain(t *testing.T, env map[string]string, args ...string) (string, int) {
	t.Helper()
	var out, errb syncBuffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, getenvFrom(env))
	if code != 0 {
		t.Logf("registrar %v: exit %d\nstderr: %s", args, code, errb.String())
	}
	return out.String(), code
}

// TestEndToEndTour starts the real Main on :0 with a temp data dir, loads a generated
// district through the import command, creates a client, gets a token, and walks the
// README's tour: a teacher's classes, the students of a class, a result posted and
// read back, a teacher's own view, and an intact audit trail.
func TestEndToEndTour(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"REGISTRAR_DATA": filepath.Join(dir, "data"), "REGISTRAR_LOG_LEVEL": "warn"}
	pkg := filepath.Join(dir, "pkg")
	if _, code := runMain(t, env, "generate", "--out", pkg, "--students", "150", "--seed", "7"); code != 0 {
		t.Fatal("generate failed")
	}
	if _, code := runMain(t, env, "import", pkg); code != 0 {
		t.Fatal("import failed")
	}
	out, code := runMain(t, env, "clients", "create", "--name", "tour", "--scope", "roster.readonly gradebook.readonly gradebook.createput", "--json")
	if code != 0 {
		t.Fatal("clients create failed")
	}
	var cred struct{ ClientID, ClientSecret string }
	if err := json.Unmarshal([]byte(strings.ReplaceAll(strings.ReplaceAll(out, "client_id", "ClientID"), "client_secret", "ClientSecret")), &cred); err != nil || cred.ClientID == "" {
		t.Fatalf("clients create --json printed %q", out)
	}

	// Serve on :0 and find the address in the first line it prints.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, strings.NewReader(""), pw, &stderr, getenvFrom(env))
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var base string
	re := regexp.MustCompile(`listening on (http://\S+)`)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("serve printed no address; stderr: %s", stderr.String())
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain the rest of stdout
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d after shutdown, want 0; stderr: %s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of the signal")
		}
	}()

	// 1. A token by client credentials (HTTP Basic).
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cred.ClientID, cred.ClientSecret)
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if status := doJSON(t, req, &tok); status != 200 || tok.AccessToken == "" || tok.ExpiresIn <= 0 {
		t.Fatalf("token: status %d, %+v", status, tok)
	}
	get := func(path string, into any) (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: body is not JSON: %v", path, err)
		}
		return resp.StatusCode, resp.Header
	}
	const R, G = "/ims/oneroster/rostering/v1p2", "/ims/oneroster/gradebook/v1p2"

	// 2. Find a teacher with classes, and list their classes.
	var teachers struct{ Users []struct{ SourcedID string } }
	if status, _ := get(R+"/teachers?limit=5", &teachers); status != 200 || len(teachers.Users) == 0 {
		t.Fatalf("teachers: status %d, %d users", status, len(teachers.Users))
	}
	var teacher, class string
	for _, u := range teachers.Users {
		var classes struct{ Classes []struct{ SourcedID string } }
		if status, _ := get(R+"/teachers/"+u.SourcedID+"/classes", &classes); status != 200 {
			t.Fatalf("classes of teacher: status %d", status)
		}
		if len(classes.Classes) > 0 {
			teacher, class = u.SourcedID, classes.Classes[0].SourcedID
			break
		}
	}
	if class == "" {
		t.Fatal("no teacher of the generated district has a class")
	}

	// 3. The students of the class, with X-Total-Count.
	var students struct {
		Users []struct {
			SourcedID  string
			FamilyName string
		}
	}
	status, hdr := get(R+"/classes/"+class+"/students?sort=familyName", &students)
	if status != 200 || len(students.Users) == 0 {
		t.Fatalf("students of class: status %d, %d", status, len(students.Users))
	}
	if hdr.Get("X-Total-Count") == "" || hdr.Get("X-Total-Count") == "0" {
		t.Errorf("X-Total-Count = %q, want the number of students", hdr.Get("X-Total-Count"))
	}
	student := students.Users[0].SourcedID

	// 4. Post a result on one of the class's line items and read it back.
	var items struct{ LineItems []struct{ SourcedID string } }
	if status, _ := get(G+"/classes/"+class+"/lineItems", &items); status != 200 || len(items.LineItems) == 0 {
		t.Fatalf("line items of class: status %d, %d", status, len(items.LineItems))
	}
	body := `{"result":{"lineItem":{"sourcedId":"` + items.LineItems[0].SourcedID + `","type":"lineItem"},"student":{"sourcedId":"` + student +
		`","type":"user"},"scoreStatus":"fully graded","score":97,"scoreDate":"2026-10-01"}}`
	req, _ = http.NewRequest("PUT", base+G+"/results/tour-result-1", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	var put map[string]map[string]any
	if status := doJSON(t, req, &put); status != 201 {
		t.Fatalf("PUT result: status %d, want 201: %v", status, put)
	}
	var got struct{ Result map[string]any }
	if status, _ := get(G+"/results/tour-result-1", &got); status != 200 || got.Result["score"] != 97.0 {
		t.Fatalf("GET result: status %d, score %v, want 97", status, got.Result["score"])
	}

	// 5. The teacher's own view: a local token, only their students.
	out, code = runMain(t, env, "tokens", "issue", "--user", teacher)
	if code != 0 {
		t.Fatal("tokens issue failed")
	}
	ttok := strings.TrimSpace(out)
	req, _ = http.NewRequest("GET", base+R+"/students?limit=10000", nil)
	req.Header.Set("Authorization", "Bearer "+ttok)
	var mine struct{ Users []struct{ SourcedID string } }
	if status := doJSON(t, req, &mine); status != 200 {
		t.Fatalf("teacher's students: status %d", status)
	}
	var all struct{ Users []struct{ SourcedID string } }
	get(R+"/students?limit=10000", &all)
	if len(mine.Users) == 0 || len(mine.Users) >= len(all.Users) {
		t.Errorf("the teacher sees %d students of %d, want some but not all", len(mine.Users), len(all.Users))
	}

	// 6. The audit trail verifies while the server runs.
	out, code = runMain(t, env, "audit", "verify")
	if code != 0 || !strings.Contains(out, "intact") {
		t.Errorf("audit verify: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "keys", "kek.json")); err != nil {
		t.Errorf("no local KEK in the data dir: %v", err)
	}
}

func doJSON(t *testing.T, req *http.Request, into any) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("%s %s: body is not JSON (%v): %s", req.Method, req.URL.Path, err, b)
	}
	return resp.StatusCode
}
