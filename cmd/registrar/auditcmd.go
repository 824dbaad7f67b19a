package main

import (
	"context"
	"fmt"
)

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return &exitError{code: 2, msg: "want: audit verify"}
	}
	fs, vals := newFlags(e, "audit verify", "[flags]")
	cfg, err := parse(e, fs, vals, args[1:])
	if err != nil {
		return err
	}
	a, err := openApp(ctx, e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.close()
	n, err := a.store.VerifyAudit(ctx)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("audit trail NOT intact after %d good events: %v", n, err)}
	}
	fmt.Fprintf(e.stdout, "audit trail intact: %d events verified\n", n)
	return nil
}
