package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

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
	// tracked names the files whose ids go into the seen set: a bulk file into a table
	// that had rows (for MarkAbsent), or an owner some objects of which only child files
	// change (for childOnly). A first load into an empty table needs neither.
	tracked  map[string]bool
	students map[string]struct{}
	// empty marks the entity files whose tables had no rows when the import began;
	// preseal those whose rows the producer seals ahead under new data keys (users, into
	// a store where nobody has a key yet). Both are set before the producer starts.
	empty   map[string]bool
	preseal map[string]bool
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

// run is the import's transaction. A producer goroutine reads and decodes the files
// while this goroutine, which owns the transaction, writes: the two cores of a small
// machine share the work.
func (w *writer) run(ctx context.Context, tx *sqlstore.Tx) error {
	w.tx = tx
	w.tracked, w.students = map[string]bool{}, map[string]struct{}{}
	if err := tx.BeginImport(ctx); err != nil {
		return err
	}
	if err := w.recheckRefs(ctx); err != nil {
		return err
	}
	w.empty, w.preseal = map[string]bool{}, map[string]bool{}
	noKeys, err := tx.NoSubjectKeys(ctx)
	if err != nil {
		return err
	}
	for _, fi := range w.plan.files {
		if fi.entity == nil {
			continue
		}
		empty, err := tx.Empty(ctx, fi.ent)
		if err != nil {
			return err
		}
		w.empty[fi.spec.Name] = empty
		// users.csv is the first file to create keys, and a user's sealed fields come
		// from its own row only: sealing can run on the producer's core.
		w.preseal[fi.spec.Name] = fi.ent == records.User && empty && noKeys
	}
	if err := w.consume(ctx); err != nil {
		return err
	}
	for _, fi := range files {
		if fi.entity != nil {
			if err := w.childOnly(ctx, fi); err != nil {
				return err
			}
		}
	}
	for _, fi := range w.plan.files {
		if fi.entity != nil && w.plan.modes[fi.spec.Name] == csvspec.ModeBulk && w.tracked[fi.spec.Name] {
			n, err := tx.MarkAbsent(ctx, fi.ent, fi.spec.Name, w.student)
			if err != nil {
				return err
			}
			w.sum.file(fi.spec.FileName, csvspec.ModeBulk).Deleted += int(n)
		}
	}
	students := make([]string, 0, len(w.students))
	for id := range w.students {
		students = append(students, id)
	}
	slices.Sort(students)
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

// student records a student whose records the import changes. The id is copied: it
// is a slice of a CSV line, which it would otherwise keep in memory.
func (w *writer) student(id string) {
	if _, ok := w.students[id]; !ok {
		w.students[strings.Clone(id)] = struct{}{}
	}
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

// chunk is a run of decoded rows of one file, from the producer to the writer.
type chunk struct {
	fi    *fileInfo
	meta  bool // the file has metadata.* columns
	first bool // the file's first chunk
	last  bool // the file's last chunk: it was read whole and is what pass 1 read
	rows  []decoded
	err   error
}

// decoded is one decoded row: an object of an entity file, or a staged row.
type decoded struct {
	obj   records.Object
	kind  int
	line  int64
	child sqlstore.ChildRow
	pre   *sqlstore.Presealed
}

const chunkRows = 1024

// produce reads the package's files in the order the writer needs them (files that
// fill parts of other objects first, to be staged) and sends their decoded rows.
func (w *writer) produce(ctx context.Context, out chan<- chunk) {
	defer close(out)
	send := func(c chunk) bool {
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for _, children := range []bool{true, false} {
		for _, fi := range w.plan.files {
			if (fi.child != nil) != children {
				continue
			}
			if err := w.produceFile(ctx, fi, send); err != nil {
				send(chunk{err: err})
				return
			}
		}
	}
}

func (w *writer) produceFile(ctx context.Context, fi *fileInfo, send func(chunk) bool) error {
	r, err := w.pkg.Open(fi.spec.FileName)
	if err != nil {
		return fmt.Errorf("importer: reopen %s: %w", fi.spec.FileName, err)
	}
	defer r.Close()
	sum := sha256.New()
	rd := newCSVReader(io.TeeReader(r, sum), fi.spec.FileName)
	rec, err := rd.next()
	if err != nil {
		return w.changed(fi)
	}
	h, _, _ := matchHeader(fi, rec)
	if h == nil {
		return w.changed(fi)
	}
	w.prog.startFile(fi.spec.FileName, rd.cnt)
	d := newRowDecoder(fi, w.plan.modes[fi.spec.Name], h, w.probs)
	// Rows are validated here, on the producer's core; the writer validates again only
	// what merging changed (fields kept from the stored object, parts from other files).
	var sensitive bool
	if fi.child != nil {
		f, _ := fi.ent.Field(fi.child.field)
		sensitive = f.Sensitive
	}
	c := chunk{fi: fi, meta: len(h.meta) > 0, first: true}
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rec, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return w.changed(fi)
		}
		w.prog.row()
		loc := rd.locate(len(rec))
		if !d.start(rec, &loc) {
			continue
		}
		if fi.child != nil {
			row := d.child()
			if d.failed {
				continue
			}
			if sensitive {
				ct, err := w.staging.Encrypt(row.Payload, []byte(row.Kind))
				if err != nil {
					return fmt.Errorf("importer: seal staged row: %w", err)
				}
				row.Payload = ct
			}
			c.rows = append(c.rows, decoded{child: row})
		} else {
			obj, kind := d.entity()
			if d.failed {
				continue
			}
			item := itemRow
			if kind == rowDelete {
				item = itemDelete
			} else if kind == rowDeleteAs {
				item = itemDeleteAs
			}
			var pre *sqlstore.Presealed
			if w.preseal[fi.spec.Name] && item != itemDelete {
				if pre, err = w.im.store.Preseal(fi.ent, obj); err != nil {
					return err
				}
			}
			c.rows = append(c.rows, decoded{obj: obj, kind: item, line: int64(rd.line), pre: pre})
		}
		if len(c.rows) == chunkRows {
			if !send(c) {
				return ctx.Err()
			}
			c = chunk{fi: fi, meta: c.meta}
		}
	}
	want := w.plan.sums[fi.spec.Name]
	if !bytes.Equal(sum.Sum(nil), want[:]) {
		return w.changed(fi)
	}
	c.last = true
	if !send(c) {
		return ctx.Err()
	}
	return nil
}

func (w *writer) changed(fi *fileInfo) error {
	w.probs.add(fi.spec.FileName, 0, "", "changed while it was being imported: nothing was written; import again")
	return w.probs.err()
}

// consume writes what the producer sends: staged rows, then objects.
func (w *writer) consume(ctx context.Context) error {
	pctx, cancel := context.WithCancel(ctx)
	ch := make(chan chunk, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.produce(pctx, ch)
	}()
	defer func() {
		cancel()
		for range ch { // let the producer see the cancel and finish
		}
		<-done
	}()
	var st *sqlstore.Stager
	var b *sqlstore.Bulk
	for c := range ch {
		if c.err != nil {
			return c.err
		}
		if c.first {
			if c.fi.child != nil {
				st = w.tx.Stager()
			} else {
				var err error
				if b, err = w.startEntity(ctx, c.fi, c.meta); err != nil {
					return err
				}
			}
		}
		for i := range c.rows {
			r := &c.rows[i]
			var err error
			if c.fi.child != nil {
				err = st.Add(ctx, r.child)
			} else {
				err = b.AddItem(ctx, &sqlstore.BulkItem{Obj: r.obj, Tag: r.line, Kind: r.kind, Pre: r.pre})
			}
			if err != nil {
				return err
			}
		}
		if !c.last {
			continue
		}
		if c.fi.child != nil {
			err := st.Finish(ctx)
			st.Close()
			if err != nil {
				return err
			}
		} else {
			err := b.Flush(ctx)
			b.Close()
			if err != nil {
				return err
			}
		}
		if err := w.probs.err(); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// startEntity prepares the writer of one entity file.
func (w *writer) startEntity(ctx context.Context, fi *fileInfo, meta bool) (*sqlstore.Bulk, error) {
	mode := w.plan.modes[fi.spec.Name]
	empty := w.empty[fi.spec.Name]
	track := w.plan.orphans[fi.spec.Name] || mode == csvspec.ModeBulk && !empty
	w.tracked[fi.spec.Name] = track
	seen := ""
	if track {
		seen = fi.spec.Name
	}
	return w.tx.Bulk(fi.ent, sqlstore.BulkOptions{Prepare: w.prepare(fi, meta), Done: w.done(fi), Seen: seen, Student: w.student,
		NoneStored: empty, NewSubjects: w.preseal[fi.spec.Name]}), nil
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
	if len(kinds) == 0 || !w.plan.orphans[fi.spec.Name] {
		return nil
	}
	b := w.tx.Bulk(fi.ent, sqlstore.BulkOptions{Prepare: w.prepare(fi, false), Done: w.done(fi), Student: w.student})
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
			merged := it.Kind != itemRow && it.Kind != itemDeleteAs // the row alone was validated by the producer
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
							merged = true
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
					// Only tobedeleted rows can name an owner that exists nowhere (active
					// rows' owners were checked): nothing to remove.
					it.Skip = true
					continue
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
				merged = true
				if v == nil {
					delete(obj, c.child.field)
				} else {
					obj[c.child.field] = v
				}
			}
			if date != "" {
				obj["dateLastModified"] = date // the latest of the row's and its child rows' (delta) dates
			}
			if !merged && len(fi.children) == 0 {
				it.Obj = obj
				continue
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
		if w.probs.count() > 0 {
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
