package gen

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"registrar/oneroster/csvspec"
)

// pkg is a generated package read back into memory (test sizes only).
type pkg struct {
	manifest csvspec.Manifest
	files    map[string]*table // by File.Name
}

type table struct {
	file csvspec.File
	rows [][]string
	byID map[string][]string // sourcedId -> row
}

func (t *table) get(row []string, col string) string { return row[t.file.Index(col)] }

func readPackage(t *testing.T, dir string) *pkg {
	t.Helper()
	mf, err := os.Open(filepath.Join(dir, csvspec.ManifestFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	m, err := csvspec.ReadManifest(mf)
	if err != nil {
		t.Fatal(err)
	}
	p := &pkg{manifest: m, files: map[string]*table{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == csvspec.ManifestFileName {
			continue
		}
		f, ok := csvspec.Lookup(e.Name())
		if !ok {
			t.Errorf("unexpected file %s in package", e.Name())
			continue
		}
		if m.Mode(f.Name) != csvspec.ModeBulk {
			t.Errorf("%s present but manifest says %s", f.FileName, m.Mode(f.Name))
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", f.FileName, err)
		}
		if !bytes.HasSuffix(data, []byte("\r\n")) {
			t.Errorf("%s does not end in CRLF", f.FileName)
		}
		if !slices.Equal(recs[0], f.Header()) {
			t.Errorf("%s header\n got %v\nwant %v", f.FileName, recs[0], f.Header())
		}
		tb := &table{file: f, rows: recs[1:], byID: map[string][]string{}}
		for _, r := range tb.rows {
			if _, dup := tb.byID[r[0]]; dup {
				t.Errorf("%s: duplicate sourcedId %s", f.FileName, r[0])
			}
			tb.byID[r[0]] = r
		}
		p.files[f.Name] = tb
	}
	for _, f := range csvspec.Files {
		if m.Mode(f.Name) == csvspec.ModeBulk && p.files[f.Name] == nil {
			t.Errorf("manifest declares %s but the file is missing", f.FileName)
		}
	}
	return p
}

// checkPackage validates every field against csvspec and resolves every
// sourcedId reference inside the package.
func checkPackage(t *testing.T, p *pkg) {
	t.Helper()
	for _, f := range csvspec.Files {
		tb := p.files[f.Name]
		if tb == nil {
			continue
		}
		if len(tb.rows) == 0 {
			t.Errorf("%s has no data rows", f.FileName)
		}
		errs := 0
		for ri, row := range tb.rows {
			if err := csvspec.CheckLifecycle(csvspec.ModeBulk, row[1], row[2]); err != nil && errs < 5 {
				t.Errorf("%s row %d: %v", f.FileName, ri+1, err)
				errs++
			}
			for ci, col := range f.Columns {
				v := row[ci]
				if err := col.Validate(v); err != nil && errs < 5 {
					t.Errorf("%s row %d: %v", f.FileName, ri+1, err)
					errs++
				}
				if col.Ref == "" || v == "" {
					continue
				}
				target := p.files[col.Ref]
				if target == nil {
					t.Fatalf("%s.%s references %s, which is not in the package", f.Name, col.Name, col.Ref)
				}
				for _, ref := range csvspec.SplitList(v) {
					if _, ok := target.byID[ref]; !ok && errs < 5 {
						t.Errorf("%s row %d: %s %s not found in %s", f.FileName, ri+1, col.Name, ref, target.file.FileName)
						errs++
					}
				}
			}
		}
	}
}

func testConfig(students int, seed uint64) Config {
	c := Defaults(students)
	c.Seed = seed
	return c
}

func TestPackageIsValidAndConsistent(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"three-schools", testConfig(1500, 42)},
		{"one-school", Config{Seed: 3, Students: 120, GuardiansPerStudent: 1, LineItemsPerClass: 4, Results: true}},
		{"two-schools", Config{Seed: 9, Schools: 2, Students: 90, TeachersPerSchool: 3, ClassesPerTeacher: 2, StudentsPerClass: 12, GuardiansPerStudent: 2, LineItemsPerClass: 3, Results: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sum, err := WriteCSV(context.Background(), dir, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := readPackage(t, dir)
			checkPackage(t, p)
			cfg, _ := tc.cfg.normalize()
			checkCounts(t, cfg, p, sum)
			checkPeople(t, cfg, p)
			checkSummary(t, cfg, p, sum)
			checkGradebook(t, p)
		})
	}
}

func checkCounts(t *testing.T, cfg Config, p *pkg, sum Summary) {
	t.Helper()
	for name, tb := range p.files {
		if sum.Counts[name] != len(tb.rows) {
			t.Errorf("Summary.Counts[%s] = %d, file has %d rows", name, sum.Counts[name], len(tb.rows))
		}
	}
	if len(sum.Counts) != len(p.files) {
		t.Errorf("Summary.Counts has %d files, package %d", len(sum.Counts), len(p.files))
	}
	S, N, T, C, K, G, L := cfg.Schools, cfg.Students, cfg.TeachersPerSchool, cfg.ClassesPerTeacher, cfg.StudentsPerClass, cfg.GuardiansPerStudent, cfg.LineItemsPerClass
	classes := S * T * C
	want := map[string]int{
		"orgs":             1 + S,
		"academicSessions": 7,
		"users":            1 + 2*S + S*T + N + N*G,
		"demographics":     N,
		"classes":          classes,
		"scoreScales":      classes,
		"lineItems":        classes * L,
		"categories":       3,
	}
	secondary := S // siteAdministrator for every principal
	if S > 1 {
		secondary += S // one teacher per school also teaches at the next one
	}
	want["roles"] = want["users"] + secondary
	want["lineItemLearningObjectiveIds"] = want["lineItems"]
	want["lineItemScoreScales"] = want["lineItems"]
	for name, n := range want {
		if got := sum.Counts[name]; got != n {
			t.Errorf("%s: %d rows, want %d", name, got, n)
		}
	}
	enr := p.files["enrollments"]
	students, teachers := 0, 0
	for _, r := range enr.rows {
		switch enr.get(r, "role") {
		case "student":
			students++
		case "teacher":
			teachers++
		}
	}
	if teachers != classes {
		t.Errorf("%d teacher enrollments for %d classes", teachers, classes)
	}
	if avg := float64(students) / float64(classes); avg < float64(min(K, N/S))-2.5 || avg > float64(K)+2.5 {
		t.Errorf("average class size %.1f, want about %d", avg, K)
	}
	if cfg.Results && sum.Counts["results"] != students*L {
		t.Errorf("results: %d rows, want %d (student enrollments × line items)", sum.Counts["results"], students*L)
	}
	if n := len(sum.Schools); n != S {
		t.Errorf("Summary.Schools has %d ids", n)
	}
}

// checkPeople verifies agents both ways, roles, ages and fake contact data.
func checkPeople(t *testing.T, cfg Config, p *pkg) {
	t.Helper()
	users, roles, demo := p.files["users"], p.files["roles"], p.files["demographics"]
	primary := map[string]string{}
	for _, r := range roles.rows {
		if roles.get(r, "roleType") == "primary" {
			u := roles.get(r, "userSourcedId")
			if primary[u] != "" {
				t.Errorf("user %s has two primary roles", u)
			}
			primary[u] = roles.get(r, "role")
		}
	}
	minAge, maxAge := 100, 0
	for _, r := range users.rows {
		id := r[0]
		role := primary[id]
		if role == "" {
			t.Fatalf("user %s has no primary role", id)
		}
		email := users.get(r, "email")
		if !strings.HasSuffix(email, ".test") && !strings.HasSuffix(email, "@example.net") {
			t.Errorf("email %q is not on a reserved domain", email)
		}
		if ph := users.get(r, "phone"); ph != "" && !strings.Contains(ph, "-555-01") {
			t.Errorf("phone %q is not in the fictional range", ph)
		}
		agents := csvspec.SplitList(users.get(r, "agentSourcedIds"))
		switch role {
		case "student":
			if len(agents) != cfg.GuardiansPerStudent {
				t.Errorf("student %s has %d agents", id, len(agents))
			}
			for _, a := range agents {
				if ar := users.byID[a]; ar == nil || !slices.Contains(csvspec.SplitList(users.get(ar, "agentSourcedIds")), id) {
					t.Errorf("guardian %s does not point back to student %s", a, id)
				}
				if pr := primary[a]; pr != "parent" && pr != "guardian" {
					t.Errorf("agent %s of student %s has role %q", a, id, pr)
				}
			}
			d := demo.byID[id]
			if d == nil {
				t.Fatalf("student %s has no demographics", id)
			}
			a := ageOf(t, demo.get(d, "birthDate"), cfg.Today)
			minAge, maxAge = min(minAge, a), max(maxAge, a)
		case "parent", "guardian":
			if len(agents) != 1 || primary[agents[0]] != "student" {
				t.Errorf("guardian %s has agents %v", id, agents)
			}
		default:
			if len(agents) != 0 {
				t.Errorf("%s %s has agents", role, id)
			}
		}
	}
	if len(demo.rows) != cfg.Students {
		t.Errorf("%d demographics rows", len(demo.rows))
	}
	if minAge < 4 || maxAge > 19 {
		t.Errorf("student ages span %d..%d, want within 5..19", minAge, maxAge)
	}
}

func ageOf(t *testing.T, birth string, today time.Time) int {
	t.Helper()
	b, err := time.Parse(time.DateOnly, birth)
	if err != nil {
		t.Fatal(err)
	}
	return age(b, today)
}

func checkSummary(t *testing.T, cfg Config, p *pkg, sum Summary) {
	t.Helper()
	orgs, users, roles, enr, demo := p.files["orgs"], p.files["users"], p.files["roles"], p.files["enrollments"], p.files["demographics"]
	if r := orgs.byID[sum.District]; r == nil || orgs.get(r, "type") != "district" {
		t.Errorf("District %s is not a district org", sum.District)
	}
	for _, s := range sum.Schools {
		if r := orgs.byID[s]; r == nil || orgs.get(r, "type") != "school" || orgs.get(r, "parentSourcedId") != sum.District {
			t.Errorf("school %s is not a school of the district", s)
		}
	}
	hasRole := func(user, role, org string) bool {
		for _, r := range roles.rows {
			if roles.get(r, "userSourcedId") == user && roles.get(r, "role") == role && (org == "" || roles.get(r, "orgSourcedId") == org) {
				return true
			}
		}
		return false
	}
	enrolled := func(user, class, role string) bool {
		for _, r := range enr.rows {
			if enr.get(r, "userSourcedId") == user && enr.get(r, "classSourcedId") == class && enr.get(r, "role") == role {
				return true
			}
		}
		return false
	}
	agentsOf := func(id string) []string {
		r := users.byID[id]
		if r == nil {
			t.Fatalf("user %s missing", id)
		}
		return csvspec.SplitList(users.get(r, "agentSourcedIds"))
	}
	ageOfStudent := func(id string) int {
		d := demo.byID[id]
		if d == nil {
			t.Fatalf("no demographics for %s", id)
		}
		return ageOf(t, demo.get(d, "birthDate"), cfg.Today)
	}
	if !hasRole(sum.SampleAdmin, "districtAdministrator", sum.District) {
		t.Error("SampleAdmin is not a district administrator at the district")
	}
	if p.files["classes"].byID[sum.SampleClass] == nil {
		t.Error("SampleClass missing")
	}
	if !hasRole(sum.SampleTeacher, "teacher", "") || !enrolled(sum.SampleTeacher, sum.SampleClass, "teacher") {
		t.Error("SampleTeacher does not teach SampleClass")
	}
	if !enrolled(sum.SampleStudent, sum.SampleClass, "student") || ageOfStudent(sum.SampleStudent) >= 18 {
		t.Error("SampleStudent is not a minor in SampleClass")
	}
	if !slices.Contains(agentsOf(sum.SampleStudent), sum.SampleGuardian) || !slices.Contains(agentsOf(sum.SampleGuardian), sum.SampleStudent) {
		t.Error("SampleGuardian and SampleStudent are not agents of each other")
	}
	if li := p.files["lineItems"].byID[sum.SampleLineItem]; li == nil || p.files["lineItems"].get(li, "classSourcedId") != sum.SampleClass {
		t.Error("SampleLineItem is not a line item of SampleClass")
	}
	if sum.EligibleStudent == "" || ageOfStudent(sum.EligibleStudent) < 18 || len(agentsOf(sum.EligibleStudent)) == 0 {
		t.Errorf("EligibleStudent %q is not an adult with guardians", sum.EligibleStudent)
	}
	if sum.MinorStudent == "" || ageOfStudent(sum.MinorStudent) >= 18 || len(agentsOf(sum.MinorStudent)) == 0 {
		t.Errorf("MinorStudent %q is not a minor with guardians", sum.MinorStudent)
	}
}

func checkGradebook(t *testing.T, p *pkg) {
	t.Helper()
	li, res := p.files["lineItems"], p.files["results"]
	statuses := map[string]int{}
	extra := 0
	for _, r := range res.rows {
		statuses[res.get(r, "scoreStatus")]++
		item := li.byID[res.get(r, "lineItemSourcedId")]
		if res.get(r, "classSourcedId") != li.get(item, "classSourcedId") {
			t.Fatalf("result %s class differs from its line item", r[0])
		}
		if s := res.get(r, "score"); s != "" {
			score, _ := strconv.ParseFloat(s, 64)
			hi, _ := strconv.ParseFloat(li.get(item, "resultValueMax"), 64)
			if score > hi {
				extra++
			}
		}
	}
	if len(statuses) < 4 {
		t.Errorf("score statuses %v, want a mix", statuses)
	}
	if extra == 0 {
		t.Error("no extra-credit score above resultValueMax")
	}
	sessions := p.files["academicSessions"]
	for _, r := range li.rows {
		s := sessions.byID[li.get(r, "academicSessionSourcedId")]
		if sessions.get(s, "type") != "gradingPeriod" {
			t.Fatalf("line item %s is not in a grading period", r[0])
		}
		a, d := li.get(r, "assignDate"), li.get(r, "dueDate")
		if a < sessions.get(s, "startDate") || d > sessions.get(s, "endDate") || d < a {
			t.Fatalf("line item %s dates %s..%s outside %s..%s", r[0], a, d, sessions.get(s, "startDate"), sessions.get(s, "endDate"))
		}
	}
}

func TestDeterminism(t *testing.T) {
	ctx := context.Background()
	zipOf := func(cfg Config) []byte {
		var b bytes.Buffer
		if _, err := WriteZip(ctx, &b, cfg); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	cfg := testConfig(300, 1)
	cfg.Schools = 3
	cfg.LineItemsPerClass = 3
	a, b := zipOf(cfg), zipOf(cfg)
	if !bytes.Equal(a, b) {
		t.Fatal("same seed and config gave different zip bytes")
	}
	cfg2 := cfg
	cfg2.Seed = 2
	if bytes.Equal(a, zipOf(cfg2)) {
		t.Fatal("different seeds gave identical output")
	}

	// Directory output twice, and equal to the zip entries.
	d1, d2 := t.TempDir(), t.TempDir()
	s1, err := WriteCSV(ctx, d1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteCSV(ctx, d2, cfg); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(a), int64(len(a)))
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != len(s1.Counts)+1 {
		t.Errorf("zip has %d entries, want %d", len(zr.File), len(s1.Counts)+1)
	}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		zdata, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		f1, err1 := os.ReadFile(filepath.Join(d1, zf.Name))
		f2, err2 := os.ReadFile(filepath.Join(d2, zf.Name))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Equal(f1, f2) || !bytes.Equal(f1, zdata) {
			t.Errorf("%s differs between runs or between zip and directory", zf.Name)
		}
	}
	if zr.File[0].Name != csvspec.ManifestFileName {
		t.Errorf("first zip entry is %s", zr.File[0].Name)
	}
}

func TestCanary(t *testing.T) {
	const canary = "CANARY7q"
	cfg := Config{Seed: 5, Students: 60, Schools: 3, GuardiansPerStudent: 1, LineItemsPerClass: 2, Results: true, Canary: canary}
	dir := t.TempDir()
	if _, err := WriteCSV(context.Background(), dir, cfg); err != nil {
		t.Fatal(err)
	}
	p := readPackage(t, dir)
	checkPackage(t, p)
	check := func(file string, cols ...string) {
		tb := p.files[file]
		for ri, r := range tb.rows {
			mark := canary + "-" + strconv.Itoa(ri+1)
			for _, c := range cols {
				v := tb.get(r, c)
				if c == "userIds" {
					for _, item := range csvspec.SplitList(v) {
						if !strings.Contains(item, mark) {
							t.Errorf("%s row %d userIds item %q lacks %s", file, ri+1, item, mark)
						}
					}
					if v == "" {
						t.Errorf("%s row %d has no userIds", file, ri+1)
					}
					continue
				}
				if !strings.Contains(v, mark) {
					t.Errorf("%s row %d %s = %q lacks %s", file, ri+1, c, v, mark)
				}
			}
		}
	}
	check("users", "identifier", "email", "sms", "phone", "userIds", "userMasterIdentifier")
	check("demographics", "cityOfBirth")
	check("results", "comment", "textScore")
}

func TestOptionalPartsOff(t *testing.T) {
	dir := t.TempDir()
	sum, err := WriteCSV(context.Background(), dir, Config{Seed: 1, Students: 40})
	if err != nil {
		t.Fatal(err)
	}
	p := readPackage(t, dir)
	checkPackage(t, p)
	for _, n := range []string{"lineItems", "results", "categories", "scoreScales"} {
		if p.manifest.Mode(n) != csvspec.ModeAbsent || sum.Counts[n] != 0 {
			t.Errorf("%s should be absent", n)
		}
	}
	if sum.SampleGuardian != "" || sum.SampleLineItem != "" || sum.EligibleStudent != "" {
		t.Errorf("samples without guardians or line items: %+v", sum)
	}
	if sum.SampleStudent == "" || sum.SampleTeacher == "" {
		t.Error("SampleStudent/SampleTeacher missing")
	}

	dir = t.TempDir()
	cfg := testConfig(100, 1)
	cfg.Results = false
	sum, err = WriteCSV(context.Background(), dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := readPackage(t, dir); p.files["results"] != nil || p.files["lineItems"] == nil || sum.Counts["results"] != 0 {
		t.Error("Results=false should drop results.csv only")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Students: 5, Schools: 6},
		{Students: 5, GuardiansPerStudent: 3},
		{Students: 5, GuardiansPerStudent: -1},
		{Students: 5, LineItemsPerClass: -1},
		{Students: 5, ClassesPerTeacher: -2},
		{Students: 5, StudentsPerClass: 1000},
	} {
		if _, err := WriteZip(context.Background(), io.Discard, c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteZip(ctx, io.Discard, testConfig(5000, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled generation returned %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	w := &cancelAfter{n: 256 << 10, cancel: cancel}
	if _, err := WriteZip(ctx, w, testConfig(3000, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("generation cancelled midway returned %v", err)
	}
}

// cancelAfter cancels its context once n bytes have been written.
type cancelAfter struct {
	n      int
	cancel func()
}

func (c *cancelAfter) Write(b []byte) (int, error) {
	c.n -= len(b)
	if c.n < 0 {
		c.cancel()
	}
	return len(b), nil
}

func TestDefaults(t *testing.T) {
	c := Defaults(100_000)
	if c.Schools != 200 || c.TeachersPerSchool != 25 || c.StudentsPerClass != 30 || c.LineItemsPerClass != 5 || !c.Results || c.GuardiansPerStudent != 2 {
		t.Errorf("Defaults(100000) = %+v", c)
	}
	if c := Defaults(10); c.Schools != 1 || c.TeachersPerSchool != 1 {
		t.Errorf("Defaults(10) = %+v", c)
	}
}

func TestIDsAreUUIDsAndUnique(t *testing.T) {
	g := newGen(Config{Seed: 11, Students: 1, Today: DefaultToday})
	seen := map[string]bool{}
	for k := kOrg; k <= kDistrict; k++ {
		for i := range 2000 {
			id := g.id(k, uint64(i)*1_000_003)
			if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
				t.Fatalf("%s is not UUID-shaped (v4 layout)", id)
			}
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
		}
	}
}
