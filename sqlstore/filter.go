package sqlstore

import (
	"fmt"
	"strconv"
	"strings"

	"registrar/oneroster/query"
	"registrar/records"
)

// compileFilter turns a parsed OneRoster filter into a predicate with bound arguments.
// Client text only ever becomes an argument; field names are resolved against the
// entity description, so nothing the client writes reaches the SQL text.
func (s *Store) compileFilter(q *Query, e *query.Expr) (records.Predicate, error) {
	if e.Op != "" {
		l, err := s.compileFilter(q, e.Left)
		if err != nil {
			return l, err
		}
		r, err := s.compileFilter(q, e.Right)
		if err != nil {
			return r, err
		}
		return records.Predicate{SQL: "(" + l.SQL + ") " + e.Op + " (" + r.SQL + ")", Args: append(l.Args, r.Args...)}, nil
	}
	return s.compilePredicate(q, e)
}

func filterError(name, format string, args ...any) error {
	return &records.Error{Code: records.Invalid, CodeMinor: "invalid_filter_field", Field: "filter",
		Message: "filter: " + strconv.Quote(clipID(name)) + " " + fmt.Sprintf(format, args...)}
}

var sqlOps = map[query.Cmp]string{query.Eq: "=", query.Ne: "<>", query.Gt: ">", query.Ge: ">=", query.Lt: "<", query.Le: "<="}

func (s *Store) compilePredicate(q *Query, p *query.Expr) (records.Predicate, error) {
	ent := q.Entity
	name := p.Field
	base, sub, _ := strings.Cut(name, ".")
	f, ok := ent.Field(base)
	if !ok || q.hidden(f) {
		return records.Predicate{}, filterError(name, "is not a field of %s; fields are: %s", ent.Name, strings.Join(visibleFields(q), ", "))
	}
	if f.Sensitive {
		if !f.BlindIndex || sub != "" {
			return records.Predicate{}, filterError(name, "is stored encrypted and cannot be filtered on")
		}
		col, arg := "t."+f.Column+"_bidx", s.vault.BlindIndex(f.Name, p.Value)
		switch p.Cmp {
		case query.Eq:
			return records.Predicate{SQL: col + " = ?", Args: []any{arg}}, nil
		case query.Ne:
			// As for plain fields, != matches objects that lack the field too.
			return records.Predicate{SQL: "(" + col + " IS NULL OR " + col + " <> ?)", Args: []any{arg}}, nil
		}
		return records.Predicate{}, filterError(name, "is stored encrypted: only = and != are supported")
	}
	switch f.Kind {
	case records.KRef:
		if sub != "" && sub != "sourcedId" {
			return records.Predicate{}, filterError(name, "is not a field: a reference has only sourcedId (use %s.sourcedId)", base)
		}
		return s.scalar(name, "t."+f.Column, records.KString, p)
	case records.KRefs:
		if sub != "" && sub != "sourcedId" {
			return records.Predicate{}, filterError(name, "is not a field: a reference has only sourcedId (use %s.sourcedId)", base)
		}
		return s.exists(name, "SELECT 1 FROM "+f.Link+" l WHERE l.owner_id = t.sourced_id AND ", "l.ref_id", records.KString, p)
	case records.KChildren:
		if sub != "" && sub != "sourcedId" {
			return records.Predicate{}, filterError(name, "is not a field: a reference has only sourcedId (use %s.sourcedId)", base)
		}
		target, _ := records.EntityNamed(f.Target)
		return s.exists(name, "SELECT 1 FROM "+target.Table+" c WHERE c."+f.Link+" = t.sourced_id AND ", "c.sourced_id", records.KString, p)
	case records.KRoles:
		col := map[string]string{"role": "r.role", "roleType": "r.role_type", "org": "r.org_id", "org.sourcedId": "r.org_id", "beginDate": "r.begin_date", "endDate": "r.end_date"}[sub]
		if col == "" {
			return records.Predicate{}, filterError(name, "is not a field of roles; use roles.role, roles.roleType, roles.org.sourcedId, roles.beginDate or roles.endDate")
		}
		kind := records.KString
		if strings.HasSuffix(col, "_date") {
			kind = records.KDate
		}
		return s.exists(name, "SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND ", col, kind, p)
	case records.KStrings:
		if sub != "" {
			return records.Predicate{}, filterError(name, "is a list of strings and has no fields")
		}
		switch p.Cmp {
		case query.Eq:
			return records.Predicate{SQL: s.d.jsonContains("t." + f.Column), Args: []any{p.Value}}, nil
		case query.Ne:
			return records.Predicate{SQL: "NOT " + s.d.jsonContains("t."+f.Column), Args: []any{p.Value}}, nil
		case query.Contains:
			return records.Predicate{SQL: s.d.like("t." + f.Column), Args: []any{"%" + escapeLike(p.Value) + "%"}}, nil
		}
		return records.Predicate{}, filterError(name, "is a list: only =, != and ~ apply")
	case records.KJSON:
		return records.Predicate{}, filterError(name, "is a structured field and cannot be filtered on")
	}
	if sub != "" {
		return records.Predicate{}, filterError(name, "is not a field: %s has no sub-fields", base)
	}
	return s.scalar(name, "t."+f.Column, f.Kind, p)
}

// scalar compiles a comparison on one column, checking the value against the kind.
func (s *Store) scalar(name, col string, kind records.Kind, p *query.Expr) (records.Predicate, error) {
	if p.Cmp == query.Contains {
		// ~ searches the text the API shows (a date-time in its stored UTC form), so its
		// value is a fragment of text, not a value of the field's kind.
		if kind == records.KFloat {
			return records.Predicate{}, filterError(name, "is a number: ~ (contains) applies to text")
		}
		return records.Predicate{SQL: s.d.like(col), Args: []any{"%" + escapeLike(p.Value) + "%"}}, nil
	}
	var arg any = p.Value
	switch kind {
	case records.KFloat:
		x, err := strconv.ParseFloat(p.Value, 64)
		if err != nil {
			return records.Predicate{}, valueError(name, p.Value, "a number")
		}
		arg = x
	case records.KDate:
		if _, err := records.ParseDate(p.Value); err != nil {
			return records.Predicate{}, valueError(name, p.Value, "a date (YYYY-MM-DD)")
		}
	case records.KDateTime:
		t, err := records.ParseDateTime(p.Value)
		if err != nil {
			return records.Predicate{}, valueError(name, p.Value, "a date-time (RFC 3339) or a date")
		}
		arg = records.FormatDateTime(t)
	case records.KBool:
		if p.Value != "true" && p.Value != "false" {
			return records.Predicate{}, valueError(name, p.Value, `"true" or "false"`)
		}
	}
	op, ok := sqlOps[p.Cmp]
	if !ok {
		return records.Predicate{}, filterError(name, "has an unknown operator %q", p.Cmp)
	}
	if p.Cmp == query.Ne {
		// OneRoster's != matches objects that lack the field too.
		return records.Predicate{SQL: "(" + col + " IS NULL OR " + col + " <> ?)", Args: []any{arg}}, nil
	}
	return records.Predicate{SQL: col + " " + op + " ?", Args: []any{arg}}, nil
}

// exists compiles a comparison on a row of a related table: = and the ordering
// operators mean "some related row matches"; != means "no related row equals".
func (s *Store) exists(name, from, col string, kind records.Kind, p *query.Expr) (records.Predicate, error) {
	neg := p.Cmp == query.Ne
	q := *p
	if neg {
		q.Cmp = query.Eq
	}
	inner, err := s.scalar(name, col, kind, &q)
	if err != nil {
		return inner, err
	}
	sql := "EXISTS (" + from + inner.SQL + ")"
	if neg {
		sql = "NOT " + sql
	}
	return records.Predicate{SQL: sql, Args: inner.Args}, nil
}

func valueError(name, value, want string) error {
	return &records.Error{Code: records.Invalid, CodeMinor: "invalid_filter_field", Field: "filter",
		Message: fmt.Sprintf("filter: %s compares with %s, which is not %s", strconv.Quote(clipID(name)), strconv.Quote(clipID(value)), want)}
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func visibleFields(q *Query) []string {
	var out []string
	for i := range q.Entity.Fields {
		f := &q.Entity.Fields[i]
		if !q.hidden(f) {
			out = append(out, f.Name)
		}
	}
	return out
}
