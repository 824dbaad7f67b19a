package sqlstore

import (
	"context"
	"database/sql"
	"sync"
)

// What the external tests (package sqlstore_test, which may import testdistrict) need
// to look under the store: the raw tables, the engine, the committer's queue.

var rawDBs sync.Map // *Store -> *sql.DB

// RawDB is a connection that can write the database, for checks on stored bytes and
// the audit triggers: the writer on PostgreSQL; on SQLite a connection of its own
// with the index file attached as ix.
func (s *Store) RawDB() *sql.DB {
	if s.d.name() != "sqlite" {
		return s.w
	}
	if db, ok := rawDBs.Load(s); ok {
		return db.(*sql.DB)
	}
	db, err := OpenSQLite(s.path, "_pragma=busy_timeout(10000)")
	if err != nil {
		panic(err)
	}
	db.SetMaxOpenConns(1)
	got, loaded := rawDBs.LoadOrStore(s, db)
	if loaded {
		db.Close()
	}
	return got.(*sql.DB)
}

// IndexStep runs one periodic run of the audit indexer (at most IndexRunRows rows)
// and returns when it has committed.
func (s *Store) IndexStep(ctx context.Context) error { return s.idx.ask(ctx, true) }

// Rebind turns ? placeholders into the engine's.
func (s *Store) Rebind(q string) string { return s.d.rebind(q) }

// Engine names the dialect: "sqlite" or "postgres".
func (s *Store) Engine() string { return s.d.name() }

// QueuedWrites is the number of writes waiting for the committer.
func (s *Store) QueuedWrites() int { return len(s.commit.reqs) }

// Exec runs a statement in the write transaction (tests inject SQL failures with it).
func (t *Tx) Exec(ctx context.Context, q string, args ...any) error {
	_, err := t.exec(ctx, q, args...)
	return err
}
