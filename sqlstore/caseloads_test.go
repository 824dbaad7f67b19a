package sqlstore_test

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"registrar/audit"
	"registrar/authz"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"

	T "registrar/internal/testdistrict"
)

// Caseloads and dependency flags on both engines: set, replaced, read, cleared,
// logged under the names the scope cache watches, and removed with a purged student.
func TestCaseloadsAndDependencyFlags(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		v := newVault(t)
		o := eng.fresh(t)
		o.Vault = v
		s := open(t, o)
		if err := T.Load(ctx, s); err != nil {
			t.Fatal(err)
		}
		caseload := func() []string {
			t.Helper()
			got, err := s.Caseload(ctx, T.Counselor)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if got := caseload(); len(got) != 0 {
			t.Fatalf("a fresh district has a caseload: %v", got)
		}

		var replaced bool
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) (err error) {
			replaced, err = tx.SetCaseload(ctx, T.Counselor, []string{T.Minor, T.StudentB, T.Minor}, "user:first")
			return err
		})
		if replaced {
			t.Error("the first caseload reports it replaced one")
		}
		if got, want := caseload(), []string{T.StudentB, T.Minor}; !slices.Equal(got, want) {
			t.Errorf("caseload %v, want %v", got, want)
		}
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) (err error) {
			replaced, err = tx.SetCaseload(ctx, T.Counselor, []string{T.Minor, T.Eligible}, "user:second")
			return err
		})
		if !replaced {
			t.Error("the second caseload does not report it replaced the first")
		}
		entries, err := s.CaseloadEntries(ctx, T.Counselor)
		if err != nil {
			t.Fatal(err)
		}
		var by []string
		for _, e := range entries {
			if e.SetAt == "" {
				t.Errorf("entry %+v has no time", e)
			}
			by = append(by, e.Student+" "+e.SetBy)
		}
		// Minor stays as first set; StudentB is gone; Eligible is new.
		if want := []string{T.Eligible + " user:second", T.Minor + " user:first"}; !slices.Equal(by, want) {
			t.Errorf("entries %v, want %v", by, want)
		}

		var created bool
		var d sqlstore.Dependency
		for i, want := range []bool{true, false} {
			write(t, s, func(ctx context.Context, tx *sqlstore.Tx) (err error) {
				d, created, err = tx.SetDependent(ctx, T.Eligible, T.Guardian2, "user:admin"+string(rune('0'+i)))
				return err
			})
			if created != want || d.RecordedBy != "user:admin0" || d.RecordedAt == "" {
				t.Errorf("SetDependent #%d: created %v, %+v; want created %v, recorded by the first caller", i+1, created, d, want)
			}
		}
		if got, err := s.Dependents(ctx, T.Guardian2); err != nil || !slices.Equal(got, []string{T.Eligible}) {
			t.Errorf("Dependents = %v, %v", got, err)
		}
		if got, err := s.Dependencies(ctx, T.Eligible); err != nil || len(got) != 1 || got[0] != d {
			t.Errorf("Dependencies = %+v, %v, want [%+v]", got, err, d)
		}
		for i, want := range []bool{true, false} {
			var had bool
			write(t, s, func(ctx context.Context, tx *sqlstore.Tx) (err error) {
				had, err = tx.ClearDependent(ctx, T.Eligible, T.Guardian2)
				return err
			})
			if had != want {
				t.Errorf("ClearDependent #%d: had %v, want %v", i+1, had, want)
			}
		}
		for i, want := range []bool{true, false} {
			var had bool
			write(t, s, func(ctx context.Context, tx *sqlstore.Tx) (err error) {
				had, err = tx.ClearCaseload(ctx, T.Counselor)
				return err
			})
			if had != want {
				t.Errorf("ClearCaseload #%d: had %v, want %v", i+1, had, want)
			}
		}
		if got := caseload(); len(got) != 0 {
			t.Errorf("a cleared caseload: %v", got)
		}

		// A purged student leaves no caseload entry or dependency flag behind.
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
			if _, err := tx.SetCaseload(ctx, T.Counselor, []string{T.Eligible, T.Minor}, "user:admin"); err != nil {
				return err
			}
			_, _, err := tx.SetDependent(ctx, T.Eligible, T.Guardian2, "user:admin")
			return err
		})
		res, err := s.Purge(ctx, sqlstore.PurgeRequest{Student: T.Eligible, Event: audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "registrar-office"}, Signer: v})
		if err != nil {
			t.Fatal(err)
		}
		if cert := res.Body; cert.Deleted["caseloads"] != 1 || cert.Deleted["dependents"] != 1 {
			t.Errorf("the certificate counts %d caseload entries and %d dependency flags, want 1 and 1", cert.Deleted["caseloads"], cert.Deleted["dependents"])
		}
		if got := caseload(); !slices.Equal(got, []string{T.Minor}) {
			t.Errorf("after the purge the caseload is %v, want %v", got, []string{T.Minor})
		}
		if got, _ := s.Dependents(ctx, T.Guardian2); len(got) != 0 {
			t.Errorf("after the purge the guardian still has dependents %v", got)
		}

		// Every change is in the change log, under the names the scope cache watches.
		rows, err := s.RawDB().QueryContext(ctx, "SELECT entity, sourced_id, op FROM changes WHERE entity IN ('caseload', 'dependent') ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var log []string
		for rows.Next() {
			var e, id, op string
			if err := rows.Scan(&e, &id, &op); err != nil {
				t.Fatal(err)
			}
			log = append(log, op+" "+e+" "+id)
		}
		c, dp := authz.ChangeCaseload, authz.ChangeDependent
		want := []string{
			"upsert " + c + " " + T.Counselor, "upsert " + c + " " + T.Counselor, // set, replaced
			"upsert " + dp + " " + T.Eligible,                                    // recorded (the second time changed nothing)
			"delete " + dp + " " + T.Eligible, "delete " + c + " " + T.Counselor, // cleared (the second time found nothing)
			"upsert " + c + " " + T.Counselor, "upsert " + dp + " " + T.Eligible, // set again
			"upsert " + c + " " + T.Counselor, "delete " + dp + " " + T.Eligible, // the purge
		}
		if !reflect.DeepEqual(log, want) {
			t.Errorf("change log:\n got %v\nwant %v", log, want)
		}
	})
}

// The authorization predicates of a counselor with a caseload and of a parent with a
// dependency flag, resolved through the store and run on both engines: the same rows.
func TestCaseloadAndDependentScopesOnBothEngines(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		s := district(t, eng)
		visible := func(who string, e *records.Entity) []string {
			t.Helper()
			sc, err := authz.Resolve(ctx, s, &authz.Principal{Kind: "user", ID: who}, T.Today)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.List(ctx, sqlstore.Query{Entity: e, Scope: sc.Rows(e), Page: query.Page{Limit: 1000}, Hidden: func(f *records.Field) bool { return sc.Hidden(e, f) }})
			if err != nil {
				t.Fatalf("%s lists %s: %v", who, e.Name, err)
			}
			var out []string
			for _, o := range res.Objects {
				out = append(out, o.ID())
			}
			slices.Sort(out)
			return out
		}
		check := func(what string, got, want []string) {
			t.Helper()
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: got %v, want %v", what, got, want)
			}
		}
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
			// StudentB is of school B: outside the counselor's school, never seen.
			if _, err := tx.SetCaseload(ctx, T.Counselor, []string{T.Minor, T.StudentB}, "user:admin"); err != nil {
				return err
			}
			_, _, err := tx.SetDependent(ctx, T.Eligible, T.Guardian2, "user:admin")
			return err
		})
		// School A's staff, and of its students only Minor.
		check("the counselor's users", visible(T.Counselor, records.User),
			[]string{T.PrincipalA, T.Counselor, T.TeacherA, T.TeacherA2, T.Disabled, T.Minor})
		check("the counselor's demographics", visible(T.Counselor, records.Demographics), []string{T.Minor})
		check("the counselor's results", visible(T.Counselor, records.Result), []string{T.ResultMinA})
		check("the counselor's enrollments", visible(T.Counselor, records.Enrollment), []string{"enr-ta-math", "enr-ta2-sci", "enr-minor-math", "enr-minor-sci"})
		check("the counselor's classes", visible(T.Counselor, records.Class), []string{T.ClassMathA, T.ClassSciA})
		// On the 18th birthday the flagged parent keeps the eligible student.
		check("the flagged parent's users", visible(T.Guardian2, records.User), []string{T.Guardian2, T.Eligible, T.TeacherA})
		check("the flagged parent's results", visible(T.Guardian2, records.Result), []string{T.ResultEliA})
		write(t, s, func(ctx context.Context, tx *sqlstore.Tx) error {
			if _, err := tx.ClearCaseload(ctx, T.Counselor); err != nil {
				return err
			}
			_, err := tx.ClearDependent(ctx, T.Eligible, T.Guardian2)
			return err
		})
		check("the counselor's students without a caseload", visible(T.Counselor, records.Demographics), []string{T.Minor, T.Eligible, T.Student3})
		check("the parent's users without the flag", visible(T.Guardian2, records.User), []string{T.Guardian2})
	})
}
