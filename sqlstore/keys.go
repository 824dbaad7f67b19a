package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"registrar/audit"
	"registrar/records"
	"registrar/vault"
)

// Key management in the store: each person's row in subject_keys holds their field
// data key and, once they have a document, their document key, both wrapped by the
// KEK, with the KEK version that wrapped each (kek_id, doc_kek_id). The version
// columns let rotation find the keys still to rewrap and know when an old version
// has no key left, so that it can be retired. A NULL version means "not recorded"
// (rows written by Put, or before this migration): the version is then read from the
// wrapped key itself (vault.WrappedKEKID).

// migrationKeys adds the KEK version of each wrapped key, the document key, the
// progress of key rotations and the deletion certificates.
func migrationKeys(d dialect) []string {
	out := []string{
		`ALTER TABLE subject_keys ADD COLUMN kek_id {{bigint}}`,
		`ALTER TABLE subject_keys ADD COLUMN doc_wrapped {{blob}}`,
		`ALTER TABLE subject_keys ADD COLUMN doc_kek_id {{bigint}}`,
		`CREATE INDEX subject_keys_kek ON subject_keys (kek_id)`,
		// One row per rotation; at most one running (resumed after a crash).
		`CREATE TABLE key_rotations (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  kek_id {{bigint}},
  principal TEXT NOT NULL,
  started_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT,
  batches INTEGER NOT NULL DEFAULT 0,
  rewrapped INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  retired TEXT
)`,
		`CREATE UNIQUE INDEX key_rotations_running ON key_rotations (state) WHERE state = 'running'`,
		// Signed deletion certificates, kept as evidence; they name the student by
		// sourcedId only.
		`CREATE TABLE deletion_certificates (id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, issued_at TEXT NOT NULL, document TEXT NOT NULL)`,
		`CREATE INDEX deletion_certificates_subject ON deletion_certificates (subject_id)`,
	}
	for i := range out {
		out[i] = d.ddl(out[i])
	}
	return out
}

// documentKeyMaker is the part of the vault that makes document keys.
type documentKeyMaker interface {
	NewDocumentKey(subject string) ([]byte, error)
}

// DocumentKey returns subject's wrapped document key, creating it (and the data key
// row, if the person has none yet) on first use. It runs in the write transaction so
// that a key is durable before anything is encrypted under it.
func (t *Tx) DocumentKey(ctx context.Context, subject string) ([]byte, error) {
	mk, ok := t.s.vault.(documentKeyMaker)
	if !ok {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: errors.New("sqlstore: the vault cannot make document keys")}
	}
	var doc []byte
	err := t.queryRow(ctx, "SELECT doc_wrapped FROM subject_keys WHERE subject_id = ?", subject).Scan(&doc)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := t.dataKey(ctx, subject); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, unavailable("read document key", err)
	case len(doc) > 0:
		return doc, nil
	}
	doc, err = mk.NewDocumentKey(subject)
	if err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
	}
	if _, err := t.exec(ctx, "UPDATE subject_keys SET doc_wrapped = ?, doc_kek_id = ? WHERE subject_id = ?", doc, kekID(doc), subject); err != nil {
		return nil, unavailable("store document key", err)
	}
	return doc, nil
}

// DocumentKey returns subject's wrapped document key; ok is false when the person has
// none (no document was ever stored, or the key was destroyed by a purge).
func (s *Store) DocumentKey(ctx context.Context, subject string) (wrapped []byte, ok bool, err error) {
	err = s.r.QueryRowContext(ctx, s.d.rebind("SELECT doc_wrapped FROM subject_keys WHERE subject_id = ?"), subject).Scan(&wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, unavailable("read document key", err)
	}
	return wrapped, len(wrapped) > 0, nil
}

// kekID is the KEK version of a wrapped key, as a column value (NULL if unknown).
func kekID(wrapped []byte) any {
	if id, ok := vault.WrappedKEKID(wrapped); ok {
		return int64(id)
	}
	return nil
}

// KeyRotator is what rotation needs from the vault.
type KeyRotator interface {
	KEKVersions() (primary uint32, all []uint32, err error)
	RotateKEK() (uint32, error)
	Rewrap(subject string, wrapped []byte) ([]byte, error)
	RewrapDocumentKey(subject string, wrapped []byte) ([]byte, error)
	RewrapServiceKeyset() (rewrapped string, inFile bool, err error)
	RetireKEK(keep []uint32) ([]uint32, error)
}

var _ KeyRotator = (*vault.Vault)(nil)

// RotateOptions tune a rotation.
type RotateOptions struct {
	// BatchSize is the number of keys rewrapped per transaction (default 200): small
	// enough that the server's writes wait milliseconds, not seconds.
	BatchSize int
	// MaxBatches stops the rotation after this many batches in this run, leaving it to
	// be resumed by the next run (0: run to the end). Tests use it to simulate a crash.
	MaxBatches int
	// Pause is the wait between batches, so that other writers get the database.
	Pause time.Duration
	// Event names who rotates (operator fields); its action and outcome are set here.
	Event audit.Event
	// Progress, when set, is called after every batch.
	Progress func(RotateProgress)
}

// RotateProgress is the state of a rotation after a batch.
type RotateProgress struct {
	ID        string
	KEK       uint32 // the new primary version
	Batches   int    // over every run of this rotation
	Rewrapped int    // keys rewrapped, over every run
	Failed    int    // keys that did not unwrap (left as they were), over every run
	Total     int    // key rows in the database when this run started
}

// RotateReport says what a run of RotateKEK did.
type RotateReport struct {
	RotateProgress
	Resumed bool     // this run continued a rotation that an earlier run left unfinished
	Done    bool     // every key is under the new version and old versions were retired
	Retired []uint32 // KEK versions deleted from the keyset
	Kept    []uint32 // old versions kept because a key still needs them
	// ServiceKeyset is the rewrapped service keyset when it is injected
	// (REGISTRAR_KEYSET) rather than kept in the data directory: install it, and the
	// next rotation retires the versions the old value needs.
	ServiceKeyset string
}

type rotation struct {
	id                         string
	kek                        sql.NullInt64
	batches, rewrapped, failed int
}

// RotateKEK rotates the key-encryption key online: it adds a new primary version to
// the KEK, rewraps every data and document key under it in small transactions while
// the server keeps serving, rewraps the service keyset, and then retires every old
// version that no stored key needs. Progress is kept in key_rotations, so that a run
// that stops (a crash, MaxBatches) is resumed by the next run without a new version.
func (s *Store) RotateKEK(ctx context.Context, kv KeyRotator, opt RotateOptions) (RotateReport, error) {
	if opt.BatchSize <= 0 {
		opt.BatchSize = 200
	}
	ev := opt.Event
	if ev.PrincipalKind == "" {
		ev.PrincipalKind, ev.PrincipalID = audit.KindSystem, "registrar"
	}
	ev.Action, ev.Outcome = "keys.rotate", audit.OK
	var rep RotateReport
	var rot rotation

	// A KEK held by a KMS (vault.ErrRemoteKEK) is rotated there: refuse before a
	// rotation is recorded, or it would stay "running" for ever.
	if _, _, err := kv.KEKVersions(); err != nil {
		return rep, err
	}

	// Find the unfinished rotation, or start one. The unique index on running rows
	// makes two concurrent starts collide rather than add two versions.
	err := s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		err := tx.queryRow(ctx, "SELECT id, kek_id, batches, rewrapped, failed FROM key_rotations WHERE state = 'running'").
			Scan(&rot.id, &rot.kek, &rot.batches, &rot.rewrapped, &rot.failed)
		if err == nil {
			rep.Resumed = true
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return unavailable("read key rotation", err)
		}
		rot = rotation{id: vault.RandomID()}
		now := records.FormatDateTime(tx.Now())
		if _, err := tx.exec(ctx, "INSERT INTO key_rotations (id, state, principal, started_at, updated_at) VALUES (?, 'running', ?, ?, ?)",
			rot.id, ev.PrincipalKind+":"+ev.PrincipalID, now, now); err != nil {
			return unavailable("start key rotation", err)
		}
		e := ev
		e.ResourceType, e.ResourceID, e.Detail = "kek", rot.id, "rotation started"
		tx.Audit(e)
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.ID = rot.id

	// The new version: made once per rotation. A crash between making it and
	// recording it costs one unused version, which this rotation then retires.
	primary, _, err := kv.KEKVersions()
	if err != nil {
		return rep, err
	}
	if !rot.kek.Valid {
		if primary, err = kv.RotateKEK(); err != nil {
			return rep, err
		}
	}
	if !rot.kek.Valid || uint32(rot.kek.Int64) != primary {
		if err := s.Write(ctx, func(ctx context.Context, tx *Tx) error {
			_, err := tx.exec(ctx, "UPDATE key_rotations SET kek_id = ?, updated_at = ? WHERE id = ?", int64(primary), records.FormatDateTime(tx.Now()), rot.id)
			return err
		}); err != nil {
			return rep, unavailable("record key rotation", err)
		}
	}
	rep.KEK = primary
	if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM subject_keys").Scan(&rep.Total); err != nil {
		return rep, unavailable("count keys", err)
	}
	rep.Batches, rep.Rewrapped, rep.Failed = rot.batches, rot.rewrapped, rot.failed

	// Rewrap, in key order, every key not recorded as wrapped under the primary. Keys
	// made meanwhile by the server are wrapped under the primary already (the vault
	// rereads the KEK file before wrapping); those it made just before the new version
	// existed are caught by the final pass inside the retiring transaction.
	runBatches := 0
	cursor := ""
	for {
		if opt.MaxBatches > 0 && runBatches >= opt.MaxBatches {
			return rep, nil
		}
		var n, failed int
		var last string
		err := s.Write(ctx, func(ctx context.Context, tx *Tx) error {
			var err error
			n, failed, last, err = tx.rewrapBatch(ctx, kv, primary, cursor, opt.BatchSize)
			if err != nil || n == 0 {
				return err
			}
			_, err = tx.exec(ctx, "UPDATE key_rotations SET batches = batches + 1, rewrapped = rewrapped + ?, failed = failed + ?, updated_at = ? WHERE id = ?",
				n-failed, failed, records.FormatDateTime(tx.Now()), rot.id)
			if err != nil {
				return unavailable("record key rotation", err)
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		if n == 0 {
			break
		}
		cursor = last
		runBatches++
		rep.Batches++
		rep.Rewrapped += n - failed
		rep.Failed += failed
		if opt.Progress != nil {
			opt.Progress(rep.RotateProgress)
		}
		if opt.Pause > 0 {
			select {
			case <-ctx.Done():
				return rep, ctx.Err()
			case <-time.After(opt.Pause):
			}
		}
	}

	// The service keyset (blind index, signature and token keys) moves too.
	svc, inFile, err := kv.RewrapServiceKeyset()
	if err != nil {
		return rep, err
	}
	if !inFile {
		rep.ServiceKeyset = svc
	}

	// Retire inside a write transaction: SQLite has one writer, so no other process
	// is between wrapping a key and storing it while the versions in use are counted.
	err = s.Write(ctx, func(ctx context.Context, tx *Tx) error {
		for c := ""; ; {
			n, failed, last, err := tx.rewrapBatch(ctx, kv, primary, c, opt.BatchSize)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			rep.Rewrapped += n - failed // keys that failed were counted by the pass above
			c = last
		}
		inUse, err := tx.kekVersionsInUse(ctx)
		if err != nil {
			return err
		}
		retired, err := kv.RetireKEK(inUse)
		if err != nil {
			return &records.Error{Code: records.Internal, Message: "internal error", Err: err}
		}
		rep.Retired = retired
		for _, id := range inUse {
			if id != primary {
				rep.Kept = append(rep.Kept, id)
			}
		}
		rb, _ := json.Marshal(retired) // a list of numbers: cannot fail
		now := records.FormatDateTime(tx.Now())
		if _, err := tx.exec(ctx, "UPDATE key_rotations SET state = 'finished', finished_at = ?, updated_at = ?, rewrapped = ?, failed = ?, batches = ?, retired = ? WHERE id = ?",
			now, now, rep.Rewrapped, rep.Failed, rep.Batches, string(rb), rot.id); err != nil {
			return unavailable("finish key rotation", err)
		}
		e := ev
		e.ResourceType, e.ResourceID, e.Count = "kek", rot.id, rep.Rewrapped
		e.Detail = fmt.Sprintf("rotation finished: primary version %d, %d keys rewrapped, %d failed, retired %v, kept %v", primary, rep.Rewrapped, rep.Failed, retired, rep.Kept)
		tx.Audit(e)
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.Done = true
	return rep, nil
}

// rewrapBatch rewraps up to limit keys after cursor that are not recorded as wrapped
// under primary. It returns the rows handled, how many of them failed, and the last
// subject (the next cursor).
func (t *Tx) rewrapBatch(ctx context.Context, kv KeyRotator, primary uint32, cursor string, limit int) (n, failed int, last string, err error) {
	p := int64(primary)
	rows, err := t.query(ctx, `SELECT subject_id, wrapped, doc_wrapped FROM subject_keys
WHERE subject_id > ? AND (kek_id IS NULL OR kek_id <> ? OR (doc_wrapped IS NOT NULL AND (doc_kek_id IS NULL OR doc_kek_id <> ?)))
ORDER BY subject_id LIMIT ?`, cursor, p, p, limit)
	if err != nil {
		return 0, 0, "", unavailable("read keys to rewrap", err)
	}
	type keyRow struct {
		subject      string
		wrapped, doc []byte
	}
	var batch []keyRow
	for rows.Next() {
		var r keyRow
		if err := rows.Scan(&r.subject, &r.wrapped, &r.doc); err != nil {
			rows.Close()
			return 0, 0, "", unavailable("read keys to rewrap", err)
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, "", unavailable("read keys to rewrap", err)
	}
	for _, r := range batch {
		w, err := kv.Rewrap(r.subject, r.wrapped)
		var d []byte
		if err == nil && len(r.doc) > 0 {
			d, err = kv.RewrapDocumentKey(r.subject, r.doc)
		}
		if err != nil {
			// Left as it is: its version is kept, and the report counts it.
			t.s.log.Error("key rotation: a key does not unwrap; left under its old version", "subject", r.subject, "err", err)
			failed++
			continue
		}
		if _, err := t.exec(ctx, "UPDATE subject_keys SET wrapped = ?, kek_id = ?, doc_wrapped = ?, doc_kek_id = ? WHERE subject_id = ?",
			w, kekID(w), d, kekID(d), r.subject); err != nil {
			return 0, 0, "", unavailable("store rewrapped key", err)
		}
	}
	if len(batch) > 0 {
		last = batch[len(batch)-1].subject
	}
	return len(batch), failed, last, nil
}

// kekVersionsInUse lists every KEK version some stored key is wrapped under.
func (t *Tx) kekVersionsInUse(ctx context.Context) ([]uint32, error) {
	var out []uint32
	add := func(id uint32) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, col := range []string{"kek_id", "doc_kek_id"} {
		rows, err := t.query(ctx, "SELECT DISTINCT "+col+" FROM subject_keys WHERE "+col+" IS NOT NULL")
		if err != nil {
			return nil, unavailable("read key versions", err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, unavailable("read key versions", err)
			}
			add(uint32(id))
		}
		rows.Close()
	}
	// Versions not recorded: read them from the wrapped keys themselves.
	rows, err := t.query(ctx, "SELECT wrapped, doc_wrapped FROM subject_keys WHERE kek_id IS NULL OR (doc_wrapped IS NOT NULL AND doc_kek_id IS NULL)")
	if err != nil {
		return nil, unavailable("read key versions", err)
	}
	defer rows.Close()
	for rows.Next() {
		var w, d []byte
		if err := rows.Scan(&w, &d); err != nil {
			return nil, unavailable("read key versions", err)
		}
		for _, b := range [][]byte{w, d} {
			if id, ok := vault.WrappedKEKID(b); ok {
				add(id)
			}
		}
	}
	slices.Sort(out)
	return out, rows.Err()
}

// KeyStatus is what `registrar keys status` shows.
type KeyStatus struct {
	Keys       int            // subject key rows
	Documents  int            // rows with a document key
	ByVersion  map[uint32]int // data and document keys by KEK version
	Unrecorded int            // keys whose version is not recorded (read from the key)
	Rotation   *RotationStatus
}

// RotationStatus is the latest rotation.
type RotationStatus struct {
	ID, State, StartedAt, UpdatedAt, FinishedAt, Retired string
	KEK                                                  uint32
	Batches, Rewrapped, Failed                           int
}

// KeyStatus counts stored keys by KEK version and returns the latest rotation.
func (s *Store) KeyStatus(ctx context.Context) (KeyStatus, error) {
	st := KeyStatus{ByVersion: map[uint32]int{}}
	rows, err := s.r.QueryContext(ctx, "SELECT wrapped, kek_id, doc_wrapped, doc_kek_id FROM subject_keys")
	if err != nil {
		return st, unavailable("key status", err)
	}
	for rows.Next() {
		var w, d []byte
		var k, dk sql.NullInt64
		if err := rows.Scan(&w, &k, &d, &dk); err != nil {
			rows.Close()
			return st, unavailable("key status", err)
		}
		st.Keys++
		count := func(b []byte, v sql.NullInt64) {
			if v.Valid {
				st.ByVersion[uint32(v.Int64)]++
				return
			}
			st.Unrecorded++
			if id, ok := vault.WrappedKEKID(b); ok {
				st.ByVersion[id]++
			}
		}
		count(w, k)
		if len(d) > 0 {
			st.Documents++
			count(d, dk)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, unavailable("key status", err)
	}
	var r RotationStatus
	var kek sql.NullInt64
	var fin, ret sql.NullString
	err = s.r.QueryRowContext(ctx, "SELECT id, state, kek_id, started_at, updated_at, finished_at, batches, rewrapped, failed, retired FROM key_rotations ORDER BY started_at DESC, id LIMIT 1").
		Scan(&r.ID, &r.State, &kek, &r.StartedAt, &r.UpdatedAt, &fin, &r.Batches, &r.Rewrapped, &r.Failed, &ret)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, unavailable("key status", err)
	default:
		r.KEK, r.FinishedAt, r.Retired = uint32(kek.Int64), fin.String, ret.String
		st.Rotation = &r
	}
	return st, nil
}
