package httpapi_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"registrar/audit"
	"registrar/authz"
	"registrar/gen"
	"registrar/importer"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
	"registrar/vault"
)

// TestNoPlaintextLeavesTheProcess is the PII canary test (invariant 2). Every
// sensitive value of the test district, and of a generated district imported on top
// of it, contains testdistrict.Canary. After a workload of reads, writes, documents,
// an import, a refused import, an export, error requests and a purge, the canary
// must not appear in the SQLite file or its WAL, the documents folder, the key
// folder, anything the server logged, or any error body.
//
// Responses that carry a student's data to a caller allowed to see it are not
// scanned: delivering the value is their purpose. Neither is the export folder,
// which is outside the data directory and is plaintext by design.
func TestNoPlaintextLeavesTheProcess(t *testing.T) {
	t.Parallel()
	h := newStudentHarness(t)
	ctx := context.Background()
	canary := testdistrict.Canary
	var errorBodies []string
	check := func(what string, r response, want int) {
		t.Helper()
		if r.status != want {
			t.Errorf("%s: status %d, want %d: %s", what, r.status, want, r.body)
		}
		if r.status >= 400 {
			errorBodies = append(errorBodies, string(r.body))
		}
	}

	admin := h.user(testdistrict.Admin)
	teacher := h.user(testdistrict.TeacherA)
	parent := h.user(testdistrict.Guardian)
	vendor := h.client([]string{authz.RosterReadonly, authz.RosterDemographics, authz.GradebookReadonly, authz.GradebookCreatePut})

	// Reads, by people and a client, with blind-index filters on encrypted fields.
	const ro, gb = "/ims/oneroster/rostering/v1p2", "/ims/oneroster/gradebook/v1p2"
	minorEmail := testdistrict.Minor + "." + canary + "@example.org"
	for _, c := range []struct {
		tok, path string
		want      int
	}{
		{admin, ro + "/users?limit=100", 200},
		{admin, ro + "/demographics", 200},
		{admin, gb + "/results", 200},
		{teacher, ro + "/classes/" + testdistrict.ClassMathA + "/students", 200},
		{teacher, gb + "/results/" + testdistrict.ResultMinA, 200},
		{parent, ro + "/students/" + testdistrict.Minor, 200},
		{parent, ro + "/demographics/" + testdistrict.Minor, 200},
		{vendor, ro + "/users?filter=" + url.QueryEscape("email='"+minorEmail+"'"), 200},
		{vendor, ro + "/users?filter=" + url.QueryEscape("identifier!='nothing'") + "&fields=sourcedId,identifier,email", 200},
		{vendor, ro + "/demographics?fields=birthDate,cityOfBirth", 200},
		// Refused reads: the error must not carry what the filter compared with.
		{vendor, ro + "/users?filter=" + url.QueryEscape("email~'"+canary+"'"), 400},
		{vendor, ro + "/demographics?filter=" + url.QueryEscape("cityOfBirth='Springfield "+canary+"'"), 400},
		{vendor, ro + "/users?sort=email", 400},
		{teacher, ro + "/demographics/" + testdistrict.Minor, 403},
		{h.user(testdistrict.TeacherB), gb + "/results/" + testdistrict.ResultMinA, 404},
	} {
		r := h.do("GET", c.path, c.tok, "")
		check("GET "+c.path, r, c.want)
		if c.want == 200 && strings.Contains(c.path, "filter=email") && !bytes.Contains(r.body, []byte(testdistrict.Minor)) {
			t.Errorf("the blind-index filter did not find the student: %s", r.body)
		}
	}

	// Writes: a new result and a replaced one, with sensitive values; then bad ones
	// whose errors must not echo the sensitive input.
	putResult := func(id, student, body string) response {
		return h.do("PUT", gb+"/results/"+id, vendor, `{"result":{"sourcedId":"`+id+`","status":"active","lineItem":{"sourcedId":"`+testdistrict.LineItemA+`"},`+
			`"student":{"sourcedId":"`+student+`"},"scoreDate":"2026-09-10",`+body+`}}`)
	}
	check("PUT a new result", putResult("result-canary-1", testdistrict.Student3, `"scoreStatus":"fully graded","score":88,"comment":"new `+canary+`"`), 201)
	check("PUT a replaced result", putResult(testdistrict.ResultMinA, testdistrict.Minor, `"scoreStatus":"fully graded","score":95,"textScore":"A `+canary+`","comment":"revised `+canary+`"`), 200)
	check("PUT a result with a bad score", putResult("result-canary-2", testdistrict.Student3, `"scoreStatus":"fully graded","score":"high `+canary+`","comment":"bad `+canary+`"`), 400)
	check("PUT a result with a bad status", putResult("result-canary-3", testdistrict.Student3, `"scoreStatus":"`+canary+`","comment":"bad `+canary+`"`), 400)
	check("PUT a result for a student who does not exist", putResult("result-canary-4", "user-nobody", `"scoreStatus":"fully graded","comment":"`+canary+`"`), 400)
	check("PUT a result that is not JSON", h.do("PUT", gb+"/results/result-canary-5", vendor, `{"result":{"comment":"`+canary+`"`), 400)

	// Documents: stored, read, refused, deleted.
	doc := []byte("%PDF-1.7\n% IEP " + canary + "\n" + strings.Repeat("accommodations "+canary+"\n", 500))
	check("PUT a document", h.send("PUT", docPath(testdistrict.Minor, "iep.pdf"), admin, "application/pdf", doc), 201)
	check("PUT a letter", h.send("PUT", docPath(testdistrict.Eligible, "letter.txt"), admin, "text/plain", []byte("letter "+canary)), 201)
	if r := h.send("GET", docPath(testdistrict.Minor, "iep.pdf"), parent, "", nil); r.status != 200 || !bytes.Equal(r.body, doc) {
		t.Errorf("GET the document: %d, %d bytes", r.status, len(r.body))
	}
	check("PUT a document that lies about its type", h.send("PUT", docPath(testdistrict.Minor, "x.pdf"), admin, "application/pdf", []byte(canary)), 400)
	check("GET a document out of reach", h.send("GET", docPath(testdistrict.Minor, "iep.pdf"), h.user(testdistrict.TeacherB), "", nil), 404)
	check("DELETE the letter", h.send("DELETE", docPath(testdistrict.Eligible, "letter.txt"), admin, "", nil), 204)

	// A purge.
	check("DELETE a student", h.send("DELETE", "/v1/students/"+testdistrict.Eligible, admin, "", nil), 200)
	check("GET the purged student", h.do("GET", ro+"/students/"+testdistrict.Eligible, admin, ""), 404)

	// An import of a generated district (a bulk package: it marks the test
	// district's people tobedeleted, so it comes last), a refused one, and an export.
	pkg := filepath.Join(t.TempDir(), "pkg")
	cfg := gen.Defaults(40)
	cfg.Seed, cfg.Canary, cfg.GuardiansPerStudent, cfg.LineItemsPerClass = 7, canary, 1, 2
	if _, err := gen.WriteCSV(ctx, pkg, cfg); err != nil {
		t.Fatal(err)
	}
	unmaskMasterIdentifier(t, pkg, canary)
	im := importer.New(h.store, nil)
	op := audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "canary-test"}
	if sum, err := im.Import(ctx, pkg, importer.Options{Event: op}); err != nil || sum.Created < 100 {
		t.Fatalf("import: %v (%+v)", err, sum)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	copyDir(t, pkg, bad)
	breakColumn(t, filepath.Join(bad, "users.csv"), "email", "not an email "+canary)
	breakColumn(t, filepath.Join(bad, "demographics.csv"), "birthDate", "born "+canary)
	_, err := im.Import(ctx, bad, importer.Options{Event: op})
	var invalid *importer.InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("the broken package imported: %v", err)
	}
	errorBodies = append(errorBodies, "refused import: "+err.Error())
	for _, p := range invalid.Problems {
		errorBodies = append(errorBodies, "refused import problem: "+p.String())
	}
	if _, err := im.ExportDir(ctx, filepath.Join(t.TempDir(), "export"), importer.ExportOptions{}); err != nil {
		t.Fatalf("export: %v", err)
	}
	check("GET an imported student by email", h.do("GET", ro+"/users?filter="+url.QueryEscape("email!='x'")+"&limit=5", vendor, ""), 200)

	// The scan.
	hits, scanned := scanForCanary(t, h.dir, canary)
	for _, hit := range hits {
		t.Errorf("plaintext of a sensitive value on disk: %s", hit)
	}
	for _, want := range []string{"registrar.db", "registrar.db-wal", "keys/kek.json"} {
		if !contains(scanned, want) {
			t.Errorf("%s was not scanned (scanned %v)", want, scanned)
		}
	}
	if n, _ := h.docs.Count(testdistrict.Minor); n != 1 {
		t.Errorf("the documents folder holds %d of the minor's documents, want 1 (scanned encrypted)", n)
	}
	if logs := h.logText(); strings.Contains(logs, canary) {
		i := strings.Index(logs, canary)
		t.Errorf("the server log holds a sensitive value: ...%s...", logs[max(0, i-200):min(len(logs), i+40)])
	} else if !strings.Contains(logs, `"msg":"request"`) {
		t.Error("the log is empty: the test would not see a leak there")
	}
	if len(errorBodies) < 10 {
		t.Errorf("only %d error bodies: the workload lost its refusals", len(errorBodies))
	}
	for _, b := range errorBodies {
		if strings.Contains(b, canary) {
			t.Errorf("an error carries a sensitive value: %s", b)
		}
	}
}

// scanForCanary reads every file under dir and returns where canary appears, and the
// files it read (relative to dir).
func scanForCanary(t *testing.T, dir, canary string) (hits, scanned []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		scanned = append(scanned, rel)
		if i := bytes.Index(b, []byte(canary)); i >= 0 {
			hits = append(hits, fmt.Sprintf("%s: ...%q...", rel, b[max(0, i-60):min(len(b), i+40)]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits, scanned
}

// TestCanaryScanSeesPlaintext shows that the scan would catch a leak: the same
// district stored without encryption (the benchmarks' no-op cipher) is found.
func TestCanaryScanSeesPlaintext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys"), NoopCipherForBenchmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: filepath.Join(dir, "registrar.db"), Chain: "t", Vault: v, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := testdistrict.Load(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	if hits, _ := scanForCanary(t, dir, testdistrict.Canary); len(hits) == 0 {
		t.Fatal("the scan found nothing in a database stored in plaintext")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// unmaskMasterIdentifier removes the canary that gen puts into userMasterIdentifier:
// the schema stores that field in plaintext (it is not among the fields issue 5
// encrypts), so it is not a sensitive value here. See docs/encryption.md.
func unmaskMasterIdentifier(t *testing.T, dir, canary string) {
	t.Helper()
	rewriteColumn(t, filepath.Join(dir, "users.csv"), "userMasterIdentifier", func(v string) string { return strings.ReplaceAll(v, canary, "M") })
}

// breakColumn sets every value of column in a CSV file to v.
func breakColumn(t *testing.T, path, column, v string) {
	t.Helper()
	rewriteColumn(t, path, column, func(string) string { return v })
}

func rewriteColumn(t *testing.T, path, column string, f func(string) string) {
	t.Helper()
	in, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(in)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, name := range rows[0] {
		if name == column {
			col = i
		}
	}
	if col < 0 {
		t.Fatalf("%s has no column %s", path, column)
	}
	for _, r := range rows[1:] {
		r[col] = f(r[col])
	}
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
