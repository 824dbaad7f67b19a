package query

import (
	"errors"
	"strings"
	"testing"
)

// sexpr renders e as an S-expression so that tests can state the tree
// shape, e.g. (OR a='1' (AND b='2' c='3')).
func sexpr(e *Expr) string {
	if e == nil {
		return "<nil>"
	}
	if e.Op == "" {
		return e.String()
	}
	return "(" + e.Op + " " + sexpr(e.Left) + " " + sexpr(e.Right) + ")"
}

func TestParseFilterBuildsTheExpectedTree(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"equal compares with =", `familyName='Smith'`, `familyName='Smith'`},
		{"not equal compares with !=", `status!='tobedeleted'`, `status!='tobedeleted'`},
		{"greater than compares with >", `score>'90'`, `score>'90'`},
		{"greater or equal compares with >=", `dateLastModified>='2024-01-01'`, `dateLastModified>='2024-01-01'`},
		{"less than compares with <", `score<'10'`, `score<'10'`},
		{"less or equal compares with <=", `score<='10'`, `score<='10'`},
		{"contains compares with ~", `familyName~'mit'`, `familyName~'mit'`},
		{"spaces around the operator are allowed", `familyName = 'Smith'`, `familyName='Smith'`},
		{"several spaces around the operator are allowed", `familyName   !=   'Smith'`, `familyName!='Smith'`},
		{"leading and trailing spaces are ignored", `   familyName='Smith'   `, `familyName='Smith'`},
		{"a dotted field is kept as written", `course.sourcedId='c1'`, `course.sourcedId='c1'`},
		{"a deeply dotted field is kept as written", `roles.org.sourcedId='o1'`, `roles.org.sourcedId='o1'`},
		{"field names may contain underscores and digits", `_x.a1_b2='v'`, `_x.a1_b2='v'`},
		{"an empty value is allowed", `middleName=''`, `middleName=''`},
		{"spaces inside a value are kept", `title='Algebra  I '`, `title='Algebra  I '`},
		{"operators and keywords inside a value are just text", `title='a AND b OR (c='`, `title='a AND b OR (c='`},
		{"two predicates join with AND", `a='1' AND b='2'`, `(AND a='1' b='2')`},
		{"two predicates join with OR", `a='1' OR b='2'`, `(OR a='1' b='2')`},
		{"several spaces around AND are allowed", `a='1'   AND   b='2'`, `(AND a='1' b='2')`},
		{"AND is left-associative", `a='1' AND b='2' AND c='3'`, `(AND (AND a='1' b='2') c='3')`},
		{"OR is left-associative", `a='1' OR b='2' OR c='3'`, `(OR (OR a='1' b='2') c='3')`},
		{"AND binds tighter than OR on the right", `a='1' OR b='2' AND c='3'`, `(OR a='1' (AND b='2' c='3'))`},
		{"AND binds tighter than OR on the left", `a='1' AND b='2' OR c='3'`, `(OR (AND a='1' b='2') c='3')`},
		{"AND binds tighter than OR on both sides", `a='1' AND b='2' OR c='3' AND d='4'`, `(OR (AND a='1' b='2') (AND c='3' d='4'))`},
		{"parentheses override precedence", `(a='1' OR b='2') AND c='3'`, `(AND (OR a='1' b='2') c='3')`},
		{"parentheses on the right override associativity", `a='1' AND (b='2' AND c='3')`, `(AND a='1' (AND b='2' c='3'))`},
		{"redundant parentheses vanish", `((a='1'))`, `a='1'`},
		{"spaces inside parentheses are allowed", `( a='1' OR b='2' ) AND c='3'`, `(AND (OR a='1' b='2') c='3')`},
		{"nested groups are kept", `a='1' AND (b='2' OR (c='3' AND d='4'))`, `(AND a='1' (OR b='2' (AND c='3' d='4')))`},
		{"a field may start with the letters of a keyword", `ANDROID='1' AND ORDER='2'`, `(AND ANDROID='1' ORDER='2')`},
		{"a segment may be a keyword", `x.AND='1'`, `x.AND='1'`},
		{"parentheses may nest 32 levels", strings.Repeat("(", 32) + `a='1'` + strings.Repeat(")", 32), `a='1'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseFilter(tt.in)
			if err != nil {
				t.Fatalf("ParseFilter(%q) error = %v, want nil", tt.in, err)
			}
			if got := sexpr(e); got != tt.want {
				t.Errorf("ParseFilter(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFilterFillsPredicateFields(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		field string
		cmp   Cmp
		value string
	}{
		{"a doubled quote becomes one quote", `familyName='O''Brien'`, "familyName", Eq, "O'Brien"},
		{"a value of one escaped quote is a quote", `a=''''`, "a", Eq, "'"},
		{"consecutive escaped quotes each become one quote", `a='x''''y'`, "a", Eq, "x''y"},
		{"an escaped quote may end the value", `a~'x'''`, "a", Contains, "x'"},
		{"UTF-8 in a value is kept", `givenName='Zoë 李'`, "givenName", Eq, "Zoë 李"},
		{"control characters other than NUL are kept", "note='a\tb\nc'", "note", Eq, "a\tb\nc"},
		{"the dotted field is kept whole", `class.course.sourcedId>='x'`, "class.course.sourcedId", Ge, "x"},
		{"a value is not interpreted", `score<'  -1e9 '`, "score", Lt, "  -1e9 "},
		{"the not-equal operator maps to Ne", `a!='b'`, "a", Ne, "b"},
		{"the greater-than operator maps to Gt", `a>'b'`, "a", Gt, "b"},
		{"the less-or-equal operator maps to Le", `a<='b'`, "a", Le, "b"},
		{"the less-than operator maps to Lt", `a<'b'`, "a", Lt, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseFilter(tt.in)
			if err != nil {
				t.Fatalf("ParseFilter(%q) error = %v, want nil", tt.in, err)
			}
			want := &Expr{Field: tt.field, Cmp: tt.cmp, Value: tt.value}
			if !e.Equal(want) {
				t.Errorf("ParseFilter(%q) = %#v, want %#v", tt.in, *e, *want)
			}
		})
	}
}

func TestParseFilterOfNothingMeansNoFilter(t *testing.T) {
	e, err := ParseFilter("")
	if e != nil || err != nil {
		t.Errorf("ParseFilter(\"\") = %v, %v, want nil, nil", e, err)
	}
}

func TestParseFilterRejectsBadInput(t *testing.T) {
	const (
		field = CodeInvalidFilterField
		data  = CodeInvalidData
	)
	tests := []struct {
		name string
		in   string
		code string
		pos  int
		msg  string // a substring of the message
	}{
		// Empty predicates.
		{"a filter of only spaces is an empty predicate", `   `, data, 3, "expected a predicate, found end of filter"},
		{"a missing predicate after AND is an error", `a='1' AND`, data, 9, `expected a predicate after "AND"`},
		{"a missing predicate after AND and a space is an error", `a='1' AND `, data, 10, "expected a predicate, found end of filter"},
		{"a leading AND is an empty predicate", `AND a='1'`, data, 0, `expected a predicate, found "AND"`},
		{"two ORs in a row leave an empty predicate", `a='1' OR OR b='2'`, data, 9, `expected a predicate, found "OR"`},
		{"empty parentheses are an empty predicate", `()`, data, 1, `expected a predicate, found ")"`},
		{"a group that ends after AND is an error", `(a='1' AND )`, data, 11, `expected a predicate, found ")"`},

		// Field names.
		{"a value where the field should be is a bad field", `'a'='b'`, field, 0, `expected a field name, found "'"`},
		{"a field may not start with a digit", `1a='b'`, field, 0, `expected a field name, found "1"`},
		{"a field may not start with a dot", `.a='b'`, field, 0, `expected a field name`},
		{"a field may not end with a dot", `a.='b'`, field, 2, `expected a field name segment after "."`},
		{"a field may not have an empty segment", `a..b='c'`, field, 2, `expected a field name segment after "."`},
		{"a field may not contain a dash", `first-name='x'`, field, 5, `invalid character "-" in field name`},
		{"a field may not contain non-ASCII letters", `nomé='x'`, field, 3, `invalid character "é" in field name`},
		{"a bad field after AND is a bad field", `a='1' AND $b='2'`, field, 10, `expected a field name, found "$"`},

		// Operators.
		{"a missing operator is an error", `familyName 'Smith'`, data, 11, `expected a comparison operator after "familyName"`},
		{"a missing operator before a quote is an error", `familyName'Smith'`, data, 10, `expected a comparison operator`},
		{"a field alone is an error", `familyName`, data, 10, `expected a comparison operator after "familyName", found end of filter`},
		{"a second word after the field is an error", `family Name='x'`, data, 7, `expected a comparison operator after "family"`},
		{"== is an unknown operator", `a=='b'`, data, 1, `unknown operator "=="`},
		{"<> is an unknown operator", `a<>'b'`, data, 1, `unknown operator "<>"`},
		{"=~ is an unknown operator", `a=~'b'`, data, 1, `unknown operator "=~"`},
		{"a lone ! is an unknown operator", `a!'b'`, data, 1, `unknown operator "!"`},

		// Quotes and values.
		{"an unquoted value is an error", `familyName=Smith`, data, 11, `expected a quoted value after "=", found "S"`},
		{"a double-quoted value is an error", `a="b"`, data, 2, `expected a quoted value after "="`},
		{"a missing value is an error", `a=`, data, 2, `expected a quoted value after "=", found end of filter`},
		{"an unterminated quote points at the opening quote", `a='b`, data, 2, "unterminated quoted value"},
		{"a value ending in an escaped quote is unterminated", `a='b''`, data, 2, "unterminated quoted value"},
		{"a NUL byte in a value is an error", "a='b\x00c'", data, 4, "NUL byte"},
		{"invalid UTF-8 in a value is an error", "a='b\xffc'", data, 4, "not valid UTF-8"},
		{"a truncated UTF-8 sequence in a value is an error", "a='\xc3'", data, 3, "not valid UTF-8"},
		{"an encoded surrogate in a value is an error", "a='\xed\xa0\x80'", data, 3, "not valid UTF-8"},

		// Logical operators.
		{"lowercase and is rejected", `a='1' and b='2'`, data, 6, `write "AND", not "and"`},
		{"lowercase or is rejected", `a='1' or b='2'`, data, 6, `write "OR", not "or"`},
		{"mixed-case And is rejected", `a='1' And b='2'`, data, 6, `write "AND", not "And"`},
		{"AND needs a space before it", `a='1'AND b='2'`, data, 5, `expected a space before "AND"`},
		{"AND needs a space after it", `a='1' AND(b='2')`, data, 9, `expected a space after "AND"`},
		{"OR needs a space before it after a parenthesis", `(a='1')OR b='2'`, data, 7, `expected a space before "OR"`},
		{"&& is not a logical operator", `a='1' && b='2'`, data, 6, `expected "AND", "OR" or end of filter, found "&"`},

		// Trailing text and parentheses.
		{"a second predicate without AND is trailing text", `a='1' b='2'`, data, 6, `expected "AND", "OR" or end of filter, found "b"`},
		{"text right after a value is trailing text", `a='1'x`, data, 5, `found "x"`},
		{"text inside a group mentions the closing parenthesis", `(a='1' b='2')`, data, 7, `expected "AND", "OR" or ")"`},
		{"an unmatched closing parenthesis is an error", `a='1')`, data, 5, `unmatched ")"`},
		{"an unclosed parenthesis points at it", `(a='1' AND (b='2')`, data, 0, `unclosed "("`},
		{"a tab is not a space", "a='1'\tAND b='2'", data, 5, `found "\t"`},

		// Limits.
		{"parentheses may not nest 33 levels", strings.Repeat("(", 33) + `a='1'` + strings.Repeat(")", 33), data, 32, "nested deeper than 32"},
		{"65 predicates are too many", predicates(65), data, len(predicates(64)) + len(" AND "), "more than 64 predicates"},
		{"a filter over 8 KiB is too long", `a='` + strings.Repeat("x", MaxFilterLen) + `'`, data, MaxFilterLen, "maximum is 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseFilter(tt.in)
			if err == nil {
				t.Fatalf("ParseFilter(%q) = %s, want an error", tt.in, sexpr(e))
			}
			if e != nil {
				t.Errorf("ParseFilter(%q) returned a tree with its error: %s", tt.in, sexpr(e))
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("ParseFilter(%q) error %T %v, want *Error", tt.in, err, err)
			}
			if pe.Param != "filter" || pe.CodeMinor != tt.code || pe.Pos != tt.pos {
				t.Errorf("ParseFilter(%q) error Param/CodeMinor/Pos = %q/%q/%d, want %q/%q/%d (%v)",
					tt.in, pe.Param, pe.CodeMinor, pe.Pos, "filter", tt.code, tt.pos, err)
			}
			if !strings.Contains(pe.Message, tt.msg) {
				t.Errorf("ParseFilter(%q) message = %q, want it to contain %q", tt.in, pe.Message, tt.msg)
			}
		})
	}
}

// predicates returns n predicates joined by AND.
func predicates(n int) string {
	p := make([]string, n)
	for i := range p {
		p[i] = "f='v'"
	}
	return strings.Join(p, " AND ")
}

func TestParseFilterAcceptsTheLimitsExactly(t *testing.T) {
	t.Run("64 predicates are accepted", func(t *testing.T) {
		e, err := ParseFilter(predicates(64))
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		n := 0
		_ = e.Walk(func(*Expr) error { n++; return nil })
		if n != 64 {
			t.Errorf("got %d predicates, want 64", n)
		}
	})
	t.Run("a filter of exactly 8 KiB is accepted", func(t *testing.T) {
		in := `a='` + strings.Repeat("x", MaxFilterLen-4) + `'`
		if len(in) != MaxFilterLen {
			t.Fatalf("test input is %d bytes, want %d", len(in), MaxFilterLen)
		}
		if _, err := ParseFilter(in); err != nil {
			t.Errorf("error = %v, want nil", err)
		}
	})
}

func TestErrorMessageSaysWhatAndWhere(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"a positioned error ends with its position",
			&Error{Param: "filter", Message: `expected a quoted value after "="`, Pos: 12},
			`filter: expected a quoted value after "=" at position 12`},
		{"an error without a position has no position",
			&Error{Param: "limit", Message: "limit must be at least 1", Pos: -1},
			"limit: limit must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("a parse error reads naturally", func(t *testing.T) {
		_, err := ParseFilter(`familyName=Smith`)
		want := `filter: expected a quoted value after "=", found "S" at position 11`
		if err == nil || err.Error() != want {
			t.Errorf("error = %v, want %q", err, want)
		}
	})
}

func TestWalkVisitsPredicatesLeftToRight(t *testing.T) {
	e, err := ParseFilter(`a='1' OR (b='2' AND c='3') OR d='4'`)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("every predicate is visited in order", func(t *testing.T) {
		var got []string
		if err := e.Walk(func(p *Expr) error { got = append(got, p.Field); return nil }); err != nil {
			t.Fatalf("Walk error = %v, want nil", err)
		}
		if strings.Join(got, ",") != "a,b,c,d" {
			t.Errorf("visited %v, want [a b c d]", got)
		}
	})
	t.Run("the first error stops the walk and is returned", func(t *testing.T) {
		stop := errors.New("unknown field")
		var got []string
		err := e.Walk(func(p *Expr) error {
			got = append(got, p.Field)
			if p.Field == "b" {
				return stop
			}
			return nil
		})
		if err != stop {
			t.Errorf("Walk error = %v, want %v", err, stop)
		}
		if strings.Join(got, ",") != "a,b" {
			t.Errorf("visited %v, want [a b]", got)
		}
	})
	t.Run("a nil tree visits nothing", func(t *testing.T) {
		var nilExpr *Expr
		if err := nilExpr.Walk(func(*Expr) error { t.Error("fn called"); return nil }); err != nil {
			t.Errorf("Walk error = %v, want nil", err)
		}
	})
}

func TestStringRendersCanonicalFilters(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"a predicate drops optional spaces", `a = 'x'`, `a='x'`},
		{"a quote in a value is doubled again", `a='O''Brien'`, `a='O''Brien'`},
		{"AND under OR needs no parentheses", `a='1' OR b='2' AND c='3'`, `a='1' OR b='2' AND c='3'`},
		{"OR under AND keeps its parentheses", `(a='1' OR b='2') AND c='3'`, `(a='1' OR b='2') AND c='3'`},
		{"a left-nested chain needs no parentheses", `(a='1' AND b='2') AND c='3'`, `a='1' AND b='2' AND c='3'`},
		{"a right-nested chain keeps its parentheses", `a='1' OR (b='2' OR c='3')`, `a='1' OR (b='2' OR c='3')`},
		{"redundant parentheses are dropped", `((a='1')) AND ((b='2'))`, `a='1' AND b='2'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseFilter(tt.in)
			if err != nil {
				t.Fatalf("ParseFilter(%q) error = %v", tt.in, err)
			}
			if got := e.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("a nil tree renders as nothing", func(t *testing.T) {
		var e *Expr
		if got := e.String(); got != "" {
			t.Errorf("String() = %q, want \"\"", got)
		}
	})
}

func TestEqualComparesWholeTrees(t *testing.T) {
	a := &Expr{Op: And, Left: &Expr{Field: "a", Cmp: Eq, Value: "1"}, Right: &Expr{Field: "b", Cmp: Eq, Value: "2"}}
	b := &Expr{Op: And, Left: &Expr{Field: "a", Cmp: Eq, Value: "1"}, Right: &Expr{Field: "b", Cmp: Eq, Value: "3"}}
	tests := []struct {
		name string
		x, y *Expr
		want bool
	}{
		{"a tree equals itself", a, a, true},
		{"trees differing in a leaf value are not equal", a, b, false},
		{"nil equals nil", nil, nil, true},
		{"a tree does not equal nil", a, nil, false},
		{"nil does not equal a tree", nil, a, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.x.Equal(tt.y); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}
