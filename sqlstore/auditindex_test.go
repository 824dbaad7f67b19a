package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"registrar/audit"
	T "registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
)

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
		a := open(t, withChain(o, "a"))
		if err := T.Load(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := open(t, withChain(o, "b"))
		const n = 40
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
			// The invariant, unflushed: rows for exactly the events up to the watermark.
			for _, chain := range []string{"a", "b"} {
				w := count(t, a, "SELECT COALESCE(MAX(seq), 0) FROM audit_indexed WHERE chain = ?", chain)
				rows := count(t, a, "SELECT COUNT(*) FROM audit_students WHERE chain = ?", chain)
				want := count(t, a, "SELECT COUNT(*) FROM audit_events WHERE chain = ? AND seq <= ? AND body LIKE '%\"students\":%'", chain, w) * 2
				if rows != want {
					t.Fatalf("after event %d, chain %s: %d index rows for the events up to the watermark %d, want %d", i, chain, rows, w, want)
				}
				if extra := count(t, a, "SELECT COUNT(*) FROM audit_students WHERE chain = ? AND seq > ?", chain, w); extra != 0 {
					t.Fatalf("chain %s: %d index rows beyond the watermark", chain, extra)
				}
			}
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
			if got := count(t, a, "SELECT COUNT(*) FROM audit_students WHERE chain = ?", chain); got != n {
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
		if w := count(t, a, "SELECT seq FROM audit_indexed WHERE chain = 'b'"); w != head {
			t.Fatalf("chain b closed with its index at %d, head %d", w, head)
		}
		if got := count(t, a, "SELECT COUNT(*) FROM audit_students WHERE student_id = ?", T.Eligible); got != 3 {
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
		if got := count(t, a, "SELECT COUNT(*) FROM audit_students WHERE student_id = ?", T.Eligible); got != 0 {
			t.Fatalf("failed writes left %d index rows", got)
		}
		if got, want := count(t, a, "SELECT COUNT(*) FROM audit_students WHERE chain = 'a' AND student_id = ?", T.Minor), 54; got != want {
			t.Fatalf("the minor has %d index rows, want %d (one per event naming them)", got, want)
		}
	})
}

// TestStudentIndexRunsStopShortAndCatchUp: with a small budget per run, each batch
// writes a few events' rows, the watermark trails the head, the rows are always
// exactly those up to it, and a flush (or further batches) brings it to the head.
func TestStudentIndexRunsStopShortAndCatchUp(t *testing.T) {
	forEachEngine(t, func(t *testing.T, eng engine) {
		o := eng.fresh(t)
		var clock atomic.Int64
		clock.Store(time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC).UnixNano())
		o.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
		o.IndexRunRows = 3
		s := open(t, withChain(o, "a"))
		invariant := func(when string) int {
			t.Helper()
			w := count(t, s, "SELECT seq FROM audit_indexed WHERE chain = 'a'")
			rows := count(t, s, "SELECT COUNT(*) FROM audit_students WHERE chain = 'a'")
			want := count(t, s, "SELECT COUNT(*) FROM audit_events WHERE chain = 'a' AND seq <= ? AND body LIKE '%\"students\":%'", w) * 2
			if rows != want {
				t.Fatalf("%s: %d index rows up to the watermark %d, want %d", when, rows, w, want)
			}
			return w
		}
		for i := 0; i < 20; i++ { // within the second: not due yet
			if err := s.Audit(ctx, event(fmt.Sprint("read-", i), fmt.Sprintf("s%d", i), "shared")); err != nil {
				t.Fatal(err)
			}
			invariant(fmt.Sprint("after event ", i+1))
		}
		clock.Add(int64(2 * time.Second)) // the next batch finds the index due
		if err := s.Audit(ctx, event("read-20", "s20", "shared")); err != nil {
			t.Fatal(err)
		}
		head := count(t, s, "SELECT MAX(seq) FROM audit_events WHERE chain = 'a'")
		if w := invariant("before the flush"); w >= head || w == 0 {
			t.Fatalf("watermark %d of head %d: runs of 3 rows should trail 20 events of 2 students, and have started", w, head)
		}
		for i := 0; i < 30; i++ { // the next batches catch up, a run each, without waiting a second
			if err := s.Audit(ctx, event("noop")); err != nil {
				t.Fatal(err)
			}
		}
		invariant("after catching up")
		if rows := count(t, s, "SELECT COUNT(*) FROM audit_students WHERE chain = 'a'"); rows != 42 {
			t.Fatalf("%d index rows after the catch-up, want 42 (21 events of 2 students)", rows)
		}
		if _, err := s.Verify(ctx, sqlstore.VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}
