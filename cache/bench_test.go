package cache_test

// What the cache buys on the request path: GET /students/{id} on the test district
// by several kinds of principal, in one run on one machine: without a cache
// (nocache), with the in-process cache (memory), with it in front of Redis as
// cmd/registrar wires --redis-addr (redis), and with Redis alone (redisonly: every
// lookup a round trip, to show what the near level saves).
//
//	go test ./cache -run '^$' -bench GetStudent -benchtime 20x
//
// The servers run side by side and are measured in alternating bursts (each
// burst: 256 requests from 32 concurrent clients), so that a machine busy with other
// work slows all of them alike. Each sub-benchmark reports, per backend, req/s and
// the process CPU time per request (client and server share the process; the
// client's part is the same for all three).

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"registrar/authz"
	"registrar/cache"
	"registrar/internal/testdistrict"
	"registrar/vault"
)

func BenchmarkGetStudent(b *testing.B) {
	redis := redisAddr(b)
	backends := []struct {
		name string
		mk   func(b *testing.B) func(*vault.Vault) cache.Cache
	}{
		{"nocache", func(*testing.B) func(*vault.Vault) cache.Cache { return nil }},
		{"memory", func(*testing.B) func(*vault.Vault) cache.Cache { return memoryCache() }},
		{"redis", func(b *testing.B) func(*vault.Vault) cache.Cache {
			return wiredRedis(b, cache.RedisOptions{Addr: redis}, 0)
		}},
		{"redisonly", func(b *testing.B) func(*vault.Vault) cache.Cache {
			return sealedRedis(b, cache.RedisOptions{Addr: redis})
		}},
	}
	principals := []struct {
		name  string
		token func(h *harness) string
	}{
		{"vendor of every org", func(h *harness) string { _, t := h.client([]string{authz.RosterReadonly}); return t }},
		{"vendor of one district", func(h *harness) string {
			_, t := h.client([]string{authz.RosterReadonly}, testdistrict.District)
			return t
		}},
		{"teacher", func(h *harness) string { return h.user(testdistrict.TeacherA) }},
		{"district admin", func(h *harness) string { return h.user(testdistrict.Admin) }},
		{"parent", func(h *harness) string { return h.user(testdistrict.Guardian) }},
	}
	const clients, burst = 32, 256
	for _, p := range principals {
		b.Run(p.name, func(b *testing.B) {
			type target struct {
				name, url, tok string
				h              *harness
				reqs           int
				wall, cpu      time.Duration
			}
			var targets []*target
			for _, be := range backends {
				h := newHarness(b, be.mk(b))
				targets = append(targets, &target{name: be.name, url: h.srv.URL + student + testdistrict.Minor, tok: p.token(h), h: h})
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			run := func(tg *target) {
				var wg sync.WaitGroup
				jobs := make(chan struct{}, burst)
				for range burst {
					jobs <- struct{}{}
				}
				close(jobs)
				cpu0, t0 := cpuTime(), time.Now()
				for range clients {
					wg.Go(func() {
						for range jobs {
							req, _ := http.NewRequest("GET", tg.url, nil)
							req.Header.Set("Authorization", "Bearer "+tg.tok)
							resp, err := client.Do(req)
							if err != nil {
								b.Error(err)
								return
							}
							_, _ = io.Copy(io.Discard, resp.Body)
							_ = resp.Body.Close()
							if resp.StatusCode != 200 {
								b.Errorf("%s: status %d", tg.name, resp.StatusCode)
								return
							}
						}
					})
				}
				wg.Wait()
				tg.wall += time.Since(t0)
				tg.cpu += cpuTime() - cpu0
				tg.reqs += burst
			}
			for _, tg := range targets { // warm up: connections, caches, prepared statements
				run(tg)
				tg.reqs, tg.wall, tg.cpu = 0, 0, 0
			}
			i := 0
			for b.Loop() {
				for j := range targets { // rotate the order: no backend always runs first
					run(targets[(i+j)%len(targets)])
				}
				i++
			}
			for _, tg := range targets {
				b.ReportMetric(float64(tg.reqs)/tg.wall.Seconds(), tg.name+"-req/s")
				b.ReportMetric(float64(tg.cpu.Microseconds())/float64(tg.reqs), tg.name+"-cpu-µs/req")
				if tg.h.cache != nil {
					st := tg.h.cache.Stats()
					b.ReportMetric(float64(st.Hits)/float64(max(1, st.Hits+st.Misses)), tg.name+"-hit-ratio")
				}
			}
			base := targets[0]
			for _, tg := range targets[1:] {
				b.ReportMetric((float64(tg.reqs)/tg.wall.Seconds())/(float64(base.reqs)/base.wall.Seconds()), fmt.Sprintf("%s/nocache-req/s", tg.name))
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
