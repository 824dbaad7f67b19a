package records

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on values. Long titles are kept whole up to MaxText; anything longer is
// refused with a clear error rather than silently cut.
const (
	MaxID   = 256   // sourcedId and references
	MaxText = 16384 // any string field
	MaxList = 1000  // elements of a list field
	MaxJSON = 65536 // bytes of a structured field
)

var extPattern = regexp.MustCompile(`^ext:[a-zA-Z0-9.\-_]+$`)

// ValidText checks text a request names something by (a path value, a query filter,
// a reason): UTF-8 with no control character. No stored id or name is anything else,
// and PostgreSQL's text cannot even be compared with a NUL byte or bytes that are not
// UTF-8, so such a value is refused before it reaches a query, alike on both engines.
func ValidText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains a control character")
		}
	}
	return nil
}

// ValidID checks a sourcedId: printable, no spaces at either end, at most MaxID bytes.
func ValidID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("must not be empty")
	case len(id) > MaxID:
		return fmt.Errorf("is longer than %d bytes", MaxID)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("has leading or trailing spaces")
	}
	return ValidText(id)
}

// ParseDate checks YYYY-MM-DD.
func ParseDate(s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return t, fmt.Errorf("%q is not a date (YYYY-MM-DD)", clip(s))
	}
	return t, nil
}

// ParseDateTime accepts RFC 3339 (with any offset, or a date alone as midnight UTC)
// and returns it in UTC.
func ParseDateTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date-time (RFC 3339, e.g. 2026-09-01T08:00:00Z)", clip(s))
}

// FormatDateTime is the one stored and emitted form of a date-time: UTC with milliseconds,
// so that text order is time order.
func FormatDateTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Validate checks o against e and normalises date-times. It returns every problem found.
func Validate(e *Entity, o Object) []FieldError {
	var errs []FieldError
	bad := func(f, format string, args ...any) { errs = append(errs, FieldError{f, fmt.Sprintf(format, args...)}) }
	for name := range o {
		if _, ok := e.Field(name); !ok {
			bad(name, "is not a field of %s", e.Name)
		}
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		v, present := o[f.Name]
		if !present || v == nil {
			if f.Required && !f.ReadOnly {
				bad(f.Name, "is required")
			}
			delete(o, f.Name)
			continue
		}
		if f.ReadOnly && f.Kind == KChildren {
			delete(o, f.Name)
			continue
		}
		if msg := checkValue(f, v, o); msg != "" {
			bad(f.Name, "%s", msg)
		}
	}
	if id := o.ID(); id != "" {
		if err := ValidID(id); err != nil {
			bad("sourcedId", "%v", err)
		}
	}
	// Ranges whose ends must be in order. Dates and date-times are stored in one
	// sortable text form, so text order is time order.
	for _, r := range [][2]string{{"startDate", "endDate"}, {"assignDate", "dueDate"}, {"beginDate", "endDate"}} {
		a, aok := o[r[0]].(string)
		b, bok := o[r[1]].(string)
		if aok && bok && a != "" && b != "" && a > b && len(a) == len(b) {
			bad(r[1], "is before %s", r[0])
		}
	}
	if lo, ok := o["resultValueMin"].(float64); ok {
		if hi, ok := o["resultValueMax"].(float64); ok && lo > hi {
			bad("resultValueMax", "is less than resultValueMin")
		}
	}
	return errs
}

func checkValue(f *Field, v any, o Object) string {
	// A sensitive value is never echoed back: not in an error body, not in a log line.
	q := func(s string) string {
		if f.Sensitive {
			return "the value"
		}
		return strconv.Quote(clip(s))
	}
	switch f.Kind {
	case KString, KEnum, KBool, KDate, KDateTime, KRef:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("must be a string, got %s", typeName(v))
		}
		if msg := checkText(s); msg != "" {
			return msg
		}
		switch f.Kind {
		case KString:
			if f.Required && strings.TrimSpace(s) == "" {
				return "must not be empty"
			}
		case KEnum:
			if !slices.Contains(f.Enum, s) && !(f.OpenEnum && extPattern.MatchString(s)) {
				ext := ""
				if f.OpenEnum {
					ext = ", or ext:NAME"
				}
				return fmt.Sprintf("%s is not one of %s%s", q(s), strings.Join(f.Enum, ", "), ext)
			}
		case KBool:
			if s != "true" && s != "false" {
				return fmt.Sprintf("%s is not \"true\" or \"false\"", q(s))
			}
		case KDate:
			if _, err := ParseDate(s); err != nil {
				return q(s) + " is not a date (YYYY-MM-DD)"
			}
		case KDateTime:
			t, err := ParseDateTime(s)
			if err != nil {
				return q(s) + " is not a date-time (RFC 3339, e.g. 2026-09-01T08:00:00Z)"
			}
			o[f.Name] = FormatDateTime(t)
		case KRef:
			if err := ValidID(s); err != nil {
				return "reference " + err.Error()
			}
		}
	case KFloat:
		x, ok := v.(float64)
		if !ok {
			return fmt.Sprintf("must be a number, got %s", typeName(v))
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "must be a finite number"
		}
	case KRefs, KStrings, KChildren:
		l, ok := v.([]string)
		if !ok {
			return fmt.Sprintf("must be a list, got %s", typeName(v))
		}
		if len(l) > MaxList {
			return fmt.Sprintf("has %d elements, more than %d", len(l), MaxList)
		}
		if f.Required && len(l) == 0 {
			return "must not be empty"
		}
		seen := make(map[string]bool, len(l))
		for i, s := range l {
			if f.Kind == KRefs {
				if err := ValidID(s); err != nil {
					return fmt.Sprintf("element %d: reference %v", i, err)
				}
				if seen[s] {
					return fmt.Sprintf("element %d: %q is listed twice", i, clip(s))
				}
				seen[s] = true
			} else if msg := checkText(s); msg != "" {
				return fmt.Sprintf("element %d: %s", i, msg)
			}
		}
	case KJSON:
		raw, ok := v.(json.RawMessage)
		if !ok {
			return fmt.Sprintf("must be a JSON value, got %s", typeName(v))
		}
		if len(raw) > MaxJSON {
			return fmt.Sprintf("is %d bytes, more than %d", len(raw), MaxJSON)
		}
		if !json.Valid(raw) || !utf8.Valid(raw) {
			return "is not valid JSON"
		}
	case KRoles:
		roles, ok := v.([]Role)
		if !ok {
			return fmt.Sprintf("must be a list of roles, got %s", typeName(v))
		}
		if f.Required && len(roles) == 0 {
			return "must have at least one role"
		}
		if len(roles) > MaxList {
			return fmt.Sprintf("has %d roles, more than %d", len(roles), MaxList)
		}
		for i, r := range roles {
			switch {
			case !slices.Contains(RoleTypes, r.RoleType):
				return fmt.Sprintf("role %d: roleType %q is not primary or secondary", i, clip(r.RoleType))
			case !slices.Contains(RoleNames, r.Role) && !extPattern.MatchString(r.Role):
				return fmt.Sprintf("role %d: role %q is not one of %s, or ext:NAME", i, clip(r.Role), strings.Join(RoleNames, ", "))
			case ValidID(r.Org) != nil:
				return fmt.Sprintf("role %d: org reference %v", i, ValidID(r.Org))
			}
			for _, d := range []string{r.BeginDate, r.EndDate} {
				if d != "" {
					if _, err := ParseDate(d); err != nil {
						return fmt.Sprintf("role %d: %v", i, err)
					}
				}
			}
		}
	}
	return ""
}

func checkText(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case len(s) > MaxText:
		return fmt.Sprintf("is %d bytes, longer than %d", len(s), MaxText)
	case strings.ContainsRune(s, 0):
		return "contains a NUL character"
	}
	return ""
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []string, []any:
		return "a list"
	case map[string]any:
		return "an object"
	case json.RawMessage:
		return "a JSON value"
	}
	return fmt.Sprintf("%T", v)
}

// clip shortens a value quoted in an error message. Callers never pass sensitive values.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
