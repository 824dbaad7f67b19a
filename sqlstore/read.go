package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"

	"registrar/oneroster/query"
	"registrar/records"
	"registrar/vault"
)

// Sealing is the part of the vault that seals and opens field values.
type Sealing interface {
	NewDataKey(subject string) ([]byte, error)
	SealFor(subject string, wrapped, plaintext, binding []byte) ([]byte, error)
	OpenFor(subject string, wrapped, ciphertext, binding []byte) ([]byte, error)
	Forget(subject string)
}

var _ Sealer = (*vault.Vault)(nil)

// Query is one list or get request, after authorization has decided its scope.
type Query struct {
	Entity *records.Entity
	// Scope is the authorization predicate: rows outside it do not exist for this caller.
	Scope records.Predicate
	// Where holds the route's relation (e.g. the students of one class).
	Where  []records.Predicate
	Filter *query.Expr
	Sort   *query.Sort
	Page   query.Page
	// Hidden reports fields the caller may not read: they are neither decrypted nor
	// returned, and filtering or sorting on them is refused.
	Hidden func(f *records.Field) bool
	// Fields, when set, limits which sensitive fields are decrypted (the projection).
	Fields []string
	// NoCount skips the total count (X-Total-Count) when the caller does not need it.
	NoCount bool
}

// Result is one page of a list.
type Result struct {
	Objects []records.Object
	Total   int
}

func (q *Query) hidden(f *records.Field) bool { return q.Hidden != nil && q.Hidden(f) }

// selectList is the columns read for an entity and how to decode them.
type selectList struct {
	sql     string
	fields  []*records.Field // one per column, nil for sealed/wrapped
	sealed  int              // index of the sealed column, -1 if none
	wrapped int
	join    string
}

func (s *Store) selectFor(e *records.Entity) selectList {
	if sl, ok := s.selects.Load(e); ok {
		return sl.(selectList)
	}
	sl := s.buildSelect(e)
	s.selects.Store(e, sl)
	return sl
}

func (s *Store) buildSelect(e *records.Entity) selectList {
	var cols []string
	sl := selectList{sealed: -1, wrapped: -1}
	for i := range e.Fields {
		f := &e.Fields[i]
		switch {
		case f.Sensitive:
			continue
		case f.Kind == records.KChildren:
			target, _ := records.EntityNamed(f.Target)
			cols = append(cols, fmt.Sprintf("(SELECT %s FROM %s c WHERE c.%s = t.sourced_id)", s.d.jsonAgg("c.sourced_id"), target.Table, f.Link))
		default:
			cols = append(cols, "t."+f.Column)
		}
		sl.fields = append(sl.fields, f)
	}
	if e.HasSensitive() {
		subj, _ := e.Field(e.Subject)
		sl.sealed = len(cols)
		cols = append(cols, "t.sealed")
		sl.fields = append(sl.fields, nil)
		sl.wrapped = len(cols)
		cols = append(cols, "k.wrapped")
		sl.fields = append(sl.fields, nil)
		sl.join = " LEFT JOIN subject_keys k ON k.subject_id = t." + subj.Column
	}
	sl.sql = strings.Join(cols, ", ")
	return sl
}

// readTx runs fn in a read-only transaction: a list and its count see one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.d.name() != "sqlite"})
	if err != nil {
		return unavailable("begin read", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		// A connection lost mid-read (rows.Err, a failed scan) is the database not
		// answering, not a bug: 503 with Retry-After, never 500. records.Errors and
		// cancellations pass through unchanged.
		return unavailable("read", err)
	}
	return unavailable("commit read", tx.Commit())
}

// unavailable is err as the database not answering (503): nil stays nil, and
// cancellations and records.Errors pass through unchanged. One kind of database
// error is the request's value instead: text PostgreSQL cannot hold or compare (a
// NUL byte, bytes that are not UTF-8: SQLSTATE 22021, 22P05), answered 400 as the
// same value is on SQLite's side by the input checks (records.ValidText). This is the
// backstop behind those checks, so that one that slipped through is never answered
// "retry"; other data exceptions stay errors of the database.
func unavailable(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var re *records.Error
	if errors.As(err, &re) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05") {
		return &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: "a value of the request cannot be stored or looked up (" + what + ")", Err: err}
	}
	return &records.Error{Code: records.Unavailable, Message: "the database is not answering; retry", Err: fmt.Errorf("%s: %w", what, err)}
}

// Get returns one object by sourcedId, or NotFound if it does not exist or lies
// outside scope: the caller cannot tell the two apart.
//
// It is one statement, so it runs without a transaction of its own.
func (s *Store) Get(ctx context.Context, q Query, id string) (records.Object, error) {
	e := q.Entity
	sl := s.selectFor(e)
	where := records.And(append([]records.Predicate{{SQL: "t.sourced_id = ?", Args: []any{id}}, q.Scope}, q.Where...)...)
	stmt := s.d.rebind("SELECT " + sl.sql + " FROM " + e.Table + " t" + sl.join + " WHERE " + where.SQL)
	var rows *sql.Rows
	st, err := s.rstmt.get(ctx, stmt)
	switch {
	case err != nil:
	case st != nil:
		rows, err = st.QueryContext(ctx, where.Args...)
	default:
		rows, err = s.r.QueryContext(ctx, stmt, where.Args...)
	}
	if err != nil {
		return nil, unavailable("get "+e.Name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, unavailable("get "+e.Name, err)
		}
		return nil, notFound(e, id)
	}
	obj, err := s.scan(rows, e, sl, &q)
	if err != nil {
		return nil, err
	}
	return obj, rows.Err()
}

func notFound(e *records.Entity, id string) error {
	return &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("%s %q not found", e.Name, clipID(id))}
}

func clipID(id string) string {
	if len(id) > 80 {
		id = id[:77] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(id, "?"))
}

// Exists reports whether id is a visible object of e (for nested routes: the parent
// must exist in the caller's scope, or the route answers 404).
func (s *Store) Exists(ctx context.Context, e *records.Entity, scope records.Predicate, id string) error {
	where := records.And(records.Predicate{SQL: "t.sourced_id = ?", Args: []any{id}}, scope)
	var one int
	err := s.r.QueryRowContext(ctx, s.d.rebind("SELECT 1 FROM "+e.Table+" t WHERE "+where.SQL), where.Args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound(e, id)
	}
	if err != nil {
		return unavailable("exists", err)
	}
	return nil
}

// List returns one page of q and the total number of rows it matches.
//
// The total is counted in the page's read transaction (one snapshot), unless the page
// holds the whole set. On SQLite a total is reused from the count cache (counts.go)
// when the statement, its arguments (the scope's included) and the change-log
// generation of every entity it reads are the same in this snapshot: paging through a
// collection counts it once. On PostgreSQL every page counts.
func (s *Store) List(ctx context.Context, q Query) (Result, error) {
	var res Result
	e := q.Entity
	conds := append([]records.Predicate{q.Scope}, q.Where...)
	if q.Filter != nil {
		p, err := s.compileFilter(&q, q.Filter)
		if err != nil {
			return res, err
		}
		conds = append(conds, p)
	}
	where := records.And(conds...)
	order, err := s.orderBy(&q)
	if err != nil {
		return res, err
	}
	sl := s.selectFor(e)
	stmt := "SELECT " + sl.sql + " FROM " + e.Table + " t" + sl.join
	if where.SQL != "" {
		stmt += " WHERE " + where.SQL
	}
	stmt += " ORDER BY " + order + " LIMIT ? OFFSET ?"
	args := append(append([]any{}, where.Args...), q.Page.Limit, q.Page.Offset)
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := txQuery(ctx, s.rstmt, tx, s.d.rebind(stmt), args...)
		if err != nil {
			return unavailable("list "+e.Name, err)
		}
		defer rows.Close()
		for rows.Next() {
			obj, err := s.scan(rows, e, sl, &q)
			if err != nil {
				return err
			}
			res.Objects = append(res.Objects, obj)
		}
		if err := rows.Err(); err != nil {
			return unavailable("list "+e.Name, err)
		}
		rows.Close()
		if q.NoCount {
			return nil
		}
		if q.Page.Offset == 0 && len(res.Objects) < q.Page.Limit {
			res.Total = len(res.Objects) // the whole set fits in this page: no need to count
			return nil
		}
		cstmt := "SELECT COUNT(*) FROM " + e.Table + " t"
		if where.SQL != "" {
			cstmt += " WHERE " + where.SQL
		}
		if res.Total, err = s.total(ctx, tx, cstmt, where.Args); err != nil {
			return unavailable("count "+e.Name, err)
		}
		return nil
	})
	return res, err
}

func (s *Store) orderBy(q *Query) (string, error) {
	if q.Sort == nil || len(q.Sort.Fields) == 0 {
		return "t.sourced_id", nil
	}
	dir := " ASC"
	if q.Sort.Desc {
		dir = " DESC"
	}
	var parts []string
	for _, name := range q.Sort.Fields {
		f, ok := q.Entity.Field(strings.TrimSuffix(name, ".sourcedId"))
		if !ok || q.hidden(f) {
			return "", sortError(q.Entity, name, "is not a field of "+q.Entity.Name)
		}
		switch {
		case f.Sensitive:
			return "", sortError(q.Entity, name, "is stored encrypted and cannot be sorted on")
		case f.Kind == records.KRef && name != f.Name+".sourcedId" && name != f.Name:
			return "", sortError(q.Entity, name, "is not a sortable field")
		case f.Kind == records.KRef, f.Kind <= records.KFloat:
			parts = append(parts, "t."+f.Column+dir+s.d.nullsLow(q.Sort.Desc))
		default:
			return "", sortError(q.Entity, name, "is a list or structure and cannot be sorted on")
		}
	}
	return strings.Join(append(parts, "t.sourced_id"+dir), ", "), nil
}

func sortError(e *records.Entity, name, why string) error {
	// invaliddata: OneRoster 1.2's imsx_codeMinorFieldValue has no invalid_sort_field (a 1.1 value).
	return &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "sort", Message: fmt.Sprintf("sort: %q %s", clipID(name), why)}
}

// scanBuf is a row's scan destinations, kept between rows in scanBufs.
type scanBuf struct {
	dest []any
	strs []sql.NullString
	nums []sql.NullFloat64
}

var scanBufs = sync.Pool{New: func() any { return new(scanBuf) }}

// sized returns the destinations for n columns.
func (b *scanBuf) sized(n int) ([]any, []sql.NullString, []sql.NullFloat64) {
	if cap(b.dest) < n {
		b.dest, b.strs, b.nums = make([]any, n), make([]sql.NullString, n), make([]sql.NullFloat64, n)
	}
	return b.dest[:n], b.strs[:n], b.nums[:n]
}

// put clears what the row left (its strings, the pointers to its sealed columns) and
// returns the buffer to the pool.
func (b *scanBuf) put() {
	clear(b.dest)
	clear(b.strs)
	clear(b.nums)
	scanBufs.Put(b)
}

// scan decodes one row into an object, opening the sealed fields the caller may see.
func (s *Store) scan(rows *sql.Rows, e *records.Entity, sl selectList, q *Query) (records.Object, error) {
	// One backing array per kind of destination, reused from row to row and request
	// to request, not one allocation per column.
	sb := scanBufs.Get().(*scanBuf)
	defer sb.put()
	n := len(sl.fields)
	dest, strs, nums := sb.sized(n)
	var sealed, wrapped []byte
	for i, f := range sl.fields {
		switch {
		case i == sl.sealed:
			dest[i] = &sealed
		case i == sl.wrapped:
			dest[i] = &wrapped
		case f.Kind == records.KFloat:
			dest[i] = &nums[i]
		default:
			dest[i] = &strs[i]
		}
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, unavailable("scan "+e.Name, err)
	}
	obj := make(records.Object, len(sl.fields))
	for i, f := range sl.fields {
		if f == nil {
			continue
		}
		if f.Kind == records.KFloat {
			if v := nums[i]; v.Valid {
				obj[f.Name] = v.Float64
			}
			continue
		}
		v := strs[i]
		if !v.Valid {
			continue
		}
		val, err := decodeColumn(f, v.String)
		if err != nil {
			return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("%s %s.%s: %w", e.Name, obj.ID(), f.Name, err)}
		}
		if val != nil {
			obj[f.Name] = val
		}
	}
	if len(sealed) > 0 && s.wantsSealed(e, q) {
		if err := s.openSealed(e, obj, sealed, wrapped, q); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

func (s *Store) wantsSealed(e *records.Entity, q *Query) bool {
	for i := range e.Fields {
		f := &e.Fields[i]
		if f.Sensitive && !q.hidden(f) && (len(q.Fields) == 0 || contains(q.Fields, f.Name)) {
			return true
		}
	}
	return false
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (s *Store) openSealed(e *records.Entity, obj records.Object, sealed, wrapped []byte, q *Query) error {
	subject := obj.Str(e.Subject)
	pt, err := s.vault.OpenFor(subject, wrapped, sealed, vault.Binding(e.Table, "sealed", obj.ID()))
	if err != nil {
		if len(wrapped) == 0 {
			// The subject's key was destroyed: the sealed fields are gone for good.
			return nil
		}
		return &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("%s %s: sealed fields: %w", e.Name, obj.ID(), err)}
	}
	strs, m, err := decodeSealedObject(pt)
	if err != nil {
		return &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("%s %s: sealed fields do not decode", e.Name, obj.ID())}
	}
	for name, v := range strs {
		f, ok := e.Field(name)
		if !ok || !f.Sensitive || q.hidden(f) || (len(q.Fields) > 0 && !contains(q.Fields, name)) {
			continue
		}
		switch f.Kind {
		case records.KFloat, records.KStrings, records.KRefs:
			return &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("%s %s.%s: sealed value does not decode", e.Name, obj.ID(), name)}
		case records.KJSON:
			obj[name] = json.RawMessage(`"` + v + `"`) // fastString: no quote or escape inside
		default:
			obj[name] = v
		}
	}
	for name, raw := range m {
		f, ok := e.Field(name)
		if !ok || !f.Sensitive || q.hidden(f) || (len(q.Fields) > 0 && !contains(q.Fields, name)) {
			continue
		}
		v, err := decodeSealed(f, raw)
		if err != nil {
			return &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("%s %s.%s: sealed value does not decode", e.Name, obj.ID(), name)}
		}
		obj[name] = v
	}
	return nil
}

func decodeColumn(f *records.Field, s string) (any, error) {
	switch f.Kind {
	case records.KRefs, records.KStrings, records.KChildren:
		l, err := decodeStrings(s)
		if err != nil {
			return nil, err
		}
		if len(l) == 0 && !f.Required {
			return nil, nil // an empty optional list is left out, as OneRoster examples do
		}
		return l, nil
	case records.KJSON:
		return json.RawMessage(s), nil
	case records.KRoles:
		return decodeRoles(s)
	}
	return s, nil
}

func decodeSealed(f *records.Field, raw json.RawMessage) (any, error) {
	switch f.Kind {
	case records.KFloat:
		var x float64
		err := json.Unmarshal(raw, &x)
		return x, err
	case records.KJSON:
		return raw, nil
	case records.KStrings, records.KRefs:
		var l []string
		err := json.Unmarshal(raw, &l)
		return l, err
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}
