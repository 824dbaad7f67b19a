package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"registrar/records"
	"registrar/vault"
)

// PutResult says what a Put did.
type PutResult int

// Put outcomes.
const (
	Created PutResult = iota + 1
	Updated
	Unchanged
)

// PutOptions tune Put for callers that checked references themselves (the importer
// validates a whole package before it writes).
type PutOptions struct {
	SkipRefCheck bool
	// KeepDate keeps the object's dateLastModified instead of the transaction time.
	KeepDate bool
}

// Put creates or replaces obj (already validated with records.Validate). References
// must exist (in scope is the caller's business); sensitive fields are sealed under
// the data subject's key; the change is logged.
func (t *Tx) Put(ctx context.Context, e *records.Entity, obj records.Object, opt PutOptions) (PutResult, error) {
	id := obj.ID()
	if !opt.SkipRefCheck {
		if err := t.checkRefs(ctx, e, obj); err != nil {
			return 0, err
		}
	}
	if !opt.KeepDate || obj.Str("dateLastModified") == "" {
		obj["dateLastModified"] = records.FormatDateTime(t.now)
	}
	cols, vals, err := t.rowValues(ctx, e, obj)
	if err != nil {
		return 0, err
	}
	var exists int
	err = t.queryRow(ctx, "SELECT 1 FROM "+e.Table+" WHERE sourced_id = ?", id).Scan(&exists)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, unavailable("put "+e.Name, err)
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ")
	var set []string
	for _, c := range cols[1:] {
		set = append(set, c+" = excluded."+c)
	}
	stmt := "INSERT INTO " + e.Table + " (" + strings.Join(cols, ", ") + ") VALUES (" + ph + ") ON CONFLICT (sourced_id) DO UPDATE SET " + strings.Join(set, ", ")
	if _, err := t.exec(ctx, stmt, vals...); err != nil {
		return 0, unavailable("put "+e.Name, err)
	}
	if err := t.putLinks(ctx, e, obj, exists == 1); err != nil {
		return 0, err
	}
	op := "upsert"
	if _, err := t.exec(ctx, "INSERT INTO changes (entity, sourced_id, op, time) VALUES (?, ?, ?, ?)", e.Name, id, op, records.FormatDateTime(t.now)); err != nil {
		return 0, unavailable("log change", err)
	}
	if exists == 1 {
		return Updated, nil
	}
	return Created, nil
}

// rowValues returns the columns and values of obj's row, sealing sensitive fields.
func (t *Tx) rowValues(ctx context.Context, e *records.Entity, obj records.Object) ([]string, []any, error) {
	var cols []string
	var vals []any
	sealed := map[string]any{}
	for i := range e.Fields {
		f := &e.Fields[i]
		v, present := obj[f.Name]
		if f.Sensitive {
			if present {
				sealed[f.Name] = v
			}
			if f.BlindIndex {
				cols = append(cols, f.Column+"_bidx")
				if s, ok := v.(string); ok && present && s != "" {
					vals = append(vals, t.s.vault.BlindIndex(f.Name, s))
				} else {
					vals = append(vals, nil)
				}
			}
			continue
		}
		if f.Kind == records.KChildren {
			continue
		}
		cols = append(cols, f.Column)
		if !present {
			if f.Kind == records.KRefs {
				vals = append(vals, "[]")
			} else {
				vals = append(vals, nil)
			}
			continue
		}
		enc, err := encodeColumn(f, v)
		if err != nil {
			return nil, nil, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("%s: %v", f.Name, err)}
		}
		vals = append(vals, enc)
	}
	if e.HasSensitive() {
		cols = append(cols, "sealed")
		if len(sealed) == 0 {
			vals = append(vals, nil)
		} else {
			ct, err := t.seal(ctx, e, obj, sealed)
			if err != nil {
				return nil, nil, err
			}
			vals = append(vals, ct)
		}
	}
	return cols, vals, nil
}

func encodeColumn(f *records.Field, v any) (any, error) {
	switch f.Kind {
	case records.KRefs, records.KStrings:
		l, _ := v.([]string)
		if l == nil {
			l = []string{}
		}
		b, err := json.Marshal(l)
		return string(b), err
	case records.KJSON:
		raw, _ := v.(json.RawMessage)
		return string(raw), nil
	case records.KRoles:
		b, err := json.Marshal(v)
		return string(b), err
	}
	return v, nil
}

// seal encrypts the sensitive fields of obj under its subject's data key, creating
// the key on first use.
func (t *Tx) seal(ctx context.Context, e *records.Entity, obj records.Object, sealed map[string]any) ([]byte, error) {
	subject := obj.Str(e.Subject)
	if subject == "" {
		return nil, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("%s: %s is required to protect its sensitive fields", e.Name, e.Subject)}
	}
	wrapped, err := t.dataKey(ctx, subject)
	if err != nil {
		return nil, err
	}
	pt, err := json.Marshal(sealed)
	if err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("encode sealed fields: %w", err)}
	}
	ct, err := t.s.vault.SealFor(subject, wrapped, pt, vault.Binding(e.Table, "sealed", obj.ID()))
	if err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
	}
	return ct, nil
}

// dataKey returns subject's wrapped data key, creating and storing it if missing.
// The row is read in the transaction every time: after a purge on any instance, no
// new value can be sealed under a key that no longer exists.
func (t *Tx) dataKey(ctx context.Context, subject string) ([]byte, error) {
	var wrapped []byte
	err := t.queryRow(ctx, "SELECT wrapped FROM subject_keys WHERE subject_id = ?", subject).Scan(&wrapped)
	if err == nil {
		return wrapped, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, unavailable("read data key", err)
	}
	t.s.vault.Forget(subject)
	if wrapped, err = t.s.vault.NewDataKey(subject); err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: err}
	}
	if _, err := t.exec(ctx, "INSERT INTO subject_keys (subject_id, wrapped, created_at) VALUES (?, ?, ?)", subject, wrapped, records.FormatDateTime(t.now)); err != nil {
		return nil, unavailable("store data key", err)
	}
	return wrapped, nil
}

// putLinks rewrites the link tables (lists of references, user roles) of obj.
func (t *Tx) putLinks(ctx context.Context, e *records.Entity, obj records.Object, existed bool) error {
	id := obj.ID()
	for i := range e.Fields {
		f := &e.Fields[i]
		switch f.Kind {
		case records.KRefs:
			if existed {
				if _, err := t.exec(ctx, "DELETE FROM "+f.Link+" WHERE owner_id = ?", id); err != nil {
					return unavailable("put links", err)
				}
			}
			l, _ := obj[f.Name].([]string)
			for ord, ref := range l {
				if _, err := t.exec(ctx, "INSERT INTO "+f.Link+" (owner_id, ord, ref_id) VALUES (?, ?, ?)", id, ord, ref); err != nil {
					return unavailable("put links", err)
				}
			}
		case records.KRoles:
			if existed {
				if _, err := t.exec(ctx, "DELETE FROM user_roles WHERE user_id = ?", id); err != nil {
					return unavailable("put roles", err)
				}
			}
			roles, _ := obj[f.Name].([]records.Role)
			for ord, r := range roles {
				if _, err := t.exec(ctx, "INSERT INTO user_roles (user_id, ord, role_type, role, org_id, begin_date, end_date) VALUES (?, ?, ?, ?, ?, ?, ?)",
					id, ord, r.RoleType, r.Role, r.Org, nullIfEmpty(r.BeginDate), nullIfEmpty(r.EndDate)); err != nil {
					return unavailable("put roles", err)
				}
			}
		}
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// checkRefs verifies that every reference of obj points at an existing object.
func (t *Tx) checkRefs(ctx context.Context, e *records.Entity, obj records.Object) error {
	var problems []records.FieldError
	check := func(field, target, id string) error {
		te, _ := records.EntityNamed(target)
		if te == e && id == obj.ID() {
			return nil
		}
		var one int
		err := t.queryRow(ctx, "SELECT 1 FROM "+te.Table+" WHERE sourced_id = ?", id).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			problems = append(problems, records.FieldError{Field: field, Message: fmt.Sprintf("refers to %s %q, which does not exist", te.Name, clipID(id))})
			return nil
		}
		if err != nil {
			return unavailable("check reference", err)
		}
		return nil
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch f.Kind {
		case records.KRef:
			if id := obj.Str(f.Name); id != "" {
				if err := check(f.Name, f.Target, id); err != nil {
					return err
				}
			}
		case records.KRefs:
			l, _ := obj[f.Name].([]string)
			for _, id := range l {
				if err := check(f.Name, f.Target, id); err != nil {
					return err
				}
			}
		case records.KRoles:
			roles, _ := obj[f.Name].([]records.Role)
			for _, r := range roles {
				if err := check("roles.org", "org", r.Org); err != nil {
					return err
				}
			}
		}
	}
	if len(problems) > 0 {
		sort.Slice(problems, func(i, j int) bool { return problems[i].Field < problems[j].Field })
		err := records.InvalidFields(e.Name+" "+clipID(obj.ID()), problems)
		err.CodeMinor = "invaliddata"
		return err
	}
	return nil
}

// Delete removes the object id of e and its links, and logs the deletion. Objects that
// depend on it are handled by the caller (see DeleteCascade).
func (t *Tx) Delete(ctx context.Context, e *records.Entity, id string) error {
	if err := t.deleteScopes(ctx, e, id); err != nil { // the change feed authorizes the delete by these (stream.go)
		return err
	}
	res, err := t.exec(ctx, "DELETE FROM "+e.Table+" WHERE sourced_id = ?", id)
	if err != nil {
		return unavailable("delete "+e.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound(e, id)
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch f.Kind {
		case records.KRefs:
			if _, err := t.exec(ctx, "DELETE FROM "+f.Link+" WHERE owner_id = ?", id); err != nil {
				return unavailable("delete links", err)
			}
		case records.KRoles:
			if _, err := t.exec(ctx, "DELETE FROM user_roles WHERE user_id = ?", id); err != nil {
				return unavailable("delete roles", err)
			}
		}
	}
	if _, err := t.exec(ctx, "INSERT INTO changes (entity, sourced_id, op, time) VALUES (?, ?, 'delete', ?)", e.Name, id, records.FormatDateTime(t.now)); err != nil {
		return unavailable("log change", err)
	}
	return nil
}

// Referrers lists objects that refer to e's object id through a required reference:
// deleting it would leave them dangling.
func (t *Tx) Referrers(ctx context.Context, e *records.Entity, id string) ([]string, error) {
	var out []string
	for _, other := range records.Entities {
		for i := range other.Fields {
			f := &other.Fields[i]
			if f.Target != e.Name || f.Kind != records.KRef {
				continue
			}
			var ref string
			err := t.queryRow(ctx, "SELECT sourced_id FROM "+other.Table+" WHERE "+f.Column+" = ? LIMIT 1", id).Scan(&ref)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return nil, unavailable("find referrers", err)
			}
			out = append(out, other.Name+" "+ref)
		}
	}
	return out, nil
}

// Get reads one object of e inside the write transaction, limited by scope, with every
// field decrypted.
func (t *Tx) Get(ctx context.Context, e *records.Entity, scope records.Predicate, id string) (records.Object, error) {
	sl := t.s.selectFor(e)
	where := records.And(records.Predicate{SQL: "t.sourced_id = ?", Args: []any{id}}, scope)
	rows, err := t.query(ctx, "SELECT "+sl.sql+" FROM "+e.Table+" t"+sl.join+" WHERE "+where.SQL, where.Args...)
	if err != nil {
		return nil, unavailable("get "+e.Name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, notFound(e, id)
	}
	q := Query{Entity: e}
	return t.s.scan(rows, e, sl, &q)
}

// Exists reports whether id is an object of e satisfying scope, inside the transaction.
func (t *Tx) Exists(ctx context.Context, e *records.Entity, scope records.Predicate, id string) (bool, error) {
	where := records.And(records.Predicate{SQL: "t.sourced_id = ?", Args: []any{id}}, scope)
	var one int
	err := t.queryRow(ctx, "SELECT 1 FROM "+e.Table+" t WHERE "+where.SQL, where.Args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("exists", err)
	}
	return true, nil
}

// IDs returns the sourcedIds of e's objects whose column equals value.
func (t *Tx) IDs(ctx context.Context, e *records.Entity, column, value string) ([]string, error) {
	return t.column(ctx, "ids", "SELECT sourced_id FROM "+e.Table+" WHERE "+column+" = ? ORDER BY sourced_id", value)
}

// column runs q in the transaction and returns its single text column; what names the
// query in errors.
func (t *Tx) column(ctx context.Context, what, q string, args ...any) ([]string, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, unavailable(what, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, unavailable(what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(what, err)
	}
	return out, nil
}
