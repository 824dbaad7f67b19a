package query

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseFilter parses a OneRoster filter; "" yields (nil, nil), meaning no filter.
func ParseFilter(s string) (*Expr, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxFilterLen {
		return nil, filterErr(CodeInvalidData, MaxFilterLen,
			"filter is "+strconv.Itoa(len(s))+" bytes long, the maximum is "+strconv.Itoa(MaxFilterLen))
	}
	p := &parser{s: s}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	// parseOr stops only at the end of the input or at a ")" (anything
	// else is reported by next), and at depth 0 a ")" is unmatched.
	p.skipSpaces()
	if p.i < len(s) {
		return nil, filterErr(CodeInvalidData, p.i, `unmatched ")"`)
	}
	return e, nil
}

// parser is a recursive-descent parser over one filter string.
type parser struct {
	s     string
	i     int // current byte offset
	depth int // open parentheses
	preds int // predicates seen
}

func filterErr(code string, pos int, msg string) *Error {
	return &Error{Param: "filter", CodeMinor: code, Message: msg, Pos: pos}
}

func (p *parser) skipSpaces() int {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
	return p.i - start
}

// parseOr parses and-expr { sp "OR" sp and-expr }.
func (p *parser) parseOr() (*Expr, error) {
	left, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for {
		op, err := p.next(Or)
		if err != nil || op == "" {
			return left, err
		}
		right, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		left = &Expr{Op: Or, Left: left, Right: right}
	}
}

// parseAnd parses primary { sp "AND" sp primary }.
func (p *parser) parseAnd() (*Expr, error) {
	left, err := p.parsePrimary()
	if err != nil {
		return nil, err
	}
	for {
		op, err := p.next(And)
		if err != nil || op == "" {
			return left, err
		}
		right, err := p.parsePrimary()
		if err != nil {
			return nil, err
		}
		left = &Expr{Op: And, Left: left, Right: right}
	}
}

// next looks at what follows a complete operand. If it is the logical
// operator want, surrounded by spaces, next consumes it and returns it. If
// it is the end of the input, a ")", or the other logical operator, next
// consumes nothing and returns "" so that a caller up the chain handles
// it. Anything else is an error.
func (p *parser) next(want string) (string, error) {
	start := p.i
	spaces := p.skipSpaces()
	if p.i >= len(p.s) || p.s[p.i] == ')' {
		p.i = start
		return "", nil
	}
	w := p.i
	for p.i < len(p.s) && isIdentChar(p.s[p.i]) {
		p.i++
	}
	word := p.s[w:p.i]
	p.i = start
	switch {
	case word == And || word == Or:
		if spaces == 0 {
			return "", filterErr(CodeInvalidData, w, `expected a space before "`+word+`"`)
		}
		after := w + len(word)
		if after >= len(p.s) {
			return "", filterErr(CodeInvalidData, after, `expected a predicate after "`+word+`", found end of filter`)
		}
		if p.s[after] != ' ' {
			return "", filterErr(CodeInvalidData, after, `expected a space after "`+word+`"`)
		}
		if word != want {
			return "", nil
		}
		p.i = after
		return word, nil
	case strings.EqualFold(word, And) || strings.EqualFold(word, Or):
		return "", filterErr(CodeInvalidData, w,
			`logical operators are case-sensitive: write "`+strings.ToUpper(word)+`", not "`+word+`"`)
	}
	what := `"AND", "OR" or end of filter`
	if p.depth > 0 {
		what = `"AND", "OR" or ")"`
	}
	return "", filterErr(CodeInvalidData, w, "expected "+what+", found "+quoteAt(p.s, w))
}

// parsePrimary parses predicate | "(" ws or-expr ws ")".
func (p *parser) parsePrimary() (*Expr, error) {
	p.skipSpaces()
	if p.i < len(p.s) && p.s[p.i] == '(' {
		open := p.i
		if p.depth == MaxDepth {
			return nil, filterErr(CodeInvalidData, open,
				"parentheses nested deeper than "+strconv.Itoa(MaxDepth)+" levels")
		}
		p.depth++
		p.i++
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		p.skipSpaces()
		if p.i >= len(p.s) {
			return nil, filterErr(CodeInvalidData, open, `unclosed "("`)
		}
		if p.s[p.i] != ')' { // unreachable: parseOr stops only at the end or at ")"
			return nil, filterErr(CodeInvalidData, p.i, `expected ")", found `+quoteAt(p.s, p.i))
		}
		p.i++
		p.depth--
		return e, nil
	}
	return p.parsePredicate()
}

// parsePredicate parses field ws op ws value.
func (p *parser) parsePredicate() (*Expr, error) {
	start := p.i
	if start >= len(p.s) {
		return nil, filterErr(CodeInvalidData, start, "expected a predicate, found end of filter")
	}
	if p.s[start] == ')' {
		return nil, filterErr(CodeInvalidData, start, `expected a predicate, found ")"`)
	}
	p.preds++
	if p.preds > MaxPredicates {
		return nil, filterErr(CodeInvalidData, start,
			"more than "+strconv.Itoa(MaxPredicates)+" predicates")
	}

	end, bad, msg := scanField(p.s, start)
	if bad >= 0 {
		return nil, filterErr(CodeInvalidFilterField, bad, msg)
	}
	field := p.s[start:end]
	if field == And || field == Or {
		return nil, filterErr(CodeInvalidData, start, `expected a predicate, found "`+field+`"`)
	}
	p.i = end
	if p.i < len(p.s) {
		// A field ends at a space, an operator or (if the operator is
		// missing) a quote; any other character is part of a bad name.
		if c := p.s[p.i]; c != ' ' && c != '\'' && !isOpChar(c) {
			return nil, filterErr(CodeInvalidFilterField, p.i,
				"invalid character "+quoteAt(p.s, p.i)+" in field name")
		}
	}

	p.skipSpaces()
	opStart := p.i
	for p.i < len(p.s) && isOpChar(p.s[p.i]) {
		p.i++
	}
	op := p.s[opStart:p.i]
	if op == "" {
		return nil, filterErr(CodeInvalidData, opStart,
			`expected a comparison operator after "`+field+`", found `+quoteOrEnd(p.s, opStart))
	}
	cmp, ok := cmpOf(op)
	if !ok {
		return nil, filterErr(CodeInvalidData, opStart, `unknown operator "`+op+`"`)
	}

	p.skipSpaces()
	if p.i >= len(p.s) || p.s[p.i] != '\'' {
		return nil, filterErr(CodeInvalidData, p.i,
			`expected a quoted value after "`+op+`", found `+quoteOrEnd(p.s, p.i))
	}
	value, err := p.parseValue()
	if err != nil {
		return nil, err
	}
	return &Expr{Field: field, Cmp: cmp, Value: value}, nil
}

// parseValue parses a single-quoted value starting at the opening quote.
func (p *parser) parseValue() (string, error) {
	open := p.i
	p.i++
	var b strings.Builder
	chunk := p.i // start of the text not yet copied to b
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '\'':
			if p.i+1 < len(p.s) && p.s[p.i+1] == '\'' {
				b.WriteString(p.s[chunk : p.i+1]) // keep one quote
				p.i += 2
				chunk = p.i
				continue
			}
			b.WriteString(p.s[chunk:p.i])
			p.i++
			return b.String(), nil
		case c == 0:
			return "", filterErr(CodeInvalidData, p.i, "value contains a NUL byte")
		case c < utf8.RuneSelf:
			p.i++
		default:
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && n <= 1 {
				return "", filterErr(CodeInvalidData, p.i, "value is not valid UTF-8")
			}
			p.i += n
		}
	}
	return "", filterErr(CodeInvalidData, open, "unterminated quoted value")
}

func isOpChar(c byte) bool {
	return c == '=' || c == '!' || c == '<' || c == '>' || c == '~'
}

func cmpOf(op string) (Cmp, bool) {
	switch c := Cmp(op); c {
	case Eq, Ne, Gt, Ge, Lt, Le, Contains:
		return c, true
	}
	return "", false
}

func quoteOrEnd(s string, i int) string {
	if i >= len(s) {
		return "end of filter"
	}
	return quoteAt(s, i)
}
