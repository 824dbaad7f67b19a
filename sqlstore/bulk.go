package sqlstore

// Bulk work for the CSV importer and exporter: batched upserts through prepared
// multi-row statements, the temporary tables one import uses inside its transaction,
// marking rows absent from a bulk file, import job rows, and consistent streaming reads.
//
// A Bulk writer does what Tx.Put does for each object (seal the sensitive fields under
// the subject's data key through the same vault calls, keep blind indexes, link tables
// and user_roles in step, log the change) but a batch at a time: one query reads the
// stored objects of a batch, one statement per batch upserts the changed rows, and
// links, keys and change-log rows go in multi-row statements too. Per-row Put ran at
// about a fifth of raw prepared inserts (10.6k vs 48.8k enrollments/s on the reference
// machine), which is why this path exists.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"registrar/records"
	"registrar/vault"
)

// ImportCacheKiB is the writer's page cache during an import (the benchmark's raw
// baseline uses the same).
const ImportCacheKiB = 32 << 10

// BulkBatch is the default number of objects a Bulk writer handles per round trip.
const BulkBatch = 512

// maxParams bounds the bound parameters of one statement (SQLite's default limit is
// 32766; PostgreSQL's 65535).
const maxParams = 30000

// BulkItem is one object given to a Bulk writer.
type BulkItem struct {
	// Obj is the object to store. Prepare may complete or replace it; it must pass
	// records.Validate when Prepare returns.
	Obj records.Object
	// Old is the stored object (every field decrypted), nil if there is none. Filled
	// before Prepare is called.
	Old records.Object
	// Skip, set by Prepare, writes nothing for this item.
	Skip bool
	// Result says what was done: Created, Updated or Unchanged (0 when skipped).
	Result PutResult
	// Tag and Kind are the caller's (the importer keeps the CSV line and what the
	// row asks for).
	Tag  int64
	Kind int
	// Pre, when set, is the object's sealed part computed ahead by Preseal; it is used
	// when the object is created under BulkOptions.NewSubjects.
	Pre *Presealed
}

// Presealed is the sealed part of a new object's row, computed ahead of the write
// (on another goroutine) under a new data key for its subject.
type Presealed struct {
	subject string
	wrapped []byte
	sealed  []byte            // nil when no sensitive field is set
	bidx    map[string][]byte // blind indexes by field name
}

// Preseal creates a data key for obj's subject and seals obj's sensitive fields under
// it, exactly as a Bulk writer would, so that the work can run beside the writer. It is
// for objects whose subject has no stored key (see BulkOptions.NewSubjects); obj's
// sensitive fields must not change afterwards. Safe for concurrent use.
func (s *Store) Preseal(e *records.Entity, obj records.Object) (*Presealed, error) {
	p := &Presealed{subject: obj.Str(e.Subject), bidx: map[string][]byte{}}
	sealed := map[string]any{}
	for i := range e.Fields {
		f := &e.Fields[i]
		v, present := obj[f.Name]
		if !f.Sensitive || !present {
			continue
		}
		sealed[f.Name] = v
		if str, ok := v.(string); ok && f.BlindIndex && str != "" {
			p.bidx[f.Name] = s.vault.BlindIndex(f.Name, str)
		}
	}
	if len(sealed) == 0 {
		return p, nil
	}
	if p.subject == "" {
		return nil, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("%s: %s is required to protect its sensitive fields", e.Name, e.Subject)}
	}
	s.vault.Forget(p.subject)
	var err error
	if p.wrapped, err = s.vault.NewDataKey(p.subject); err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
	}
	pt, err := json.Marshal(sealed)
	if err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("encode sealed fields: %w", err)}
	}
	if p.sealed, err = s.vault.SealFor(p.subject, p.wrapped, pt, vault.Binding(e.Table, "sealed", obj.ID())); err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
	}
	return p, nil
}

// BulkOptions tune a Bulk writer.
type BulkOptions struct {
	// Batch is the number of objects per round trip (BulkBatch when 0).
	Batch int
	// Prepare is called once per batch, after Old is filled and before anything is
	// compared or written: it completes each object (fields kept from the stored one)
	// and validates it. An error aborts the write (and so the transaction).
	Prepare func(ctx context.Context, items []*BulkItem) error
	// Done is called once per batch after it is written, with Result set.
	Done func(ctx context.Context, items []*BulkItem) error
	// Seen, when set, records every id given to the writer under this name in the
	// import's seen set (see MarkAbsent). Needs BeginImport.
	Seen string
	// NoneStored says the caller knows no object of the batch is stored (the table was
	// empty when it started, and it gives each id once): the stored objects are not read.
	NoneStored bool
	// NewSubjects says the caller knows no subject of these objects has a stored data
	// key (subject_keys had none of them when it started, and each subject comes once):
	// keys are created without looking, and presealed items (Pre) are used as they are.
	NewSubjects bool
	// Student, if set, is called with the student of every changed record (see
	// StudentOf), the old and the new one; duplicates included.
	Student func(id string)
}

// Bulk writes many objects of one entity inside a write transaction. Objects are not
// checked for references: the caller validated them. Keep one Bulk per entity at a
// time and call Flush before reading what it wrote.
type Bulk struct {
	t     *Tx
	e     *records.Entity
	opt   BulkOptions
	items []*BulkItem
	ids   map[string]bool
	sl    selectList
	cols  []string
	stmts map[string]*sql.Stmt
	// staged: the PostgreSQL staging table of this writer exists (copy.go).
	staged bool
	// Stats counts what the writer did so far.
	Stats BulkStats
}

// BulkStats counts the outcomes of a Bulk writer.
type BulkStats struct {
	Created, Updated, Unchanged, Skipped int
}

// Bulk starts a batched writer for entity e.
func (t *Tx) Bulk(e *records.Entity, opt BulkOptions) *Bulk {
	if opt.Batch <= 0 {
		opt.Batch = BulkBatch
	}
	b := &Bulk{t: t, e: e, opt: opt, ids: map[string]bool{}, sl: t.s.selectFor(e), stmts: map[string]*sql.Stmt{}}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch {
		case f.Sensitive:
			if f.BlindIndex {
				b.cols = append(b.cols, f.Column+"_bidx")
			}
		case f.Kind == records.KChildren:
		default:
			b.cols = append(b.cols, f.Column)
		}
	}
	if e.HasSensitive() {
		b.cols = append(b.cols, "sealed")
	}
	// The batch's upsert must fit the parameter limit.
	if n := maxParams / len(b.cols); opt.Batch > n {
		b.opt.Batch = n
	}
	return b
}

// Add queues obj; a full batch is written at once.
func (b *Bulk) Add(ctx context.Context, obj records.Object, tag int64, kind int) error {
	return b.AddItem(ctx, &BulkItem{Obj: obj, Tag: tag, Kind: kind})
}

// AddItem queues an item (Obj, Tag, Kind and Pre are read); a full batch is written at once.
func (b *Bulk) AddItem(ctx context.Context, it *BulkItem) error {
	obj := it.Obj
	id := obj.ID()
	if b.ids[id] {
		// The same object twice in one batch: write the first before reading the second's stored state.
		if err := b.Flush(ctx); err != nil {
			return err
		}
	}
	b.ids[id] = true
	b.items = append(b.items, it)
	if len(b.items) >= b.opt.Batch {
		return b.Flush(ctx)
	}
	return nil
}

// Close releases the writer's prepared statements. Call Flush first.
func (b *Bulk) Close() {
	for _, s := range b.stmts {
		s.Close()
	}
	b.stmts = map[string]*sql.Stmt{}
}

// Flush writes the queued objects.
func (b *Bulk) Flush(ctx context.Context) error {
	items := b.items
	if len(items) == 0 {
		return nil
	}
	b.items = b.items[:0]
	clear(b.ids)
	t, e := b.t, b.e
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.Obj.ID()
	}
	var old map[string]records.Object
	if !b.opt.NoneStored {
		var err error
		if old, err = t.storedObjects(ctx, e, b.sl, ids); err != nil {
			return err
		}
	}
	for _, it := range items {
		it.Old = old[it.Obj.ID()]
	}
	if b.opt.Prepare != nil {
		if err := b.opt.Prepare(ctx, items); err != nil {
			return err
		}
	}
	now := records.FormatDateTime(t.now)
	var changed []*BulkItem
	for _, it := range items {
		switch {
		case it.Skip:
			it.Result = 0
			b.Stats.Skipped++
		case it.Old != nil && SameObject(e, it.Old, it.Obj):
			it.Result = Unchanged
			b.Stats.Unchanged++
		default:
			if it.Obj.Str("dateLastModified") == "" {
				it.Obj["dateLastModified"] = now
			}
			if it.Old != nil {
				it.Result = Updated
				b.Stats.Updated++
			} else {
				it.Result = Created
				b.Stats.Created++
			}
			changed = append(changed, it)
		}
	}
	if len(changed) > 0 {
		if err := b.write(ctx, changed, now); err != nil {
			return err
		}
	}
	if e.Subject == "sourcedId" {
		// A user or a demographics record is its own subject, read and sealed once per
		// import: keeping each key unwrapped in the vault's cache (about 1.5 KiB each)
		// would hold a district's worth of keys in memory for nothing.
		for _, it := range items {
			t.s.vault.Forget(it.Obj.ID())
		}
	}
	if b.opt.Seen != "" {
		rows := make([][]any, len(items))
		for i, it := range items {
			rows[i] = []any{b.opt.Seen, it.Obj.ID()}
		}
		if err := b.execRows(ctx, t.insertIgnore("imp_seen (ent, id)"), "(?, ?)", t.onConflictIgnore(), rows); err != nil {
			return unavailable("track import", err)
		}
	}
	if b.opt.Done != nil {
		return b.opt.Done(ctx, items)
	}
	return nil
}

// write stores the changed items: keys, rows, links, change log, students.
func (b *Bulk) write(ctx context.Context, changed []*BulkItem, now string) error {
	t, e := b.t, b.e
	var keys map[string][]byte
	pre := func(it *BulkItem) bool { return b.opt.NewSubjects && it.Pre != nil && it.Result == Created }
	if e.HasSensitive() {
		var subjects []string
		var presealed [][]any
		for _, it := range changed {
			if pre(it) {
				if it.Pre.wrapped != nil {
					presealed = append(presealed, []any{it.Pre.subject, it.Pre.wrapped, now})
				}
				continue
			}
			if hasSealed(e, it.Obj) {
				s := it.Obj.Str(e.Subject)
				if s == "" {
					return &records.Error{Code: records.Invalid, Message: fmt.Sprintf("%s: %s is required to protect its sensitive fields", e.Name, e.Subject)}
				}
				subjects = append(subjects, s)
			}
		}
		var err error
		if keys, err = t.subjectKeys(ctx, subjects, b.opt.NewSubjects); err != nil {
			return err
		}
		if err := t.insertAll(ctx, b.stmts, "subject_keys", []string{"subject_id", "wrapped", "created_at"}, presealed); err != nil {
			return unavailable("store data keys", err)
		}
	}
	rows := make([][]any, len(changed))
	for i, it := range changed {
		var p *Presealed
		if pre(it) {
			p = it.Pre
		}
		vals, err := t.bulkRowValues(e, it.Obj, keys, p)
		if err != nil {
			return err
		}
		rows[i] = vals
	}

	if t.useCopy() {
		if err := b.copyRows(ctx, changed, rows); err != nil {
			return err
		}
	} else if err := b.insertRows(ctx, changed, rows); err != nil {
		return err
	}
	var updated []any
	for _, it := range changed {
		if it.Result == Updated {
			updated = append(updated, it.Obj.ID())
		}
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch f.Kind {
		case records.KRefs:
			if err := b.deleteOwned(ctx, f.Link, "owner_id", updated); err != nil {
				return err
			}
			var links [][]any
			for _, it := range changed {
				l, _ := it.Obj[f.Name].([]string)
				for ord, ref := range l {
					links = append(links, []any{it.Obj.ID(), ord, ref})
				}
			}
			if err := t.insertAll(ctx, b.stmts, f.Link, []string{"owner_id", "ord", "ref_id"}, links); err != nil {
				return unavailable("bulk put links", err)
			}
		case records.KRoles:
			if err := b.deleteOwned(ctx, "user_roles", "user_id", updated); err != nil {
				return err
			}
			var roles [][]any
			for _, it := range changed {
				l, _ := it.Obj[f.Name].([]records.Role)
				for ord, r := range l {
					roles = append(roles, []any{it.Obj.ID(), ord, r.RoleType, r.Role, r.Org, nullIfEmpty(r.BeginDate), nullIfEmpty(r.EndDate)})
				}
			}
			if err := t.insertAll(ctx, b.stmts, "user_roles", []string{"user_id", "ord", "role_type", "role", "org_id", "begin_date", "end_date"}, roles); err != nil {
				return unavailable("bulk put roles", err)
			}
		}
	}
	log := make([][]any, len(changed))
	for i, it := range changed {
		log[i] = []any{e.Name, it.Obj.ID(), "upsert", now}
	}
	if err := t.insertAll(ctx, b.stmts, "changes", []string{"entity", "sourced_id", "op", "time"}, log); err != nil {
		return unavailable("log change", err)
	}
	if b.opt.Student != nil {
		for _, it := range changed {
			if id := StudentOf(e, it.Obj); id != "" {
				b.opt.Student(id)
			}
			if it.Old != nil {
				if id := StudentOf(e, it.Old); id != "" {
					b.opt.Student(id)
				}
			}
		}
	}
	return nil
}

// insertRows is the statement path of write (SQLite): new rows with INSERT OR IGNORE
// and a count, changed rows with an upsert.
func (b *Bulk) insertRows(ctx context.Context, changed []*BulkItem, rows [][]any) error {
	t, e := b.t, b.e
	// New rows go in with INSERT OR IGNORE and a count: the batch's ids were read in this
	// transaction a moment ago, so nothing can conflict, and a statement that cannot
	// abort needs no statement journal (SQLite writes one for every multi-row statement
	// that could fail halfway; it cost a sixth of the import's time). Changed rows use
	// an upsert.
	var created, updatedRows [][]any
	for i, it := range changed {
		if it.Result == Created {
			created = append(created, rows[i])
		} else {
			updatedRows = append(updatedRows, rows[i])
		}
	}
	ph := placeholders(len(b.cols))
	into := e.Table + " (" + strings.Join(b.cols, ", ") + ")"
	insert := "INSERT INTO " + into + " VALUES "
	if n, err := b.execCount(ctx, t.insertIgnore(into), ph, t.onConflictIgnore(), created); err != nil {
		return unavailable("bulk put "+e.Name, err)
	} else if n != int64(len(created)) {
		return &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("bulk put %s: %d of %d new rows written", e.Name, n, len(created))}
	}
	set := make([]string, 0, len(b.cols)-1)
	for _, c := range b.cols[1:] {
		set = append(set, c+" = excluded."+c)
	}
	if err := b.execRows(ctx, insert, ph, " ON CONFLICT (sourced_id) DO UPDATE SET "+strings.Join(set, ", "), updatedRows); err != nil {
		return unavailable("bulk put "+e.Name, err)
	}
	return nil
}

func (b *Bulk) deleteOwned(ctx context.Context, table, col string, ids []any) error {
	for len(ids) > 0 {
		n := min(len(ids), 500)
		if _, err := b.t.exec(ctx, "DELETE FROM "+table+" WHERE "+col+" IN "+placeholders(n), ids[:n]...); err != nil {
			return unavailable("bulk delete links", err)
		}
		ids = ids[n:]
	}
	return nil
}

// execRows runs prefix + n×rowPH + suffix over rows, as many rows per statement as
// the parameter limit allows, reusing a prepared statement for full chunks.
func (b *Bulk) execRows(ctx context.Context, prefix, rowPH, suffix string, rows [][]any) error {
	return execRows(ctx, b.t, b.stmts, prefix, rowPH, suffix, rows)
}

// execAll runs a multi-row INSERT OR IGNORE that must write every row: it cannot
// abort halfway (so SQLite keeps no statement journal for it), and a row it skipped
// would be a bug, reported as such.
func execAll(ctx context.Context, t *Tx, cache map[string]*sql.Stmt, prefix, rowPH string, rows [][]any) error {
	var n int64
	if err := execRowsN(ctx, t, cache, prefix, rowPH, t.onConflictIgnore(), rows, &n); err != nil {
		return err
	}
	if n != int64(len(rows)) {
		return &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("%s: %d of %d rows written", strings.TrimSpace(prefix), n, len(rows))}
	}
	return nil
}

// insertIgnore starts a multi-row insert into table (with its column list) that skips
// rows that conflict: INSERT OR IGNORE on SQLite, finished by onConflictIgnore on
// PostgreSQL. On SQLite it is also a statement that cannot abort halfway, so SQLite
// keeps no statement journal for it.
func (t *Tx) insertIgnore(into string) string {
	if t.s.d.name() == "sqlite" {
		return "INSERT OR IGNORE INTO " + into + " VALUES "
	}
	return "INSERT INTO " + into + " VALUES "
}

func (t *Tx) onConflictIgnore() string {
	if t.s.d.name() == "sqlite" {
		return ""
	}
	return " ON CONFLICT DO NOTHING"
}

// execCount is execRows returning the number of rows the statements changed.
func (b *Bulk) execCount(ctx context.Context, prefix, rowPH, suffix string, rows [][]any) (int64, error) {
	var n int64
	err := execRowsN(ctx, b.t, b.stmts, prefix, rowPH, suffix, rows, &n)
	return n, err
}

func execRows(ctx context.Context, t *Tx, cache map[string]*sql.Stmt, prefix, rowPH, suffix string, rows [][]any) error {
	return execRowsN(ctx, t, cache, prefix, rowPH, suffix, rows, nil)
}

func execRowsN(ctx context.Context, t *Tx, cache map[string]*sql.Stmt, prefix, rowPH, suffix string, rows [][]any, count *int64) error {
	if len(rows) == 0 {
		return nil
	}
	per := max(1, min(BulkBatch*4, maxParams/len(rows[0])))
	args := make([]any, 0, min(len(rows), per)*len(rows[0]))
	for len(rows) > 0 {
		n := min(len(rows), per)
		args = args[:0]
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		q := t.s.d.rebind(prefix + valueRows(rowPH, n) + suffix)
		st, ok := cache[q]
		if !ok {
			var err error
			if st, err = t.tx.PrepareContext(ctx, q); err != nil {
				return err
			}
			if cache != nil {
				cache[q] = st
			} else {
				defer st.Close()
			}
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return err
		}
		if count != nil {
			k, err := res.RowsAffected()
			if err != nil {
				return err
			}
			*count += k
		}
		rows = rows[n:]
	}
	return nil
}

// placeholders is one row of n parameters: "(?, ?, ...)".
func placeholders(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// valueRows is row n times, comma-separated: the VALUES of a multi-row INSERT.
func valueRows(row string, n int) string {
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

func hasSealed(e *records.Entity, obj records.Object) bool {
	for i := range e.Fields {
		if e.Fields[i].Sensitive {
			if _, ok := obj[e.Fields[i].Name]; ok {
				return true
			}
		}
	}
	return false
}

// storedObjects reads the stored objects of ids, every field decrypted.
func (t *Tx) storedObjects(ctx context.Context, e *records.Entity, sl selectList, ids []string) (map[string]records.Object, error) {
	out := make(map[string]records.Object, len(ids))
	q := Query{Entity: e}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		rows, err := t.query(ctx, "SELECT "+sl.sql+" FROM "+e.Table+" t"+sl.join+" WHERE t.sourced_id IN "+placeholders(n), args...)
		if err != nil {
			return nil, unavailable("bulk read "+e.Name, err)
		}
		for rows.Next() {
			obj, err := t.s.scan(rows, e, sl, &q)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[obj.ID()] = obj
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, unavailable("bulk read "+e.Name, err)
		}
		ids = ids[n:]
	}
	return out, nil
}

// subjectKeys returns the wrapped data keys of subjects, creating the missing ones
// exactly as Put does (forgetting any cached key first).
func (t *Tx) subjectKeys(ctx context.Context, subjects []string, none bool) (map[string][]byte, error) {
	keys := make(map[string][]byte, len(subjects))
	var want []string
	for _, s := range subjects {
		if _, ok := keys[s]; !ok {
			keys[s] = nil
			want = append(want, s)
		}
	}
	for rest := want; len(rest) > 0 && !none; {
		n := min(len(rest), 500)
		args := make([]any, n)
		for i, s := range rest[:n] {
			args[i] = s
		}
		rows, err := t.query(ctx, "SELECT subject_id, wrapped FROM subject_keys WHERE subject_id IN "+placeholders(n), args...)
		if err != nil {
			return nil, unavailable("read data keys", err)
		}
		for rows.Next() {
			var s string
			var w []byte
			if err := rows.Scan(&s, &w); err != nil {
				rows.Close()
				return nil, unavailable("read data keys", err)
			}
			keys[s] = w
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, unavailable("read data keys", err)
		}
		rest = rest[n:]
	}
	var created [][]any
	now := records.FormatDateTime(t.now)
	for _, s := range want {
		if keys[s] != nil {
			continue
		}
		t.s.vault.Forget(s)
		w, err := t.s.vault.NewDataKey(s)
		if err != nil {
			return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
		}
		keys[s] = w
		created = append(created, []any{s, w, now})
	}
	if err := t.insertAll(ctx, nil, "subject_keys", []string{"subject_id", "wrapped", "created_at"}, created); err != nil {
		return nil, unavailable("store data keys", err)
	}
	return keys, nil
}

// bulkRowValues is rowValues with the subject's data key already in hand, or with
// the sealed part computed ahead (pre).
func (t *Tx) bulkRowValues(e *records.Entity, obj records.Object, keys map[string][]byte, pre *Presealed) ([]any, error) {
	var vals []any
	sealed := map[string]any{}
	for i := range e.Fields {
		f := &e.Fields[i]
		v, present := obj[f.Name]
		if f.Sensitive {
			if present {
				sealed[f.Name] = v
			}
			if f.BlindIndex {
				switch s, ok := v.(string); {
				case pre != nil && pre.bidx[f.Name] != nil:
					vals = append(vals, pre.bidx[f.Name])
				case pre == nil && ok && present && s != "":
					vals = append(vals, t.s.vault.BlindIndex(f.Name, s))
				default:
					vals = append(vals, nil)
				}
			}
			continue
		}
		if f.Kind == records.KChildren {
			continue
		}
		if !present {
			if f.Kind == records.KRefs {
				vals = append(vals, "[]")
			} else {
				vals = append(vals, nil)
			}
			continue
		}
		enc, err := encodeColumn(f, v)
		if err != nil {
			return nil, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("%s: %v", f.Name, err)}
		}
		vals = append(vals, enc)
	}
	if e.HasSensitive() {
		switch {
		case pre != nil:
			if pre.sealed == nil {
				vals = append(vals, nil)
			} else {
				vals = append(vals, pre.sealed)
			}
		case len(sealed) == 0:
			vals = append(vals, nil)
		default:
			subject := obj.Str(e.Subject)
			pt, err := json.Marshal(sealed)
			if err != nil {
				return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("encode sealed fields: %w", err)}
			}
			ct, err := t.s.vault.SealFor(subject, keys[subject], pt, vault.Binding(e.Table, "sealed", obj.ID()))
			if err != nil {
				return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
			}
			vals = append(vals, ct)
		}
	}
	return vals, nil
}

// SameObject reports whether a and b hold the same values of e's fields, apart from
// dateLastModified and derived fields. An absent list equals an empty one, an absent
// string an empty one, and JSON values are compared without insignificant space.
func SameObject(e *records.Entity, a, b records.Object) bool {
	for i := range e.Fields {
		f := &e.Fields[i]
		if f.Kind == records.KChildren || f.Name == "dateLastModified" {
			continue
		}
		va, vb := a[f.Name], b[f.Name]
		switch f.Kind {
		case records.KRefs, records.KStrings:
			la, _ := va.([]string)
			lb, _ := vb.([]string)
			if !slices.Equal(la, lb) {
				return false
			}
		case records.KRoles:
			la, _ := va.([]records.Role)
			lb, _ := vb.([]records.Role)
			if !slices.Equal(la, lb) {
				return false
			}
		case records.KJSON:
			ja, _ := va.(json.RawMessage)
			jb, _ := vb.(json.RawMessage)
			if !sameJSON(ja, jb) {
				return false
			}
		case records.KFloat:
			fa, oka := va.(float64)
			fb, okb := vb.(float64)
			if oka != okb || fa != fb {
				return false
			}
		default:
			sa, _ := va.(string)
			sb, _ := vb.(string)
			if sa != sb {
				return false
			}
		}
	}
	return true
}

func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	if bytes.Equal(a, b) {
		return true
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// StudentOf returns the student a record of e is about, or "": a user with a student
// role, the subject of demographics, a student's enrollment, the student of a result.
func StudentOf(e *records.Entity, obj records.Object) string {
	switch e {
	case records.User:
		roles, _ := obj["roles"].([]records.Role)
		for _, r := range roles {
			if r.Role == "student" {
				return obj.ID()
			}
		}
	case records.Demographics:
		return obj.ID()
	case records.Enrollment:
		if obj.Str("role") == "student" {
			return obj.Str("user")
		}
	case records.Result, records.AssessmentResult:
		return obj.Str("student")
	}
	return ""
}

// studentSQL is StudentOf as an SQL expression over e's table aliased t ("" when
// e's records are not about one student).
func studentSQL(e *records.Entity) string {
	switch e {
	case records.User:
		return "CASE WHEN EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student') THEN t.sourced_id END"
	case records.Demographics:
		return "t.sourced_id"
	case records.Enrollment:
		return "CASE WHEN t.role = 'student' THEN t.user_id END"
	case records.Result, records.AssessmentResult:
		return "t.student_id"
	}
	return ""
}

// BeginImport creates the temporary tables one import works with inside its
// transaction: the ids seen per file, and the staged rows of files that fill a field
// of another entity (roles.csv into users). They vanish with a rollback; EndImport
// drops them before the commit.
func (t *Tx) BeginImport(ctx context.Context) error {
	stmts := []string{"DROP TABLE IF EXISTS imp_seen", "DROP TABLE IF EXISTS imp_child"}
	wr := ""
	if t.s.d.name() == "sqlite" {
		// A million-row transaction does not fit SQLite's default 2 MiB page cache: pages
		// spill to the WAL and are read back. The writer keeps this cache afterwards.
		stmts = append([]string{fmt.Sprintf("PRAGMA cache_size = -%d", ImportCacheKiB)}, stmts...)
		wr = " WITHOUT ROWID"
	}
	stmts = append(stmts,
		t.s.d.ddl("CREATE TEMP TABLE imp_seen (ent TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (ent, id))"+wr),
		t.s.d.ddl("CREATE TEMP TABLE imp_child (kind TEXT NOT NULL, owner TEXT NOT NULL, line {{bigint}} NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, date TEXT NOT NULL, payload {{blob}}, PRIMARY KEY (kind, owner, line))"+wr),
	)
	for _, q := range stmts {
		if _, err := t.exec(ctx, q); err != nil {
			return unavailable("begin import", err)
		}
	}
	return nil
}

// EndImport drops the import's temporary tables.
func (t *Tx) EndImport(ctx context.Context) error {
	for _, q := range []string{"DROP TABLE IF EXISTS imp_seen", "DROP TABLE IF EXISTS imp_child"} {
		if _, err := t.exec(ctx, q); err != nil {
			return unavailable("end import", err)
		}
	}
	return nil
}

// ChildRow is a staged row of a file that fills a field of another entity's objects
// (a role of a user, a resource of a class). Payload is the caller's encoding; callers
// stage sensitive values only in sealed form (temporary tables may reach disk).
type ChildRow struct {
	Kind    string // the file, e.g. "roles"
	Owner   string // sourcedId of the object whose field the row fills
	Line    int64  // line in the file: rows apply in this order
	Key     string // identifies the entry within the owner's field
	Status  string // active or tobedeleted
	Date    string // dateLastModified of a delta row, or ""
	Payload []byte
}

// Stager batches ChildRows into the import's staging table.
type Stager struct {
	t     *Tx
	rows  [][]any
	stmts map[string]*sql.Stmt
}

// Stager returns a batched writer of staged rows. Needs BeginImport.
func (t *Tx) Stager() *Stager { return &Stager{t: t, stmts: map[string]*sql.Stmt{}} }

// Add queues one staged row.
func (s *Stager) Add(ctx context.Context, r ChildRow) error {
	s.rows = append(s.rows, []any{r.Kind, r.Owner, r.Line, r.Key, r.Status, r.Date, r.Payload})
	if len(s.rows) >= BulkBatch*4 {
		return s.Flush(ctx)
	}
	return nil
}

// Flush writes the queued rows.
func (s *Stager) Flush(ctx context.Context) error {
	err := s.t.insertAll(ctx, s.stmts, "imp_child", []string{"kind", "owner", "line", "key", "status", "date", "payload"}, s.rows)
	s.rows = s.rows[:0]
	if err != nil {
		return unavailable("stage rows", err)
	}
	return nil
}

// Finish writes the queued rows of the last batch and, on PostgreSQL, updates the
// planner's statistics of the staging table (temporary tables are never analyzed by
// autovacuum; without statistics each lookup of a batch's owners scanned the table).
func (s *Stager) Finish(ctx context.Context) error {
	if err := s.Flush(ctx); err != nil {
		return err
	}
	if s.t.s.d.name() == "postgres" {
		if _, err := s.t.exec(ctx, "ANALYZE imp_child"); err != nil {
			return unavailable("stage rows", err)
		}
	}
	return nil
}

// Close releases the prepared statements.
func (s *Stager) Close() {
	for _, st := range s.stmts {
		st.Close()
	}
}

// StagedRows returns the staged rows of kind for owners, in line order.
func (t *Tx) StagedRows(ctx context.Context, kind string, owners []string) (map[string][]ChildRow, error) {
	out := map[string][]ChildRow{}
	for len(owners) > 0 {
		n := min(len(owners), 500)
		args := []any{kind}
		for _, o := range owners[:n] {
			args = append(args, o)
		}
		rows, err := t.query(ctx, "SELECT owner, line, key, status, date, payload FROM imp_child WHERE kind = ? AND owner IN "+placeholders(n)+" ORDER BY owner, line", args...)
		if err != nil {
			return nil, unavailable("read staged rows", err)
		}
		for rows.Next() {
			r := ChildRow{Kind: kind}
			if err := rows.Scan(&r.Owner, &r.Line, &r.Key, &r.Status, &r.Date, &r.Payload); err != nil {
				rows.Close()
				return nil, unavailable("read staged rows", err)
			}
			out[r.Owner] = append(out[r.Owner], r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, unavailable("read staged rows", err)
		}
		owners = owners[n:]
	}
	return out, nil
}

// StagedOwners returns up to limit owners, after the given one in order, that have
// staged rows of any of kinds but are not in the seen set named seen.
func (t *Tx) StagedOwners(ctx context.Context, kinds []string, seen, after string, limit int) ([]string, error) {
	args := []any{}
	for _, k := range kinds {
		args = append(args, k)
	}
	args = append(args, seen, after, limit)
	return t.column(ctx, "read staged owners", "SELECT DISTINCT c.owner FROM imp_child c WHERE c.kind IN "+placeholders(len(kinds))+
		" AND NOT EXISTS (SELECT 1 FROM imp_seen s WHERE s.ent = ? AND s.id = c.owner) AND c.owner > ? ORDER BY c.owner LIMIT ?", args...)
}

// MarkAbsent marks every object of e that is not in the seen set named seen, and not
// already so, tobedeleted with dateLastModified now, logging a change for each and
// calling student with the student of each (see StudentOf). It returns how many it
// marked.
func (t *Tx) MarkAbsent(ctx context.Context, e *records.Entity, seen string, student func(string)) (int64, error) {
	// Every seen id is a row of the table: when the counts agree, nothing is absent,
	// and the scan below is not needed.
	var rows, seenRows int64
	if err := t.queryRow(ctx, "SELECT (SELECT COUNT(*) FROM "+e.Table+"), (SELECT COUNT(*) FROM imp_seen WHERE ent = ?)", seen).Scan(&rows, &seenRows); err != nil {
		return 0, unavailable("mark absent", err)
	}
	if rows == seenRows {
		return 0, nil
	}
	now := records.FormatDateTime(t.now)
	cond := " WHERE t.status <> 'tobedeleted' AND NOT EXISTS (SELECT 1 FROM imp_seen s WHERE s.ent = ? AND s.id = t.sourced_id)"
	if st := studentSQL(e); st != "" && student != nil {
		rows, err := t.query(ctx, "SELECT DISTINCT "+st+" FROM "+e.Table+" t"+cond+" AND "+st+" IS NOT NULL", seen)
		if err != nil {
			return 0, unavailable("mark absent", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return 0, unavailable("mark absent", err)
			}
			student(id)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return 0, unavailable("mark absent", err)
		}
	}
	if _, err := t.exec(ctx, "INSERT INTO changes (entity, sourced_id, op, time) SELECT CAST(? AS TEXT), t.sourced_id, 'upsert', CAST(? AS TEXT) FROM "+e.Table+" t"+cond+" ORDER BY t.sourced_id", e.Name, now, seen); err != nil {
		return 0, unavailable("mark absent", err)
	}
	res, err := t.exec(ctx, "UPDATE "+e.Table+" AS t SET status = 'tobedeleted', date_last_modified = ?"+cond, now, seen)
	if err != nil {
		return 0, unavailable("mark absent", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, unavailable("mark absent", err)
	}
	return n, nil
}

// NoSubjectKeys reports whether no person has a data key yet (a store without
// sensitive data).
func (t *Tx) NoSubjectKeys(ctx context.Context) (bool, error) {
	var one int
	err := t.queryRow(ctx, "SELECT 1 FROM subject_keys LIMIT 1").Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, unavailable("subject keys", err)
	}
	return false, nil
}

// Empty reports whether e has no objects at all.
func (t *Tx) Empty(ctx context.Context, e *records.Entity) (bool, error) {
	var one int
	err := t.queryRow(ctx, "SELECT 1 FROM "+e.Table+" LIMIT 1").Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, unavailable("empty", err)
	}
	return false, nil
}

// MissingIDs returns those of ids that are not objects of e, inside the transaction.
func (t *Tx) MissingIDs(ctx context.Context, e *records.Entity, ids []string) ([]string, error) {
	var missing []string
	for len(ids) > 0 {
		n := min(len(ids), 500)
		found, err := existing(ctx, t.tx, t.s.d, e, ids[:n])
		if err != nil {
			return nil, err
		}
		for _, id := range ids[:n] {
			if !found[id] {
				missing = append(missing, id)
			}
		}
		ids = ids[n:]
	}
	return missing, nil
}

// ExistingIDs returns which of ids are objects of e (any status).
func (s *Store) ExistingIDs(ctx context.Context, e *records.Entity, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		found, err := existing(ctx, s.r, s.d, e, ids[:n])
		if err != nil {
			return nil, err
		}
		for id := range found {
			out[id] = true
		}
		ids = ids[n:]
	}
	return out, nil
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func existing(ctx context.Context, db querier, d dialect, e *records.Entity, ids []string) (map[string]bool, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := db.QueryContext(ctx, d.rebind("SELECT sourced_id FROM "+e.Table+" WHERE sourced_id IN "+placeholders(len(ids))), args...)
	if err != nil {
		return nil, unavailable("existing ids", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, unavailable("existing ids", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// UserProfileIDs returns, for each of users that exists, the profileIds of its stored
// userProfiles.
func (s *Store) UserProfileIDs(ctx context.Context, users []string) (map[string][]string, error) {
	out := map[string][]string{}
	for len(users) > 0 {
		n := min(len(users), 500)
		args := make([]any, n)
		for i, u := range users[:n] {
			args[i] = u
		}
		rows, err := s.r.QueryContext(ctx, s.d.rebind("SELECT sourced_id, user_profiles FROM users WHERE sourced_id IN "+placeholders(n)), args...)
		if err != nil {
			return nil, unavailable("user profiles", err)
		}
		for rows.Next() {
			var id string
			var js sql.NullString
			if err := rows.Scan(&id, &js); err != nil {
				rows.Close()
				return nil, unavailable("user profiles", err)
			}
			var profiles []struct {
				ProfileID string `json:"profileId"`
			}
			if js.Valid {
				_ = json.Unmarshal([]byte(js.String), &profiles) // not a list of profiles: it has no ids
			}
			ids := []string{}
			for _, p := range profiles {
				ids = append(ids, p.ProfileID)
			}
			out[id] = ids
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, unavailable("user profiles", err)
		}
		users = users[n:]
	}
	return out, nil
}

// Snapshot is one consistent read of the store, for exports.
type Snapshot struct {
	s  *Store
	tx *sql.Tx
}

// Snapshot runs fn in one read transaction: everything it reads is of one moment.
func (s *Store) Snapshot(ctx context.Context, fn func(*Snapshot) error) error {
	return s.readTx(ctx, func(tx *sql.Tx) error { return fn(&Snapshot{s: s, tx: tx}) })
}

// Each calls fn for every object of q.Entity within q.Scope and q.Where, in sourcedId
// order, with the fields q.Hidden allows decrypted. Filter, Sort and Page are ignored.
func (sn *Snapshot) Each(ctx context.Context, q Query, fn func(records.Object) error) error {
	e := q.Entity
	sl := sn.s.selectFor(e)
	where := records.And(append([]records.Predicate{q.Scope}, q.Where...)...)
	stmt := "SELECT " + sl.sql + " FROM " + e.Table + " t" + sl.join
	if where.SQL != "" {
		stmt += " WHERE " + where.SQL
	}
	rows, err := sn.tx.QueryContext(ctx, sn.s.d.rebind(stmt+" ORDER BY t.sourced_id"), where.Args...)
	if err != nil {
		return unavailable("read "+e.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		obj, err := sn.s.scan(rows, e, sl, &q)
		if err != nil {
			return err
		}
		if err := fn(obj); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return unavailable("read "+e.Name, err)
	}
	return nil
}

// MetadataKeys returns the top-level keys of the metadata objects of e's objects
// within scope, sorted.
func (sn *Snapshot) MetadataKeys(ctx context.Context, e *records.Entity, scope records.Predicate) ([]string, error) {
	from, cond := e.Table+" t, json_each(t.metadata) j", "t.metadata IS NOT NULL AND json_valid(t.metadata) AND json_type(t.metadata) = 'object'"
	if sn.s.d.name() == "postgres" {
		from = e.Table + " t CROSS JOIN LATERAL jsonb_object_keys(CASE WHEN jsonb_typeof(t.metadata::jsonb) = 'object' THEN t.metadata::jsonb ELSE '{}'::jsonb END) AS j(key)"
		cond = "t.metadata IS NOT NULL"
	}
	where := records.And(records.Predicate{SQL: cond}, scope)
	rows, err := sn.tx.QueryContext(ctx, sn.s.d.rebind("SELECT DISTINCT j.key FROM "+from+" WHERE "+where.SQL+" ORDER BY 1"), where.Args...)
	if err != nil {
		return nil, unavailable("metadata keys", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, unavailable("metadata keys", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// ImportJob is an import started through the API, as kept in the imports table.
type ImportJob struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"` // queued, running, succeeded, invalid, failed
	Principal  string          `json:"principal"`
	CreatedAt  time.Time       `json:"createdAt"`
	FinishedAt *time.Time      `json:"finishedAt,omitempty"`
	Summary    json.RawMessage `json:"summary,omitempty"`
	Errors     json.RawMessage `json:"errors,omitempty"`
}

// PutImportJob creates or replaces an import job's row.
func (t *Tx) PutImportJob(ctx context.Context, j ImportJob) error {
	var fin any
	if j.FinishedAt != nil {
		fin = records.FormatDateTime(*j.FinishedAt)
	}
	_, err := t.exec(ctx, "INSERT INTO imports (id, status, principal, created_at, finished_at, summary, errors) VALUES (?, ?, ?, ?, ?, ?, ?)"+
		" ON CONFLICT (id) DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at, summary = excluded.summary, errors = excluded.errors",
		j.ID, j.Status, j.Principal, records.FormatDateTime(j.CreatedAt), fin, nullJSON(j.Summary), nullJSON(j.Errors))
	if err != nil {
		return unavailable("put import job", err)
	}
	return nil
}

func nullJSON(j json.RawMessage) any {
	if len(j) == 0 {
		return nil
	}
	return string(j)
}

// FailUnfinishedImports marks jobs left queued or running by a process that stopped
// as failed; the store holds nothing of them (each import is one transaction).
func (t *Tx) FailUnfinishedImports(ctx context.Context, reason string) (int64, error) {
	msg, _ := json.Marshal([]map[string]string{{"message": reason}})
	res, err := t.exec(ctx, "UPDATE imports SET status = 'failed', finished_at = ?, errors = ? WHERE status IN ('queued', 'running')", records.FormatDateTime(t.now), string(msg))
	if err != nil {
		return 0, unavailable("fail unfinished imports", err)
	}
	return res.RowsAffected()
}

// ImportJob returns one import job.
func (s *Store) ImportJob(ctx context.Context, id string) (ImportJob, error) {
	var j ImportJob
	var created string
	var fin, sum, errs sql.NullString
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT id, status, principal, created_at, finished_at, summary, errors FROM imports WHERE id = ?"), id).
		Scan(&j.ID, &j.Status, &j.Principal, &created, &fin, &sum, &errs)
	if errors.Is(err, sql.ErrNoRows) {
		return j, &records.Error{Code: records.NotFound, Message: fmt.Sprintf("import %q not found", clipID(id))}
	}
	if err != nil {
		return j, unavailable("import job", err)
	}
	j.CreatedAt, _ = time.Parse(time.RFC3339Nano, created) // written by PutImportJob
	if fin.Valid {
		f, _ := time.Parse(time.RFC3339Nano, fin.String)
		j.FinishedAt = &f
	}
	if sum.Valid {
		j.Summary = json.RawMessage(sum.String)
	}
	if errs.Valid {
		j.Errors = json.RawMessage(errs.String)
	}
	return j, nil
}
