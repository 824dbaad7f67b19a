package sqlstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"registrar/audit"
	"registrar/importer"
	"registrar/records"
	"registrar/sqlstore"
)

// The bulk path (bulk.go) is exercised through the importer on every engine: the
// golden packages of testdata/csv load, reload unchanged, apply a delta, mark what a
// bulk file leaves out, and export and import back as the same data.

func goldenPackage(name string) string { return filepath.Join("..", "testdata", "csv", name) }

func importPackage(t *testing.T, s *sqlstore.Store, path string) *importer.Summary {
	t.Helper()
	sum, err := importer.New(s, quiet).Import(context.Background(), path, importer.Options{
		Event: audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "bulk-test"}})
	if err != nil {
		var ie *importer.InvalidError
		if errors.As(err, &ie) {
			t.Fatalf("import %s:\n%s", path, importer.Lines(ie, 20))
		}
		t.Fatalf("import %s: %v", path, err)
	}
	return sum
}

// everything returns every object of s, decrypted, without dateLastModified.
func everything(t *testing.T, s *sqlstore.Store) map[string]records.Object {
	t.Helper()
	out := map[string]records.Object{}
	err := s.Snapshot(context.Background(), func(sn *sqlstore.Snapshot) error {
		for _, e := range records.Entities {
			if err := sn.Each(context.Background(), sqlstore.Query{Entity: e}, func(o records.Object) error {
				delete(o, "dateLastModified")
				out[e.Name+"/"+o.ID()] = o
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBulkImportOnEveryEngine(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		s := open(t, eng.fresh(t))
		sum := importPackage(t, s, goldenPackage("bulk"))
		if sum.Created != 31 || sum.Students != 2 {
			t.Errorf("bulk: got %s, %d students", sum.Line(), sum.Students)
		}
		if sum := importPackage(t, s, goldenPackage("bulk")); sum.Unchanged != 31 || sum.Created+sum.Updated+sum.Deleted != 0 {
			t.Errorf("bulk again: got %s, want 31 unchanged", sum.Line())
		}
		if sum := importPackage(t, s, goldenPackage("delta")); sum.Created != 3 || sum.Deleted != 3 || sum.Ignored != 1 {
			t.Errorf("delta: got %s, want 3 created, 3 marked, 1 ignored", sum.Line())
		}
		t1, err := s.Get(context.Background(), sqlstore.Query{Entity: records.User}, "u-t1")
		if err != nil {
			t.Fatal(err)
		}
		if roles := t1["roles"].([]records.Role); len(roles) != 1 || t1["email"] != "tom.teacher@lakeview.test" {
			t.Errorf("u-t1 after the delta: roles %v, email %v", roles, t1["email"])
		}
		if n := count(t, s, "SELECT COUNT(*) FROM user_roles WHERE user_id = ?", "u-t1"); n != 1 {
			t.Errorf("user_roles of u-t1: got %d rows, want 1", n)
		}

		// The bulk package again: what the delta added is marked tobedeleted.
		sum = importPackage(t, s, goldenPackage("bulk"))
		if sum.Deleted < 3 {
			t.Errorf("bulk after delta: got %s, want the delta's new objects marked", sum.Line())
		}
		if n := count(t, s, "SELECT COUNT(*) FROM classes WHERE sourced_id = 'cl-geo' AND status = 'tobedeleted'"); n != 1 {
			t.Error("a class absent from a bulk classes.csv was not marked tobedeleted")
		}

		// Export, then import into an empty store of the same engine.
		dir := filepath.Join(t.TempDir(), "export")
		if _, err := importer.New(s, quiet).ExportDir(context.Background(), dir, importer.ExportOptions{Mode: "delta"}); err != nil {
			t.Fatal(err)
		}
		if m, _ := os.ReadFile(filepath.Join(dir, "manifest.csv")); !strings.Contains(string(m), "file.users,delta") {
			t.Fatalf("manifest:\n%s", m)
		}
		fresh := open(t, eng.fresh(t))
		importPackage(t, fresh, dir)
		got, want := everything(t, fresh), everything(t, s)
		if len(got) != len(want) {
			t.Fatalf("round trip: got %d objects, want %d", len(got), len(want))
		}
		for k, w := range want {
			if !reflect.DeepEqual(got[k], w) {
				t.Errorf("round trip %s:\n got %v\nwant %v", k, got[k], w)
			}
		}
	})
}
