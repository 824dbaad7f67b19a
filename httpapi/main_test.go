package httpapi_test

import (
	"os"
	"testing"

	"registrar/internal/pgtest"
)

// TestMain stops the PostgreSQL server that bothEngines' tests share (pgtest.Shared),
// if this test binary started it.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m))
}
