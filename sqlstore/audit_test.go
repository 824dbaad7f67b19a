package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/audit"
	"registrar/internal/testdistrict"
	"registrar/sqlstore"
	"registrar/vault"
)

// trail is a small audit trail in a SQLite file: 40 events on chain "a", a checkpoint
// every 10 events, students on every third event and a disclosure on every fifth.
type trail struct {
	dir   string
	vault *vault.Vault
	cps   []audit.Checkpoint // as exported before any tampering
}

const trailEvents = 40

func newTrail(t *testing.T) *trail {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	tr := &trail{dir: dir, vault: v}
	st := tr.open(t, filepath.Join(dir, "base.db"), "a")
	ctx := context.Background()
	if err := testdistrict.Load(ctx, st); err != nil { // no audit event of its own
		t.Fatal(err)
	}
	for i := 1; i <= trailEvents; i++ {
		ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "vendor", Action: "read", Outcome: audit.OK, RequestID: fmt.Sprintf("req-%d", i), LegalBasis: "studies", Purpose: "research"}
		if i%3 == 0 {
			ev.Students = []string{fmt.Sprintf("s%d", i), "s0"}
			ev.ResourceType = "user"
		}
		var fn func(context.Context, *sqlstore.Tx) error
		if i%5 == 0 {
			ev.Students = []string{testdistrict.Minor, fmt.Sprintf("gone%d", i)}
			ev.ResourceType, ev.Disclosed, ev.DisclosureRequired, ev.Fields = "result", true, true, []string{"score"}
		}
		if err := st.Write(ctx, fn, ev); err != nil {
			t.Fatal(err)
		}
	}
	if tr.cps, err = st.Checkpoints(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if len(tr.cps) != trailEvents/10 {
		t.Fatalf("got %d checkpoints, want %d", len(tr.cps), trailEvents/10)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *trail) open(t *testing.T, path, chain string) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: path, Chain: chain, Vault: tr.vault, CheckpointEvery: 10, CheckpointInterval: -1,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tampered copies the base trail and runs stmts on the copy with the append-only
// triggers dropped, as someone with full access to the database file could.
func (tr *trail) tampered(t *testing.T, stmts ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.dir, "base.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The audit index file goes with the database (sqlstore.IndexPath).
	if b, err = os.ReadFile(sqlstore.IndexPath(filepath.Join(tr.dir, "base.db"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sqlstore.IndexPath(path), b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.OpenSQLite(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.Query("SELECT 'main.' || name FROM main.sqlite_master WHERE type = 'trigger' UNION ALL SELECT 'ix.' || name FROM ix.sqlite_master WHERE type = 'trigger'")
	if err != nil {
		t.Fatal(err)
	}
	var triggers []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, n := range triggers {
		stmts = append([]string{"DROP TRIGGER " + n}, stmts...)
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return path
}

// rehash recomputes every hash from seq on, as a careful forger would.
func rehash(t *testing.T, path string, from int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prev := audit.Genesis
	if from > 1 {
		if err := db.QueryRow("SELECT hash FROM audit_events WHERE chain = 'a' AND seq = ?", from-1).Scan(&prev); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.Query("SELECT seq, body FROM audit_events WHERE chain = 'a' AND seq >= ? ORDER BY seq", from)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		seq  int
		body string
	}
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.seq, &r.body); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	rows.Close()
	for _, r := range recs {
		h := audit.Link(prev, []byte(r.body))
		if _, err := db.Exec("UPDATE audit_events SET prev = ?, hash = ? WHERE chain = 'a' AND seq = ?", prev, h, r.seq); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
}

func TestVerifyNamesTheFirstTamperedEvent(t *testing.T) {
	t.Parallel()
	tr := newTrail(t)
	forged := audit.Event{Chain: "a", Seq: 4, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), PrincipalKind: "user", PrincipalID: "nobody", Action: "read", Outcome: "ok"}
	other, err := vault.Open(vault.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		stmts   []string
		after   func(t *testing.T, path string)
		opts    sqlstore.VerifyOptions
		wantSeq int64 // 0: intact
		reason  string
	}{
		{name: "an unmodified trail verifies"},
		{name: "an edited field breaks the chain at that event",
			stmts: []string{`UPDATE audit_events SET body = replace(body, '"principalId":"vendor"', '"principalId":"vendoR"') WHERE seq = 5`}, wantSeq: 5, reason: "edited"},
		{name: "an edited field with every later hash recomputed disagrees with the next checkpoint",
			stmts: []string{`UPDATE audit_events SET body = replace(body, '"principalId":"vendor"', '"principalId":"vendoR"') WHERE seq = 7`},
			after: func(t *testing.T, p string) { rehash(t, p, 7) }, wantSeq: 10, reason: "rewritten"},
		{name: "a deleted event is named as missing",
			stmts: []string{`DELETE FROM audit_events WHERE seq = 7`}, wantSeq: 7, reason: "missing"},
		{name: "an event inserted in the middle breaks the link after it",
			stmts: []string{`UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 4`, `UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000`,
				fmt.Sprintf(`INSERT INTO audit_events (chain, seq, time, action, principal, body, prev, hash) SELECT 'a', 4, '2026-01-01T00:00:00.000Z', 'read', 'user:nobody', '%s', hash, hash FROM audit_events WHERE seq = 3`, forged.Canonical())},
			after: func(t *testing.T, p string) {
				db, _ := sql.Open("sqlite", "file:"+p)
				defer db.Close()
				var prev []byte
				if err := db.QueryRow("SELECT hash FROM audit_events WHERE seq = 3").Scan(&prev); err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec("UPDATE audit_events SET hash = ? WHERE seq = 4", audit.Link(prev, forged.Canonical())); err != nil {
					t.Fatal(err)
				}
			}, wantSeq: 5, reason: "inserted"},
		{name: "two swapped events break the chain at the first",
			stmts:   []string{`UPDATE audit_events SET seq = 1012 WHERE seq = 12`, `UPDATE audit_events SET seq = 12 WHERE seq = 13`, `UPDATE audit_events SET seq = 13 WHERE seq = 1012`},
			wantSeq: 12},
		{name: "a truncated tail is caught by the checkpoint that covered it",
			stmts: []string{`DELETE FROM audit_events WHERE seq > 33`, `DELETE FROM ix.audit_students WHERE seq > 33`, `DELETE FROM ix.disclosures WHERE seq > 33`}, wantSeq: 34, reason: "truncated"},
		{name: "a truncated tail and checkpoint table are caught by the exported checkpoints",
			stmts: []string{`DELETE FROM audit_events WHERE seq > 33`, `DELETE FROM ix.audit_students WHERE seq > 33`, `DELETE FROM ix.disclosures WHERE seq > 33`, `DELETE FROM audit_checkpoints WHERE seq > 30`},
			opts:  sqlstore.VerifyOptions{External: tr.cps}, wantSeq: 34, reason: "truncated"},
		{name: "a replaced checkpoint fails its signature",
			stmts: []string{`UPDATE audit_checkpoints SET hash = (SELECT hash FROM audit_events WHERE seq = 19) WHERE seq = 20`}, wantSeq: 20, reason: "signature"},
		{name: "a checkpoint re-signed with another key fails its signature",
			after: func(t *testing.T, p string) {
				cp := tr.cps[1]
				if err := cp.Sign(other); err != nil {
					t.Fatal(err)
				}
				db, _ := sql.Open("sqlite", "file:"+p)
				defer db.Close()
				if _, err := db.Exec("UPDATE audit_checkpoints SET signature = ? WHERE seq = ?", cp.Signature, cp.Seq); err != nil {
					t.Fatal(err)
				}
			}, wantSeq: 20, reason: "signature"},
		{name: "a deleted student index row is named",
			stmts: []string{`DELETE FROM ix.audit_students WHERE seq = 9 AND student_id = 's0'`}, wantSeq: 9, reason: "student index"},
		{name: "an edited record of disclosure is named",
			stmts: []string{`UPDATE ix.disclosure_events SET party_id = 'someone-else' WHERE seq = 15`}, wantSeq: 15, reason: "disclos"},
		{name: "a deleted disclosure event row is named",
			stmts: []string{`DELETE FROM ix.disclosure_events WHERE seq = 20`}, wantSeq: 20, reason: "disclos"},
		{name: "a deleted record of disclosure is named",
			stmts: []string{`DELETE FROM ix.disclosures WHERE seq = 25`}, wantSeq: 25, reason: "disclos"},
		{name: "a range anchored at a checkpoint verifies although an earlier event was edited",
			stmts: []string{`UPDATE audit_events SET body = replace(body, '"principalId":"vendor"', '"principalId":"vendoR"') WHERE seq = 5`},
			opts:  sqlstore.VerifyOptions{Chain: "a", From: 25, To: 38}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := tr.tampered(t, c.stmts...)
			if c.after != nil {
				c.after(t, path)
			}
			st := tr.open(t, path, "verifier")
			defer st.Close()
			rep, err := st.Verify(context.Background(), c.opts)
			if c.wantSeq == 0 {
				if err != nil {
					t.Fatalf("got %v, want an intact trail", err)
				}
				if c.opts.From == 0 && rep.Events != trailEvents {
					t.Fatalf("verified %d events, want %d", rep.Events, trailEvents)
				}
				return
			}
			var b *audit.Break
			if !errors.As(err, &b) {
				t.Fatalf("got %v, want a break at event %d", err, c.wantSeq)
			}
			if b.Chain != "a" || b.Seq != c.wantSeq || !strings.Contains(b.Reason, c.reason) {
				t.Fatalf("got break %q at %s/%d, want at a/%d mentioning %q", b.Reason, b.Chain, b.Seq, c.wantSeq, c.reason)
			}
		})
	}
}

func TestRangeVerifyStartsAtTheCheckpointBeforeIt(t *testing.T) {
	t.Parallel()
	tr := newTrail(t)
	st := tr.open(t, filepath.Join(tr.dir, "base.db"), "verifier")
	defer st.Close()
	rep, err := st.Verify(context.Background(), sqlstore.VerifyOptions{Chain: "a", From: 25, To: 38})
	if err != nil {
		t.Fatal(err)
	}
	cr := rep.Chains[0]
	if cr.AnchorSeq != 20 || cr.From != 21 || cr.To != 38 || cr.Events != 18 {
		t.Fatalf("got anchor %d, events %d..%d (%d), want anchor 20, events 21..38 (18)", cr.AnchorSeq, cr.From, cr.To, cr.Events)
	}
}

func TestTriggersRefuseUpdateAndDelete(t *testing.T) {
	t.Parallel()
	tr := newTrail(t)
	db, err := sqlstore.OpenSQLite(filepath.Join(tr.dir, "base.db"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"UPDATE audit_events SET action = 'x' WHERE seq = 1",
		"DELETE FROM audit_events WHERE seq = 40",
		"DELETE FROM ix.audit_students",
		"UPDATE audit_checkpoints SET seq = 99",
		"DELETE FROM audit_checkpoints",
		"UPDATE ix.disclosures SET party_id = 'x'",
		"UPDATE ix.disclosure_events SET party_id = 'x'",
		"DELETE FROM ix.disclosure_events",
	} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want the append-only refusal", q, err)
		}
	}
	// A student's record of disclosures is kept as long as the student's record
	// (99.32(a)(2)); in the index file (which cannot see the users) it is kept even
	// after the student is purged: gone5 has no users row, and its entries stay.
	for _, id := range []string{"gone5", testdistrict.Minor} {
		if _, err := db.Exec("DELETE FROM ix.disclosures WHERE student_id = ?", id); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("deleting %s's disclosures: got %v, want the append-only refusal", id, err)
		}
	}
}

// Two instances append to the same database at once, each on its own chain, without
// a lock between them; each chain verifies, and so does the whole.
func TestTwoInstancesAppendWithoutAGlobalLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	tr := &trail{dir: dir, vault: v}
	path := filepath.Join(dir, "shared.db")
	a := tr.open(t, path, "instance-a")
	b := tr.open(t, path, "instance-b")
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for _, st := range []*sqlstore.Store{a, b} {
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					errs <- st.Audit(context.Background(), audit.Event{PrincipalKind: "user", PrincipalID: "u", Action: "read", Outcome: "ok", Students: []string{"x"}})
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := b.Verify(context.Background(), sqlstore.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Chains) != 2 || rep.Events != 400 {
		t.Fatalf("got %d chains, %d events, want 2 chains, 400 events", len(rep.Chains), rep.Events)
	}
	b.Close()
}

func TestCheckpointsAreLoggedAndReadBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: filepath.Join(dir, "r.db"), Chain: "c", Vault: v, CheckpointEvery: 3, CheckpointInterval: -1,
		Logger: slog.New(slog.NewJSONHandler(auditWriterFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(b) }), nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if err := st.Audit(context.Background(), audit.Event{PrincipalKind: "user", PrincipalID: "u", Action: "read", Outcome: "ok", Students: []string{"s1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil { // the last checkpoint, at 7, is signed on close
		t.Fatal(err)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, `"msg":"audit event"`); n != 7 {
		t.Fatalf("got %d event lines in the log, want 7", n)
	}
	cps, err := audit.ReadCheckpoints(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, c := range cps {
		if err := c.Check(v); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, c.Seq)
	}
	if fmt.Sprint(seqs) != "[3 6 7]" {
		t.Fatalf("got checkpoints at %v, want [3 6 7]", seqs)
	}
}

type auditWriterFunc func([]byte) (int, error)

func (f auditWriterFunc) Write(b []byte) (int, error) { return f(b) }

// The trail's queries, disclosures and verification behave alike on SQLite and
// PostgreSQL, and tampering behind disabled triggers is caught on both.
func TestAuditTrailOnEveryEngine(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		s := district(t, eng)
		ctx := context.Background()
		var disclosing []int64
		for i := 1; i <= 12; i++ {
			ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "study", Action: fmt.Sprint("read-", i%3), Outcome: audit.OK, LegalBasis: "studies",
				Students: []string{testdistrict.Minor}, RequestID: fmt.Sprint("r", i), ResourceType: "user"}
			var fn func(context.Context, *sqlstore.Tx) error
			if i%4 == 0 {
				ev.Students, ev.Disclosed, ev.DisclosureRequired, ev.Fields = []string{testdistrict.Minor, testdistrict.Eligible}, true, true, []string{"givenName"}
			}
			if err := s.Write(ctx, fn, ev); err != nil {
				t.Fatal(err)
			}
			if i == 10 {
				if err := s.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		rep, err := s.Verify(ctx, sqlstore.VerifyOptions{})
		if err != nil || rep.Events != 12 || rep.Disclosures != 6 || rep.Checkpoints != 1 {
			t.Fatalf("verify: %+v, %v; want 12 events, 6 disclosures, 1 checkpoint", rep, err)
		}
		ds, err := s.Disclosures(ctx, testdistrict.Eligible, 10, 0)
		if err != nil || len(ds) != 3 || ds[0].ID <= ds[1].ID || ds[0].RequestID != "r12" || ds[0].Fields[0] != "givenName" {
			t.Fatalf("disclosures of the eligible student: %+v, %v", ds, err)
		}
		for _, d := range ds {
			disclosing = append(disclosing, d.Seq)
		}
		evs, next, err := s.AuditEvents(ctx, sqlstore.AuditQuery{Student: testdistrict.Eligible, Limit: 2})
		if err != nil || len(evs) != 2 || next == "" || evs[0].RequestID != "r12" {
			t.Fatalf("first page of the eligible student's events: %d, %q, %v", len(evs), next, err)
		}
		evs, next, err = s.AuditEvents(ctx, sqlstore.AuditQuery{Student: testdistrict.Eligible, Limit: 2, Cursor: next})
		if err != nil || len(evs) != 1 || next != "" || evs[0].RequestID != "r4" {
			t.Fatalf("second page: %d, %q, %v", len(evs), next, err)
		}
		evs, _, err = s.AuditEvents(ctx, sqlstore.AuditQuery{Principal: "study", Action: "read-0"})
		if err != nil || len(evs) != 4 {
			t.Fatalf("the study's read-0 events: %d, %v", len(evs), err)
		}
		n := 0
		if err := s.ExportAudit(ctx, sqlstore.ExportQuery{Student: testdistrict.Minor}, func(audit.Entry) error { n++; return nil }); err != nil || n != 12 {
			t.Fatalf("export of the minor's events: %d, %v", n, err)
		}
		// Tamper behind disabled triggers: an edited disclosure, then a cut tail.
		db := s.RawDB()
		for _, tbl := range []string{"audit_events", "ix.audit_students", "ix.disclosures", "ix.disclosure_events"} {
			q := "ALTER TABLE " + tbl + " DISABLE TRIGGER ALL"
			if s.Engine() == "sqlite" {
				q = ""
			}
			if q != "" {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
		}
		if s.Engine() == "sqlite" {
			for _, tr := range []string{"ix.disclosures_no_update", "audit_events_no_delete", "ix.audit_students_no_delete", "ix.disclosures_no_delete", "ix.disclosure_events_no_update"} {
				if _, err := db.ExecContext(ctx, "DROP TRIGGER "+tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := db.ExecContext(ctx, s.Rebind("UPDATE ix.disclosure_events SET legal_basis = 'consent' WHERE seq = ?"), disclosing[1]); err != nil {
			t.Fatal(err)
		}
		var b *audit.Break
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); !errors.As(err, &b) || b.Seq != disclosing[1] {
			t.Fatalf("an edited disclosure: got %v, want a break at %d", err, disclosing[1])
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM ix.disclosures"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM ix.audit_students WHERE seq > 6"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "DELETE FROM audit_events WHERE seq > 6"); err != nil {
			t.Fatal(err)
		}
		// The checkpoint at 10 shows the cut tail (7), but the deleted entries of the
		// disclosing event 4 come first.
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); !errors.As(err, &b) || b.Seq != 4 || !strings.Contains(b.Reason, "lacks") {
			t.Fatalf("deleted disclosures and a cut tail: got %v, want the missing entries of event 4", err)
		}
	})
}

// Verify reads the trail in pages; a gap must show wherever it falls, and index rows
// left behind by deleted tail events must too.
func TestVerifyFindsGapsAcrossPagesAndOrphanIndexRows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		t.Fatal(err)
	}
	tr := &trail{dir: dir, vault: v}
	st := tr.open(t, filepath.Join(dir, "base.db"), "a")
	evs := make([]audit.Event, 210)
	for i := range evs {
		evs[i] = audit.Event{PrincipalKind: "user", PrincipalID: "u", Action: "read", Outcome: audit.OK, Students: []string{fmt.Sprint("s", i%10)}}
	}
	if err := st.Write(context.Background(), nil, evs...); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		stmts   []string
		wantSeq int64
	}{
		{"a gap running to the end of the first page (no checkpoint to help)", []string{"DELETE FROM audit_events WHERE seq BETWEEN 60 AND 64", "DELETE FROM audit_checkpoints"}, 60},
		{"tail events deleted, their index rows left", []string{"DELETE FROM audit_events WHERE seq > 200"}, 201},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := tr.tampered(t, c.stmts...)
			s := tr.open(t, path, "verifier")
			defer s.Close()
			_, err := s.Verify(context.Background(), sqlstore.VerifyOptions{PageSize: 64})
			var b *audit.Break
			if !errors.As(err, &b) || b.Seq != c.wantSeq {
				t.Fatalf("got %v, want a break at %d", err, c.wantSeq)
			}
		})
	}
}
