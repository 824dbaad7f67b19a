package httpapi_test

// What the authorization scope costs (issue 4): the same list query over a district of
// 10,000 students, with the scope's SQL predicate and without it (an empty Scope), in
// the same run on the same store.
//
//	go test ./httpapi -run '^$' -bench AuthzScope -benchtime 2s
//
// Each sub-benchmark reports scoped-ops/s, unscoped-ops/s and their ratio.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"registrar/authz"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

const (
	azBenchSchools           = 20
	azBenchStudentsPerSchool = 500 // 10,000 students
	azBenchTeachersPerSchool = 25
	azBenchClassesPerTeacher = 4
	azBenchClassesPerStudent = 3
	azBenchDistrict          = "bench-district"
)

var azBenchIsStudent = records.Predicate{SQL: "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student')"}

// azBenchStore builds the large district: 20 schools, each with 500 students, 25
// teachers teaching 4 classes each, every student in 3 classes of their school.
func azBenchStore(b testing.TB) *sqlstore.Store {
	b.Helper()
	start := time.Now()
	dir := b.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: dir + "/bench.db", Chain: "bench", Vault: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	put := func(objs []azObject) {
		err := st.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			for _, eo := range objs {
				eo.o["status"] = records.StatusActive
				if _, err := tx.Put(ctx, eo.e, eo.o, sqlstore.PutOptions{SkipRefCheck: true}); err != nil {
					return fmt.Errorf("%s %s: %w", eo.e.Name, eo.o.ID(), err)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	put([]azObject{
		{records.Org, records.Object{"sourcedId": azBenchDistrict, "name": "Bench District", "type": "district"}},
		{records.AcademicSession, records.Object{"sourcedId": "bench-term", "title": "Fall", "type": "term", "startDate": "2026-08-20", "endDate": "2027-01-15", "schoolYear": "2027"}},
		{records.Category, records.Object{"sourcedId": "bench-cat", "title": "Homework"}},
	})
	user := func(id, role, org string) azObject {
		return azObject{records.User, records.Object{"sourcedId": id, "givenName": "Given " + id, "familyName": "Family", "enabledUser": "true",
			"username": id, "email": id + "@bench.example", "roles": []records.Role{{RoleType: "primary", Role: role, Org: org}}, "primaryOrg": org}}
	}
	put([]azObject{user("bench-admin", "districtAdministrator", azBenchDistrict)})
	for s := range azBenchSchools {
		school := fmt.Sprintf("bench-school-%02d", s)
		course := school + "-course"
		objs := []azObject{
			{records.Org, records.Object{"sourcedId": school, "name": "School " + school, "type": "school", "parent": azBenchDistrict}},
			{records.Course, records.Object{"sourcedId": course, "title": "Course", "org": school}},
		}
		classes := azBenchTeachersPerSchool * azBenchClassesPerTeacher
		for c := range classes {
			class := fmt.Sprintf("%s-class-%03d", school, c)
			objs = append(objs, azObject{records.Class, records.Object{"sourcedId": class, "title": "Class " + class, "course": course, "school": school, "terms": []string{"bench-term"}}})
		}
		for tch := range azBenchTeachersPerSchool {
			id := fmt.Sprintf("%s-teacher-%02d", school, tch)
			objs = append(objs, user(id, "teacher", school))
			for k := range azBenchClassesPerTeacher {
				class := fmt.Sprintf("%s-class-%03d", school, tch*azBenchClassesPerTeacher+k)
				objs = append(objs, azObject{records.Enrollment, records.Object{"sourcedId": id + "-" + class, "user": id, "class": class, "school": school, "role": "teacher"}})
			}
		}
		for n := range azBenchStudentsPerSchool {
			id := fmt.Sprintf("%s-student-%03d", school, n)
			objs = append(objs, user(id, "student", school))
			for k := range azBenchClassesPerStudent {
				class := fmt.Sprintf("%s-class-%03d", school, (n*azBenchClassesPerStudent+k*37)%classes)
				objs = append(objs, azObject{records.Enrollment, records.Object{"sourcedId": id + "-" + class, "user": id, "class": class, "school": school, "role": "student"}})
			}
		}
		put(objs)
	}
	b.Logf("built %d schools, %d students in %v", azBenchSchools, azBenchSchools*azBenchStudentsPerSchool, time.Since(start).Round(time.Millisecond))
	return st
}

func BenchmarkAuthzScope(b *testing.B) {
	st := azBenchStore(b)
	ctx := context.Background()
	today := time.Date(2026, 9, 15, 12, 0, 0, 0, time.UTC)
	resolve := func(b *testing.B, id string) *authz.Scope {
		sc, err := authz.Resolve(ctx, st, &authz.Principal{Kind: "user", ID: id}, today)
		if err != nil {
			b.Fatal(err)
		}
		return sc
	}
	// measure runs op with and without the scope, alternately, timing each side.
	measure := func(b *testing.B, scoped, unscoped func() int) {
		var ts, tu time.Duration
		var rows, rowsU int
		for b.Loop() {
			t0 := time.Now()
			rows = scoped()
			t1 := time.Now()
			rowsU = unscoped()
			tu += time.Since(t1)
			ts += t1.Sub(t0)
		}
		n := float64(b.N)
		b.ReportMetric(n/ts.Seconds(), "scoped-ops/s")
		b.ReportMetric(n/tu.Seconds(), "unscoped-ops/s")
		b.ReportMetric(ts.Seconds()/tu.Seconds(), "scoped/unscoped-time")
		b.ReportMetric(float64(rows), "scoped-rows")
		b.ReportMetric(float64(rowsU), "unscoped-rows")
	}
	list := func(b *testing.B, q sqlstore.Query) sqlstore.Result {
		res, err := st.List(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		return res
	}

	b.Run("a teacher lists their students", func(b *testing.B) {
		const teacher = "bench-school-07-teacher-03"
		q := func(scope records.Predicate) sqlstore.Query {
			return sqlstore.Query{Entity: records.User, Scope: scope, Where: []records.Predicate{azBenchIsStudent}, Page: query.Page{Limit: 100}}
		}
		measure(b, func() int {
			sc := resolve(b, teacher) // resolving the principal is part of every request
			return list(b, q(sc.Rows(records.User))).Total
		}, func() int {
			return list(b, q(records.Predicate{})).Total
		})
	})

	b.Run("the district administrator pages through all students", func(b *testing.B) {
		const limit = 1000
		page := func(scope func() records.Predicate) int {
			n := 0
			for off := 0; ; off += limit {
				res := list(b, sqlstore.Query{Entity: records.User, Scope: scope(), Where: []records.Predicate{azBenchIsStudent}, Page: query.Page{Limit: limit, Offset: off}})
				n += len(res.Objects)
				if len(res.Objects) < limit {
					return n
				}
			}
		}
		measure(b, func() int {
			sc := resolve(b, "bench-admin")
			return page(func() records.Predicate { return sc.Rows(records.User) })
		}, func() int {
			return page(func() records.Predicate { return records.Predicate{} })
		})
	})
}
