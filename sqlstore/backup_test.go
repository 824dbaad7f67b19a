package sqlstore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"registrar/audit"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
)

// TestBackupIsASnapshotBesideCommits takes Backup while callers keep appending audit
// events: the copy holds every event acknowledged before Backup began and verifies
// (its chain is a prefix of the live one, so nothing is torn), its index file is
// paired with it (not set aside at its first start), and both files are 0600.
func TestBackupIsASnapshotBesideCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	v := openVault(t, filepath.Join(dir, "keys"), 0)
	// The index written every millisecond: its snapshot, were it taken after the
	// database's, would be ahead of the copy's trail.
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: filepath.Join(dir, "data", "registrar.db"), Chain: "backup-chain", Vault: v,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckpointInterval: -1, IndexInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var (
		began, quit atomic.Bool
		before      atomic.Int64 // events acknowledged before Backup began
		wg          sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !quit.Load() {
				ev := audit.Event{PrincipalKind: audit.KindOperator, PrincipalID: "test", Action: "test.backup", Outcome: audit.OK, Time: time.Now(),
					Students: []string{"user-student-backup"}} // indexed behind the trail
				if err := st.Audit(ctx, ev); err != nil {
					t.Error(err)
					return
				}
				if !began.Load() { // acknowledged before Backup began
					before.Add(1)
				}
			}
		}()
	}
	for before.Load() < 200 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	out := filepath.Join(t.TempDir(), "backup")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	began.Store(true)
	rep, err := st.Backup(ctx, out)
	quit.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{rep.Database, rep.Index} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
			t.Errorf("%s: %v; want a non-empty file, mode 0600", f, err)
		}
	}
	if _, err := st.Backup(ctx, out); err == nil {
		t.Error("a second Backup into the same folder overwrote the first")
	}

	cp := openStore(t, rep.Database, "backup-chain", v)
	vr, err := cp.Verify(ctx, sqlstore.VerifyOptions{})
	if err != nil {
		t.Fatalf("the copy does not verify: %v", err)
	}
	if len(vr.Chains) != 1 || vr.Chains[0].Events < before.Load() {
		t.Fatalf("the copy holds %+v, want at least the %d events acknowledged before Backup began", vr.Chains, before.Load())
	}
	live, err := st.Verify(ctx, sqlstore.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if live.Chains[0].Events <= vr.Chains[0].Events {
		t.Logf("no event was appended during the backup (%d live, %d copied): the test proved less than it could", live.Chains[0].Events, vr.Chains[0].Events)
	}
	if stale, _ := filepath.Glob(filepath.Join(out, "*.stale-*")); len(stale) > 0 {
		t.Errorf("the copy's index file was set aside at its first start (%v): the two files are not a pair", stale)
	}
}

// TestBackupOnPostgreSQLIsRefused: PostgreSQL has backups of its own; Backup says so
// and writes nothing.
func TestBackupOnPostgreSQLIsRefused(t *testing.T) {
	t.Parallel()
	v := openVault(t, filepath.Join(t.TempDir(), "keys"), 0)
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{URL: postgresServer(t).NewDatabase(t), Chain: "pg", Vault: v,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := t.TempDir()
	if _, err := st.Backup(context.Background(), out); !errors.Is(err, sqlstore.ErrNotSQLite) {
		t.Errorf("Backup on PostgreSQL: %v, want ErrNotSQLite", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("Backup on PostgreSQL wrote %d files", len(ents))
	}
}

// TestCheckKeysNamesTheKeyThatDoesNotOpen: CheckKeys opens every data and document key
// (up to a limit) and names the first that fails.
func TestCheckKeysNamesTheKeyThatDoesNotOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	v := openVault(t, filepath.Join(dir, "keys"), 0)
	st := openStore(t, filepath.Join(dir, "registrar.db"), "keys-chain", v)
	if err := testdistrict.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	if err := st.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.DocumentKey(ctx, testdistrict.Minor)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	opened := map[string]int{}
	open := func(subject string, wrapped []byte, document bool) error {
		opened[subject]++
		if document {
			_, err := v.DocumentKey(subject, wrapped)
			return err
		}
		_, err := v.DataKey(subject, wrapped)
		return err
	}
	ks, err := st.KeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := st.CheckKeys(ctx, open, 0)
	if err != nil || ks.Keys == 0 || ks.Documents != 1 || n != ks.Keys+1 || len(opened) != ks.Keys || opened[testdistrict.Minor] != 2 {
		t.Fatalf("CheckKeys: %d opened, %v; opened %v of %d people; want every data key and the one document key opened", n, err, opened, ks.Keys)
	}
	clear(opened)
	if n, err := st.CheckKeys(ctx, open, 3); err != nil || n != 3 || len(opened) != 3 {
		t.Errorf("CheckKeys with a limit of 3: %d opened (%d people), %v", n, len(opened), err)
	}
	_, err = st.CheckKeys(ctx, func(subject string, wrapped []byte, document bool) error {
		if subject == testdistrict.Student3 {
			return errors.New("no such key version")
		}
		return nil
	}, 0)
	if err == nil || !strings.Contains(err.Error(), testdistrict.Student3) || !strings.Contains(err.Error(), "data key") {
		t.Errorf("CheckKeys with a key that does not open: %v, want an error naming %s's data key", err, testdistrict.Student3)
	}
}
