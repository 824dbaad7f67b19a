package httpapi_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/bench/bare"
	"registrar/cache"
	"registrar/httpapi"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// BenchmarkEndpoints is issue 2's speed figure: GET /students/{id} and
// GET /classes/{id}/students (about 30 students) over a generated district of
// REGISTRAR_BENCH_STUDENTS students (default 10,000), each beside the bare handler
// (bench/bare: plain net/http and database/sql running the same SQL on the same
// SQLite file, no authentication, authorization, decryption or audit) in the same run.
// Both are served over loopback HTTP to the same closed-loop clients. The registrar
// server is wired as `registrar serve` wires it (in-process cache included) and the
// caller is an LMS client of the whole district, whose reads are audited and recorded
// as disclosures. ratio is registrar's throughput over the baseline's (target >= 0.5).
// REGISTRAR_BENCH_NO_AUDIT=1 turns the audit trail off (to see what it costs; never a
// reported figure) and REGISTRAR_BENCH_PROFILE=PREFIX writes CPU profiles.
func BenchmarkEndpoints(b *testing.B) {
	dbPath := filepath.Join(b.TempDir(), "registrar.db")
	benchEndpoints(b, sqlstore.Options{Path: dbPath}, "sqlite", "file:"+dbPath+"?_pragma=query_only(ON)",
		func(ctx context.Context) (*bare.Server, error) { return bare.Start(ctx, dbPath) })
}

// benchEndpoints imports the generated district into the store o opens, serves it as
// `registrar serve` does beside the bare handler startBare serves, and measures the
// pair; ids are sampled through driver and dsn.
func benchEndpoints(b *testing.B, o sqlstore.Options, driver, dsn string, startBare func(context.Context) (*bare.Server, error)) {
	ctx := context.Background()
	students := 10000
	if s := os.Getenv("REGISTRAR_BENCH_STUDENTS"); s != "" {
		students, _ = strconv.Atoi(s)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	o.Logger, o.NoAuditForBenchmarks = log, os.Getenv("REGISTRAR_BENCH_NO_AUDIT") != ""
	o.IndexInterval = -1 // runs in registrar's turns only (measureEndpoints)
	st, v := testdistrict.Generated(b, students, o)

	auth, err := authn.New(st, v, time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	c := cache.NewMemory(cache.MemoryOptions{})
	auth.SetVerifiedCache(c, 5*time.Minute)
	secret, hash := authn.NewSecret()
	client := records.Client{ID: vault.RandomID(), Name: "bench LMS", SecretHash: hash, Scopes: []string{authz.RosterCoreReadonly},
		Orgs: []string{"*"}, LegalBasis: authz.BasisSchoolOfficial, ContractRef: "bench-1", Purpose: "benchmark"}
	if err := st.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, client) }); err != nil {
		b.Fatal(err)
	}
	tok, err := auth.IssueClientToken(ctx, client.ID, secret, "")
	if err != nil {
		b.Fatal(err)
	}
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC, Cache: c})
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	base, err := startBare(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(base.Close)

	db, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// The work registrar's reads leave behind (the indexer's rows, the log-stream
	// copy) runs in registrar's turns only: each turn starts the indexer on what the
	// turn before left, beside its own requests as the periodic runs of `registrar
	// serve` do (the bench turns those off: o.IndexInterval), and ends when that run
	// and the log copy are done.
	turn := func() (wait func()) {
		done := make(chan error, 1)
		go func() { done <- st.FlushAuditIndex(ctx) }()
		return func() {
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			if err := st.FlushLog(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	measureEndpoints(b, db, srv.URL, tok.AccessToken, base.URL, turn, st.CommitStats)
}

// measureEndpoints runs issue 2's pair, registrar at regURL (with token) beside the
// bare handler at bareURL, over ids sampled from db, each as a sub-benchmark. The two
// take turns, endpointRounds each, so that a shared machine's drift in speed falls on
// both alike. turn starts registrar's background work at the start of each of its
// turns and returns what waits for it at the end; the last turn also waits for the
// work its own requests left. commits reads the committer's counts (requests/commit).
func measureEndpoints(b *testing.B, db *sql.DB, regURL, token, bareURL string, turn func() (wait func()), commits func() (batches, requests int64)) {
	ctx := context.Background()
	sample := func(q string) []string {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				b.Fatal(err)
			}
			out = append(out, id)
		}
		if len(out) == 0 {
			b.Fatalf("no rows for %s", q)
		}
		return out
	}
	studentIDs := sample("SELECT user_id FROM user_roles WHERE role = 'student' ORDER BY user_id LIMIT 1000")
	classIDs := sample("SELECT DISTINCT class_id FROM enrollments WHERE role = 'student' ORDER BY class_id LIMIT 300")
	paths := func(prefix string, ids []string, suffix string) []string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = prefix + id + suffix
		}
		return out
	}
	const rost = "/ims/oneroster/rostering/v1p2"
	const workers = 64
	for _, ep := range []struct {
		name, prefix, suffix string
		ids                  []string
	}{
		{"GET /students/{id}", "/students/", "", studentIDs},
		{"GET /classes/{id}/students", "/classes/", "/students", classIDs},
	} {
		b.Run(ep.name, func(b *testing.B) {
			p := paths(ep.prefix, ep.ids, ep.suffix)
			rp := paths(rost+ep.prefix, ep.ids, ep.suffix)
			// Warm both (page cache, prepared statements, keys) before timing.
			auditBenchLoad(b, regURL, token, rp, len(rp), workers)
			auditBenchLoad(b, bareURL, "", p, len(p), workers)
			turn()()
			batches0, requests0 := commits()
			b.ResetTimer()
			var reg, regCPU, bareT, bareCPU time.Duration
			rounds := min(endpointRounds, b.N)
			for r := range rounds {
				n := b.N / rounds
				if r < b.N%rounds {
					n++
				}
				stop := profileRegistrar(b, ep.name, r)
				start, cpu := time.Now(), cpuTime(b)
				wait := turn()
				auditBenchLoad(b, regURL, token, rp, n, workers)
				wait()
				if r == rounds-1 {
					turn()()
				}
				reg, regCPU = reg+time.Since(start), regCPU+cpuTime(b)-cpu
				stop()
				t, c := auditBenchLoad(b, bareURL, "", p, n, workers)
				bareT, bareCPU = bareT+t, bareCPU+c
			}
			if batches, requests := commits(); batches > batches0 {
				b.ReportMetric(float64(requests-requests0)/float64(batches-batches0), "requests/commit")
			}
			b.ReportMetric(float64(b.N)/reg.Seconds(), "registrar-req/s")
			b.ReportMetric(float64(b.N)/bareT.Seconds(), "baseline-req/s")
			b.ReportMetric(bareT.Seconds()/reg.Seconds(), "ratio")
			// CPU per request (the process's, load generator included) is steadier than
			// throughput on a shared machine: the same ratio by CPU time.
			b.ReportMetric(float64(regCPU.Microseconds())/float64(b.N), "registrar-cpu-µs/req")
			b.ReportMetric(float64(bareCPU.Microseconds())/float64(b.N), "baseline-cpu-µs/req")
			b.ReportMetric(bareCPU.Seconds()/regCPU.Seconds(), "cpu-ratio")
		})
	}
}

// endpointRounds is how many turns registrar and the baseline take in one figure.
const endpointRounds = 10

// profileRegistrar writes a CPU profile of registrar's half of round r of a figure
// to $REGISTRAR_BENCH_PROFILE-<endpoint>-<r>.prof when that variable is set (the
// package's -cpuprofile would mix in the district's import and the baseline); `go
// tool pprof` merges the rounds' files.
func profileRegistrar(b *testing.B, name string, r int) func() {
	prefix := os.Getenv("REGISTRAR_BENCH_PROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s-%s-%d.prof", prefix, strings.NewReplacer("/", "_", " ", "_", "{", "", "}", "").Replace(name), r))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
