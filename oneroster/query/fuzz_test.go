package query

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParseFilter(f *testing.F) {
	seeds := []string{
		``,
		`familyName='Smith'`,
		`status!='tobedeleted'`,
		`score>'90' AND score<'100'`,
		`dateLastModified>='2024-01-01T00:00:00Z'`,
		`score<='10' OR score>='90'`,
		`familyName~'mit'`,
		`familyName='O''Brien'`,
		`a='''' AND b=''`,
		`course.sourcedId = 'c1' OR class.course.sourcedId='c2'`,
		`a='1' OR b='2' AND c='3'`,
		`(a='1' OR b='2') AND (c='3' OR (d='4' AND e='5'))`,
		`a='1' OR (b='2' OR c='3')`,
		`  ( a='1' )  `,
		`givenName='Zoë 李'`,
		`a='1' and b='2'`,
		`a='1'AND b='2'`,
		`a=='1'`,
		`a='unterminated`,
		"a='\x00'",
		"a='\xff'",
		`first-name='x'`,
		`a='1' AND`,
		`()`,
		`a='1')`,
		strings.Repeat("(", 33) + `a='1'` + strings.Repeat(")", 33),
		predicates(65),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseFilter(s)
		if err != nil {
			checkFilterError(t, s, e, err)
			return
		}
		if (e == nil) != (s == "") {
			t.Fatalf("ParseFilter(%q) = %v, nil: want a nil tree exactly for the empty filter", s, e)
		}
		if e == nil {
			return
		}
		checkTree(t, s, e)

		out := e.String()
		if len(out) > len(s) {
			t.Errorf("String() of ParseFilter(%q) = %q is longer than the input", s, out)
		}
		e2, err := ParseFilter(out)
		if err != nil {
			t.Fatalf("round trip: ParseFilter(%q) ok, but reparsing its String() %q fails: %v", s, out, err)
		}
		if !e.Equal(e2) {
			t.Fatalf("round trip of %q: got %s, want %s", s, sexpr(e2), sexpr(e))
		}
		if out2 := e2.String(); out2 != out {
			t.Fatalf("String() is not stable for %q: got %q, want %q", s, out2, out)
		}
	})
}

func checkFilterError(t *testing.T, s string, e *Expr, err error) {
	t.Helper()
	if e != nil {
		t.Fatalf("ParseFilter(%q) returned a tree with error %v", s, err)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("ParseFilter(%q) error %T %v, want *Error", s, err, err)
	}
	if pe.Param != "filter" {
		t.Errorf("ParseFilter(%q) error Param = %q, want \"filter\"", s, pe.Param)
	}
	if pe.CodeMinor != CodeInvalidFilterField && pe.CodeMinor != CodeInvalidData {
		t.Errorf("ParseFilter(%q) error CodeMinor = %q, want %q or %q", s, pe.CodeMinor, CodeInvalidFilterField, CodeInvalidData)
	}
	if pe.Pos < 0 || pe.Pos > len(s) {
		t.Errorf("ParseFilter(%q) error Pos = %d, want within [0, %d]", s, pe.Pos, len(s))
	}
	if pe.Message == "" {
		t.Errorf("ParseFilter(%q) error has an empty Message", s)
	}
}

// checkTree asserts the structural invariants of a parsed filter.
func checkTree(t *testing.T, s string, e *Expr) {
	t.Helper()
	n := 0
	var check func(*Expr, int)
	check = func(x *Expr, depth int) {
		if depth > MaxPredicates+MaxDepth {
			t.Fatalf("ParseFilter(%q): tree deeper than %d", s, MaxPredicates+MaxDepth)
		}
		switch x.Op {
		case And, Or:
			if x.Left == nil || x.Right == nil || x.Field != "" || x.Cmp != "" || x.Value != "" {
				t.Fatalf("ParseFilter(%q): malformed logical node %#v", s, *x)
			}
			check(x.Left, depth+1)
			check(x.Right, depth+1)
		case "":
			n++
			if x.Left != nil || x.Right != nil {
				t.Fatalf("ParseFilter(%q): predicate with children %#v", s, *x)
			}
			if end, bad, _ := scanField(x.Field, 0); bad >= 0 || end != len(x.Field) || x.Field == And || x.Field == Or {
				t.Errorf("ParseFilter(%q): invalid field %q", s, x.Field)
			}
			if _, ok := cmpOf(string(x.Cmp)); !ok {
				t.Errorf("ParseFilter(%q): invalid operator %q", s, x.Cmp)
			}
			if !utf8.ValidString(x.Value) || strings.IndexByte(x.Value, 0) >= 0 {
				t.Errorf("ParseFilter(%q): value %q has invalid UTF-8 or NUL", s, x.Value)
			}
		default:
			t.Fatalf("ParseFilter(%q): unknown Op %q", s, x.Op)
		}
	}
	check(e, 0)
	if n > MaxPredicates {
		t.Errorf("ParseFilter(%q): %d predicates, want at most %d", s, n, MaxPredicates)
	}
}

// randomTree builds a tree with at most leaves predicates whose fields
// and values exercise dots, quotes, keywords and UTF-8.
func randomTree(r *rand.Rand, leaves int) *Expr {
	if leaves <= 1 || r.IntN(3) == 0 {
		fields := []string{"a", "familyName", "course.sourcedId", "AND.x", "x.OR", "_a1.b_2"}
		values := []string{"", "'", "''", "O'Brien", " AND b='1'", "(x)", "Zoë 李", "a\tb"}
		cmps := []Cmp{Eq, Ne, Gt, Ge, Lt, Le, Contains}
		return &Expr{Field: fields[r.IntN(len(fields))], Cmp: cmps[r.IntN(len(cmps))], Value: values[r.IntN(len(values))]}
	}
	op := And
	if r.IntN(2) == 0 {
		op = Or
	}
	n := 1 + r.IntN(leaves-1)
	return &Expr{Op: op, Left: randomTree(r, n), Right: randomTree(r, leaves-n)}
}

func TestStringRoundTripsRandomTrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		want := randomTree(r, 1+r.IntN(MaxDepth)) // few enough leaves that nesting stays within MaxDepth
		s := want.String()
		got, err := ParseFilter(s)
		if err != nil {
			t.Fatalf("ParseFilter(%q) of tree %s: %v", s, sexpr(want), err)
		}
		if !got.Equal(want) {
			t.Fatalf("ParseFilter(%q) = %s, want %s", s, sexpr(got), sexpr(want))
		}
	}
}
