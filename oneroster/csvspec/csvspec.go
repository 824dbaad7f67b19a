package csvspec

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type is the data type of a CSV column as the binding defines it.
type Type int

// Column data types.
const (
	String   Type = iota // free text; no carriage return or line feed
	Date                 // calendar date, YYYY-MM-DD
	DateTime             // ISO 8601 instant in UTC with a trailing Z
	Float                // decimal number
	Int                  // integer
	Year                 // four-digit year, e.g. 2026
	Bool                 // the tokens "true" or "false"
	Enum                 // one token from Column.Enum (or ext:... where allowed)
	List                 // comma-separated values inside one field
	GUID                 // a sourcedId, or a reference to one
	GUIDList             // comma-separated sourcedIds inside one field
)

var typeNames = [...]string{"String", "Date", "DateTime", "Float", "Int", "Year", "Bool", "Enum", "List", "GUID", "GUIDList"}

// String returns the name of the type.
func (t Type) String() string {
	if t >= 0 && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Column describes one header field of a CSV file.
type Column struct {
	Name     string   // header name, case-sensitive
	Type     Type     // data type
	Required bool     // a value must be present in every row (lifecycle columns follow CheckLifecycle instead)
	Enum     []string // allowed tokens for Enum columns and for the items of an enumerated List
	Ext      bool     // tokens of the form ext:<name> are allowed in addition to Enum
	Ref      string   // for GUID/GUIDList references: File.Name of the referenced entity, e.g. "orgs"
}

// File describes one CSV file of the binding.
type File struct {
	Name        string   // entity name, e.g. "users"
	FileName    string   // file name inside the package, e.g. "users.csv"
	Columns     []Column // header fields in the required order
	ManifestKey string   // manifest propertyName, e.g. "file.users"
}

// Header returns the header names of f in order.
func (f File) Header() []string {
	h := make([]string, len(f.Columns))
	for i, c := range f.Columns {
		h[i] = c.Name
	}
	return h
}

// Index returns the position of the named column in f, or -1.
func (f File) Index(name string) int {
	for i, c := range f.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// Column returns the named column of f.
func (f File) Column(name string) (Column, bool) {
	if i := f.Index(name); i >= 0 {
		return f.Columns[i], true
	}
	return Column{}, false
}

// HasLifecycle reports whether f starts with sourcedId, status, dateLastModified
// (every data file of the 1.2 binding does).
func (f File) HasLifecycle() bool {
	return len(f.Columns) >= 3 && f.Columns[0].Name == ColSourcedID &&
		f.Columns[1].Name == ColStatus && f.Columns[2].Name == ColDateLastModified
}

// Names of the lifecycle columns shared by all data files.
const (
	ColSourcedID        = "sourcedId"        // primary key of a row
	ColStatus           = "status"           // active or tobedeleted (delta only)
	ColDateLastModified = "dateLastModified" // DateTime of last change (delta only)
)

// Processing modes a manifest can declare for a file.
const (
	ModeBulk   = "bulk"   // the file replaces all records of its type
	ModeDelta  = "delta"  // the file carries changes only
	ModeAbsent = "absent" // the file is not in the package
)

// Status tokens allowed in the status column of delta files.
var StatusValues = []string{"active", "tobedeleted"}

// ExtensionPrefix starts vocabulary extension tokens, e.g. "ext:homeschool".
const ExtensionPrefix = "ext:"

// MetadataPrefix starts extension column names appended after the defined columns.
const MetadataPrefix = "metadata."

// CheckLifecycle applies the bulk/delta rule to one row's status and
// dateLastModified values: in bulk files both must be empty; in delta files
// status must be "active" or "tobedeleted" and dateLastModified a UTC DateTime.
func CheckLifecycle(mode, status, dateLastModified string) error {
	switch mode {
	case ModeBulk:
		if status != "" || dateLastModified != "" {
			return errors.New("csvspec: status and dateLastModified must be empty in a bulk file")
		}
		return nil
	case ModeDelta:
		if status != "active" && status != "tobedeleted" {
			return fmt.Errorf("csvspec: status %q in a delta file must be active or tobedeleted", status)
		}
		if err := checkDateTime(dateLastModified); err != nil {
			return fmt.Errorf("csvspec: dateLastModified in a delta file: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("csvspec: mode %q has no rows", mode)
	}
}

// Validate checks one field value against the column's type, required flag
// and vocabulary. Lifecycle columns (status, dateLastModified) are checked by
// CheckLifecycle, not here; for them Validate only checks the shape of a
// non-empty value.
func (c Column) Validate(v string) error {
	if v == "" {
		if c.Required {
			return fmt.Errorf("csvspec: %s is required", c.Name)
		}
		return nil
	}
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("csvspec: %s contains a line break", c.Name)
	}
	var err error
	switch c.Type {
	case String:
	case Date:
		_, err = time.Parse(time.DateOnly, v)
	case DateTime:
		err = checkDateTime(v)
	case Float:
		var f float64
		f, err = strconv.ParseFloat(v, 64)
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			err = errors.New("not a finite number")
		}
	case Int:
		_, err = strconv.ParseInt(v, 10, 64)
	case Year:
		if len(v) != 4 || strings.Trim(v, "0123456789") != "" {
			err = errors.New("not a four-digit year")
		}
	case Bool:
		if v != "true" && v != "false" {
			err = errors.New(`want "true" or "false"`)
		}
	case Enum:
		err = c.checkToken(v)
	case List:
		if len(c.Enum) > 0 {
			for _, item := range strings.Split(v, ",") {
				if err = c.checkToken(item); err != nil {
					break
				}
			}
		}
	case GUID:
		err = checkGUID(v)
	case GUIDList:
		for _, item := range strings.Split(v, ",") {
			if err = checkGUID(item); err != nil {
				break
			}
		}
	default:
		err = fmt.Errorf("unknown type %v", c.Type)
	}
	if err != nil {
		return fmt.Errorf("csvspec: %s %q: %w", c.Name, v, err)
	}
	return nil
}

func (c Column) checkToken(v string) error {
	for _, e := range c.Enum {
		if v == e {
			return nil
		}
	}
	if c.Ext && IsExtension(v) {
		return nil
	}
	if c.Ext {
		return fmt.Errorf("not one of %s or ext:<name>", strings.Join(c.Enum, "|"))
	}
	return fmt.Errorf("not one of %s", strings.Join(c.Enum, "|"))
}

// IsExtension reports whether v is a vocabulary extension token
// (ext: followed by letters, digits, '.', '-' or '_').
func IsExtension(v string) bool {
	rest, ok := strings.CutPrefix(v, ExtensionPrefix)
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func checkGUID(v string) error {
	if v == "" {
		return errors.New("empty sourcedId")
	}
	if strings.TrimSpace(v) != v {
		return errors.New("sourcedId has surrounding spaces")
	}
	if strings.ContainsAny(v, ",\"\r\n") {
		return errors.New("sourcedId contains a comma, quote or line break")
	}
	return nil
}

func checkDateTime(v string) error {
	if !strings.HasSuffix(v, "Z") {
		return fmt.Errorf("%q is not a UTC DateTime ending in Z", v)
	}
	if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
		return fmt.Errorf("%q is not an ISO 8601 DateTime: %w", v, err)
	}
	return nil
}

// SplitList splits a List or GUIDList field into its items; an empty field
// yields no items.
func SplitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// JoinList joins items into one List or GUIDList field value.
func JoinList(items []string) string { return strings.Join(items, ",") }

// MatchHeader maps a CSV header row onto f. It returns, for every column of
// f, the index of that column in header (never -1 on success). The header
// must hold the defined columns in order, optionally followed by metadata.*
// extension columns. The variants noted in the package documentation are
// accepted: an extra users.csv resourceSourcedIds column is skipped, and
// lineItems.csv gradingPeriodSourcedId stands for academicSessionSourcedId.
// A leading UTF-8 byte order mark is ignored.
func MatchHeader(f File, header []string) ([]int, error) {
	if len(header) > 0 && strings.HasPrefix(header[0], "\uFEFF") {
		header = append([]string{strings.TrimPrefix(header[0], "\uFEFF")}, header[1:]...)
	}
	idx := make([]int, len(f.Columns))
	j := 0
	for i, c := range f.Columns {
		if f.Name == "users" && j < len(header) && header[j] == legacyUsersResourceSourcedIDs && c.Name != legacyUsersResourceSourcedIDs {
			j++
		}
		if j >= len(header) {
			return nil, fmt.Errorf("csvspec: %s header ends before column %d %q", f.FileName, i+1, c.Name)
		}
		got := header[j]
		if got != c.Name && !(f.Name == "lineItems" && c.Name == "academicSessionSourcedId" && got == legacyLineItemsGradingPeriod) {
			return nil, fmt.Errorf("csvspec: %s header column %d is %q, want %q", f.FileName, j+1, got, c.Name)
		}
		idx[i] = j
		j++
	}
	for ; j < len(header); j++ {
		if !strings.HasPrefix(header[j], MetadataPrefix) {
			return nil, fmt.Errorf("csvspec: %s header column %d %q is neither defined nor a metadata.* extension", f.FileName, j+1, header[j])
		}
	}
	return idx, nil
}

const (
	legacyUsersResourceSourcedIDs = "resourceSourcedIds"
	legacyLineItemsGradingPeriod  = "gradingPeriodSourcedId"
)
