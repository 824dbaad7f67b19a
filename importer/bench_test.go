package importer_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"registrar/bench/importbench/rawload"
	"registrar/gen"
	"registrar/importer"
	"registrar/internal/pgtest"
	"registrar/sqlstore"
	"registrar/vault"
)

// BenchmarkImport measures rows/s of an import into an empty store and, in the same
// run, of the raw baseline (rawload: the same rows, plain prepared INSERTs in one
// transaction). REGISTRAR_BENCH_STUDENTS sets the district size (default 2000);
// REGISTRAR_BENCH_GRADEBOOK=0 leaves out line items and results.
func BenchmarkImport(b *testing.B) {
	ctx := context.Background()
	students := 2000
	if s := os.Getenv("REGISTRAR_BENCH_STUDENTS"); s != "" {
		students, _ = strconv.Atoi(s)
	}
	cfg := gen.Defaults(students)
	if os.Getenv("REGISTRAR_BENCH_GRADEBOOK") == "0" {
		cfg.LineItemsPerClass = 0
	}
	pkg := filepath.Join(b.TempDir(), "pkg")
	sum, err := gen.WriteCSV(ctx, pkg, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rows := 0
	for _, n := range sum.Counts {
		rows += n
	}
	var imp, raw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		st := benchStore(b, dir, "a.db")
		b.StartTimer()
		t0 := time.Now()
		if _, err := importer.New(st, nil).Import(ctx, pkg, importer.Options{}); err != nil {
			b.Fatal(err)
		}
		imp += time.Since(t0)
		b.StopTimer()
		st.Close()
		benchStore(b, dir, "raw.db").Close() // the same schema, empty
		b.StartTimer()
		t0 = time.Now()
		if _, err := rawload.Load(ctx, pkg, filepath.Join(dir, "raw.db")); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(t0)
	}
	reportImport(b, rows, imp, raw, "raw")
}

// reportImport reports the import's rows/s beside its baseline's (named base: "raw"
// rows/s and import/raw), over b.N runs of rows each.
func reportImport(b *testing.B, rows int, imp, base time.Duration, name string) {
	total := float64(rows * b.N)
	b.ReportMetric(total/imp.Seconds(), "import-rows/s")
	b.ReportMetric(total/base.Seconds(), name+"-rows/s")
	b.ReportMetric(base.Seconds()/imp.Seconds(), "import/"+name)
	b.ReportMetric(float64(rows), "rows")
}

func benchStore(b *testing.B, dir, name string) *sqlstore.Store {
	b.Helper()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: filepath.Join(dir, name), Chain: "bench", Vault: v, Logger: discard()})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// BenchmarkImportPostgres is BenchmarkImport on PostgreSQL (issue 7): rows/s of an
// import into an empty database beside the raw baseline there, COPY of the same rows
// into the same tables (rawload.LoadPostgres), in the same run on the same server
// (internal/pgtest starts one on loopback). REGISTRAR_BENCH_STUDENTS sets the size.
func BenchmarkImportPostgres(b *testing.B) {
	ctx := context.Background()
	students := 2000
	if s := os.Getenv("REGISTRAR_BENCH_STUDENTS"); s != "" {
		students, _ = strconv.Atoi(s)
	}
	pkg := filepath.Join(b.TempDir(), "pkg")
	sum, err := gen.WriteCSV(ctx, pkg, gen.Defaults(students))
	if err != nil {
		b.Fatal(err)
	}
	rows := 0
	for _, n := range sum.Counts {
		rows += n
	}
	srv := pgtest.Shared(b)
	openPG := func(url string) *sqlstore.Store {
		v, err := vault.Open(vault.Options{Dir: filepath.Join(b.TempDir(), "keys")})
		if err != nil {
			b.Fatal(err)
		}
		st, err := sqlstore.Open(ctx, sqlstore.Options{URL: url, Chain: "bench", Vault: v, Logger: discard()})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	var imp, raw time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := openPG(srv.NewDatabase(b))
		b.StartTimer()
		t0 := time.Now()
		if _, err := importer.New(st, nil).Import(ctx, pkg, importer.Options{}); err != nil {
			b.Fatal(err)
		}
		imp += time.Since(t0)
		b.StopTimer()
		st.Close()
		rawURL := srv.NewDatabase(b)
		openPG(rawURL).Close() // the same schema, empty
		b.StartTimer()
		t0 = time.Now()
		if _, err := rawload.LoadPostgres(ctx, pkg, rawURL); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(t0)
	}
	reportImport(b, rows, imp, raw, "copy")
}
