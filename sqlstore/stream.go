package sqlstore

// The store's side of the event stream (package stream): leases that give one worker a
// shard at a time, per-shard checkpoints written in the same transaction as the events
// they cover, the inbox of applied event ids that makes a replay a no-op, the
// dead-letter table, the embedded stream (records sealed at rest, like every other
// sensitive value), the change feed read from the `changes` outbox, and the scoping
// keys that let the feed authorize a delete after the row is gone.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"registrar/records"
	"registrar/vault"
)

// migrationStream adds the stream tables. Append-only like every migration.
func migrationStream(d dialect) []string {
	out := []string{
		// One holder per lease name ("in/STREAM/SHARD", "out/STREAM"); a lease whose
		// expiry has passed may be taken over by another worker.
		`CREATE TABLE stream_leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires TEXT NOT NULL, acquired TEXT NOT NULL, takeovers {{bigint}} NOT NULL)`,
		// The last position applied (inbound) or published (outbound); SHARD_END when
		// a closed shard has been read to its end.
		`CREATE TABLE stream_checkpoints (name TEXT PRIMARY KEY, position TEXT NOT NULL, updated TEXT NOT NULL)`,
		// Ids of the inbound events already handled, with their outcome.
		`CREATE TABLE stream_inbox (event_id TEXT PRIMARY KEY, source TEXT NOT NULL, outcome TEXT NOT NULL, time TEXT NOT NULL)`,
		// Events that could not be applied, with the reason. The payload is sealed: it
		// may hold sensitive values.
		`CREATE TABLE stream_dead_letters (
  id {{serial}},
  source TEXT NOT NULL,
  position TEXT NOT NULL,
  event_id TEXT,
  entity TEXT,
  sourced_id TEXT,
  op TEXT,
  reason TEXT NOT NULL,
  time TEXT NOT NULL,
  payload {{blob}}
)`,
		// The embedded stream: records per (stream, shard) with dense sequence numbers,
		// their data sealed under the stream key.
		`CREATE TABLE stream_records (stream TEXT NOT NULL, shard TEXT NOT NULL, seq {{bigint}} NOT NULL, pkey TEXT NOT NULL, producer TEXT, data {{blob}} NOT NULL, time TEXT NOT NULL, PRIMARY KEY (stream, shard, seq))`,
		// The keys that scoped a row when it was deleted (see deleteScopes).
		`CREATE TABLE change_scopes (entity TEXT NOT NULL, sourced_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL)`,
		`CREATE INDEX change_scopes_row ON change_scopes (entity, sourced_id, kind, value)`,
	}
	for i := range out {
		out[i] = d.ddl(out[i])
	}
	return out
}

// Key subjects for the sealed stream data. They name no person: purging a student does
// not touch them; dead letters and embedded records are kept for a bounded time instead.
const (
	streamKeySubject     = "registrar:stream-records"
	deadLetterKeySubject = "registrar:dead-letters"
)

// unavailableIf is unavailable for a possibly nil error.
func unavailableIf(what string, err error) error {
	if err == nil {
		return nil
	}
	return unavailable(what, err)
}

// ErrLeaseLost is returned by a write that required a lease this worker no longer holds.
var ErrLeaseLost = &records.Error{Code: records.Conflict, Message: "the lease is held by another worker"}

// Lease is one row of stream_leases.
type Lease struct {
	Name    string
	Owner   string
	Expires time.Time
}

// AcquireLease takes the lease name for owner for ttl if it is free, expired, or
// already owner's. It reports whether owner holds it now.
func (s *Store) AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	var got bool
	err := s.Write(ctx, func(ctx context.Context, t *Tx) error {
		var err error
		got, err = t.acquireLease(ctx, name, owner, ttl)
		return err
	})
	return got, err
}

func (t *Tx) acquireLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	now := records.FormatDateTime(t.now)
	exp := records.FormatDateTime(t.now.Add(ttl))
	var cur, curExp string
	err := t.queryRow(ctx, "SELECT owner, expires FROM stream_leases WHERE name = ?", name).Scan(&cur, &curExp)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := t.exec(ctx, "INSERT INTO stream_leases (name, owner, expires, acquired, takeovers) VALUES (?, ?, ?, ?, 0)", name, owner, exp, now); err != nil {
			return false, unavailable("take lease", err)
		}
		return true, nil
	case err != nil:
		return false, unavailable("read lease", err)
	case cur == owner:
		_, err := t.exec(ctx, "UPDATE stream_leases SET expires = ? WHERE name = ? AND owner = ?", exp, name, owner)
		return err == nil, unavailableIf("renew lease", err)
	case curExp > now:
		return false, nil
	}
	// Expired: take it over, compare-and-set against the row as read.
	res, err := t.exec(ctx, "UPDATE stream_leases SET owner = ?, expires = ?, acquired = ?, takeovers = takeovers + 1 WHERE name = ? AND owner = ? AND expires = ?",
		owner, exp, now, name, cur, curExp)
	if err != nil {
		return false, unavailable("take over lease", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// HoldLease extends owner's lease by ttl inside the transaction, or fails with
// ErrLeaseLost: the fence that keeps a worker whose lease was taken over from
// committing anything more for that shard.
func (t *Tx) HoldLease(ctx context.Context, name, owner string, ttl time.Duration) error {
	res, err := t.exec(ctx, "UPDATE stream_leases SET expires = ? WHERE name = ? AND owner = ?", records.FormatDateTime(t.now.Add(ttl)), name, owner)
	if err != nil {
		return unavailable("hold lease", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrLeaseLost
	}
	return nil
}

// RenewLease is HoldLease in a transaction of its own.
func (s *Store) RenewLease(ctx context.Context, name, owner string, ttl time.Duration) error {
	return s.Write(ctx, func(ctx context.Context, t *Tx) error { return t.HoldLease(ctx, name, owner, ttl) })
}

// ReleaseLease gives up owner's lease so that another worker may take it at once.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	return s.Write(ctx, func(ctx context.Context, t *Tx) error {
		_, err := t.exec(ctx, "UPDATE stream_leases SET expires = ? WHERE name = ? AND owner = ?", records.FormatDateTime(time.Unix(0, 0)), name, owner)
		return unavailableIf("release lease", err)
	})
}

// Leases lists the leases whose names start with prefix.
func (s *Store) Leases(ctx context.Context, prefix string) ([]Lease, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT name, owner, expires FROM stream_leases WHERE name >= ? AND name < ? ORDER BY name"), prefix, prefix+"\U0010FFFF")
	if err != nil {
		return nil, unavailable("leases", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var exp string
		if err := rows.Scan(&l.Name, &l.Owner, &exp); err != nil {
			return nil, unavailable("leases", err)
		}
		l.Expires, _ = time.Parse(time.RFC3339Nano, exp) // written by FormatDateTime
		out = append(out, l)
	}
	return out, rows.Err()
}

// StreamCheckpoint returns the position stored under name, "" if none.
func (s *Store) StreamCheckpoint(ctx context.Context, name string) (string, error) {
	var pos string
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT position FROM stream_checkpoints WHERE name = ?"), name).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", unavailable("checkpoint", err)
	}
	return pos, nil
}

// StreamCheckpoints returns every checkpoint whose name starts with prefix.
func (s *Store) StreamCheckpoints(ctx context.Context, prefix string) (map[string]string, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT name, position FROM stream_checkpoints WHERE name >= ? AND name < ?"), prefix, prefix+"\U0010FFFF")
	if err != nil {
		return nil, unavailable("checkpoints", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, pos string
		if err := rows.Scan(&name, &pos); err != nil {
			return nil, unavailable("checkpoints", err)
		}
		out[name] = pos
	}
	return out, rows.Err()
}

// SetStreamCheckpoint stores position under name in the transaction.
func (t *Tx) SetStreamCheckpoint(ctx context.Context, name, position string) error {
	_, err := t.exec(ctx, "INSERT INTO stream_checkpoints (name, position, updated) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated = excluded.updated",
		name, position, records.FormatDateTime(t.now))
	return unavailableIf("set checkpoint", err)
}

// SetStreamCheckpoint stores position under name in a transaction of its own.
func (s *Store) SetStreamCheckpoint(ctx context.Context, name, position string) error {
	return s.Write(ctx, func(ctx context.Context, t *Tx) error { return t.SetStreamCheckpoint(ctx, name, position) })
}

// Savepoint runs fn so that, if it fails, everything it wrote is undone while the rest
// of the transaction stands (one bad event in a batch does not undo its neighbours).
func (t *Tx) Savepoint(ctx context.Context, fn func() error) error {
	if _, err := t.tx.ExecContext(ctx, "SAVEPOINT stream_event"); err != nil {
		return unavailable("savepoint", err)
	}
	if ferr := fn(); ferr != nil {
		if _, err := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT stream_event"); err != nil {
			return unavailable("rollback to savepoint", err)
		}
		if _, err := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT stream_event"); err != nil {
			return unavailable("release savepoint", err)
		}
		return ferr
	}
	if _, err := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT stream_event"); err != nil {
		return unavailable("release savepoint", err)
	}
	return nil
}

// EventSeen reports whether an inbound event id was already handled.
func (t *Tx) EventSeen(ctx context.Context, eventID string) (bool, error) {
	var one int
	err := t.queryRow(ctx, "SELECT 1 FROM stream_inbox WHERE event_id = ?", eventID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("inbox", err)
	}
	return true, nil
}

// MarkEvent records that an inbound event was handled, with its outcome.
func (t *Tx) MarkEvent(ctx context.Context, eventID, source, outcome string) error {
	_, err := t.exec(ctx, "INSERT INTO stream_inbox (event_id, source, outcome, time) VALUES (?, ?, ?, ?)", eventID, source, outcome, records.FormatDateTime(t.now))
	return unavailableIf("inbox", err)
}

// InboxCount returns how many inbound events were handled with outcome ("" for all).
func (s *Store) InboxCount(ctx context.Context, outcome string) (int, error) {
	q, args := "SELECT COUNT(*) FROM stream_inbox", []any{}
	if outcome != "" {
		q, args = q+" WHERE outcome = ?", append(args, outcome)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, s.d.rebind(q), args...).Scan(&n); err != nil {
		return 0, unavailable("inbox count", err)
	}
	return n, nil
}

// DeadLetter is an inbound event that could not be applied.
type DeadLetter struct {
	ID        int64
	Source    string // STREAM/SHARD
	Position  string // sequence number in the shard
	EventID   string
	Entity    string
	SourcedID string
	Op        string
	Reason    string // caller-safe: never a sensitive value
	Time      time.Time
	Payload   []byte // the raw event; sealed at rest; never listed
}

// PutDeadLetter stores d, sealing its payload.
func (t *Tx) PutDeadLetter(ctx context.Context, d DeadLetter) error {
	var ct []byte
	if len(d.Payload) > 0 {
		wrapped, err := t.dataKey(ctx, deadLetterKeySubject)
		if err != nil {
			return err
		}
		// Bound to the source position: a sealed payload cannot be moved to another row.
		if ct, err = t.s.vault.SealFor(deadLetterKeySubject, wrapped, d.Payload, vault.Binding("stream_dead_letters", d.Source, d.Position)); err != nil {
			return &records.Error{Code: records.Internal, Message: "internal error", Err: err}
		}
	}
	_, err := t.exec(ctx, "INSERT INTO stream_dead_letters (source, position, event_id, entity, sourced_id, op, reason, time, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		d.Source, d.Position, nullIfEmpty(d.EventID), nullIfEmpty(d.Entity), nullIfEmpty(d.SourcedID), nullIfEmpty(d.Op), d.Reason, records.FormatDateTime(t.now), ct)
	return unavailableIf("dead letter", err)
}

// DeadLetters lists dead letters with id > after, oldest first, without payloads.
func (s *Store) DeadLetters(ctx context.Context, after int64, limit int) ([]DeadLetter, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT id, source, position, event_id, entity, sourced_id, op, reason, time FROM stream_dead_letters WHERE id > ? ORDER BY id LIMIT ?"), after, limit)
	if err != nil {
		return nil, unavailable("dead letters", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var ev, ent, sid, op sql.NullString
		var tm string
		if err := rows.Scan(&d.ID, &d.Source, &d.Position, &ev, &ent, &sid, &op, &d.Reason, &tm); err != nil {
			return nil, unavailable("dead letters", err)
		}
		d.EventID, d.Entity, d.SourcedID, d.Op = ev.String, ent.String, sid.String, op.String
		d.Time, _ = time.Parse(time.RFC3339Nano, tm) // written by FormatDateTime
		out = append(out, d)
	}
	return out, rows.Err()
}

// StreamRecord is one record of the embedded stream.
type StreamRecord struct {
	Stream   string
	Shard    string
	Seq      int64
	Key      string // partition key
	Producer string // the principal that put it ("" when unknown)
	Data     []byte
	Time     time.Time
}

// StreamAppend appends recs (Stream, Shard, Key, Producer and Data set) to the embedded
// stream in one transaction, assigning each its sequence number. Numbers are dense per
// shard and assigned under the shard's primary key, so they follow commit order: a
// reader never sees n+1 before n.
func (s *Store) StreamAppend(ctx context.Context, recs []StreamRecord) error {
	return s.Write(ctx, func(ctx context.Context, t *Tx) error {
		wrapped, err := t.dataKey(ctx, streamKeySubject)
		if err != nil {
			return err
		}
		next := map[string]int64{}
		for i := range recs {
			r := &recs[i]
			k := r.Stream + "\x00" + r.Shard
			if _, ok := next[k]; !ok {
				var max sql.NullInt64
				if err := t.queryRow(ctx, "SELECT MAX(seq) FROM stream_records WHERE stream = ? AND shard = ?", r.Stream, r.Shard).Scan(&max); err != nil {
					return unavailable("stream append", err)
				}
				next[k] = max.Int64 + 1
			}
			r.Seq = next[k]
			next[k]++
			r.Time = t.now
			ct, err := t.s.vault.SealFor(streamKeySubject, wrapped, r.Data, streamBinding(r.Stream, r.Shard, r.Seq))
			if err != nil {
				return &records.Error{Code: records.Internal, Message: "internal error", Err: err}
			}
			if _, err := t.exec(ctx, "INSERT INTO stream_records (stream, shard, seq, pkey, producer, data, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
				r.Stream, r.Shard, r.Seq, r.Key, nullIfEmpty(r.Producer), ct, records.FormatDateTime(t.now)); err != nil {
				return unavailable("stream append", err)
			}
		}
		return nil
	})
}

func streamBinding(stream, shard string, seq int64) []byte {
	return vault.Binding("stream_records", stream+"/"+shard, strconv.FormatInt(seq, 10))
}

// StreamRead returns up to limit records of one shard with seq > after, in order.
func (s *Store) StreamRead(ctx context.Context, stream, shard string, after int64, limit int) ([]StreamRecord, error) {
	var wrapped []byte
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT wrapped FROM subject_keys WHERE subject_id = ?"), streamKeySubject).Scan(&wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil // nothing was ever appended
	}
	if err != nil {
		return nil, unavailable("stream key", err)
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT seq, pkey, producer, data, time FROM stream_records WHERE stream = ? AND shard = ? AND seq > ? ORDER BY seq LIMIT ?"),
		stream, shard, after, limit)
	if err != nil {
		return nil, unavailable("stream read", err)
	}
	defer rows.Close()
	var out []StreamRecord
	for rows.Next() {
		r := StreamRecord{Stream: stream, Shard: shard}
		var producer sql.NullString
		var ct []byte
		var tm string
		if err := rows.Scan(&r.Seq, &r.Key, &producer, &ct, &tm); err != nil {
			return nil, unavailable("stream read", err)
		}
		r.Producer = producer.String
		r.Time, _ = time.Parse(time.RFC3339Nano, tm) // written by FormatDateTime
		if r.Data, err = s.vault.OpenFor(streamKeySubject, wrapped, ct, streamBinding(stream, shard, r.Seq)); err != nil {
			return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("stream record %s/%s/%d: %w", stream, shard, r.Seq, err)}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// StreamTrim deletes the records of one shard with seq <= upTo written before before:
// the embedded stream keeps what a worker has applied only for a bounded time.
func (s *Store) StreamTrim(ctx context.Context, stream, shard string, upTo int64, before time.Time) (int64, error) {
	var n int64
	err := s.Write(ctx, func(ctx context.Context, t *Tx) error {
		res, err := t.exec(ctx, "DELETE FROM stream_records WHERE stream = ? AND shard = ? AND seq <= ? AND time < ?", stream, shard, upTo, records.FormatDateTime(before))
		if err != nil {
			return unavailable("stream trim", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// Change is one row of the change log.
type Change struct {
	ID        int64
	Entity    string
	SourcedID string
	Op        string // "upsert" or "delete"
	Time      string
}

// GapWait is how long a hole in the change ids is waited on before readers pass it.
// On SQLite ids are dense (one writer; a rolled-back insert gives its id back); on
// PostgreSQL a sequence hands out ids before commit, so a later id can commit first:
// the hole is an earlier transaction still in flight, or one that rolled back.
var GapWait = 10 * time.Second

// stableUpTo returns the highest change id after `after` below which no change can
// still appear, looking at most at scan rows, and whether more rows follow.
func (s *Store) stableUpTo(ctx context.Context, after int64, scan int) (int64, bool, error) {
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT id, time FROM changes WHERE id > ? ORDER BY id LIMIT ?"), after, scan)
	if err != nil {
		return after, false, unavailable("changes", err)
	}
	defer rows.Close()
	upTo, n := after, 0
	settled := records.FormatDateTime(s.now().Add(-GapWait))
	for rows.Next() {
		var id int64
		var tm string
		if err := rows.Scan(&id, &tm); err != nil {
			return after, false, unavailable("changes", err)
		}
		n++
		if id != upTo+1 && tm > settled {
			return upTo, true, nil // a young hole: an earlier id may still commit
		}
		upTo = id
	}
	return upTo, n == scan, unavailable("change log", rows.Err())
}

// ChangesAfter returns up to limit changes with id > after, in id order, never
// passing an unsettled hole (see GapWait): the outbound relay reads the outbox here.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]Change, error) {
	upTo, _, err := s.stableUpTo(ctx, after, limit)
	if err != nil || upTo == after {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT id, entity, sourced_id, op, time FROM changes WHERE id > ? AND id <= ? ORDER BY id"), after, upTo)
	if err != nil {
		return nil, unavailable("changes", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.ID, &c.Entity, &c.SourcedID, &c.Op, &c.Time); err != nil {
			return nil, unavailable("changes", err)
		}
		out = append(out, c)
	}
	return out, unavailable("changes", rows.Err())
}

// FeedEntity is one entity of a change feed with the caller's authorization: Rows
// over the entity's table (alias t) for rows that exist, Deleted over change_scopes
// (alias cs) for rows that were deleted.
type FeedEntity struct {
	Entity  *records.Entity
	Rows    records.Predicate
	Deleted records.Predicate
}

// FeedPage is one page of a change feed.
type FeedPage struct {
	Changes []Change
	Next    int64 // the position to ask from next
	More    bool  // more changes may be waiting past Next
}

// ChangeFeed returns up to limit changes after since that the caller may see now:
// an upsert when the row still exists inside Rows, a delete when the row's scoping
// keys at deletion match Deleted. Next moves past changes the caller may not see, so
// a sparse feed still advances.
func (s *Store) ChangeFeed(ctx context.Context, since int64, limit int, ents []FeedEntity) (FeedPage, error) {
	page := FeedPage{Next: since}
	const scan = 10000
	upTo, more, err := s.stableUpTo(ctx, since, scan)
	if err != nil {
		return page, err
	}
	page.Next, page.More = upTo, more
	if upTo == since || len(ents) == 0 {
		return page, nil
	}
	var conds []string
	args := []any{since, upTo}
	for _, fe := range ents {
		rows, dels := fe.Rows, fe.Deleted
		if rows.SQL == "" {
			rows.SQL = "1=1"
		}
		if dels.SQL == "" {
			dels.SQL = "1=1"
		}
		conds = append(conds, "(chg.entity = ? AND ((chg.op = 'upsert' AND EXISTS (SELECT 1 FROM "+fe.Entity.Table+" t WHERE t.sourced_id = chg.sourced_id AND ("+rows.SQL+")))"+
			" OR (chg.op = 'delete' AND EXISTS (SELECT 1 FROM change_scopes cs WHERE cs.entity = chg.entity AND cs.sourced_id = chg.sourced_id AND ("+dels.SQL+")))))")
		args = append(append(append(args, fe.Entity.Name), rows.Args...), dels.Args...)
	}
	q := "SELECT chg.id, chg.entity, chg.sourced_id, chg.op, chg.time FROM changes chg WHERE chg.id > ? AND chg.id <= ? AND (" + strings.Join(conds, " OR ") + ") ORDER BY chg.id LIMIT ?"
	args = append(args, limit+1)
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, s.d.rebind(q), args...)
		if err != nil {
			return unavailable("change feed", err)
		}
		defer rows.Close()
		for rows.Next() {
			var c Change
			if err := rows.Scan(&c.ID, &c.Entity, &c.SourcedID, &c.Op, &c.Time); err != nil {
				return unavailable("change feed", err)
			}
			page.Changes = append(page.Changes, c)
		}
		return rows.Err()
	})
	if err != nil {
		return page, err
	}
	if len(page.Changes) > limit {
		page.Changes = page.Changes[:limit]
		page.Next, page.More = page.Changes[limit-1].ID, true
	}
	return page, nil
}

// Kinds of scoping key kept for a deleted row. Each matches one placeholder of the
// authorization policy (authz/policy.go), so that the feed can authorize a delete the
// way the policy authorized the row while it existed.
const (
	ScopeOrg       = "org"       // {O}: the row's org (school)
	ScopeOrgOrUp   = "orgp"      // {O} or a parent of {O} (courses and orgs of the district)
	ScopeAnySchool = "anyschool" // every school-level principal (assessment line items without a class)
	ScopeClass     = "class"     // {C}: the classes a teacher teaches
	ScopeSClass    = "sclass"    // {SC}: the classes of a parent's children, or a student's own
	ScopeStudent   = "student"   // {S}: a parent's minor children, or a student's self
	ScopeSelf      = "self"      // {U}: the user themselves
	ScopeGlobal    = "global"    // every principal that may read the entity
)

// deleteScopes records, before a row is deleted, the keys that scoped it, so the
// change feed can still authorize its delete. Called by Delete.
func (t *Tx) deleteScopes(ctx context.Context, e *records.Entity, id string) error {
	if _, err := t.exec(ctx, "DELETE FROM change_scopes WHERE entity = ? AND sourced_id = ?", e.Name, id); err != nil {
		return unavailable("change scopes", err)
	}
	type key struct{ kind, sql string }
	one := func(kind string) key { return key{kind, "SELECT CAST(? AS TEXT)"} }
	var keys []key
	switch e.Name {
	case "academicSession", "category", "resource":
		keys = []key{{ScopeGlobal, "SELECT '*'"}}
	case "org":
		keys = []key{{ScopeOrgOrUp, "SELECT sourced_id FROM orgs WHERE sourced_id = ?"}}
	case "course":
		keys = []key{{ScopeOrgOrUp, "SELECT org_id FROM courses WHERE sourced_id = ?"},
			{ScopeClass, "SELECT sourced_id FROM classes WHERE course_id = ?"}, {ScopeSClass, "SELECT sourced_id FROM classes WHERE course_id = ?"}}
	case "class":
		keys = []key{{ScopeOrg, "SELECT school_id FROM classes WHERE sourced_id = ?"}, one(ScopeClass), one(ScopeSClass)}
	case "user":
		keys = []key{{ScopeOrg, "SELECT org_id FROM user_roles WHERE user_id = ?"},
			{ScopeClass, "SELECT class_id FROM enrollments WHERE user_id = ? AND status = 'active'"},
			{ScopeSClass, "SELECT class_id FROM enrollments WHERE user_id = ? AND role = 'teacher' AND status = 'active'"},
			one(ScopeStudent), one(ScopeSelf)}
	case "demographics":
		keys = []key{{ScopeOrg, "SELECT org_id FROM user_roles WHERE user_id = ?"}, one(ScopeStudent), one(ScopeSelf)}
	case "enrollment":
		keys = []key{{ScopeOrg, "SELECT school_id FROM enrollments WHERE sourced_id = ?"}, {ScopeClass, "SELECT class_id FROM enrollments WHERE sourced_id = ?"},
			{ScopeStudent, "SELECT user_id FROM enrollments WHERE sourced_id = ?"}, {ScopeSelf, "SELECT user_id FROM enrollments WHERE sourced_id = ?"}}
	case "lineItem":
		keys = []key{{ScopeOrg, "SELECT school_id FROM line_items WHERE sourced_id = ?"}, {ScopeClass, "SELECT class_id FROM line_items WHERE sourced_id = ?"},
			{ScopeSClass, "SELECT class_id FROM line_items WHERE sourced_id = ?"}}
	case "scoreScale":
		keys = []key{{ScopeOrg, "SELECT c.school_id FROM score_scales s JOIN classes c ON c.sourced_id = s.class_id WHERE s.sourced_id = ?"},
			{ScopeClass, "SELECT class_id FROM score_scales WHERE sourced_id = ?"}, {ScopeSClass, "SELECT class_id FROM score_scales WHERE sourced_id = ?"}}
	case "result":
		keys = []key{{ScopeOrg, "SELECT l.school_id FROM results r JOIN line_items l ON l.sourced_id = r.line_item_id WHERE r.sourced_id = ?"},
			{ScopeClass, "SELECT l.class_id FROM results r JOIN line_items l ON l.sourced_id = r.line_item_id WHERE r.sourced_id = ?"},
			{ScopeStudent, "SELECT student_id FROM results WHERE sourced_id = ?"}, {ScopeSelf, "SELECT student_id FROM results WHERE sourced_id = ?"}}
	case "assessmentLineItem":
		keys = []key{{ScopeOrg, "SELECT c.school_id FROM assessment_line_items a JOIN classes c ON c.sourced_id = a.class_id WHERE a.sourced_id = ?"},
			{ScopeAnySchool, "SELECT '*' FROM assessment_line_items WHERE sourced_id = ? AND class_id IS NULL"},
			{ScopeClass, "SELECT class_id FROM assessment_line_items WHERE sourced_id = ? AND class_id IS NOT NULL"},
			{ScopeSClass, "SELECT class_id FROM assessment_line_items WHERE sourced_id = ? AND class_id IS NOT NULL"}}
	case "assessmentResult":
		keys = []key{{ScopeOrg, "SELECT r.org_id FROM assessment_results a JOIN user_roles r ON r.user_id = a.student_id WHERE a.sourced_id = ?"},
			{ScopeClass, "SELECT e.class_id FROM assessment_results a JOIN enrollments e ON e.user_id = a.student_id AND e.role = 'student' AND e.status = 'active' WHERE a.sourced_id = ?"},
			{ScopeStudent, "SELECT student_id FROM assessment_results WHERE sourced_id = ?"}, {ScopeSelf, "SELECT student_id FROM assessment_results WHERE sourced_id = ?"}}
	}
	for _, k := range keys {
		var args []any
		if strings.Contains(k.sql, "?") {
			args = append(args, id)
		}
		// A CTE names the column portably (SQLite has no column list on a derived table).
		stmt := "WITH v(value) AS (" + k.sql + ") INSERT INTO change_scopes (entity, sourced_id, kind, value) SELECT DISTINCT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), value FROM v WHERE value IS NOT NULL"
		if _, err := t.exec(ctx, stmt, append(args, e.Name, id, k.kind)...); err != nil {
			return unavailable("change scopes", err)
		}
	}
	return nil
}
