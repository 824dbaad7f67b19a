package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"registrar/audit"
	"registrar/internal/testdistrict"
)

// buildBinary builds registrar into a temporary folder.
func auditBuildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "registrar")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// cleanEnv is the environment without registrar's settings, so the test's flags rule.
func auditCleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRAR_") {
			out = append(out, kv)
		}
	}
	return out
}

// startServer runs `registrar serve` on a free loopback port and returns the process
// and its base URL.
func auditStartServer(t *testing.T, bin, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data", dir, "--addr", "127.0.0.1:0", "--log-level", "warn")
	cmd.Env = auditCleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "..", filepath.Base(dir)+"-serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stderr = logf // the JSON log stream: audit events and checkpoints among the rest
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // a test that failed half-way: the server must not outlive it
			_ = cmd.Wait()
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("registrar serve exited before listening")
			}
			if rest, found := strings.CutPrefix(l, "registrar listening on "); found {
				base, _, _ := strings.Cut(rest, " ")
				go func() { // keep draining stdout so the server never blocks on it
					for range lines {
					}
				}()
				return cmd, base
			}
		case <-deadline:
			t.Fatal("registrar serve did not report its address within 20s")
		}
	}
}

func auditToken(t *testing.T, base, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: status %d, %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// TestKillNineLosesNoAuditEventOfAnAnsweredRequest kills the server with SIGKILL in
// the middle of a load of concurrent reads. Every response a client received must
// have its audit event after restart (matched by X-Request-Id), and the trail must
// verify.
func TestKillNineLosesNoAuditEventOfAnAnsweredRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	bin := auditBuildBinary(t)
	dir := t.TempDir()

	create := exec.Command(bin, "clients", "create", "--data", dir, "--name", "Reading Study (synthetic)", "--scope", "roster.readonly gradebook.readonly",
		"--legal-basis", "studies", "--purpose", "crash test", "--json")
	create.Env = auditCleanEnv()
	out, err := create.Output()
	if err != nil {
		t.Fatalf("clients create: %v", err)
	}
	var cred struct{ ClientID, ClientSecret string }
	var raw map[string]string
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("clients create --json: %v: %s", err, out)
	}
	cred.ClientID, cred.ClientSecret = raw["client_id"], raw["client_secret"]

	a := auditOpenData(t, dir)
	if err := testdistrict.Load(context.Background(), a.store); err != nil {
		t.Fatal(err)
	}
	a.close()

	srv, base := auditStartServer(t, bin, dir)
	tok := auditToken(t, base, cred.ClientID, cred.ClientSecret)
	paths := []string{
		"/ims/oneroster/rostering/v1p2/users",
		"/ims/oneroster/rostering/v1p2/students/" + testdistrict.Minor,
		"/ims/oneroster/rostering/v1p2/classes/" + testdistrict.ClassMathA + "/students",
		"/ims/oneroster/gradebook/v1p2/results",
		"/ims/oneroster/rostering/v1p2/enrollments?filter=" + url.QueryEscape("role='student'"),
	}
	var (
		mu       sync.Mutex
		answered []string
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for g := 0; g < 24; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", base+paths[i%len(paths)], nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					continue // the server is gone, or going
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if id := resp.Header.Get("X-Request-Id"); id != "" {
					mu.Lock()
					answered = append(answered, id)
					mu.Unlock()
				}
			}
		}()
	}
	// Let the load run until a few hundred answers are in, then kill -9 mid-flight.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(answered)
		mu.Unlock()
		if n >= 400 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()                     // "signal: killed"
	time.Sleep(100 * time.Millisecond) // requests in flight fail on the closed sockets
	close(stop)
	wg.Wait()
	mu.Lock()
	got := append([]string(nil), answered...)
	mu.Unlock()
	if len(got) < 50 {
		t.Fatalf("only %d answered requests before the kill", len(got))
	}

	// Restart: the server comes back on the same data and appends after the crash.
	srv, base = auditStartServer(t, bin, dir)
	tok = auditToken(t, base, cred.ClientID, cred.ClientSecret)
	req, _ := http.NewRequest("GET", base+paths[1], nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got = append(got, resp.Header.Get("X-Request-Id"))
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Fatalf("graceful stop after restart: %v", err)
	}

	exp := exec.Command(bin, "audit", "export", "--data", dir)
	exp.Env = auditCleanEnv()
	trail, err := exp.Output()
	if err != nil {
		t.Fatalf("audit export: %v", err)
	}
	have := map[string]audit.Entry{}
	sc := bufio.NewScanner(strings.NewReader(string(trail)))
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var e audit.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line: %v", err)
		}
		if e.RequestID != "" {
			have[e.RequestID] = e
		}
	}
	var missing []string
	for _, id := range got {
		if _, ok := have[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d answered requests have no audit event after the kill, e.g. %v", len(missing), len(got), missing[:min(5, len(missing))])
	}

	// The log stream of both runs holds the checkpoints (the restarted server signed one
	// over everything when it stopped): verify against them as kept outside the database.
	logPath := filepath.Join(dir, "..", filepath.Base(dir)+"-serve.log")
	if cps, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(cps), audit.LogCheckpoint) {
		t.Fatalf("no checkpoint in the server's log stream (%v)", err)
	}
	ver := exec.Command(bin, "audit", "verify", "--data", dir, "--checkpoints", logPath)
	ver.Env = auditCleanEnv()
	vout, err := ver.CombinedOutput()
	if err != nil || !strings.Contains(string(vout), "audit trail intact") || strings.Contains(string(vout), " 0 external checkpoints") {
		t.Fatalf("audit verify after the kill: %v\n%s", err, vout)
	}
	t.Logf("%d answered requests before SIGKILL, all audited; %s", len(got)-1, strings.TrimSpace(auditLastLine(string(vout))))
}

func auditLastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
