package sqlstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"registrar/audit"
	"registrar/sqlstore"
	"registrar/vault"
)

// BenchmarkVerifyMillionEvents measures `audit verify` on a trail of a million events
// (REGISTRAR_BENCH_EVENTS overrides the size), written through the committer in
// batches of 10,000, each event naming two students, a checkpoint every 1000 events.
func BenchmarkVerifyMillionEvents(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("REGISTRAR_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	dir := b.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: filepath.Join(dir, "r.db"), Chain: "bench", Vault: v, CheckpointInterval: -1,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	const batch = 10_000
	evs := make([]audit.Event, batch)
	for written := 0; written < n; written += batch {
		for i := range evs {
			k := written + i
			evs[i] = audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "vendor-" + strconv.Itoa(k%7), Action: "getStudent", Route: "GET /ims/oneroster/rostering/v1p2/students/{sourcedId}",
				ResourceType: "user", ResourceID: fmt.Sprintf("student-%d", k%5000), Students: []string{fmt.Sprintf("student-%d", k%5000), fmt.Sprintf("student-%d", (k+1)%5000)},
				Outcome: audit.OK, Status: 200, RequestID: "req-" + strconv.Itoa(k), Source: "10.0.0.1", LegalBasis: "school-official", Purpose: "rostering"}
		}
		if err := st.Write(ctx, nil, evs[:min(batch, n-written)]...); err != nil {
			b.Fatal(err)
		}
	}
	gen := time.Since(start)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := st.Verify(ctx, sqlstore.VerifyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Events != int64(n) {
			b.Fatalf("verified %d events, want %d", rep.Events, n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "verify-events/s")
	b.ReportMetric(float64(n)/gen.Seconds(), "append-events/s")
	b.ReportMetric(0, "ns/op")
}
