package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"registrar/sqlstore"
	"registrar/vault"
)

func runKeys(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, msg: "want a subcommand: init | rotate | status"}
	}
	switch args[0] {
	case "init":
		return keysInit(ctx, e, args[1:])
	case "rotate":
		return keysRotate(ctx, e, args[1:])
	case "status":
		return keysStatus(ctx, e, args[1:])
	}
	return &exitError{code: 2, msg: fmt.Sprintf("unknown subcommand %q: want init | rotate | status", args[0])}
}

// keysRotate rotates the local KEK while the server keeps serving: a new primary
// version, every data and document key rewrapped in small transactions, the service
// keyset rewrapped, then old versions retired once no key needs them. It can be
// stopped at any time (Ctrl-C, a crash, --max-batches) and run again to resume.
func keysRotate(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "keys rotate", "[--batch N] [--max-batches N] [--pause DURATION]")
	batch := fs.Int("batch", 200, "keys rewrapped per transaction")
	maxBatches := fs.Int("max-batches", 0, "stop after this many batches and leave the rest for the next run (0: run to the end)")
	pause := fs.Duration("pause", 10*time.Millisecond, "wait between batches, so the server's writes get the database")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if *batch < 1 || *maxBatches < 0 || *pause < 0 {
		return &exitError{code: 2, msg: "--batch must be at least 1; --max-batches and --pause not negative"}
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	last := time.Now()
	rep, err := a.store.RotateKEK(ctx, a.vault, sqlstore.RotateOptions{BatchSize: *batch, MaxBatches: *maxBatches, Pause: *pause,
		Event: operatorEvent("keys.rotate"),
		Progress: func(p sqlstore.RotateProgress) {
			if time.Since(last) < 2*time.Second {
				return
			}
			last = time.Now()
			fmt.Fprintf(e.stdout, "  %d keys rewrapped of about %d (%d batches, %d failed)\n", p.Rewrapped, p.Total, p.Batches, p.Failed)
		}})
	if errors.Is(err, vault.ErrRemoteKEK) {
		return &exitError{code: 1, msg: "the key-encryption key is an AWS KMS key (--kek-uri): rotate it in KMS, which keeps its old versions; there is nothing to rewrap here"}
	}
	if rep.ID != "" {
		verb := "started"
		if rep.Resumed {
			verb = "resumed"
		}
		fmt.Fprintf(e.stdout, "rotation %s %s: new primary KEK version %d\n", rep.ID, verb, rep.KEK)
	}
	if err != nil {
		return fmt.Errorf("rotation stopped after %d keys (run again to resume): %w", rep.Rewrapped, err)
	}
	if !rep.Done {
		fmt.Fprintf(e.stdout, "stopped after %d batches as asked: %d keys rewrapped so far. Run `registrar keys rotate` again to continue.\n", rep.Batches, rep.Rewrapped)
		return nil
	}
	fmt.Fprintf(e.stdout, "rotation finished: %d keys rewrapped in %d batches; service keyset rewrapped\n", rep.Rewrapped, rep.Batches)
	if len(rep.Retired) > 0 {
		fmt.Fprintf(e.stdout, "retired KEK versions %s: keys wrapped under them (in old backups too) can no longer be opened\n", ids(rep.Retired))
	}
	if len(rep.Kept) > 0 {
		fmt.Fprintf(e.stdout, "kept KEK versions %s: some keys still need them\n", ids(rep.Kept))
	}
	if rep.ServiceKeyset != "" {
		fmt.Fprintln(e.stdout, "The service keyset is injected (REGISTRAR_KEYSET): install this rewrapped value, and the next rotation retires the versions the old one needs:")
		fmt.Fprintln(e.stdout, rep.ServiceKeyset)
	}
	if rep.Failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%d keys did not unwrap and were left as they were (see the log); their KEK versions were kept", rep.Failed)}
	}
	return nil
}

func keysStatus(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "keys status", "")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	primary, all, err := a.vault.KEKVersions()
	switch {
	case errors.Is(err, vault.ErrRemoteKEK):
		fmt.Fprintln(e.stdout, "KEK: AWS KMS key", cfg.KEKURI)
	case err != nil:
		return err
	default:
		fmt.Fprintf(e.stdout, "KEK: local keyset in %s/keys: primary version %d; versions %s\n", cfg.Data, primary, ids(all))
	}
	st, err := a.store.KeyStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "keys: %d people (%d with a document key)\n", st.Keys, st.Documents)
	var versions []uint32
	for v := range st.ByVersion {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	for _, v := range versions {
		fmt.Fprintf(e.stdout, "  KEK version %d wraps %d keys\n", v, st.ByVersion[v])
	}
	if r := st.Rotation; r != nil {
		switch r.State {
		case "running":
			fmt.Fprintf(e.stdout, "rotation %s to version %d is UNFINISHED: %d keys rewrapped in %d batches, last progress %s. Run `registrar keys rotate` to resume.\n",
				r.ID, r.KEK, r.Rewrapped, r.Batches, r.UpdatedAt)
		default:
			fmt.Fprintf(e.stdout, "last rotation %s to version %d finished %s: %d keys rewrapped, %d failed, retired %s\n",
				r.ID, r.KEK, r.FinishedAt, r.Rewrapped, r.Failed, strings.Trim(r.Retired, "[]"))
		}
	}
	return nil
}

func ids(l []uint32) string {
	s := make([]string, len(l))
	for i, v := range l {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}
