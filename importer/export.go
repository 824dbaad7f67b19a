package importer

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"registrar/oneroster/csvspec"
	"registrar/records"
	"registrar/sqlstore"
)

// ExportOptions tune an export.
type ExportOptions struct {
	// Mode is csvspec.ModeBulk (the default: active objects, status and
	// dateLastModified empty) or csvspec.ModeDelta (every object with its status and
	// dateLastModified: imports back exactly, tobedeleted objects included).
	Mode string
	// Scope returns the rows of e the caller may see, and false when the caller may
	// not read e at all. Nil exports everything (an operator at the command line).
	Scope func(e *records.Entity) (records.Predicate, bool)
	// Hidden reports fields the caller may not read.
	Hidden func(e *records.Entity, f *records.Field) bool
}

// ExportResult says what an export wrote.
type ExportResult struct {
	Files    map[string]int `json:"files"` // data rows per file written
	Rows     int            `json:"rows"`
	Students []string       `json:"-"` // the students whose records were written, sorted
}

// ExportDir writes a OneRoster 1.2 CSV package into dir, which must be empty or not
// exist. Files with no rows are left out and declared absent.
func (im *Importer) ExportDir(ctx context.Context, dir string, opt ExportOptions) (*ExportResult, error) {
	if opt.Mode == "" {
		opt.Mode = csvspec.ModeBulk
	}
	if opt.Mode != csvspec.ModeBulk && opt.Mode != csvspec.ModeDelta {
		return nil, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("export mode %s: want bulk or delta", quote(opt.Mode))}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	} else if len(ents) > 0 {
		return nil, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("export: %s is not empty", dir)}
	}
	ex := &exporter{im: im, dir: dir, opt: opt, res: &ExportResult{Files: map[string]int{}}, students: map[string]struct{}{}}
	err := im.store.Snapshot(ctx, func(sn *sqlstore.Snapshot) error {
		for _, fi := range files {
			if fi.entity != nil {
				if err := ex.entity(ctx, sn, fi); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		ex.closeAll()
		return nil, err
	}
	m := csvspec.Manifest{Modes: map[string]string{}, SourceSystemName: "registrar", SourceSystemCode: "registrar"}
	for name, n := range ex.res.Files {
		if n > 0 {
			m.Modes[name] = opt.Mode
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, csvspec.ManifestFileName), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if err := csvspec.WriteManifest(f, m); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	for name, n := range ex.res.Files {
		ex.res.Rows += n
		if n == 0 {
			delete(ex.res.Files, name)
		}
	}
	for s := range ex.students {
		ex.res.Students = append(ex.res.Students, s)
	}
	sort.Strings(ex.res.Students)
	return ex.res, nil
}

// ExportZip writes the package as a zip archive to w, through a folder it creates
// (and removes) under tmp.
func (im *Importer) ExportZip(ctx context.Context, w io.Writer, tmp string, opt ExportOptions) (*ExportResult, error) {
	dir, err := os.MkdirTemp(tmp, "export-")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(dir)
	res, err := im.ExportDir(ctx, filepath.Join(dir, "package"), opt)
	if err != nil {
		return nil, err
	}
	return res, zipDir(w, filepath.Join(dir, "package"))
}

func zipDir(w io.Writer, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	zw := zip.NewWriter(w)
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		zf, err := zw.CreateHeader(&zip.FileHeader{Name: e.Name(), Method: zip.Deflate})
		if err == nil {
			_, err = io.Copy(zf, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

type exporter struct {
	im       *Importer
	dir      string
	opt      ExportOptions
	res      *ExportResult
	students map[string]struct{}
	open     []*os.File
}

func (ex *exporter) closeAll() {
	for _, f := range ex.open {
		f.Close()
	}
	ex.open = nil
}

// out is one file being written.
type out struct {
	fi   *fileInfo
	f    *os.File
	cw   *csv.Writer
	rec  []string
	meta []string
	rows int
}

func (ex *exporter) create(fi *fileInfo, meta []string) (*out, error) {
	f, err := os.OpenFile(filepath.Join(ex.dir, fi.spec.FileName), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	ex.open = append(ex.open, f)
	o := &out{fi: fi, f: f, cw: csv.NewWriter(f), meta: meta}
	o.cw.UseCRLF = true
	hdr := fi.spec.Header()
	for _, k := range meta {
		hdr = append(hdr, csvspec.MetadataPrefix+k)
	}
	o.rec = make([]string, len(hdr))
	if err := o.cw.Write(hdr); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return o, nil
}

func (o *out) write() error {
	o.rows++
	err := o.cw.Write(o.rec)
	clear(o.rec)
	return err
}

// finish flushes and closes the file; an empty file is removed.
func (ex *exporter) finish(o *out) error {
	o.cw.Flush()
	err := errors.Join(o.cw.Error(), o.f.Close())
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	ex.res.Files[o.fi.spec.Name] = o.rows
	if o.rows == 0 {
		return os.Remove(o.f.Name())
	}
	return nil
}

// entity writes the objects of one entity file and the child files that hold parts
// of them, in one pass.
func (ex *exporter) entity(ctx context.Context, sn *sqlstore.Snapshot, fi *fileInfo) error {
	e := fi.ent
	scope := records.Predicate{}
	if ex.opt.Scope != nil {
		var ok bool
		if scope, ok = ex.opt.Scope(e); !ok {
			return nil
		}
	}
	meta, err := sn.MetadataKeys(ctx, e, scope)
	if err != nil {
		return err
	}
	main, err := ex.create(fi, meta)
	if err != nil {
		return err
	}
	kids := make([]*out, len(fi.children))
	for i, c := range fi.children {
		if kids[i], err = ex.create(c, nil); err != nil {
			return err
		}
	}
	q := sqlstore.Query{Entity: e, Scope: scope}
	if ex.opt.Hidden != nil {
		q.Hidden = func(f *records.Field) bool { return ex.opt.Hidden(e, f) }
	}
	n := 0
	err = sn.Each(ctx, q, func(obj records.Object) error {
		if n++; n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if ex.opt.Mode == csvspec.ModeBulk && obj.Str("status") == records.StatusToBeDeleted {
			return nil
		}
		if err := ex.row(main, obj); err != nil {
			return err
		}
		for i, c := range fi.children {
			if err := ex.childRows(kids[i], c, obj); err != nil {
				return err
			}
		}
		if s := sqlstore.StudentOf(e, obj); s != "" {
			ex.students[s] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, o := range append([]*out{main}, kids...) {
		if err := ex.finish(o); err != nil {
			return err
		}
	}
	ex.open = nil
	return nil
}

func (ex *exporter) lifecycle(o *out, obj records.Object) {
	o.rec[0] = obj.ID()
	if ex.opt.Mode == csvspec.ModeDelta {
		o.rec[1], o.rec[2] = obj.Str("status"), obj.Str("dateLastModified")
	}
}

// row writes one object as a row of its entity file.
func (ex *exporter) row(o *out, obj records.Object) error {
	fi := o.fi
	ex.lifecycle(o, obj)
	for j := 3; j < len(fi.spec.Columns); j++ {
		field := fi.colField[fi.spec.Columns[j].Name]
		if field == "" {
			continue
		}
		v, ok := obj[field]
		if !ok {
			continue
		}
		s, err := cell(fi.convs[j], v)
		if err != nil {
			return fmt.Errorf("export %s %s.%s: %w", fi.ent.Name, obj.ID(), field, err)
		}
		o.rec[j] = s
	}
	if len(o.meta) > 0 {
		if raw, ok := obj["metadata"].(json.RawMessage); ok {
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) == nil {
				for i, k := range o.meta {
					if v, ok := m[k]; ok {
						var s string
						if json.Unmarshal(v, &s) != nil {
							s = string(compact(v)) // not a string: its JSON text
						}
						o.rec[len(fi.spec.Columns)+i] = s
					}
				}
			}
		}
	}
	return o.write()
}

// cell turns a field value into its CSV text.
func cell(c conv, v any) (string, error) {
	switch c {
	case cList:
		l, _ := v.([]string)
		return strings.Join(l, ","), nil
	case cFloat:
		f, _ := v.(float64)
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	case cDateTime:
		s, _ := v.(string)
		if t, err := records.ParseDateTime(s); err == nil {
			return t.Format("2006-01-02"), nil
		}
		return s, nil
	case cUserIDs, cScaleValues:
		raw, _ := v.(json.RawMessage)
		lk, rk := "type", "identifier"
		if c == cScaleValues {
			lk, rk = "itemValueLHS", "itemValueRHS"
		}
		var items []map[string]any
		if err := json.Unmarshal(raw, &items); err != nil {
			return "", errors.New("is not a list of objects")
		}
		parts := make([]string, len(items))
		for i, it := range items {
			parts[i] = "{" + fmt.Sprint(it[lk]) + ":" + fmt.Sprint(it[rk]) + "}"
		}
		return strings.Join(parts, ","), nil
	case cJSONStrings:
		raw, _ := v.(json.RawMessage)
		var l []string
		if err := json.Unmarshal(raw, &l); err != nil {
			return "", errors.New("is not a list of strings")
		}
		return strings.Join(l, ","), nil
	case cPassword, cNotKept:
		return "", nil
	}
	s, _ := v.(string)
	return s, nil
}

// childRows writes the rows of a child file that hold the parts of obj's field.
func (ex *exporter) childRows(o *out, c *fileInfo, obj records.Object) error {
	cf := c.child
	es, err := childEntries(cf, obj[cf.field])
	if err != nil {
		return fmt.Errorf("export %s %s: %w", c.ent.Name, obj.ID(), err)
	}
	set := func(col, v string) {
		if j := c.spec.Index(col); j >= 0 {
			o.rec[j] = v
		}
	}
	for _, en := range es {
		o.rec[0] = childID(c.spec.Name, obj.ID(), en.key)
		if ex.opt.Mode == csvspec.ModeDelta {
			o.rec[1], o.rec[2] = records.StatusActive, obj.Str("dateLastModified")
		}
		set(cf.ownerCol, obj.ID())
		switch cf.kind {
		case kRoles:
			var r records.Role
			if err := json.Unmarshal(en.item, &r); err != nil {
				return err
			}
			set("roleType", r.RoleType)
			set("role", r.Role)
			set("orgSourcedId", r.Org)
			set("userProfileSourcedId", r.UserProfile)
			set("beginDate", r.BeginDate)
			set("endDate", r.EndDate)
		case kProfiles:
			var p profile
			if err := json.Unmarshal(en.item, &p); err != nil {
				return err
			}
			o.rec[0] = p.ProfileID
			set("profileType", p.ProfileType)
			set("vendorId", p.VendorID)
			set("applicationId", p.ApplicationID)
			set("description", p.Description)
			if len(p.Credentials) > 0 {
				set("credentialType", p.Credentials[0].Type)
				set("username", p.Credentials[0].Username)
			}
		case kRefs:
			set("resourceSourcedId", en.key)
		case kLineItemLOs, kResultLOs:
			var lo loItem
			if err := json.Unmarshal(en.item, &lo); err != nil {
				return err
			}
			set("source", lo.Source)
			set("learningObjectiveId", lo.ID)
			if lo.Score != nil {
				set("score", strconv.FormatFloat(*lo.Score, 'f', -1, 64))
			}
			set("textScore", lo.TextScore)
		case kSingleRef:
			var s string
			if err := json.Unmarshal(en.item, &s); err != nil {
				return err
			}
			set("scoreScaleSourcedId", s)
		}
		if err := o.write(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	return nil
}

// childID derives a stable sourcedId for a row registrar does not keep as an object
// (a role, a resource link): the same owner and entry always get the same id.
func childID(file, owner, key string) string {
	h := sha256.Sum256([]byte("registrar/csv/v1\x00" + file + "\x00" + owner + "\x00" + key))
	h[6] = h[6]&0x0f | 0x80 // UUID version 8 (custom)
	h[8] = h[8]&0x3f | 0x80 // RFC 9562 variant
	s := hex.EncodeToString(h[:16])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}
