package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"registrar/audit"
	"registrar/sqlstore"
)

const auditUsage = "want: audit verify | export | checkpoints | checkpoint"

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return &exitError{code: 2, msg: auditUsage}
	}
	switch args[0] {
	case "verify":
		return auditVerify(ctx, e, args[1:])
	case "export":
		return auditExport(ctx, e, args[1:])
	case "checkpoints":
		return auditCheckpoints(ctx, e, args[1:])
	case "checkpoint":
		return auditCheckpoint(ctx, e, args[1:])
	}
	return &exitError{code: 2, msg: fmt.Sprintf("unknown subcommand %q: %s", args[0], auditUsage)}
}

// auditVerify checks the trail and exits 0 only when it is intact.
func auditVerify(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "audit verify", "[--chain ID] [--from SEQ] [--to SEQ] [--checkpoints FILE]")
	chain := fs.String("chain", "", "verify only this chain (an instance id); default every chain")
	from := fs.Int64("from", 0, "first event to verify (with --chain); the range starts from the newest signed checkpoint before it")
	to := fs.Int64("to", 0, "last event to verify (with --chain); default the end of the chain")
	cpFile := fs.String("checkpoints", "", "checkpoints kept outside the database: JSON lines from `audit checkpoints` or registrar's log stream; detects a truncated checkpoint table")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if (*from != 0 || *to != 0) && *chain == "" {
		return &exitError{code: 2, msg: "--from and --to need --chain: sequence numbers belong to one chain"}
	}
	if *from < 0 || *to < 0 || *to != 0 && *to < *from {
		return &exitError{code: 2, msg: "--from and --to must be event numbers with --from <= --to"}
	}
	var external []audit.Checkpoint
	if *cpFile != "" {
		f, err := os.Open(*cpFile)
		if err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("--checkpoints: %v", err)}
		}
		external, err = audit.ReadCheckpoints(f)
		f.Close()
		if err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("--checkpoints %s: %v", *cpFile, err)}
		}
		if len(external) == 0 {
			return &exitError{code: 2, msg: fmt.Sprintf("--checkpoints %s holds no checkpoint", *cpFile)}
		}
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	start := time.Now()
	rep, err := a.store.Verify(ctx, sqlstore.VerifyOptions{Chain: *chain, From: *from, To: *to, External: external})
	for _, c := range rep.Chains {
		anchor := "from the genesis"
		if c.AnchorSeq > 0 {
			anchor = fmt.Sprintf("from the signed checkpoint at event %d", c.AnchorSeq)
		}
		fmt.Fprintf(e.stdout, "chain %s: events %d..%d verified %s (%d events, %d stored checkpoints)\n", c.Chain, c.From, c.To, anchor, c.Events, c.Checkpoints)
	}
	if err != nil {
		var b *audit.Break
		if errors.As(err, &b) {
			return &exitError{code: 1, msg: fmt.Sprintf("audit trail NOT intact: chain %s, event %d: %s", b.Chain, b.Seq, b.Reason)}
		}
		return &exitError{code: 1, msg: fmt.Sprintf("audit trail could not be verified: %v", err)}
	}
	d := time.Since(start)
	fmt.Fprintf(e.stdout, "audit trail intact: %d events in %d chains, %d checkpoints, %d external checkpoints, %d disclosure entries verified in %s\n",
		rep.Events, len(rep.Chains), rep.Checkpoints, rep.External, rep.Disclosures, d.Round(time.Millisecond))
	return nil
}

// auditExport writes the trail as JSON lines for a SIEM.
func auditExport(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "audit export", "[--chain ID [--after SEQ]] [--student ID] [--since TIME] [--until TIME] [--out FILE]")
	chain := fs.String("chain", "", "only this chain")
	after := fs.Int64("after", 0, "with --chain: only events after this sequence number (incremental export)")
	student := fs.String("student", "", "only events that touched this student")
	since := fs.String("since", "", "only events at or after this RFC 3339 time or date")
	until := fs.String("until", "", "only events before this RFC 3339 time or date")
	out := fs.String("out", "", "write to FILE (created 0600) instead of standard output")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	if *after != 0 && *chain == "" {
		return &exitError{code: 2, msg: "--after needs --chain"}
	}
	q := sqlstore.ExportQuery{Chain: *chain, AfterSeq: *after, Student: *student}
	for _, p := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", *since, &q.From}, {"until", *until, &q.To}} {
		if p.v == "" {
			continue
		}
		t, err := parseTime(p.v)
		if err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("--%s: %v", p.name, err)}
		}
		*p.dst = t
	}
	var w io.Writer = e.stdout
	var f *os.File
	if *out != "" {
		if f, err = os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	// The export reads who saw which student: it is audited, durably, before it runs.
	ev := operatorEvent("audit.export")
	ev.ResourceType = "auditEvent"
	var detail []string
	for _, kv := range [][2]string{{"chain", *chain}, {"student", *student}, {"since", *since}, {"until", *until}} {
		if kv[1] != "" {
			detail = append(detail, kv[0]+"="+kv[1])
		}
	}
	ev.Detail = strings.Join(detail, "&")
	if *student != "" {
		ev.Students = []string{*student}
	}
	if err := a.store.Audit(ctx, ev); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	if err := a.store.ExportAudit(ctx, q, func(en audit.Entry) error { n++; return enc.Encode(en) }); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return fmt.Errorf("write export: %w", err)
		}
		fmt.Fprintf(e.stderr, "exported %d events to %s\n", n, *out)
	}
	return nil
}

func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a date (YYYY-MM-DD)", v)
}

// auditCheckpoints prints the stored checkpoints as JSON lines: keep them outside the
// database and pass them to `audit verify --checkpoints` later.
func auditCheckpoints(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "audit checkpoints", "[--chain ID]")
	chain := fs.String("chain", "", "only this chain")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	cps, err := a.store.Checkpoints(ctx, *chain)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	for _, c := range cps {
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return nil
}

// auditCheckpoint signs this data dir's chain head now.
func auditCheckpoint(ctx context.Context, e *env, args []string) error {
	fs, vals := newFlags(e, "audit checkpoint", "")
	cfg, err := parse(e, fs, vals, args)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.store.Checkpoint(ctx); err != nil {
		return err
	}
	cps, err := a.store.Checkpoints(ctx, a.chain)
	if err != nil {
		return err
	}
	if len(cps) == 0 {
		fmt.Fprintf(e.stdout, "chain %s has no events to sign\n", a.chain)
		return nil
	}
	c := cps[len(cps)-1]
	fmt.Fprintf(e.stdout, "chain %s: checkpoint at event %d, signed %s\n", c.Chain, c.Seq, c.Time.Format(time.RFC3339))
	return nil
}
