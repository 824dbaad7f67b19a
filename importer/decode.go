package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"registrar/oneroster/csvspec"
	"registrar/records"
	"registrar/sqlstore"
)

// header is a file's header row matched against the binding.
type header struct {
	idx       []int // record position of each of the file's defined columns
	meta      []metaCol
	legacyRes int // users.csv: position of the old resourceSourcedIds column, or -1
	width     int
}

type metaCol struct {
	pos  int
	name string // without the metadata. prefix
}

// matchHeader checks a header row; on failure it returns a message and the column.
func matchHeader(fi *fileInfo, rec []string) (*header, string, string) {
	h := &header{legacyRes: -1, width: len(rec)}
	for i, name := range rec {
		if i == 0 {
			name = strings.TrimPrefix(name, "\uFEFF")
		}
		if name != strings.TrimSpace(name) {
			return nil, fmt.Sprintf("header column %d %s has spaces around the name", i+1, quote(name)), name
		}
	}
	idx, err := csvspec.MatchHeader(fi.spec, rec)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "csvspec: ")
		msg = strings.TrimPrefix(msg, fi.spec.FileName+" ")
		return nil, msg + " (the binding's order: " + strings.Join(fi.spec.Header(), ",") + ")", ""
	}
	h.idx = idx
	used := make([]bool, len(rec))
	for _, j := range idx {
		used[j] = true
	}
	seen := map[string]bool{}
	for j, name := range rec {
		switch {
		case used[j]:
		case strings.HasPrefix(name, csvspec.MetadataPrefix):
			n := strings.TrimPrefix(name, csvspec.MetadataPrefix)
			if n == "" || seen[n] {
				return nil, fmt.Sprintf("header column %d %s is empty or repeated", j+1, quote(name)), name
			}
			seen[n] = true
			h.meta = append(h.meta, metaCol{pos: j, name: n})
		case fi.spec.Name == "users" && name == "resourceSourcedIds":
			h.legacyRes = j
		}
	}
	return h, "", ""
}

// rowDecoder turns the records of one file into objects or staged rows, reporting
// every problem with the file, line and column.
type rowDecoder struct {
	fi    *fileInfo
	mode  string
	h     *header
	probs *problems
	// childFields are the fields of this entity file's objects filled by child files.
	childFields map[string]bool
	// per record
	rec    []string
	loc    *lines
	bad    []bool // columns (by spec position) with a problem in this record
	failed bool
}

func newRowDecoder(fi *fileInfo, mode string, h *header, probs *problems) *rowDecoder {
	d := &rowDecoder{fi: fi, mode: mode, h: h, probs: probs, childFields: map[string]bool{}, bad: make([]bool, len(fi.spec.Columns))}
	for _, c := range fi.children {
		d.childFields[c.child.field] = true
	}
	return d
}

// problem reports a problem with spec column j of the current record (-1: the row).
func (d *rowDecoder) problem(j int, format string, args ...any) {
	d.failed = true
	line, col := d.loc.line, ""
	if j >= 0 {
		d.bad[j] = true
		col = d.fi.spec.Columns[j].Name
		line = d.loc.field(d.h.idx[j])
	}
	d.probs.add(d.fi.spec.FileName, line, col, format, args...)
}

func (d *rowDecoder) get(j int) string { return d.rec[d.h.idx[j]] }

// start checks the shape of a record found at loc: field count and UTF-8. It
// reports whether the record can be decoded.
func (d *rowDecoder) start(rec []string, loc *lines) bool {
	d.rec, d.loc, d.failed = rec, loc, false
	clear(d.bad)
	if len(rec) != d.h.width {
		d.probs.add(d.fi.spec.FileName, d.loc.line, "", "the row has %d fields, the header %d", len(rec), d.h.width)
		d.failed = true
		return false
	}
	if i := badUTF8(rec); i >= 0 {
		name := ""
		for j, p := range d.h.idx {
			if p == i {
				name = d.fi.spec.Columns[j].Name
			}
		}
		for _, m := range d.h.meta {
			if m.pos == i {
				name = csvspec.MetadataPrefix + m.name
			}
		}
		d.probs.add(d.fi.spec.FileName, d.loc.field(i), name, "is not valid UTF-8 (save the file as UTF-8)")
		d.failed = true
		return false
	}
	return true
}

// lifecycle checks sourcedId, status and dateLastModified; it returns the status
// ("active" in bulk files) and the normalised dateLastModified ("" in bulk files).
func (d *rowDecoder) lifecycle() (id, status, date string) {
	id, status, date = d.get(0), d.get(1), d.get(2)
	if id == "" {
		d.problem(0, "is required")
	} else if msg := checkID(id); msg != "" {
		d.problem(0, "%s", msg)
	}
	switch d.mode {
	case csvspec.ModeBulk:
		if status != "" {
			d.problem(1, "must be empty in a bulk file (the manifest declares %s bulk)", d.fi.spec.FileName)
		}
		if date != "" {
			d.problem(2, "must be empty in a bulk file (the manifest declares %s bulk)", d.fi.spec.FileName)
		}
		return id, records.StatusActive, ""
	default:
		if status != records.StatusActive && status != records.StatusToBeDeleted {
			d.problem(1, "%s must be active or tobedeleted in a delta file", quote(status))
		}
		if t, ok := parseUTC(date); !ok {
			d.problem(2, "%s must be a UTC date-time ending in Z in a delta file (e.g. 2026-09-01T08:00:00Z)", quote(date))
		} else {
			date = records.FormatDateTime(t)
		}
		return id, status, date
	}
}

func parseUTC(v string) (time.Time, bool) {
	if !strings.HasSuffix(v, "Z") {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// checkID checks a sourcedId or a reference.
func checkID(v string) string {
	if err := records.ValidID(v); err != nil {
		return "sourcedId " + err.Error()
	}
	if strings.ContainsAny(v, ",\"") {
		return "a sourcedId must not contain a comma or a quote"
	}
	return ""
}

// checkCell checks a non-empty value against its column's type and vocabulary. The
// message quotes the value only when the column is not sensitive.
func checkCell(c csvspec.Column, v string, sensitive bool) string {
	if c.Type == csvspec.String && strings.IndexByte(v, 0) < 0 {
		return "" // free text: any UTF-8, line breaks included
	}
	q := func() string {
		if sensitive {
			return "the value"
		}
		return quote(v)
	}
	if c.Type != csvspec.String && strings.ContainsAny(v, "\r\n") {
		return q() + " contains a line break"
	}
	if strings.IndexByte(v, 0) >= 0 {
		return "contains a NUL character"
	}
	switch c.Type {
	case csvspec.Date:
		if _, err := time.Parse(time.DateOnly, v); err != nil {
			return q() + " is not a date (YYYY-MM-DD)"
		}
	case csvspec.DateTime:
		if _, ok := parseUTC(v); !ok {
			return q() + " is not a UTC date-time ending in Z (e.g. 2026-09-01T08:00:00Z)"
		}
	case csvspec.Float:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return q() + " is not a number"
		}
	case csvspec.Int:
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return q() + " is not a whole number"
		}
	case csvspec.Year:
		if len(v) != 4 || strings.Trim(v, "0123456789") != "" {
			return q() + " is not a four-digit year"
		}
	case csvspec.Bool:
		if v != "true" && v != "false" {
			return q() + ` is not "true" or "false"`
		}
	case csvspec.Enum:
		return checkToken(c, v, q)
	case csvspec.List:
		for i, item := range strings.Split(v, ",") {
			if item == "" {
				return fmt.Sprintf("item %d of the list is empty", i+1)
			}
			if len(c.Enum) > 0 {
				if msg := checkToken(c, item, func() string { return quote(item) }); msg != "" {
					return fmt.Sprintf("item %d: %s", i+1, msg)
				}
			}
		}
	case csvspec.GUID:
		return checkID(v)
	case csvspec.GUIDList:
		items := strings.Split(v, ",")
		for i, item := range items {
			if msg := checkID(item); msg != "" {
				return fmt.Sprintf("item %d: %s", i+1, msg)
			}
			if slices.Contains(items[:i], item) {
				return fmt.Sprintf("item %d: %s is listed twice", i+1, quote(item))
			}
		}
		if len(items) > records.MaxList {
			return fmt.Sprintf("lists %d items, more than %d", len(items), records.MaxList)
		}
	}
	return ""
}

func checkToken(c csvspec.Column, v string, q func() string) string {
	if slices.Contains(c.Enum, v) || c.Ext && csvspec.IsExtension(v) {
		return ""
	}
	ext := ""
	if c.Ext {
		ext = ", or ext:NAME"
	}
	return fmt.Sprintf("%s is not one of %s%s", q(), strings.Join(c.Enum, ", "), ext)
}

// Row kinds of an entity file.
const (
	rowActive   = iota // an active row (every row of a bulk file)
	rowDelete          // a delta tobedeleted row with only some values: marks the stored object
	rowDeleteAs        // a delta tobedeleted row with every required value: stored whole, as tobedeleted
)

// entity decodes the current record of an entity file into an object and its kind.
// A tobedeleted row needs only its sourcedId; when it carries every required value it
// is the whole object (so a delta export imports back exactly), otherwise it marks the
// stored object tobedeleted and its other values are checked but not used.
func (d *rowDecoder) entity() (records.Object, int) {
	fi := d.fi
	id, status, date := d.lifecycle()
	tbd := status == records.StatusToBeDeleted
	kind := rowActive
	if tbd {
		kind = rowDeleteAs
	}
	obj := records.Object{"sourcedId": id, "status": status}
	if date != "" {
		obj["dateLastModified"] = date
	}
	cols := fi.spec.Columns
	for j := 3; j < len(cols); j++ {
		c := cols[j]
		v := d.get(j)
		if v == "" {
			if c.Required && !tbd {
				d.problem(j, "is required")
			} else if c.Required {
				kind = rowDelete
			}
			continue
		}
		sens := fi.sensitive[c.Name]
		if fi.convs[j] == cPassword {
			d.problem(j, "must be empty: registrar stores no passwords (sign-in goes through the district's identity provider); the value was not read")
			continue
		}
		if msg := checkCell(c, v, sens); msg != "" {
			d.problem(j, "%s", msg)
			continue
		}
		if fi.convs[j] == cNotKept {
			continue
		}
		field := fi.colField[c.Name]
		switch fi.convs[j] {
		case cText:
			obj[field] = v
		case cList:
			obj[field] = strings.Split(v, ",")
		case cFloat:
			f, _ := strconv.ParseFloat(v, 64) // checked by checkCell
			obj[field] = f
		case cDateTime:
			t, err := records.ParseDateTime(v)
			if err != nil {
				d.problem(j, "%s is not a date", quote(v))
				continue
			}
			obj[field] = records.FormatDateTime(t)
		case cUserIDs, cScaleValues:
			js, msg := pairsJSON(v, fi.convs[j])
			if msg != "" {
				if sens {
					msg = "is not a list of {type:identifier} items"
				}
				d.problem(j, "%s", msg)
				continue
			}
			obj[field] = js
		case cJSONStrings:
			b, _ := json.Marshal(strings.Split(v, ","))
			obj[field] = json.RawMessage(b)
		}
	}
	if d.h.legacyRes >= 0 && d.rec[d.h.legacyRes] != "" {
		d.failed = true
		d.probs.add(fi.spec.FileName, d.loc.field(d.h.legacyRes), "resourceSourcedIds",
			"is not read (it was dropped from the 1.2.1 binding): list a user's resources in userResources.csv")
	}
	if len(d.h.meta) > 0 {
		m := map[string]string{}
		for _, mc := range d.h.meta {
			if v := d.rec[mc.pos]; v != "" {
				m[mc.name] = v
			}
		}
		if len(m) > 0 {
			b, _ := json.Marshal(m)
			obj["metadata"] = json.RawMessage(b)
		}
	}
	if kind == rowDelete {
		return records.Object{"sourcedId": id, "status": status, "dateLastModified": obj["dateLastModified"]}, kind
	}
	for _, fe := range records.Validate(fi.ent, obj) {
		col, ok := fi.fieldCol[fe.Field]
		if d.childFields[fe.Field] && !ok {
			continue // filled from another file: checked once merged
		}
		j := fi.spec.Index(col)
		if j >= 0 && d.bad[j] {
			continue // reported already
		}
		d.problem(j, "%s", fe.Message)
	}
	return obj, kind
}

// pairsJSON turns {a:b},{c:d} into a JSON list of objects with the conversion's keys.
func pairsJSON(v string, c conv) (json.RawMessage, string) {
	lk, rk, what := "type", "identifier", "{type:identifier}"
	if c == cScaleValues {
		lk, rk, what = "itemValueLHS", "itemValueRHS", "{value:meaning}"
	}
	var items []map[string]string
	rest := v
	for rest != "" {
		if rest[0] != '{' {
			return nil, fmt.Sprintf("is not a list of %s items separated by commas", what)
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return nil, fmt.Sprintf("item %d has no closing }", len(items)+1)
		}
		l, r, ok := strings.Cut(rest[1:end], ":")
		if !ok || l == "" || r == "" {
			return nil, fmt.Sprintf("item %d is not of the form %s", len(items)+1, what)
		}
		items = append(items, map[string]string{lk: l, rk: r})
		rest = rest[end+1:]
		if rest != "" {
			if rest[0] != ',' || len(rest) == 1 {
				return nil, fmt.Sprintf("is not a list of %s items separated by commas", what)
			}
			rest = rest[1:]
		}
	}
	b, _ := json.Marshal(items)
	return b, ""
}

// profile is a UserProfile as OneRoster 1.2 REST carries it (without passwords).
type profile struct {
	ProfileID     string       `json:"profileId"`
	ProfileType   string       `json:"profileType"`
	VendorID      string       `json:"vendorId"`
	ApplicationID string       `json:"applicationId,omitempty"`
	Description   string       `json:"description,omitempty"`
	Credentials   []credential `json:"credentials"`
}

type credential struct {
	Type     string `json:"type"`
	Username string `json:"username"`
}

// loItem is one learning objective of a line item or result.
type loItem struct {
	Source    string   `json:"source"`
	ID        string   `json:"learningObjectiveId"`
	Score     *float64 `json:"score,omitempty"`
	TextScore string   `json:"textScore,omitempty"`
}

// child decodes the current record of a child file into a staged row.
func (d *rowDecoder) child() sqlstore.ChildRow {
	fi, cf := d.fi, d.fi.child
	id, status, date := d.lifecycle()
	tbd := status == records.StatusToBeDeleted
	key := map[string]bool{cf.ownerCol: true}
	for _, k := range cf.keyCols {
		key[k] = true
	}
	vals := map[string]string{}
	cols := fi.spec.Columns
	for j := 3; j < len(cols); j++ {
		c := cols[j]
		v := d.get(j)
		if v == "" {
			if c.Required && (!tbd || key[c.Name]) {
				d.problem(j, "is required")
			}
			continue
		}
		if fi.convs[j] == cPassword {
			d.problem(j, "must be empty: registrar stores no passwords (sign-in goes through the district's identity provider); the value was not read")
			continue
		}
		if msg := checkCell(c, v, fi.sensitive[c.Name]); msg != "" {
			d.problem(j, "%s", msg)
			continue
		}
		vals[c.Name] = v
	}
	row := sqlstore.ChildRow{Kind: fi.spec.Name, Owner: vals[cf.ownerCol], Line: int64(d.loc.line), Status: status, Date: date}
	var item any
	switch cf.kind {
	case kRoles:
		row.Key = vals["orgSourcedId"] + keySep + vals["role"]
		item = records.Role{RoleType: vals["roleType"], Role: vals["role"], Org: vals["orgSourcedId"], UserProfile: vals["userProfileSourcedId"],
			BeginDate: vals["beginDate"], EndDate: vals["endDate"]}
	case kProfiles:
		row.Key = id
		item = profile{ProfileID: id, ProfileType: vals["profileType"], VendorID: vals["vendorId"], ApplicationID: vals["applicationId"],
			Description: vals["description"], Credentials: []credential{{Type: vals["credentialType"], Username: vals["username"]}}}
	case kRefs:
		row.Key = vals["resourceSourcedId"]
		item = row.Key
	case kLineItemLOs, kResultLOs:
		row.Key = vals["source"] + keySep + vals["learningObjectiveId"]
		lo := loItem{Source: vals["source"], ID: vals["learningObjectiveId"], TextScore: vals["textScore"]}
		if s, ok := vals["score"]; ok {
			f, _ := strconv.ParseFloat(s, 64) // checked by checkCell
			lo.Score = &f
		}
		item = lo
	case kSingleRef:
		item = vals["scoreScaleSourcedId"]
	}
	b, _ := json.Marshal(item) // plain types only
	row.Payload = b
	return row
}

// keySep joins the parts of a child entry's key. sourcedIds hold no control
// characters (records.ValidID), and PostgreSQL text cannot hold a NUL.
const keySep = "\x1f"

// entry is one keyed part of an owner's field (one role, one resource reference).
type entry struct {
	key  string
	item json.RawMessage
}

// childEntries splits an owner's stored field value into entries.
func childEntries(cf *childFile, v any) ([]entry, error) {
	var out []entry
	switch cf.kind {
	case kRoles:
		roles, _ := v.([]records.Role)
		for _, r := range roles {
			b, _ := json.Marshal(r)
			out = append(out, entry{r.Org + keySep + r.Role, b})
		}
	case kProfiles:
		raw, _ := v.(json.RawMessage)
		if len(raw) == 0 {
			return nil, nil
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("the stored %s is not a list", cf.field)
		}
		for _, item := range list {
			var p profile
			if err := json.Unmarshal(item, &p); err != nil || p.ProfileID == "" {
				return nil, fmt.Errorf("the stored %s holds a profile without profileId", cf.field)
			}
			out = append(out, entry{p.ProfileID, compact(item)})
		}
	case kRefs:
		refs, _ := v.([]string)
		for _, r := range refs {
			b, _ := json.Marshal(r)
			out = append(out, entry{r, b})
		}
	case kLineItemLOs, kResultLOs:
		raw, _ := v.(json.RawMessage)
		if len(raw) == 0 {
			return nil, nil
		}
		var groups []struct {
			Source  string            `json:"source"`
			IDs     []string          `json:"learningObjectiveIds"`
			Results []json.RawMessage `json:"learningObjectiveResults"`
		}
		if err := json.Unmarshal(raw, &groups); err != nil {
			return nil, fmt.Errorf("the stored %s is not a list of learning-objective groups", cf.field)
		}
		for _, g := range groups {
			if cf.kind == kLineItemLOs {
				for _, id := range g.IDs {
					b, _ := json.Marshal(loItem{Source: g.Source, ID: id})
					out = append(out, entry{g.Source + keySep + id, b})
				}
				continue
			}
			for _, r := range g.Results {
				var lo loItem
				if err := json.Unmarshal(r, &lo); err != nil {
					return nil, fmt.Errorf("the stored %s holds a result that does not decode", cf.field)
				}
				lo.Source = g.Source
				b, _ := json.Marshal(lo)
				out = append(out, entry{g.Source + keySep + lo.ID, b})
			}
		}
	case kSingleRef:
		if s, _ := v.(string); s != "" {
			b, _ := json.Marshal(s)
			out = append(out, entry{"", b})
		}
	}
	return out, nil
}

// childValue joins entries into the owner's field value; nil means absent.
func childValue(cf *childFile, es []entry) (any, error) {
	if len(es) == 0 {
		return nil, nil
	}
	switch cf.kind {
	case kRoles:
		out := make([]records.Role, len(es))
		for i, e := range es {
			if err := json.Unmarshal(e.item, &out[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	case kProfiles:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, e := range es {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(e.item)
		}
		b.WriteByte(']')
		return json.RawMessage(b.Bytes()), nil
	case kRefs:
		out := make([]string, len(es))
		for i, e := range es {
			if err := json.Unmarshal(e.item, &out[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	case kLineItemLOs, kResultLOs:
		type result struct {
			ID        string   `json:"learningObjectiveId"`
			Score     *float64 `json:"score,omitempty"`
			TextScore string   `json:"textScore,omitempty"`
		}
		type group struct {
			Source  string   `json:"source"`
			IDs     []string `json:"learningObjectiveIds,omitempty"`
			Results []result `json:"learningObjectiveResults,omitempty"`
		}
		var groups []*group
		bySource := map[string]*group{}
		for _, e := range es {
			var lo loItem
			if err := json.Unmarshal(e.item, &lo); err != nil {
				return nil, err
			}
			g := bySource[lo.Source]
			if g == nil {
				g = &group{Source: lo.Source}
				bySource[lo.Source] = g
				groups = append(groups, g)
			}
			if cf.kind == kLineItemLOs {
				g.IDs = append(g.IDs, lo.ID)
			} else {
				g.Results = append(g.Results, result{ID: lo.ID, Score: lo.Score, TextScore: lo.TextScore})
			}
		}
		b, err := json.Marshal(groups)
		return json.RawMessage(b), err
	case kSingleRef:
		var s string
		err := json.Unmarshal(es[len(es)-1].item, &s)
		return s, err
	}
	return nil, fmt.Errorf("unknown child kind %d", cf.kind)
}

// applyChild applies one staged row to an owner's entries: an active row replaces
// the entry with its key or is appended; a tobedeleted row removes it.
func applyChild(es []entry, key string, tbd bool, item []byte) []entry {
	i := slices.IndexFunc(es, func(e entry) bool { return e.key == key })
	switch {
	case tbd && i >= 0:
		return slices.Delete(es, i, i+1)
	case tbd:
		return es
	case i >= 0:
		es[i].item = item
		return es
	}
	return append(es, entry{key, item})
}

func compact(raw []byte) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}
