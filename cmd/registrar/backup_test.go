package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"registrar/internal/testdistrict"
)

// TestBackupWhileServing takes a backup of a data dir while its server answers
// writes, then serves the backup: every write acknowledged before the backup began is
// in it, a document and a sealed field read back as they were stored (the copied keys
// open them), the backup's trail verifies and holds the backup's own event, and
// refusals leave nothing behind.
func TestBackupWhileServing(t *testing.T) {
	t.Parallel()
	dir := keysData(t)
	env := map[string]string{"REGISTRAR_DATA": dir, "REGISTRAR_LOG_LEVEL": "error"}
	out, code := runMain(t, env, "clients", "create", "--name", "backup-test", "--scope", "roster.readonly gradebook.readonly gradebook.createput admin", "--json")
	if code != 0 {
		t.Fatalf("clients create: exit %d", code)
	}
	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &cl); err != nil {
		t.Fatalf("clients create output %q: %v", out, err)
	}
	base, stop := serveOnLoopback(t, env)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	tok := clientToken(t, base, cl.ID, cl.Secret)
	send := func(method, path, ctype string, body []byte) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	const G = "/ims/oneroster/gradebook/v1p2"
	const R = "/ims/oneroster/rostering/v1p2"
	doc := []byte("%PDF-1.4\n% a synthetic transcript for the backup test\n")
	docPath := "/v1/students/" + testdistrict.Minor + "/documents/transcript.pdf"
	if status, b := send("PUT", docPath, "application/pdf", doc); status != 201 {
		t.Fatalf("PUT document: %d %s", status, b)
	}
	status, studentBefore := send("GET", R+"/students/"+testdistrict.Minor, "", nil)
	if status != 200 {
		t.Fatalf("GET student: %d %s", status, studentBefore)
	}

	// Writers: results PUT without pause until told to stop; each records the ids
	// acknowledged (201) before the backup began.
	var (
		began   atomic.Bool
		mu      sync.Mutex
		before  []string
		written atomic.Int64
		wg      sync.WaitGroup
		quit    = make(chan struct{})
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-quit:
					return
				default:
				}
				id := fmt.Sprintf("backup-w%d-%d", w, i)
				started := began.Load()
				body := `{"result":{"lineItem":{"sourcedId":"` + testdistrict.LineItemA + `","type":"lineItem"},"student":{"sourcedId":"` + testdistrict.Student3 +
					`","type":"user"},"scoreStatus":"fully graded","score":` + fmt.Sprint(i%100) + `,"scoreDate":"2026-10-01"}}`
				status, b := send("PUT", G+"/results/"+id, "application/json", []byte(body))
				if status != 201 {
					t.Errorf("PUT result %s: %d %s", id, status, b)
					return
				}
				written.Add(1)
				if !started {
					mu.Lock()
					before = append(before, id)
					mu.Unlock()
				}
			}
		}()
	}
	for written.Load() < 40 {
		if t.Failed() {
			t.FailNow()
		}
	}
	dest := filepath.Join(t.TempDir(), "backup")
	began.Store(true)
	var bout, berr syncBuffer
	code = Main(context.Background(), []string{"backup", "--to", dest, "--json"}, strings.NewReader(""), &bout, &berr, getenvFrom(env))
	atWrite := written.Load()
	close(quit)
	wg.Wait()
	if code != 0 {
		t.Fatalf("backup: exit %d\n%s", code, berr.String())
	}
	var rep backupReport
	if err := json.Unmarshal([]byte(bout.String()), &rep); err != nil {
		t.Fatalf("backup --json printed %q: %v", bout.String(), err)
	}
	if rep.Documents != 1 || rep.Keys == 0 || rep.KeysOpened < rep.Keys || rep.KeysSampled || rep.Events == 0 || rep.Chains != 1 || rep.DatabaseBytes == 0 {
		t.Errorf("backup report %+v: want 1 document, every key opened, a verified chain", rep)
	}
	t.Logf("backup took %.2fs with %d writes acknowledged before it and %d by its end", rep.Seconds, len(before), atWrite)
	for _, f := range []string{"registrar.db", "registrar-index.db", "instance-id", "keys/kek.json", "keys/service.json"} {
		fi, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Errorf("backup lacks %s: %v", f, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("backup's %s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backup folder: %v, want mode 0700", err)
	}
	stop()
	stopped = true
	oldBase := base

	// The backup serves as a data dir of its own.
	benv := map[string]string{"REGISTRAR_DATA": dest, "REGISTRAR_LOG_LEVEL": "error"}
	base, stopB := serveOnLoopback(t, benv)
	defer stopB()
	tok = clientToken(t, base, cl.ID, cl.Secret)
	for _, id := range before {
		if status, b := send("GET", G+"/results/"+id, "", nil); status != 200 {
			t.Errorf("result %s, acknowledged before the backup began: %d %s", id, status, b)
		}
	}
	if status, b := send("GET", docPath, "", nil); status != 200 || !bytes.Equal(b, doc) {
		t.Errorf("document from the backup: %d, %d bytes; want 200 and the %d bytes stored", status, len(b), len(doc))
	}
	studentBefore = bytes.ReplaceAll(studentBefore, []byte(oldBase), []byte(base)) // hrefs name the server
	if status, b := send("GET", R+"/students/"+testdistrict.Minor, "", nil); status != 200 || !bytes.Equal(b, studentBefore) {
		t.Errorf("student from the backup (sealed fields opened with the copied keys): %d\n%s\nwant\n%s", status, b, studentBefore)
	}
	if out, code := runMain(t, benv, "audit", "verify"); code != 0 || !strings.Contains(out, "verified") {
		t.Errorf("audit verify on the backup: exit %d\n%s", code, out)
	}
	if out, code := runMain(t, benv, "audit", "export"); code != 0 || !strings.Contains(out, `"action":"backup"`) {
		t.Errorf("the backup's trail lacks the backup's own event (exit %d)", code)
	}
}

// TestBackupRefusals: each bad request exits 2, says what is wrong, and writes nothing.
func TestBackupRefusals(t *testing.T) {
	t.Parallel()
	dir := keysData(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "something"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no destination", nil, []string{"--data", dir}, "--to"},
		{"a folder that is not empty", nil, []string{"--data", dir, "--to", full}, "not empty"},
		{"inside the data dir", nil, []string{"--data", dir, "--to", filepath.Join(dir, "b")}, "inside the data dir"},
		{"the data dir itself", nil, []string{"--data", dir, "--to", dir}, "inside the data dir"},
		{"no database", nil, []string{"--data", empty, "--to", filepath.Join(t.TempDir(), "b")}, "no registrar database"},
		{"PostgreSQL", map[string]string{"REGISTRAR_DATABASE_URL": "postgres://registrar@127.0.0.1:1/registrar"}, []string{"--data", dir, "--to", filepath.Join(t.TempDir(), "b")}, "PostgreSQL"},
	} {
		var out, errb syncBuffer
		code := Main(context.Background(), append([]string{"backup"}, tc.args...), strings.NewReader(""), &out, &errb, getenvFrom(tc.env))
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, %q; want 2 and %q", tc.name, code, errb.String(), tc.want)
		}
	}
	if ents, _ := os.ReadDir(full); len(ents) != 1 {
		t.Errorf("the refused folder holds %d entries, want its 1", len(ents))
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); err == nil {
		t.Error("a refused backup created its folder inside the data dir")
	}
}

// TestFailedBackupIsRemoved: a copy that does not check (here: keys of another data
// dir put in its place before the check) fails, and the folder is removed.
func TestFailedBackupIsRemoved(t *testing.T) {
	t.Parallel()
	dir, other := keysData(t), keysData(t)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fs, vals := newFlags(e, "test", "")
	cfg, err := parse(e, fs, vals, []string{"--data", dir, "--log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	for _, made := range []bool{true, false} {
		dest := filepath.Join(t.TempDir(), "backup")
		if !made {
			os.Mkdir(dest, 0o755)
		}
		open := func(data string) (*app, error) {
			if data == dest {
				os.RemoveAll(filepath.Join(dest, "keys"))
				if _, err := copyTree(filepath.Join(other, "keys"), filepath.Join(dest, "keys")); err != nil {
					t.Fatal(err)
				}
			}
			c := *cfg
			c.Data = data
			return openApp(context.Background(), e, &c, newLogger(e, "error"))
		}
		_, err := backupInto(context.Background(), cfg, dest, open)
		if err == nil || !strings.Contains(err.Error(), "removed") {
			t.Errorf("backup with another data dir's keys: %v, want a failure that says the copy was removed", err)
		}
		ents, statErr := os.ReadDir(dest)
		switch {
		case made && statErr == nil:
			t.Errorf("the failed backup's folder, made by the backup, is still there with %d entries", len(ents))
		case !made && (statErr != nil || len(ents) > 0):
			t.Errorf("the failed backup's folder, given empty: %v, %d entries; want it kept, empty", statErr, len(ents))
		}
	}
}
