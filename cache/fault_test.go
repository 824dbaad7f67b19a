package cache_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"registrar/authz"
	"registrar/cache"
	"registrar/internal/testdistrict"
)

// TestServerSurvivesRedisOutage stops Redis (SIGKILL) under load: reads keep being
// answered from the database, /readyz says the cache is degraded but stays 200, the
// metrics show it; Redis is started again and the cache comes back by itself.
func TestServerSurvivesRedisOutage(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	// The cache as cmd/registrar stacks it, with a near level of 100ms so that most
	// lookups reach Redis. A call timeout above production's 50ms keeps a loaded CI
	// machine from tripping the breaker before Redis is stopped (TestRedisBreaker
	// covers the short timeout); a short cooldown keeps the test fast.
	h := newHarness(t, wiredRedis(t, cache.RedisOptions{Addr: srv.Addr, Timeout: 250 * time.Millisecond, BreakerCooldown: 100 * time.Millisecond, BreakerMaxCooldown: 400 * time.Millisecond}, 100*time.Millisecond))
	teacher := h.user(testdistrict.TeacherA)
	_, vendor := h.client([]string{authz.RosterReadonly}, testdistrict.District)
	path := student + testdistrict.Minor

	if status, c := h.readyz(); status != 200 || c != "ok" {
		t.Fatalf("before: readyz %d, cache %q; want 200 ok", status, c)
	}
	stop := make(chan struct{})
	waitTeacher := h.load(3, path, teacher, stop)
	waitVendor := h.load(3, path, vendor, stop)
	raw := dialRaw(t, srv.Addr)
	redisHits := func(raw *rawRedis) int { return infoStat(t, raw, "keyspace_hits") }
	waitFor(t, "Redis is not being hit under load", 10*time.Second, func() bool { return redisHits(raw) > 20 })

	srv.stop()
	waitFor(t, "registrar_cache_degraded did not become 1 with Redis stopped", 10*time.Second, func() bool {
		return h.metric("registrar_cache_degraded") == "1"
	})
	status, c := h.readyz()
	if status != 200 || c != "degraded" {
		t.Errorf("during the outage: readyz %d, cache %q; want 200 degraded", status, c)
	}
	if n, _ := strconv.Atoi(h.metric("registrar_cache_errors_total")); n == 0 {
		t.Error("registrar_cache_errors_total is 0 during the outage")
	}
	for i := range 20 {
		start := time.Now()
		for _, tok := range []string{teacher, vendor} {
			if r := h.do("GET", path, tok, ""); r.status != 200 {
				t.Fatalf("request %d during the outage: status %d: %s", i, r.status, r.body)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("two requests during the outage took %v", d)
		}
	}

	srv.restart()
	waitFor(t, "the cache did not come back after Redis restarted", 15*time.Second, func() bool {
		status, c := h.readyz()
		return status == 200 && c == "ok" && h.metric("registrar_cache_degraded") == "0"
	})
	raw = dialRaw(t, srv.Addr)
	waitFor(t, "the restarted Redis is not being written and read", 10*time.Second, func() bool {
		n, _ := raw.do(t, "DBSIZE").(int64)
		return n > 0 && redisHits(raw) > 20
	})
	close(stop)
	for who, counts := range map[string]map[int]int{"teacher": waitTeacher(), "vendor": waitVendor()} {
		total := 0
		for status, n := range counts {
			total += n
			if status != 200 {
				t.Errorf("%s: %d requests answered %d", who, n, status)
			}
		}
		if total < 50 {
			t.Errorf("%s: only %d requests in the run", who, total)
		}
	}
	if st := h.cache.Stats(); st.Skipped == 0 {
		t.Errorf("stats %+v: the breaker never skipped a call", st)
	}
}

// infoStat reads a counter from Redis's INFO stats.
func infoStat(t *testing.T, raw *rawRedis, name string) int {
	t.Helper()
	info, _ := raw.do(t, "INFO", "stats").([]byte)
	for line := range strings.SplitSeq(string(info), "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("INFO stats has no %s", name)
	return 0
}
