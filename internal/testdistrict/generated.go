package testdistrict

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"registrar/gen"
	"registrar/importer"
	"registrar/sqlstore"
	"registrar/vault"
)

// Generated opens a store with o and imports into it a generated district of the
// given number of students, rostering only (no line items or results): the district
// issue 2's read benchmarks measure. The store's vault is a new one in a temp dir
// (returned: the caller's authenticator signs with it); a chain and a logger o leaves
// unset are "bench" and one that discards. The store closes when tb ends.
func Generated(tb testing.TB, students int, o sqlstore.Options) (*sqlstore.Store, *vault.Vault) {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	cfg := gen.Defaults(students)
	cfg.LineItemsPerClass = 0
	pkg := filepath.Join(dir, "pkg")
	if _, err := gen.WriteCSV(ctx, pkg, cfg); err != nil {
		tb.Fatal(err)
	}
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		tb.Fatal(err)
	}
	o.Vault = v
	if o.Chain == "" {
		o.Chain = "bench"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	st, err := sqlstore.Open(ctx, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if _, err := importer.New(st, o.Logger).Import(ctx, pkg, importer.Options{}); err != nil {
		tb.Fatal(err)
	}
	return st, v
}
