package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"registrar/audit"
	"registrar/records"
)

// Tx is a write transaction handed to a write function. Everything done through it,
// including the audit events it adds, commits together or not at all.
type Tx struct {
	s      *Store
	tx     *sql.Tx
	conn   *sql.Conn // the connection tx runs on (COPY on PostgreSQL: copy.go)
	events []audit.Event
	now    time.Time
	// onCommit runs once the transaction is durable (in-process caches of what it
	// changed are dropped there, so no reader can cache the old row after the drop).
	onCommit []func()
}

// Audit adds an event to be appended, in this transaction, to the audit chain.
func (t *Tx) Audit(e audit.Event) { t.events = append(t.events, e) }

// Now is the transaction's timestamp: every row it writes carries the same one.
func (t *Tx) Now() time.Time { return t.now }

func (t *Tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return txExec(ctx, t.s.wstmt, t.tx, t.s.d.rebind(q), args...)
}

func (t *Tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st, err := t.s.wstmt.get(ctx, t.s.d.rebind(q)); err == nil && st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.s.d.rebind(q), args...)
}

func (t *Tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return txQuery(ctx, t.s.wstmt, t.tx, t.s.d.rebind(q), args...)
}

type commitReq struct {
	ctx    context.Context
	fn     func(context.Context, *Tx) error
	events []audit.Event
	tails  [][]byte // the events' canonical tails, encoded by the caller (audit.CanonicalTail)
	done   chan error
}

// committer owns the write connection and this instance's audit chain head. It takes
// requests from many goroutines, runs them in one transaction (each under its own
// savepoint, so one failing request does not undo its neighbours) and answers all of
// them after the single COMMIT. A write is acknowledged only once it is durable, and
// so is every read's audit event.
type committer struct {
	s      *Store
	chain  string
	prefix []byte // audit.ChainPrefix(chain)
	seq    int64
	head   []byte

	reqs chan *commitReq
	quit chan struct{}
	// mu guards closed: Write enqueues under the read lock, stop sets closed under the
	// write lock, so no request is enqueued after the committer has drained its queue.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup

	maxBatch  int
	delay     time.Duration // Options.CommitDelay
	lastBatch int           // the size of the batch before

	batches, batched atomic.Int64 // batches run and the requests in them (CommitStats)

	// The batch in hand's events that name students, and the chain's head before
	// them: handed to the indexer once committed (auditindex.go).
	batchPrev int64
	batchEvs  []memEvent
	rows      []any // the batch's appended events not yet written: auditCols values each (writeRows)

	version      int64 // SQLite's data_version at the last batch (othersWrote)
	versionKnown bool

	ck checkpointState // signed checkpoints and the log-stream copy (audit.go)

	logq    chan logBatch // committed batches' lines for the log stream (audit.go)
	logDone chan struct{}
	logFree chan []pendingLog // written batches' event lists, for the next batches to reuse
}

// insertAuditEvents[k] appends 2^k events in one statement. A batch's events are
// held until its commit (or the next write's own statements) and written in as few
// statements as the binary digits of their count: per statement, the driver's and
// the VM's set-up is paid once instead of per event.
var insertAuditEvents = func() []string {
	out := make([]string, auditRowsLog2+1)
	for k := range out {
		out[k] = "INSERT INTO audit_events (chain, seq, time, action, principal, body, prev, hash) VALUES " + valueRows(placeholders(auditCols), 1<<k)
	}
	return out
}()

// auditRowsLog2: the largest append statement writes 2^6 = 64 events (512 parameters).
const (
	auditRowsLog2 = 6
	auditCols     = 8
)

func newCommitter(ctx context.Context, s *Store, chain string, delay time.Duration) (*committer, error) {
	c := &committer{s: s, chain: chain, prefix: audit.ChainPrefix(chain), reqs: make(chan *commitReq, 1024), quit: make(chan struct{}), maxBatch: 256, delay: delay}
	if err := c.loadHead(ctx); err != nil {
		return nil, err
	}
	var stmts []string
	for _, q := range insertAuditEvents {
		stmts = append(stmts, s.d.rebind(q))
	}
	if s.d.name() == "sqlite" {
		stmts = append(stmts, dataVersion)
	}
	if err := s.wstmt.prepare(ctx, stmts...); err != nil {
		return nil, fmt.Errorf("sqlstore: prepare audit statements: %w", err)
	}
	if err := c.loadCheckpointState(ctx); err != nil {
		return nil, err
	}
	c.logq, c.logDone, c.logFree = make(chan logBatch, 256), make(chan struct{}), make(chan []pendingLog, 8)
	go c.logLoop()
	c.wg.Add(1)
	go c.run()
	return c, nil
}

func (c *committer) loadHead(ctx context.Context) error {
	tx, err := c.s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: read audit chain head: %w", err)
	}
	defer tx.Rollback()
	return c.readHead(ctx, tx)
}

const dataVersion = "PRAGMA data_version"

// othersWrote reports whether another connection may have committed to the database
// since the last call: always on PostgreSQL; on SQLite when data_version moved (it
// moves for every commit but the connection's own).
func (c *committer) othersWrote(ctx context.Context, tx *sql.Tx) (bool, error) {
	if c.s.d.name() != "sqlite" {
		return true, nil
	}
	var v int64
	st, err := c.s.wstmt.get(ctx, dataVersion)
	if err != nil || st == nil {
		return true, err
	}
	if err := tx.StmtContext(ctx, st).QueryRowContext(ctx).Scan(&v); err != nil {
		return false, fmt.Errorf("sqlstore: data_version: %w", err)
	}
	changed := !c.versionKnown || v != c.version
	c.version, c.versionKnown = v, true
	return changed, nil
}

func (c *committer) readHead(ctx context.Context, tx *sql.Tx) error {
	var seq sql.NullInt64
	var hash []byte
	q := c.s.d.rebind("SELECT seq, hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1")
	var row *sql.Row
	if st, err := c.s.wstmt.get(ctx, q); err == nil && st != nil {
		row = tx.StmtContext(ctx, st).QueryRowContext(ctx, c.chain)
	} else {
		row = tx.QueryRowContext(ctx, q, c.chain)
	}
	err := row.Scan(&seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		c.seq, c.head = 0, audit.Genesis
	case err != nil:
		return fmt.Errorf("sqlstore: read audit chain head: %w", err)
	default:
		c.seq, c.head = seq.Int64, hash
	}
	return nil
}

func (c *committer) stop() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	close(c.quit)
	c.wg.Wait()
	close(c.logq) // the committer has stopped: nothing more to copy to the log stream
	<-c.logDone
}

// ErrClosed is returned for writes submitted after Close.
var ErrClosed = &records.Error{Code: records.Unavailable, Message: "the server is shutting down"}

// Write runs fn in a write transaction together with events, and returns once the
// transaction is durable (or has failed). fn may be nil for an audit-only write.
func (s *Store) Write(ctx context.Context, fn func(context.Context, *Tx) error, events ...audit.Event) error {
	if fn == nil && s.audit.off {
		return nil // benchmarks only: see Options.NoAuditForBenchmarks
	}
	r := &commitReq{ctx: ctx, fn: fn, events: events, done: make(chan error, 1)}
	if !s.audit.off && len(events) > 0 {
		// Encode the events here, in parallel with every other caller: the committer
		// only numbers, splices and hashes them.
		now := s.now().UTC()
		r.tails = make([][]byte, len(events))
		for i := range events {
			if events[i].Time.IsZero() {
				events[i].Time = now
			}
			r.tails[i] = events[i].CanonicalTail()
		}
	}
	c := s.commit
	// The read lock is held while enqueueing so that stop cannot slip in between the
	// check and the send: whatever was enqueued before stop is drained and answered.
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	select {
	case c.reqs <- r:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return ctx.Err()
	}
	return <-r.done
}

// CommitStats is how many batches the committer has run and how many requests they
// held (the group commit's batch size is their ratio; BenchmarkEndpoints reports it).
func (s *Store) CommitStats() (batches, requests int64) {
	return s.commit.batches.Load(), s.commit.batched.Load()
}

// Audit makes events durable, then returns: reads call it before they respond.
func (s *Store) Audit(ctx context.Context, events ...audit.Event) error {
	return s.Write(ctx, nil, events...)
}

func (c *committer) run() {
	defer c.wg.Done()
	batch := make([]*commitReq, 0, c.maxBatch)
	for {
		select {
		case <-c.quit:
			// Drain what was already queued so no caller waits forever.
			for {
				select {
				case r := <-c.reqs:
					batch = append(batch, r)
					if len(batch) == c.maxBatch {
						c.runBatch(batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						c.runBatch(batch)
					}
					return
				}
			}
		case r := <-c.reqs:
			batch = append(batch[:0], r)
			// Under concurrent load (the last batch had company), wait up to the commit
			// delay for more: a commit costs about the same for 1 event as for 15 (the
			// pages it rewrites, its fsync), so fewer, fuller batches leave the CPU and
			// the disk to the requests. A lone request is never held.
			var wait <-chan time.Time
			if c.delay > 0 && c.lastBatch > 1 {
				wait = time.After(c.delay)
			}
		fill:
			for len(batch) < c.maxBatch {
				select { // what is queued first, so an expired wait never leaves it behind
				case r := <-c.reqs:
					batch = append(batch, r)
					continue
				default:
				}
				if wait == nil {
					break
				}
				select {
				case r := <-c.reqs:
					batch = append(batch, r)
				case <-wait:
					break fill
				}
			}
			c.lastBatch = len(batch)
			c.batches.Add(1)
			c.batched.Add(int64(len(batch)))
			c.runBatch(batch)
		}
	}
}

func (c *committer) runBatch(batch []*commitReq) {
	errs := make([]error, len(batch))
	err := c.runBatchTx(batch, errs)
	if err == nil && !c.s.audit.off {
		// Before the callers hear back, so that a flush after a returned read finds
		// its event in the indexer's copy.
		c.s.idx.handover(c.batchPrev, c.seq, c.batchEvs)
	}
	clear(c.batchEvs)
	c.batchEvs = c.batchEvs[:0]
	// The log-stream copy is queued before the callers hear back, so that FlushLog
	// after a returned write waits for its lines.
	c.afterBatch(err)
	for i, r := range batch {
		if err != nil {
			r.done <- err
		} else {
			r.done <- errs[i]
		}
	}
}

// runBatchTx returns a batch-wide error (commit failed: nothing of the batch is
// durable) or nil with per-request errors in errs.
func (c *committer) runBatchTx(batch []*commitReq, errs []error) (err error) {
	ctx := context.Background() // a caller giving up must not abort its neighbours' commit
	seq, head := c.seq, c.head
	defer func() {
		if err != nil {
			// Nothing was committed: the head stays where it was, and the next batch
			// reads it again (it may have been read in this one).
			c.seq, c.head, c.versionKnown = seq, head, false
			clear(c.rows)
			c.rows = c.rows[:0]
			c.s.log.Error("commit failed", "err", err, "batch", len(batch))
			err = &records.Error{Code: records.Unavailable, Message: "the database could not commit; retry", Err: err}
		}
	}()
	conn, tx, err := c.s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer conn.Close()
	defer tx.Rollback()
	// Read the chain head inside the transaction: another process on the same data dir
	// (the CLI beside a running server) may have appended since our last batch; the
	// write lock we hold now keeps it from appending until we commit. On SQLite,
	// data_version tells whether any other connection has committed since the last
	// batch: when none has, the head is the one this committer left.
	if changed, err := c.othersWrote(ctx, tx); err != nil {
		return err
	} else if changed {
		if err := c.readHead(ctx, tx); err != nil {
			return err
		}
	}
	c.batchPrev = c.seq
	now := c.s.now().UTC()
	single := len(batch) == 1
	var hooks []func()
	for i, r := range batch {
		if r.ctx.Err() != nil && r.fn != nil {
			errs[i] = r.ctx.Err()
			continue
		}
		// An audit-only request (a read's events) runs no code that could add to its
		// events: they are appended as the caller made them, with no Tx around them.
		events := r.events
		if r.fn != nil {
			t := &Tx{s: c.s, tx: tx, conn: conn, now: now, events: append([]audit.Event(nil), r.events...)}
			// A write's statements see the events appended before it.
			if err := c.writeRows(ctx, tx); err != nil {
				return err
			}
			if !single {
				if _, err := tx.ExecContext(ctx, "SAVEPOINT req"); err != nil {
					return fmt.Errorf("savepoint: %w", err)
				}
			}
			if ferr := c.safeCall(r, t); ferr != nil {
				errs[i] = ferr
				if single {
					return nil // the deferred rollback undoes it; nothing else is in the batch
				}
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT req"); err != nil {
					return fmt.Errorf("rollback to savepoint: %w", err)
				}
				if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT req"); err != nil {
					return fmt.Errorf("release savepoint: %w", err)
				}
				continue
			}
			if !single {
				if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT req"); err != nil {
					return fmt.Errorf("release savepoint: %w", err)
				}
			}
			events = t.events
			hooks = append(hooks, t.onCommit...)
		}
		for j := range events {
			var tail []byte
			if j < len(r.tails) {
				tail = r.tails[j]
			}
			if err := c.append(ctx, tx, &events[j], now, tail); err != nil {
				return err
			}
		}
	}
	if err := c.writeRows(ctx, tx); err != nil {
		return err
	}
	if err := c.maybeCheckpoint(ctx, tx, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, h := range hooks {
		h()
	}
	return nil
}

func (c *committer) safeCall(r *commitReq, t *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("panic in write", "panic", fmt.Sprint(p))
			err = &records.Error{Code: records.Internal, Message: "internal error"}
		}
	}()
	return r.fn(r.ctx, t)
}

// append numbers e in the chain and writes it. tail is e's canonical tail when the
// caller encoded it (Write), nil for events added inside the transaction.
// The row is written by writeRows, at the latest before the batch commits.
func (c *committer) append(ctx context.Context, tx *sql.Tx, e *audit.Event, now time.Time, tail []byte) error {
	if c.s.audit.off {
		return nil
	}
	c.seq++
	e.Chain, e.Seq = c.chain, c.seq
	if e.Time.IsZero() {
		e.Time = now
		tail = nil
	}
	if tail == nil {
		tail = e.CanonicalTail()
	}
	body := audit.Splice(c.prefix, c.seq, tail)
	hash := audit.Link(c.head, body)
	c.rows = append(c.rows, c.chain, c.seq, records.FormatDateTime(e.Time), e.Action, e.PrincipalKind+":"+e.PrincipalID, string(body), c.head, hash)
	if len(c.rows) == auditCols<<auditRowsLog2 {
		if err := c.writeRows(ctx, tx); err != nil {
			return err
		}
	}
	// The student index and the record of disclosures follow behind (auditindex.go).
	if len(e.Students) > 0 {
		c.batchEvs = append(c.batchEvs, memEventOf(e))
	}
	c.head = hash
	c.appended(e, hash)
	return nil
}

// writeRows writes the appended events not yet written, largest statements first.
func (c *committer) writeRows(ctx context.Context, tx *sql.Tx) error {
	rows := c.rows
	defer func() { clear(c.rows); c.rows = c.rows[:0] }()
	for len(rows) > 0 {
		k := min(bits.Len(uint(len(rows)/auditCols))-1, auditRowsLog2)
		width := auditCols << k
		if _, err := txExec(ctx, c.s.wstmt, tx, c.s.d.rebind(insertAuditEvents[k]), rows[:width]...); err != nil {
			return fmt.Errorf("append audit events: %w", err)
		}
		rows = rows[width:]
	}
	return nil
}
