package main

import (
	"context"
	"errors"
)

func runGenerate(ctx context.Context, e *env, args []string) error {
	return errors.New("generate is not available in this build yet")
}

func runDemo(ctx context.Context, e *env, args []string) error {
	return errors.New("demo is not available in this build yet")
}
