package sqlstore_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"registrar/audit"
	"registrar/authz"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"

	T "registrar/internal/testdistrict"
)

// List's totals and the count cache (counts.go), on both engines: on SQLite a total is
// reused while nothing it reads has changed; on PostgreSQL the cache is off. Either
// way, the total on every page is the fresh count.
func TestCountCache(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, eng engine)
	}{
		{"a total is the fresh count after every kind of write, scoped or not", testCountsFollowWrites},
		{"a total is the fresh count after imports and a mark-absent pass", testCountsFollowImports},
		{"a write to an entity the count does not read keeps the entry", testCountsKeepUnrelated},
		{"principals with different scopes never share an entry", testCountsPerScope},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, c.fn)
		})
	}
}

// countCase is a list whose total is checked; q is called each time (a scope is
// resolved again after every write, as a request would).
type countCase struct {
	name string
	q    func(t *testing.T) sqlstore.Query
}

// totals returns the total List reports on q's second page (counted, or taken from
// the count cache) and the oracle: the number of rows of one page that holds them all
// (List counts nothing then).
func totals(t *testing.T, s *sqlstore.Store, q sqlstore.Query) (paged, rows int) {
	t.Helper()
	q.Page = query.Page{Limit: 1, Offset: 1}
	res, err := s.List(ctx, q)
	if err != nil {
		t.Fatalf("list %s: %v", q.Entity.Name, err)
	}
	q.Page = query.Page{Limit: 100000}
	all, err := s.List(ctx, q)
	if err != nil {
		t.Fatalf("list %s: %v", q.Entity.Name, err)
	}
	return res.Total, len(all.Objects)
}

// checkTotals primes every case's entry, checks that a second page is served from
// the cache on SQLite (and nothing is cached on PostgreSQL), and returns the rows of
// each case.
func checkTotals(t *testing.T, s *sqlstore.Store, eng engine, when string, cases []countCase) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, c := range cases {
		q := c.q(t)
		paged, rows := totals(t, s, q)
		if paged != rows {
			t.Errorf("%s: %s: total %d, want %d (the fresh count)", when, c.name, paged, rows)
		}
		out[c.name] = rows
		h0, m0, _ := s.CountCacheStats()
		if again, _ := totals(t, s, q); again != rows {
			t.Errorf("%s: %s: total %d on the next page, want %d", when, c.name, again, rows)
		}
		h1, m1, n := s.CountCacheStats()
		switch {
		case eng.name == "sqlite" && (h1 != h0+1 || m1 != m0):
			t.Errorf("%s: %s: the next page took %d hits and %d misses, want 1 hit", when, c.name, h1-h0, m1-m0)
		case eng.name != "sqlite" && n != 0:
			t.Errorf("%s: the count cache holds %d entries on %s, where it is off", when, n, eng.name)
		}
	}
	return out
}

func resolved(t *testing.T, s *sqlstore.Store, who string, e *records.Entity) records.Predicate {
	t.Helper()
	sc, err := authz.Resolve(ctx, s, &authz.Principal{Kind: "user", ID: who}, T.Today)
	if err != nil {
		t.Fatalf("resolve %s: %v", who, err)
	}
	return sc.Rows(e)
}

var isStudent = records.Predicate{SQL: "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student')"}

func testCountsFollowWrites(t *testing.T, eng engine) {
	v := newVault(t)
	o := eng.fresh(t)
	o.Vault = v
	s := open(t, o)
	if err := T.Load(ctx, s); err != nil {
		t.Fatal(err)
	}
	scoped := func(who string, e *records.Entity, where ...records.Predicate) func(t *testing.T) sqlstore.Query {
		return func(t *testing.T) sqlstore.Query {
			return sqlstore.Query{Entity: e, Scope: resolved(t, s, who, e), Where: where}
		}
	}
	plain := func(e *records.Entity, where ...records.Predicate) func(t *testing.T) sqlstore.Query {
		return func(*testing.T) sqlstore.Query { return sqlstore.Query{Entity: e, Where: where} }
	}
	sql := func(q string, args ...any) records.Predicate { return records.Predicate{SQL: q, Args: args} }
	cases := []countCase{
		{"students", plain(records.User, isStudent)},
		{"students, as the district administrator", scoped(T.Admin, records.User, isStudent)},
		{"enrollments, as the district administrator", scoped(T.Admin, records.Enrollment)},
		{"users, as the counselor", scoped(T.Counselor, records.User)},
		{"results, as the principal", scoped(T.PrincipalA, records.Result)},
		{"demographics, as the principal (user_roles in the scope)", scoped(T.PrincipalA, records.Demographics)},
		{"results, as the district administrator", scoped(T.Admin, records.Result)},
		{"enrollments in classes of term 2 (another entity's link table)", plain(records.Enrollment, sql("t.class_id IN (SELECT l.owner_id FROM class_terms l WHERE l.ref_id = ?)", T.Term2))},
		{"users who list the minor as an agent (a link table)", plain(records.User, sql("t.sourced_id IN (SELECT a.owner_id FROM user_agents a WHERE a.ref_id = ?)", T.Minor))},
		{"the counselor's caseload (the caseloads table)", plain(records.User, sql("t.sourced_id IN (SELECT c.student_id FROM caseloads c WHERE c.counselor_id = ?)", T.Counselor))},
		{"the guardian's dependents (the dependents table)", plain(records.User, sql("t.sourced_id IN (SELECT d.student_id FROM dependents d WHERE d.guardian_id = ?)", T.Guardian2))},
	}
	const newStudent, newEnrollment = "user-count-new", "enr-count-new"
	steps := []struct {
		name    string
		write   func(ctx context.Context, tx *sqlstore.Tx) error
		purge   string // a student to purge instead
		changes []string
	}{
		{name: "a student is put", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.Put(ctx, records.User, records.Object{"sourcedId": newStudent, "status": "active", "enabledUser": "true", "givenName": "New", "familyName": "Student",
				"roles": []records.Role{{RoleType: "primary", Role: "student", Org: T.SchoolA}}}, sqlstore.PutOptions{})
			return err
		}, changes: []string{"students", "students, as the district administrator", "users, as the counselor"}},
		{name: "an enrollment is put", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.Put(ctx, records.Enrollment, records.Object{"sourcedId": newEnrollment, "status": "active", "user": newStudent, "class": T.ClassMathA, "school": T.SchoolA, "role": "student"}, sqlstore.PutOptions{})
			return err
		}, changes: []string{"enrollments, as the district administrator"}},
		{name: "a class is moved to term 2", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			c, err := tx.Get(ctx, records.Class, records.Predicate{}, T.ClassSciA)
			if err != nil {
				return err
			}
			c["terms"] = []string{T.Term2}
			_, err = tx.Put(ctx, records.Class, c, sqlstore.PutOptions{})
			return err
		}, changes: []string{"enrollments in classes of term 2 (another entity's link table)"}},
		{name: "a result is deleted", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			return tx.Delete(ctx, records.Result, T.ResultB)
		}, changes: []string{"results, as the district administrator"}},
		{name: "a student moves to school B", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			u, err := tx.Get(ctx, records.User, records.Predicate{}, T.Eligible)
			if err != nil {
				return err
			}
			u["roles"] = []records.Role{{RoleType: "primary", Role: "student", Org: T.SchoolB}}
			u["primaryOrg"] = T.SchoolB
			_, err = tx.Put(ctx, records.User, u, sqlstore.PutOptions{})
			return err
		}, changes: []string{"users, as the counselor", "demographics, as the principal (user_roles in the scope)"}},
		{name: "the enrollment is deleted", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			return tx.Delete(ctx, records.Enrollment, newEnrollment)
		}, changes: []string{"enrollments, as the district administrator"}},
		{name: "a caseload is set", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.SetCaseload(ctx, T.Counselor, []string{T.Minor, T.Student3}, "user:test")
			return err
		}, changes: []string{"users, as the counselor", "the counselor's caseload (the caseloads table)"}},
		{name: "a dependency flag is recorded", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			_, _, err := tx.SetDependent(ctx, T.Eligible, T.Guardian2, "user:test")
			return err
		}, changes: []string{"the guardian's dependents (the dependents table)"}},
		{name: "a student is purged", purge: T.Minor, changes: []string{
			"students", "students, as the district administrator", "enrollments, as the district administrator", "users, as the counselor",
			"results, as the principal", "results, as the district administrator", "demographics, as the principal (user_roles in the scope)",
			"enrollments in classes of term 2 (another entity's link table)", "users who list the minor as an agent (a link table)",
			"the counselor's caseload (the caseloads table)"}},
		{name: "the dependency flag is cleared", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ClearDependent(ctx, T.Eligible, T.Guardian2)
			return err
		}, changes: []string{"the guardian's dependents (the dependents table)"}},
		{name: "the caseload is cleared", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.ClearCaseload(ctx, T.Counselor)
			return err
		}, changes: []string{"users, as the counselor", "the counselor's caseload (the caseloads table)"}},
		{name: "the new student is deleted", write: func(ctx context.Context, tx *sqlstore.Tx) error {
			return tx.Delete(ctx, records.User, newStudent)
		}, changes: []string{"students", "students, as the district administrator", "users, as the counselor"}},
	}
	before := checkTotals(t, s, eng, "the test district", cases)
	for _, st := range steps {
		if st.purge != "" {
			ev := audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "count-test"}
			if _, err := s.Purge(ctx, sqlstore.PurgeRequest{Student: st.purge, Event: ev, Signer: v}); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		} else {
			write(t, s, st.write)
		}
		after := checkTotals(t, s, eng, "after "+st.name, cases)
		// The control: the write changed what it should (else a stale total could pass).
		var changed []string
		for _, c := range cases {
			if after[c.name] != before[c.name] {
				changed = append(changed, c.name)
			}
		}
		slices.Sort(changed)
		want := slices.Sorted(slices.Values(st.changes))
		if !slices.Equal(changed, want) {
			t.Errorf("after %s: the counts of %q changed, want %q", st.name, changed, want)
		}
		before = after
	}
}

func testCountsFollowImports(t *testing.T, eng engine) {
	s := open(t, eng.fresh(t))
	importPackage(t, s, goldenPackage("bulk"))
	q := func(e *records.Entity, where ...records.Predicate) func(*testing.T) sqlstore.Query {
		return func(*testing.T) sqlstore.Query { return sqlstore.Query{Entity: e, Where: where} }
	}
	active := records.Predicate{SQL: "t.status = 'active'"}
	ofSchool := records.Predicate{SQL: "t.sourced_id IN (SELECT r.user_id FROM user_roles r WHERE r.org_id IN (?))", Args: []any{"org-s1"}}
	cases := []countCase{
		{"users", q(records.User)},
		{"users of org-s1 (a scope's shape)", q(records.User, ofSchool)},
		{"active classes", q(records.Class, active)},
		{"active enrollments", q(records.Enrollment, active)},
		{"active users", q(records.User, active)},
	}
	before := checkTotals(t, s, eng, "the bulk package", cases)
	for _, pkg := range []string{"delta", "bulk"} { // the bulk package again marks what the delta added
		importPackage(t, s, goldenPackage(pkg))
		after := checkTotals(t, s, eng, "after the "+pkg+" package", cases)
		if maps.Equal(before, after) {
			t.Errorf("the %s package changed none of the counts %v", pkg, after)
		}
		before = after
	}
}

func testCountsKeepUnrelated(t *testing.T, eng engine) {
	s := district(t, eng)
	q := sqlstore.Query{Entity: records.User, Scope: resolved(t, s, T.Admin, records.User), Where: []records.Predicate{isStudent}}
	want := checkTotals(t, s, eng, "the test district", []countCase{{"students", func(*testing.T) sqlstore.Query { return q }}})["students"]

	h0, m0, _ := s.CountCacheStats()
	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		r, err := tx.Get(ctx, records.Result, records.Predicate{}, T.ResultMinA)
		if err != nil {
			return err
		}
		r["comment"] = "regraded"
		_, err = tx.Put(ctx, records.Result, r, sqlstore.PutOptions{})
		return err
	})
	if got, rows := totals(t, s, q); got != want || rows != want {
		t.Fatalf("after a result was posted: total %d of %d rows, want %d", got, rows, want)
	}
	h1, m1, _ := s.CountCacheStats()
	if eng.name == "sqlite" && (h1 != h0+1 || m1 != m0) {
		t.Errorf("after a result was posted: %d hits, %d misses; want the entry kept (1 hit)", h1-h0, m1-m0)
	}

	write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
		u, err := tx.Get(ctx, records.User, records.Predicate{}, T.Student3)
		if err != nil {
			return err
		}
		u["middleName"] = "Renamed"
		_, err = tx.Put(ctx, records.User, u, sqlstore.PutOptions{})
		return err
	})
	if got, _ := totals(t, s, q); got != want {
		t.Fatalf("after a user was renamed: total %d, want %d", got, want)
	}
	h2, m2, _ := s.CountCacheStats()
	if eng.name == "sqlite" && (h2 != h1 || m2 != m1+1) {
		t.Errorf("after a user was put: %d hits, %d misses; want the entry counted again (1 miss)", h2-h1, m2-m1)
	}
}

func testCountsPerScope(t *testing.T, eng engine) {
	s := district(t, eng)
	ofOrg := func(org string) records.Predicate {
		return records.Predicate{SQL: "t.sourced_id IN (SELECT r.user_id FROM user_roles r WHERE r.org_id IN (?))", Args: []any{org}}
	}
	scopes := map[string]records.Predicate{
		"users of school A (same SQL as B)": ofOrg(T.SchoolA),
		"users of school B (same SQL as A)": ofOrg(T.SchoolB),
	}
	for _, who := range []string{T.Admin, T.PrincipalA, T.Counselor, T.TeacherA, T.TeacherB, T.Guardian, T.Minor, T.StudentB} {
		scopes[who] = resolved(t, s, who, records.User)
	}
	names := slices.Sorted(maps.Keys(scopes))
	want := map[string]int{}
	for _, name := range names {
		_, rows := totals(t, s, sqlstore.Query{Entity: records.User, Scope: scopes[name]})
		want[name] = rows
	}
	distinct := map[int]bool{}
	for _, n := range want {
		distinct[n] = true
	}
	if len(distinct) < 4 {
		t.Fatalf("the scopes see too few different totals to tell them apart: %v", want)
	}
	// Twice round, in both orders: every principal gets its own total, counted once.
	reversed := slices.Clone(names)
	slices.Reverse(reversed)
	for round, order := range [][]string{names, reversed} {
		for _, name := range order {
			got, _ := totals(t, s, sqlstore.Query{Entity: records.User, Scope: scopes[name]})
			if got != want[name] {
				t.Errorf("round %d: %s: total %d, want %d", round+1, name, got, want[name])
			}
		}
	}
	// Two scopes share an entry only when their SQL and arguments are the same (the
	// principal of school A and the hand-made predicate for school A).
	same := map[string][]string{}
	for _, name := range names {
		k := fmt.Sprintf("%s %#v", scopes[name].SQL, scopes[name].Args)
		same[k] = append(same[k], name)
	}
	for _, group := range same {
		if len(group) > 1 {
			t.Logf("one predicate, hence one entry: %q", group)
		}
	}
	calls := int64(3 * len(names))
	if h, m, n := s.CountCacheStats(); eng.name == "sqlite" && (n != len(same) || m != int64(len(same)) || h != calls-int64(len(same))) {
		t.Errorf("%d scopes, %d distinct predicates, %d lists: %d entries, %d misses, %d hits; want one entry per predicate, counted once, then hit", len(names), len(same), calls, n, m, h)
	}
}
