package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"registrar/records"
	"registrar/sqlstore"
)

// caseloadRoutes: a counselor's caseload and the dependency flags of 34 CFR
// 99.31(a)(8) (issue 4; docs/access-control.md). Both change what someone may see,
// so only a district administrator (or an API client with the admin scope over a
// district or the installation: rc.scope.Admin()) sets, reads and clears them; a
// counselor may also read their own caseload. Everyone else gets 403 for every id,
// before any record is read. Ids outside the administrator's district answer 404 as
// ids that do not exist.
func (s *Server) caseloadRoutes() []*route {
	return []*route{
		{method: "PUT", pattern: "/v1/counselors/{id}/caseload", op: "putCaseload", h: s.putCaseload},
		{method: "GET", pattern: "/v1/counselors/{id}/caseload", op: "getCaseload", h: s.getCaseload},
		{method: "DELETE", pattern: "/v1/counselors/{id}/caseload", op: "deleteCaseload", h: s.deleteCaseload},
		{method: "GET", pattern: "/v1/students/{id}/dependents", op: "listDependents", h: s.listDependents},
		{method: "PUT", pattern: "/v1/students/{id}/dependents/{guardianId}", op: "putDependent", h: s.putDependent},
		{method: "DELETE", pattern: "/v1/students/{id}/dependents/{guardianId}", op: "deleteDependent", h: s.deleteDependent},
	}
}

// maxCaseload bounds a caseload: its students are bound into every query the
// counselor makes. Counselors' caseloads run to a few hundred students.
const maxCaseload = 1000

const (
	isCounselor = "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'counselor')"
	isGuardian  = "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role IN ('parent', 'guardian', 'relative'))"
	agentOf     = "(t.sourced_id IN (SELECT a.ref_id FROM user_agents a WHERE a.owner_id = ?) OR t.sourced_id IN (SELECT a.owner_id FROM user_agents a WHERE a.ref_id = ?))"
)

var errNotAdmin = &records.Error{Code: records.Forbidden, CodeMinor: "forbidden",
	Message: "only a district administrator, or an API client with the admin scope, may read or change caseloads and dependency flags"}

// exists answers 404 (as a missing record) unless id is a user the caller may see
// that satisfies cond.
func (s *Server) existsAs(ctx context.Context, tx *sqlstore.Tx, rc *reqCtx, what, cond string, id string, args ...any) error {
	pred := records.And(rc.scope.Rows(records.User), records.Predicate{SQL: cond, Args: args})
	notFound := &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("%s %q not found", what, clipPath(id))}
	if tx != nil {
		ok, err := tx.Exists(ctx, records.User, pred, id)
		if err != nil {
			return err
		}
		if !ok {
			return notFound
		}
		return nil
	}
	if err := s.store.Exists(ctx, records.User, pred, id); err != nil {
		if records.IsNotFound(err) {
			return notFound
		}
		return err
	}
	return nil
}

// caseloadBody is the body of PUT /v1/counselors/{id}/caseload.
type caseloadBody struct {
	Students []string `json:"students"`
}

func decodeCaseload(r *http.Request) ([]string, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var b caseloadBody
	if err := dec.Decode(&b); err != nil {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: `the body must be JSON of the form {"students": ["sourcedId", ...]}: ` + clipPath(err.Error())}
	}
	if dec.More() {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: "the body holds more than one JSON value"}
	}
	if len(b.Students) == 0 {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "students",
			Message: "students must list at least one student; DELETE /v1/counselors/{id}/caseload clears a caseload (the counselor then sees their schools)"}
	}
	if len(b.Students) > maxCaseload {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "students", Message: fmt.Sprintf("a caseload holds at most %d students, not %d", maxCaseload, len(b.Students))}
	}
	seen := map[string]bool{}
	var out []string
	var errs []records.FieldError
	for i, id := range b.Students {
		if err := records.ValidID(id); err != nil {
			errs = append(errs, records.FieldError{Field: fmt.Sprintf("students[%d]", i), Message: err.Error()})
			continue
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(errs) > 0 {
		return nil, records.InvalidFields("caseload", errs)
	}
	return out, nil
}

func (s *Server) putCaseload(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID = "caseload", id
	if !rc.scope.Admin() {
		s.fail(w, r, rc, errNotAdmin)
		return
	}
	students, err := decodeCaseload(r)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	var replaced bool
	var entries []sqlstore.CaseloadEntry
	err = s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		if err := s.existsAs(ctx, tx, rc, "counselor", isCounselor, id); err != nil {
			return err
		}
		var errs []records.FieldError
		for _, st := range students {
			if err := s.existsAs(ctx, tx, rc, "student", isStudent, st); err != nil {
				if !records.IsNotFound(err) {
					return err
				}
				errs = append(errs, records.FieldError{Field: "students", Message: fmt.Sprintf("refers to student %q which does not exist", clipPath(st))})
			}
		}
		if len(errs) > 0 {
			e := records.InvalidFields("caseload", errs)
			e.Message = fmt.Sprintf("the caseload refers to %d students which do not exist: %s", len(errs), errs[0].Message)
			return e
		}
		var err error
		if replaced, err = tx.SetCaseload(ctx, id, students, principalLabel(rc.p)); err != nil {
			return err
		}
		if entries, err = tx.CaseloadEntries(ctx, id); err != nil {
			return err
		}
		ev := rc.event
		ev.Students, ev.Count = students, len(students)
		ev.Outcome, ev.Status, ev.Detail = "ok", http.StatusCreated, "created"
		if replaced {
			ev.Status, ev.Detail = http.StatusOK, "replaced"
		}
		tx.Audit(ev)
		return nil
	})
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.audited = true
	status := http.StatusCreated
	if replaced {
		status = http.StatusOK
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]any{"counselor": id, "students": entries})
}

func (s *Server) getCaseload(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID = "caseload", id
	self := rc.p.Kind == "user" && rc.p.ID == id
	if !rc.scope.Admin() && !self {
		s.fail(w, r, rc, errNotAdmin)
		return
	}
	if !self {
		if err := s.existsAs(r.Context(), nil, rc, "counselor", isCounselor, id); err != nil {
			s.fail(w, r, rc, err)
			return
		}
	}
	entries, err := s.store.CaseloadEntries(r.Context(), id)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	for _, e := range entries {
		rc.event.Students = append(rc.event.Students, e.Student)
	}
	rc.event.Count = len(entries)
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"counselor": id, "students": entries})
}

func (s *Server) deleteCaseload(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID = "caseload", id
	if !rc.scope.Admin() {
		s.fail(w, r, rc, errNotAdmin)
		return
	}
	err := s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		if err := s.existsAs(ctx, tx, rc, "counselor", isCounselor, id); err != nil {
			return err
		}
		old, err := tx.CaseloadEntries(ctx, id)
		if err != nil {
			return err
		}
		had, err := tx.ClearCaseload(ctx, id)
		if err != nil {
			return err
		}
		if !had {
			return &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("counselor %q has no caseload", clipPath(id))}
		}
		ev := rc.event
		for _, e := range old {
			ev.Students = append(ev.Students, e.Student)
		}
		ev.Count = len(old)
		ev.Outcome, ev.Status, ev.Detail = "ok", http.StatusNoContent, "deleted"
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

// dependentRequest checks what every dependency-flag route needs: an administrator,
// and a student they may see.
func (s *Server) dependentRequest(ctx context.Context, tx *sqlstore.Tx, rc *reqCtx, student string) error {
	if !rc.scope.Admin() {
		return errNotAdmin
	}
	return s.existsAs(ctx, tx, rc, "student", isStudent, student)
}

func (s *Server) listDependents(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID = "dependent", id
	if err := s.dependentRequest(r.Context(), nil, rc, id); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	deps, err := s.store.Dependencies(r.Context(), id)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.event.Students, rc.event.Count = []string{id}, len(deps)
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"student": id, "dependents": deps})
}

func (s *Server) putDependent(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, guardian := r.PathValue("id"), r.PathValue("guardianId")
	rc.event.ResourceType, rc.event.ResourceID = "dependent", id+"/"+guardian
	if !rc.scope.Admin() {
		s.fail(w, r, rc, errNotAdmin)
		return
	}
	if body, err := readBody(r); err != nil {
		s.fail(w, r, rc, err)
		return
	} else if len(strings.TrimSpace(string(body))) > 0 && strings.TrimSpace(string(body)) != "{}" {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: "the body must be empty or {}: the path names the student and the guardian"})
		return
	}
	var d sqlstore.Dependency
	var created bool
	err := s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		if err := s.dependentRequest(ctx, tx, rc, id); err != nil {
			return err
		}
		if err := s.existsAs(ctx, tx, rc, "guardian", isGuardian, guardian); err != nil {
			return err
		}
		linked, err := tx.Exists(ctx, records.User, records.Predicate{SQL: agentOf, Args: []any{guardian, guardian}}, id)
		if err != nil {
			return err
		}
		if !linked {
			return &records.Error{Code: records.Conflict, CodeMinor: "invaliddata",
				Message: fmt.Sprintf("guardian %q is not linked to student %q in the roster (agents): record the relationship first", clipPath(guardian), clipPath(id))}
		}
		if d, created, err = tx.SetDependent(ctx, id, guardian, principalLabel(rc.p)); err != nil {
			return err
		}
		ev := rc.event
		ev.Students, ev.Count = []string{id}, 1
		ev.Outcome, ev.Status, ev.Detail = "ok", http.StatusCreated, "created"
		if !created {
			ev.Status, ev.Detail = http.StatusOK, "unchanged"
		}
		tx.Audit(ev)
		return nil
	})
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.audited = true
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/students/"+id+"/dependents/"+guardian)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, d)
}

func (s *Server) deleteDependent(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, guardian := r.PathValue("id"), r.PathValue("guardianId")
	rc.event.ResourceType, rc.event.ResourceID = "dependent", id+"/"+guardian
	if !rc.scope.Admin() {
		s.fail(w, r, rc, errNotAdmin)
		return
	}
	err := s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		if err := s.dependentRequest(ctx, tx, rc, id); err != nil {
			return err
		}
		had, err := tx.ClearDependent(ctx, id, guardian)
		if err != nil {
			return err
		}
		if !had {
			return &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("no dependency flag of student %q for guardian %q", clipPath(id), clipPath(guardian))}
		}
		ev := rc.event
		ev.Students, ev.Count = []string{id}, 1
		ev.Outcome, ev.Status, ev.Detail = "ok", http.StatusNoContent, "deleted"
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
