package importer_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // digests read the PostgreSQL database directly
	_ "modernc.org/sqlite"             // digests read the database file directly

	"registrar/audit"
	"registrar/importer"
	"registrar/internal/pgtest"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

var update = flag.Bool("update", false, "rewrite the expected problems of the golden error packages")

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// golden is the folder of a golden package.
func golden(name string) string { return filepath.Join("..", "testdata", "csv", name) }

// The tests run on both engines: forEachEngine runs a test as the subtests "sqlite"
// and "postgres", and newStore opens a store on the engine of the subtest it is
// called in (pgtest.EngineOf). PostgreSQL is the server pgtest gives (REGISTRAR_TEST_POSTGRES_URL,
// or one started for this test binary), a fresh database per store.

// forEachEngine runs fn as a subtest per engine (pgtest.ForEachEngine), in parallel
// with the other tests.
func forEachEngine(t *testing.T, fn func(t *testing.T)) {
	t.Helper()
	t.Parallel()
	pgtest.ForEachEngine(t, fn)
}

// dbRef names a database: an SQLite file or a PostgreSQL URL.
type dbRef struct{ path, url string }

// sqlDB opens the database directly, beside any store (closed at cleanup).
func (r dbRef) sqlDB(t testing.TB) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if r.url != "" {
		db, err = sql.Open("pgx", r.url)
	} else {
		// Read-write: after a kill, opening runs WAL recovery. The audit index file is
		// attached as ix, as the store's readers see it.
		db, err = sqlstore.OpenSQLite(r.path, "_pragma=busy_timeout(10000)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rebind turns ? placeholders into PostgreSQL's $n for a dbRef on PostgreSQL.
func (r dbRef) rebind(q string) string {
	if r.url == "" {
		return q
	}
	return sqlstore.RebindDollar(q)
}

// testStore is a store on a real database of the test's engine (pgtest.EngineOf): SQLite in
// a temporary folder, or a fresh PostgreSQL database with its keys in a temporary folder.
type testStore struct {
	*sqlstore.Store
	dir string
	url string // the PostgreSQL database, "" on SQLite
}

func (ts *testStore) db() dbRef {
	return dbRef{path: filepath.Join(ts.dir, "registrar.db"), url: ts.url}
}

func newStore(t testing.TB) *testStore {
	t.Helper()
	dir := t.TempDir()
	return openStore(t, dir)
}

func openStore(t testing.TB, dir string) *testStore {
	t.Helper()
	return openStoreOn(t, dir, pgtest.EngineOf(t))
}

// openStoreOn is openStore on the engine named ("sqlite" or "postgres").
func openStoreOn(t testing.TB, dir, engine string) *testStore {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	o := sqlstore.Options{Path: filepath.Join(dir, "registrar.db"), Chain: "test", Vault: v, Logger: discard()}
	if engine == "postgres" {
		o.URL = pgtest.Shared(t).NewDatabase(t)
	}
	st, err := sqlstore.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &testStore{st, dir, o.URL}
}

// noPlaintext fails if any value of any table of st's PostgreSQL database contains
// canary (text, or bytes in a bytea column).
func noPlaintext(t testing.TB, st *testStore, canary string) {
	t.Helper()
	db := st.db().sqlDB(t)
	tables, err := db.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	tables.Close()
	if len(names) < 20 {
		t.Fatalf("found %d tables: %v", len(names), names)
	}
	for _, table := range names {
		rows, err := db.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				var b []byte
				switch v := v.(type) {
				case string:
					b = []byte(v)
				case []byte:
					b = v
				}
				if strings.Contains(string(b), canary) {
					t.Errorf("%s.%s holds a sensitive value in plain text", table, cols[i])
				}
			}
		}
		rows.Close()
	}
}

func operator() audit.Event {
	return audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "tester"}
}

// mustImport imports a package and fails the test with its problems if it is not valid.
func mustImport(t testing.TB, st *testStore, path string) *importer.Summary {
	t.Helper()
	sum, err := importer.New(st.Store, discard()).Import(context.Background(), path, importer.Options{Event: operator()})
	if err != nil {
		var ie *importer.InvalidError
		if errors.As(err, &ie) {
			t.Fatalf("import %s:\n%s", path, importer.Lines(ie, 50))
		}
		t.Fatalf("import %s: %v", path, err)
	}
	return sum
}

// objects returns every object of the store, decrypted, keyed "entity/sourcedId".
func objects(t testing.TB, st *testStore, keepDates bool) map[string]records.Object {
	t.Helper()
	out := map[string]records.Object{}
	err := st.Snapshot(context.Background(), func(sn *sqlstore.Snapshot) error {
		for _, e := range records.Entities {
			err := sn.Each(context.Background(), sqlstore.Query{Entity: e}, func(o records.Object) error {
				if !keepDates {
					delete(o, "dateLastModified")
				}
				out[e.Name+"/"+o.ID()] = o
				return nil
			})
			if err != nil {
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

func object(t testing.TB, st *testStore, e *records.Entity, id string) records.Object {
	t.Helper()
	o, err := st.Get(context.Background(), sqlstore.Query{Entity: e}, id)
	if err != nil {
		t.Fatalf("get %s %s: %v", e.Name, id, err)
	}
	return o
}

// sameObjects reports the differences between two sets of objects.
func sameObjects(t testing.TB, got, want map[string]records.Object) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	n := 0
	for _, k := range keys {
		if !reflect.DeepEqual(got[k], want[k]) {
			if n++; n <= 5 {
				t.Errorf("%s:\n got %v\nwant %v", k, got[k], want[k])
			}
		}
	}
	if n > 5 {
		t.Errorf("... %d objects differ in all", n)
	}
}

// contentTables are the tables whose content an import may change, ordered by key.
var contentTables = func() []string {
	var out []string
	for _, e := range records.Entities {
		out = append(out, e.Table+"|sourced_id")
		for i := range e.Fields {
			if f := &e.Fields[i]; f.Kind == records.KRefs {
				out = append(out, f.Link+"|owner_id, ord")
			}
		}
	}
	return append(out, "user_roles|user_id, ord", "subject_keys|subject_id", "changes|id")
}()

// digest hashes the content of every table an import writes, read from the database
// itself: two equal digests mean the same rows, byte for byte.
func digest(t testing.TB, ref dbRef) string {
	t.Helper()
	db := ref.sqlDB(t)
	h := sha256.New()
	for _, tk := range contentTables {
		table, order, _ := strings.Cut(tk, "|")
		rows, err := db.Query("SELECT * FROM " + table + " ORDER BY " + order)
		if err != nil {
			t.Fatalf("digest %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s|%q\n", table, vals)
			n++
		}
		rows.Close()
		fmt.Fprintf(h, "%s: %d rows\n", table, n)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// count returns the number of rows of a table matching where.
func count(t testing.TB, st *testStore, table, where string, args ...any) int {
	t.Helper()
	db := st.db().sqlDB(t)
	q := "SELECT COUNT(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	var n int
	if err := db.QueryRow(st.db().rebind(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
