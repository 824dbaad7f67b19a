package sqlstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// keyed is a data dir (keys and database) loaded with the test district.
type keyed struct {
	dir   string
	vault *vault.Vault
	store *sqlstore.Store
}

func (k *keyed) keysDir() string { return filepath.Join(k.dir, "keys") }
func (k *keyed) dbPath() string  { return filepath.Join(k.dir, "registrar.db") }

// newKeyed creates a data dir with the test district and, when extra > 0, that many
// more students.
func newKeyed(t *testing.T, extra int) *keyed {
	t.Helper()
	k := &keyed{dir: t.TempDir()}
	k.vault = openVault(t, k.keysDir(), 0)
	k.store = openStore(t, k.dbPath(), "server", k.vault)
	ctx := context.Background()
	if err := testdistrict.Load(ctx, k.store); err != nil {
		t.Fatal(err)
	}
	if extra > 0 {
		if err := k.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			for i := 0; i < extra; i++ {
				if _, err := tx.Put(ctx, records.User, extraStudent(i), sqlstore.PutOptions{}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// clone copies a data dir (keys, and the database as a backup would) into a new one,
// with a fresh vault and store: nothing cached from the original.
func (k *keyed) clone(t *testing.T) *keyed {
	t.Helper()
	c := &keyed{dir: t.TempDir()}
	if err := os.MkdirAll(c.keysDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kek.json", "service.json"} {
		b, err := os.ReadFile(filepath.Join(k.keysDir(), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.keysDir(), f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, rawDB(t, k.dbPath()), "VACUUM INTO ?", c.dbPath())
	c.vault = openVault(t, c.keysDir(), 0)
	c.store = openStore(t, c.dbPath(), "clone", c.vault)
	return c
}

func openVault(t *testing.T, dir string, cache int) *vault.Vault {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: dir, CacheSize: cache})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openStore(t *testing.T, path, chain string, v *vault.Vault) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: path, Chain: chain, Vault: v,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func extraID(i int) string { return fmt.Sprintf("user-extra-%04d", i) }

func extraEmail(id string) string { return id + "." + testdistrict.Canary + "@example.org" }

func extraStudent(i int) records.Object {
	id := extraID(i)
	return records.Object{"sourcedId": id, "status": "active", "givenName": "Extra", "familyName": fmt.Sprint(i), "enabledUser": "true",
		"email": extraEmail(id), "identifier": "X-" + id + "-" + testdistrict.Canary,
		"roles": []records.Role{{RoleType: "primary", Role: "student", Org: testdistrict.SchoolA}}}
}

// rawDB opens the database file directly, as someone holding a copy of it would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqlstore.OpenSQLite(path, "_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestDocumentKeyIsMadeOnceAndKeptBesideTheDataKey(t *testing.T) {
	t.Parallel()
	k := newKeyed(t, 0)
	ctx := context.Background()
	if _, ok, err := k.store.DocumentKey(ctx, testdistrict.Minor); err != nil || ok {
		t.Fatalf("before any document: ok=%v err=%v, want no key", ok, err)
	}
	var first, second []byte
	for _, dst := range []*[]byte{&first, &second} {
		if err := k.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			var err error
			*dst, err = tx.DocumentKey(ctx, testdistrict.Minor)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if string(first) != string(second) {
		t.Fatal("a second call made a second document key")
	}
	got, ok, err := k.store.DocumentKey(ctx, testdistrict.Minor)
	if err != nil || !ok || string(got) != string(first) {
		t.Fatalf("stored document key: ok=%v err=%v", ok, err)
	}
	if _, err := k.vault.DocumentKey(testdistrict.Minor, got); err != nil {
		t.Fatal(err)
	}
	t.Run("a person without a data key gets both", func(t *testing.T) {
		if err := k.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			_, err := tx.DocumentKey(ctx, "someone-new")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := rawDB(t, k.dbPath()).QueryRow("SELECT COUNT(*) FROM subject_keys WHERE subject_id = 'someone-new' AND wrapped IS NOT NULL AND doc_wrapped IS NOT NULL AND doc_kek_id IS NOT NULL").Scan(&n); err != nil || n != 1 {
			t.Fatalf("got %d rows (%v), want 1", n, err)
		}
	})
}

// TestRotationUnderLoad rotates the KEK from another process's vault and store while
// this "server" keeps reading and writing with a vault loaded before the rotation
// and a key cache too small to hide anything. The first run stops after two batches
// (a crash); a second run, from fresh instances, resumes and retires the old version.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	const students = 120
	k := newKeyed(t, students)
	ctx := context.Background()
	// Give some people document keys, so both kinds are rewrapped.
	if err := k.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		for i := 0; i < students; i += 7 {
			if _, err := tx.DocumentKey(ctx, extraID(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	oldVersion, _, err := k.vault.KEKVersions()
	if err != nil {
		t.Fatal(err)
	}

	// The server: a small cache, so reads keep unwrapping keys.
	serverVault := openVault(t, k.keysDir(), 4)
	server := openStore(t, k.dbPath(), "server-2", serverVault)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, writes atomic.Int64
	var failures sync.Map
	fail := func(what string, err error) { failures.Store(what+": "+err.Error(), true) }
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for off := r * 50; ; off = (off + 37) % students {
				select {
				case <-stop:
					return
				default:
				}
				res, err := server.List(ctx, sqlstore.Query{Entity: records.User, Scope: records.Predicate{SQL: "t.sourced_id LIKE 'user-extra-%'"},
					Page: queryPage(20, off), NoCount: true})
				if err != nil {
					fail("list", err)
					continue
				}
				for _, o := range res.Objects {
					if got, want := o.Str("email"), extraEmail(o.ID()); got != want {
						fail("read", fmt.Errorf("%s: email %q, want %q", o.ID(), got, want))
					}
				}
				reads.Add(1)
				time.Sleep(time.Millisecond)
			}
		}(r)
	}
	wg.Add(1)
	go func() { // and writes: new people get keys while the rotation runs
		defer wg.Done()
		for i := students; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if err := server.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
				_, err := tx.Put(ctx, records.User, extraStudent(i), sqlstore.PutOptions{})
				return err
			}); err != nil {
				fail("write", err)
				continue
			}
			writes.Add(1)
		}
	}()

	// First run: another process, stopped after two batches.
	rotVault := openVault(t, k.keysDir(), 0)
	rot := openStore(t, k.dbPath(), "rotator", rotVault)
	var progress []sqlstore.RotateProgress
	rep, err := rot.RotateKEK(ctx, rotVault, sqlstore.RotateOptions{BatchSize: 20, MaxBatches: 2, Pause: 5 * time.Millisecond,
		Progress: func(p sqlstore.RotateProgress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Done || rep.Batches != 2 || rep.Rewrapped != 40 || len(progress) != 2 {
		t.Fatalf("first run: done=%v batches=%d rewrapped=%d progress=%d; want an unfinished rotation after 2 batches of 20", rep.Done, rep.Batches, rep.Rewrapped, len(progress))
	}
	newVersion := rep.KEK
	if newVersion == oldVersion {
		t.Fatal("no new KEK version")
	}
	st, err := rot.KeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rotation == nil || st.Rotation.State != "running" || st.Rotation.Batches != 2 {
		t.Fatalf("status after the crash: %+v, want a running rotation with 2 batches", st.Rotation)
	}
	rot.Close() // the crash

	// Second run: fresh instances resume the same rotation.
	time.Sleep(20 * time.Millisecond) // let the server read with half the keys rewrapped
	resVault := openVault(t, k.keysDir(), 0)
	res := openStore(t, k.dbPath(), "rotator-2", resVault)
	rep, err = res.RotateKEK(ctx, resVault, sqlstore.RotateOptions{BatchSize: 20, Pause: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Resumed || !rep.Done || rep.KEK != newVersion {
		t.Fatalf("second run: resumed=%v done=%v kek=%d; want the same rotation (%d) resumed and finished", rep.Resumed, rep.Done, rep.KEK, newVersion)
	}
	if !slices.Equal(rep.Retired, []uint32{oldVersion}) || len(rep.Kept) != 0 || rep.Failed != 0 {
		t.Fatalf("retired %v kept %v failed %d; want [%d] retired", rep.Retired, rep.Kept, rep.Failed, oldVersion)
	}
	time.Sleep(20 * time.Millisecond) // and after the old version is gone
	close(stop)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Errorf("during rotation: %s", k); return true })
	if reads.Load() < 5 || writes.Load() < 2 {
		t.Fatalf("only %d reads and %d writes ran during the rotation", reads.Load(), writes.Load())
	}

	t.Run("every key is under the new version, and a fresh start reads everything", func(t *testing.T) {
		fresh := openVault(t, k.keysDir(), 0)
		_, all, _ := fresh.KEKVersions()
		if !slices.Equal(all, []uint32{newVersion}) {
			t.Fatalf("KEK versions %v, want only %d", all, newVersion)
		}
		st := openStore(t, k.dbPath(), "fresh", fresh)
		ks, err := st.KeyStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ks.ByVersion) != 1 || ks.ByVersion[newVersion] != ks.Keys+ks.Documents {
			t.Fatalf("keys by version %v (keys %d, documents %d), want all under %d", ks.ByVersion, ks.Keys, ks.Documents, newVersion)
		}
		res, err := st.List(ctx, sqlstore.Query{Entity: records.User, Page: queryPage(10000, 0), NoCount: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Objects {
			if o.Str("email") == "" {
				t.Errorf("%s: email does not open after rotation", o.ID())
			}
		}
		if len(res.Objects) < students+15 {
			t.Fatalf("read %d users, want at least %d", len(res.Objects), students+15)
		}
		for i := 0; i < students; i += 7 {
			w, ok, err := st.DocumentKey(ctx, extraID(i))
			if err != nil || !ok {
				t.Fatalf("%s: document key: %v", extraID(i), err)
			}
			if _, err := fresh.DocumentKey(extraID(i), w); err != nil {
				t.Fatalf("%s: document key does not open after rotation: %v", extraID(i), err)
			}
		}
	})
	t.Run("the audit trail records the rotation", func(t *testing.T) {
		var n int
		if err := rawDB(t, k.dbPath()).QueryRow("SELECT COUNT(*) FROM audit_events WHERE action = 'keys.rotate'").Scan(&n); err != nil || n != 2 {
			t.Fatalf("got %d keys.rotate events (%v), want 2 (started, finished)", n, err)
		}
	})
}

func TestRotationKeepsTheVersionOfAKeyThatDoesNotUnwrap(t *testing.T) {
	t.Parallel()
	k := newKeyed(t, 0)
	ctx := context.Background()
	old, _, _ := k.vault.KEKVersions()
	db := rawDB(t, k.dbPath())
	// A wrapped key copied onto another person's row: bound to the wrong subject.
	exec(t, db, "UPDATE subject_keys SET wrapped = (SELECT wrapped FROM subject_keys WHERE subject_id = ?) WHERE subject_id = ?", testdistrict.Minor, testdistrict.Student3)
	rep, err := k.store.RotateKEK(ctx, k.vault, sqlstore.RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Done || rep.Failed != 1 || !slices.Equal(rep.Kept, []uint32{old}) || len(rep.Retired) != 0 {
		t.Fatalf("done=%v failed=%d kept=%v retired=%v; want 1 failure and version %d kept", rep.Done, rep.Failed, rep.Kept, rep.Retired, old)
	}
	if _, err := k.store.Get(ctx, sqlstore.Query{Entity: records.User}, testdistrict.Minor); err != nil {
		t.Fatalf("an intact key stopped working: %v", err)
	}
}

// TestTamperedCiphertextNeverOpens copies sealed values and wrapped keys to other
// rows, columns and tables: each read fails with a decryption error, and never
// returns another student's data.
func TestTamperedCiphertextNeverOpens(t *testing.T) {
	t.Parallel()
	type stmt struct {
		q    string
		args []any
	}
	const (
		copyUserSealed = "UPDATE users SET sealed = (SELECT sealed FROM users WHERE sourced_id = ?) WHERE sourced_id = ?"
		copyResult     = "UPDATE results SET sealed = (SELECT sealed FROM results WHERE sourced_id = ?) WHERE sourced_id = ?"
	)
	cases := []struct {
		name   string
		stmts  []stmt
		entity *records.Entity
		id     string
	}{
		{"a user's sealed fields copied to another user", []stmt{{copyUserSealed, []any{testdistrict.Minor, testdistrict.Eligible}}},
			records.User, testdistrict.Eligible},
		{"a user's sealed fields copied to their own demographics (another table)",
			[]stmt{{"UPDATE demographics SET sealed = (SELECT sealed FROM users WHERE sourced_id = ?) WHERE sourced_id = ?", []any{testdistrict.Minor, testdistrict.Minor}}},
			records.Demographics, testdistrict.Minor},
		{"a result's sealed fields copied to another student's result", []stmt{{copyResult, []any{testdistrict.ResultMinA, testdistrict.ResultEliA}}},
			records.Result, testdistrict.ResultEliA},
		{"a result's sealed fields copied to another row of the same student",
			[]stmt{{"UPDATE results SET student_id = ? WHERE sourced_id = ?", []any{testdistrict.Minor, testdistrict.ResultEliA}}, {copyResult, []any{testdistrict.ResultMinA, testdistrict.ResultEliA}}},
			records.Result, testdistrict.ResultEliA},
		{"another person's wrapped key and sealed fields copied together",
			[]stmt{{"UPDATE subject_keys SET wrapped = (SELECT wrapped FROM subject_keys WHERE subject_id = ?) WHERE subject_id = ?", []any{testdistrict.Minor, testdistrict.Eligible}},
				{copyUserSealed, []any{testdistrict.Minor, testdistrict.Eligible}}},
			records.User, testdistrict.Eligible},
	}
	district := newKeyed(t, 0)
	for _, c := range cases {
		t.Run(c.name+" does not open", func(t *testing.T) {
			k := district.clone(t)
			db := rawDB(t, k.dbPath())
			for _, st := range c.stmts {
				exec(t, db, st.q, st.args...)
			}
			obj, err := k.store.Get(context.Background(), sqlstore.Query{Entity: c.entity}, c.id)
			if !errors.Is(err, vault.ErrDecrypt) {
				t.Fatalf("got %v, %v; want an error wrapping vault.ErrDecrypt", obj, err)
			}
			var re *records.Error
			if !errors.As(err, &re) || re.Code != records.Internal || !strings.Contains(err.Error(), "does not decrypt") {
				t.Fatalf("error %q: want an internal records.Error that says the value does not decrypt", err)
			}
			if obj != nil {
				t.Fatalf("returned %v with the error", obj)
			}
			b, _ := json.Marshal(err.Error())
			if strings.Contains(string(b), testdistrict.Canary) {
				t.Fatalf("the error carries a sensitive value: %s", b)
			}
		})
	}
}
