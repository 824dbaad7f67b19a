package cache_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/cache"
)

func TestRedisConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	roundTrip := func(t *testing.T, c cache.Cache) error {
		t.Helper()
		k := cache.Key(kind(t), "x")
		if err := c.Set(ctx, k, []byte("v"), time.Minute); err != nil {
			return err
		}
		v, ok, err := c.Get(ctx, k)
		if err == nil && (!ok || string(v) != "v") {
			t.Errorf("got %q (hit %v), want v", v, ok)
		}
		return err
	}

	t.Run("plain TCP is refused to an address that is not loopback", func(t *testing.T) {
		t.Parallel()
		for _, addr := range []string{"10.0.0.5:6379", "cache.example.internal:6379"} {
			_, err := cache.NewRedis(cache.RedisOptions{Addr: addr})
			if err == nil || !strings.Contains(err.Error(), "TLS") {
				t.Errorf("%s: got %v, want a refusal that names TLS", addr, err)
			}
		}
		if _, err := cache.NewRedis(cache.RedisOptions{Addr: "no-port"}); err == nil {
			t.Error("an address without a port was accepted")
		}
	})

	t.Run("AUTH: the right password works, a wrong or missing one does not", func(t *testing.T) {
		t.Parallel()
		const password = "s3cret-auth-token-for-the-test"
		srv := startRedis(t, "--requirepass", password)
		if err := roundTrip(t, newRedis(t, cache.RedisOptions{Addr: srv.Addr, Password: password})); err != nil {
			t.Errorf("with the password: %v", err)
		}
		for _, pw := range []string{"", "wrong"} {
			err := roundTrip(t, newRedis(t, cache.RedisOptions{Addr: srv.Addr, Password: pw}))
			if err == nil {
				t.Errorf("password %q: the call succeeded", pw)
			} else if strings.Contains(err.Error(), password) {
				t.Errorf("the error shows the password: %v", err)
			}
		}
	})

	t.Run("TLS with AUTH, verified against the CA", func(t *testing.T) {
		t.Parallel()
		const password = "tls-and-auth"
		args, clientTLS := testCA(t, t.TempDir())
		srv := startRedis(t, append(args, "--requirepass", password)...)
		if err := roundTrip(t, newRedis(t, cache.RedisOptions{Addr: srv.Addr, Password: password, TLS: clientTLS})); err != nil {
			t.Errorf("over TLS: %v", err)
		}
		// The system roots do not know the test CA: the handshake must fail.
		if err := roundTrip(t, newRedis(t, cache.RedisOptions{Addr: srv.Addr, Password: password, TLS: clientTLSWithoutCA()})); err == nil {
			t.Error("a server certificate from an unknown CA was accepted")
		}
		// Plain TCP to the TLS port gets nowhere.
		if err := roundTrip(t, newRedis(t, cache.RedisOptions{Addr: srv.Addr, Password: password})); err == nil {
			t.Error("plain TCP to the TLS port worked")
		}
	})
}

// TestRedisBreaker: a Redis that is down or slow costs a request at most one call
// timeout, then nothing while the breaker is open; the breaker closes by itself
// once Redis answers again.
func TestRedisBreaker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("stopped and restarted", func(t *testing.T) {
		t.Parallel()
		srv := startRedis(t)
		c := newRedis(t, cache.RedisOptions{Addr: srv.Addr, Timeout: 200 * time.Millisecond, BreakerCooldown: 50 * time.Millisecond, BreakerMaxCooldown: 200 * time.Millisecond})
		k := cache.Key(kind(t), "x")
		if err := c.Set(ctx, k, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		srv.stop()
		for range 3 { // the threshold
			if _, ok, err := c.Get(ctx, k); ok || err == nil {
				t.Fatalf("a stopped Redis answered (hit %v, %v)", ok, err)
			}
		}
		st := c.Stats()
		if !st.Degraded || st.Errors < 3 {
			t.Fatalf("after 3 failures: %+v, want degraded with 3 errors", st)
		}
		start := time.Now()
		if _, _, err := c.Get(ctx, k); !errors.Is(err, cache.ErrUnavailable) {
			t.Errorf("with the breaker open: got %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Millisecond {
			t.Errorf("an open breaker took %v to answer", d)
		}
		if c.Stats().Skipped == 0 {
			t.Error("skipped calls are not counted")
		}
		srv.restart()
		waitFor(t, "the breaker did not close after Redis came back", 10*time.Second, func() bool {
			_ = c.Ping(ctx)
			return !c.Stats().Degraded
		})
		if err := c.Set(ctx, k, []byte("again"), time.Minute); err != nil {
			t.Errorf("after recovery: %v", err)
		}
	})

	t.Run("a Redis that accepts but never answers", func(t *testing.T) {
		t.Parallel()
		addr := blackhole(t)
		const timeout = 50 * time.Millisecond
		c := newRedis(t, cache.RedisOptions{Addr: addr, Timeout: timeout, BreakerCooldown: time.Hour})
		k := cache.Key(kind(t), "x")
		for i := range 3 {
			start := time.Now()
			_, ok, err := c.Get(ctx, k)
			d := time.Since(start)
			if ok || err == nil {
				t.Fatalf("call %d: a silent server answered", i)
			}
			if d > 10*timeout {
				t.Errorf("call %d took %v with a %v timeout", i, d, timeout)
			}
		}
		start := time.Now()
		for range 1000 {
			_, _, _ = c.Get(ctx, k)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("1000 calls with the breaker open took %v", d)
		}
		if st := c.Stats(); !st.Degraded || st.Skipped < 1000 {
			t.Errorf("stats %+v: want degraded and 1000 skipped", st)
		}
	})

	t.Run("a caller that goes away does not count against Redis", func(t *testing.T) {
		t.Parallel()
		addr := blackhole(t)
		c := newRedis(t, cache.RedisOptions{Addr: addr, Timeout: time.Second})
		for range 5 {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			_, _, _ = c.Get(cctx, cache.Key(kind(t), "x"))
			cancel()
		}
		if st := c.Stats(); st.Degraded || st.Errors != 0 {
			t.Errorf("stats %+v after cancelled calls: want healthy, no errors", st)
		}
	})
}

// blackhole listens on loopback, accepts connections and never writes a byte.
func blackhole(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestTieredOutlivesRedis: with the in-process level in front, entries read or
// written recently are still served while Redis is down, and entries another
// instance wrote are found in Redis.
func TestTieredOutlivesRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := startRedis(t)
	keys := testKeys(t)
	open := func() *cache.Tiered {
		return cache.NewTiered(cache.NewMemory(cache.MemoryOptions{}), cache.NewSealed(newRedis(t, cache.RedisOptions{Addr: srv.Addr}), keys), time.Minute)
	}
	a, b := open(), open() // two instances of one deployment
	k := cache.Key(kind(t), "shared")
	if err := a.Set(ctx, k, []byte("from a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.Get(ctx, k); !ok || string(v) != "from a" {
		t.Fatalf("instance b: got %q (hit %v, %v), want what a wrote", v, ok, err)
	}
	srv.stop()
	for name, c := range map[string]*cache.Tiered{"the writer": a, "the reader": b} {
		if v, ok, _ := c.Get(ctx, k); !ok || string(v) != "from a" {
			t.Errorf("%s, Redis down: got %q (hit %v), want the entry from process memory", name, v, ok)
		}
	}
	if _, ok, err := a.Get(ctx, cache.Key(kind(t), "never")); ok || err == nil {
		t.Errorf("a key in neither level, Redis down: hit %v, err %v; want a miss with an error", ok, err)
	}
}
