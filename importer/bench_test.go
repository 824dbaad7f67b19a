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
	cfg := gen.Defaults(benchStudents())
	if os.Getenv("REGISTRAR_BENCH_GRADEBOOK") == "0" {
		cfg.LineItemsPerClass = 0
	}
	pkg, rows := benchPackage(b, cfg)
	var dir string
	importPair(b, pkg, rows, "raw", func() *sqlstore.Store {
		dir = b.TempDir()
		benchStore(b, dir, "raw.db").Close() // the baseline's database: the same schema, empty
		return benchStore(b, dir, "a.db")
	}, func() error {
		_, err := rawload.Load(context.Background(), pkg, filepath.Join(dir, "raw.db"))
		return err
	})
}

// benchStudents is REGISTRAR_BENCH_STUDENTS, default 2000.
func benchStudents() int {
	students := 2000
	if s := os.Getenv("REGISTRAR_BENCH_STUDENTS"); s != "" {
		students, _ = strconv.Atoi(s)
	}
	return students
}

// benchPackage writes the generated district as a OneRoster CSV package and returns
// its folder and how many rows it holds.
func benchPackage(b *testing.B, cfg gen.Config) (string, int) {
	pkg := filepath.Join(b.TempDir(), "pkg")
	sum, err := gen.WriteCSV(context.Background(), pkg, cfg)
	if err != nil {
		b.Fatal(err)
	}
	rows := 0
	for _, n := range sum.Counts {
		rows += n
	}
	return pkg, rows
}

// importPair times b.N imports of pkg, each into a fresh store (fresh also prepares
// the baseline's empty database), beside b.N runs of baseline, and reports the
// import's rows/s beside the baseline's (named name: "raw" rows/s and import/raw).
func importPair(b *testing.B, pkg string, rows int, name string, fresh func() *sqlstore.Store, baseline func() error) {
	var imp, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st := fresh()
		b.StartTimer()
		t0 := time.Now()
		if _, err := importer.New(st, nil).Import(context.Background(), pkg, importer.Options{}); err != nil {
			b.Fatal(err)
		}
		imp += time.Since(t0)
		b.StopTimer()
		st.Close()
		b.StartTimer()
		t0 = time.Now()
		if err := baseline(); err != nil {
			b.Fatal(err)
		}
		base += time.Since(t0)
	}
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
	pkg, rows := benchPackage(b, gen.Defaults(benchStudents()))
	srv := pgtest.Shared(b)
	openPG := func(url string) *sqlstore.Store {
		v, err := vault.Open(vault.Options{Dir: filepath.Join(b.TempDir(), "keys")})
		if err != nil {
			b.Fatal(err)
		}
		st, err := sqlstore.Open(context.Background(), sqlstore.Options{URL: url, Chain: "bench", Vault: v, Logger: discard()})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	var rawURL string
	importPair(b, pkg, rows, "copy", func() *sqlstore.Store {
		rawURL = srv.NewDatabase(b)
		openPG(rawURL).Close() // the baseline's database: the same schema, empty
		return openPG(srv.NewDatabase(b))
	}, func() error {
		_, err := rawload.LoadPostgres(context.Background(), pkg, rawURL)
		return err
	})
}
