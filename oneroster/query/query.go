package query

import (
	"strconv"
	"strings"
)

// Cmp is a comparison operator of the OneRoster filter grammar.
type Cmp string

// The comparison operators of the OneRoster filter grammar.
const (
	Eq       Cmp = "="  // Eq is "equal to".
	Ne       Cmp = "!=" // Ne is "not equal to".
	Gt       Cmp = ">"  // Gt is "greater than".
	Ge       Cmp = ">=" // Ge is "greater than or equal to".
	Lt       Cmp = "<"  // Lt is "less than".
	Le       Cmp = "<=" // Le is "less than or equal to".
	Contains Cmp = "~"  // Contains is "contains the value as a substring".
)

// Logical operators used in Expr.Op.
const (
	And = "AND" // And is the Op of a conjunction node.
	Or  = "OR"  // Or is the Op of a disjunction node.
)

// OneRoster imsx_codeMinorFieldValue values carried by Error.CodeMinor.
const (
	CodeInvalidFilterField    = "invalid_filter_field"    // CodeInvalidFilterField reports a bad field name in filter.
	CodeInvalidSortField      = "invalid_sort_field"      // CodeInvalidSortField reports a bad field name in sort (a OneRoster 1.1 value).
	CodeInvalidSelectionField = "invalid_selection_field" // CodeInvalidSelectionField reports a bad field name in fields.
	CodeInvalidData           = "invaliddata"             // CodeInvalidData reports any other malformed parameter.
)

// Limits enforced by the parsers.
const (
	MaxFilterLen  = 8 << 10 // MaxFilterLen is the longest filter accepted, in bytes.
	MaxDepth      = 32      // MaxDepth is the deepest parenthesis nesting accepted in a filter.
	MaxPredicates = 64      // MaxPredicates is the most predicates accepted in a filter.
	MaxListLen    = 8 << 10 // MaxListLen is the longest sort or fields value accepted, in bytes.
	DefaultLimit  = 100     // DefaultLimit is the page size used when limit is absent.
)

// maxInt32 bounds limit and offset, which the OpenAPI documents declare as int32.
const maxInt32 = 1<<31 - 1

// Expr is a node of a parsed filter: either a predicate (Field non-empty) or a logical node (Op "AND"/"OR" with Left and Right).
type Expr struct {
	Op          string // "AND" or "OR" for logical nodes; "" for a predicate
	Left, Right *Expr
	Field       string // dotted field name as written, e.g. "familyName" or "course.sourcedId"
	Cmp         Cmp
	Value       string // the unquoted value ('' inside a quoted value is unescaped to ')
}

// Walk calls fn for each predicate (leaf) of e, left to right, and stops at the first error fn returns.
func (e *Expr) Walk(fn func(*Expr) error) error {
	if e == nil {
		return nil
	}
	if e.Op == "" {
		return fn(e)
	}
	if err := e.Left.Walk(fn); err != nil {
		return err
	}
	return e.Right.Walk(fn)
}

// Equal reports whether e and o are the same tree (nil equals only nil).
func (e *Expr) Equal(o *Expr) bool {
	if e == nil || o == nil {
		return e == o
	}
	return e.Op == o.Op && e.Field == o.Field && e.Cmp == o.Cmp && e.Value == o.Value &&
		e.Left.Equal(o.Left) && e.Right.Equal(o.Right)
}

// String renders e in the filter syntax with minimal parentheses; for a tree from ParseFilter, reparsing it yields an Equal tree.
func (e *Expr) String() string {
	if e == nil {
		return ""
	}
	var b strings.Builder
	e.write(&b)
	return b.String()
}

// prec is the binding strength of a node: OR < AND < predicate.
func (e *Expr) prec() int {
	switch e.Op {
	case Or:
		return 1
	case And:
		return 2
	}
	return 3
}

func (e *Expr) write(b *strings.Builder) {
	if e.Op == "" {
		b.WriteString(e.Field)
		b.WriteString(string(e.Cmp))
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(e.Value, "'", "''"))
		b.WriteByte('\'')
		return
	}
	p := e.prec()
	// Left-associative: a left child of equal strength needs no
	// parentheses, a right child of equal strength does.
	writeChild(b, e.Left, func(c int) bool { return c < p })
	b.WriteByte(' ')
	b.WriteString(e.Op)
	b.WriteByte(' ')
	writeChild(b, e.Right, func(c int) bool { return c <= p })
}

func writeChild(b *strings.Builder, c *Expr, paren func(int) bool) {
	if c == nil {
		b.WriteString("()") // not produced by ParseFilter; keeps String total
		return
	}
	if paren(c.prec()) {
		b.WriteByte('(')
		c.write(b)
		b.WriteByte(')')
		return
	}
	c.write(b)
}

// Error is a parse error of one query parameter.
type Error struct {
	Param     string // "filter", "sort", "orderBy", "fields", "limit" or "offset"
	CodeMinor string // OneRoster imsx_codeMinorFieldValue, e.g. "invalid_filter_field" or "invaliddata"
	Message   string // what is wrong, without the parameter name or position
	Pos       int    // 0-based byte offset in the parameter value, or -1 if no single position applies
}

// Error says which parameter is wrong, what is wrong, and where.
func (e *Error) Error() string {
	s := e.Param + ": " + e.Message
	if e.Pos >= 0 {
		s += " at position " + strconv.Itoa(e.Pos)
	}
	return s
}

// isIdentStart reports whether c may begin an identifier segment.
func isIdentStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// isIdentChar reports whether c may continue an identifier segment.
func isIdentChar(c byte) bool {
	return isIdentStart(c) || ('0' <= c && c <= '9')
}

// scanField reads a dotted identifier at s[i:]. It returns the end offset;
// if the text is not a valid dotted identifier it returns the offset of the
// offending byte and a message.
func scanField(s string, i int) (end int, bad int, msg string) {
	for {
		if i >= len(s) {
			return i, i, "expected a field name, found end of value"
		}
		if !isIdentStart(s[i]) {
			return i, i, "expected a field name, found " + quoteAt(s, i)
		}
		for i < len(s) && isIdentChar(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '.' {
			return i, -1, ""
		}
		i++ // past '.'
		if i >= len(s) || !isIdentStart(s[i]) {
			if i >= len(s) {
				return i, i, `expected a field name segment after "."`
			}
			return i, i, `expected a field name segment after ".", found ` + quoteAt(s, i)
		}
	}
}

// quoteAt quotes the character (or invalid byte) at s[i] for a message.
func quoteAt(s string, i int) string {
	if i >= len(s) {
		return "end of value"
	}
	n := 1
	if c := s[i]; c >= 0x80 {
		// Quote a whole UTF-8 sequence when there is one.
		for n < 4 && i+n < len(s) && s[i+n]&0xC0 == 0x80 {
			n++
		}
	}
	return strconv.Quote(s[i : i+n])
}
