package sqlstore_test

// The store contract: every case runs against SQLite and PostgreSQL, each on a fresh
// database loaded with the test district, and must pass the same way on both.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/audit"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"

	T "registrar/internal/testdistrict" // T.Minor reads better than testdistrict.Minor
)

// engine makes fresh, empty databases of one kind.
type engine struct {
	name  string
	fresh func(t testing.TB) sqlstore.Options // Path or URL of a new database
}

var engines = []engine{
	{"sqlite", func(t testing.TB) sqlstore.Options {
		return sqlstore.Options{Path: filepath.Join(t.TempDir(), "registrar.db")}
	}},
	{"postgres", func(t testing.TB) sqlstore.Options {
		return sqlstore.Options{URL: postgresServer(t).NewDatabase(t)}
	}},
}

// forEachEngine runs fn as a subtest per engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, eng engine)) {
	t.Helper()
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			t.Parallel()
			fn(t, eng)
		})
	}
}

func newVault(t testing.TB) *vault.Vault {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// open opens a store on o, filling what the test left empty, and closes it at cleanup.
func open(t testing.TB, o sqlstore.Options) *sqlstore.Store {
	t.Helper()
	if o.Vault == nil {
		o.Vault = newVault(t)
	}
	if o.Chain == "" {
		o.Chain = "test"
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := sqlstore.Open(ctx, o)
	if err != nil {
		t.Fatalf("open %s: %v", o.URL+o.Path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// district opens a fresh store of eng loaded with the test district.
func district(t testing.TB, eng engine) *sqlstore.Store {
	t.Helper()
	s := open(t, eng.fresh(t))
	if err := T.Load(context.Background(), s); err != nil {
		t.Fatalf("load the test district: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, eng engine)
	}{
		{"every object of the district reads back as written", testRoundTrip},
		{"a second put of an object updates it", testPutUpdates},
		{"lists page through every row once, with the total", testPaging},
		{"lists sort byte-wise on any sortable field, both ways", testSort},
		{"filters support every operator on every kind of field", testFilters},
		{"list tables keep their order and follow updates", testLinkTables},
		{"user roles are kept in step with the user", testRoles},
		{"users are found by blind index or username", testUserByClaim},
		{"sensitive values never reach the database in plaintext", testSealed},
		{"delete removes the object and its links and is logged", testDelete},
		{"the change log records every put and delete in order", testChangeLog},
		{"referrers name what a delete would leave dangling", testReferrers},
		{"directory lookups serve authorization", testDirectory},
		{"clients are registered, listed and revoked", testClients},
		{"reads and checks inside a write transaction", testTxReads},
		{"the audit chain verifies and detects a forged event", testAuditChain},
		{"audit tables refuse updates and deletes", testAppendOnly},
		{"a failing request in a batch does not undo its neighbours", testSavepoints},
		{"a write whose caller gives up does not fail its neighbours", testCancelledWrite},
		{"two instances write their own chains into one database", testTwoInstances},
		{"migrations are idempotent and safe to race", testMigrations},
		{"ping checks the schema version", testPing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, c.fn)
		})
	}
}

var ctx = context.Background()

// all is a query for every row of e, unrestricted.
func all(e *records.Entity) sqlstore.Query {
	return sqlstore.Query{Entity: e, Page: query.Page{Limit: 1000}}
}

func ids(objs []records.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.ID()
	}
	return out
}

// normal makes values comparable whatever Go type carries them.
func normal(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantCode(t testing.TB, err error, code records.Code) {
	t.Helper()
	if records.ErrorCode(err) != code || err == nil {
		t.Fatalf("got error %v (code %s), want code %s", err, records.ErrorCode(err), code)
	}
}

func write(t testing.TB, s *sqlstore.Store, fn func(context.Context, *sqlstore.Tx) error) {
	t.Helper()
	if err := s.Write(ctx, fn); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func put(t testing.TB, s *sqlstore.Store, e *records.Entity, o records.Object) {
	t.Helper()
	if errs := records.Validate(e, o); len(errs) > 0 {
		t.Fatalf("%s %s does not validate: %v", e.Name, o.ID(), errs)
	}
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.Put(ctx, e, o, sqlstore.PutOptions{})
		return err
	})
}

// count runs a COUNT query on the raw database.
func count(t testing.TB, s *sqlstore.Store, q string, args ...any) int {
	t.Helper()
	var n int
	if err := s.RawDB().QueryRowContext(ctx, s.Rebind(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func testRoundTrip(t *testing.T, eng engine) {
	s := district(t, eng)
	for _, eo := range T.Objects() {
		got, err := s.Get(ctx, sqlstore.Query{Entity: eo.E}, eo.O.ID())
		if err != nil {
			t.Fatalf("get %s %s: %v", eo.E.Name, eo.O.ID(), err)
		}
		for name, want := range eo.O {
			if name == "dateLastModified" {
				continue
			}
			if f, _ := eo.E.Field(name); f != nil && f.Kind == records.KDateTime {
				want = records.FormatDateTime(mustTime(t, want.(string))) // stored in UTC, to the millisecond
			}
			if g, w := normal(t, got[name]), normal(t, want); !reflect.DeepEqual(g, w) {
				t.Errorf("%s %s.%s: got %v, want %v", eo.E.Name, eo.O.ID(), name, g, w)
			}
		}
		if _, err := time.Parse(time.RFC3339, got.Str("dateLastModified")); err != nil {
			t.Errorf("%s %s: dateLastModified %q: %v", eo.E.Name, eo.O.ID(), got.Str("dateLastModified"), err)
		}
	}
	// Derived children, in byte order; an object without any has none.
	org, _ := s.Get(ctx, sqlstore.Query{Entity: records.Org}, T.District)
	if got, want := normal(t, org["children"]), normal(t, []string{T.SchoolA, T.SchoolB}); !reflect.DeepEqual(got, want) {
		t.Errorf("district children: got %v, want %v", got, want)
	}
	school, _ := s.Get(ctx, sqlstore.Query{Entity: records.Org}, T.SchoolA)
	if c, ok := school["children"]; ok {
		t.Errorf("school children: got %v, want none", c)
	}
	_, err := s.Get(ctx, sqlstore.Query{Entity: records.User}, "no-such-user")
	wantCode(t, err, records.NotFound)
	// Outside the scope is the same as absent.
	scope := records.Predicate{SQL: "t.sourced_id = ?", Args: []any{T.Minor}}
	_, err = s.Get(ctx, sqlstore.Query{Entity: records.User, Scope: scope}, T.Eligible)
	wantCode(t, err, records.NotFound)
	if _, err := s.Get(ctx, sqlstore.Query{Entity: records.User, Scope: scope}, T.Minor); err != nil {
		t.Errorf("get in scope: %v", err)
	}
	if err := s.Exists(ctx, records.User, scope, T.Minor); err != nil {
		t.Errorf("exists in scope: %v", err)
	}
	wantCode(t, s.Exists(ctx, records.User, scope, T.Eligible), records.NotFound)
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := records.ParseDateTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func testPutUpdates(t *testing.T, eng engine) {
	s := district(t, eng)
	o := records.Object{"sourcedId": "cat-new", "status": "active", "title": "Quizzes", "weight": 0.25}
	var results []sqlstore.PutResult
	for _, title := range []string{"Quizzes", "Quizzes (renamed)"} {
		o["title"] = title
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
			r, err := tx.Put(ctx, records.Category, o, sqlstore.PutOptions{})
			results = append(results, r)
			return err
		})
	}
	if want := []sqlstore.PutResult{sqlstore.Created, sqlstore.Updated}; !reflect.DeepEqual(results, want) {
		t.Errorf("put results: got %v, want %v", results, want)
	}
	got, err := s.Get(ctx, sqlstore.Query{Entity: records.Category}, "cat-new")
	if err != nil || got.Str("title") != "Quizzes (renamed)" || got["weight"] != 0.25 {
		t.Errorf("got %v, %v; want the renamed category with weight 0.25", got, err)
	}
	// A reference to nothing is refused, and nothing of it is written.
	bad := records.Object{"sourcedId": "class-bad", "status": "active", "title": "x", "course": "no-such-course", "school": T.SchoolA, "terms": []string{T.Term1}}
	err = s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.Put(ctx, records.Class, bad, sqlstore.PutOptions{})
		return err
	})
	wantCode(t, err, records.Invalid)
	if n := count(t, s, "SELECT COUNT(*) FROM classes WHERE sourced_id = ?", "class-bad"); n != 0 {
		t.Errorf("refused class: %d rows, want 0", n)
	}
	// KeepDate keeps the object's own dateLastModified (the importer's delta files).
	o["dateLastModified"] = "2020-01-02T03:04:05.000Z"
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.Put(ctx, records.Category, o, sqlstore.PutOptions{KeepDate: true})
		return err
	})
	got, _ = s.Get(ctx, sqlstore.Query{Entity: records.Category}, "cat-new")
	if got.Str("dateLastModified") != "2020-01-02T03:04:05.000Z" {
		t.Errorf("kept date: got %q", got.Str("dateLastModified"))
	}
}

var allUsers = []string{T.Admin, T.Counselor, T.Disabled, T.Guardian, T.Guardian2, T.PrincipalA, T.Eligible, T.Minor, T.Student3, T.StudentB, T.StudentC, T.TeacherA, T.TeacherA2, T.TeacherB, T.TeacherC}

func sorted(l []string) []string {
	out := append([]string(nil), l...)
	sort.Strings(out)
	return out
}

func without(l []string, drop ...string) []string {
	var out []string
	for _, x := range l {
		if !contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func testPaging(t *testing.T, eng engine) {
	s := district(t, eng)
	var seen []string
	for off := 0; ; off += 4 {
		res, err := s.List(ctx, sqlstore.Query{Entity: records.User, Page: query.Page{Limit: 4, Offset: off}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != len(allUsers) {
			t.Errorf("offset %d: total %d, want %d", off, res.Total, len(allUsers))
		}
		if len(res.Objects) == 0 {
			break
		}
		seen = append(seen, ids(res.Objects)...)
	}
	if want := sorted(allUsers); !reflect.DeepEqual(seen, want) {
		t.Errorf("pages: got %v, want %v", seen, want)
	}
	res, err := s.List(ctx, sqlstore.Query{Entity: records.User, Page: query.Page{Limit: 2, Offset: 1000}})
	if err != nil || len(res.Objects) != 0 || res.Total != len(allUsers) {
		t.Errorf("past the end: got %d objects, total %d, %v; want none of %d", len(res.Objects), res.Total, err, len(allUsers))
	}
	res, _ = s.List(ctx, sqlstore.Query{Entity: records.User, Page: query.Page{Limit: 2}, NoCount: true})
	if len(res.Objects) != 2 || res.Total != 0 {
		t.Errorf("NoCount: got %d objects, total %d; want 2, 0", len(res.Objects), res.Total)
	}
	f, _ := query.ParseFilter("roles.role='student'")
	res, _ = s.List(ctx, sqlstore.Query{Entity: records.User, Filter: f, Page: query.Page{Limit: 2}})
	if len(res.Objects) != 2 || res.Total != 5 {
		t.Errorf("filtered count: got %d objects, total %d; want 2 of 5", len(res.Objects), res.Total)
	}
	// The route relation (students of a class) and the projection of sealed fields.
	rel := records.Predicate{SQL: "t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id = ? AND e.role = 'student')", Args: []any{T.ClassMathA}}
	res, err = s.List(ctx, sqlstore.Query{Entity: records.User, Where: []records.Predicate{rel}, Page: query.Page{Limit: 100}, Fields: []string{"sourcedId", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(res.Objects), sorted([]string{T.Minor, T.Eligible, T.Student3}); !reflect.DeepEqual(got, want) {
		t.Errorf("students of a class: got %v, want %v", got, want)
	}
	for _, o := range res.Objects {
		if o.Str("email") == "" || o["phone"] != nil {
			t.Errorf("projection: %s has email %q and phone %v; want email only", o.ID(), o.Str("email"), o["phone"])
		}
	}
}

func testSort(t *testing.T, eng engine) {
	s := district(t, eng)
	// Put users whose names sort differently byte-wise and by locale.
	for i, name := range []string{"apple", "Zeta", "éclair", "Apple", "_under", "apple"} {
		put(t, s, records.User, records.Object{"sourcedId": fmt.Sprintf("user-sort-%d", i), "status": "active", "enabledUser": "true",
			"givenName": "S", "familyName": name, "roles": []records.Role{{RoleType: "primary", Role: "aide", Org: T.SchoolA}}})
	}
	res, err := s.List(ctx, all(records.User))
	if err != nil {
		t.Fatal(err)
	}
	objs := res.Objects
	for _, desc := range []bool{false, true} {
		want := append([]records.Object(nil), objs...)
		sort.SliceStable(want, func(i, j int) bool {
			a, b := want[i], want[j]
			if a.Str("familyName") != b.Str("familyName") {
				return (a.Str("familyName") < b.Str("familyName")) != desc
			}
			return (a.ID() < b.ID()) != desc
		})
		q := all(records.User)
		q.Sort = &query.Sort{Fields: []string{"familyName"}, Desc: desc}
		res, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if got, w := ids(res.Objects), ids(want); !reflect.DeepEqual(got, w) {
			t.Errorf("sort familyName desc=%v:\n got %v\nwant %v", desc, got, w)
		}
	}
	// NULL is the lowest value on both engines, both ways.
	qd := all(records.AcademicSession)
	qd.Sort = &query.Sort{Fields: []string{"startDate", "parent.sourcedId"}, Desc: true}
	if res, err := s.List(ctx, qd); err != nil || !reflect.DeepEqual(ids(res.Objects), []string{T.Term2, T.GP1, T.Term1, T.SchoolYear}) {
		t.Errorf("sort by date then reference, descending: got %v, %v", ids(res.Objects), err)
	}
	q := all(records.AcademicSession)
	q.Sort = &query.Sort{Fields: []string{"startDate", "parent.sourcedId"}}
	res, err = s.List(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(res.Objects), []string{T.SchoolYear, T.Term1, T.GP1, T.Term2}; !reflect.DeepEqual(got, want) {
		t.Errorf("sort by date then reference (no parent first): got %v, want %v", got, want)
	}
	for _, bad := range []string{"email", "roles", "nope", "grades"} {
		q := all(records.User)
		q.Sort = &query.Sort{Fields: []string{bad}}
		_, err := s.List(ctx, q)
		wantCode(t, err, records.Invalid)
	}
}

func testFilters(t *testing.T, eng engine) {
	s := district(t, eng)
	students := []string{T.Minor, T.Eligible, T.Student3, T.StudentB, T.StudentC}
	cases := []struct {
		e      *records.Entity
		filter string
		want   []string
	}{
		// text and enums
		{records.User, "familyName='Minor'", []string{T.Guardian, T.Minor}},
		{records.User, "familyName!='Minor'", without(allUsers, T.Guardian, T.Minor)},
		{records.User, "givenName~'al'", []string{T.Guardian}},
		{records.User, "givenName~'AV'", []string{T.Admin}},
		{records.User, "givenName~'%'", nil},
		{records.User, "givenName~'_'", nil},
		{records.User, "familyName>'Minor'", []string{T.PrincipalA, T.TeacherA2, T.TeacherA, T.Student3}},
		{records.User, "familyName<='Birch'", []string{T.Admin, T.TeacherB, T.StudentB}},
		{records.Org, "type='school'", []string{T.SchoolA, T.SchoolB, T.SchoolC}},
		{records.User, "status='active'", allUsers},
		// booleans, dates, date-times, numbers
		{records.User, "enabledUser='false'", []string{T.Disabled}},
		{records.AcademicSession, "startDate>'2026-09-01'", []string{T.Term2}},
		{records.AcademicSession, "startDate<='2026-08-20'", []string{T.SchoolYear, T.Term1, T.GP1}},
		{records.AcademicSession, "endDate>='2027-06-10'", []string{T.SchoolYear, T.Term2}},
		{records.AcademicSession, "startDate<'2026-08-20'", nil},
		{records.LineItem, "dueDate>'2026-09-08T07:59:59Z'", []string{T.LineItemA, T.LineItemB}},
		{records.LineItem, "dueDate>='2026-09-08T09:00:00+01:00'", []string{T.LineItemA, T.LineItemB}},
		{records.LineItem, "dueDate>'2026-09-08T08:00:00Z'", nil},
		{records.User, "dateLastModified>'2000-01-01'", allUsers},
		{records.Category, "weight>'0.2'", []string{T.Category}},
		{records.Category, "weight='0.3'", []string{T.Category}},
		{records.Category, "weight<'0.3'", nil},
		{records.Category, "weight!='0.3'", nil},
		{records.LineItem, "resultValueMax>='100'", []string{T.LineItemA, T.LineItemB}},
		// references, lists of references, derived children
		{records.Class, "course.sourcedId='course-math'", []string{T.ClassMathA, T.ClassB}},
		{records.Class, "school.sourcedId!='org-school-a'", []string{T.ClassB, T.ClassC}},
		{records.Class, "course='course-sci'", []string{T.ClassSciA}},
		{records.AcademicSession, "parent.sourcedId!='as-2026'", []string{T.SchoolYear, T.GP1}},
		{records.Class, "terms.sourcedId='as-2026-t1'", []string{T.ClassMathA, T.ClassSciA, T.ClassB, T.ClassC}},
		{records.Class, "terms.sourcedId!='as-2026-t1'", nil},
		{records.Class, "terms.sourcedId~'t1'", []string{T.ClassMathA, T.ClassSciA, T.ClassB, T.ClassC}},
		{records.User, "agents.sourcedId='user-student-minor'", []string{T.Guardian}},
		{records.Org, "children.sourcedId='org-school-a'", []string{T.District}},
		{records.Org, "children.sourcedId!='org-school-a'", []string{T.SchoolA, T.SchoolB, T.District2, T.SchoolC}},
		// roles
		{records.User, "roles.role='teacher'", []string{T.TeacherA, T.TeacherA2, T.TeacherB, T.TeacherC, T.Disabled}},
		{records.User, "roles.role!='student'", without(allUsers, students...)},
		{records.User, "roles.org.sourcedId='org-school-b'", []string{T.TeacherB, T.StudentB}},
		{records.User, "roles.roleType='primary'", allUsers},
		{records.User, "roles.beginDate>'2020-01-01'", nil},
		// lists of strings: a user without grades is not equal to '08'
		{records.User, "grades='08'", []string{T.Minor, T.Student3}},
		{records.User, "grades!='08'", without(allUsers, T.Minor, T.Student3)},
		{records.User, "grades~'1'", []string{T.Eligible, T.StudentB, T.StudentC}},
		{records.Course, "subjects='math'", []string{T.CourseMath, T.CourseSci, T.CourseC}},
		// sensitive fields with a blind index: equality only
		{records.User, "email='user-admin.CANARY7f3a@example.org'", []string{T.Admin}},
		{records.User, "email!='user-admin.CANARY7f3a@example.org'", without(allUsers, T.Admin)},
		{records.User, "identifier='SID-1-CANARY7f3a'", []string{T.Admin}},
		// logic
		{records.User, "familyName='Minor' AND givenName='Mia'", []string{T.Minor}},
		{records.User, "familyName='Minor' OR familyName='Birch'", []string{T.Guardian, T.Minor, T.TeacherB, T.StudentB}},
		{records.User, "(familyName='Minor' OR familyName='Birch') AND roles.role='student'", []string{T.Minor, T.StudentB}},
	}
	for _, c := range cases {
		f, err := query.ParseFilter(c.filter)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		q := all(c.e)
		q.Filter = f
		res, err := s.List(ctx, q)
		if err != nil {
			t.Errorf("%s %s: %v", c.e.Name, c.filter, err)
			continue
		}
		if got, want := ids(res.Objects), sorted(c.want); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
			t.Errorf("%s %s:\n got %v\nwant %v", c.e.Name, c.filter, got, want)
		}
		if res.Total != len(c.want) {
			t.Errorf("%s %s: total %d, want %d", c.e.Name, c.filter, res.Total, len(c.want))
		}
	}
	for _, bad := range []struct {
		e      *records.Entity
		filter string
	}{
		{records.User, "phone='x'"},          // sealed, no blind index
		{records.User, "email>'a'"},          // blind index: equality only
		{records.User, "nope='x'"},           // not a field
		{records.Category, "weight>'heavy'"}, // not a number
		{records.AcademicSession, "startDate>'soon'"},
		{records.User, "roles.color='red'"},
		{records.User, "userProfiles='x'"}, // structured
		{records.User, "grades>'08'"},
	} {
		f, err := query.ParseFilter(bad.filter)
		if err != nil {
			t.Fatalf("%s: %v", bad.filter, err)
		}
		q := all(bad.e)
		q.Filter = f
		_, err = s.List(ctx, q)
		wantCode(t, err, records.Invalid)
	}
}

func testLinkTables(t *testing.T, eng engine) {
	s := district(t, eng)
	class := records.Object{"sourcedId": "class-links", "status": "active", "title": "Links", "course": T.CourseMath, "school": T.SchoolA,
		"terms": []string{T.Term2, T.Term1, T.SchoolYear}}
	put(t, s, records.Class, class)
	got, _ := s.Get(ctx, sqlstore.Query{Entity: records.Class}, "class-links")
	if want := []string{T.Term2, T.Term1, T.SchoolYear}; !reflect.DeepEqual(got["terms"], want) {
		t.Errorf("terms: got %v, want %v (as given)", got["terms"], want)
	}
	class["terms"] = []string{T.Term1}
	put(t, s, records.Class, class)
	if n := count(t, s, "SELECT COUNT(*) FROM class_terms WHERE owner_id = ?", "class-links"); n != 1 {
		t.Errorf("class_terms rows after update: %d, want 1", n)
	}
	got, _ = s.Get(ctx, sqlstore.Query{Entity: records.Class}, "class-links")
	if want := []string{T.Term1}; !reflect.DeepEqual(got["terms"], want) {
		t.Errorf("terms after update: got %v, want %v", got["terms"], want)
	}
	// An agent link points both ways for Agents.
	guardian, _ := s.Get(ctx, sqlstore.Query{Entity: records.User}, T.Guardian)
	guardian["agents"] = []string{T.Minor, T.Student3}
	delete(guardian, "dateLastModified")
	put(t, s, records.User, guardian)
	a, err := s.Agents(ctx, T.Student3)
	if err != nil || !reflect.DeepEqual(a, []string{T.Guardian}) {
		t.Errorf("agents of student 3: got %v, %v; want [%s]", a, err, T.Guardian)
	}
}

func testRoles(t *testing.T, eng engine) {
	s := district(t, eng)
	u := records.Object{"sourcedId": "user-two-roles", "status": "active", "enabledUser": "true", "givenName": "Two", "familyName": "Roles",
		"roles": []records.Role{{RoleType: "primary", Role: "teacher", Org: T.SchoolA, BeginDate: "2026-08-01"}, {RoleType: "secondary", Role: "counselor", Org: T.SchoolB}}}
	put(t, s, records.User, u)
	if n := count(t, s, "SELECT COUNT(*) FROM user_roles WHERE user_id = ?", "user-two-roles"); n != 2 {
		t.Errorf("user_roles rows: %d, want 2", n)
	}
	roles, active, err := s.UserRoles(ctx, "user-two-roles")
	if err != nil || !active || len(roles) != 2 || roles[0].BeginDate != "2026-08-01" || roles[1].Org != T.SchoolB {
		t.Errorf("UserRoles: got %+v, active %v, %v", roles, active, err)
	}
	f, _ := query.ParseFilter("roles.beginDate>='2026-08-01' AND roles.org.sourcedId='org-school-a'")
	q := all(records.User)
	q.Filter = f
	res, _ := s.List(ctx, q)
	if got := ids(res.Objects); !reflect.DeepEqual(got, []string{"user-two-roles"}) {
		t.Errorf("filter on a role's date and org: got %v", got)
	}
	u["roles"] = []records.Role{{RoleType: "primary", Role: "aide", Org: T.SchoolB}}
	put(t, s, records.User, u)
	if n := count(t, s, "SELECT COUNT(*) FROM user_roles WHERE user_id = ?", "user-two-roles"); n != 1 {
		t.Errorf("user_roles rows after update: %d, want 1", n)
	}
	if _, active, _ := s.UserRoles(ctx, T.Disabled); active {
		t.Errorf("a disabled user is active")
	}
	if _, exists, err := s.UserRoles(ctx, "nobody"); exists || err != nil {
		t.Errorf("unknown user: exists %v, %v", exists, err)
	}
}

func testUserByClaim(t *testing.T, eng engine) {
	s := district(t, eng)
	id, err := s.UserByClaim(ctx, "email", "user-admin.CANARY7f3a@example.org")
	if err != nil || id != T.Admin {
		t.Errorf("by email: got %q, %v; want %s", id, err, T.Admin)
	}
	id, err = s.UserByClaim(ctx, "username", T.TeacherA)
	if err != nil || id != T.TeacherA {
		t.Errorf("by username: got %q, %v", id, err)
	}
	_, err = s.UserByClaim(ctx, "email", "nobody@example.org")
	wantCode(t, err, records.Unauthorized)
	// Two users with one email: nobody.
	put(t, s, records.User, records.Object{"sourcedId": "user-twin", "status": "active", "enabledUser": "true", "givenName": "T", "familyName": "Twin",
		"email": "user-admin.CANARY7f3a@example.org", "roles": []records.Role{{RoleType: "primary", Role: "aide", Org: T.SchoolA}}})
	_, err = s.UserByClaim(ctx, "email", "user-admin.CANARY7f3a@example.org")
	wantCode(t, err, records.Unauthorized)
}

// tables lists the database's tables.
func tables(t testing.TB, s *sqlstore.Store) []string {
	t.Helper()
	q := "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
	if s.Engine() == "postgres" {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"
	}
	rows, err := s.RawDB().QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func testSealed(t *testing.T, eng engine) {
	s := district(t, eng)
	// Every value of every row of every table, as bytes: no sensitive plaintext.
	secrets := []string{T.Canary, T.EligibleBirth, "2012-03-01", "Springfield"}
	cells := 0
	for _, table := range tables(t, s) {
		rows, err := s.RawDB().QueryContext(ctx, "SELECT * FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				cells++
				b := []byte(fmt.Sprint(v))
				if bs, ok := v.([]byte); ok {
					b = bs
				}
				for _, sec := range secrets {
					if bytes.Contains(b, []byte(sec)) {
						t.Errorf("%s.%s holds plaintext %q", table, cols[i], sec)
					}
				}
			}
		}
		rows.Close()
	}
	if cells < 500 {
		t.Fatalf("scanned %d cells; the district should fill more", cells)
	}
	// The sealed column is ciphertext, distinct per row, and opens to the values.
	var sealed []byte
	if err := s.RawDB().QueryRowContext(ctx, s.Rebind("SELECT sealed FROM demographics WHERE sourced_id = ?"), T.Eligible).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if len(sealed) < 40 || bytes.Contains(sealed, []byte("birthDate")) {
		t.Errorf("sealed column: %d bytes %q; want ciphertext", len(sealed), sealed)
	}
	birth, grades, err := s.Birth(ctx, T.Eligible)
	if err != nil || birth != T.EligibleBirth || !reflect.DeepEqual(grades, []string{"12"}) {
		t.Errorf("Birth: got %q %v %v; want %s [12]", birth, grades, err, T.EligibleBirth)
	}
	// A projection opens only what it names; Hidden fields are never opened.
	got, err := s.Get(ctx, sqlstore.Query{Entity: records.Demographics, Fields: []string{"birthDate"}}, T.Minor)
	if err != nil || got.Str("birthDate") != "2012-03-01" || got["cityOfBirth"] != nil {
		t.Errorf("projection: got %v, %v", got, err)
	}
	hide := func(f *records.Field) bool { return f.Name == "email" }
	got, _ = s.Get(ctx, sqlstore.Query{Entity: records.User, Hidden: hide}, T.Minor)
	if got["email"] != nil || got.Str("phone") == "" {
		t.Errorf("hidden email: got email %v phone %v", got["email"], got["phone"])
	}
	// The same value under two subjects' keys is two different ciphertexts.
	var a, b []byte
	s.RawDB().QueryRowContext(ctx, s.Rebind("SELECT sealed FROM demographics WHERE sourced_id = ?"), T.StudentB).Scan(&a)
	s.RawDB().QueryRowContext(ctx, s.Rebind("SELECT sealed FROM demographics WHERE sourced_id = ?"), T.StudentC).Scan(&b)
	if bytes.Equal(a, b) || len(a) == 0 {
		t.Errorf("two subjects' sealed fields are equal or empty")
	}
	// Crypto-shredding: without the subject's key the sealed fields are gone, the rest stays.
	if _, err := s.RawDB().ExecContext(ctx, s.Rebind("DELETE FROM subject_keys WHERE subject_id = ?"), T.StudentB); err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, sqlstore.Query{Entity: records.User}, T.StudentB)
	if err != nil || got["email"] != nil || got.Str("familyName") != "Birch" {
		t.Errorf("after the key is destroyed: got %v, %v; want the plain fields only", got, err)
	}
}

func testDelete(t *testing.T, eng engine) {
	s := district(t, eng)
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.Delete(ctx, records.Class, T.ClassC) })
	_, err := s.Get(ctx, sqlstore.Query{Entity: records.Class}, T.ClassC)
	wantCode(t, err, records.NotFound)
	if n := count(t, s, "SELECT COUNT(*) FROM class_terms WHERE owner_id = ?", T.ClassC); n != 0 {
		t.Errorf("class_terms rows left: %d", n)
	}
	err = s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.Delete(ctx, records.Class, T.ClassC) })
	wantCode(t, err, records.NotFound)
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.Delete(ctx, records.User, T.Guardian) })
	if n := count(t, s, "SELECT COUNT(*) FROM user_roles WHERE user_id = ?", T.Guardian); n != 0 {
		t.Errorf("user_roles rows left: %d", n)
	}
	if n := count(t, s, "SELECT COUNT(*) FROM user_agents WHERE owner_id = ?", T.Guardian); n != 0 {
		t.Errorf("user_agents rows left: %d", n)
	}
}

func testChangeLog(t *testing.T, eng engine) {
	s := district(t, eng)
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.Delete(ctx, records.Result, T.ResultB) })
	rows, err := s.RawDB().QueryContext(ctx, "SELECT id, entity, sourced_id, op FROM changes ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	last := int64(0)
	for rows.Next() {
		var id int64
		var e, sid, op string
		if err := rows.Scan(&id, &e, &sid, &op); err != nil {
			t.Fatal(err)
		}
		if id <= last {
			t.Errorf("change ids not increasing: %d after %d", id, last)
		}
		last = id
		got = append(got, op+" "+e+" "+sid)
	}
	var want []string
	for _, eo := range T.Objects() {
		want = append(want, "upsert "+eo.E.Name+" "+eo.O.ID())
	}
	want = append(want, "delete result "+T.ResultB)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("change log:\n got %v\nwant %v", got, want)
	}
}

func testReferrers(t *testing.T, eng engine) {
	s := district(t, eng)
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		refs, err := tx.Referrers(ctx, records.LineItem, T.LineItemB)
		if err != nil {
			return err
		}
		if want := []string{"result " + T.ResultB}; !reflect.DeepEqual(refs, want) {
			t.Errorf("referrers of a line item: got %v, want %v", refs, want)
		}
		refs, err = tx.Referrers(ctx, records.Result, T.ResultB)
		if err != nil {
			return err
		}
		if len(refs) != 0 {
			t.Errorf("referrers of a result: got %v, want none", refs)
		}
		refs, _ = tx.Referrers(ctx, records.Org, T.SchoolB)
		// One referrer per referring field is enough to refuse the delete.
		want := []string{"class " + T.ClassB, "user " + T.TeacherB, "enrollment enr-tb-b", "lineItem " + T.LineItemB}
		if !reflect.DeepEqual(refs, want) {
			t.Errorf("referrers of school B: got %v, want %v", refs, want)
		}
		return nil
	})
}

func testDirectory(t *testing.T, eng engine) {
	s := district(t, eng)
	if a, err := s.Agents(ctx, T.Minor); err != nil || !reflect.DeepEqual(a, []string{T.Guardian}) {
		t.Errorf("agents of the minor: got %v, %v", a, err)
	}
	if a, err := s.Agents(ctx, T.Guardian); err != nil || !reflect.DeepEqual(a, []string{T.Minor}) {
		t.Errorf("agents of the guardian: got %v, %v", a, err)
	}
	if birth, grades, err := s.Birth(ctx, T.TeacherA); err != nil || birth != "" || grades != nil {
		t.Errorf("birth of a teacher: got %q %v %v; want nothing", birth, grades, err)
	}
	orgs, root, err := s.ExpandOrgs(ctx, []string{T.District})
	if err != nil || !root || !reflect.DeepEqual(sorted(orgs), sorted([]string{T.District, T.SchoolA, T.SchoolB})) {
		t.Errorf("expand the district: got %v root %v %v", orgs, root, err)
	}
	orgs, root, err = s.ExpandOrgs(ctx, []string{T.SchoolA, "no-such-org"})
	if err != nil || root || !reflect.DeepEqual(orgs, []string{T.SchoolA, "no-such-org"}) {
		t.Errorf("expand a school: got %v root %v %v", orgs, root, err)
	}
	if orgs, root, _ := s.ExpandOrgs(ctx, []string{"*"}); orgs != nil || !root {
		t.Errorf("expand *: got %v root %v", orgs, root)
	}
}

func testClients(t *testing.T, eng engine) {
	s := district(t, eng)
	c := records.Client{ID: "client-1", Name: "LMS", SecretHash: []byte{0, 1, 2, 255}, Scopes: []string{"a", "b"}, Orgs: []string{T.SchoolA},
		LegalBasis: "school-official", ContractRef: "DPA-7", Purpose: "rostering"}
	c2 := c
	c2.ID, c2.ContractRef, c2.Purpose = "client-0", "", ""
	for _, x := range []records.Client{c, c2} {
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, x) })
	}
	got, err := s.Client(ctx, "client-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != c.Name || !bytes.Equal(got.SecretHash, c.SecretHash) || !reflect.DeepEqual(got.Scopes, c.Scopes) || !reflect.DeepEqual(got.Orgs, c.Orgs) ||
		got.ContractRef != "DPA-7" || got.Purpose != "rostering" || got.CreatedAt.IsZero() || got.RevokedAt != nil {
		t.Errorf("client: got %+v", got)
	}
	list, err := s.Clients(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("clients: got %+v, %v; want two", list, err)
	}
	if a, b := list[0], list[1]; a.CreatedAt.After(b.CreatedAt) || a.CreatedAt.Equal(b.CreatedAt) && a.ID > b.ID {
		t.Errorf("clients: got %s then %s; want oldest first, then by id", a.ID, b.ID)
	}
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, "client-1") })
	if got, _ := s.Client(ctx, "client-1"); got.RevokedAt == nil {
		t.Errorf("revoked client has no revocation time")
	}
	wantCode(t, s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.RevokeClient(ctx, "client-1") }), records.NotFound)
	_, err = s.Client(ctx, "nobody")
	wantCode(t, err, records.NotFound)
	// A duplicate id is refused and the first stays.
	if err := s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c2) }); err == nil {
		t.Errorf("a second client with one id was accepted")
	}
}

func testTxReads(t *testing.T, eng engine) {
	s := district(t, eng)
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		scope := records.Predicate{SQL: "t.school_id = ?", Args: []any{T.SchoolA}}
		if _, err := tx.Get(ctx, records.Class, scope, T.ClassMathA); err != nil {
			t.Errorf("tx get in scope: %v", err)
		}
		_, err := tx.Get(ctx, records.Class, scope, T.ClassB)
		wantCode(t, err, records.NotFound)
		if ok, err := tx.Exists(ctx, records.Class, scope, T.ClassB); ok || err != nil {
			t.Errorf("tx exists out of scope: %v %v", ok, err)
		}
		got, err := tx.IDs(ctx, records.Enrollment, "class_id", T.ClassMathA)
		if want := []string{"enr-eli-math", "enr-minor-math", "enr-s3-math", "enr-ta-math"}; err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("tx ids: got %v %v, want %v", got, err, want)
		}
		// A write is visible to later reads in its own transaction.
		if _, err := tx.Put(ctx, records.Category, records.Object{"sourcedId": "cat-tx", "status": "active", "title": "In tx"}, sqlstore.PutOptions{}); err != nil {
			return err
		}
		if _, err := tx.Get(ctx, records.Category, records.Predicate{}, "cat-tx"); err != nil {
			t.Errorf("read own write: %v", err)
		}
		return nil
	})
}

func event(action string, students ...string) audit.Event {
	return audit.Event{PrincipalKind: audit.KindSystem, PrincipalID: "contract", Action: action, Outcome: audit.OK, Students: students, Time: time.Now()}
}

func testAuditChain(t *testing.T, eng engine) {
	s := district(t, eng)
	before, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := s.Audit(ctx, event(fmt.Sprint("read-", i), T.Minor)); err != nil {
			t.Fatal(err)
		}
	}
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		tx.Audit(event("in-tx", T.Eligible, T.Minor))
		return nil
	})
	n, err := s.VerifyAudit(ctx)
	if err != nil || n != before+6 {
		t.Fatalf("verify: %d events, %v; want %d", n, err, before+6)
	}
	if got := count(t, s, "SELECT COUNT(*) FROM ix.audit_students WHERE student_id = ?", T.Minor); got != 6 {
		t.Errorf("audit_students rows for the minor: %d, want 6", got)
	}
	// A failed write leaves no audit event of its own (the commit is all or nothing).
	err = s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		tx.Audit(event("doomed"))
		return records.Errorf(records.Conflict, "no")
	})
	wantCode(t, err, records.Conflict)
	if got := count(t, s, "SELECT COUNT(*) FROM audit_events WHERE action = 'doomed'"); got != 0 {
		t.Errorf("events of a failed write: %d", got)
	}
	// An event inserted behind the store's back breaks the chain where it sits.
	var seq int64
	s.RawDB().QueryRowContext(ctx, "SELECT MAX(seq) FROM audit_events WHERE chain = 'test'").Scan(&seq)
	if _, err := s.RawDB().ExecContext(ctx, s.Rebind("INSERT INTO audit_events (chain, seq, time, action, principal, body, prev, hash) VALUES ('test', ?, '2026-01-01T00:00:00.000Z', 'forged', 'x:y', '{}', ?, ?)"),
		seq+1, make([]byte, 32), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	_, err = s.VerifyAudit(ctx)
	var br *audit.Break
	if !errors.As(err, &br) || br.Seq != seq+1 {
		t.Errorf("verify after a forged event: got %v, want a break at %d", err, seq+1)
	}
}

func testAppendOnly(t *testing.T, eng engine) {
	s := district(t, eng)
	if err := s.Audit(ctx, event("read", T.Minor)); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushAuditIndex(ctx); err != nil { // the student index row exists
		t.Fatal(err)
	}
	stmts := []string{
		"UPDATE audit_events SET action = 'edited'",
		"DELETE FROM audit_events",
		"UPDATE ix.audit_students SET student_id = 'someone-else'",
		"DELETE FROM ix.audit_students",
	}
	if s.Engine() == "postgres" {
		stmts = append(stmts, "TRUNCATE audit_events", "TRUNCATE ix.audit_students")
	}
	for _, q := range stmts {
		if _, err := s.RawDB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only refusal", q, err)
		}
	}
	if n, err := s.VerifyAudit(ctx); err != nil || n == 0 {
		t.Errorf("verify after refused tampering: %d, %v", n, err)
	}
}

// testSavepoints holds the committer on one write until many more are queued, so they
// share one transaction; a third of them fail in different ways (an error, a failing
// SQL statement that aborts a PostgreSQL transaction, a panic), and none of that may
// undo or block the others.
// holdCommitter starts a write that keeps the committer busy until release is closed;
// inFirst is closed once it does, and first receives its result.
func holdCommitter(s *sqlstore.Store) (release chan struct{}, inFirst chan struct{}, first chan error) {
	release, inFirst, first = make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		first <- s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			close(inFirst)
			<-release
			return nil
		})
	}()
	return release, inFirst, first
}

func testSavepoints(t *testing.T, eng engine) {
	s := district(t, eng)
	const n = 60
	release, inFirst, first := holdCommitter(s)
	<-inFirst
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("cat-batch-%02d", i)
			errs[i] = s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
				if _, err := tx.Put(ctx, records.Category, records.Object{"sourcedId": id, "status": "active", "title": id}, sqlstore.PutOptions{}); err != nil {
					return err
				}
				switch i % 6 {
				case 1:
					return records.Errorf(records.Conflict, "refused")
				case 3:
					return tx.Exec(ctx, "INSERT INTO no_such_table VALUES (1)")
				case 5:
					panic("a bug in a write function")
				}
				return nil
			}, event("batch", fmt.Sprint(i)))
		}(i)
	}
	for s.QueuedWrites() < n {
		time.Sleep(time.Millisecond) // waiting on a condition: every write queued behind the first
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		id := fmt.Sprintf("cat-batch-%02d", i)
		_, gerr := s.Get(ctx, sqlstore.Query{Entity: records.Category}, id)
		if i%2 == 0 {
			if err != nil || gerr != nil {
				t.Errorf("write %d: %v; read back: %v", i, err, gerr)
			}
		} else {
			if err == nil || !records.IsNotFound(gerr) {
				t.Errorf("failing write %d: got %v, and it left %v (want not found)", i, err, gerr)
			}
			if records.ErrorCode(err) == records.Unavailable {
				t.Errorf("failing write %d failed the whole batch: %v", i, err)
			}
		}
	}
	if got := count(t, s, "SELECT COUNT(*) FROM changes WHERE sourced_id LIKE 'cat-batch-%'"); got != n/2 {
		t.Errorf("change log rows of the batch: %d, want %d", got, n/2)
	}
	if got := count(t, s, "SELECT COUNT(*) FROM audit_events WHERE action = 'batch'"); got != n/2 {
		t.Errorf("audit events of the batch: %d, want %d", got, n/2)
	}
	if _, err := s.VerifyAudit(ctx); err != nil {
		t.Errorf("verify: %v", err)
	}
}

// testCancelledWrite cancels a caller's context while its statement runs inside the
// shared batch transaction: that write fails, its neighbours commit.
func testCancelledWrite(t *testing.T, eng engine) {
	s := district(t, eng)
	release, inFirst, first := holdCommitter(s)
	<-inFirst
	const slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000) SELECT COUNT(*) FROM c"
	cctx, cancel := context.WithCancel(ctx)
	started := make(chan struct{})
	var wg sync.WaitGroup
	var slowErr error
	neighbour := make([]error, 4)
	wg.Add(1)
	go func() {
		defer wg.Done()
		slowErr = s.Write(cctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			close(started)
			return tx.Exec(ctx, slow)
		})
	}()
	for i := range neighbour {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("cat-neighbour-%d", i)
			neighbour[i] = s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.Put(ctx, records.Category, records.Object{"sourcedId": id, "status": "active", "title": id}, sqlstore.PutOptions{})
				return err
			})
		}(i)
	}
	for s.QueuedWrites() < len(neighbour)+1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-started
	time.Sleep(100 * time.Millisecond) // let the slow statement reach the server
	start := time.Now()
	cancel()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(slowErr, context.Canceled) && slowErr == nil {
		t.Errorf("cancelled write: got %v, want an error", slowErr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the cancelled statement ran on for %v", d)
	}
	for i, err := range neighbour {
		if err != nil {
			t.Errorf("neighbour %d: %v", i, err)
		}
		if _, err := s.Get(ctx, sqlstore.Query{Entity: records.Category}, fmt.Sprintf("cat-neighbour-%d", i)); err != nil {
			t.Errorf("neighbour %d read back: %v", i, err)
		}
	}
	// The writer connection is still good.
	put(t, s, records.Category, records.Object{"sourcedId": "cat-after", "status": "active", "title": "after"})
}

func testTwoInstances(t *testing.T, eng engine) {
	o := eng.fresh(t)
	o.Vault = newVault(t)
	a := open(t, withChain(o, "instance-a"))
	b := open(t, withChain(o, "instance-b"))
	if err := T.Load(ctx, a); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 50; i++ {
		for _, s := range []*sqlstore.Store{a, b} {
			wg.Add(1)
			go func(s *sqlstore.Store, i int) {
				defer wg.Done()
				errs <- s.Audit(ctx, event("read", T.Minor))
			}(s, i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.VerifyAudit(ctx); err != nil || n != 100 {
		t.Fatalf("verify both chains: %d events, %v; want 100", n, err)
	}
	for _, chain := range []string{"instance-a", "instance-b"} {
		if got := count(t, a, "SELECT COUNT(*) FROM audit_events WHERE chain = ?", chain); got != 50 {
			t.Errorf("events of %s: %d, want 50", chain, got)
		}
	}
	// What one instance writes the other reads.
	if _, err := b.Get(ctx, sqlstore.Query{Entity: records.User}, T.Minor); err != nil {
		t.Errorf("read through the second instance: %v", err)
	}
}

func withChain(o sqlstore.Options, chain string) sqlstore.Options {
	o.Chain = chain
	return o
}

func testMigrations(t *testing.T, eng engine) {
	o := eng.fresh(t)
	o.Vault = newVault(t)
	if eng.name == "sqlite" {
		// SQLite's switch of a brand-new file to WAL cannot be raced (SQLITE_BUSY
		// without the busy handler): create the file first; the racers then find the
		// schema in place. PostgreSQL instances race from an empty database.
		open(t, withChain(o, "creator")).Close()
	}
	const racers = 4
	stores := make([]*sqlstore.Store, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range stores {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			oi := withChain(o, fmt.Sprint("racer-", i))
			oi.Logger = quiet
			stores[i], errs[i] = sqlstore.Open(ctx, oi)
		}(i)
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("racing open %d: %v", i, err)
			continue
		}
		if err := stores[i].Ping(ctx); err != nil {
			t.Errorf("racer %d ping: %v", i, err)
		}
	}
	for _, s := range stores {
		if s != nil {
			s.Close()
		}
	}
	if t.Failed() {
		return
	}
	s := open(t, withChain(o, "again"))
	if err := T.Load(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, withChain(o, "once-more"))
	if got := count(t, s, "SELECT COUNT(*) FROM users"); got != len(allUsers) {
		t.Errorf("users after reopening: %d, want %d", got, len(allUsers))
	}
	var versions, max int
	s.RawDB().QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&versions, &max)
	if versions != max || versions == 0 {
		t.Errorf("schema_migrations: %d rows up to version %d; want one row per version", versions, max)
	}
}

func testPing(t *testing.T, eng engine) {
	s := district(t, eng)
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	// A newer binary's schema: this one refuses to serve it.
	if _, err := s.RawDB().ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'future')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Errorf("ping on a newer schema: got nil, want an error")
	}
}
