package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"registrar/audit"
	T "registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
)

// studentIndexRows is the student index as rows (chain, seq, student_id): the rows of
// ix.audit_students for events that disclose nothing, the record-of-disclosure entries
// for those that do (the indexer writes each pair once, in one of the two).
const studentIndexRows = "(SELECT chain, seq, student_id FROM ix.audit_students UNION ALL SELECT chain, seq, student_id FROM ix.disclosures) x"

// TestStudentIndexFollowsTheTrail: the student index and the record of disclosures
// are written behind the trail (auditindex.go). At every moment the rows present are
// exactly those of the events up to the watermark; whatever reads them flushes first,
// so a disclosure is visible as soon as the read that made it has answered; a second
// instance (another chain on the same database) is indexed by a flush from the first;
// verify checks everything; a closed store leaves its whole trail indexed.
func TestStudentIndexFollowsTheTrail(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := eng.fresh(t)
		o.Vault = newVault(t)
		o.IndexInterval = -1 // runs only when the test asks: the invariant below reads the watermark and the rows apart
		a := open(t, withChain(o, "a"))
		if err := T.Load(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := open(t, withChain(o, "b"))
		const n = 40
		trailing := 0 // checks that saw a watermark part-way: the invariant was tested on rows, not on none
		for i := 1; i <= n; i++ {
			ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "study", Action: "read", Outcome: audit.OK, LegalBasis: "studies", Purpose: "research",
				ResourceType: "user", RequestID: fmt.Sprint("r", i), Students: []string{T.Minor, fmt.Sprintf("s%02d", i)}}
			if i%4 == 0 {
				ev.Disclosed, ev.DisclosureRequired, ev.Fields = true, true, []string{"givenName", "familyName"}
			}
			st := a
			if i%2 == 0 {
				st = b
			}
			if err := st.Audit(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if i%5 == 0 && i <= 30 { // a run of the writer's own chain; none after 30, so both trail at the flush
				if err := st.IndexStep(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// The invariant, unflushed: rows for exactly the events up to the watermark.
			for _, chain := range []string{"a", "b"} {
				w := count(t, a, "SELECT COALESCE(MAX(seq), 0) FROM ix.audit_indexed WHERE chain = ?", chain)
				if head := count(t, a, "SELECT COALESCE(MAX(seq), 0) FROM audit_events WHERE chain = ?", chain); w > 0 && w < head {
					trailing++
				}
				rows := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = ?", chain)
				want := count(t, a, "SELECT COUNT(*) FROM audit_events WHERE chain = ? AND seq <= ? AND body LIKE '%\"students\":%'", chain, w) * 2
				if rows != want {
					t.Fatalf("after event %d, chain %s: %d index rows for the events up to the watermark %d, want %d", i, chain, rows, w, want)
				}
				if extra := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = ? AND seq > ?", chain, w); extra != 0 {
					t.Fatalf("chain %s: %d index rows beyond the watermark", chain, extra)
				}
			}
		}
		if trailing < 10 {
			t.Fatalf("the watermark was part-way through a chain in %d checks, want at least 10", trailing)
		}
		// A flush by a: both chains indexed, b's included.
		ds, err := a.Disclosures(ctx, T.Minor, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != n/4 {
			t.Fatalf("the minor's record of disclosures has %d entries, want %d", len(ds), n/4)
		}
		if d := ds[0]; d.RequestID != "r40" || d.Chain != "b" || !d.Required || d.Purpose != "research" || len(d.Fields) != 2 {
			t.Fatalf("newest entry: %+v", d)
		}
		for _, chain := range []string{"a", "b"} {
			if got := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = ?", chain); got != n {
				t.Fatalf("chain %s: %d index rows after the flush, want %d", chain, got, n)
			}
		}
		rep, err := a.Verify(ctx, sqlstore.VerifyOptions{})
		if err != nil || rep.Disclosures != n/4*2 {
			t.Fatalf("verify: %+v, %v; want %d disclosures", rep, err, n/4*2)
		}
		// Events after the flush, then close: the closed store indexed them.
		for i := 0; i < 3; i++ {
			if err := b.Audit(ctx, event("late", T.Eligible)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		head := count(t, a, "SELECT MAX(seq) FROM audit_events WHERE chain = 'b'")
		if w := count(t, a, "SELECT seq FROM ix.audit_indexed WHERE chain = 'b'"); w != head {
			t.Fatalf("chain b closed with its index at %d, head %d", w, head)
		}
		if got := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE student_id = ?", T.Eligible); got != 3 {
			t.Fatalf("the eligible student's late events: %d index rows, want 3", got)
		}
	})
}

// TestStudentIndexWithTwoWritersOnOneChain: a second process on the same chain (the
// CLI beside a server), failed writes and flushes from either side, interleaved. The
// committer indexes from its own copy of what it appended while that copy is known
// complete and from the table otherwise; either way verify finds every event's index
// rows and disclosures exactly once.
// (Mutation-checked: a copy that drops its events fails verify here.)
func TestStudentIndexWithTwoWritersOnOneChain(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := eng.fresh(t)
		o.Vault = newVault(t)
		a := open(t, withChain(o, "a"))
		if err := T.Load(ctx, a); err != nil {
			t.Fatal(err)
		}
		cli := open(t, withChain(o, "a"))
		disclosed := 0
		for i := 1; i <= 60; i++ {
			// Until event 30 the CLI appends every third event; after it, a alone
			// appends and flushes, so its index runs take its own copy.
			st := a
			if i%3 == 0 && i <= 30 {
				st = cli
			}
			ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "study", Action: "read", Outcome: audit.OK, LegalBasis: "studies",
				ResourceType: "user", RequestID: fmt.Sprint("r", i), Students: []string{T.Minor, fmt.Sprintf("s%02d", i%7)}}
			if i%4 == 0 {
				ev.Disclosed, ev.Fields = true, []string{"givenName"}
				disclosed += 2
			}
			if i%10 == 0 {
				ev.Students = nil // an event that names no student
				if ev.Disclosed {
					disclosed -= 2
					ev.Disclosed = false
				}
			}
			if err := st.Audit(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if i%7 == 0 { // a failed write: its event is not appended, nor indexed
				err := st.Write(ctx, func(context.Context, *sqlstore.Tx) error { return records.Errorf(records.Conflict, "no") }, event("doomed", T.Eligible))
				var re *records.Error
				if !errors.As(err, &re) || re.Code != records.Conflict {
					t.Fatalf("failed write: %v", err)
				}
			}
			if i%5 == 0 {
				flusher := a
				if i%10 == 5 && i <= 30 {
					flusher = cli
				}
				if err := flusher.FlushAuditIndex(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		rep, err := a.Verify(ctx, sqlstore.VerifyOptions{})
		if err != nil || rep.Disclosures != int64(disclosed) {
			t.Fatalf("verify: %+v, %v; want %d disclosures", rep, err, disclosed)
		}
		if got := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE student_id = ?", T.Eligible); got != 0 {
			t.Fatalf("failed writes left %d index rows", got)
		}
		if got, want := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = 'a' AND student_id = ?", T.Minor), 54; got != want {
			t.Fatalf("the minor has %d index rows, want %d (one per event naming them)", got, want)
		}
	})
}

// TestStudentIndexRunsStopShortAndCatchUp: with a small budget per run, each run
// writes a few events' rows, the watermark trails the head, the rows are always
// exactly those up to it, and further runs bring it to the head.
func TestStudentIndexRunsStopShortAndCatchUp(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := eng.fresh(t)
		o.IndexRunRows = 3
		o.IndexInterval = -1 // runs only when the test asks
		s := open(t, withChain(o, "a"))
		invariant := func(when string) int {
			t.Helper()
			w := count(t, s, "SELECT seq FROM ix.audit_indexed WHERE chain = 'a'")
			rows := count(t, s, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = 'a'")
			want := count(t, s, "SELECT COUNT(*) FROM audit_events WHERE chain = 'a' AND seq <= ? AND body LIKE '%\"students\":%'", w) * 2
			if rows != want {
				t.Fatalf("%s: %d index rows up to the watermark %d, want %d", when, rows, w, want)
			}
			return w
		}
		for i := 0; i < 20; i++ {
			if err := s.Audit(ctx, event(fmt.Sprint("read-", i), fmt.Sprintf("s%d", i), "shared")); err != nil {
				t.Fatal(err)
			}
		}
		if w := invariant("before any run"); w != 0 {
			t.Fatalf("watermark %d before any run", w)
		}
		head := count(t, s, "SELECT MAX(seq) FROM audit_events WHERE chain = 'a'")
		steps := 0
		for w := 0; w < head; steps++ {
			if steps > head {
				t.Fatalf("the watermark is at %d of %d after %d runs", w, head, steps)
			}
			if err := s.IndexStep(ctx); err != nil {
				t.Fatal(err)
			}
			next := invariant(fmt.Sprint("after run ", steps+1))
			if next <= w {
				t.Fatalf("run %d did not move the watermark from %d", steps+1, w)
			}
			if next-w > 2 {
				t.Fatalf("run %d indexed events %d..%d: more than the 3 rows it may write (whole events of 2 students)", steps+1, w+1, next)
			}
			w = next
		}
		if steps < 10 {
			t.Fatalf("%d runs for 20 events of 2 students at 3 rows a run, want at least 10", steps)
		}
		if rows := count(t, s, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = 'a'"); rows != 40 {
			t.Fatalf("%d index rows after the catch-up, want 40 (20 events of 2 students)", rows)
		}
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIndexMovesToItsSchema: a database from before migration 7 has the student
// index, the record of disclosures and the watermark among its own tables; opening
// it moves them to the schema ix (on SQLite, copies them into the index file and
// drops the originals) with every row, and the trail still verifies.
func TestIndexMovesToItsSchema(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := withChain(eng.fresh(t), "a")
		o.Vault = newVault(t)
		o.IndexInterval = -1 // no run may rebuild what the move should have copied
		s := open(t, o)
		for i := 0; i < 12; i++ {
			ev := event(fmt.Sprint("read-", i), T.Minor, fmt.Sprintf("s%d", i))
			if i%3 == 0 {
				ev.Disclosed, ev.DisclosureRequired, ev.Fields = true, true, []string{"givenName"}
			}
			if err := s.Audit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.FlushAuditIndex(ctx); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for _, tbl := range []string{"audit_indexed", "audit_students", "disclosures", "disclosure_events"} {
			want[tbl] = count(t, s, "SELECT COUNT(*) FROM ix."+tbl)
		}
		// 24 students named in all; the 8 of disclosing events are indexed by their
		// entries in the record of disclosures alone, the other 16 in audit_students.
		if want["audit_students"] != 16 || want["disclosures"] != 8 || want["disclosure_events"] != 4 {
			t.Fatalf("before the move: %v", want)
		}
		db := s.RawDB()
		// Back to how a database of migration 6 held them.
		var stmts []string
		if s.Engine() == "sqlite" {
			for tbl := range want {
				stmts = append(stmts, "CREATE TABLE main."+tbl+" AS SELECT * FROM ix."+tbl)
			}
		} else {
			for tbl := range want {
				stmts = append(stmts, "ALTER TABLE ix."+tbl+" SET SCHEMA public")
			}
			stmts = append(stmts, "DROP SCHEMA ix")
		}
		stmts = append(stmts, "DELETE FROM schema_migrations WHERE version = 7")
		for _, q := range stmts {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		s.Close()
		if s.Engine() == "sqlite" {
			db.Close()
			removeSQLite(t, sqlstore.IndexPath(o.Path))
		}
		s = open(t, o)
		for tbl, n := range want {
			if got := count(t, s, "SELECT COUNT(*) FROM ix."+tbl); got != n {
				t.Errorf("ix.%s has %d rows after the move, want %d", tbl, got, n)
			}
		}
		if s.Engine() == "sqlite" {
			if n := count(t, s, "SELECT COUNT(*) FROM main.sqlite_master WHERE name IN ('audit_students', 'disclosures', 'disclosure_events', 'audit_indexed')"); n != 0 {
				t.Errorf("%d index tables left in the database", n)
			}
		}
		ds, err := s.Disclosures(ctx, T.Minor, 100, 0)
		if err != nil || len(ds) != 4 {
			t.Fatalf("the minor's record of disclosures after the move: %d entries, %v; want 4", len(ds), err)
		}
		rep, err := s.Verify(ctx, sqlstore.VerifyOptions{})
		if err != nil || rep.Disclosures != 8 {
			t.Fatalf("verify after the move: %+v, %v", rep, err)
		}
		// New events are indexed in the new place.
		if err := s.Audit(ctx, event("after", T.Minor)); err != nil {
			t.Fatal(err)
		}
		if err := s.FlushAuditIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if got := count(t, s, "SELECT COUNT(*) FROM "+studentIndexRows); got != 25 {
			t.Fatalf("%d index rows after one more event, want 25", got)
		}
	})
}

// TestLostIndexFileIsRebuilt: the SQLite index file is derived from the trail; a data
// dir that lost it (deleted, or restored without it) opens with every chain's index
// rebuilt from the events, other instances' chains included.
func TestLostIndexFileIsRebuilt(t *testing.T) {
	o := withChain(engines[0].fresh(t), "a")
	o.Vault = newVault(t)
	a := open(t, o)
	b := open(t, withChain(o, "b"))
	for i := 0; i < 10; i++ {
		st := a
		if i%2 == 1 {
			st = b
		}
		if err := st.Audit(ctx, event(fmt.Sprint("read-", i), T.Minor, fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	a.Close()
	removeSQLite(t, sqlstore.IndexPath(o.Path))
	a = open(t, o)
	if err := a.FlushAuditIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for chain, want := range map[string]int{"a": 10, "b": 10} {
		if got := count(t, a, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE chain = ?", chain); got != want {
			t.Errorf("chain %s: %d index rows after the rebuild, want %d", chain, got, want)
		}
	}
	if _, err := a.Verify(ctx, sqlstore.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestIndexFileMustMatchItsDatabase: the SQLite index file is read as the derived
// rows of the database beside it, so one that is not (left behind by a deleted
// database; newer than a database restored from a backup; an older copy restored
// without a chain another instance added) must never be taken at its word.
func TestIndexFileMustMatchItsDatabase(t *testing.T) {
	copyFiles := func(t *testing.T, from, to string) {
		t.Helper()
		removeSQLite(t, to)
		for _, suffix := range sqliteFiles {
			b, err := os.ReadFile(from + suffix)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to+suffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	disclose := func(t *testing.T, s *sqlstore.Store, n int, student string) {
		t.Helper()
		for i := 0; i < n; i++ {
			ev := event(fmt.Sprint("read-", i), student)
			ev.PrincipalKind, ev.PrincipalID, ev.Disclosed, ev.Fields = audit.KindClient, "vendor", true, []string{"givenName"}
			if err := s.Audit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(t *testing.T, s *sqlstore.Store, want map[string]int) {
		t.Helper()
		for student, n := range want {
			ds, err := s.Disclosures(ctx, student, 100, 0)
			if err != nil || len(ds) != n {
				t.Errorf("%s's record of disclosures: %d entries, %v; want %d", student, len(ds), err, n)
			}
			evs, _, err := s.AuditEvents(ctx, sqlstore.AuditQuery{Student: student})
			if err != nil || len(evs) != n {
				t.Errorf("%s's events: %d, %v; want %d", student, len(evs), err, n)
			}
		}
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setUp := func(t *testing.T) sqlstore.Options {
		o := withChain(engines[0].fresh(t), "a")
		o.Vault = newVault(t)
		o.IndexInterval = -1
		return o
	}
	t.Run("left by a deleted database", func(t *testing.T) {
		o := setUp(t)
		s := open(t, o)
		disclose(t, s, 5, "s1")
		s.Close()
		removeSQLite(t, o.Path)
		s = open(t, o)
		disclose(t, s, 3, "s2")
		check(t, s, map[string]int{"s1": 0, "s2": 3})
		if aside, _ := filepath.Glob(sqlstore.IndexPath(o.Path) + ".stale-*"); len(aside) == 0 {
			t.Error("the stale index file was not kept aside")
		}
	})
	t.Run("newer than a restored database", func(t *testing.T) {
		o := setUp(t)
		s := open(t, o)
		disclose(t, s, 5, "s1")
		s.Close()
		backup := filepath.Join(t.TempDir(), "backup.db")
		copyFiles(t, o.Path, backup)
		s = open(t, o)
		disclose(t, s, 3, "s1")
		s.Close()
		copyFiles(t, backup, o.Path) // the database goes back to 5 events; its index file stays at 8
		s = open(t, o)
		check(t, s, map[string]int{"s1": 5})
	})
	t.Run("an older copy without another instance's chain", func(t *testing.T) {
		o := setUp(t)
		s := open(t, o)
		disclose(t, s, 2, "s1")
		s.Close()
		backup := filepath.Join(t.TempDir(), "index-backup.db")
		copyFiles(t, sqlstore.IndexPath(o.Path), backup)
		b := open(t, withChain(o, "b"))
		disclose(t, b, 3, "s3")
		b.Close()
		copyFiles(t, backup, sqlstore.IndexPath(o.Path))
		s = open(t, o)
		check(t, s, map[string]int{"s1": 2, "s3": 3})
	})
}

// sqliteFiles are the suffixes of a SQLite database's files in WAL mode.
var sqliteFiles = []string{"", "-wal", "-shm"}

// removeSQLite deletes the SQLite database at path with its WAL and shared memory.
func removeSQLite(t *testing.T, path string) {
	t.Helper()
	for _, suffix := range sqliteFiles {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// BenchmarkIndexRun measures what an index run costs per row: a trail of 20,000
// disclosing events naming 30 of 10,000 students each is indexed first, then each
// iteration appends 200 more (16 writers, through the committer) and flushes them.
// It reports the flush's µs per row written (a student-index row and a disclosure
// entry per student), the figure behind docs/audit.md's "about 20 µs a row".
//
//	go test ./sqlstore -run '^$' -bench IndexRun -benchtime 20x
func BenchmarkIndexRun(b *testing.B) {
	o := engines[0].fresh(b)
	o.IndexInterval = -1
	st := open(b, o)
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-1234-4abc-8def-%012x", i*7919, i)
	}
	const students, writers, perIter = 30, 16, 200
	write := func(n, base int) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < n; k += writers {
					s := make([]string, students)
					for j := range s {
						s[j] = ids[((base+k)*31+j*337)%len(ids)]
					}
					ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "lms", Action: "read", Outcome: audit.OK, LegalBasis: "school-official",
						ResourceType: "user", RequestID: fmt.Sprint("r", base+k), Students: s, Disclosed: true, Fields: []string{"givenName", "familyName"}}
					if err := st.Audit(ctx, ev); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	write(20000, 0)
	if err := st.FlushAuditIndex(ctx); err != nil {
		b.Fatal(err)
	}
	var flush time.Duration
	for i := 0; b.Loop(); i++ {
		write(perIter, 100000+i*perIter)
		t0 := time.Now()
		if err := st.FlushAuditIndex(ctx); err != nil {
			b.Fatal(err)
		}
		flush += time.Since(t0)
	}
	b.ReportMetric(float64(flush.Microseconds())/float64(b.N*perIter*students*2), "flush-µs/row")
}

// TestDisclosureEntriesIndexTheirStudents: a disclosing event's students are in the
// student index through its record-of-disclosure entries alone, and a student's
// events are found through both tables, each once, also where an index written before
// 2026-11-29 holds a disclosing event in both. Verify accepts such rows when they are
// right and catches them when they are not.
func TestDisclosureEntriesIndexTheirStudents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := eng.fresh(t)
		o.Vault = newVault(t)
		s := open(t, withChain(o, "a"))
		if err := T.Load(ctx, s); err != nil {
			t.Fatal(err)
		}
		const who = "student-x"
		for i := range 6 {
			ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "lms", Action: "read", Outcome: audit.OK, LegalBasis: "school-official",
				Purpose: "p", ResourceType: "user", RequestID: fmt.Sprint("q", i), Students: []string{who, "other"}}
			if i%2 == 0 {
				ev.Disclosed, ev.Fields = true, []string{"givenName"}
			}
			if err := s.Audit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.FlushAuditIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if got := count(t, s, "SELECT COUNT(*) FROM ix.audit_students WHERE student_id = ?", who); got != 3 {
			t.Fatalf("ix.audit_students has %d rows for the student, want 3 (the events that disclosed nothing)", got)
		}
		if got := count(t, s, "SELECT COUNT(*) FROM ix.disclosures WHERE student_id = ?", who); got != 3 {
			t.Fatalf("the record of disclosures has %d entries for the student, want 3", got)
		}
		// A one-student disclosure is one entry carrying its event's details.
		if err := s.Audit(ctx, audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "lms", Action: "read", Outcome: audit.OK, LegalBasis: "school-official",
			Purpose: "p", ResourceType: "user", RequestID: "solo", Students: []string{"solo-student"}, Disclosed: true, Fields: []string{"familyName"}}); err != nil {
			t.Fatal(err)
		}
		ds, err := s.Disclosures(ctx, "solo-student", 10, 0)
		if err != nil || len(ds) != 1 || ds[0].RequestID != "solo" || ds[0].PartyID != "lms" || !slices.Equal(ds[0].Fields, []string{"familyName"}) {
			t.Fatalf("the one-student disclosure: %+v, %v", ds, err)
		}
		if got := count(t, s, "SELECT COUNT(*) FROM "+studentIndexRows+" WHERE student_id = 'solo-student'") +
			count(t, s, "SELECT COUNT(*) FROM ix.disclosure_events WHERE seq = ?", ds[0].Seq); got != 1 {
			t.Fatalf("the one-student disclosure wrote %d index rows, want 1", got)
		}
		found := func() []string {
			t.Helper()
			es, _, err := s.AuditEvents(ctx, sqlstore.AuditQuery{Student: who, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range es {
				ids = append(ids, e.RequestID)
			}
			slices.Sort(ids)
			return ids
		}
		want := []string{"q0", "q1", "q2", "q3", "q4", "q5"} // not "solo"
		if got := found(); !slices.Equal(got, want) {
			t.Fatalf("the student's events: %v, want %v", got, want)
		}
		// An index written before: the disclosing event q0 (seq 1) in both tables.
		db := s.RawDB()
		if _, err := db.ExecContext(ctx, s.Rebind("INSERT INTO ix.audit_students (chain, seq, student_id) VALUES ('a', 1, ?), ('a', 1, 'other')"), who); err != nil {
			t.Fatal(err)
		}
		if got := found(); !slices.Equal(got, want) {
			t.Fatalf("with an older index's rows, the student's events: %v, want %v (each once)", got, want)
		}
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); err != nil {
			t.Fatalf("verify with an older index's rows: %v", err)
		}
		// A row that names someone the disclosing event q2 (seq 3) did not.
		if _, err := db.ExecContext(ctx, "INSERT INTO ix.audit_students (chain, seq, student_id) VALUES ('a', 3, 'intruder')"); err != nil {
			t.Fatal(err)
		}
		var brk *audit.Break
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); !errors.As(err, &brk) || brk.Seq != 3 {
			t.Fatalf("verify with a wrong row for a disclosing event: %v, want a break at 3", err)
		}
	})
}

// TestDisclosedFieldsFollowEachEvent: one indexer run over disclosures whose field
// lists change from event to event (the run encodes a list once while the next is the
// same), one-student and several-student alike, records each event's own fields.
func TestDisclosedFieldsFollowEachEvent(t *testing.T) {
	o := engines[0].fresh(t)
	o.IndexInterval = -1 // one run, at the flush
	s := open(t, o)
	const who = "student-f"
	lists := [][]string{{"givenName"}, {"givenName"}, {"givenName", "familyName"}, {"givenName"}, {}, {"email"}, {"email"}}
	for i, fields := range lists {
		students := []string{who}
		if i%2 == 1 {
			students = append(students, "other")
		}
		ev := audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "lms", Action: "read", Outcome: audit.OK, LegalBasis: "school-official",
			Purpose: "p", ResourceType: "user", RequestID: fmt.Sprint("f", i), Students: students, Disclosed: true, Fields: fields}
		if err := s.Audit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Disclosures(ctx, who, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(lists) {
		t.Fatalf("%d disclosures recorded, want %d", len(got), len(lists))
	}
	for _, d := range got {
		var i int
		if _, err := fmt.Sscanf(d.RequestID, "f%d", &i); err != nil {
			t.Fatalf("request id %q: %v", d.RequestID, err)
		}
		if !slices.Equal(d.Fields, lists[i]) {
			t.Errorf("disclosure %s: fields %q, want %q", d.RequestID, d.Fields, lists[i])
		}
	}
}
