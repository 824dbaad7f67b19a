package query

import (
	"strconv"
	"strings"
)

// Sort is a parsed sort/orderBy pair: the fields to sort by, in order, and the direction for all of them.
type Sort struct {
	Fields []string // dotted field names, deduplicated, in the order given
	Desc   bool     // true for orderBy=desc
}

// ParseSort parses the sort and orderBy parameters; sort "" yields nil, and orderBy must be "asc", "desc" or "".
func ParseSort(sort, orderBy string) (*Sort, error) {
	fields, err := parseList("sort", CodeInvalidSortField, sort)
	if err != nil {
		return nil, err
	}
	var desc bool
	switch orderBy {
	case "", "asc":
	case "desc":
		desc = true
	default:
		return nil, &Error{Param: "orderBy", CodeMinor: CodeInvalidData, Pos: 0,
			Message: `orderBy must be "asc" or "desc", not ` + strconv.Quote(orderBy)}
	}
	if fields == nil {
		return nil, nil
	}
	return &Sort{Fields: fields, Desc: desc}, nil
}

// ParseFields parses the fields parameter: comma-separated field names, trimmed, deduplicated in order; "" yields nil.
func ParseFields(s string) ([]string, error) {
	return parseList("fields", CodeInvalidSelectionField, s)
}

// parseList parses a comma-separated list of dotted identifiers.
func parseList(param, code, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxListLen {
		return nil, &Error{Param: param, CodeMinor: CodeInvalidData, Pos: MaxListLen,
			Message: param + " is " + strconv.Itoa(len(s)) + " bytes long, the maximum is " + strconv.Itoa(MaxListLen)}
	}
	var out []string
	seen := make(map[string]bool)
	for off := 0; ; {
		end := strings.IndexByte(s[off:], ',')
		if end < 0 {
			end = len(s)
		} else {
			end += off
		}
		raw := s[off:end]
		name := strings.TrimLeft(raw, " \t")
		start := off + len(raw) - len(name)
		name = strings.TrimRight(name, " \t")
		if name == "" {
			return nil, &Error{Param: param, CodeMinor: code, Pos: start, Message: "empty field name"}
		}
		n, bad, msg := scanField(name, 0)
		if bad >= 0 {
			return nil, &Error{Param: param, CodeMinor: code, Pos: start + bad, Message: msg}
		}
		if n < len(name) {
			return nil, &Error{Param: param, CodeMinor: code, Pos: start + n,
				Message: "invalid character " + quoteAt(name, n) + " in field name " + strconv.Quote(name)}
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
		if end == len(s) {
			return out, nil
		}
		off = end + 1
	}
}

// Page is a parsed limit/offset pair.
type Page struct {
	Limit  int // at least 1 and at most the max given to ParsePage (if that max is at least 1)
	Offset int // at least 0; may be past the end of the collection
}

// ParsePage parses limit (default 100, clamped to max when max >= 1) and offset (default 0).
func ParsePage(limit, offset string, max int) (Page, error) {
	pg := Page{Limit: DefaultLimit}
	if limit != "" {
		n, neg, err := parseInt("limit", limit)
		if err != nil {
			return Page{}, err
		}
		if neg || n == 0 {
			return Page{}, &Error{Param: "limit", CodeMinor: CodeInvalidData, Pos: -1,
				Message: "limit must be at least 1, got " + strconv.Quote(limit)}
		}
		pg.Limit = n
	}
	if max >= 1 && pg.Limit > max {
		pg.Limit = max
	}
	if offset != "" {
		n, neg, err := parseInt("offset", offset)
		if err != nil {
			return Page{}, err
		}
		if neg {
			msg := "offset must not be negative, got " + strconv.Quote(offset)
			if n == 0 {
				msg = "offset must be written without a sign, got " + strconv.Quote(offset)
			}
			return Page{}, &Error{Param: "offset", CodeMinor: CodeInvalidData, Pos: -1, Message: msg}
		}
		pg.Offset = n
	}
	return pg, nil
}

// parseInt parses an optionally "-"-signed run of ASCII digits whose
// magnitude fits in an int32. It reports the sign separately so callers
// can word range errors; syntax errors carry the offending position.
func parseInt(param, s string) (n int, neg bool, err error) {
	i := 0
	if s[0] == '-' {
		neg = true
		i = 1
	}
	if i == len(s) {
		return 0, false, &Error{Param: param, CodeMinor: CodeInvalidData, Pos: i,
			Message: param + " must be an integer, found end of value after \"-\""}
	}
	var v int64 // int64 so that v*10 cannot wrap where int is 32 bits
	overflow := false
	for j := i; j < len(s); j++ {
		c := s[j]
		if c < '0' || c > '9' {
			return 0, false, &Error{Param: param, CodeMinor: CodeInvalidData, Pos: j,
				Message: param + " must be an integer, found " + quoteAt(s, j)}
		}
		if !overflow {
			v = v*10 + int64(c-'0')
			if v > maxInt32 {
				overflow = true
			}
		}
	}
	if overflow && !neg {
		return 0, false, &Error{Param: param, CodeMinor: CodeInvalidData, Pos: -1,
			Message: param + " " + strconv.Quote(s) + " is out of range, the maximum is " + strconv.Itoa(maxInt32)}
	}
	if overflow {
		v = maxInt32 // negative and huge: report as negative, keep n in range
	}
	return int(v), neg, nil
}
