package records

import (
	"reflect"
	"testing"
)

// andByConcatenation is And as it was first written (one concatenation per part):
// the reference the sized version must match.
func andByConcatenation(ps ...Predicate) Predicate {
	var out Predicate
	for _, p := range ps {
		if p.SQL == "" {
			continue
		}
		if out.SQL != "" {
			out.SQL += " AND "
		}
		out.SQL += "(" + p.SQL + ")"
		out.Args = append(out.Args, p.Args...)
	}
	return out
}

// TestAndJoinsEveryNonEmptyPart: every combination of empty, argument-less and
// argument-carrying parts, up to four, joins as the reference does, and the result's
// arguments never share an array with a part's (a caller appending to them must not
// write into the part).
func TestAndJoinsEveryNonEmptyPart(t *testing.T) {
	kinds := []Predicate{
		{},
		{SQL: "t.status = 'active'"},
		{SQL: "t.sourced_id = ?", Args: []any{"id-1"}},
		{SQL: "t.org_id IN (?, ?)", Args: []any{"org-a", "org-b"}},
	}
	var ps []Predicate
	var walk func(n int)
	walk = func(n int) {
		want := andByConcatenation(ps...)
		got := And(ps...)
		if got.SQL != want.SQL || !reflect.DeepEqual(got.Args, want.Args) {
			t.Fatalf("And(%v) = %q %v, want %q %v", ps, got.SQL, got.Args, want.SQL, want.Args)
		}
		if len(got.Args) > 0 {
			for _, p := range ps {
				if len(p.Args) > 0 && &p.Args[0] == &got.Args[0] {
					t.Fatalf("And(%v) shares its arguments' array with a part", ps)
				}
			}
		}
		if n == 0 {
			return
		}
		for _, k := range kinds {
			ps = append(ps, Predicate{SQL: k.SQL, Args: append([]any(nil), k.Args...)})
			walk(n - 1)
			ps = ps[:len(ps)-1]
		}
	}
	walk(4)
}
