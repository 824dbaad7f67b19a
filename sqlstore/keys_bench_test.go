package sqlstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"registrar/gen"
	"registrar/importer"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// The encryption benchmarks run the same work against two stores, one sealing with
// Tink and one with the no-op cipher (vault.Options.NoopCipherForBenchmarks),
// alternating operation by operation (and which goes first) so both see the same
// machine load. They report each side's time per operation and, from the median of
// the per-pair ratios (robust to load spikes on a shared machine):
//
//	tink/noop   time with encryption over time without (1.25 = 25% slower)
//	cost-%      share of throughput lost to encryption: 100 * (1 - noop/tink)
//
// Run: go test -run '^$' -bench EncryptionCost ./sqlstore

type pair struct {
	tink, noop time.Duration
	ratios     []float64
}

func (p *pair) add(tink, noop time.Duration) {
	p.tink += tink
	p.noop += noop
	if noop > 0 {
		p.ratios = append(p.ratios, float64(tink)/float64(noop))
	}
}

func (p *pair) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64(p.tink.Nanoseconds())/n, "ns/op-tink")
	b.ReportMetric(float64(p.noop.Nanoseconds())/n, "ns/op-noop")
	if len(p.ratios) > 0 {
		slices.Sort(p.ratios)
		m := p.ratios[len(p.ratios)/2]
		b.ReportMetric(m, "tink/noop")
		b.ReportMetric(100*(1-1/m), "cost-%")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func encBenchStore(b *testing.B, noop bool, cache int) (*sqlstore.Store, *vault.Vault) {
	b.Helper()
	dir := b.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys"), NoopCipherForBenchmarks: noop, CacheSize: cache})
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Path: filepath.Join(dir, "registrar.db"), Chain: "bench", Vault: v,
		Logger: discardLogger(), CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st, v
}

// BenchmarkEncryptionCostRead lists pages of 100 users (each with four sealed
// fields) from 2,000. "warm": the data keys are in the cache, as on a running
// server; "cold": every row's key is unwrapped from the KEK first (a cache of one).
func BenchmarkEncryptionCostRead(b *testing.B) {
	const users, page = 2000, 100
	for _, c := range []struct {
		name  string
		cache int
	}{{"warm", 0}, {"cold", 1}} {
		b.Run(c.name, func(b *testing.B) {
			stores := map[bool]*sqlstore.Store{}
			for _, noop := range []bool{false, true} {
				st, _ := encBenchStore(b, noop, c.cache)
				if err := st.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error {
					for i := 0; i < users; i++ {
						if _, err := tx.Put(ctx, records.User, extraStudent(i), sqlstore.PutOptions{SkipRefCheck: true}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				stores[noop] = st
			}
			read := func(st *sqlstore.Store, off int) time.Duration {
				start := time.Now()
				res, err := st.List(context.Background(), sqlstore.Query{Entity: records.User, Page: queryPage(page, off), NoCount: true})
				d := time.Since(start)
				if err != nil || len(res.Objects) != page || res.Objects[0].Str("email") == "" {
					b.Fatalf("list: %v (%d objects)", err, len(res.Objects))
				}
				return d
			}
			for _, noop := range []bool{false, true} { // warm both databases' pages
				for off := 0; off < users; off += page {
					read(stores[noop], off)
				}
			}
			var p pair
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := (i * page * 7) % (users - page)
				if i%2 == 0 {
					t := read(stores[false], off)
					p.add(t, read(stores[true], off))
				} else {
					n := read(stores[true], off)
					p.add(read(stores[false], off), n)
				}
			}
			p.report(b)
			b.ReportMetric(float64(page), "rows/op")
		})
	}
}

// BenchmarkEncryptionCostImport imports a generated OneRoster package (100 students
// with guardians, classes, line items and results) into an empty database.
func BenchmarkEncryptionCostImport(b *testing.B) {
	pkg := filepath.Join(b.TempDir(), "pkg")
	cfg := gen.Defaults(100)
	cfg.Seed = 1
	if _, err := gen.WriteCSV(context.Background(), pkg, cfg); err != nil {
		b.Fatal(err)
	}
	var p pair
	var rows int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false} // neither side always runs first
		}
		took := map[bool]time.Duration{}
		for _, noop := range order {
			b.StopTimer()
			st, _ := encBenchStore(b, noop, 0)
			b.StartTimer()
			start := time.Now()
			s, err := importer.New(st, nil).Import(context.Background(), pkg, importer.Options{})
			took[noop] = time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			rows = s.Rows
		}
		p.add(took[false], took[true])
	}
	p.report(b)
	b.ReportMetric(float64(rows), "rows/op")
}

// BenchmarkNewDataKey is the cost of a person's first sealed value (a key made and
// wrapped), which the no-op cipher pays too and the ratios above therefore omit.
func BenchmarkNewDataKey(b *testing.B) {
	v, err := vault.Open(vault.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		if _, err := v.NewDataKey(fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}
