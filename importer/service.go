package importer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"registrar/audit"
	"registrar/records"
	"registrar/sqlstore"
)

// Service runs imports submitted through the API in the background, one at a time
// (the store has one writer anyway), and keeps each job's state in the imports table.
// Uploaded packages wait in a spool folder inside the data directory (0700) and are
// removed once their import ends. Close stops it: a running import is cancelled and
// its transaction rolled back.
type Service struct {
	im    *Importer
	spool string

	mu       sync.Mutex
	progress map[string]Progress

	queue  chan *job
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed chan struct{}
	once   sync.Once
}

type job struct {
	sqlstore.ImportJob
	path string
	ev   audit.Event
}

// Job statuses.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobInvalid   = "invalid"
	JobFailed    = "failed"
)

// NewService starts the import service. Jobs a stopped process left unfinished are
// marked failed (their transactions never committed), and leftover uploads removed.
func NewService(ctx context.Context, im *Importer, spool string) (*Service, error) {
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return nil, fmt.Errorf("import spool: %w", err)
	}
	ents, err := os.ReadDir(spool)
	if err != nil {
		return nil, fmt.Errorf("import spool: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(spool, e.Name())); err != nil {
			return nil, fmt.Errorf("import spool: %w", err)
		}
	}
	err = im.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		_, err := tx.FailUnfinishedImports(ctx, "the server stopped before the import finished: nothing was written; submit it again")
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &Service{im: im, spool: spool, progress: map[string]Progress{}, queue: make(chan *job, 16), closed: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go s.work()
	return s, nil
}

// Close cancels the running import, drops queued ones (marked failed at the next
// start) and waits for the worker.
func (s *Service) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.cancel()
		s.wg.Wait()
	})
}

// SpoolDir is where uploads are written before they are submitted.
func (s *Service) SpoolDir() string { return s.spool }

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Check runs pass 1 over the package at path and returns its problems (an
// *InvalidError), or nil if it is valid. It writes nothing.
func (s *Service) Check(ctx context.Context, path string) error {
	_, err := s.im.Import(ctx, path, Options{DryRun: true})
	return err
}

// Submit queues the package at path (a file or folder in the spool, which the
// service then owns and removes) for import on behalf of ev's principal.
func (s *Service) Submit(ctx context.Context, ev audit.Event, path string) (sqlstore.ImportJob, error) {
	j := &job{ImportJob: sqlstore.ImportJob{ID: newID(), Status: JobQueued, Principal: ev.PrincipalKind + ":" + ev.PrincipalID, CreatedAt: time.Now().UTC()}, path: path, ev: ev}
	if err := s.put(ctx, j.ImportJob); err != nil {
		os.RemoveAll(path)
		return j.ImportJob, err
	}
	queued := j.ImportJob // the worker owns j once it is queued
	msg := "too many imports are waiting; submit it again later"
	select {
	case <-s.closed:
		msg = "the server is stopping; submit it again later"
	default:
		select {
		case s.queue <- j:
			return queued, nil
		default:
		}
	}
	os.RemoveAll(path)
	j.Status = JobFailed
	j.Errors = problemsJSON([]Problem{{File: "package", Message: msg}}, 1)
	s.finish(context.WithoutCancel(ctx), &j.ImportJob)
	return j.ImportJob, &records.Error{Code: records.Unavailable, Message: msg}
}

func (s *Service) put(ctx context.Context, j sqlstore.ImportJob) error {
	return s.im.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutImportJob(ctx, j) })
}

func (s *Service) finish(ctx context.Context, j *sqlstore.ImportJob) {
	now := time.Now().UTC()
	j.FinishedAt = &now
	if err := s.put(ctx, *j); err != nil {
		s.im.log.Error("import job state could not be written", "job", j.ID, "err", err)
	}
}

// Job returns a job and, while it runs in this process, its Progress (else nil).
func (s *Service) Job(ctx context.Context, id string) (sqlstore.ImportJob, any, error) {
	j, err := s.im.store.ImportJob(ctx, id)
	if err != nil {
		return j, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.progress[id]; ok {
		return j, p, nil
	}
	return j, nil, nil
}

// ExportZip writes a zip package of what scope allows to w (see ExportOptions).
func (s *Service) ExportZip(ctx context.Context, w io.Writer, mode string, scope func(*records.Entity) (records.Predicate, bool),
	hidden func(*records.Entity, *records.Field) bool) (students []string, rows int, err error) {
	res, err := s.im.ExportZip(ctx, w, s.spool, ExportOptions{Mode: mode, Scope: scope, Hidden: hidden})
	if err != nil {
		return nil, 0, err
	}
	return res.Students, res.Rows, nil
}

func (s *Service) work() {
	defer s.wg.Done()
	for {
		select {
		case <-s.closed:
			return
		case j := <-s.queue:
			s.run(j)
		}
	}
}

func (s *Service) run(j *job) {
	defer os.RemoveAll(j.path)
	ctx := s.ctx
	j.Status = JobRunning
	if err := s.put(ctx, j.ImportJob); err != nil {
		s.im.log.Error("import job could not start", "job", j.ID, "err", err)
		return
	}
	s.setProgress(j.ID, &Progress{Phase: "checking"})
	defer s.setProgress(j.ID, nil)
	_, err := s.im.Import(ctx, j.path, Options{
		Event:      j.ev,
		OnProgress: func(p Progress) { s.setProgress(j.ID, &p) },
		BeforeCommit: func(ctx context.Context, tx *sqlstore.Tx, sum *Summary) error {
			done := j.ImportJob
			now := time.Now().UTC()
			done.Status, done.FinishedAt = JobSucceeded, &now
			b, err := json.Marshal(sum)
			if err != nil {
				return err
			}
			done.Summary = b
			return tx.PutImportJob(ctx, done)
		},
	})
	if err == nil {
		return // the job's row committed with the data
	}
	var ie *InvalidError
	switch {
	case errors.As(err, &ie):
		j.Status, j.Errors = JobInvalid, problemsJSON(ie.Problems, ie.Total)
	default:
		j.Status = JobFailed
		msg := "internal error: nothing was written"
		if re := (*records.Error)(nil); errors.As(err, &re) && re.Code != records.Internal {
			msg = re.Message + ": nothing was written"
		} else if errors.Is(err, context.Canceled) {
			msg = "the server stopped during the import: nothing was written; submit it again"
		} else {
			s.im.log.Error("import failed", "job", j.ID, "err", err)
		}
		j.Errors = problemsJSON([]Problem{{File: "package", Message: msg}}, 1)
	}
	s.finish(context.WithoutCancel(ctx), &j.ImportJob)
}

func (s *Service) setProgress(id string, p *Progress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		delete(s.progress, id)
		return
	}
	s.progress[id] = *p
}

// problemsJSON is the stored form of a job's problems.
func problemsJSON(list []Problem, total int) json.RawMessage {
	b, _ := json.Marshal(struct {
		Total    int       `json:"total"`
		Problems []Problem `json:"problems"`
	}{total, list})
	return b
}
