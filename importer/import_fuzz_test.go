package importer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"registrar/importer"
)

// fuzzDeltaFiles are the files of the delta golden package a FuzzImportOnBothEngines
// input replaces, by index.
var fuzzDeltaFiles = []string{"users.csv", "enrollments.csv", "classes.csv", "roles.csv", "manifest.csv"}

// FuzzImportOnBothEngines imports the delta golden package with one of its files
// replaced by the input, into the bulk golden district on SQLite and on PostgreSQL
// alike: an import either succeeds on both with the same summary and leaves both
// holding the same (their bulk exports are equal byte for byte), or is refused on
// both with the same problems and nothing written (every table's rows as they were);
// never another kind of error. The stores carry over from input to input, the same
// on both engines (a fresh pair per input would cost seconds): a failure can depend
// on the inputs before it, so a saved crasher is first rerun on its own (go test
// -run 'FuzzImportOnBothEngines/NAME'); one that passes alone came from the state
// earlier inputs left.
//
//	go test -run '^$' -fuzz FuzzImportOnBothEngines -fuzztime 5m ./importer
func FuzzImportOnBothEngines(f *testing.F) {
	stores := []*testStore{openStoreOn(f, f.TempDir(), "sqlite"), openStoreOn(f, f.TempDir(), "postgres")}
	digests := make([]string, len(stores)) // what each store holds; changed only by an accepted import
	for i, st := range stores {
		mustImport(f, st, golden("bulk"))
		digests[i] = digest(f, st.db())
	}
	delta := map[string][]byte{} // the delta package's files, read once
	ents, err := os.ReadDir(golden("delta"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range ents {
		if delta[e.Name()], err = os.ReadFile(filepath.Join(golden("delta"), e.Name())); err != nil {
			f.Fatal(err)
		}
	}
	for i, name := range fuzzDeltaFiles {
		f.Add(uint8(i), delta[name])
	}
	f.Add(uint8(0), []byte("sourcedId,status,dateLastModified,enabledUser,username,givenName,familyName\nu-s1,active,,true,s\x00m,Sam,Student\n"))
	f.Add(uint8(0), []byte("sourcedId,status,dateLastModified,enabledUser,username,givenName,familyName\nu-s1,active,,true,sam,S\xffm,Student\n"))
	f.Fuzz(func(t *testing.T, which uint8, content []byte) {
		name := fuzzDeltaFiles[int(which)%len(fuzzDeltaFiles)]
		pkg := t.TempDir()
		for file, b := range delta {
			if file == name {
				b = content
			}
			if err := os.WriteFile(filepath.Join(pkg, file), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		type outcome struct {
			sum      *importer.Summary
			problems string
		}
		var first outcome
		for i, st := range stores {
			sum, err := importer.New(st.Store, discard()).Import(context.Background(), pkg, importer.Options{Event: operator()})
			var o outcome
			var ie *importer.InvalidError
			switch {
			case err == nil:
				o.sum = sum
				digests[i] = digest(t, st.db())
			case errors.As(err, &ie):
				o.problems = importer.Lines(ie, 50)
				if digest(t, st.db()) != digests[i] {
					t.Fatalf("%s: a refused import changed the database:\n%s", engineName(i), o.problems)
				}
			default:
				t.Fatalf("%s: import of %s %q: %v (want success or problems)", engineName(i), name, clip(content), err)
			}
			if i == 0 {
				first = o
				continue
			}
			if (o.sum == nil) != (first.sum == nil) || o.problems != first.problems {
				t.Fatalf("%s %q: SQLite: %v / %s\nPostgreSQL: %v / %s", name, clip(content), first.sum != nil, first.problems, o.sum != nil, o.problems)
			}
			if o.sum != nil && !reflect.DeepEqual(o.sum.Files, first.sum.Files) {
				t.Fatalf("%s %q: SQLite imported %+v, PostgreSQL %+v", name, clip(content), first.sum.Files, o.sum.Files)
			}
			if o.sum != nil {
				// What each engine now holds, as a bulk export writes it.
				a, b := exportFiles(t, stores[0]), exportFiles(t, st)
				if !reflect.DeepEqual(a, b) {
					for f := range a {
						if a[f] != b[f] {
							t.Fatalf("%s %q: after the import the engines export %s differently:\nSQLite:\n%s\nPostgreSQL:\n%s", name, clip(content), f, a[f], b[f])
						}
					}
					t.Fatalf("%s %q: after the import the engines export different files", name, clip(content))
				}
			}
		}
	})
}

// exportFiles is a bulk export of st: each file's content by name.
func exportFiles(t *testing.T, st *testStore) map[string]string {
	t.Helper()
	dir := t.TempDir()
	if _, err := importer.New(st.Store, discard()).ExportDir(context.Background(), dir, importer.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func engineName(i int) string { return []string{"sqlite", "postgres"}[i] }

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
