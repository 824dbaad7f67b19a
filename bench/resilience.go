package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"registrar/bench/load"
)

// resilience runs the load generator at half the maximum rate while the server is
// killed with SIGKILL and restarted three times, then checks that every acknowledged
// write is present exactly once, that the audit trail verifies, and that no request
// failed outside the restart windows.
func resilience(ctx context.Context, o options, bin string, d *district, rep *report) error {
	smp, err := drawSample(ctx, filepath.Join(d.dir, "registrar.db"))
	if err != nil {
		return err
	}
	var toks []string
	for _, t := range smp.teachers {
		tok, err := runCmd(ctx, d.env, bin, "tokens", "issue", "--user", t.id, "--ttl", "2h")
		if err != nil {
			return err
		}
		toks = append(toks, strings.TrimSpace(tok))
	}
	// A fixed port, so the restarted server is where the clients expect it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr
	start := func() (*exec.Cmd, error) {
		c := exec.CommandContext(ctx, bin, "serve", "--addr", addr)
		c.Env = append(os.Environ(), d.env...)
		if err := c.Start(); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return c, nil
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Process.Kill()
		return nil, fmt.Errorf("server did not become ready on %s", addr)
	}
	srv, err := start()
	if err != nil {
		return err
	}

	var mu sync.Mutex
	acked := map[string]bool{}
	mix := load.Mix{
		{Name: "roster", Weight: 6, Make: func(r *rand.Rand) (*http.Request, error) {
			i := r.IntN(len(smp.teachers))
			return authGet(base+rost+"/classes/"+smp.teachers[i].class+"/students", toks[i])
		}},
		{Name: "write", Weight: 4, Make: func(r *rand.Rand) (*http.Request, error) {
			i := r.IntN(len(smp.teachers))
			t := smp.teachers[i]
			id := fmt.Sprintf("resilience-%d-%d", time.Now().UnixNano(), r.Uint64())
			body := fmt.Sprintf(`{"result":{"lineItem":{"sourcedId":%q},"student":{"sourcedId":%q},"scoreStatus":"fully graded","score":%d,"scoreDate":"2026-10-01"}}`,
				t.lineItem, t.students[r.IntN(len(t.students))], r.IntN(100))
			req, err := load.JSON("PUT", base+grad+"/results/"+id, toks[i], body)
			if err == nil {
				req.Header.Set("X-Bench-Id", id)
			}
			return req, err
		}, OK: func(status int) bool { return status == 201 || status == 200 }},
	}
	// Half the maximum: measure the maximum first, briefly.
	maxRes := load.Run(ctx, load.Options{Mix: mix[:1], Duration: 5 * time.Second, Workers: 16, Seed: 9})
	rate := maxRes.Throughput / 2
	dur := 3 * time.Minute
	if o.quick {
		dur = 60 * time.Second
	}
	// Record acknowledged writes through a transport wrapper.
	client := load.NewClient(512)
	client.Transport = ackRecorder{next: client.Transport, record: func(id string) { mu.Lock(); acked[id] = true; mu.Unlock() }}
	type window struct{ from, to time.Duration }
	var windows []window
	begin := time.Now()
	killerDone := make(chan error, 1)
	go func() {
		for k := 1; k <= 3; k++ {
			select {
			case <-ctx.Done():
				killerDone <- ctx.Err()
				return
			case <-time.After(dur / 4):
			}
			from := time.Since(begin)
			_ = srv.Process.Signal(syscall.SIGKILL)
			_ = srv.Wait()
			s, err := start()
			if err != nil {
				killerDone <- err
				return
			}
			srv = s
			windows = append(windows, window{from, time.Since(begin) + time.Second})
		}
		killerDone <- nil
	}()
	res := load.Run(ctx, load.Options{Mix: mix, Duration: dur, Rate: rate, Seed: 10, Keep: true, Client: client})
	if err := <-killerDone; err != nil {
		return err
	}
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()

	inWindow := func(at time.Duration) bool {
		for _, w := range windows {
			if at >= w.from-time.Second && at <= w.to {
				return true
			}
		}
		return false
	}
	var outside, inside, total int
	outsideBy := map[string]int{} // "request status" of the failures outside the windows
	for _, s := range res.Samples {
		total++
		if !s.OK {
			if inWindow(s.At) {
				inside++
			} else {
				outside++
				outsideBy[fmt.Sprintf("%s %d", s.Name, s.Status)]++
			}
		}
	}
	// Every acknowledged write is present exactly once, with exactly one successful audit event.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(d.dir, "registrar.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	// One pass over the trail's successful result writes, then a lookup per write.
	audited := map[string]int{}
	rows, err := db.QueryContext(ctx, `SELECT json_extract(body, '$.resourceId'), COUNT(*) FROM audit_events
		WHERE action = 'putResult' AND json_extract(body, '$.outcome') = 'ok' GROUP BY 1`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return err
		}
		audited[id] = n
	}
	rows.Close()
	var missing, dupAudit int
	for id := range acked {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM results WHERE sourced_id = ?", id).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			missing++
		}
		if audited[id] != 1 {
			dupAudit++
		}
	}
	verify, verr := runCmd(ctx, d.env, bin, "audit", "verify")
	status := "intact"
	if verr != nil {
		status = "NOT intact: " + verr.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s of mixed load (60%% class rosters, 40%% result writes by teachers, open loop) at %.0f requests/s (half of the %.0f/s measured just before), while the server was killed with SIGKILL and restarted 3 times. A restart window runs from the kill to one second after the new process answers /readyz.\n\n",
		dur, rate, maxRes.Throughput)
	fmt.Fprintf(&b, "| figure | value |\n|---|---:|\n| requests | %d |\n| failed inside the restart windows | %d |\n| **failed outside the restart windows** | **%d** |\n", total, inside, outside)
	fmt.Fprintf(&b, "| acknowledged writes | %d |\n| **acknowledged writes missing or duplicated** | **%d** |\n| acknowledged writes without exactly one audit event | %d |\n| audit trail after the run | %s |\n", len(acked), missing, dupAudit, status)
	for k, n := range outsideBy {
		fmt.Fprintf(&b, "| failed outside the windows: %s (status 0: no response) | %d |\n", k, n)
	}
	for i, w := range windows {
		fmt.Fprintf(&b, "| restart %d window | %.1fs to %.1fs |\n", i+1, w.from.Seconds(), w.to.Seconds())
	}
	_ = verify
	rep.add("Resilience: kill -9 under load", b.String())
	if outside > 0 || missing > 0 || dupAudit > 0 || verr != nil {
		return fmt.Errorf("resilience run failed: %d errors outside restart windows, %d acknowledged writes missing, %d audit mismatches, audit: %s", outside, missing, dupAudit, status)
	}
	return nil
}

// ackRecorder notes the ids of writes that the server acknowledged.
type ackRecorder struct {
	next   http.RoundTripper
	record func(id string)
}

func (a ackRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == 201 || resp.StatusCode == 200) {
		if id := req.Header.Get("X-Bench-Id"); id != "" {
			a.record(id)
		}
	}
	return resp, err
}
