package main

import (
	"context"
	"errors"
)

// runImport and runExport are being written (issue 3).
func runImport(ctx context.Context, e *env, args []string) error {
	return errors.New("import is not available in this build yet")
}

func runExport(ctx context.Context, e *env, args []string) error {
	return errors.New("export is not available in this build yet")
}
