package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"registrar/audit"
	"registrar/authz"
	"registrar/records"
	"registrar/sqlstore"
)

// auditRoutes: the audit trail and the record of disclosures (issue 6).
func (s *Server) auditRoutes() []*route {
	return []*route{
		{method: "GET", pattern: "/v1/audit", op: "listAuditEvents", h: s.listAuditEvents},
		{method: "GET", pattern: "/v1/students/{id}/disclosures", op: "listDisclosures", h: s.listDisclosures},
	}
}

// notRequiredBy9932 are the legal bases whose disclosures 34 CFR 99.32(d) exempts from
// the record: school officials under 99.31(a)(1), parties with written consent, and
// directory information. Every other basis (studies, audit or evaluation, transfer,
// and any basis registrar does not know) must be recorded.
var notRequiredBy9932 = []string{authz.BasisSchoolOfficial, authz.BasisConsent, authz.BasisDirectory}

// disclosed says whether a successful request disclosed students' records, and if so
// which fields and whether 99.32 requires the entry. registrar records every read of
// students' records by an API client (a system outside the school's staff); reads by
// people (school staff under 99.31(a)(1), and parents and eligible students reading
// their own records) are in the audit trail but are not disclosures to record.
func disclosed(rc *reqCtx, ev *audit.Event) (fields []string, required, ok bool) {
	if rc.p == nil || rc.p.Kind != audit.KindClient || rc.route.method != http.MethodGet || len(ev.Students) == 0 || ev.Outcome != audit.OK {
		return nil, false, false
	}
	fields = ev.Fields
	if len(fields) == 0 {
		if e, ok := records.EntityNamed(ev.ResourceType); ok {
			fields = make([]string, 0, len(e.Fields))
			for i := range e.Fields {
				if f := &e.Fields[i]; rc.scope == nil || !rc.scope.Hidden(e, f) {
					fields = append(fields, f.Name)
				}
			}
		}
	}
	return fields, !slices.Contains(notRequiredBy9932, ev.LegalBasis), true
}

// auditRead makes a successful request's audit event durable. A read that discloses
// students' records is marked so, with the fields disclosed and whether 99.32 requires
// the entry; the record of disclosures is derived from that event (sqlstore's
// auditindex.go).
func (s *Server) auditRead(ctx context.Context, rc *reqCtx, ev audit.Event) error {
	if fields, required, ok := disclosed(rc, &ev); ok {
		ev.Disclosed, ev.DisclosureRequired, ev.Fields = true, required, fields
	}
	return s.store.Audit(ctx, ev)
}

// MaxAuditPage is the largest page of GET /v1/audit and of a record of disclosures.
const MaxAuditPage = 1000

func pageLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, &records.Error{Code: records.Invalid, Field: "limit", Message: "limit must be a positive integer"}
	}
	return min(n, MaxAuditPage), nil
}

func timeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.Parse(time.DateOnly, v); err == nil {
		return d, nil
	}
	return time.Time{}, &records.Error{Code: records.Invalid, Field: name, Message: name + " must be an RFC 3339 date-time or a date (YYYY-MM-DD)"}
}

// listAuditEvents is GET /v1/audit: the trail, newest first, for district
// administrators (and admin clients of the whole district). Filters: student,
// principal ("kind:id" or id), action, from, to (exclusive), chain; pages by cursor.
func (s *Server) listAuditEvents(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	rc.event.ResourceType = "auditEvent"
	if !rc.scope.Admin() {
		s.fail(w, r, rc, &records.Error{Code: records.Forbidden, Message: "the audit trail is open to district administrators only"})
		return
	}
	qv := r.URL.Query()
	for k := range qv {
		if !slices.Contains([]string{"student", "principal", "action", "from", "to", "chain", "limit", "cursor"}, k) {
			s.fail(w, r, rc, &records.Error{Code: records.Invalid, Field: k, Message: "unknown parameter " + clipPath(k) + "; filters are student, principal, action, from, to, chain, limit, cursor"})
			return
		}
	}
	q := sqlstore.AuditQuery{Student: qv.Get("student"), Principal: qv.Get("principal"), Action: qv.Get("action"), Chain: qv.Get("chain"), Cursor: qv.Get("cursor")}
	for _, k := range []string{"student", "principal", "action", "chain"} {
		if err := textParam(k, qv.Get(k)); err != nil {
			s.fail(w, r, rc, err)
			return
		}
	}
	var err error
	if q.Limit, err = pageLimit(qv); err == nil {
		if q.From, err = timeParam(qv, "from"); err == nil {
			q.To, err = timeParam(qv, "to")
		}
	}
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	events, next, err := s.store.AuditEvents(r.Context(), q)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	// Who looked into whose trail: the filters are the event's detail, the student
	// filter its student. The ids in the returned events are facts of access, not the
	// students' records.
	if q.Student != "" {
		rc.event.Students = []string{q.Student}
	}
	rc.event.Count = len(events)
	rc.event.Detail = filterDetail(qv)
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if events == nil {
		events = []audit.Entry{}
	}
	body := map[string]any{"events": events}
	if next != "" {
		nq := url.Values{}
		for k, v := range qv {
			nq[k] = v
		}
		nq.Set("cursor", next)
		body["next"] = next
		w.Header().Set("Link", "<"+s.base(r)+r.URL.Path+"?"+nq.Encode()+`>; rel="next"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, body)
}

func filterDetail(qv url.Values) string {
	var parts []string
	for _, k := range []string{"student", "principal", "action", "from", "to", "chain"} {
		if v := qv.Get(k); v != "" {
			parts = append(parts, k+"="+clipPath(v))
		}
	}
	return strings.Join(parts, "&")
}

// disclosureJSON is one entry of a record of disclosures as the API shows it.
type disclosureJSON struct {
	ID         int64  `json:"id"`
	Date       string `json:"date"`
	Party      party  `json:"party"`
	LegalBasis string `json:"legalBasis"`
	// Purpose is the party's legitimate interest in the records (99.32(a)(3)(ii)).
	Purpose     string   `json:"purpose,omitempty"`
	ContractRef string   `json:"contractRef,omitempty"`
	Records     disclRec `json:"records"`
	Required    bool     `json:"requiredBy99_32"`
	RequestID   string   `json:"requestId"`
}

type party struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

type disclRec struct {
	Type   string   `json:"type"`
	Fields []string `json:"fields"`
}

// listDisclosures is GET /v1/students/{id}/disclosures: the student's record of
// disclosures, for the parent of a minor student, the eligible student, and district
// administrators. Anyone else, and any student who does not exist, gets 404.
func (s *Server) listDisclosures(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID, rc.event.Students = "disclosure", id, []string{id}
	notFound := &records.Error{Code: records.NotFound, Message: "no student " + clipPath(id)}
	own := rc.p.Kind == audit.KindUser && !rc.scope.Denied() && slices.Contains(rc.scope.Students, id)
	if !own && !rc.scope.Admin() {
		s.fail(w, r, rc, notFound)
		return
	}
	if !own {
		// An administrator reads only the records of students inside their own scope
		// (a district administrator: their district), never another district's.
		pred := records.And(rc.scope.Rows(records.User), records.Predicate{SQL: isStudent})
		if err := s.store.Exists(r.Context(), records.User, pred, id); err != nil {
			if records.IsNotFound(err) {
				err = notFound
			}
			s.fail(w, r, rc, err)
			return
		}
	}
	qv := r.URL.Query()
	limit, err := pageLimit(qv)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	var before int64
	if v := qv.Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before < 1 {
			s.fail(w, r, rc, &records.Error{Code: records.Invalid, Field: "before", Message: "before must be the id of an entry"})
			return
		}
	}
	ds, err := s.store.Disclosures(r.Context(), id, limit+1, before)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	more := len(ds) > limit
	if more {
		ds = ds[:limit]
	}
	rc.event.Count = len(ds)
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	out := make([]disclosureJSON, 0, len(ds))
	for _, d := range ds {
		fields := d.Fields
		if fields == nil {
			fields = []string{}
		}
		out = append(out, disclosureJSON{ID: d.ID, Date: d.Time.UTC().Format(audit.TimeFormat), Party: party{d.PartyKind, d.PartyID, d.PartyName},
			LegalBasis: d.LegalBasis, Purpose: d.Purpose, ContractRef: d.ContractRef, Records: disclRec{d.ResourceType, fields}, Required: d.Required, RequestID: d.RequestID})
	}
	body := map[string]any{"student": id, "disclosures": out}
	if more {
		next := strconv.FormatInt(ds[len(ds)-1].ID, 10)
		body["next"] = next
		w.Header().Set("Link", "<"+s.base(r)+r.URL.Path+"?"+url.Values{"before": {next}, "limit": {strconv.Itoa(limit)}}.Encode()+`>; rel="next"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, body)
}
