package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"registrar/importer"
	"registrar/oneroster/csvspec"
)

// runImport: registrar import [flags] PATH — a OneRoster 1.2 CSV package, all or nothing.
func runImport(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "import", "[flags] PATH   (a folder or a .zip holding manifest.csv and the CSV files)")
	dry := fs.Bool("dry-run", false, "check the package and write nothing")
	maxErrors := fs.Int("max-errors", 100, "print at most this many problems (all are counted)")
	progress := fs.String("progress", "auto", "progress on stderr: auto (a bar on a terminal, lines otherwise), bar, lines or none")
	cfg, err := parse(e, fs, vals, permute(fs, args))
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, msg: "want exactly one PATH: a package folder or zip file"}
	}
	opt := importer.Options{Event: operatorEvent("import"), DryRun: *dry}
	switch *progress {
	case "auto":
		opt.Progress, opt.Terminal = e.stderr, isTerminal(e.stderr)
	case "bar":
		opt.Progress, opt.Terminal = e.stderr, true
	case "lines":
		opt.Progress = e.stderr
	case "none":
	default:
		return &exitError{code: 2, msg: fmt.Sprintf("--progress %q: want auto, bar, lines or none", *progress)}
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	sum, err := importer.New(a.store, a.log).Import(ctx, fs.Arg(0), opt)
	var ie *importer.InvalidError
	if errors.As(err, &ie) {
		fmt.Fprint(e.stderr, importer.Lines(ie, max(1, *maxErrors)))
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %d problems; nothing was written", fs.Arg(0), ie.Total)}
	}
	if err != nil {
		return err
	}
	printSummary(e.stdout, sum)
	return nil
}

func printSummary(w io.Writer, sum *importer.Summary) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tMODE\tROWS\tCREATED\tUPDATED\tUNCHANGED\tTOBEDELETED\tIGNORED\t")
	for _, f := range sum.Files {
		if f.Into != "" {
			fmt.Fprintf(tw, "%s\t%s\t%d\t-> %s\t\t\t\t\t\n", f.File, f.Mode, f.Rows, f.Into)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", f.File, f.Mode, f.Rows, f.Created, f.Updated+f.Merged, f.Unchanged, f.Deleted, f.Ignored)
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t%d\t\n", sum.Rows, sum.Created, sum.Updated, sum.Unchanged, sum.Deleted, sum.Ignored)
	tw.Flush()
	if sum.DryRun {
		fmt.Fprintln(w, "dry run: the package is valid; nothing was written")
		return
	}
	fmt.Fprintf(w, "%s in %s; students whose records changed: %d\n", sum.Line(), sum.Elapsed.Round(1e6), sum.Students)
}

// runExport: registrar export [flags] DIR|FILE.zip — a OneRoster 1.2 CSV package of everything.
func runExport(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "export", "[flags] DIR|FILE.zip   (a new or empty folder, or a zip file to create)")
	mode := fs.String("mode", csvspec.ModeBulk, "bulk (active records, as a district loads them) or delta (every record with its status and date: imports back exactly)")
	cfg, err := parse(e, fs, vals, permute(fs, args))
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, msg: "want exactly one DIR or FILE.zip"}
	}
	if *mode != csvspec.ModeBulk && *mode != csvspec.ModeDelta {
		return &exitError{code: 2, msg: fmt.Sprintf("--mode %q: want bulk or delta", *mode)}
	}
	target := fs.Arg(0)
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	im := importer.New(a.store, a.log)
	opt := importer.ExportOptions{Mode: *mode}
	var res *importer.ExportResult
	var cleanup func()
	if strings.HasSuffix(strings.ToLower(target), ".zip") {
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		cleanup = func() { f.Close(); os.Remove(target) }
		if res, err = im.ExportZip(ctx, f, cfg.Data, opt); err == nil {
			err = f.Close()
		}
		if err != nil {
			cleanup()
			return err
		}
	} else {
		existed := true
		if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
			existed = false
		}
		cleanup = func() {
			if existed {
				ents, _ := os.ReadDir(target) // best effort: remove what this export wrote
				for _, en := range ents {
					os.Remove(filepath.Join(target, en.Name()))
				}
				return
			}
			os.RemoveAll(target)
		}
		if res, err = im.ExportDir(ctx, target, opt); err != nil {
			return err
		}
	}
	// The export is a disclosure to the operator: audited before it is reported done;
	// without a durable audit event the files are removed.
	ev := operatorEvent("export")
	ev.ResourceType, ev.Students, ev.Count, ev.Detail = "oneroster-csv", res.Students, res.Rows, "OneRoster 1.2 CSV "+*mode+" export to "+target
	if err := a.store.Audit(ctx, ev); err != nil {
		cleanup()
		return fmt.Errorf("export: the audit event could not be written, so the export was removed: %w", err)
	}
	fmt.Fprintf(e.stdout, "exported %d rows in %d files (%s) to %s\n", res.Rows, len(res.Files), *mode, target)
	return nil
}

// permute moves positional arguments after the flags, so that "import PATH --data D"
// works like "import --data D PATH".
func permute(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(append(flags, "--"), pos...)
}

// isTerminal reports whether w is a terminal (a character device), where a progress
// bar can redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// newImportService starts the API's import service, spooling uploads in the data dir.
func newImportService(ctx context.Context, a *app) (*importer.Service, error) {
	return importer.NewService(ctx, importer.New(a.store, a.log), filepath.Join(a.cfg.Data, "imports"))
}
