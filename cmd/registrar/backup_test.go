package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"registrar/internal/testdistrict"
	"registrar/vault"
)

// TestBackupWhileServing takes a backup of a data dir while its server answers
// writes, with the key-encryption key copied apart (--kek-to), then serves the backup
// with that key put back, as a restore on another machine would: every write
// acknowledged before the backup began is in it, a document and a sealed field read
// back as they were stored, and the backup's trail verifies and holds the backup's
// own event. The backup folder itself holds no key-encryption key.
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
				body := `{"result":{"lineItem":{"sourcedId":"` + testdistrict.LineItemA + `","type":"lineItem"},"student":{"sourcedId":"` + testdistrict.Student3 +
					`","type":"user"},"scoreStatus":"fully graded","score":` + fmt.Sprint(i%100) + `,"scoreDate":"2026-10-01"}}`
				status, b := send("PUT", G+"/results/"+id, "application/json", []byte(body))
				if status != 201 {
					t.Errorf("PUT result %s: %d %s", id, status, b)
					return
				}
				written.Add(1)
				if !began.Load() { // acknowledged before the backup began
					mu.Lock()
					before = append(before, id)
					mu.Unlock()
				}
			}
		}()
	}
	for written.Load() < 40 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	dest := filepath.Join(t.TempDir(), "backup")
	kekCopy := filepath.Join(t.TempDir(), "kek-copy.json")
	began.Store(true)
	var bout, berr syncBuffer
	code = Main(context.Background(), []string{"backup", "--to", dest, "--kek-to", kekCopy, "--json"}, strings.NewReader(""), &bout, &berr, getenvFrom(env))
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
	if rep.Documents != 1 || rep.People == 0 || rep.DocumentKeys != 1 || rep.KeysOpened != rep.People+rep.DocumentKeys || rep.KeysSampled ||
		len(rep.KEKVersions) != 1 || rep.Events == 0 || rep.Chains != 1 || rep.DatabaseBytes == 0 || rep.Dir != resolved(t, dest) || rep.KEKFile != resolved(t, kekCopy) {
		t.Errorf("backup report %+v: want 1 document, every key opened under one KEK version, a verified chain", rep)
	}
	t.Logf("backup took %.2fs with %d writes acknowledged before it and %d by its end", rep.Seconds, len(before), atWrite)
	if _, err := os.Stat(filepath.Join(dest, "keys", "kek.json")); err == nil {
		t.Error("the backup holds the key-encryption key")
	}
	for _, f := range []string{"registrar.db", "registrar-index.db", "instance-id", "keys/service.json", "documents", kekCopy} {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dest, f)
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Errorf("backup lacks %s: %v", f, err)
		} else if want := fs.FileMode(0o600); fi.IsDir() && fi.Mode().Perm() != 0o700 || !fi.IsDir() && fi.Mode().Perm() != want {
			t.Errorf("backup's %s has mode %v, want 0600 (files) or 0700 (folders)", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backup folder: %v, want mode 0700", err)
	}
	for _, f := range []string{dest, kekCopy} {
		if partial, _ := filepath.Glob(f + ".partial-*"); len(partial) > 0 {
			t.Errorf("a successful backup left %v", partial)
		}
	}
	stop()
	stopped = true
	oldBase := base

	// Restored elsewhere: the backup, with its key-encryption key put back, serves as
	// a data dir of its own.
	if err := os.Rename(kekCopy, filepath.Join(dest, "keys", "kek.json")); err != nil {
		t.Fatal(err)
	}
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

// resolved is path with its symbolic links resolved, as the backup reports it.
func resolved(t *testing.T, path string) string {
	t.Helper()
	r, err := resolve(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBackupRefusals: each bad request exits 2, says what is wrong, and writes nothing.
func TestBackupRefusals(t *testing.T) {
	t.Parallel()
	dir := keysData(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "something"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty, docs, fresh := t.TempDir(), t.TempDir(), t.TempDir()
	link := filepath.Join(t.TempDir(), "data-link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	b := func(name string) string { return filepath.Join(fresh, name) }
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no destination", nil, []string{"--data", dir, "--without-kek"}, "--to"},
		{"no choice for the KEK", nil, []string{"--data", dir, "--to", b("1")}, "--kek-to FILE"},
		{"both choices for the KEK", nil, []string{"--data", dir, "--to", b("2"), "--without-kek", "--kek-to", b("k2")}, "--kek-to FILE"},
		{"a KEK choice with a KMS key", map[string]string{"REGISTRAR_KEK_URI": "aws-kms://arn:aws:kms:us-east-1:111122223333:key/x"}, []string{"--data", dir, "--to", b("3"), "--without-kek"}, "AWS KMS"},
		{"the KEK inside the backup", nil, []string{"--data", dir, "--to", b("4"), "--kek-to", filepath.Join(b("4"), "kek.json")}, "inside --to"},
		{"a KEK file that exists", nil, []string{"--data", dir, "--to", b("5"), "--kek-to", filepath.Join(full, "something")}, "exists"},
		{"a folder that is not empty", nil, []string{"--data", dir, "--to", full, "--without-kek"}, "not empty"},
		{"inside the data dir", nil, []string{"--data", dir, "--to", filepath.Join(dir, "b"), "--without-kek"}, "overlap"},
		{"inside the data dir, through a link", nil, []string{"--data", link, "--to", filepath.Join(dir, "b"), "--without-kek"}, "overlap"},
		{"through a link into the data dir", nil, []string{"--data", dir, "--to", filepath.Join(link, "b"), "--without-kek"}, "overlap"},
		{"the KEK inside the data dir", nil, []string{"--data", dir, "--to", b("8"), "--kek-to", filepath.Join(dir, "keys", "kek-copy.json")}, "inside the data dir"},
		{"the data dir itself", nil, []string{"--data", dir, "--to", dir, "--without-kek"}, "overlap"},
		{"inside the documents folder", map[string]string{"REGISTRAR_DOCUMENTS_DIR": docs}, []string{"--data", dir, "--to", filepath.Join(docs, "b"), "--without-kek"}, "overlap"},
		{"no database", nil, []string{"--data", empty, "--to", b("6"), "--without-kek"}, "no registrar database"},
		{"PostgreSQL", map[string]string{"REGISTRAR_DATABASE_URL": "postgres://registrar@127.0.0.1:1/registrar"}, []string{"--data", dir, "--to", b("7"), "--without-kek"}, "PostgreSQL"},
	} {
		var out, errb syncBuffer
		code := Main(context.Background(), append([]string{"backup"}, tc.args...), strings.NewReader(""), &out, &errb, getenvFrom(tc.env))
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, %q; want 2 and %q", tc.name, code, errb.String(), tc.want)
		}
	}
	for d, n := range map[string]int{full: 1, fresh: 0, docs: 0, empty: 0} {
		if ents, _ := os.ReadDir(d); len(ents) != n {
			t.Errorf("%s holds %d entries after the refusals, want %d", d, len(ents), n)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); err == nil {
		t.Error("a refused backup created its folder inside the data dir")
	}
}

// TestBackupWithoutKEK: --without-kek writes a backup that opens with the live
// key-encryption key and says which versions it needs.
func TestBackupWithoutKEK(t *testing.T) {
	t.Parallel()
	dir := keysData(t)
	dest := filepath.Join(t.TempDir(), "backup")
	code, out, errs := keysRun(t, "backup", "--data", dir, "--to", dest, "--without-kek", "--log-level", "error")
	if code != 0 || !strings.Contains(out, "holds no key-encryption key") || !strings.Contains(out, "opens with key-encryption key version(s) [") || strings.Contains(out, "version(s) []") {
		t.Fatalf("backup --without-kek: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dest, "keys", "kek.json")); err == nil {
		t.Error("the backup holds the key-encryption key")
	}
	if err := copyFile(filepath.Join(dir, "keys", "kek.json"), filepath.Join(dest, "keys", "kek.json")); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := keysRun(t, "audit", "verify", "--data", dest, "--log-level", "error"); code != 0 {
		t.Errorf("audit verify on the backup with the live KEK: exit %d\n%s%s", code, out, errs)
	}
}

// TestFailedBackupIsRemoved: a copy that does not open with the key-encryption key it
// is checked with (here another data dir's) fails; nothing is left at --to, at
// --kek-to or beside them, a folder given empty stays empty, and the source's trail
// records the failure.
func TestFailedBackupIsRemoved(t *testing.T) {
	t.Parallel()
	dir, other := keysData(t), keysData(t)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fset, vals := newFlags(e, "test", "")
	cfg, err := parse(e, fset, vals, []string{"--data", dir, "--log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	log := newLogger(e, "error")
	for _, given := range []bool{false, true} {
		parent := t.TempDir()
		p := backupPlan{data: dir, docs: filepath.Join(dir, "documents"), dest: filepath.Join(parent, "backup"), kekTo: filepath.Join(parent, "kek.json"),
			source: func() (*app, error) { return openApp(context.Background(), e, cfg, log) },
			copy: func(d, _ string) (*app, error) {
				v, err := vault.Open(vault.Options{Dir: filepath.Join(d, "keys"), KEKFile: filepath.Join(other, "keys", "kek.json")})
				if err != nil {
					return nil, err
				}
				c := *cfg
				c.Data = d
				return openAppWith(context.Background(), &c, log, v)
			}}
		if given {
			os.Mkdir(p.dest, 0o755)
		}
		_, err := p.run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "does not open with its keys") || !strings.Contains(err.Error(), "removed") {
			t.Errorf("backup checked with another data dir's KEK: %v, want a failure to open that says the copy was removed", err)
		}
		ents, _ := os.ReadDir(parent)
		switch {
		case given && (len(ents) != 1 || ents[0].Name() != "backup"):
			t.Errorf("after a failed backup into a folder given empty, %s holds %v; want only that folder", parent, ents)
		case !given && len(ents) != 0:
			t.Errorf("a failed backup left %v in %s", ents, parent)
		}
		if given {
			if in, _ := os.ReadDir(p.dest); len(in) != 0 {
				t.Errorf("the folder given empty holds %d entries after a failed backup", len(in))
			}
		}
	}
	code, out, errs := keysRun(t, "audit", "export", "--data", dir, "--log-level", "error")
	if code != 0 || strings.Count(out, `"action":"backup"`) != 4 || strings.Count(out, `"outcome":"error"`) != 2 {
		t.Errorf("the source's trail after two failed backups (exit %d): want 2 backup events and 2 failures of them\n%s", code, errs)
	}
}

// TestBackupPublishNeverReplaces: a --kek-to that appeared during the run, or a --to
// that filled, fails the publication without touching what is there, and a KEK copy
// made for a folder that could not be renamed is taken back.
func TestBackupPublishNeverReplaces(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	mk := func(name, body string) string {
		path := filepath.Join(parent, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tmp := filepath.Join(parent, "backup.partial-1")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	kekTmp := mk("kek.json.partial-1", "the KEK")
	p := backupPlan{dest: filepath.Join(parent, "backup"), kekTo: mk("kek.json", "someone else's file")}
	if published, err := p.publish(tmp, kekTmp); published || err == nil {
		t.Errorf("publish over a --kek-to that appeared: published %v, %v; want a failure", published, err)
	}
	if b, _ := os.ReadFile(p.kekTo); string(b) != "someone else's file" {
		t.Errorf("the file that appeared at --kek-to now holds %q", b)
	}
	if _, err := os.Stat(p.dest); err == nil {
		t.Error("the backup was put in place although its KEK copy was not")
	}

	os.Remove(p.kekTo)
	if err := os.Mkdir(p.dest, 0o700); err != nil {
		t.Fatal(err)
	}
	mk("backup/something", "x")
	if published, err := p.publish(tmp, kekTmp); published || err == nil {
		t.Errorf("publish onto a --to that filled: published %v, %v; want a failure", published, err)
	}
	if _, err := os.Stat(p.kekTo); err == nil {
		t.Error("the KEK copy made for a backup that was not put in place is still there")
	}
	if ents, _ := os.ReadDir(p.dest); len(ents) != 1 {
		t.Errorf("the folder that filled holds %d entries, want its 1", len(ents))
	}

	os.RemoveAll(p.dest)
	if published, err := p.publish(tmp, kekTmp); !published || err != nil {
		t.Fatalf("publish: %v, %v", published, err)
	}
	if b, _ := os.ReadFile(p.kekTo); string(b) != "the KEK" {
		t.Errorf("--kek-to holds %q", b)
	}
	if _, err := os.Stat(kekTmp); err == nil {
		t.Error("the KEK's temporary copy is still there after publishing")
	}
}
