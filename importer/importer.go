package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"registrar/audit"
	"registrar/oneroster/csvspec"
	"registrar/records"
	"registrar/sqlstore"
)

// Importer imports and exports OneRoster CSV packages for one store.
type Importer struct {
	store *sqlstore.Store
	log   *slog.Logger
}

// New returns an importer for store.
func New(store *sqlstore.Store, log *slog.Logger) *Importer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Importer{store: store, log: log}
}

// Options tune one import.
type Options struct {
	// Event names who imports (an operator at the command line, or the API client or
	// user) and how they came; the import's audit event is built from it.
	Event audit.Event
	// DryRun checks the package (pass 1) and writes nothing.
	DryRun bool
	// MaxProblems bounds the problems kept (all are counted); DefaultMaxProblems when 0.
	MaxProblems int
	// Progress receives a progress display; nil for none. Terminal draws a bar that
	// redraws itself; otherwise plain lines are written every few seconds.
	Progress io.Writer
	Terminal bool
	// OnProgress, if set, is called with the state of the import about once a second.
	OnProgress func(Progress)
	// BeforeCommit, if set, runs last inside the import's transaction (the API records
	// the job's outcome there, so it commits with the data).
	BeforeCommit func(ctx context.Context, tx *sqlstore.Tx, sum *Summary) error
}

// FileSummary says what an import did with one file.
type FileSummary struct {
	File      string `json:"file"`
	Mode      string `json:"mode"`
	Rows      int    `json:"rows"`
	Created   int    `json:"created"`
	Updated   int    `json:"updated"`
	Unchanged int    `json:"unchanged"`
	Deleted   int    `json:"deleted"`          // marked tobedeleted (delta rows, or absent from a bulk file)
	Ignored   int    `json:"ignored"`          // tobedeleted rows for objects that do not exist
	Into      string `json:"into,omitempty"`   // files that fill another entity's field: the entity and field
	Merged    int    `json:"merged,omitempty"` // objects updated only through such files
}

// Summary says what an import did.
type Summary struct {
	Files     []*FileSummary `json:"files"`
	Rows      int            `json:"rows"`
	Created   int            `json:"created"`
	Updated   int            `json:"updated"`
	Unchanged int            `json:"unchanged"`
	Deleted   int            `json:"deleted"`
	Ignored   int            `json:"ignored"`
	Students  int            `json:"students"` // students whose records changed
	Elapsed   time.Duration  `json:"elapsedNs"`
	DryRun    bool           `json:"dryRun,omitempty"`
}

// Line is the summary in one line (the audit event's detail).
func (s *Summary) Line() string {
	verb := "imported"
	if s.DryRun {
		verb = "checked"
	}
	return fmt.Sprintf("%s %d rows in %d files: %d created, %d updated, %d unchanged, %d marked tobedeleted, %d ignored",
		verb, s.Rows, len(s.Files), s.Created, s.Updated, s.Unchanged, s.Deleted, s.Ignored)
}

func (s *Summary) file(name, mode string) *FileSummary {
	for _, f := range s.Files {
		if f.File == name {
			return f
		}
	}
	f := &FileSummary{File: name, Mode: mode}
	s.Files = append(s.Files, f)
	return f
}

func (s *Summary) total() {
	s.Rows, s.Created, s.Updated, s.Unchanged, s.Deleted, s.Ignored = 0, 0, 0, 0, 0, 0
	for _, f := range s.Files {
		s.Rows += f.Rows
		s.Created += f.Created
		s.Updated += f.Updated
		s.Unchanged += f.Unchanged
		s.Deleted += f.Deleted
		s.Ignored += f.Ignored
	}
}

// Import checks the package at path (a folder or a zip) and, if it is valid, writes
// it in one transaction with one audit event. A package with problems returns an
// *InvalidError and writes nothing but an audit event of the attempt.
func (im *Importer) Import(ctx context.Context, path string, opt Options) (*Summary, error) {
	start := time.Now()
	if opt.MaxProblems <= 0 {
		opt.MaxProblems = DefaultMaxProblems
	}
	pkg, err := OpenPackage(path)
	if err != nil {
		return nil, &records.Error{Code: records.Invalid, Message: err.Error()}
	}
	defer pkg.Close()
	prog := newProgress(opt.Progress, opt.Terminal, opt.OnProgress)
	defer prog.stop()
	probs := &problems{limit: opt.MaxProblems}

	prog.phase("checking", 0, 0)
	pl, err := im.validate(ctx, pkg, probs, prog)
	if err != nil {
		return nil, err
	}
	prog.phase("checking", pl.bytes, 0)
	if perr := probs.err(); perr != nil {
		prog.done("the package has problems: nothing was written")
		if !opt.DryRun {
			im.auditFailure(ctx, opt.Event, fmt.Sprintf("package not valid: %d problems", probs.count()), audit.Invalid)
		}
		return nil, perr
	}
	sum := &Summary{DryRun: opt.DryRun}
	for _, fi := range pl.files {
		fs := sum.file(fi.spec.FileName, pl.modes[fi.spec.Name])
		fs.Rows = pl.rows[fi.spec.Name]
		if fi.child != nil {
			fs.Into = fi.ent.Name + "." + fi.child.field
		}
	}
	sum.total()
	if opt.DryRun {
		sum.Elapsed = time.Since(start)
		prog.done(sum.Line())
		return sum, nil
	}

	total := 0
	for _, n := range pl.rows {
		total += n
	}
	prog.phase("writing", 0, int64(total))
	w := &writer{im: im, pkg: pkg, plan: pl, probs: probs, prog: prog, sum: sum, opt: opt}
	if err := w.init(); err != nil {
		return nil, err
	}
	err = im.store.Write(ctx, w.run)
	if err != nil {
		var ie *InvalidError
		if errors.As(err, &ie) {
			prog.done("the package has problems: nothing was written")
			im.auditFailure(ctx, opt.Event, fmt.Sprintf("package not valid: %d problems", ie.Total), audit.Invalid)
			return nil, err
		}
		prog.done("the import failed: nothing was written")
		if ctx.Err() == nil {
			im.auditFailure(ctx, opt.Event, "import failed: "+string(records.ErrorCode(err)), audit.Failed)
		}
		return nil, err
	}
	sum.Elapsed = time.Since(start)
	prog.done(sum.Line())
	return sum, nil
}

// auditFailure records an import that wrote nothing.
func (im *Importer) auditFailure(ctx context.Context, ev audit.Event, detail, outcome string) {
	ev = importEvent(ev)
	ev.Outcome, ev.Detail = outcome, detail
	if err := im.store.Audit(context.WithoutCancel(ctx), ev); err != nil {
		im.log.Error("the audit event of a failed import could not be written", "err", err)
	}
}

func importEvent(ev audit.Event) audit.Event {
	ev.Action = "import"
	ev.ResourceType = "oneroster-csv"
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	return ev
}

// modeOf returns the mode a plan gives a file.
func (p *plan) modeOf(file string) string {
	if m, ok := p.modes[file]; ok {
		return m
	}
	return csvspec.ModeAbsent
}

// Lines formats problems one per line, at most max of them, then a count of the rest.
func Lines(err *InvalidError, max int) string {
	var b strings.Builder
	for i, p := range err.Problems {
		if i == max {
			break
		}
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	if shown := min(max, len(err.Problems)); err.Total > shown {
		fmt.Fprintf(&b, "... and %d more problems (%d in all)\n", err.Total-shown, err.Total)
	}
	return b.String()
}
