package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/httpapi"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// auditBenchServer is the harness's server with the audit trail on or off, logging to
// nowhere (the log stream's cost is the handler's, not the trail's).
type auditBenchServer struct {
	url             string
	vendor, teacher string
}

func newAuditBenchServer(b *testing.B, auditOff bool) *auditBenchServer {
	b.Helper()
	dir := b.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: dir + "/registrar.db", Chain: "bench", Vault: v, Logger: log, NoAuditForBenchmarks: auditOff})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := testdistrict.Load(ctx, st); err != nil {
		b.Fatal(err)
	}
	auth, err := authn.New(st, v, time.Hour, nil)
	if err != nil {
		b.Fatal(err)
	}
	secret, hash := authn.NewSecret()
	c := records.Client{ID: vault.RandomID(), Name: "bench vendor", SecretHash: hash, Scopes: []string{authz.RosterReadonly, authz.GradebookReadonly},
		Orgs: []string{"*"}, LegalBasis: authz.BasisStudies, Purpose: "benchmark"}
	if err := st.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }); err != nil {
		b.Fatal(err)
	}
	tok, err := auth.IssueClientToken(ctx, c.ID, secret, "")
	if err != nil {
		b.Fatal(err)
	}
	teacher, err := auth.IssueUserToken(testdistrict.TeacherA, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: time.UTC})
	s.SetClock(func() time.Time { return testdistrict.Today })
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	return &auditBenchServer{url: srv.URL, vendor: tok.AccessToken, teacher: teacher}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// auditBenchLoad sends n GETs from workers concurrent clients and returns the elapsed
// time and the CPU time the process (clients and servers) used meanwhile.
func auditBenchLoad(b *testing.B, base, token string, paths []string, n, workers int) (time.Duration, time.Duration) {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start, cpu := time.Now(), cpuTime(b)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				req, _ := http.NewRequest("GET", base+paths[int(i)%len(paths)], nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d requests failed", f, n)
	}
	return time.Since(start), cpuTime(b) - cpu
}

// BenchmarkAuditedReads measures read throughput with the durable audit trail (group
// commit, hash chain, student index, record of disclosures, checkpoints) beside the
// same server with the audit off, in one run; ratio is audited/off (target >= 0.7).
func BenchmarkAuditedReads(b *testing.B) {
	paths := []string{
		"/ims/oneroster/rostering/v1p2/students/" + testdistrict.Minor,
		"/ims/oneroster/rostering/v1p2/classes/" + testdistrict.ClassMathA + "/students",
		"/ims/oneroster/gradebook/v1p2/classes/" + testdistrict.ClassMathA + "/results",
		"/ims/oneroster/rostering/v1p2/enrollments/enr-minor-math",
	}
	for _, who := range []string{"vendor", "teacher"} {
		b.Run(who, func(b *testing.B) {
			on, off := newAuditBenchServer(b, false), newAuditBenchServer(b, true)
			tok := func(s *auditBenchServer) string {
				if who == "vendor" {
					return s.vendor
				}
				return s.teacher
			}
			const workers = 32
			// Warm both (connections, statement caches, data keys).
			_, _ = auditBenchLoad(b, on.url, tok(on), paths, 200, workers)
			_, _ = auditBenchLoad(b, off.url, tok(off), paths, 200, workers)
			b.ResetTimer()
			// Alternate in eight rounds so drift in the machine's speed (other work on a
			// shared machine) hits both alike.
			const rounds = 8
			var dOn, dOff, cOn, cOff time.Duration
			part := max(b.N/rounds, 1)
			for r := 0; r < rounds; r++ {
				d, c := auditBenchLoad(b, off.url, tok(off), paths, part, workers)
				dOff, cOff = dOff+d, cOff+c
				d, c = auditBenchLoad(b, on.url, tok(on), paths, part, workers)
				dOn, cOn = dOn+d, cOn+c
			}
			b.StopTimer()
			n := float64(rounds * part)
			rOn, rOff := n/dOn.Seconds(), n/dOff.Seconds()
			b.ReportMetric(rOn, "audited-reads/s")
			b.ReportMetric(rOff, "unaudited-reads/s")
			b.ReportMetric(rOn/rOff, "ratio")
			// Reads per CPU-second, clients included: steadier than wall time on a
			// shared machine, blind to time spent waiting for fsync.
			b.ReportMetric((n/cOn.Seconds())/(n/cOff.Seconds()), "cpu-ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}
