package sqlstore_test

import (
	"context"
	"fmt"
	"testing"

	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"

	T "registrar/internal/testdistrict"
)

// classSize is the number of students in the benchmarked class (the district's three
// and these).
const classSize = 30

// BenchmarkReads measures the two reads every roster request makes, on SQLite and
// PostgreSQL in one run: one user by sourcedId (every sealed field opened) and one
// class's students (the getStudentsForClass route's relation). ops/s is per
// goroutine-serial call; the parallel variants show what the read pool sustains.
//
//	go test -run '^$' -bench Reads ./sqlstore
func BenchmarkReads(b *testing.B) {
	for _, eng := range engines {
		s := benchStore(b, eng)
		students := sqlstore.Query{Entity: records.User, Page: query.Page{Limit: 100}, NoCount: true, Where: []records.Predicate{
			{SQL: "t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id = ? AND e.role = 'student' AND e.status = 'active')", Args: []any{T.ClassMathA}},
			{SQL: "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student')"},
		}}
		get := func(ctx context.Context) error {
			_, err := s.Get(ctx, sqlstore.Query{Entity: records.User}, T.Minor)
			return err
		}
		list := func(ctx context.Context) error {
			res, err := s.List(ctx, students)
			if err == nil && len(res.Objects) != classSize+3 {
				err = fmt.Errorf("got %d students, want %d", len(res.Objects), classSize+3)
			}
			return err
		}
		for _, op := range []struct {
			name string
			fn   func(context.Context) error
		}{{"get-user", get}, {"list-class-students", list}} {
			b.Run(eng.name+"/"+op.name, func(b *testing.B) {
				for b.Loop() {
					if err := op.fn(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
			b.Run(eng.name+"/"+op.name+"/parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op.fn(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

// benchStore is the test district with classSize more students in one class.
func benchStore(b *testing.B, eng engine) *sqlstore.Store {
	s := district(b, eng)
	err := s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		for i := 0; i < classSize; i++ {
			id := fmt.Sprintf("user-bench-%02d", i)
			u := records.Object{"sourcedId": id, "status": "active", "enabledUser": "true", "givenName": "Bench", "familyName": fmt.Sprint("Student ", i),
				"email": id + "@example.org", "phone": "555-0199", "identifier": "SID-" + id, "grades": []string{"08"},
				"roles": []records.Role{{RoleType: "primary", Role: "student", Org: T.SchoolA}}}
			e := records.Object{"sourcedId": "enr-" + id, "status": "active", "user": id, "class": T.ClassMathA, "school": T.SchoolA, "role": "student"}
			for _, x := range []struct {
				e *records.Entity
				o records.Object
			}{{records.User, u}, {records.Enrollment, e}} {
				if errs := records.Validate(x.e, x.o); len(errs) > 0 {
					return records.InvalidFields(x.o.ID(), errs)
				}
				if _, err := tx.Put(ctx, x.e, x.o, sqlstore.PutOptions{}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}
