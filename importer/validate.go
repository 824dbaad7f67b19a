package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strings"

	"registrar/oneroster/csvspec"
	"registrar/records"
)

// hkey is a 16-byte keyed hash of an id (or of an owner and key): what pass 1 keeps
// instead of the id itself, so memory stays small however many rows a package has.
type hkey [16]byte

type hashing struct{ s1, s2 maphash.Seed }

func newHashing() hashing { return hashing{maphash.MakeSeed(), maphash.MakeSeed()} }

func (h hashing) key(parts ...string) hkey {
	var a, b maphash.Hash
	a.SetSeed(h.s1)
	b.SetSeed(h.s2)
	for i, p := range parts {
		if i > 0 {
			a.WriteByte(0)
			b.WriteByte(0)
		}
		a.WriteString(p)
		b.WriteString(p)
	}
	var k hkey
	x, y := a.Sum64(), b.Sum64()
	for i := range 8 {
		k[i], k[8+i] = byte(x>>(8*i)), byte(y>>(8*i))
	}
	return k
}

// hset is a set of hashes, each with the line it came from; sorted once complete.
type hset []hent

type hent struct {
	h    hkey
	line int32
}

func (s hset) sort() {
	slices.SortFunc(s, func(a, b hent) int {
		if c := bytes.Compare(a.h[:], b.h[:]); c != 0 {
			return c
		}
		return int(a.line - b.line)
	})
}

func (s hset) has(h hkey) bool {
	_, ok := slices.BinarySearchFunc(s, h, func(e hent, t hkey) int { return bytes.Compare(e.h[:], t[:]) })
	return ok
}

// dups calls fn for every entry whose hash an earlier line has too.
func (s hset) dups(fn func(line, first int32)) {
	for i := 1; i < len(s); i++ {
		if s[i].h == s[i-1].h {
			j := i - 1
			for j > 0 && s[j-1].h == s[i].h {
				j--
			}
			fn(s[i].line, s[j].line)
		}
	}
}

// lookup is a reference that pass 1 could not resolve in the package: it is checked
// against the store in batches.
type lookup struct {
	target string // file of the referenced objects ("users")
	id     string
	owner  string // userProfiles: the user whose profile is referenced
	h      hkey
	file   string
	line   int
	col    string
}

// plan is what pass 1 hands to pass 2.
type plan struct {
	man   csvspec.Manifest
	modes map[string]string   // file name ("users") -> bulk | delta (files in the package)
	rows  map[string]int      // data rows per file
	sums  map[string][32]byte // SHA-256 of each file as read in pass 1
	refs  map[string][]string // file -> ids resolved in the store, re-checked in the transaction
	// orphans marks entity files some of whose objects only child files change (a role
	// for a user that users.csv does not list, or users.csv absent).
	orphans map[string]bool
	bytes   int64       // total size of the data files
	files   []*fileInfo // the files to read, in binding order
}

// validator runs pass 1.
type validator struct {
	imp   *Importer
	pkg   *Package
	probs *problems
	h     hashing
	plan  *plan

	ids      map[string]hset // file -> sourcedIds (all rows)
	broken   map[string]bool // files whose rows could not be read: references into them are not checked
	active   hset            // users.csv: users written active (must end with a role)
	withRole hset            // roles.csv: users given a role by an active row

	pending   []lookup
	found     map[string]map[hkey]bool       // target file -> store ids found
	storeRefs map[string]map[string]struct{} // target file -> ids found in the store
	selfRefs  map[string]bool                // files with references to themselves to check in a second read
	prog      *progress
}

// validate runs pass 1 over the package.
func (im *Importer) validate(ctx context.Context, pkg *Package, probs *problems, prog *progress) (*plan, error) {
	v := &validator{imp: im, pkg: pkg, probs: probs, h: newHashing(), ids: map[string]hset{},
		broken: map[string]bool{}, found: map[string]map[hkey]bool{}, storeRefs: map[string]map[string]struct{}{},
		selfRefs: map[string]bool{}, prog: prog}
	v.plan = &plan{modes: map[string]string{}, rows: map[string]int{}, sums: map[string][32]byte{}, refs: map[string][]string{}, orphans: map[string]bool{}}
	if !v.manifest() {
		return v.plan, nil
	}
	prog.phase("checking", v.plan.bytes, 0)
	for _, fi := range v.plan.files {
		if err := v.file(ctx, fi); err != nil {
			return nil, err
		}
	}
	if err := v.roles(ctx); err != nil {
		return nil, err
	}
	for target, ids := range v.storeRefs {
		for id := range ids {
			v.plan.refs[target] = append(v.plan.refs[target], id)
		}
		slices.Sort(v.plan.refs[target])
	}
	return v.plan, nil
}

// manifest reads manifest.csv and checks it against the package's files.
func (v *validator) manifest() bool {
	const mf = csvspec.ManifestFileName
	if !v.pkg.Has(mf) {
		v.probs.add(mf, 0, "", "the package has no manifest.csv (a OneRoster 1.2 CSV package starts with one)")
		return false
	}
	r, err := v.pkg.Open(mf)
	if err != nil {
		v.probs.add(mf, 0, "", "cannot be read: %v", err)
		return false
	}
	defer r.Close()
	m, err := csvspec.ReadManifest(io.LimitReader(r, 1<<20))
	if err != nil {
		v.probs.add(mf, 0, "", "%s", strings.TrimPrefix(err.Error(), "csvspec: "))
		return false
	}
	if m.Version != "1.2" && !strings.HasPrefix(m.Version, "1.2.") {
		v.probs.add(mf, 0, "", "oneroster.version is %s; registrar reads OneRoster 1.2 packages", quote(m.Version))
		return false
	}
	v.plan.man = m
	ok := true
	for _, name := range v.pkg.Names() {
		if name == mf || !strings.HasSuffix(strings.ToLower(name), ".csv") {
			continue
		}
		fi, known := fileNamed[name]
		switch {
		case !known:
			v.probs.add(name, 0, "", "is not a file of the OneRoster 1.2 CSV binding (names are case-sensitive, e.g. academicSessions.csv)")
			ok = false
		case m.Mode(fi.spec.Name) == csvspec.ModeAbsent:
			v.probs.add(mf, 0, "", "%s is %s but the package holds %s", fi.spec.ManifestKey, csvspec.ModeAbsent, name)
			ok = false
		}
	}
	for _, fi := range files {
		mode := m.Mode(fi.spec.Name)
		if mode == csvspec.ModeAbsent {
			continue
		}
		if !v.pkg.Has(fi.spec.FileName) {
			v.probs.add(mf, 0, "", "%s is %s but the package has no %s", fi.spec.ManifestKey, mode, fi.spec.FileName)
			ok = false
			continue
		}
		if fi.child != nil && mode == csvspec.ModeBulk && m.Mode(fi.child.owner) != csvspec.ModeBulk {
			v.probs.add(mf, 0, "", "%s is bulk but file.%s is %s: %s fills part of each %s, so a bulk %s needs a bulk %s.csv",
				fi.spec.ManifestKey, fi.child.owner, m.Mode(fi.child.owner), fi.spec.FileName, fi.ent.Name, fi.spec.FileName, fi.child.owner)
			ok = false
			continue
		}
		v.plan.modes[fi.spec.Name] = mode
		v.plan.files = append(v.plan.files, fi)
		v.plan.bytes += v.pkg.Size(fi.spec.FileName)
	}
	return ok
}

func (v *validator) mode(file string) string {
	if m, ok := v.plan.modes[file]; ok {
		return m
	}
	return csvspec.ModeAbsent
}

// file checks one data file.
func (v *validator) file(ctx context.Context, fi *fileInfo) error {
	name := fi.spec.FileName
	r, err := v.pkg.Open(name)
	if err != nil {
		v.probs.add(name, 0, "", "cannot be read: %v", err)
		v.broken[fi.spec.Name] = true
		return nil
	}
	defer r.Close()
	sum := sha256.New()
	rd := newCSVReader(io.TeeReader(r, sum), name)
	v.prog.startFile(name, rd.cnt)
	rec, err := rd.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			v.probs.add(name, 1, "", "is empty: a file needs a header row (and the manifest should declare an empty file absent)")
		} else {
			v.readError(name, err)
		}
		v.broken[fi.spec.Name] = true
		return nil
	}
	h, msg, col := matchHeader(fi, rec)
	if h == nil {
		v.probs.add(name, 1, col, "%s", msg)
		v.broken[fi.spec.Name] = true
		return nil
	}
	rows, ids, keys, err := v.rows(ctx, fi, rd, h)
	if err != nil {
		return err
	}
	if rows == 0 && !v.broken[fi.spec.Name] {
		v.probs.add(name, 0, "", "has a header but no rows: the manifest should declare it absent")
	}
	v.plan.rows[fi.spec.Name] = rows
	var s [32]byte
	copy(s[:], sum.Sum(nil))
	v.plan.sums[fi.spec.Name] = s
	ids.sort()
	ids.dups(func(line, first int32) {
		v.probs.add(name, int(line), "sourcedId", "repeats the sourcedId of line %d", first)
	})
	v.ids[fi.spec.Name] = ids
	if fi.child != nil {
		keys.sort()
		keys.dups(func(line, first int32) { v.probs.add(name, int(line), "", "%s", dupChildMessage(fi, first)) })
	}
	if v.selfRefs[fi.spec.Name] && !v.broken[fi.spec.Name] {
		if err := v.selfRefPass(ctx, fi, h); err != nil {
			return err
		}
	}
	return v.flush(ctx)
}

func dupChildMessage(fi *fileInfo, first int32) string {
	switch fi.child.kind {
	case kRoles:
		return fmt.Sprintf("gives the same user the same role at the same org as line %d (registrar keeps one role per user, org and role)", first)
	case kProfiles:
		return fmt.Sprintf("repeats the userProfile of line %d", first)
	case kRefs:
		return fmt.Sprintf("links the same %s and resource as line %d", fi.ent.Name, first)
	case kSingleRef:
		return fmt.Sprintf("gives the same %s a second score scale (line %d gives the first; registrar keeps one)", fi.ent.Name, first)
	}
	return fmt.Sprintf("repeats the learning objective of line %d for the same %s", first, fi.ent.Name)
}

func (v *validator) readError(name string, err error) {
	var se *errSyntax
	if errors.As(err, &se) {
		v.probs.add(name, se.line, "", "%s; the rest of the file was not read", se.msg)
		return
	}
	v.probs.add(name, 0, "", "cannot be read: %v", err)
}

// rowRefs returns the references of the current row that are not to the file itself,
// and whether it has references to the file itself (checked in a second read, once
// all the file's ids are known).
func rowRefs(d *rowDecoder, fi *fileInfo) (refs []foundRef, self bool) {
	for j, c := range fi.spec.Columns {
		if j == 0 || c.Ref == "" || d.bad[j] {
			continue
		}
		val := d.get(j)
		if val == "" {
			continue
		}
		if c.Ref == fi.spec.Name {
			self = true
			continue
		}
		owner := ""
		if c.Ref == "userProfiles" {
			owner = d.get(fi.spec.Index("userSourcedId"))
		}
		for _, id := range strings.Split(val, ",") {
			refs = append(refs, foundRef{line: d.loc.field(d.h.idx[j]), col: c.Name, target: c.Ref, id: id, owner: owner})
		}
	}
	return refs, self
}

// foundRef is a reference found in a record, to check.
type foundRef struct {
	line        int
	col, target string
	id, owner   string
}

// checked is what pass 1 learned from one record.
type checked struct {
	ok      bool // the record decoded (its sourcedId counts, even if a value is wrong)
	line    int32
	id      hkey
	kind    int  // entity files: rowActive, rowDelete or rowDeleteAs
	failed  bool // a problem was reported
	owner   string
	ownerH  hkey // child files: the owner, and the owner with the key
	keyH    hkey
	deleted bool // a tobedeleted row
	refs    []foundRef
	self    bool
}

// rows reads a file's records, decodes each (every problem is reported by the
// decoder) and checks what it learned: sourcedIds, parts, references. It returns the
// number of rows and the file's id and part sets. (Decoding on more goroutines was
// measured: on two shared cores it gained nothing.)
func (v *validator) rows(ctx context.Context, fi *fileInfo, rd *csvReader, h *header) (int, hset, hset, error) {
	name := fi.spec.FileName
	d := newRowDecoder(fi, v.mode(fi.spec.Name), h, v.probs)
	var ids, keys hset
	rows := 0
	for {
		if rows&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, nil, nil, err
			}
		}
		rec, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			v.readError(name, err)
			v.broken[fi.spec.Name] = true
			break
		}
		rows++
		v.prog.row()
		if len(v.pending) >= 500 {
			if err := v.flush(ctx); err != nil {
				return 0, nil, nil, err
			}
		}
		loc := rd.locate(len(rec))
		res := v.decode(d, fi, rec, &loc)
		if !res.ok {
			continue
		}
		ids = append(ids, hent{res.id, res.line})
		if res.self {
			v.selfRefs[fi.spec.Name] = true
		}
		for _, r := range res.refs {
			v.ref(name, r.line, r.col, r.target, r.id, r.owner)
		}
		if fi.entity != nil {
			if res.kind == rowActive && fi.ent == records.User && !res.failed {
				v.active = append(v.active, hent{res.id, res.line})
			}
			continue
		}
		if res.owner != "" {
			keys = append(keys, hent{res.keyH, res.line})
			if owner := fi.child.owner; v.mode(owner) == csvspec.ModeAbsent || !v.ids[owner].has(res.ownerH) {
				v.plan.orphans[owner] = true
			}
			if !res.deleted && fi.child.kind == kRoles {
				v.withRole = append(v.withRole, hent{res.ownerH, res.line})
			}
		}
	}
	return rows, ids, keys, nil
}

// decode decodes one record of pass 1.
func (v *validator) decode(d *rowDecoder, fi *fileInfo, rec []string, loc *lines) checked {
	var res checked
	if !d.start(rec, loc) {
		return res
	}
	res.ok, res.line, res.id = true, int32(loc.line), v.h.key(d.get(0))
	if fi.entity != nil {
		_, res.kind = d.entity()
		if res.kind != rowDelete {
			res.refs, res.self = rowRefs(d, fi)
		}
		res.failed = d.failed
		return res
	}
	row := d.child()
	res.deleted = row.Status == records.StatusToBeDeleted
	if row.Owner != "" {
		res.owner, res.ownerH, res.keyH = row.Owner, v.h.key(row.Owner), v.h.key(row.Owner, row.Key)
	}
	if !res.deleted {
		res.refs, res.self = rowRefs(d, fi)
	}
	return res
}

// ref checks one reference: in the package, else (if the target file is not bulk)
// in the store, in a batch.
func (v *validator) ref(file string, line int, col, target, id, owner string) {
	if v.broken[target] {
		return
	}
	h := v.h.key(id)
	mode := v.mode(target)
	if mode != csvspec.ModeAbsent && v.ids[target].has(h) {
		return
	}
	if mode == csvspec.ModeBulk {
		v.probs.add(file, line, col, "refers to %s, which is not in %s.csv (bulk: the file holds every %s)", quote(id), target, singular(target))
		return
	}
	if v.found[target][h] {
		return
	}
	v.pending = append(v.pending, lookup{target: target, id: id, owner: owner, h: h, file: file, line: line, col: col})
}

func singular(file string) string {
	if fi, ok := fileNamed[file]; ok && fi.entity != nil {
		return fi.ent.Name
	}
	return strings.TrimSuffix(file, "s")
}

// flush resolves the pending store lookups.
func (v *validator) flush(ctx context.Context) error {
	pending := v.pending
	v.pending = nil
	byTarget := map[string][]string{}
	var owners []string
	for _, l := range pending {
		if l.target == "userProfiles" {
			owners = append(owners, l.owner)
			continue
		}
		byTarget[l.target] = append(byTarget[l.target], l.id)
	}
	exists := map[string]map[string]bool{}
	for target, ids := range byTarget {
		e := entityOf[target]
		if e == nil {
			return fmt.Errorf("importer: references to %s cannot be resolved", target)
		}
		found, err := v.imp.store.ExistingIDs(ctx, e, ids)
		if err != nil {
			return err
		}
		exists[target] = found
	}
	var profiles map[string][]string
	if len(owners) > 0 {
		var err error
		if profiles, err = v.imp.store.UserProfileIDs(ctx, owners); err != nil {
			return err
		}
	}
	for _, l := range pending {
		ok := false
		if l.target == "userProfiles" {
			ok = slices.Contains(profiles[l.owner], l.id)
		} else if ok = exists[l.target][l.id]; ok {
			if v.found[l.target] == nil {
				v.found[l.target] = map[hkey]bool{}
				v.storeRefs[l.target] = map[string]struct{}{}
			}
			v.found[l.target][l.h] = true
			v.storeRefs[l.target][l.id] = struct{}{}
		}
		if !ok {
			where := "which is not in the store (and " + l.target + ".csv is not in the package)"
			if v.mode(l.target) != csvspec.ModeAbsent {
				where = "which is neither in " + l.target + ".csv nor in the store"
			}
			if l.target == "userProfiles" {
				v.probs.add(l.file, l.line, l.col, "refers to userProfile %s, which is neither in userProfiles.csv nor among the stored profiles of user %s", quote(l.id), quote(l.owner))
				continue
			}
			v.probs.add(l.file, l.line, l.col, "refers to %s %s, %s", singular(l.target), quote(l.id), where)
		}
	}
	return nil
}

// selfRefPass reads a file a second time to check its references to itself (a
// parent org, a user's agents) now that all its ids are known.
func (v *validator) selfRefPass(ctx context.Context, fi *fileInfo, h *header) error {
	r, err := v.pkg.Open(fi.spec.FileName)
	if err != nil {
		return fmt.Errorf("importer: reopen %s: %w", fi.spec.FileName, err)
	}
	defer r.Close()
	rd := newCSVReader(r, fi.spec.FileName)
	if _, err := rd.next(); err != nil {
		return fmt.Errorf("importer: reread %s: %w", fi.spec.FileName, err)
	}
	var cols []int
	for j, c := range fi.spec.Columns {
		if j > 0 && c.Ref == fi.spec.Name {
			cols = append(cols, j)
		}
	}
	statusAt := h.idx[1]
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if len(v.pending) >= 500 {
			if err := v.flush(ctx); err != nil {
				return err
			}
		}
		rec, err := rd.next()
		if err != nil {
			return nil // EOF, or a syntax error pass 1 reported
		}
		if len(rec) != h.width {
			continue
		}
		tbd := rec[statusAt] == records.StatusToBeDeleted
		if tbd && !complete(fi, h, rec) {
			continue
		}
		for _, j := range cols {
			val := rec[h.idx[j]]
			if val == "" || checkCell(fi.spec.Columns[j], val, false) != "" {
				continue
			}
			for _, id := range strings.Split(val, ",") {
				if !v.ids[fi.spec.Name].has(v.h.key(id)) {
					v.ref(fi.spec.FileName, rd.fieldLine(h.idx[j]), fi.spec.Columns[j].Name, fi.spec.Name, id, "")
				}
			}
		}
	}
}

// roles checks that every user written active ends with at least one role: from
// roles.csv, or (when roles.csv is not bulk) already stored.
func (v *validator) roles(ctx context.Context) error {
	if v.mode("users") == csvspec.ModeAbsent || v.broken["users"] || v.broken["roles"] {
		return nil
	}
	v.withRole.sort()
	var lines []int32
	for _, u := range v.active {
		if !v.withRole.has(u.h) {
			lines = append(lines, u.line)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	if v.mode("roles") == csvspec.ModeBulk {
		for _, l := range lines {
			v.probs.add("users.csv", int(l), "sourcedId", "the user has no role: roles.csv (bulk) gives it none")
		}
		return nil
	}
	// Read the ids of those users again, and look for them in the store.
	slices.Sort(lines)
	r, err := v.pkg.Open("users.csv")
	if err != nil {
		return fmt.Errorf("importer: reopen users.csv: %w", err)
	}
	defer r.Close()
	rd := newCSVReader(r, "users.csv")
	if _, err := rd.next(); err != nil {
		return fmt.Errorf("importer: reread users.csv: %w", err)
	}
	type want struct {
		id   string
		line int
	}
	var ws []want
	for len(lines) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, err := rd.next()
		if err != nil {
			break
		}
		if int32(rd.line) == lines[0] {
			ws = append(ws, want{rec[0], rd.line})
			lines = lines[1:]
		}
	}
	for len(ws) > 0 {
		n := min(len(ws), 500)
		ids := make([]string, n)
		for i, w := range ws[:n] {
			ids[i] = w.id
		}
		found, err := v.imp.store.ExistingIDs(ctx, records.User, ids)
		if err != nil {
			return err
		}
		for _, w := range ws[:n] {
			if !found[w.id] {
				v.probs.add("users.csv", w.line, "sourcedId", "the user is new and has no role: give it one in roles.csv")
			}
		}
		ws = ws[n:]
	}
	return nil
}

// complete reports whether a record has every required value (a tobedeleted row that
// is a whole object).
func complete(fi *fileInfo, h *header, rec []string) bool {
	for j, c := range fi.spec.Columns {
		if j >= 3 && c.Required && rec[h.idx[j]] == "" {
			return false
		}
	}
	return true
}
