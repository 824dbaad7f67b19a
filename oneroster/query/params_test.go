package query

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseSort(t *testing.T) {
	tests := []struct {
		name          string
		sort, orderBy string
		want          *Sort
	}{
		{"no sort means no sort", "", "", nil},
		{"no sort with a valid orderBy means no sort", "", "desc", nil},
		{"one field sorts ascending by default", "familyName", "", &Sort{Fields: []string{"familyName"}}},
		{"asc sorts ascending", "familyName", "asc", &Sort{Fields: []string{"familyName"}}},
		{"desc sorts descending", "familyName", "desc", &Sort{Fields: []string{"familyName"}, Desc: true}},
		{"a dotted field is kept", "course.sourcedId", "", &Sort{Fields: []string{"course.sourcedId"}}},
		{"a list keeps its order", "familyName,givenName", "", &Sort{Fields: []string{"familyName", "givenName"}}},
		{"entries are trimmed", " familyName ,\tgivenName ", "", &Sort{Fields: []string{"familyName", "givenName"}}},
		{"duplicates keep the first", "b,a,b", "", &Sort{Fields: []string{"b", "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSort(tt.sort, tt.orderBy)
			if err != nil {
				t.Fatalf("ParseSort(%q, %q) error = %v, want nil", tt.sort, tt.orderBy, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseSort(%q, %q) = %+v, want %+v", tt.sort, tt.orderBy, got, tt.want)
			}
		})
	}
}

func TestParseSortRejectsBadInput(t *testing.T) {
	tests := []struct {
		name          string
		sort, orderBy string
		param, code   string
		pos           int
		msg           string
	}{
		{"a dash in a field is a bad sort field", "first-name", "", "sort", CodeInvalidSortField, 5, `invalid character "-" in field name "first-name"`},
		{"a leading minus is a bad sort field", "-familyName", "", "sort", CodeInvalidSortField, 0, `expected a field name, found "-"`},
		{"a trailing comma is an empty sort field", "familyName,", "", "sort", CodeInvalidSortField, 11, "empty field name"},
		{"two commas in a row are an empty sort field", "a,,b", "", "sort", CodeInvalidSortField, 2, "empty field name"},
		{"only spaces are an empty sort field", "  ", "", "sort", CodeInvalidSortField, 2, "empty field name"},
		{"the position counts leading spaces", "a, 1b", "", "sort", CodeInvalidSortField, 3, `found "1"`},
		{"a space inside a sort field is an error", "family Name", "", "sort", CodeInvalidSortField, 6, `invalid character " "`},
		{"a dot at the end is a bad sort field", "course.", "", "sort", CodeInvalidSortField, 7, `after "."`},
		{"an over-long sort is invalid data", strings.Repeat("a", MaxListLen+1), "", "sort", CodeInvalidData, MaxListLen, "maximum is 8192"},
		{"an uppercase orderBy is invalid data", "familyName", "ASC", "orderBy", CodeInvalidData, 0, `not "ASC"`},
		{"an unknown orderBy is invalid data", "familyName", "up", "orderBy", CodeInvalidData, 0, `orderBy must be "asc" or "desc"`},
		{"a bad orderBy is an error even without sort", "", "descending", "orderBy", CodeInvalidData, 0, `not "descending"`},
		{"a bad sort is reported before a bad orderBy", "1a", "x", "sort", CodeInvalidSortField, 0, `found "1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSort(tt.sort, tt.orderBy)
			checkErr(t, "ParseSort", got, err, tt.param, tt.code, tt.pos, tt.msg)
		})
	}
}

func TestParseFields(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"no fields means all fields", "", nil},
		{"one field is a list of one", "sourcedId", []string{"sourcedId"}},
		{"a list keeps its order", "sourcedId,familyName,givenName", []string{"sourcedId", "familyName", "givenName"}},
		{"entries are trimmed", " sourcedId , familyName\t", []string{"sourcedId", "familyName"}},
		{"duplicates keep the first", "a,b,a,c,b", []string{"a", "b", "c"}},
		{"dotted fields are allowed", "org.sourcedId", []string{"org.sourcedId"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFields(tt.in)
			if err != nil {
				t.Fatalf("ParseFields(%q) error = %v, want nil", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseFields(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFieldsRejectsBadInput(t *testing.T) {
	sel := CodeInvalidSelectionField
	tests := []struct {
		name string
		in   string
		code string
		pos  int
		msg  string
	}{
		{"an empty entry is an error", "a,,b", sel, 2, "empty field name"},
		{"a leading comma is an error", ",a", sel, 0, "empty field name"},
		{"a star is not a field", "*", sel, 0, `found "*"`},
		{"a quote is not a field", "a,'b'", sel, 2, `found "'"`},
		{"a bad character points into the entry", "sourcedId, given$Name", sel, 16, `invalid character "$"`},
		{"an empty segment is an error", "a..b", sel, 2, `after "."`},
		{"non-ASCII is an error", "naïve", sel, 2, `invalid character "ï"`},
		{"an over-long list is invalid data", strings.Repeat("a,", MaxListLen), CodeInvalidData, MaxListLen, "maximum is 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFields(tt.in)
			checkErr(t, "ParseFields", got, err, "fields", tt.code, tt.pos, tt.msg)
		})
	}
}

func TestParsePage(t *testing.T) {
	tests := []struct {
		name          string
		limit, offset string
		max           int
		want          Page
	}{
		{"nothing gives the defaults", "", "", 1000, Page{Limit: 100, Offset: 0}},
		{"a limit and offset are used", "25", "50", 1000, Page{Limit: 25, Offset: 50}},
		{"a limit of 1 is the smallest allowed", "1", "", 1000, Page{Limit: 1}},
		{"a limit equal to max is kept", "1000", "", 1000, Page{Limit: 1000}},
		{"a limit above max is clamped to max", "1001", "", 1000, Page{Limit: 1000}},
		{"a huge limit within int32 is clamped to max", "2147483647", "", 500, Page{Limit: 500}},
		{"the default limit is clamped to a smaller max", "", "", 10, Page{Limit: 10}},
		{"a max below 1 means no maximum", "5000", "", 0, Page{Limit: 5000}},
		{"leading zeros are allowed", "007", "010", 1000, Page{Limit: 7, Offset: 10}},
		{"an offset of zero is allowed", "", "0", 1000, Page{Limit: 100}},
		{"an offset past any real collection is allowed", "", "2147483647", 1000, Page{Limit: 100, Offset: 2147483647}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePage(tt.limit, tt.offset, tt.max)
			if err != nil {
				t.Fatalf("ParsePage(%q, %q, %d) error = %v, want nil", tt.limit, tt.offset, tt.max, err)
			}
			if got != tt.want {
				t.Errorf("ParsePage(%q, %q, %d) = %+v, want %+v", tt.limit, tt.offset, tt.max, got, tt.want)
			}
		})
	}
}

func TestParsePageRejectsBadInput(t *testing.T) {
	tests := []struct {
		name          string
		limit, offset string
		param         string
		pos           int
		msg           string
	}{
		{"a limit of zero is an error", "0", "", "limit", -1, `limit must be at least 1, got "0"`},
		{"a negative limit is an error", "-5", "", "limit", -1, `limit must be at least 1, got "-5"`},
		{"a negative zero limit is an error", "-0", "", "limit", -1, "at least 1"},
		{"a hugely negative limit is an error, not a wrap", "-99999999999999999999999", "", "limit", -1, "at least 1"},
		{"a non-numeric limit is an error", "ten", "", "limit", 0, `limit must be an integer, found "t"`},
		{"a fractional limit is an error", "1.5", "", "limit", 1, `found "."`},
		{"a limit with a plus sign is an error", "+5", "", "limit", 0, `found "+"`},
		{"a limit with a space is an error", " 5", "", "limit", 0, `found " "`},
		{"a limit with a trailing space is an error", "5 ", "", "limit", 1, `found " "`},
		{"a limit in hex is an error", "0x10", "", "limit", 1, `found "x"`},
		{"a lone minus is an error", "-", "", "limit", 1, "found end of value"},
		{"non-ASCII digits are an error", "١٠", "", "limit", 0, "must be an integer"},
		{"a limit above int32 overflows", "2147483648", "", "limit", -1, "out of range, the maximum is 2147483647"},
		{"a limit above int64 overflows", "99999999999999999999999999", "", "limit", -1, "out of range"},
		{"a negative offset is an error", "", "-1", "offset", -1, `offset must not be negative, got "-1"`},
		{"a signed zero offset is an error", "", "-0", "offset", -1, "without a sign"},
		{"a non-numeric offset is an error", "", "abc", "offset", 0, `offset must be an integer, found "a"`},
		{"an offset above int32 overflows", "", "2147483648", "offset", -1, "out of range"},
		{"an offset above int64 overflows", "", "18446744073709551616", "offset", -1, "out of range"},
		{"a bad limit is reported before a bad offset", "x", "y", "limit", 0, `found "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePage(tt.limit, tt.offset, 1000)
			if err == nil {
				t.Fatalf("ParsePage(%q, %q) = %+v, want an error", tt.limit, tt.offset, got)
			}
			if got != (Page{}) {
				t.Errorf("ParsePage(%q, %q) returned %+v with its error, want the zero Page", tt.limit, tt.offset, got)
			}
			checkErr(t, "ParsePage", nil, err, tt.param, CodeInvalidData, tt.pos, tt.msg)
		})
	}
}

// checkErr asserts that err is an *Error with the given fields and that
// no result came with it.
func checkErr(t *testing.T, fn string, got any, err error, param, code string, pos int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = %v, want an error", fn, got)
	}
	if v := reflect.ValueOf(got); got != nil && !v.IsNil() {
		t.Errorf("%s returned %v with its error, want nil", fn, got)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s error %T %v, want *Error", fn, err, err)
	}
	if pe.Param != param || pe.CodeMinor != code || pe.Pos != pos {
		t.Errorf("%s error Param/CodeMinor/Pos = %q/%q/%d, want %q/%q/%d (%v)",
			fn, pe.Param, pe.CodeMinor, pe.Pos, param, code, pos, err)
	}
	if !strings.Contains(pe.Message, msg) {
		t.Errorf("%s message = %q, want it to contain %q", fn, pe.Message, msg)
	}
}
