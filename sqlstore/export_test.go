package sqlstore

import (
	"context"
	"database/sql"
)

// What the external tests (package sqlstore_test, which may import testdistrict) need
// to look under the store: the raw tables, the engine, the committer's queue.

// RawDB is the writer database, for checks on stored bytes and the audit triggers.
func (s *Store) RawDB() *sql.DB { return s.w }

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
