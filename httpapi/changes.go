package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"registrar/authz"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/stream"
)

// changesRoutes: the change feed for API clients (Ed-Fi-style change queries, deletes
// included), the embedded inbox where an SIS puts change events, and the dead letters
// of events that could not be applied (docs/stream.md).
func (s *Server) changesRoutes() []*route {
	return []*route{
		{method: "GET", pattern: "/v1/changes", op: "getChanges", h: s.getChanges},
		{method: "POST", pattern: "/v1/events", op: "putEvents", h: s.putEvents},
		{method: "GET", pattern: "/v1/stream/dead-letters", op: "getDeadLetters", h: s.getDeadLetters},
	}
}

// Limits of the change feed.
const (
	DefaultChangesLimit = 500
	MaxChangesLimit     = 5000
	MaxEventsPerPost    = 500
)

// changeToken is the feed position as clients see it: opaque, so its form can change.
func changeToken(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c1:" + strconv.FormatInt(id, 10)))
}

func parseChangeToken(tok string) (int64, error) {
	if tok == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil && strings.HasPrefix(string(b), "c1:") {
		if id, err := strconv.ParseInt(string(b[3:]), 10, 64); err == nil && id >= 0 {
			return id, nil
		}
	}
	return 0, &records.Error{Code: records.Invalid, Field: "since", Message: "since: not a token this server issued (use the next token of a previous answer, or leave it out to start from the beginning)"}
}

// deletedRows is the authorization of a deleted row: it matches the scoping keys the
// store kept when the row was deleted (sqlstore.Scope*), each against the part of the
// scope that the policy in authz/policy.go uses for that key. The result is a
// predicate over change_scopes, alias cs.
func deletedRows(sc *authz.Scope) records.Predicate {
	if sc.Denied() {
		return authz.Deny
	}
	if sc.Unrestricted {
		return records.Predicate{}
	}
	in := func(n int) string { return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")" }
	parts := []string{"cs.kind = '" + sqlstore.ScopeGlobal + "'"}
	var args []any
	if n := len(sc.Orgs); n > 0 {
		parts = append(parts,
			"(cs.kind = '"+sqlstore.ScopeOrg+"' AND cs.value IN "+in(n)+")",
			"(cs.kind = '"+sqlstore.ScopeOrgOrUp+"' AND (cs.value IN "+in(n)+" OR cs.value IN (SELECT o.parent_id FROM orgs o WHERE o.sourced_id IN "+in(n)+")))",
			"cs.kind = '"+sqlstore.ScopeAnySchool+"'")
		for range 3 { // the three lists above
			for _, o := range sc.Orgs {
				args = append(args, o)
			}
		}
	}
	if sc.Teacher != "" {
		parts = append(parts, "(cs.kind = '"+sqlstore.ScopeClass+"' AND cs.value IN (SELECT tc.class_id FROM enrollments tc WHERE tc.user_id = ? AND tc.role IN ('teacher', 'administrator', 'proctor') AND tc.status = 'active'))")
		args = append(args, sc.Teacher)
	}
	if n := len(sc.Students); n > 0 {
		parts = append(parts,
			"(cs.kind = '"+sqlstore.ScopeStudent+"' AND cs.value IN "+in(n)+")",
			"(cs.kind = '"+sqlstore.ScopeSClass+"' AND cs.value IN (SELECT se.class_id FROM enrollments se WHERE se.user_id IN "+in(n)+" AND se.status = 'active'))")
		for range 2 {
			for _, st := range sc.Students {
				args = append(args, st)
			}
		}
	}
	if sc.P.Kind == "user" {
		parts = append(parts, "(cs.kind = '"+sqlstore.ScopeSelf+"' AND cs.value = ?)")
		args = append(args, sc.P.ID)
	}
	return records.Predicate{SQL: strings.Join(parts, " OR "), Args: args}
}

// getChanges is GET /v1/changes?since=TOKEN&limit=N: the changes after the token to
// rows the caller may read now (an upsert while the row exists in scope, a delete when
// the row was in scope as it was deleted), oldest first, with the token to ask from
// next. Ids and change types only: the client reads the objects it wants through
// OneRoster, under the same authorization.
func (s *Server) getChanges(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	q := r.URL.Query()
	since, err := parseChangeToken(q.Get("since"))
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	limit := DefaultChangesLimit
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 {
			s.fail(w, r, rc, &records.Error{Code: records.Invalid, Field: "limit", Message: "limit: must be a whole number, at least 1"})
			return
		}
		limit = min(limit, MaxChangesLimit)
	}
	var ents []sqlstore.FeedEntity
	del := deletedRows(rc.scope)
	for _, e := range records.Entities {
		if rc.scope.CanRead(e) {
			ents = append(ents, sqlstore.FeedEntity{Entity: e, Rows: rc.scope.Rows(e), Deleted: del})
		}
	}
	page, err := s.store.ChangeFeed(r.Context(), since, limit, ents)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	type change struct {
		Entity    string `json:"entity"`
		SourcedID string `json:"sourcedId"`
		Op        string `json:"op"`
		Time      string `json:"time"`
	}
	out := make([]change, len(page.Changes))
	var students []string
	for i, c := range page.Changes {
		out[i] = change{c.Entity, c.SourcedID, c.Op, c.Time}
		if c.Entity == "user" || c.Entity == "demographics" {
			students = append(students, c.SourcedID)
		}
	}
	rc.event.ResourceType, rc.event.Count, rc.event.Students = "change", len(out), students
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"changes": out, "next": changeToken(page.Next), "more": page.More})
}

// putEvents is POST /v1/events {"events": [event, ...]}: an SIS (a registered client)
// puts change events on the embedded inbox. Their envelopes are checked here; the
// worker applies them with this client's scope and audits each one.
func (s *Server) putEvents(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if rc.p.Kind != "client" {
		s.fail(w, r, rc, &records.Error{Code: records.Forbidden, Message: "change events are put by a registered API client (the SIS), not by a person"})
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	var envelope struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&envelope); err != nil || len(envelope.Events) == 0 || len(envelope.Events) > MaxEventsPerPost {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, Message: fmt.Sprintf(`body must be {"events": [...]} with 1 to %d events (docs/stream.md)`, MaxEventsPerPost)})
		return
	}
	msgs := make([]stream.Message, len(envelope.Events))
	for i, raw := range envelope.Events {
		ev, err := stream.ParseEvent(raw)
		if err != nil {
			s.fail(w, r, rc, &records.Error{Code: records.Invalid, Message: fmt.Sprintf("events[%d]: %s", i, err.Error())})
			return
		}
		msgs[i] = stream.Message{Key: ev.Entity + "/" + ev.SourcedID, Data: raw, Producer: rc.p.ID}
	}
	if err := stream.NewEmbedded(s.store, stream.InboxName, 0).Put(r.Context(), msgs); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.event.ResourceType, rc.event.Count = "event", len(msgs)
	if err := s.commitAudit(r, rc, http.StatusAccepted); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"accepted": len(msgs)})
}

// getDeadLetters is GET /v1/stream/dead-letters?after=ID&limit=N: events the worker
// could not apply, with the reason (administrators only; payloads stay sealed).
func (s *Server) getDeadLetters(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if !rc.scope.Admin() {
		s.fail(w, r, rc, &records.Error{Code: records.Forbidden, Message: "the dead letters are for district administrators"})
		return
	}
	q := r.URL.Query()
	after, err1 := strconv.ParseInt(cmpOr(q.Get("after"), "0"), 10, 64)
	limit, err2 := strconv.Atoi(cmpOr(q.Get("limit"), "100"))
	if err1 != nil || err2 != nil || after < 0 || limit < 1 {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, Message: "after and limit must be whole numbers"})
		return
	}
	dls, err := s.store.DeadLetters(r.Context(), after, min(limit, 1000))
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	type deadLetter struct {
		ID        int64  `json:"id"`
		Source    string `json:"source"`
		Position  string `json:"position"`
		EventID   string `json:"eventId,omitempty"`
		Entity    string `json:"entity,omitempty"`
		SourcedID string `json:"sourcedId,omitempty"`
		Op        string `json:"op,omitempty"`
		Reason    string `json:"reason"`
		Time      string `json:"time"`
	}
	out := make([]deadLetter, len(dls))
	for i, d := range dls {
		out[i] = deadLetter{d.ID, d.Source, d.Position, d.EventID, d.Entity, d.SourcedID, d.Op, d.Reason, records.FormatDateTime(d.Time)}
	}
	rc.event.ResourceType, rc.event.Count = "deadLetter", len(out)
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadLetters": out})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
