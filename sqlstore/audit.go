package sqlstore

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"registrar/audit"
	"registrar/records"
)

// Defaults of the checkpoint cadence.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 30 * time.Second
)

// auditConfig is the store's audit trail settings and the checkpoint ticker.
type auditConfig struct {
	off      bool // NoAuditForBenchmarks
	signer   audit.Signer
	checker  audit.SignatureChecker
	every    int64
	interval time.Duration

	indexRunRows int // auditindex.go

	stop chan struct{} // closed to stop the ticker
	done chan struct{} // closed by the ticker when it has stopped
}

func newAuditConfig(o Options) auditConfig {
	a := auditConfig{off: o.NoAuditForBenchmarks, signer: o.Signer, every: int64(o.CheckpointEvery), interval: o.CheckpointInterval, indexRunRows: o.IndexRunRows}
	if a.indexRunRows <= 0 {
		a.indexRunRows = indexRunRows
	}
	if a.signer == nil {
		a.signer, _ = o.Vault.(audit.Signer)
	}
	a.checker, _ = a.signer.(audit.SignatureChecker)
	if a.every <= 0 {
		a.every = DefaultCheckpointEvery
	}
	if a.interval == 0 {
		a.interval = DefaultCheckpointInterval
	}
	return a
}

// checkpointWish is what a transaction asks of the checkpointer.
type checkpointWish int

const (
	noWish      checkpointWish = iota
	wishIfDirty                // sign if this process appended since its last checkpoint (ticker, Close)
	wishForce                  // sign if the chain has events newer than its newest checkpoint
)

// checkpointState is the committer's side of checkpoints; only the committer's
// goroutine touches it.
type checkpointState struct {
	seq     int64     // newest checkpoint of the chain this process knows of
	at      time.Time // when this process last signed one (or started)
	dirty   bool      // this process appended since it last signed
	wish    checkpointWish
	made    *audit.Checkpoint // signed in the batch in hand; logged once committed
	pending []pendingLog      // appended in the batch in hand; logged once committed
}

type pendingLog struct {
	e    audit.Event
	hash []byte
}

func (c *committer) loadCheckpointState(ctx context.Context) error {
	var seq sql.NullInt64
	if err := c.s.w.QueryRowContext(ctx, c.s.d.rebind("SELECT MAX(seq) FROM audit_checkpoints WHERE chain = ?"), c.chain).Scan(&seq); err != nil {
		return fmt.Errorf("sqlstore: read audit checkpoints: %w", err)
	}
	c.ck.seq, c.ck.at = seq.Int64, c.s.now()
	return nil
}

// appended notes an event appended in the batch in hand.
func (c *committer) appended(e *audit.Event, hash []byte) {
	c.ck.dirty = true
	c.ck.pending = append(c.ck.pending, pendingLog{*e, hash})
}

// maybeCheckpoint signs the chain head into audit_checkpoints, in the batch's
// transaction, every N events, every T, or when asked.
func (c *committer) maybeCheckpoint(ctx context.Context, tx *sql.Tx, now time.Time) error {
	a := &c.s.audit
	if a.off || a.signer == nil || c.seq == 0 {
		return nil
	}
	due := false
	switch {
	case c.ck.wish == wishForce:
		var seq sql.NullInt64
		if err := tx.QueryRowContext(ctx, c.s.d.rebind("SELECT MAX(seq) FROM audit_checkpoints WHERE chain = ?"), c.chain).Scan(&seq); err != nil {
			return fmt.Errorf("read audit checkpoints: %w", err)
		}
		due = c.seq > seq.Int64
	case !c.ck.dirty || c.seq <= c.ck.seq:
	case c.ck.wish == wishIfDirty, c.seq-c.ck.seq >= a.every, a.interval > 0 && now.Sub(c.ck.at) >= a.interval:
		due = true
	}
	if !due {
		return nil
	}
	cp := audit.Checkpoint{Chain: c.chain, Seq: c.seq, Hash: c.head, Time: now}
	if err := cp.Sign(a.signer); err != nil {
		return err
	}
	// Another process on the same chain may have signed this very head: keep theirs.
	if _, err := tx.ExecContext(ctx, c.s.d.rebind("INSERT INTO audit_checkpoints (chain, seq, hash, time, signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
		cp.Chain, cp.Seq, cp.Hash, cp.Time.Format(audit.TimeFormat), cp.Signature); err != nil {
		return fmt.Errorf("append audit checkpoint: %w", err)
	}
	c.ck.made = &cp
	return nil
}

// afterBatch runs once the batch's callers have their answers: on success it copies
// the batch's events and checkpoint into the log stream, so that a copy exists
// outside the database.
func (c *committer) afterBatch(err error) {
	defer func() {
		clear(c.ck.pending) // the batch's events are not kept alive until the next batch
		c.ck.pending, c.ck.made, c.ck.wish = c.ck.pending[:0], nil, noWish
	}()
	if err != nil {
		return
	}
	if cp := c.ck.made; cp != nil {
		c.ck.seq, c.ck.at, c.ck.dirty = cp.Seq, c.s.now(), false
	}
	if len(c.ck.pending) == 0 && c.ck.made == nil {
		return
	}
	var events []pendingLog
	if len(c.ck.pending) > 0 {
		select {
		case events = <-c.logFree: // a list the log loop has written, instead of a new one
		default:
		}
		events = append(events, c.ck.pending...)
	}
	lb := logBatch{events: events, checkpoint: c.ck.made}
	c.logq <- lb // written by logLoop in commit order, off the committer's path; a full queue holds the committer rather than drop a line
}

// maxFreeLog: a written event list longer than this (a batch of a large import's
// events) is left to the collector rather than kept for reuse.
const maxFreeLog = 1024

// logBatch is one committed batch's copy for the log stream.
type logBatch struct {
	events     []pendingLog
	checkpoint *audit.Checkpoint
	flushed    chan struct{} // FlushLog's marker: closed when reached
}

// logLoop writes committed batches to the log stream in commit order.
func (c *committer) logLoop() {
	defer close(c.logDone)
	for lb := range c.logq {
		c.writeLog(lb)
		if lb.flushed != nil {
			close(lb.flushed)
		}
		if lb.events != nil && cap(lb.events) <= maxFreeLog {
			clear(lb.events)
			select {
			case c.logFree <- lb.events[:0]:
			default:
			}
		}
	}
}

// FlushLog returns once the log-stream copy of every write that has returned is
// written (the copy follows the commit, from its own goroutine).
func (s *Store) FlushLog(ctx context.Context) error {
	c := s.commit
	done := make(chan struct{})
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil // stop has drained the copy
	}
	select {
	case c.logq <- logBatch{flushed: done}:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *committer) writeLog(lb logBatch) {
	for _, p := range lb.events {
		c.logAudit(audit.LogEvent, slog.Any("event", audit.NewLogView(p.e, p.hash)))
	}
	if cp := lb.checkpoint; cp != nil {
		c.logAudit(audit.LogCheckpoint, slog.Any("checkpoint", *cp))
	}
}

// logAudit writes one line of the trail's copy in the log stream. It goes to the
// handler directly, at level INFO, whatever the configured level: an operator who
// quiets the log to warnings must not silently lose the copy outside the database.
func (c *committer) logAudit(msg string, a slog.Attr) {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
	r.AddAttrs(a)
	if err := c.s.log.Handler().Handle(context.Background(), r); err != nil {
		// The log stream is a copy; the database has the event. Say so once per line
		// on the same logger's error path, which is all that can be done here.
		c.s.log.Error("audit copy not written to the log stream", "err", err)
	}
}

// Checkpoint signs the chain head now if the chain has events newer than its newest
// checkpoint (`registrar audit checkpoint`, tests).
func (s *Store) Checkpoint(ctx context.Context) error {
	return s.Write(ctx, func(_ context.Context, t *Tx) error { t.wish(wishForce); return nil })
}

func (t *Tx) wish(w checkpointWish) {
	if w > t.s.commit.ck.wish {
		t.s.commit.ck.wish = w
	}
}

// startCheckpoints runs the ticker that asks for a checkpoint every interval, so an
// idle chain's last events are covered too.
func (s *Store) startCheckpoints() {
	a := &s.audit
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	if a.off || a.signer == nil || a.interval <= 0 {
		close(a.done)
		return
	}
	go func() {
		defer close(a.done)
		t := time.NewTicker(a.interval)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				err := s.Write(context.Background(), func(_ context.Context, t *Tx) error { t.wish(wishIfDirty); return nil })
				if err != nil && !errors.Is(err, ErrClosed) {
					s.log.Warn("audit checkpoint", "err", err)
				}
			}
		}
	}()
}

// stopCheckpoints stops the ticker and signs a last checkpoint over what this
// process appended.
func (s *Store) stopCheckpoints() {
	a := &s.audit
	close(a.stop)
	<-a.done
	if a.off || a.signer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Write(ctx, func(_ context.Context, t *Tx) error { t.wish(wishIfDirty); return nil }); err != nil {
		s.log.Warn("final audit checkpoint", "err", err)
	}
}

// Checkpoints returns the stored checkpoints of chain ("" for every chain), in chain
// and sequence order.
func (s *Store) Checkpoints(ctx context.Context, chain string) ([]audit.Checkpoint, error) {
	q := "SELECT chain, seq, hash, time, signature FROM audit_checkpoints"
	var args []any
	if chain != "" {
		q += " WHERE chain = ?"
		args = append(args, chain)
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind(q+" ORDER BY chain, seq"), args...)
	if err != nil {
		return nil, unavailable("audit checkpoints", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var c audit.Checkpoint
		var at string
		if err := rows.Scan(&c.Chain, &c.Seq, &c.Hash, &at, &c.Signature); err != nil {
			return nil, unavailable("audit checkpoints", err)
		}
		c.Time, _ = time.Parse(time.RFC3339Nano, at) // a bad time fails the signature check
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("audit checkpoints", err)
	}
	return out, nil
}

// VerifyOptions choose what Verify checks.
type VerifyOptions struct {
	// Chain limits verification to one chain ("" for all).
	Chain string
	// From and To bound the events verified (0: the first, the last). A range that
	// does not start at 1 is anchored at the newest valid checkpoint before From.
	From, To int64
	// External are checkpoints kept outside the database (the log stream, an earlier
	// `audit checkpoints` export): each must be in the database and the chain must
	// reach it, so cutting the tail of both the events and the checkpoint table shows.
	External []audit.Checkpoint
	// Checker verifies checkpoint signatures (default: the store's vault).
	Checker audit.SignatureChecker
	// PageSize is how many events are read per read transaction (default 4096).
	PageSize int
}

// VerifyReport says what Verify looked at.
type VerifyReport struct {
	Chains      []ChainReport
	Events      int64
	Checkpoints int
	External    int
	Disclosures int64
}

// ChainReport is one chain's part of a VerifyReport.
type ChainReport struct {
	Chain       string
	From, To    int64 // the events verified
	AnchorSeq   int64 // the checkpoint the range started from (0: the genesis)
	Events      int64
	Checkpoints int
}

// VerifyAudit checks every chain of the audit trail from its first event and returns
// the number of events verified, or a *audit.Break naming the first bad place.
func (s *Store) VerifyAudit(ctx context.Context) (int64, error) {
	rep, err := s.Verify(ctx, VerifyOptions{})
	return rep.Events, err
}

// verifyChunk is how many events are read per read transaction: each chunk sees its
// events, their student index and their disclosures in one snapshot.
const verifyChunk = 4096

// Verify checks the audit trail: each chain's hash links, each event's canonical
// form, the student index and the record of disclosures against the events, every
// checkpoint's signature, and that every checkpoint (stored or external) agrees with
// the chain and is reached by it. It returns a *audit.Break naming the first bad place
// (lowest sequence number of the first broken chain).
func (s *Store) Verify(ctx context.Context, o VerifyOptions) (VerifyReport, error) {
	var rep VerifyReport
	checker := o.Checker
	if checker == nil {
		checker = s.audit.checker
	}
	if checker == nil {
		return rep, errors.New("sqlstore: no signature checker: checkpoints cannot be verified")
	}
	// The index of events appended so far is written first; events appended while
	// verify runs are checked up to the watermark each chunk reads.
	if err := s.FlushAuditIndex(ctx); err != nil {
		return rep, err
	}
	chains, err := s.auditChains(ctx, o)
	if err != nil {
		return rep, err
	}
	rep.External = len(o.External)
	for _, chain := range chains {
		cr, err := s.verifyChain(ctx, chain, o, checker, &rep)
		rep.Chains = append(rep.Chains, cr)
		rep.Events += cr.Events
		rep.Checkpoints += cr.Checkpoints
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func (s *Store) auditChains(ctx context.Context, o VerifyOptions) ([]string, error) {
	if o.Chain != "" {
		return []string{o.Chain}, nil
	}
	seen := map[string]bool{}
	for _, q := range []string{"SELECT DISTINCT chain FROM audit_events", "SELECT DISTINCT chain FROM audit_checkpoints"} {
		rows, err := s.r.QueryContext(ctx, q)
		if err != nil {
			return nil, unavailable("audit chains", err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return nil, unavailable("audit chains", err)
			}
			seen[c] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, unavailable("audit chains", err)
		}
	}
	for _, c := range o.External {
		seen[c.Chain] = true
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// firstBreak keeps the break with the lowest sequence number.
type firstBreak struct{ b *audit.Break }

func (f *firstBreak) add(err error) error {
	if err == nil {
		return nil
	}
	var b *audit.Break
	if !errors.As(err, &b) {
		return err // not a break: an I/O error ends verification
	}
	if f.b == nil || b.Seq < f.b.Seq {
		f.b = b
	}
	return nil
}

func (s *Store) verifyChain(ctx context.Context, chain string, o VerifyOptions, checker audit.SignatureChecker, rep *VerifyReport) (ChainReport, error) {
	cr := ChainReport{Chain: chain}
	var fb firstBreak
	stored, err := s.Checkpoints(ctx, chain)
	if err != nil {
		return cr, err
	}
	cr.Checkpoints = len(stored)
	// Checkpoints first: a bad signature or a stored checkpoint that disagrees with an
	// external copy is a break at that checkpoint's event.
	var valid []audit.Checkpoint
	byseq := map[int64]audit.Checkpoint{}
	for i := range stored {
		c := &stored[i]
		if err := c.Check(checker); err != nil {
			if err := fb.add(err); err != nil {
				return cr, err
			}
			continue
		}
		valid = append(valid, *c)
		byseq[c.Seq] = *c
	}
	for i := range o.External {
		c := &o.External[i]
		if c.Chain != chain {
			continue
		}
		if err := c.Check(checker); err != nil {
			b := err.(*audit.Break)
			b.Reason = "external " + b.Reason
			if err := fb.add(b); err != nil {
				return cr, err
			}
			continue
		}
		if in, ok := byseq[c.Seq]; !ok || !bytes.Equal(in.Hash, c.Hash) {
			what := "is missing from the database (the checkpoint table was truncated or edited)"
			if ok {
				what = "differs from the database's checkpoint at that event (replaced)"
			}
			if err := fb.add(&audit.Break{Chain: chain, Seq: c.Seq, Reason: fmt.Sprintf("the external checkpoint at event %d signed at %s %s", c.Seq, c.Time.UTC().Format(time.RFC3339), what)}); err != nil {
				return cr, err
			}
		}
		valid = append(valid, *c)
	}
	// The range and its anchor.
	v := audit.NewVerifier(chain)
	from := int64(1)
	if o.From > 1 {
		var anchor *audit.Checkpoint
		for i := range valid {
			if c := &valid[i]; c.Seq < o.From && (anchor == nil || c.Seq > anchor.Seq) {
				anchor = c
			}
		}
		if anchor != nil {
			v = audit.NewVerifierAt(chain, anchor.Seq, anchor.Hash)
			from, cr.AnchorSeq = anchor.Seq+1, anchor.Seq
		}
	}
	cr.From = from
	v.Expect(valid...)
	page := o.PageSize
	if page <= 0 {
		page = verifyChunk
	}
	if err := s.walkChain(ctx, chain, from, o.To, page, v, rep); err != nil {
		if err := fb.add(err); err != nil {
			return cr, err
		}
	} else if err := fb.add(v.Finish(o.To)); err != nil {
		return cr, err
	}
	cr.Events = v.Count
	cr.To, _ = v.Head()
	if fb.b != nil {
		return cr, fb.b
	}
	return cr, nil
}

// verifyChunkOf is one page of a chain as verify reads it: events, decoded ahead, with
// their student index rows and disclosures, all from one snapshot.
type verifyChunkOf struct {
	recs     []audit.Record
	dec      []*audit.Decoded
	students map[int64][]string
	discl    map[int64][]Disclosure
	indexed  int64 // the index watermark in this chunk's snapshot: later events have no rows yet
	last     bool  // no events after these (within the range)
	err      error
}

// walkChain feeds the events from..to (0: the end) to v, checking each event's student
// index and disclosures. A reader goroutine fetches and decodes the next page (in
// parallel) while this one walks the chain.
func (s *Store) walkChain(ctx context.Context, chain string, from, to int64, page int, v *audit.Verifier, rep *VerifyReport) error {
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan verifyChunkOf, 1)
	go func() {
		defer close(pages)
		next := from
		for {
			ch := s.readVerifyChunk(ctx, chain, next, to, page)
			select {
			case pages <- ch:
			case <-ctx.Done():
				return
			}
			if ch.err != nil || ch.last {
				return
			}
			next = ch.recs[len(ch.recs)-1].Seq + 1
		}
	}()
	defer func() {
		cancel()
		for range pages { // the reader has stopped once pages is closed
		}
	}()
	lastSeq := from - 1
	for ch := range pages {
		if ch.err != nil {
			return ch.err
		}
		for i, r := range ch.recs {
			if err := v.NextDecoded(r, ch.dec[i]); err != nil {
				return err
			}
			lastSeq = r.Seq
			if r.Seq > ch.indexed {
				continue // appended after the flush and not indexed yet: its rows are checked next time
			}
			e := v.Event()
			if err := checkIndex(e, ch.students[r.Seq]); err != nil {
				return err
			}
			ds := ch.discl[r.Seq]
			rep.Disclosures += int64(len(ds))
			if err := s.checkDisclosures(ctx, e, ds); err != nil {
				return err
			}
		}
	}
	// Index rows or disclosures after the chain's last event: their events were
	// deleted. The index is read first (on SQLite its file's snapshot is then the
	// older one), so rows of events appended meanwhile find their events.
	return s.readTx(ctx, func(tx *sql.Tx) error {
		// Any read of the index first: it fixes the index file's snapshot.
		if _, err := s.indexWatermark(ctx, tx, chain); err != nil {
			return unavailable("audit verify", err)
		}
		var head sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.d.rebind("SELECT MAX(seq) FROM audit_events WHERE chain = ?"), chain).Scan(&head); err != nil {
			return unavailable("audit verify", err)
		}
		for _, t := range []struct{ table, what string }{{"ix.audit_students", "the student index has rows"}, {"ix.disclosures", "the record of disclosures has entries"}} {
			q := "SELECT MIN(seq) FROM " + t.table + " WHERE chain = ? AND seq > ?"
			args := []any{chain, max(head.Int64, lastSeq)}
			if to > 0 {
				q += " AND seq <= ?"
				args = append(args, to)
			}
			var orphan sql.NullInt64
			if err := tx.QueryRowContext(ctx, s.d.rebind(q), args...).Scan(&orphan); err != nil {
				return unavailable("audit verify", err)
			}
			if orphan.Valid {
				return &audit.Break{Chain: chain, Seq: orphan.Int64, Reason: fmt.Sprintf("%s for event %d, which does not exist (deleted)", t.what, orphan.Int64)}
			}
		}
		return nil
	})
}

// readVerifyChunk reads the next page of events from seq from on (keyset paging, so a
// gap shows as the next event being too far on), and decodes them in parallel.
func (s *Store) readVerifyChunk(ctx context.Context, chain string, from, to int64, page int) verifyChunkOf {
	var ch verifyChunkOf
	q := "SELECT seq, body, prev, hash FROM audit_events WHERE chain = ? AND seq >= ?"
	args := []any{chain, from}
	if to > 0 {
		q += " AND seq <= ?"
		args = append(args, to)
	}
	args = append(args, page)
	ch.err = s.readTx(ctx, func(tx *sql.Tx) error {
		// The watermark first: on SQLite the index file's snapshot is then taken
		// before the database's, so every index row it shows has its event in the
		// events read next.
		var err error
		if ch.indexed, err = s.indexWatermark(ctx, tx, chain); err != nil {
			return unavailable("audit index", err)
		}
		rows, err := tx.QueryContext(ctx, s.d.rebind(q+" ORDER BY seq LIMIT ?"), args...)
		if err != nil {
			return unavailable("audit events", err)
		}
		for rows.Next() {
			r := audit.Record{Chain: chain}
			var body string
			if err := rows.Scan(&r.Seq, &body, &r.Prev, &r.Hash); err != nil {
				rows.Close()
				return unavailable("audit events", err)
			}
			r.Body = []byte(body)
			ch.recs = append(ch.recs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return unavailable("audit events", err)
		}
		ch.last = len(ch.recs) < page
		if len(ch.recs) == 0 {
			return nil
		}
		lo, hi := ch.recs[0].Seq, ch.recs[len(ch.recs)-1].Seq
		ch.students = map[int64][]string{}
		rows, err = tx.QueryContext(ctx, s.d.rebind("SELECT seq, student_id FROM ix.audit_students WHERE chain = ? AND seq >= ? AND seq <= ?"), chain, lo, hi)
		if err != nil {
			return unavailable("audit students", err)
		}
		for rows.Next() {
			var seq int64
			var st string
			if err := rows.Scan(&seq, &st); err != nil {
				rows.Close()
				return unavailable("audit students", err)
			}
			ch.students[seq] = append(ch.students[seq], st)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return unavailable("audit students", err)
		}
		ch.discl = map[int64][]Disclosure{}
		rows, err = tx.QueryContext(ctx, s.d.rebind("SELECT "+disclosureSelect+" WHERE d.chain = ? AND d.seq >= ? AND d.seq <= ?"), chain, lo, hi)
		if err != nil {
			return unavailable("disclosures", err)
		}
		defer rows.Close()
		for rows.Next() {
			d, err := scanDisclosure(rows, false)
			if err != nil {
				return unavailable("disclosures", err)
			}
			ch.discl[d.Seq] = append(ch.discl[d.Seq], d)
		}
		return rows.Err()
	})
	if ch.err != nil {
		return ch
	}
	// Index rows of seqs with no event inside the page are caught by the walk: the
	// chain breaks at the missing event first.
	ch.dec = make([]*audit.Decoded, len(ch.recs))
	workers := min(runtime.GOMAXPROCS(0), 4)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ch.recs); i += workers {
				ch.dec[i] = audit.Decode(ch.recs[i])
			}
		}()
	}
	wg.Wait()
	return ch
}

func checkIndex(e *audit.Event, indexed []string) error {
	if len(indexed) == 0 && (len(e.Students) == 0 || e.Disclosed) {
		// A disclosing event's students are indexed by its record-of-disclosure
		// entries, which checkDisclosures checks; ix.audit_students has rows for it
		// only if it was indexed before 2026-11-29, and then they must be right.
		return nil
	}
	a, b := slices.Clone(e.Students), slices.Clone(indexed)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return &audit.Break{Chain: e.Chain, Seq: e.Seq, Reason: fmt.Sprintf("the student index lists %d students for this event, the event %d (audit_students edited)", len(b), len(a))}
	}
	return nil
}

// checkDisclosures checks a disclosing event's record-of-disclosure entries: one per
// student of the event (unless the student's record was purged since), each agreeing
// with the event on party, basis, purpose, resource, time and request.
func (s *Store) checkDisclosures(ctx context.Context, e *audit.Event, ds []Disclosure) error {
	fail := func(format string, args ...any) error {
		return &audit.Break{Chain: e.Chain, Seq: e.Seq, Reason: fmt.Sprintf(format, args...)}
	}
	if len(ds) > 0 && !e.Disclosed {
		return fail("the record of disclosures has %d entries for an event that disclosed nothing (entries inserted)", len(ds))
	}
	if !e.Disclosed {
		return nil
	}
	at := records.FormatDateTime(e.Time)
	got := map[string]int{}
	for _, d := range ds {
		if d.PartyKind != e.PrincipalKind || d.PartyID != e.PrincipalID || d.LegalBasis != e.LegalBasis || d.Purpose != e.Purpose ||
			d.ResourceType != e.ResourceType || d.RequestID != e.RequestID || records.FormatDateTime(d.Time) != at {
			return fail("a record-of-disclosure entry for student %s does not match its event (edited)", d.Student)
		}
		if len(e.Fields) > 0 && !slices.Equal(d.Fields, e.Fields) {
			return fail("a record-of-disclosure entry for student %s lists other fields than its event (edited)", d.Student)
		}
		got[d.Student]++
	}
	for _, st := range e.Students {
		if got[st] > 0 {
			got[st]--
			continue
		}
		// Purged students' entries go with their record (99.32(a)(2)).
		var one int
		err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT 1 FROM users WHERE sourced_id = ?"), st).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return unavailable("users", err)
		}
		return fail("the record of disclosures lacks the entry for student %s (deleted)", st)
	}
	for st, n := range got {
		if n > 0 {
			return fail("the record of disclosures has an entry for student %s that the event does not name (inserted)", st)
		}
	}
	return nil
}

// AuditQuery filters GET /v1/audit and the export.
type AuditQuery struct {
	Student   string
	Principal string // "kind:id", or an id of any kind
	Action    string
	From, To  time.Time // To is exclusive
	Chain     string
	Limit     int    // default 100
	Cursor    string // from a previous page's next
}

type auditCursor struct {
	Time  string `json:"t"`
	Chain string `json:"c"`
	Seq   int64  `json:"s"`
}

// AuditEvents returns stored events matching q, newest first, and the cursor of the
// next page ("" when there is none).
func (s *Store) AuditEvents(ctx context.Context, q AuditQuery) ([]audit.Entry, string, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.Student != "" {
		if err := s.FlushAuditIndex(ctx); err != nil {
			return nil, "", err
		}
	}
	var where []string
	var args []any
	from := "audit_events e"
	if q.Student != "" {
		from = studentIndex + " st JOIN audit_events e ON e.chain = st.chain AND e.seq = st.seq"
		args = append(args, q.Student, q.Student)
	}
	if q.Principal != "" {
		if strings.Contains(q.Principal, ":") {
			where = append(where, "e.principal = ?")
			args = append(args, q.Principal)
		} else {
			where = append(where, "e.principal IN (?, ?, ?, ?)")
			for _, k := range []string{audit.KindClient, audit.KindUser, audit.KindOperator, audit.KindSystem} {
				args = append(args, k+":"+q.Principal)
			}
		}
	}
	if q.Action != "" {
		where = append(where, "e.action = ?")
		args = append(args, q.Action)
	}
	if !q.From.IsZero() {
		where = append(where, "e.time >= ?")
		args = append(args, records.FormatDateTime(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, "e.time < ?")
		args = append(args, records.FormatDateTime(q.To))
	}
	if q.Chain != "" {
		where = append(where, "e.chain = ?")
		args = append(args, q.Chain)
	}
	if q.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		var c auditCursor
		if err == nil {
			err = json.Unmarshal(raw, &c)
		}
		if err == nil {
			// Its time and chain go into the query: text a stored event's could be.
			_, err = records.ParseDateTime(c.Time)
			err = cmp.Or(err, records.ValidText(c.Chain))
		}
		if err != nil {
			return nil, "", &records.Error{Code: records.Invalid, Field: "cursor", Message: "cursor: not a cursor from a previous page"}
		}
		where = append(where, "(e.time < ? OR (e.time = ? AND (e.chain < ? OR (e.chain = ? AND e.seq < ?))))")
		args = append(args, c.Time, c.Time, c.Chain, c.Chain, c.Seq)
	}
	sqlq := "SELECT e.chain, e.seq, e.time, e.body, e.prev, e.hash FROM " + from
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	sqlq += " ORDER BY e.time DESC, e.chain DESC, e.seq DESC LIMIT ?"
	args = append(args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, s.d.rebind(sqlq), args...)
	if err != nil {
		return nil, "", unavailable("audit events", err)
	}
	defer rows.Close()
	var out []audit.Entry
	var last auditCursor
	for rows.Next() {
		if len(out) == q.Limit {
			c, _ := json.Marshal(last) // plain types: cannot fail
			return out, base64.RawURLEncoding.EncodeToString(c), nil
		}
		var cur auditCursor
		var body string
		var prev, hash []byte
		if err := rows.Scan(&cur.Chain, &cur.Seq, &cur.Time, &body, &prev, &hash); err != nil {
			return nil, "", unavailable("audit events", err)
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			return nil, "", &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("audit event %s/%d does not decode (run audit verify): %w", cur.Chain, cur.Seq, err)}
		}
		out = append(out, audit.NewEntry(e, prev, hash))
		last = cur
	}
	if err := rows.Err(); err != nil {
		return nil, "", unavailable("audit events", err)
	}
	return out, "", nil
}

// ExportQuery selects the events `registrar audit export` writes.
type ExportQuery struct {
	Chain    string
	AfterSeq int64 // with Chain: only events after this one (incremental export)
	Student  string
	From, To time.Time
}

// ExportAudit calls fn with every stored event matching q, in chain and sequence
// order, reading in chunks so the trail never has to fit in memory.
func (s *Store) ExportAudit(ctx context.Context, q ExportQuery, fn func(audit.Entry) error) error {
	if q.Student != "" {
		if err := s.FlushAuditIndex(ctx); err != nil {
			return err
		}
	}
	chain, seq := "", q.AfterSeq
	if q.Chain != "" {
		chain = q.Chain
	}
	first := true
	for {
		var where []string
		var args []any
		from := "audit_events e"
		if q.Student != "" {
			from = studentIndex + " st JOIN audit_events e ON e.chain = st.chain AND e.seq = st.seq"
			args = append(args, q.Student, q.Student)
		}
		if q.Chain != "" {
			where = append(where, "e.chain = ? AND e.seq > ?")
			args = append(args, q.Chain, seq)
		} else if !first {
			where = append(where, "(e.chain > ? OR (e.chain = ? AND e.seq > ?))")
			args = append(args, chain, chain, seq)
		}
		if !q.From.IsZero() {
			where = append(where, "e.time >= ?")
			args = append(args, records.FormatDateTime(q.From))
		}
		if !q.To.IsZero() {
			where = append(where, "e.time < ?")
			args = append(args, records.FormatDateTime(q.To))
		}
		sqlq := "SELECT e.chain, e.seq, e.body, e.prev, e.hash FROM " + from
		if len(where) > 0 {
			sqlq += " WHERE " + strings.Join(where, " AND ")
		}
		sqlq += " ORDER BY e.chain, e.seq LIMIT ?"
		args = append(args, verifyChunk)
		var page []audit.Entry
		err := s.readTx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, s.d.rebind(sqlq), args...)
			if err != nil {
				return unavailable("audit events", err)
			}
			defer rows.Close()
			for rows.Next() {
				var body string
				var prev, hash []byte
				if err := rows.Scan(&chain, &seq, &body, &prev, &hash); err != nil {
					return unavailable("audit events", err)
				}
				var e audit.Event
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					return fmt.Errorf("audit event %s/%d does not decode (run audit verify): %w", chain, seq, err)
				}
				page = append(page, audit.NewEntry(e, prev, hash))
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < verifyChunk {
			return nil
		}
		first = false
	}
}
