package stream_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"registrar/audit"
	"registrar/authz"
	"registrar/oneroster"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/stream"
	"registrar/stream/streamtest"
)

// BenchmarkWorkerVsStore measures events applied per second by one worker reading
// from the emulator, beside the same events applied straight through the store API
// (decode, validate, put, audit; as many per transaction as the worker's batch) in
// the same run, and the end-to-end lag from put to applied at a steady rate below
// saturation. Run it once:
//
//	go test -run '^$' -bench WorkerVsStore -benchtime 1x ./stream/
func BenchmarkWorkerVsStore(b *testing.B) {
	const n, batch = 3000, 200
	ctx := context.Background()
	msgs := userMessages("user-b", n, "B")

	// Straight through the store.
	d1 := newDistrict(b)
	sis1 := d1.client(b, []string{authz.AdminScope})
	start := time.Now()
	for i := 0; i < n; i += batch {
		err := d1.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			for _, m := range msgs[i:min(i+batch, n)] {
				ev, err := stream.ParseEvent(m.Data)
				if err != nil {
					return err
				}
				obj, err := oneroster.DecodeObject(records.User, ev.Object)
				if err != nil {
					return err
				}
				if errs := records.Validate(records.User, obj); len(errs) > 0 {
					return records.InvalidFields("user", errs)
				}
				if _, err := tx.Put(ctx, records.User, obj, sqlstore.PutOptions{}); err != nil {
					return err
				}
				tx.Audit(audit.Event{PrincipalKind: audit.KindClient, PrincipalID: sis1, Action: "stream.upsert", ResourceType: "user", ResourceID: ev.SourcedID, Students: []string{ev.SourcedID}, Outcome: audit.OK})
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	direct := float64(n) / time.Since(start).Seconds()

	// One worker from the emulator: a backlog of n events on 4 shards.
	d2 := newDistrict(b)
	sis2 := d2.client(b, []string{authz.AdminScope})
	k := streamtest.New(b, streamtest.StreamName(b), 4, nil)
	if err := k.Put(ctx, msgs); err != nil {
		b.Fatal(err)
	}
	tl := &tally{}
	w := newWorker(d2, "bench", tl, stream.Source{Stream: k, Client: sis2})
	w.Batch, w.Poll = batch, 10*time.Millisecond
	var mu sync.Mutex
	var put = map[string]time.Time{}
	var lags []time.Duration
	inner := w.OnBatch
	w.OnBatch = func(bi stream.BatchInfo) {
		inner(bi)
		mu.Lock()
		for _, id := range bi.Events {
			if t, ok := put[id]; ok {
				lags = append(lags, bi.Committed.Sub(t))
			}
		}
		mu.Unlock()
	}
	start = time.Now()
	runWorker(b, w)
	waitFor(b, "the backlog applied", 5*time.Minute, func() bool { return tl.handled() >= n })
	fromStream := float64(n) / time.Since(start).Seconds()

	// Lag at a steady 500 events/s: 2000 events, 10 every 20 ms.
	lagMsgs := userMessages("user-lag", 2000, "L")
	for i := 0; i < len(lagMsgs); i += 10 {
		now := time.Now()
		mu.Lock()
		for _, m := range lagMsgs[i : i+10] {
			var ev struct{ ID string }
			_ = json.Unmarshal(m.Data, &ev)
			put[ev.ID] = now
		}
		mu.Unlock()
		if err := k.Put(ctx, lagMsgs[i:i+10]); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Until(now.Add(20 * time.Millisecond)))
	}
	waitFor(b, "the steady events applied", 2*time.Minute, func() bool { return tl.handled() >= n+2000 })
	mu.Lock()
	slices.Sort(lags)
	pct := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000 }
	b.ReportMetric(direct, "store-events/s")
	b.ReportMetric(fromStream, "worker-events/s")
	b.ReportMetric(fromStream/direct, "ratio")
	b.ReportMetric(pct(0.50), "lag-p50-ms")
	b.ReportMetric(pct(0.95), "lag-p95-ms")
	b.ReportMetric(pct(0.99), "lag-p99-ms")
	b.Logf("store %.0f events/s; worker from kinesalite %.0f events/s (ratio %.2f); lag put->applied at 500/s over %d events: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms",
		direct, fromStream, fromStream/direct, len(lags), pct(0.5), pct(0.95), pct(0.99))
	mu.Unlock()
}
