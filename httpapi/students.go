package httpapi

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"

	"registrar/audit"
	"registrar/authz"
	"registrar/documents"
	"registrar/records"
	"registrar/sqlstore"
)

// Students is what the per-student routes need beyond the store; main sets it.
type Students struct {
	// Documents is the encrypted document folder; nil answers 503 on document routes.
	Documents *documents.Store
	// Signer signs deletion certificates (the vault); nil answers 503 on purge.
	Signer sqlstore.CertificateSigner
}

// uploadCeiling is the route's body limit: the document folder applies its own,
// configured limit (Options.MaxSize), which may be raised up to this.
const uploadCeiling = 1 << 30

// studentRoutes: a student's documents, and their deletion (issue 5).
//
// Documents follow the student: whoever may read the student (the scope's user rows)
// may read their documents; school officials who may write student records
// (teachers, counselors, school and district administrators) may add and remove
// them; parents and students may only read. API clients need the admin scope: a
// roster scope does not reach a student's IEP. Deletion is for district
// administrators (rc.scope.Admin()).
func (s *Server) studentRoutes() []*route {
	return []*route{
		{method: "PUT", pattern: "/v1/students/{id}/documents/{name}", op: "putDocument", maxBody: uploadCeiling, h: s.putDocument},
		{method: "GET", pattern: "/v1/students/{id}/documents/{name}", op: "getDocument", h: s.getDocument},
		{method: "DELETE", pattern: "/v1/students/{id}/documents/{name}", op: "deleteDocument", h: s.deleteDocument},
		{method: "DELETE", pattern: "/v1/students/{id}", op: "purgeStudent", h: s.purgeStudent},
	}
}

var errNoDocuments = &records.Error{Code: records.Unavailable, Message: "documents are not configured on this server"}

// visibleStudent answers 404 unless id is a student the caller may read.
func (s *Server) visibleStudent(ctx context.Context, rc *reqCtx, id string) error {
	if rc.p.Kind == "client" && !rc.scope.Admin() {
		return &records.Error{Code: records.Forbidden, CodeMinor: "forbidden", Message: "this token does not allow reading student documents; it needs the admin scope"}
	}
	pred := records.And(rc.scope.Rows(records.User), records.Predicate{SQL: isStudent})
	if !rc.scope.CanRead(records.User) && !rc.scope.Admin() {
		pred = authz.Deny
	}
	if err := s.store.Exists(ctx, records.User, pred, id); err != nil {
		var re *records.Error
		if errors.As(err, &re) && re.Code == records.NotFound {
			return &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("student %q not found", clipPath(id))}
		}
		return err
	}
	return nil
}

// mayWriteDocuments reports whether the caller may add or remove a student's documents.
func mayWriteDocuments(sc *authz.Scope) bool {
	if sc.P.Kind == "client" {
		return sc.Admin()
	}
	return sc.CanWrite(records.Result, authz.WritePut)
}

// documentRequest checks what every document route needs and returns the student and
// document name.
func (s *Server) documentRequest(r *http.Request, rc *reqCtx, write bool) (id, name string, err error) {
	id, name = r.PathValue("id"), r.PathValue("name")
	rc.event.ResourceType, rc.event.ResourceID = "document", name
	if err := documents.ValidName(name); err != nil {
		return "", "", err
	}
	if err := s.visibleStudent(r.Context(), rc, id); err != nil {
		return "", "", err
	}
	if write && !mayWriteDocuments(rc.scope) {
		return "", "", &records.Error{Code: records.Forbidden, CodeMinor: "forbidden", Message: "this token does not allow changing a student's documents"}
	}
	if s.Students.Documents == nil {
		return "", "", errNoDocuments
	}
	rc.event.Students = []string{id}
	return id, name, nil
}

// auditWrite makes a write's audit event durable before the response.
func (s *Server) auditWrite(r *http.Request, rc *reqCtx, status int, detail string) error {
	ev := rc.event
	ev.Outcome, ev.Status, ev.Detail = audit.OK, status, detail
	rc.audited = true
	return s.store.Audit(context.WithoutCancel(r.Context()), ev)
}

func (s *Server) putDocument(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, name, err := s.documentRequest(r, rc, true)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	docs := s.Students.Documents
	var wrapped []byte
	// The key is made durable before anything is encrypted under it.
	if err := s.store.Write(r.Context(), func(ctx context.Context, tx *sqlstore.Tx) error {
		var err error
		wrapped, err = tx.DocumentKey(ctx, id)
		return err
	}); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, docs.MaxSize()+1)
	p, err := docs.Put(r.Context(), id, name, wrapped, r.Header.Get("Content-Type"), r.Body)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	status, detail := http.StatusCreated, "created"
	if p.Replace {
		status, detail = http.StatusOK, "replaced"
	}
	rc.event.Count = 1
	if err := s.auditWrite(r, rc, status, detail); err != nil {
		p.Abort()
		rc.audited = false
		s.fail(w, r, rc, err)
		return
	}
	if err := p.Commit(); err != nil {
		rc.audited = false // the event said it was stored: record that it was not
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Location", "/v1/students/"+id+"/documents/"+name)
	writeJSON(w, status, map[string]any{"student": id, "document": p.Info})
}

func (s *Server) getDocument(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, name, err := s.documentRequest(r, rc, false)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	notFound := &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("document %q of student %q not found", name, clipPath(id))}
	wrapped, ok, err := s.store.DocumentKey(r.Context(), id)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if !ok {
		s.fail(w, r, rc, notFound)
		return
	}
	doc, err := s.Students.Documents.Get(id, name, wrapped)
	switch {
	case errors.Is(err, documents.ErrNotFound):
		s.fail(w, r, rc, notFound)
		return
	case err != nil:
		s.fail(w, r, rc, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("document %s of %s: %w", name, id, err)})
		return
	}
	defer doc.Close()
	rc.event.Count, rc.event.Fields = 1, []string{"content"}
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", doc.Info.ContentType)
	h.Set("Content-Length", strconv.FormatInt(doc.Info.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if t, err := time.Parse(time.RFC3339Nano, doc.Info.CreatedAt); err == nil {
		h.Set("Last-Modified", t.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusOK)
	// WriteTo holds back the last chunk until the whole file verified: a tampered file
	// ends the response short of its Content-Length, which the client sees as an error.
	if _, err := doc.WriteTo(w); err != nil {
		if errors.Is(err, documents.ErrTampered) {
			s.log.Error("document does not decrypt; response cut short", "request_id", rc.id, "err", err)
		} else {
			s.log.Info("document download ended early", "request_id", rc.id, "err", err)
		}
	}
}

func (s *Server) deleteDocument(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id, name, err := s.documentRequest(r, rc, true)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	docs := s.Students.Documents
	ok, err := docs.Exists(id, name)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if !ok {
		s.fail(w, r, rc, &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: fmt.Sprintf("document %q of student %q not found", name, clipPath(id))})
		return
	}
	rc.event.Count = 1
	if err := s.auditWrite(r, rc, http.StatusNoContent, "deleted"); err != nil {
		rc.audited = false
		s.fail(w, r, rc, err)
		return
	}
	if err := docs.Delete(id, name); err != nil && !errors.Is(err, documents.ErrNotFound) {
		rc.audited = false
		s.fail(w, r, rc, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// purgeStudent destroys a student's records and keys and answers with the signed
// deletion certificate.
func (s *Server) purgeStudent(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID = "user", id
	if !rc.scope.Admin() {
		s.fail(w, r, rc, &records.Error{Code: records.Forbidden, CodeMinor: "forbidden", Message: "only a district administrator may delete a student"})
		return
	}
	if err := s.visibleStudent(r.Context(), rc, id); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if s.Students.Signer == nil {
		s.fail(w, r, rc, &records.Error{Code: records.Unavailable, Message: "deletion certificates are not configured on this server"})
		return
	}
	// The reason goes into the certificate; Store.Purge checks it, for the CLI too.
	req := sqlstore.PurgeRequest{Student: id, Reason: r.URL.Query().Get("reason"), Event: rc.event, Signer: s.Students.Signer}
	if s.Students.Documents != nil {
		req.Documents = s.Students.Documents
	}
	res, err := s.store.Purge(r.Context(), req)
	if res.Certificate != nil {
		rc.audited = true // the purge's own event is in the trail
	}
	if err != nil {
		if res.Certificate != nil {
			rc.audited = false // and so is what went wrong after it
		}
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Certificate) // the client went away: the certificate is kept in the database
}
