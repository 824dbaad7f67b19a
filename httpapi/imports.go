package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"registrar/audit"
	"registrar/records"
	"registrar/sqlstore"
)

// maxImportBody bounds an uploaded OneRoster package (zip or multipart).
const maxImportBody = 4 << 30

// importService is what the import and export routes need; main sets Server.Importer
// to one (importer.Service).
type importService interface {
	SpoolDir() string
	// Check reads the package and returns an error holding its problems, or nil.
	Check(ctx context.Context, path string) error
	Submit(ctx context.Context, ev audit.Event, path string) (sqlstore.ImportJob, error)
	Job(ctx context.Context, id string) (sqlstore.ImportJob, any, error)
	ExportZip(ctx context.Context, w io.Writer, mode string, scope func(*records.Entity) (records.Predicate, bool),
		hidden func(*records.Entity, *records.Field) bool) (students []string, rows int, err error)
}

// packageProblems is how an import's problems reach the API: the importer's
// *InvalidError has this shape.
type packageProblems interface {
	error
	ProblemList() (problems any, total int)
}

// importRoutes: OneRoster 1.2 CSV imports and exports (issue 3).
func (s *Server) importRoutes() []*route {
	return []*route{
		{method: "POST", pattern: "/v1/imports", op: "importSubmit", maxBody: maxImportBody, h: s.postImport},
		{method: "GET", pattern: "/v1/imports/{id}", op: "importStatus", h: s.getImport},
		{method: "GET", pattern: "/v1/exports/oneroster.zip", op: "exportOneRoster", h: s.getExport},
	}
}

func (s *Server) importer() (importService, error) {
	svc, ok := s.Importer.(importService)
	if !ok || svc == nil {
		return nil, &records.Error{Code: records.Unavailable, Message: "imports and exports are not available on this server"}
	}
	return svc, nil
}

var errAdminOnly = &records.Error{Code: records.Forbidden, CodeMinor: "forbidden", Message: "imports need an administrative principal (a district administrator, or a client with the admin scope serving the whole district)"}

// postImport takes a package (a zip body, or multipart/form-data with one zip part or
// manifest.csv and the data files as parts), checks it at once (422 with every
// problem), and queues the import (202 with the job; GET /v1/imports/{id} follows it).
func (s *Server) postImport(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if !rc.scope.Admin() {
		s.fail(w, r, rc, errAdminOnly)
		return
	}
	svc, err := s.importer()
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.event.ResourceType = "oneroster-csv"
	path, err := spoolUpload(r, svc.SpoolDir())
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if err := svc.Check(r.Context(), path); err != nil {
		os.RemoveAll(path)
		var pp packageProblems
		if errors.As(err, &pp) {
			s.packageInvalid(w, r, rc, pp)
			return
		}
		s.fail(w, r, rc, err)
		return
	}
	job, err := svc.Submit(r.Context(), rc.event, path)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	rc.event.ResourceID = job.ID
	if err := s.commitAudit(r, rc, http.StatusAccepted); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Location", "/v1/imports/"+job.ID)
	writeJSON(w, http.StatusAccepted, job)
}

// packageInvalid answers 422 problem+json listing the package's problems.
func (s *Server) packageInvalid(w http.ResponseWriter, r *http.Request, rc *reqCtx, pp packageProblems) {
	list, total := pp.ProblemList()
	ev := rc.event
	ev.Outcome, ev.Status, ev.Detail = audit.Invalid, http.StatusUnprocessableEntity, fmt.Sprintf("package not valid: %d problems", total)
	rc.audited = true
	if err := s.store.Audit(context.WithoutCancel(r.Context()), ev); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusUnprocessableEntity)
	_ = json.NewEncoder(w).Encode(map[string]any{ // the client went away: nothing to do
		"type": "about:blank", "title": "the package is not valid", "status": http.StatusUnprocessableEntity,
		"detail":   fmt.Sprintf("%d problems; nothing was written", total),
		"instance": rc.id, "total": total, "errors": list,
	})
}

// spoolUpload writes the request's package into the spool: a zip file, or a folder
// of the CSV files of a multipart form.
func spoolUpload(r *http.Request, spool string) (string, error) {
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		ct = ""
	}
	bad := func(msg string) error { return &records.Error{Code: records.Invalid, Message: msg} }
	switch ct {
	case "application/zip", "application/x-zip-compressed", "application/octet-stream":
		f, err := os.CreateTemp(spool, "upload-*.zip")
		if err != nil {
			return "", fmt.Errorf("spool upload: %w", err)
		}
		if _, err := io.Copy(f, r.Body); err != nil {
			f.Close()
			os.Remove(f.Name())
			return "", err
		}
		if err := f.Close(); err != nil {
			os.Remove(f.Name())
			return "", fmt.Errorf("spool upload: %w", err)
		}
		return f.Name(), nil
	case "multipart/form-data":
		dir, err := os.MkdirTemp(spool, "upload-")
		if err != nil {
			return "", fmt.Errorf("spool upload: %w", err)
		}
		path, err := spoolParts(multipart.NewReader(r.Body, params["boundary"]), dir)
		if err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		return path, nil
	}
	return "", bad("send the package as application/zip, or as multipart/form-data with a zip part or manifest.csv and the CSV files as parts")
}

func spoolParts(mr *multipart.Reader, dir string) (string, error) {
	bad := func(msg string) error { return &records.Error{Code: records.Invalid, Message: msg} }
	zipPath, files := "", 0
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", bad("the multipart body does not parse")
		}
		name := p.FileName()
		if name == "" {
			p.Close()
			continue // a plain form field
		}
		name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
		if name == "." || name == "/" || strings.HasPrefix(name, ".") {
			return "", bad("a part has no usable file name")
		}
		isZip := strings.HasSuffix(strings.ToLower(name), ".zip")
		if isZip && (zipPath != "" || files > 0) || !isZip && zipPath != "" {
			return "", bad("send one zip part, or the CSV files as parts, not both")
		}
		if !isZip && !strings.HasSuffix(name, ".csv") {
			return "", bad("part " + strconv.Quote(name) + " is neither a .zip nor a .csv file")
		}
		dst := filepath.Join(dir, name)
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return "", bad("part " + strconv.Quote(name) + " is sent twice")
		}
		_, err = io.Copy(f, p)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		p.Close()
		if err != nil {
			return "", err
		}
		if isZip {
			zipPath = dst
		} else {
			files++
		}
	}
	if zipPath != "" {
		return zipPath, nil
	}
	if files == 0 {
		return "", bad("the form holds no package: add a zip part, or manifest.csv and the CSV files")
	}
	return dir, nil
}

// getImport returns an import job: its state, summary or problems, and its progress
// while it runs.
func (s *Server) getImport(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	if !rc.scope.Admin() {
		s.fail(w, r, rc, errAdminOnly)
		return
	}
	svc, err := s.importer()
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	id := r.PathValue("id")
	rc.event.ResourceType, rc.event.ResourceID = "import", id
	job, progress, err := svc.Job(r.Context(), id)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	out := map[string]any{"id": job.ID, "status": job.Status, "principal": job.Principal, "createdAt": job.CreatedAt}
	if job.FinishedAt != nil {
		out["finishedAt"] = job.FinishedAt
	}
	if len(job.Summary) > 0 {
		out["summary"] = job.Summary
	}
	if len(job.Errors) > 0 {
		out["errors"] = job.Errors
	}
	if progress != nil {
		out["progress"] = progress
	}
	writeJSON(w, http.StatusOK, out)
}

// getExport streams a OneRoster 1.2 CSV package (zip) of every object the caller may
// see: per entity, the rows its scope allows; demographics only with the right to
// read them. The package is built first, so the audit event (naming the students) is
// durable before a byte is sent.
func (s *Server) getExport(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	svc, err := s.importer()
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	mode := r.URL.Query().Get("mode")
	if mode == "" {
		mode = "bulk"
	}
	if mode != "bulk" && mode != "delta" {
		s.fail(w, r, rc, &records.Error{Code: records.Invalid, Field: "mode", Message: "mode must be bulk or delta"})
		return
	}
	rc.event.ResourceType = "oneroster-csv"
	f, err := os.CreateTemp(svc.SpoolDir(), "export-*.zip")
	if err != nil {
		s.fail(w, r, rc, fmt.Errorf("export spool: %w", err))
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	scope := func(e *records.Entity) (records.Predicate, bool) {
		if !rc.scope.CanRead(e) {
			return records.Predicate{}, false
		}
		return rc.scope.Rows(e), true
	}
	students, rows, err := svc.ExportZip(r.Context(), f, mode, scope, rc.scope.Hidden)
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		s.fail(w, r, rc, fmt.Errorf("export spool: %w", err))
		return
	}
	rc.event.Students, rc.event.Count, rc.event.Detail = students, rows, "OneRoster 1.2 CSV "+mode+" export"
	if err := s.commitAudit(r, rc, http.StatusOK); err != nil {
		s.fail(w, r, rc, err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="oneroster.zip"`)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f) // the client went away: nothing to do
}
