package httpapi_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"registrar/audit"
	"registrar/authn"
	"registrar/authz"
	"registrar/documents"
	"registrar/httpapi"
	"registrar/importer"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
	"registrar/vault"
)

// studentHarness is the harness with the document folder and certificate signer set,
// as main sets them, and its data dir exposed for scans.
type studentHarness struct {
	*harness
	dir   string
	vault *vault.Vault
	docs  *documents.Store
	lw    *lockedWriter
}

// logText is what the server logged so far (read under the writer's lock: the
// committer logs from its own goroutine).
func (h *studentHarness) logText() string {
	if err := h.store.FlushLog(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.lw.mu.Lock()
	defer h.lw.mu.Unlock()
	return h.logs.String()
}

const testMaxDocument = 64 << 10

func newStudentHarness(t testing.TB) *studentHarness {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	lw := &lockedWriter{w: logs}
	log := slog.New(slog.NewJSONHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: filepath.Join(dir, "registrar.db"), Chain: "test", Vault: v, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := testdistrict.Load(ctx, st); err != nil {
		t.Fatalf("load district: %v", err)
	}
	auth, err := authn.New(st, v, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := documents.Open(filepath.Join(dir, "documents"), v, documents.Options{MaxSize: testMaxDocument})
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := authn.JWKS(v)
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC, JWKS: jwks})
	s.SetClock(func() time.Time { return testdistrict.Today })
	s.Students = httpapi.Students{Documents: docs, Signer: v}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &studentHarness{harness: &harness{t: t, store: st, auth: auth, srv: srv, logs: logs, lw: lw}, dir: dir, vault: v, docs: docs, lw: lw}
}

// send makes a request with any body and content type.
func (h *studentHarness) send(method, path, token, contentType string, body []byte) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func docPath(student, name string) string { return "/v1/students/" + student + "/documents/" + name }

const transcript = "%PDF-1.7\n% transcript\n"

func TestDocumentsFollowTheStudent(t *testing.T) {
	t.Parallel()
	h := newStudentHarness(t)
	teacher := h.user(testdistrict.TeacherA) // teaches Minor
	body := []byte(transcript + strings.Repeat("grades ", 5000))
	if r := h.send("PUT", docPath(testdistrict.Minor, "transcript.pdf"), teacher, "application/pdf", body); r.status != http.StatusCreated {
		t.Fatalf("PUT by the student's teacher: %d %s", r.status, r.body)
	}
	if r := h.send("PUT", docPath(testdistrict.Minor, "transcript.pdf"), teacher, "application/pdf", body); r.status != http.StatusOK {
		t.Fatalf("PUT again: %d %s, want 200 (replaced)", r.status, r.body)
	}
	cases := []struct {
		name, method, who string
		client            []string
		student, doc      string
		ct                string
		body              []byte
		want              int
	}{
		{name: "the teacher reads it", method: "GET", who: testdistrict.TeacherA, want: 200},
		{name: "the parent of the minor reads it", method: "GET", who: testdistrict.Guardian, want: 200},
		{name: "the student reads their own", method: "GET", who: testdistrict.Minor, want: 200},
		{name: "the principal of the school reads it", method: "GET", who: testdistrict.PrincipalA, want: 200},
		{name: "a teacher in another school does not see it", method: "GET", who: testdistrict.TeacherB, want: 404},
		{name: "another student's parent does not see it", method: "GET", who: testdistrict.Guardian2, want: 404},
		{name: "another student does not see it", method: "GET", who: testdistrict.Student3, want: 404},
		{name: "a roster client may not read documents", method: "GET", client: []string{authz.RosterReadonly}, want: 403},
		{name: "an admin client reads it", method: "GET", client: []string{authz.AdminScope}, want: 200},
		{name: "the parent may not replace it", method: "PUT", who: testdistrict.Guardian, ct: "application/pdf", body: body, want: 403},
		{name: "the student may not delete it", method: "DELETE", who: testdistrict.Minor, want: 403},
		{name: "an unknown document is not found", method: "GET", who: testdistrict.TeacherA, doc: "other.pdf", want: 404},
		{name: "a teacher is not a student", method: "GET", who: testdistrict.Admin, student: testdistrict.TeacherA, want: 404},
		{name: "a name that climbs out is refused", method: "PUT", who: testdistrict.TeacherA, doc: "..%2F..%2Fkeys%2Fkek.json", ct: "text/plain", body: []byte("x"), want: 400},
		{name: "a hidden name is refused", method: "PUT", who: testdistrict.TeacherA, doc: ".htaccess", ct: "text/plain", body: []byte("x"), want: 400},
		{name: "a type that is not accepted is refused", method: "PUT", who: testdistrict.TeacherA, doc: "page.html", ct: "text/html", body: []byte("<html>"), want: 400},
		{name: "content that is not what it claims is refused", method: "PUT", who: testdistrict.TeacherA, doc: "fake.pdf", ct: "application/pdf", body: []byte("MZ\x90\x00 an executable"), want: 400},
		{name: "a document over the limit is refused", method: "PUT", who: testdistrict.TeacherA, doc: "big.txt", ct: "text/plain", body: bytes.Repeat([]byte("a"), testMaxDocument+1), want: 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := ""
			if c.client != nil {
				tok = h.client(c.client)
			} else {
				tok = h.user(c.who)
			}
			student, doc := testdistrict.Minor, "transcript.pdf"
			if c.student != "" {
				student = c.student
			}
			if c.doc != "" {
				doc = c.doc
			}
			r := h.send(c.method, docPath(student, doc), tok, c.ct, c.body)
			if r.status != c.want {
				t.Fatalf("got %d %s, want %d", r.status, r.body, c.want)
			}
			if c.method == "GET" && c.want == 200 {
				if !bytes.Equal(r.body, body) {
					t.Fatalf("read %d bytes, want the %d stored", len(r.body), len(body))
				}
				if r.header.Get("Content-Type") != "application/pdf" || r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Cache-Control") != "no-store" ||
					r.header.Get("Content-Length") != fmt.Sprint(len(body)) {
					t.Fatalf("headers %v", r.header)
				}
				if _, err := http.ParseTime(r.header.Get("Last-Modified")); err != nil {
					t.Fatalf("Last-Modified %q: %v", r.header.Get("Last-Modified"), err)
				}
			}
		})
	}
	t.Run("refused uploads leave nothing behind", func(t *testing.T) {
		n, err := h.docs.Count(testdistrict.Minor)
		if err != nil || n != 1 {
			t.Fatalf("the student has %d documents (%v), want 1", n, err)
		}
		filepath.WalkDir(h.docs.Dir(), func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".tmp") {
				t.Errorf("temporary file left: %s", p)
			}
			return nil
		})
	})
	t.Run("every access is audited with the student", func(t *testing.T) {
		if err := h.store.FlushAuditIndex(context.Background()); err != nil {
			t.Fatal(err)
		}
		for action, want := range map[string]int{"putDocument": 2, "getDocument": 5} {
			// The student index as its readers see it (a disclosing read's students are
			// indexed by its record-of-disclosure entries).
			es, _, err := h.store.AuditEvents(context.Background(), sqlstore.AuditQuery{Student: testdistrict.Minor, Action: action, Limit: 1000})
			n := 0
			for _, e := range es {
				if e.Outcome == audit.OK {
					n++
				}
			}
			if err != nil || n != want {
				t.Errorf("%s: %d successful events for the student (%v), want %d", action, n, err, want)
			}
		}
	})
	t.Run("the teacher deletes it", func(t *testing.T) {
		if r := h.send("DELETE", docPath(testdistrict.Minor, "transcript.pdf"), teacher, "", nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.status, r.body)
		}
		if r := h.send("GET", docPath(testdistrict.Minor, "transcript.pdf"), teacher, "", nil); r.status != http.StatusNotFound {
			t.Fatalf("GET after DELETE: %d", r.status)
		}
		if r := h.send("DELETE", docPath(testdistrict.Minor, "transcript.pdf"), teacher, "", nil); r.status != http.StatusNotFound {
			t.Fatalf("DELETE again: %d", r.status)
		}
	})
}

func TestTamperedDocumentIsNeverServed(t *testing.T) {
	t.Parallel()
	h := newStudentHarness(t)
	admin := h.user(testdistrict.Admin)
	for _, s := range []string{testdistrict.Minor, testdistrict.Eligible} {
		if r := h.send("PUT", docPath(s, "letter.txt"), admin, "text/plain", []byte("letter about "+s)); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", s, r.status, r.body)
		}
	}
	// Copy the minor's file over the eligible student's (names on disk are keyed: find
	// them as the only file of each student's folder).
	var files []string
	filepath.WalkDir(h.docs.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 2 {
		t.Fatalf("%d files, want 2", len(files))
	}
	a, _ := os.ReadFile(files[0])
	if err := os.WriteFile(files[1], a, 0o600); err != nil {
		t.Fatal(err)
	}
	var bad, good int
	for _, s := range []string{testdistrict.Minor, testdistrict.Eligible} {
		r := h.send("GET", docPath(s, "letter.txt"), admin, "", nil)
		switch {
		case r.status == 200 && string(r.body) == "letter about "+s:
			good++
		case r.status == 500 && !strings.Contains(string(r.body), "letter"):
			bad++
		default:
			t.Fatalf("GET %s: %d %q: want its own letter or an internal error, never another's", s, r.status, r.body)
		}
	}
	if good != 1 || bad != 1 {
		t.Fatalf("%d served, %d refused; want one of each", good, bad)
	}
	if !strings.Contains(h.logText(), "does not decrypt") {
		t.Fatal("the log does not say why the document was refused")
	}
}

func TestPurgeThroughTheAPI(t *testing.T) {
	t.Parallel()
	h := newStudentHarness(t)
	admin := h.user(testdistrict.Admin)
	if r := h.send("PUT", docPath(testdistrict.Minor, "iep.pdf"), admin, "application/pdf", []byte(transcript)); r.status != http.StatusCreated {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	for name, c := range map[string]struct {
		tok  string
		id   string
		want int
	}{
		"a principal may not delete a student":        {h.user(testdistrict.PrincipalA), testdistrict.Minor, 403},
		"a roster client may not delete a student":    {h.client([]string{authz.RosterReadonly}), testdistrict.Minor, 403},
		"an unknown student is not found":             {admin, "nobody", 404},
		"a teacher is not deleted through this route": {admin, testdistrict.TeacherA, 404},
		"a reason with a NUL byte is refused":         {admin, testdistrict.Minor + "?reason=req%00", 400},
		"a reason that is not UTF-8 is refused":       {admin, testdistrict.Minor + "?reason=req%FF", 400},
	} {
		t.Run(name, func(t *testing.T) {
			if r := h.send("DELETE", "/v1/students/"+c.id, c.tok, "", nil); r.status != c.want {
				t.Fatalf("got %d %s, want %d", r.status, r.body, c.want)
			}
		})
	}
	r := h.send("DELETE", "/v1/students/"+testdistrict.Minor+"?reason=request-2026-17", admin, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("purge: %d %s", r.status, r.body)
	}
	t.Run("the certificate verifies, and not once altered", func(t *testing.T) {
		typ, body, err := h.vault.VerifyJSON(r.body)
		if err != nil || typ != sqlstore.CertificateType {
			t.Fatalf("verify: %q %v", typ, err)
		}
		var c sqlstore.DeletionCertificate
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatal(err)
		}
		if c.Student != testdistrict.Minor || c.DeletedBy.ID != testdistrict.Admin || c.Deleted["documents"] != 1 || c.Reason != "request-2026-17" {
			t.Fatalf("certificate %+v", c)
		}
		if _, _, err := h.vault.VerifyJSON(bytes.Replace(r.body, []byte(testdistrict.Minor), []byte(testdistrict.Student3), 1)); err == nil {
			t.Fatal("a certificate naming another student verified")
		}
	})
	t.Run("no API yields the student any more", func(t *testing.T) {
		for _, p := range []string{
			"/ims/oneroster/rostering/v1p2/students/" + testdistrict.Minor,
			"/ims/oneroster/rostering/v1p2/demographics/" + testdistrict.Minor,
			"/ims/oneroster/gradebook/v1p2/results/" + testdistrict.ResultMinA,
			docPath(testdistrict.Minor, "iep.pdf"),
		} {
			if r := h.send("GET", p, admin, "", nil); r.status != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", p, r.status)
			}
		}
		for _, p := range []string{"/ims/oneroster/rostering/v1p2/users", "/ims/oneroster/rostering/v1p2/enrollments", "/ims/oneroster/gradebook/v1p2/results"} {
			if r := h.send("GET", p, admin, "", nil); r.status != 200 || bytes.Contains(r.body, []byte(testdistrict.Minor)) {
				t.Errorf("GET %s: %d, and the student appears: %v", p, r.status, bytes.Contains(r.body, []byte(testdistrict.Minor)))
			}
		}
		if n, _ := h.docs.Count(testdistrict.Minor); n != 0 {
			t.Errorf("%d document files remain", n)
		}
	})
	t.Run("no export yields the student", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "export")
		if _, err := importer.New(h.store, nil).ExportDir(context.Background(), out, importer.ExportOptions{Mode: "delta"}); err != nil {
			t.Fatal(err)
		}
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(testdistrict.Minor)) {
				t.Errorf("%s names the purged student", filepath.Base(p))
			}
			return nil
		})
	})
	t.Run("a second purge finds nothing", func(t *testing.T) {
		if r := h.send("DELETE", "/v1/students/"+testdistrict.Minor, admin, "", nil); r.status != http.StatusNotFound {
			t.Fatalf("got %d, want 404", r.status)
		}
	})
}

// rawDB opens the database file directly, as someone holding a copy of it would.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sqlstore.OpenSQLite(path, "_pragma=busy_timeout(10000)&_pragma=query_only(ON)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
