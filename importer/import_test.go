package importer_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"registrar/audit"
	"registrar/gen"
	"registrar/importer"
	"registrar/records"
	"registrar/sqlstore"
)

func TestBulkPackageLoadsEveryFileOfTheBinding(t *testing.T) {
	forEachEngine(t, testBulkPackageLoadsEveryFileOfTheBinding)
}

func testBulkPackageLoadsEveryFileOfTheBinding(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sum := mustImport(t, st, golden("bulk"))
	if len(sum.Files) != 21 {
		t.Errorf("got %d files, want the 21 of the binding", len(sum.Files))
	}
	if sum.Rows != 46 || sum.Created != 31 || sum.Updated+sum.Unchanged+sum.Deleted+sum.Ignored != 0 {
		t.Errorf("got %s, want 46 rows, 31 created, nothing else", sum.Line())
	}
	if sum.Students != 2 {
		t.Errorf("got %d students, want 2 (u-s1, u-s2)", sum.Students)
	}

	t.Run("users get their roles, profiles, agents and resources from the other files", func(t *testing.T) {
		u := object(t, st, records.User, "u-t1")
		roles := u["roles"].([]records.Role)
		want := []records.Role{
			{RoleType: "primary", Role: "teacher", Org: "org-s1", UserProfile: "up-t1", BeginDate: "2025-08-01"},
			{RoleType: "secondary", Role: "teacher", Org: "org-s2"},
		}
		if !slices.Equal(roles, want) {
			t.Errorf("roles: got %+v, want %+v", roles, want)
		}
		if got := string(u["userIds"].(json.RawMessage)); got != `[{"identifier":"T1","type":"SIS"},{"identifier":"tom.teacher","type":"LDAP"}]` {
			t.Errorf("userIds: got %s", got)
		}
		if got := string(u["userProfiles"].(json.RawMessage)); got != `[{"profileId":"up-t1","profileType":"lms","vendorId":"vendor-lms","applicationId":"app-1","description":"Tom's LMS account","credentials":[{"type":"sso","username":"tom.teacher"}]}]` {
			t.Errorf("userProfiles: got %s", got)
		}
		if u["preferredFirstName"] != "Tommy" || u["pronouns"] != "he/him" {
			t.Errorf("preferred names: got %v", u)
		}
		p := object(t, st, records.User, "u-p1")
		if got := p["agents"]; !isList(got, []string{"u-s1", "u-s2"}) {
			t.Errorf("agents: got %v", got)
		}
		s2 := object(t, st, records.User, "u-s2")
		if got := s2["resources"]; !isList(got, []string{"res-2"}) {
			t.Errorf("user resources: got %v", got)
		}
	})
	t.Run("classes, courses and line items get their parts", func(t *testing.T) {
		c := object(t, st, records.Class, "cl-alg-1")
		if !isList(c["terms"], []string{"as-t1", "as-t2"}) || !isList(c["resources"], []string{"res-1"}) || !isList(c["grades"], []string{"09", "10"}) {
			t.Errorf("class: got %v", c)
		}
		if co := object(t, st, records.Course, "c-read"); !isList(co["resources"], []string{"res-2"}) {
			t.Errorf("course resources: got %v", co["resources"])
		}
		li := object(t, st, records.LineItem, "li-1")
		if got := string(li["learningObjectiveSet"].(json.RawMessage)); got != `[{"source":"case","learningObjectiveIds":["6b1b7c9e-0000-4000-8000-000000000001","6b1b7c9e-0000-4000-8000-000000000002"]}]` {
			t.Errorf("learning objectives: got %s", got)
		}
		if li["assignDate"] != "2025-09-01T00:00:00.000Z" || li["description"] != "Chapter 1, problems 1-10" {
			t.Errorf("line item: got %v", li)
		}
		if li2 := object(t, st, records.LineItem, "li-2"); li2["scoreScale"] != "ss-1" {
			t.Errorf("line item score scale: got %v", li2["scoreScale"])
		}
		ss := object(t, st, records.ScoreScale, "ss-1")
		if got := string(ss["scoreScaleValue"].(json.RawMessage)); got != `[{"itemValueLHS":"90-100","itemValueRHS":"A"},{"itemValueLHS":"80-89","itemValueRHS":"B"},{"itemValueLHS":"0-79","itemValueRHS":"C"}]` {
			t.Errorf("score scale values: got %s", got)
		}
	})
	t.Run("results keep their sealed learning objectives and score scale", func(t *testing.T) {
		r := object(t, st, records.Result, "rs-1")
		if got := string(r["learningObjectiveSet"].(json.RawMessage)); got != `[{"source":"case","learningObjectiveResults":[{"learningObjectiveId":"6b1b7c9e-0000-4000-8000-000000000001","score":0.9,"textScore":"QZXSECRET-lo"}]}]` {
			t.Errorf("result learning objectives: got %s", got)
		}
		if r["score"] != 9.5 || r["comment"] != "QZXSECRET comment" || r["scoreStatus"] != "fully graded" {
			t.Errorf("result: got %v", r)
		}
		if r2 := object(t, st, records.Result, "rs-2"); r2["scoreScale"] != "ss-1" {
			t.Errorf("result score scale: got %v", r2["scoreScale"])
		}
	})
	t.Run("no sensitive value reaches the database file in plain text", func(t *testing.T) {
		if st.url != "" {
			noPlaintext(t, st, "QZXSECRET")
			return
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(st.dir)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "registrar.db") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(st.dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte("QZXSECRET")) {
				t.Errorf("%s holds a sensitive value in plain text", e.Name())
			}
		}
	})
}

func isList(got any, want []string) bool {
	l, ok := got.([]string)
	return ok && slices.Equal(l, want)
}

func TestImportIsOneAuditedOperation(t *testing.T) {
	forEachEngine(t, testImportIsOneAuditedOperation)
}

func testImportIsOneAuditedOperation(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustImport(t, st, golden("bulk"))
	if n := count(t, st, "audit_events", ""); n != 1 {
		t.Fatalf("got %d audit events, want 1", n)
	}
	if n := count(t, st, "audit_events", "action = 'import' AND principal = 'operator:tester'"); n != 1 {
		t.Errorf("the import's event does not name the operator")
	}
	if err := st.FlushAuditIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, "ix.audit_students", ""); n != 2 {
		t.Errorf("got %d students indexed for the event, want 2", n)
	}
	// A package with problems writes nothing but the event of the attempt.
	_, err := importer.New(st.Store, discard()).Import(context.Background(), golden("errors/references"), importer.Options{Event: operator()})
	if err == nil {
		t.Fatal("an invalid package imported")
	}
	if n := count(t, st, "audit_events", "action = 'import' AND body LIKE '%\"outcome\":\"invalid\"%'"); n != 1 {
		t.Errorf("got %d events of the failed import, want 1", n)
	}
}

func TestImportingTwiceLeavesTheSameState(t *testing.T) {
	forEachEngine(t, testImportingTwiceLeavesTheSameState)
}

func testImportingTwiceLeavesTheSameState(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	for _, pkg := range []string{"bulk", "delta", "quirks"} {
		mustImport(t, st, golden(pkg))
		before := digest(t, st.db())
		sum := mustImport(t, st, golden(pkg))
		if sum.Created+sum.Updated+sum.Deleted != 0 || sum.Unchanged == 0 {
			t.Errorf("second import of %s: got %s, want every row unchanged", pkg, sum.Line())
		}
		if after := digest(t, st.db()); after != before {
			t.Errorf("a second import of %s changed the store", pkg)
		}
	}
}

func TestDeltaPackageAppliesUpsertsAndDeletes(t *testing.T) {
	forEachEngine(t, testDeltaPackageAppliesUpsertsAndDeletes)
}

func testDeltaPackageAppliesUpsertsAndDeletes(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustImport(t, st, golden("bulk"))
	sum := mustImport(t, st, golden("delta"))
	byFile := map[string]*importer.FileSummary{}
	for _, f := range sum.Files {
		byFile[f.File] = f
	}
	check := func(file string, created, updated, deleted, ignored, merged int) {
		t.Helper()
		f := byFile[file]
		if f == nil || f.Created != created || f.Updated != updated || f.Deleted != deleted || f.Ignored != ignored || f.Merged != merged {
			t.Errorf("%s: got %+v, want created %d updated %d deleted %d ignored %d merged %d", file, f, created, updated, deleted, ignored, merged)
		}
	}
	check("users.csv", 1, 1, 1, 0, 1)
	check("classes.csv", 1, 0, 0, 0, 0)
	check("enrollments.csv", 1, 0, 2, 1, 0)

	s1 := object(t, st, records.User, "u-s1")
	if s1["givenName"] != "Samantha" || !isList(s1["grades"], []string{"10"}) || s1["dateLastModified"] != "2026-01-10T08:00:00.000Z" {
		t.Errorf("updated user: got %v", s1)
	}
	if roles := s1["roles"].([]records.Role); len(roles) != 1 || roles[0].Role != "student" {
		t.Errorf("a user updated by users.csv alone kept its roles: got %v", roles)
	}
	s3 := object(t, st, records.User, "u-s3")
	if roles := s3["roles"].([]records.Role); len(roles) != 1 || roles[0].Org != "org-s1" {
		t.Errorf("new user: got roles %v", roles)
	}
	p1 := object(t, st, records.User, "u-p1")
	if p1["status"] != records.StatusToBeDeleted || p1["givenName"] != "Pat" {
		t.Errorf("a tobedeleted row with only its id marks the stored user: got %v", p1)
	}
	t1 := object(t, st, records.User, "u-t1")
	if roles := t1["roles"].([]records.Role); len(roles) != 1 || roles[0].Org != "org-s1" || t1["dateLastModified"] != "2026-01-10T09:00:00.000Z" {
		t.Errorf("roles.csv alone removes a role: got %v, date %v", roles, t1["dateLastModified"])
	}
	if e4 := object(t, st, records.Enrollment, "e-4"); e4["status"] != records.StatusToBeDeleted || e4["class"] != "cl-read-1" {
		t.Errorf("enrollment marked: got %v", e4)
	}
	if e3 := object(t, st, records.Enrollment, "e-3"); e3["status"] != records.StatusToBeDeleted {
		t.Errorf("enrollment given whole as tobedeleted: got %v", e3)
	}
	if n := count(t, st, "enrollments", "sourced_id = 'e-ghost'"); n != 0 {
		t.Error("a tobedeleted row for an unknown id created an object")
	}
	if n := count(t, st, "changes", "entity = 'user' AND sourced_id = 'u-t1'"); n != 2 {
		t.Errorf("got %d changes logged for u-t1, want 2 (bulk, then its role)", n)
	}
}

func TestDeltaRemovalsOfUnknownThingsAreIgnored(t *testing.T) {
	forEachEngine(t, testDeltaRemovalsOfUnknownThingsAreIgnored)
}

func testDeltaRemovalsOfUnknownThingsAreIgnored(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustImport(t, st, golden("bulk"))
	dir := t.TempDir()
	manifest, _ := os.ReadFile(filepath.Join(golden("delta"), "manifest.csv"))
	m := strings.NewReplacer("file.users,delta", "file.users,absent", "file.classes,delta", "file.classes,absent", "file.enrollments,delta", "file.enrollments,absent").Replace(string(manifest))
	os.WriteFile(filepath.Join(dir, "manifest.csv"), []byte(m), 0o644)
	os.WriteFile(filepath.Join(dir, "roles.csv"), []byte("sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId\n"+
		"r-x,tobedeleted,2026-01-10T08:00:00Z,u-nobody,primary,teacher,,,org-s1,\n"+
		"r-y,tobedeleted,2026-01-10T08:00:00Z,u-s1,primary,teacher,,,org-s1,\n"), 0o644)
	before := digest(t, st.db())
	sum := mustImport(t, st, dir)
	if sum.Created+sum.Updated+sum.Deleted != 0 {
		t.Errorf("got %s, want nothing changed", sum.Line())
	}
	if digest(t, st.db()) != before {
		t.Error("removing roles nobody has changed the store")
	}
}

func TestBulkMarksWhatIsAbsentTobedeleted(t *testing.T) {
	forEachEngine(t, testBulkMarksWhatIsAbsentTobedeleted)
}

func testBulkMarksWhatIsAbsentTobedeleted(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustImport(t, st, golden("bulk"))
	// The same package without the second enrollment and the parent's demographics.
	dir := copyPackage(t, golden("bulk"))
	dropLines(t, filepath.Join(dir, "enrollments.csv"), "e-2,")
	dropLines(t, filepath.Join(dir, "demographics.csv"), "u-s2,")
	changesBefore := count(t, st, "changes", "")
	sum := mustImport(t, st, dir)
	if sum.Deleted != 2 || sum.Created+sum.Updated != 0 {
		t.Errorf("got %s, want 2 marked tobedeleted and nothing else", sum.Line())
	}
	e2 := object(t, st, records.Enrollment, "e-2")
	if e2["status"] != records.StatusToBeDeleted || e2["user"] != "u-s1" {
		t.Errorf("absent enrollment: got %v", e2)
	}
	if d := object(t, st, records.Demographics, "u-s2"); d["status"] != records.StatusToBeDeleted || d["birthDate"] != "2017-11-30" {
		t.Errorf("absent demographics keep their sealed values: got %v", d)
	}
	if got := count(t, st, "changes", "") - changesBefore; got != 2 {
		t.Errorf("got %d changes logged, want 2", got)
	}
	if err := st.FlushAuditIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, "ix.audit_students", "student_id IN ('u-s1', 'u-s2')"); n < 4 {
		t.Errorf("the second import's event does not name the students whose records were marked (%d rows)", n)
	}
}

func TestRealWorldQuirks(t *testing.T) {
	forEachEngine(t, testRealWorldQuirks)
}

func testRealWorldQuirks(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustImport(t, st, golden("quirks"))
	for _, c := range []struct {
		e     *records.Entity
		id    string
		field string
		want  any
	}{
		{records.Org, "org-d", "name", `Lakeview "North" District, Unit 7`},                                                    // BOM, CRLF, quotes and commas
		{records.Org, "org-s1", "name", "École Zoë Ñúñez"},                                                                     // UTF-8
		{records.Course, "c-1", "title", `Algebra "Honors", Part 1`},                                                           // quotes and a comma
		{records.Course, "c-1", "grades", []string{"09", "10", "11"}},                                                          // a list
		{records.Class, "cl-1", "classType", "ext:lab"},                                                                        // an extension token
		{records.Class, "cl-1", "periods", []string{"1", "2"}},                                                                 // a list
		{records.User, "u-1", "givenName", "小龙"},                                                                               // UTF-8
		{records.User, "u-2", "familyName", "O'Brien, Jr."},                                                                    // an apostrophe, a comma
		{records.User, "u-2", "enabledUser", "false"},                                                                          // a boolean
		{records.LineItem, "li-1", "description", "Write two paragraphs:\nfirst, what you read;\nsecond, what you \"think\"."}, // line breaks (CRLF inside the field)
		{records.LineItem, "li-1", "academicSession", "as-t1"},                                                                 // the 1.1 header gradingPeriodSourcedId
	} {
		o := object(t, st, c.e, c.id)
		var ok bool
		if l, list := c.want.([]string); list {
			ok = isList(o[c.field], l)
		} else {
			ok = o[c.field] == c.want
		}
		if !ok {
			t.Errorf("%s %s.%s: got %#v, want %#v", c.e.Name, c.id, c.field, o[c.field], c.want)
		}
	}
	u1 := object(t, st, records.User, "u-1")
	if got := string(u1["metadata"].(json.RawMessage)); got != `{"stateId":"CA-7781"}` {
		t.Errorf("metadata columns: got %s", got)
	}
	if _, ok := u1["middleName"]; ok {
		t.Error("an empty optional column gave a value")
	}
	u2 := object(t, st, records.User, "u-2")
	if got := string(u2["userIds"].(json.RawMessage)); got != `[{"identifier":"Z-1","type":"SIS"},{"identifier":"CA:99","type":"State"}]` {
		t.Errorf("userIds: got %s", got)
	}
	if roles := u2["roles"].([]records.Role); len(roles) != 2 || roles[1].Role != "ext:coach" {
		t.Errorf("roles: got %v", roles)
	}
}

func TestZipPackagesImportLikeFolders(t *testing.T) {
	forEachEngine(t, testZipPackagesImportLikeFolders)
}

func testZipPackagesImportLikeFolders(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"", "district-export-2026/"} {
		t.Run("files under "+strings.TrimSuffix(prefix, "/")+"/", func(t *testing.T) {
			t.Parallel()
			zipPath := filepath.Join(t.TempDir(), "package.zip")
			writeZip(t, golden("bulk"), zipPath, prefix)
			a, b := newStore(t), newStore(t)
			mustImport(t, a, zipPath)
			mustImport(t, b, golden("bulk"))
			sameObjects(t, objects(t, a, false), objects(t, b, false))
		})
	}
}

func TestRoundTrip(t *testing.T) {
	forEachEngine(t, testRoundTrip)
}

func testRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("a bulk export imports into an empty store as the same data", func(t *testing.T) {
		t.Parallel()
		for _, pkg := range []string{golden("bulk"), golden("quirks"), generated(t, 40)} {
			a := newStore(t)
			mustImport(t, a, pkg)
			out := filepath.Join(t.TempDir(), "export")
			if _, err := importer.New(a.Store, discard()).ExportDir(ctx, out, importer.ExportOptions{}); err != nil {
				t.Fatal(err)
			}
			b := newStore(t)
			mustImport(t, b, out)
			sameObjects(t, objects(t, b, false), objects(t, a, false))
		}
	})
	t.Run("a delta export keeps statuses and dates exactly", func(t *testing.T) {
		t.Parallel()
		a := newStore(t)
		mustImport(t, a, golden("bulk"))
		mustImport(t, a, golden("delta"))
		zipPath := filepath.Join(t.TempDir(), "export.zip")
		f, err := os.Create(zipPath)
		if err != nil {
			t.Fatal(err)
		}
		res, err := importer.New(a.Store, discard()).ExportZip(ctx, f, t.TempDir(), importer.ExportOptions{Mode: "delta"})
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !slices.Contains(res.Students, "u-s1") {
			t.Errorf("the export does not name the students it holds: %v", res.Students)
		}
		b := newStore(t)
		mustImport(t, b, zipPath)
		// u-p1 was marked with its sourcedId only: the delta export gives it whole.
		sameObjects(t, objects(t, b, true), objects(t, a, true))
	})
}

func TestExportHonoursTheCallersScope(t *testing.T) {
	forEachEngine(t, testExportHonoursTheCallersScope)
}

func testExportHonoursTheCallersScope(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	mustImport(t, st, golden("bulk"))
	out := filepath.Join(t.TempDir(), "export")
	res, err := importer.New(st.Store, discard()).ExportDir(context.Background(), out, importer.ExportOptions{
		Scope: func(e *records.Entity) (records.Predicate, bool) {
			switch e {
			case records.Demographics:
				return records.Predicate{}, false // may not read demographics
			case records.Enrollment:
				return records.Predicate{SQL: "t.school_id = ?", Args: []any{"org-s2"}}, true
			}
			return records.Predicate{}, true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "demographics.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Error("demographics were exported to a caller who may not read them")
	}
	if res.Files["enrollments"] != 2 {
		t.Errorf("got %d enrollments, want the 2 of org-s2", res.Files["enrollments"])
	}
	m, _ := os.ReadFile(filepath.Join(out, "manifest.csv"))
	if !strings.Contains(string(m), "file.demographics,absent") || !strings.Contains(string(m), "file.enrollments,bulk") {
		t.Errorf("manifest:\n%s", m)
	}
}

// TestGoldenErrorPackages checks each error class: every problem is reported with its
// file, line and column, all of them at once, and nothing is written.
func TestGoldenErrorPackages(t *testing.T) {
	forEachEngine(t, testGoldenErrorPackages)
}

func testGoldenErrorPackages(t *testing.T) {
	t.Parallel()
	ents, err := os.ReadDir(golden("errors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			before := digest(t, st.db())
			dir := golden("errors/" + e.Name())
			_, err := importer.New(st.Store, discard()).Import(context.Background(), dir, importer.Options{Event: operator()})
			var ie *importer.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("got %v, want the package's problems", err)
			}
			got := importer.Lines(ie, 100)
			if strings.Contains(got, "QZXSECRET") {
				t.Errorf("a problem shows a sensitive value:\n%s", got)
			}
			want := filepath.Join(dir, "expected.txt")
			if *update {
				if err := os.WriteFile(want, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGoldenErrorPackages -update to create it)", err)
			}
			if got != string(b) {
				t.Errorf("problems of %s:\n got:\n%s\nwant:\n%s", e.Name(), got, b)
			}
			if after := digest(t, st.db()); after != before {
				t.Error("an invalid package changed the store")
			}
		})
	}
}

func TestProblemsAreCappedButCounted(t *testing.T) {
	forEachEngine(t, testProblemsAreCappedButCounted)
}

func testProblemsAreCappedButCounted(t *testing.T) {
	t.Parallel()
	dir := copyPackage(t, golden("errors/enums"))
	f, err := os.OpenFile(filepath.Join(dir, "orgs.csv"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		f.WriteString("org-x" + strconv.Itoa(i) + ",,,X,campus,,org-d\n")
	}
	f.Close()
	st := newStore(t)
	_, err = importer.New(st.Store, discard()).Import(context.Background(), dir, importer.Options{MaxProblems: 50})
	var ie *importer.InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("got %v", err)
	}
	if len(ie.Problems) != 50 || ie.Total < 3000 {
		t.Errorf("got %d problems kept of %d, want 50 of 3000 or more", len(ie.Problems), ie.Total)
	}
	if lines := strings.Count(importer.Lines(ie, 10), "\n"); lines != 11 {
		t.Errorf("Lines gave %d lines, want 10 and a count", lines)
	}
}

func TestImportAsAPIClientRecordsTheClient(t *testing.T) {
	forEachEngine(t, testImportAsAPIClientRecordsTheClient)
}

func testImportAsAPIClientRecordsTheClient(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "client-42", RequestID: "req-1"}
	var committed bool
	_, err := importer.New(st.Store, discard()).Import(context.Background(), golden("bulk"), importer.Options{Event: ev,
		BeforeCommit: func(ctx context.Context, tx *sqlstore.Tx, sum *importer.Summary) error {
			committed = sum.Rows == 46
			return nil
		}})
	if err != nil || !committed {
		t.Fatalf("import: %v, BeforeCommit saw the summary: %v", err, committed)
	}
	if n := count(t, st, "audit_events", "principal = 'client:client-42' AND action = 'import'"); n != 1 {
		t.Errorf("got %d events by the client, want 1", n)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	forEachEngine(t, testDryRunWritesNothing)
}

func testDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	before := digest(t, st.db())
	sum, err := importer.New(st.Store, discard()).Import(context.Background(), golden("bulk"), importer.Options{DryRun: true})
	if err != nil || sum.Rows != 46 {
		t.Fatalf("dry run: %v, %v", sum, err)
	}
	if digest(t, st.db()) != before || count(t, st, "audit_events", "") != 0 {
		t.Error("a dry run wrote to the store")
	}
}

// ---- helpers ----

// generated writes a small synthetic district (with gradebook) and returns its folder.
func generated(t testing.TB, students int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gen")
	cfg := gen.Defaults(students)
	cfg.LineItemsPerClass = 2
	if _, err := gen.WriteCSV(context.Background(), dir, cfg); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyPackage(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func dropLines(t testing.TB, path, prefix string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasPrefix(l, prefix) {
			keep = append(keep, l)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(keep, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeZip(t testing.TB, dir, path, prefix string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() == "expected.txt" {
			continue
		}
		w, err := zw.Create(prefix + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		r, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(w, r)
		r.Close()
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}
