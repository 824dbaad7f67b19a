package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"registrar/authz"
	"registrar/oneroster"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// MaxLimit is the largest page a client can ask for; larger limits are clamped.
const MaxLimit = 10000

// MaxPostObjects bounds the objects of one POST of a set.
const MaxPostObjects = 1000

// studentField names the field of each entity that identifies the student a row is
// about, for the audit trail.
var studentField = map[string]string{
	"user": "sourcedId", "demographics": "sourcedId", "enrollment": "user", "result": "student", "assessmentResult": "student",
}

func (s *Server) oneRosterRoute(or *orRoute) *route {
	method := map[orKind]string{orList: "GET", orGet: "GET", orPut: "PUT", orDelete: "DELETE", orPost: "POST"}[or.kind]
	rt := &route{method: method, pattern: or.base + or.path, op: or.op, oneRoster: true}
	switch or.kind {
	case orList:
		rt.h = func(w http.ResponseWriter, r *http.Request, rc *reqCtx) { s.orList(w, r, rc, or) }
	case orGet:
		rt.h = func(w http.ResponseWriter, r *http.Request, rc *reqCtx) { s.orGet(w, r, rc, or) }
	case orPut:
		rt.h = func(w http.ResponseWriter, r *http.Request, rc *reqCtx) { s.orPut(w, r, rc, or) }
	case orDelete:
		rt.h = func(w http.ResponseWriter, r *http.Request, rc *reqCtx) { s.orDelete(w, r, rc, or) }
	case orPost:
		rt.h = func(w http.ResponseWriter, r *http.Request, rc *reqCtx) { s.orPost(w, r, rc, or) }
	}
	return rt
}

func forbidden(e *records.Entity, what string) error {
	return &records.Error{Code: records.Forbidden, CodeMinor: "forbidden", Message: fmt.Sprintf("this token does not allow %s %s", what, e.Collection)}
}

func queryError(err error) error {
	if qe, ok := err.(*query.Error); ok {
		minor := qe.CodeMinor
		if minor == query.CodeInvalidSortField {
			minor = query.CodeInvalidData // OneRoster 1.2's imsx_codeMinorFieldValue has no invalid_sort_field
		}
		return &records.Error{Code: records.Invalid, CodeMinor: minor, Field: qe.Param, Message: qe.Error()}
	}
	return err
}

// hidden returns the field policy of the scope for entity e, as the store wants it.
func hidden(sc *authz.Scope, e *records.Entity) func(*records.Field) bool {
	return func(f *records.Field) bool { return sc.Hidden(e, f) }
}

// checkParents answers 404 unless every parent object in the path exists in scope.
func (s *Server) checkParents(ctx context.Context, r *http.Request, rc *reqCtx, or *orRoute) error {
	for _, p := range or.parents {
		id := r.PathValue(p.param)
		pred := rc.scope.Rows(p.entity)
		if !rc.scope.CanRead(p.entity) {
			pred = authz.Deny
		}
		if p.where != "" {
			var args []any
			for _, name := range p.params {
				args = append(args, r.PathValue(name))
			}
			pred = records.And(pred, records.Predicate{SQL: p.where, Args: args})
		}
		if err := s.store.Exists(ctx, p.entity, pred, id); err != nil {
			return err
		}
	}
	return nil
}

func relPredicate(r *http.Request, or *orRoute) []records.Predicate {
	var out []records.Predicate
	if or.fixed != "" {
		out = append(out, records.Predicate{SQL: or.fixed})
	}
	if or.rel != nil {
		var args []any
		for _, name := range or.rel.params {
			args = append(args, r.PathValue(name))
		}
		out = append(out, records.Predicate{SQL: or.rel.sql, Args: args})
	}
	return out
}

func parseFields(r *http.Request, e *records.Entity, sc *authz.Scope) ([]string, error) {
	raw := strings.Join(r.URL.Query()["fields"], ",")
	fields, err := query.ParseFields(raw)
	if err != nil {
		return nil, queryError(err)
	}
	for _, name := range fields {
		f, ok := e.Field(name)
		if !ok || sc.Hidden(e, f) {
			return nil, &records.Error{Code: records.Invalid, CodeMinor: "invalid_selection_field", Field: "fields",
				Message: fmt.Sprintf("fields: %q is not a field of %s; fields are: %s", clipPath(name), e.Name, strings.Join(visibleFieldNames(e, sc), ", "))}
		}
	}
	return fields, nil
}

// visibleFieldNames lists the fields of e the scope may read: a hidden field is
// answered as if it did not exist.
func visibleFieldNames(e *records.Entity, sc *authz.Scope) []string {
	var out []string
	for _, name := range e.FieldNames() {
		if f, _ := e.Field(name); !sc.Hidden(e, f) {
			out = append(out, name)
		}
	}
	return out
}

func touched(e *records.Entity, objs ...records.Object) []string {
	field := studentField[e.Name]
	if field == "" {
		return nil
	}
	out := make([]string, 0, len(objs))
	seen := make(map[string]bool, len(objs))
	for _, o := range objs {
		if id := o.Str(field); id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func (s *Server) base(r *http.Request) string {
	if s.baseURL != "" {
		return s.baseURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) orList(w http.ResponseWriter, r *http.Request, rc *reqCtx, or *orRoute) {
	ctx := r.Context()
	e := or.entity
	rc.event.ResourceType = e.Name
	if !rc.scope.CanRead(e) {
		s.fail(w, r, rc, forbidden(e, "reading"))
		return
	}
	qv := r.URL.Query()
	page, err := query.ParsePage(qv.Get("limit"), qv.Get("offset"), MaxLimit)
	if err != nil {
		s.fail(w, r, rc, queryError(err))
		return
	}
	sort, err := query.ParseSort(qv.Get("sort"), qv.Get("orderBy"))
	if err != nil {
		s.fail(w, r, rc, queryError(err))
		return
	}
	filter, err := query.ParseFilter(qv.Get("filter"))
	if err != nil {
		s.fail(w, r, rc, queryError(err))
		return
	}
	fields, err := parseFields(r, e, rc.scope)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if err := s.checkParents(ctx, r, rc, or); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	res, err := s.store.List(ctx, sqlstore.Query{Entity: e, Scope: rc.scope.Rows(e), Where: relPredicate(r, or),
		Filter: filter, Sort: sort, Page: page, Hidden: hidden(rc.scope, e), Fields: fields})
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.event.Students = touched(e, res.Objects...)
	rc.event.Count = len(res.Objects)
	rc.event.Fields = fields
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	enc := oneroster.Encoder{Base: s.base(r)}
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	buf = append(buf, '{', '"')
	buf = append(buf, e.Collection...)
	buf = append(buf, '"', ':', '[')
	for i, o := range res.Objects {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = enc.AppendObject(buf, e, o, fields)
	}
	buf = append(buf, ']', '}', '\n')
	*bp = buf
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Total-Count", strconv.Itoa(res.Total))
	if link := linkHeader(s.base(r), r.URL, page, res.Total); link != "" {
		h.Set("Link", link)
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf) // the client went away: nothing to do
}

// linkHeader builds RFC 8288 links to the first, previous, next and last pages.
func linkHeader(base string, u *url.URL, page query.Page, total int) string {
	mk := func(offset int, rel string) string {
		q := u.Query()
		q.Set("limit", strconv.Itoa(page.Limit))
		q.Set("offset", strconv.Itoa(offset))
		return "<" + base + u.Path + "?" + q.Encode() + `>; rel="` + rel + `"`
	}
	var links []string
	last := 0
	if total > 0 {
		last = (total - 1) / page.Limit * page.Limit
	}
	links = append(links, mk(0, "first"))
	if page.Offset > 0 {
		prev := page.Offset - page.Limit
		if prev < 0 {
			prev = 0
		}
		links = append(links, mk(prev, "prev"))
	}
	if page.Offset+page.Limit < total {
		links = append(links, mk(page.Offset+page.Limit, "next"))
	}
	links = append(links, mk(last, "last"))
	return strings.Join(links, ", ")
}

func (s *Server) orGet(w http.ResponseWriter, r *http.Request, rc *reqCtx, or *orRoute) {
	e := or.entity
	id := r.PathValue("sourcedId")
	rc.event.ResourceType, rc.event.ResourceID = e.Name, id
	if !rc.scope.CanRead(e) {
		s.fail(w, r, rc, forbidden(e, "reading"))
		return
	}
	fields, err := parseFields(r, e, rc.scope)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	obj, err := s.store.Get(r.Context(), sqlstore.Query{Entity: e, Scope: rc.scope.Rows(e), Where: relPredicate(r, or), Hidden: hidden(rc.scope, e), Fields: fields}, id)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.event.Students = touched(e, obj)
	rc.event.Count = 1
	rc.event.Fields = fields
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	s.writeSingle(w, r, http.StatusOK, e, obj, fields)
}

func (s *Server) writeSingle(w http.ResponseWriter, r *http.Request, status int, e *records.Entity, obj records.Object, fields []string) {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	buf = append(buf, '{', '"')
	buf = append(buf, e.Single...)
	buf = append(buf, '"', ':')
	buf = oneroster.Encoder{Base: s.base(r)}.AppendObject(buf, e, obj, fields)
	buf = append(buf, '}', '\n')
	*bp = buf
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf) // the client went away: nothing to do
}

// bufs holds response buffers. A response is encoded whole, so that its status can
// still change while it is built, then copied into the connection's writer; its
// buffer then serves the next response instead of becoming garbage (a user is 2-3
// KiB of JSON, a class roster 30 times that, a default page of 100 more). Only what
// a response appends is sent.
var bufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf: a larger buffer (a page of 1,000 objects) is left to the collector.
const maxPooledBuf = 1 << 20

func getBuf() *[]byte { return bufs.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufs.Put(b)
}

// readBody reads a JSON request body, requiring the JSON content type.
func readBody(r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: "Content-Type must be application/json, not " + clipPath(ct)}
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// writable checks that, after a write, the object is one the caller could read: a
// teacher cannot create a line item in someone else's class, nor move one out of theirs.
func writable(ctx context.Context, tx *sqlstore.Tx, sc *authz.Scope, e *records.Entity, id string) error {
	ok, err := tx.Exists(ctx, e, sc.Rows(e), id)
	if err != nil {
		return err
	}
	if !ok {
		return &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("%s %q not found", e.Name, clipPath(id))}
	}
	return nil
}

// checkRefsVisible requires every object that a written object refers to be visible
// to the writer: a reference is not a way to learn that an id exists.
func checkRefsVisible(ctx context.Context, tx *sqlstore.Tx, sc *authz.Scope, e *records.Entity, obj records.Object) error {
	var problems []records.FieldError
	for i := range e.Fields {
		f := &e.Fields[i]
		if f.Kind != records.KRef {
			continue
		}
		id := obj.Str(f.Name)
		if id == "" {
			continue
		}
		te, _ := records.EntityNamed(f.Target)
		if te == e && id == obj.ID() {
			continue
		}
		// Rows, not CanRead: a writer without a read scope of the target (a
		// gradebook-only client) still reaches only the targets of its orgs, so the
		// answer never tells whether an id exists elsewhere.
		ok, err := tx.Exists(ctx, te, sc.Rows(te), id)
		if err != nil {
			return err
		}
		if !ok {
			problems = append(problems, records.FieldError{Field: f.Name, Message: fmt.Sprintf("refers to %s %q, which does not exist", te.Name, clipPath(id))})
		}
	}
	if len(problems) > 0 {
		return records.InvalidFields(e.Name+" "+clipPath(obj.ID()), problems)
	}
	return nil
}

// consistency rules between the references of a gradebook object: each names a
// field, the object its reference leads to, and the field there that must agree.
// Access by school follows the line item's school, so a line item whose school is not
// its class's school would show one school's results to another.
var consistency = map[string][]struct{ field, via, viaField, want string }{
	"lineItem":         {{field: "school", via: "class", viaField: "school"}},
	"result":           {{field: "class", via: "lineItem", viaField: "class"}, {field: "student", want: "student"}},
	"assessmentResult": {{field: "student", want: "student"}},
}

func consistent(ctx context.Context, tx *sqlstore.Tx, e *records.Entity, obj records.Object) error {
	var problems []records.FieldError
	for _, rule := range consistency[e.Name] {
		id := obj.Str(rule.field)
		if id == "" {
			continue
		}
		if rule.want == "student" {
			ok, err := tx.Exists(ctx, records.User, records.Predicate{SQL: "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student')"}, id)
			if err != nil {
				return err
			}
			if !ok {
				problems = append(problems, records.FieldError{Field: rule.field, Message: fmt.Sprintf("user %q is not a student", clipPath(id))})
			}
			continue
		}
		f, _ := e.Field(rule.via)
		via, _ := records.EntityNamed(f.Target)
		other, err := tx.Get(ctx, via, records.Predicate{}, obj.Str(rule.via))
		if err != nil {
			if records.IsNotFound(err) {
				continue // reported by the reference check
			}
			return err
		}
		if have := other.Str(rule.viaField); have != id {
			problems = append(problems, records.FieldError{Field: rule.field, Message: fmt.Sprintf("is %q but the %s's %s is %q", clipPath(id), rule.via, rule.viaField, clipPath(have))})
		}
	}
	if len(problems) > 0 {
		return records.InvalidFields(e.Name+" "+clipPath(obj.ID()), problems)
	}
	return nil
}

func (s *Server) putOne(ctx context.Context, tx *sqlstore.Tx, sc *authz.Scope, e *records.Entity, obj records.Object) (sqlstore.PutResult, error) {
	id := obj.ID()
	exists, err := tx.Exists(ctx, e, records.Predicate{}, id)
	if err != nil {
		return 0, err
	}
	if exists {
		if err := writable(ctx, tx, sc, e, id); err != nil {
			return 0, err
		}
	}
	if errs := records.Validate(e, obj); len(errs) > 0 {
		return 0, records.InvalidFields(e.Name, errs)
	}
	if err := checkRefsVisible(ctx, tx, sc, e, obj); err != nil {
		return 0, err
	}
	if err := consistent(ctx, tx, e, obj); err != nil {
		return 0, err
	}
	res, err := tx.Put(ctx, e, obj, sqlstore.PutOptions{})
	if err != nil {
		return 0, err
	}
	return res, writable(ctx, tx, sc, e, id)
}

func (s *Server) orPut(w http.ResponseWriter, r *http.Request, rc *reqCtx, or *orRoute) {
	e := or.entity
	id := r.PathValue("sourcedId")
	rc.event.ResourceType, rc.event.ResourceID = e.Name, id
	if !rc.scope.CanWrite(e, authz.WritePut) {
		s.fail(w, r, rc, forbidden(e, "writing"))
		return
	}
	if err := records.ValidID(id); err != nil {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: "sourcedId in the path " + err.Error()})
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	obj, err := oneroster.Decode(e, bytes.NewReader(body))
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if bid := obj.ID(); bid != "" && bid != id {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: fmt.Sprintf("sourcedId %q in the body differs from %q in the path", clipPath(bid), clipPath(id))})
		return
	}
	obj["sourcedId"] = id
	if obj.Str("status") == "" {
		obj["status"] = records.StatusActive
	}
	var stored records.Object
	var result sqlstore.PutResult
	err = s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		var err error
		if result, err = s.putOne(ctx, tx, rc.scope, e, obj); err != nil {
			return err
		}
		if stored, err = tx.Get(ctx, e, records.Predicate{}, id); err != nil {
			return err
		}
		ev := rc.event
		ev.Students = touched(e, stored)
		ev.Outcome, ev.Status = "ok", statusFor(result)
		ev.Detail = map[sqlstore.PutResult]string{sqlstore.Created: "created", sqlstore.Updated: "replaced"}[result]
		tx.Audit(ev)
		return nil
	})
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.audited = true
	s.writeSingle(w, r, statusFor(result), e, stored, nil)
}

func statusFor(r sqlstore.PutResult) int {
	if r == sqlstore.Created {
		return http.StatusCreated
	}
	return http.StatusOK
}

// cascades: deleting one of these deletes the objects that belong to it.
var cascades = map[string][]struct {
	entity *records.Entity
	column string
}{
	"lineItem":           {{records.Result, "line_item_id"}},
	"assessmentLineItem": {{records.AssessmentResult, "assessment_line_item_id"}},
}

func (s *Server) orDelete(w http.ResponseWriter, r *http.Request, rc *reqCtx, or *orRoute) {
	e := or.entity
	id := r.PathValue("sourcedId")
	rc.event.ResourceType, rc.event.ResourceID = e.Name, id
	if !rc.scope.CanWrite(e, authz.WriteDelete) {
		s.fail(w, r, rc, forbidden(e, "deleting"))
		return
	}
	err := s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		if err := writable(ctx, tx, rc.scope, e, id); err != nil {
			return err
		}
		old, err := tx.Get(ctx, e, records.Predicate{}, id)
		if err != nil {
			return err
		}
		students := touched(e, old)
		for _, c := range cascades[e.Name] {
			ids, err := tx.IDs(ctx, c.entity, c.column, id)
			if err != nil {
				return err
			}
			for _, cid := range ids {
				child, err := tx.Get(ctx, c.entity, records.Predicate{}, cid)
				if err != nil {
					return err
				}
				students = append(students, touched(c.entity, child)...)
				if err := tx.Delete(ctx, c.entity, cid); err != nil {
					return err
				}
			}
		}
		refs, err := tx.Referrers(ctx, e, id)
		if err != nil {
			return err
		}
		if len(refs) > 0 {
			return &records.Error{Code: records.Conflict, CodeMinor: "invaliddata",
				Message: fmt.Sprintf("%s %q is still referred to by %s; delete or change those first", e.Name, clipPath(id), strings.Join(refs, ", "))}
		}
		if err := tx.Delete(ctx, e, id); err != nil {
			return err
		}
		ev := rc.event
		ev.Students, ev.Outcome, ev.Status = students, "ok", http.StatusNoContent
		tx.Audit(ev)
		return nil
	})
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.audited = true
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) orPost(w http.ResponseWriter, r *http.Request, rc *reqCtx, or *orRoute) {
	e := or.entity
	rc.event.ResourceType = e.Name
	if !rc.scope.CanWrite(e, authz.WritePost) {
		s.fail(w, r, rc, forbidden(e, "creating"))
		return
	}
	if err := s.checkParents(r.Context(), r, rc, or); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	var envelope map[string][]json.RawMessage
	if err := json.Unmarshal(body, &envelope); err != nil || len(envelope) != 1 || envelope[e.Collection] == nil {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: fmt.Sprintf("body must be {%q: [...]}", e.Collection)})
		return
	}
	items := envelope[e.Collection]
	if len(items) == 0 || len(items) > MaxPostObjects {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: fmt.Sprintf("%s must hold 1 to %d objects", e.Collection, MaxPostObjects)})
		return
	}
	type pair struct {
		Supplied  string `json:"suppliedSourcedId"`
		Allocated string `json:"allocatedSourcedId"`
	}
	var pairs []pair
	objs := make([]records.Object, 0, len(items))
	for i, raw := range items {
		obj, err := oneroster.DecodeObject(e, raw)
		if err != nil {
			re := asRecordsError(err)
			re.Message = fmt.Sprintf("%s[%d]: %s", e.Collection, i, re.Message)
			s.fail(w, r, rc, re)
			return
		}
		supplied := obj.ID()
		obj["sourcedId"] = vault.RandomID()
		pairs = append(pairs, pair{supplied, obj.ID()})
		for field, param := range or.force {
			v := r.PathValue(param)
			if have := obj.Str(field); have != "" && have != v {
				s.fail(w, r, rc, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: fmt.Sprintf("%s[%d]: %s %q differs from %q in the path", e.Collection, i, field, clipPath(have), clipPath(v))})
				return
			}
			obj[field] = v
		}
		if obj.Str("status") == "" {
			obj["status"] = records.StatusActive
		}
		objs = append(objs, obj)
	}
	err = s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		var students []string
		for i, obj := range objs {
			if e == records.Result && or.op == "postResultsForAcademicSessionForClass" {
				li, err := tx.Get(ctx, records.LineItem, records.Predicate{SQL: "t.class_id = ?", Args: []any{r.PathValue("classSourcedId")}}, obj.Str("lineItem"))
				if err != nil {
					return &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: fmt.Sprintf("%s[%d]: lineItem %q is not a line item of this class", e.Collection, i, clipPath(obj.Str("lineItem")))}
				}
				as := r.PathValue("academicSessionSourcedId")
				if li.Str("academicSession") != as && li.Str("gradingPeriod") != as {
					return &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: fmt.Sprintf("%s[%d]: lineItem %q is not in academic session %q", e.Collection, i, clipPath(obj.Str("lineItem")), clipPath(as))}
				}
			}
			if _, err := s.putOne(ctx, tx, rc.scope, e, obj); err != nil {
				re := asRecordsError(err)
				return &records.Error{Code: re.Code, CodeMinor: re.CodeMinor, Message: fmt.Sprintf("%s[%d]: %s", e.Collection, i, re.Message), Details: re.Details, Err: re.Err}
			}
			students = append(students, touched(e, obj)...)
		}
		ev := rc.event
		ev.Students, ev.Count, ev.Outcome, ev.Status = students, len(objs), "ok", http.StatusCreated
		tx.Audit(ev)
		return nil
	})
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.audited = true
	writeJSON(w, http.StatusCreated, map[string]any{"sourcedIdPairs": pairs})
}
