package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"

	"registrar/audit"
	"registrar/oneroster/csvspec"
	"registrar/records"
	"registrar/sqlstore"
)

// What a row given to a Bulk writer asks for.
const (
	itemRow       = iota // an active row: the object as the file gives it
	itemDelete           // a delta tobedeleted row with some values: mark the stored object
	itemDeleteAs         // a delta tobedeleted row with every value: the object, tobedeleted
	itemChildOnly        // no row of its own: only child files change the object
)

// writer runs pass 2 inside the import's transaction.
type writer struct {
	im    *Importer
	pkg   *Package
	plan  *plan
	probs *problems
	prog  *progress
	sum   *Summary
	opt   Options
	// staging seals staged values of sensitive fields under a key that lives only in
	// this process for this import: the temporary table may reach disk.
	staging tink.AEAD
	tx      *sqlstore.Tx
}

func (w *writer) init() error {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("importer: staging key: %w", err)
	}
	w.staging, err = aead.New(h)
	if err != nil {
		return fmt.Errorf("importer: staging key: %w", err)
	}
	return nil
}

// run is the import's transaction.
func (w *writer) run(ctx context.Context, tx *sqlstore.Tx) error {
	w.tx = tx
	if err := tx.BeginImport(ctx); err != nil {
		return err
	}
	if err := w.recheckRefs(ctx); err != nil {
		return err
	}
	for _, fi := range w.plan.files {
		if fi.child != nil {
			if err := w.stage(ctx, fi); err != nil {
				return err
			}
		}
	}
	for _, fi := range w.plan.files {
		if fi.entity != nil {
			if err := w.entityFile(ctx, fi); err != nil {
				return err
			}
		}
	}
	for _, fi := range files {
		if fi.entity != nil {
			if err := w.childOnly(ctx, fi); err != nil {
				return err
			}
		}
	}
	for _, fi := range w.plan.files {
		if fi.entity != nil && w.plan.modes[fi.spec.Name] == csvspec.ModeBulk {
			n, err := tx.MarkAbsent(ctx, fi.ent, fi.spec.Name)
			if err != nil {
				return err
			}
			w.sum.file(fi.spec.FileName, csvspec.ModeBulk).Deleted += int(n)
		}
	}
	students, err := tx.ImportStudents(ctx)
	if err != nil {
		return err
	}
	w.sum.Students = len(students)
	w.sum.total()
	ev := importEvent(w.opt.Event)
	ev.Outcome, ev.Students, ev.Count, ev.Detail = audit.OK, students, w.sum.Rows, w.sum.Line()
	tx.Audit(ev)
	if w.opt.BeforeCommit != nil {
		if err := w.opt.BeforeCommit(ctx, tx, w.sum); err != nil {
			return err
		}
	}
	return tx.EndImport(ctx)
}

// recheckRefs checks, inside the transaction, that the stored objects pass 1 found
// for references are still there.
func (w *writer) recheckRefs(ctx context.Context) error {
	for target, ids := range w.plan.refs {
		missing, err := w.tx.MissingIDs(ctx, entityOf[target], ids)
		if err != nil {
			return err
		}
		for _, id := range missing {
			w.probs.add(target+".csv", 0, "", "%s %s, referred to by the package, was deleted from the store while the package was checked; import again", singular(target), quote(id))
		}
	}
	return w.probs.err()
}

// open reopens a file for pass 2, checking on EOF that it is what pass 1 read.
func (w *writer) open(fi *fileInfo) (*csvReader, *header, func() error, error) {
	r, err := w.pkg.Open(fi.spec.FileName)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("importer: reopen %s: %w", fi.spec.FileName, err)
	}
	sum := sha256.New()
	rd := newCSVReader(io.TeeReader(r, sum), fi.spec.FileName)
	rec, err := rd.next()
	if err != nil {
		r.Close()
		return nil, nil, nil, w.changed(fi)
	}
	h, _, _ := matchHeader(fi, rec)
	if h == nil {
		r.Close()
		return nil, nil, nil, w.changed(fi)
	}
	w.prog.startFile(fi.spec.FileName, rd.cnt)
	finish := func() error {
		defer r.Close()
		want := w.plan.sums[fi.spec.Name]
		if !bytes.Equal(sum.Sum(nil), want[:]) {
			return w.changed(fi)
		}
		return nil
	}
	return rd, h, finish, nil
}

func (w *writer) changed(fi *fileInfo) error {
	w.probs.add(fi.spec.FileName, 0, "", "changed while it was being imported: nothing was written; import again")
	return w.probs.err()
}

// rows reads every record of an open file, calling fn for each decodable one.
func (w *writer) rows(ctx context.Context, rd *csvReader, d *rowDecoder, fn func() error) error {
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rec, err := rd.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return w.changed(d.fi)
		}
		w.prog.row()
		if !d.start(rec) {
			continue
		}
		if err := fn(); err != nil {
			return err
		}
	}
}

// stage copies the rows of a child file into the staging table.
func (w *writer) stage(ctx context.Context, fi *fileInfo) error {
	rd, h, finish, err := w.open(fi)
	if err != nil {
		return err
	}
	owner, _ := fi.ent.Field(fi.child.field)
	d := newRowDecoder(fi, w.plan.modes[fi.spec.Name], h, rd, w.probs)
	st := w.tx.Stager()
	defer st.Close()
	err = w.rows(ctx, rd, d, func() error {
		row := d.child()
		if d.failed {
			return nil
		}
		if owner.Sensitive {
			ct, err := w.staging.Encrypt(row.Payload, []byte(row.Kind))
			if err != nil {
				return fmt.Errorf("importer: seal staged row: %w", err)
			}
			row.Payload = ct
		}
		return st.Add(ctx, row)
	})
	if err != nil {
		return err
	}
	if err := st.Flush(ctx); err != nil {
		return err
	}
	if err := finish(); err != nil {
		return err
	}
	return w.probs.err()
}

// entityFile upserts the rows of one entity file.
func (w *writer) entityFile(ctx context.Context, fi *fileInfo) error {
	rd, h, finish, err := w.open(fi)
	if err != nil {
		return err
	}
	mode := w.plan.modes[fi.spec.Name]
	d := newRowDecoder(fi, mode, h, rd, w.probs)
	b := w.tx.Bulk(fi.ent, sqlstore.BulkOptions{Prepare: w.prepare(fi, len(h.meta) > 0), Done: w.done(fi), Seen: fi.spec.Name, Students: true})
	defer b.Close()
	err = w.rows(ctx, rd, d, func() error {
		obj, kind := d.entity()
		if d.failed {
			return nil
		}
		item := itemRow
		if kind == rowDelete {
			item = itemDelete
		} else if kind == rowDeleteAs {
			item = itemDeleteAs
		}
		return b.Add(ctx, obj, int64(rd.line), item)
	})
	if err != nil {
		return err
	}
	if err := b.Flush(ctx); err != nil {
		return err
	}
	if err := finish(); err != nil {
		return err
	}
	return w.probs.err()
}

// childOnly updates the objects of fi's entity that child files change but fi's own
// file does not list (a delta roles.csv for users not in users.csv).
func (w *writer) childOnly(ctx context.Context, fi *fileInfo) error {
	var kinds []string
	for _, c := range fi.children {
		if w.plan.modeOf(c.spec.Name) != csvspec.ModeAbsent {
			kinds = append(kinds, c.spec.Name)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	b := w.tx.Bulk(fi.ent, sqlstore.BulkOptions{Prepare: w.prepare(fi, false), Done: w.done(fi), Students: true})
	defer b.Close()
	after := ""
	for {
		owners, err := w.tx.StagedOwners(ctx, kinds, fi.spec.Name, after, 500)
		if err != nil {
			return err
		}
		if len(owners) == 0 {
			break
		}
		for _, o := range owners {
			if err := b.Add(ctx, records.Object{"sourcedId": o}, 0, itemChildOnly); err != nil {
				return err
			}
		}
		after = owners[len(owners)-1]
	}
	if err := b.Flush(ctx); err != nil {
		return err
	}
	return w.probs.err()
}

// prepare completes a batch of fi's objects: fields the file does not carry are
// kept from the stored object, child files are merged, and the result is validated.
func (w *writer) prepare(fi *fileInfo, hasMeta bool) func(context.Context, []*sqlstore.BulkItem) error {
	e := fi.ent
	return func(ctx context.Context, items []*sqlstore.BulkItem) error {
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = it.Obj.ID()
		}
		staged := map[string]map[string][]sqlstore.ChildRow{}
		for _, c := range fi.children {
			if w.plan.modeOf(c.spec.Name) == csvspec.ModeAbsent {
				continue
			}
			rows, err := w.tx.StagedRows(ctx, c.spec.Name, ids)
			if err != nil {
				return err
			}
			staged[c.spec.Name] = rows
		}
		for _, it := range items {
			var obj records.Object
			switch it.Kind {
			case itemRow, itemDeleteAs:
				obj = it.Obj
				if it.Old != nil {
					for i := range e.Fields {
						f := &e.Fields[i]
						if _, carried := fi.fieldCol[f.Name]; carried || f.Kind == records.KChildren || (f.Name == "metadata" && hasMeta) {
							continue
						}
						if v, ok := it.Old[f.Name]; ok {
							obj[f.Name] = v
						}
					}
				}
			case itemDelete:
				if it.Old == nil {
					it.Skip = true // nothing to delete
					continue
				}
				obj = maps.Clone(it.Old)
				obj["status"] = records.StatusToBeDeleted
				obj["dateLastModified"] = it.Obj["dateLastModified"]
			case itemChildOnly:
				if it.Old == nil {
					return fmt.Errorf("importer: %s %s vanished during the import", e.Name, it.Obj.ID())
				}
				obj = maps.Clone(it.Old)
				delete(obj, "dateLastModified")
			}
			date := obj.Str("dateLastModified")
			for _, c := range fi.children {
				cmode := w.plan.modeOf(c.spec.Name)
				if cmode == csvspec.ModeAbsent {
					continue // kept from the stored object above
				}
				rows := staged[c.spec.Name][obj.ID()]
				if cmode == csvspec.ModeDelta && len(rows) == 0 {
					if it.Old != nil {
						if v, ok := it.Old[c.child.field]; ok {
							obj[c.child.field] = v
						}
					}
					continue
				}
				var es []entry
				if cmode == csvspec.ModeDelta && it.Old != nil {
					var err error
					if es, err = childEntries(c.child, it.Old[c.child.field]); err != nil {
						w.probs.add(c.spec.FileName, int(rows[0].Line), c.child.ownerCol, "cannot apply to %s %s: %v", e.Name, quote(obj.ID()), err)
						continue
					}
				}
				for _, r := range rows {
					payload := r.Payload
					if f, _ := e.Field(c.child.field); f.Sensitive {
						pt, err := w.staging.Decrypt(payload, []byte(r.Kind))
						if err != nil {
							return fmt.Errorf("importer: open staged row: %w", err)
						}
						payload = pt
					}
					es = applyChild(es, r.Key, r.Status == records.StatusToBeDeleted, payload)
					if r.Date > date {
						date = r.Date
					}
				}
				v, err := childValue(c.child, es)
				if err != nil {
					return fmt.Errorf("importer: merge %s: %w", c.spec.FileName, err)
				}
				if v == nil {
					delete(obj, c.child.field)
				} else {
					obj[c.child.field] = v
				}
			}
			if date != "" {
				obj["dateLastModified"] = date // the latest of the row's and its child rows' (delta) dates
			}
			for _, fe := range records.Validate(e, obj) {
				file, line, col := fi.spec.FileName, int(it.Tag), fi.fieldCol[fe.Field]
				for _, c := range fi.children {
					if c.child.field == fe.Field {
						file, col = c.spec.FileName, c.child.ownerCol
						if rows := staged[c.spec.Name][obj.ID()]; len(rows) > 0 {
							line = int(rows[len(rows)-1].Line)
						} else if it.Kind == itemRow {
							file, col = fi.spec.FileName, "sourcedId"
						}
					}
				}
				w.probs.add(file, line, col, "%s %s: %s", e.Name, quote(obj.ID()), fe.Message)
			}
			it.Obj = obj
		}
		if w.probs.total > 0 {
			return w.probs.err()
		}
		return nil
	}
}

// done counts a written batch.
func (w *writer) done(fi *fileInfo) func(context.Context, []*sqlstore.BulkItem) error {
	return func(_ context.Context, items []*sqlstore.BulkItem) error {
		fs := w.sum.file(fi.spec.FileName, w.plan.modeOf(fi.spec.Name))
		for _, it := range items {
			if it.Kind == itemChildOnly {
				if it.Result == sqlstore.Updated {
					fs.Merged++
				}
				continue
			}
			switch {
			case it.Skip:
				fs.Ignored++
			case it.Result == sqlstore.Unchanged:
				fs.Unchanged++
			case it.Result == sqlstore.Created:
				fs.Created++
			case it.Kind == itemDelete || it.Kind == itemDeleteAs:
				fs.Deleted++
			default:
				fs.Updated++
			}
		}
		return nil
	}
}
