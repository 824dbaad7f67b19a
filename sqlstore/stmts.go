package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"
)

// prepareWait bounds how long a cache miss waits for a connection to prepare on.
const prepareWait = 50 * time.Millisecond

// stmtCache keeps prepared statements by SQL text, so the hot queries (gets, lists
// of one shape, audit appends) are parsed once per connection instead of per call.
// It is bounded: distinct filter shapes beyond the bound are prepared per call.
type stmtCache struct {
	db  *sql.DB
	max int
	// fixed: only statements prepared up front are served. The writer has a single
	// connection, held by the committer's transaction: preparing lazily there would
	// wait for itself.
	fixed bool
	mu    sync.Mutex
	m     map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB, max int) *stmtCache {
	return &stmtCache{db: db, max: max, m: map[string]*sql.Stmt{}}
}

// get returns the statement for q, preparing it on first use; nil when the cache is
// full (the caller then runs q unprepared).
func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[q]
	full := len(c.m) >= c.max
	c.mu.Unlock()
	if ok || full || c.fixed {
		return st, nil
	}
	// The caller holds a pooled connection (its transaction) and preparing takes
	// another: with every connection held by a caller preparing, the pool would wait
	// for itself forever. A bounded wait turns that into running q unprepared.
	pctx, cancel := context.WithTimeout(ctx, prepareWait)
	defer cancel()
	st, err := c.db.PrepareContext(pctx, q)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, nil
		}
		return nil, err
	}
	c.mu.Lock()
	if old, ok := c.m[q]; ok {
		c.mu.Unlock()
		st.Close()
		return old, nil
	}
	c.m[q] = st
	c.mu.Unlock()
	return st, nil
}

// prepare adds statements up front (for a fixed cache).
func (c *stmtCache) prepare(ctx context.Context, qs ...string) error {
	for _, q := range qs {
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.m[q] = st
		c.mu.Unlock()
	}
	return nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// txQuery runs q in tx through the cache of db's statements.
func txQuery(ctx context.Context, c *stmtCache, tx *sql.Tx, q string, args ...any) (*sql.Rows, error) {
	st, err := c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.QueryContext(ctx, q, args...)
	}
	return tx.StmtContext(ctx, st).QueryContext(ctx, args...)
}

// txExec runs q in tx through the cache.
func txExec(ctx context.Context, c *stmtCache, tx *sql.Tx, q string, args ...any) (sql.Result, error) {
	st, err := c.get(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return tx.ExecContext(ctx, q, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}
