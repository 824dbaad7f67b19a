package sqlstore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"registrar/audit"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// BenchmarkAuditedRead is the cost of making one disclosing read durable, as
// GET /students/{id} by an LMS client does: 64 callers each append an event naming
// one student with the user's fields, through the committer, with the indexer and
// the log-stream copy running as they do in `registrar serve`. It reports the
// process's CPU time per event beside the wall time (ns/op); the figures are for
// comparing builds of the audit path (go test ./sqlstore -run '^$' -bench
// AuditedRead -benchtime 50000x), not a target.
func BenchmarkAuditedRead(b *testing.B) {
	dir := b.TempDir()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, sqlstore.Options{Path: filepath.Join(dir, "r.db"), Chain: "bench", Vault: v,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fields := userFields()
	measureCallers(b, st, func(k int) error {
		return st.Audit(ctx, lmsRead(fmt.Sprintf("student-%05d", k%10000), fields, k))
	}, "cpu-µs/event", "events/s")
}

// userFields is every field of a user: what an LMS client's read of one discloses.
func userFields() []string {
	var fields []string
	for _, f := range records.User.Fields {
		fields = append(fields, f.Name)
	}
	return fields
}

// lmsRead is the audit event of an LMS client's GET /students/{id} of student id
// (the k-th request): a disclosure of fields under the school-official exception.
func lmsRead(id string, fields []string, k int) audit.Event {
	return audit.Event{PrincipalKind: audit.KindClient, PrincipalID: "0f9c2a4e-lms", ClientID: "0f9c2a4e-lms", Action: "getStudent",
		Route: "GET /ims/oneroster/rostering/v1p2/students/{sourcedId}", ResourceType: "user", ResourceID: id, Students: []string{id},
		Fields: fields, LegalBasis: "school-official", Purpose: "benchmark", Disclosed: true, Outcome: audit.OK, Status: 200,
		RequestID: fmt.Sprintf("req-%08d", k), Source: "127.0.0.1"}
}

// measureCallers runs op(k) for every k below b.N from 64 concurrent callers, waits
// for the indexer and the log-stream copy to catch up, and reports the process's CPU
// time per op and ops per second under the two units given.
func measureCallers(b *testing.B, st *sqlstore.Store, op func(k int) error, cpuUnit, rateUnit string) {
	ctx := context.Background()
	const callers = 64
	var next atomic.Int64
	b.ResetTimer()
	start, cpu := time.Now(), processCPU(b)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= b.N {
					return
				}
				if err := op(k); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := st.FlushAuditIndex(ctx); err != nil {
		b.Fatal(err)
	}
	if err := st.FlushLog(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed, used := time.Since(start), processCPU(b)-cpu
	b.StopTimer()
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), cpuUnit)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), rateUnit)
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
