package httpapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/httpapi"
	"registrar/importer"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
	"registrar/vault"
)

// importHarness is the harness with the import service wired in, as main does.
type importHarness struct {
	*harness
	db string
}

func newImportHarness(t *testing.T) *importHarness {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	lw := &lockedWriter{w: logs}
	log := slog.New(slog.NewJSONHandler(lw, nil))
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: dir + "/registrar.db", Chain: "test", Vault: v, Logger: log})
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
	jwks, _ := authn.JWKS(v)
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC, JWKS: jwks})
	s.SetClock(func() time.Time { return testdistrict.Today })
	svc, err := importer.NewService(ctx, importer.New(st, log), filepath.Join(dir, "imports"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	s.Importer = svc
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &importHarness{&harness{t: t, store: st, auth: auth, srv: srv, logs: logs, lw: lw}, dir + "/registrar.db"}
}

func goldenPackage(name string) string { return filepath.Join("..", "testdata", "csv", name) }

// zipPackage zips a golden package folder.
func zipPackage(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".csv") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := zw.Create(e.Name())
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (h *harness) send(method, path, token, contentType string, body []byte) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// waitForJob polls the job until it is no longer queued or running.
func (h *harness) waitForJob(t *testing.T, token, location string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := h.do("GET", location, token, "")
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", location, r.status, r.body)
		}
		job := r.json(t)
		if s := job["status"]; s != importer.JobQueued && s != importer.JobRunning {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("the import did not finish: %s", r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditCount counts the audit events matching where, read from the database file.
func (h *importHarness) auditCount(t *testing.T, where string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+h.db+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	if err := db.QueryRow("SELECT COUNT(*) FROM audit_events WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportsNeedAnAdministrator(t *testing.T) {
	t.Parallel()
	h := newImportHarness(t)
	body := zipPackage(t, goldenPackage("bulk"))
	for name, tok := range map[string]string{
		"a teacher":                     h.user(testdistrict.TeacherA),
		"a client without admin scope":  h.client([]string{authz.RosterReadonly}),
		"an admin client of one school": h.client([]string{authz.AdminScope}, testdistrict.SchoolA),
	} {
		if r := h.send("POST", "/v1/imports", tok, "application/zip", body); r.status != http.StatusForbidden {
			t.Errorf("%s: POST /v1/imports: got %d, want 403: %s", name, r.status, r.body)
		}
		if r := h.do("GET", "/v1/imports/whatever", tok, ""); r.status != http.StatusForbidden {
			t.Errorf("%s: GET /v1/imports/{id}: got %d, want 403", name, r.status)
		}
	}
}

func TestImportThroughTheAPI(t *testing.T) {
	t.Parallel()
	h := newImportHarness(t)
	admin := h.client([]string{authz.AdminScope, authz.RosterReadonly})

	r := h.send("POST", "/v1/imports", admin, "application/zip", zipPackage(t, goldenPackage("bulk")))
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/imports: got %d, want 202: %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/v1/imports/") {
		t.Fatalf("Location: got %q", loc)
	}
	job := h.waitForJob(t, admin, loc)
	if job["status"] != importer.JobSucceeded {
		t.Fatalf("job: %v", job)
	}
	sum, _ := job["summary"].(map[string]any)
	if sum["rows"] != float64(46) || sum["created"] != float64(31) {
		t.Errorf("summary: got %v", sum)
	}
	if r := h.do("GET", httpapi.RosteringBase+"/classes/cl-alg-1", admin, ""); r.status != http.StatusOK {
		t.Errorf("the imported class is not served: %d %s", r.status, r.body)
	}
	if n := h.auditCount(t, "action = 'import' AND principal LIKE 'client:%' AND body LIKE '%\"outcome\":\"ok\"%'"); n != 1 {
		t.Errorf("got %d import events by the client, want 1", n)
	}

	t.Run("CSV files as multipart parts", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		ents, _ := os.ReadDir(goldenPackage("delta"))
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(goldenPackage("delta"), e.Name()))
			w, _ := mw.CreateFormFile("files", e.Name())
			w.Write(b)
		}
		mw.Close()
		r := h.send("POST", "/v1/imports", admin, mw.FormDataContentType(), buf.Bytes())
		if r.status != http.StatusAccepted {
			t.Fatalf("POST multipart: got %d: %s", r.status, r.body)
		}
		job := h.waitForJob(t, admin, r.header.Get("Location"))
		if job["status"] != importer.JobSucceeded {
			t.Fatalf("job: %v", job)
		}
	})
}

func TestImportOfABadPackageAnswers422WithEveryProblem(t *testing.T) {
	t.Parallel()
	h := newImportHarness(t)
	admin := h.client([]string{authz.AdminScope})
	r := h.send("POST", "/v1/imports", admin, "application/zip", zipPackage(t, goldenPackage("errors/references")))
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("got %d, want 422: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type: got %q", ct)
	}
	var body struct {
		Total  int                `json:"total"`
		Errors []importer.Problem `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Total != 6 || len(body.Errors) != 6 {
		t.Fatalf("got %d problems (total %d), want 6: %s", len(body.Errors), body.Total, r.body)
	}
	if p := body.Errors[1]; p.File != "enrollments.csv" || p.Line != 2 || p.Column != "classSourcedId" {
		t.Errorf("second problem: got %+v", p)
	}
	for _, bad := range []struct{ ct, body string }{
		{"application/json", `{}`},
		{"application/zip", "not a zip"},
	} {
		if r := h.send("POST", "/v1/imports", admin, bad.ct, []byte(bad.body)); r.status/100 != 4 {
			t.Errorf("%s body: got %d, want a 4xx", bad.ct, r.status)
		}
	}
}

func TestExportGivesWhatTheCallerMaySee(t *testing.T) {
	t.Parallel()
	h := newImportHarness(t)
	files := func(r response) map[string]string {
		t.Helper()
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/zip" {
			t.Fatalf("export: got %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		zr, err := zip.NewReader(bytes.NewReader(r.body), int64(len(r.body)))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, f := range zr.File {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			out[f.Name] = string(b)
		}
		return out
	}
	all := files(h.do("GET", "/v1/exports/oneroster.zip", h.client([]string{authz.RosterReadonly, authz.RosterDemographics, authz.GradebookReadonly}), ""))
	if !strings.Contains(all["demographics.csv"], testdistrict.Minor) || !strings.Contains(all["users.csv"], testdistrict.StudentC) {
		t.Error("a district client with the demographics scope did not get every user and demographics")
	}
	teacher := files(h.do("GET", "/v1/exports/oneroster.zip", h.user(testdistrict.TeacherA), ""))
	if _, ok := teacher["demographics.csv"]; ok {
		t.Error("a teacher got demographics")
	}
	if strings.Contains(teacher["users.csv"], testdistrict.StudentB) || !strings.Contains(teacher["users.csv"], testdistrict.Minor) {
		t.Errorf("a teacher's export holds other schools' students, or not their own:\n%s", teacher["users.csv"])
	}
	if n := h.auditCount(t, "action = 'exportOneRoster'"); n != 2 {
		t.Errorf("got %d export events, want 2", n)
	}
	if r := h.do("GET", "/v1/exports/oneroster.zip?mode=full", h.user(testdistrict.TeacherA), ""); r.status != http.StatusBadRequest {
		t.Errorf("mode=full: got %d, want 400", r.status)
	}
}
