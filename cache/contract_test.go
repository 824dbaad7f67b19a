package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"registrar/cache"
)

// The contract every Cache keeps, run on each implementation: Memory and Redis,
// bare and Sealed, and the two levels as cmd/registrar stacks them. One suite, so the embedded default and the scaled-out backend
// cannot drift apart.
func TestContract(t *testing.T) {
	t.Parallel()
	keys := testKeys(t)
	impls := []struct {
		name string
		open func(t *testing.T) cache.Cache
	}{
		{"memory", func(t *testing.T) cache.Cache { return cache.NewMemory(cache.MemoryOptions{}) }},
		{"redis", func(t *testing.T) cache.Cache { return newRedis(t, cache.RedisOptions{Addr: redisAddr(t)}) }},
		{"sealed memory", func(t *testing.T) cache.Cache { return cache.NewSealed(cache.NewMemory(cache.MemoryOptions{}), keys) }},
		{"sealed redis", func(t *testing.T) cache.Cache {
			return cache.NewSealed(newRedis(t, cache.RedisOptions{Addr: redisAddr(t)}), keys)
		}},
		{"memory in front of sealed redis", func(t *testing.T) cache.Cache {
			return cache.NewTiered(cache.NewMemory(cache.MemoryOptions{}), cache.NewSealed(newRedis(t, cache.RedisOptions{Addr: redisAddr(t)}), keys), 0)
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			t.Parallel()
			runContract(t, impl.open(t))
		})
	}
}

// newRedis opens a Redis cache closed at the end of the test, with a call timeout
// generous enough for a loaded CI machine (the fault tests use the default).
func newRedis(t testing.TB, o cache.RedisOptions) *cache.Redis {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	r, err := cache.NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// kind returns a kind of key no other test (nor another run on a shared Redis) uses.
func kind(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "test" + hex.EncodeToString(b[:])
}

func runContract(t *testing.T, c cache.Cache) {
	ctx := context.Background()
	k := kind(t)
	key := func(parts ...string) string { return cache.Key(k, parts...) }
	get := func(t *testing.T, key string) ([]byte, bool) {
		t.Helper()
		v, ok, err := c.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		return v, ok
	}
	set := func(t *testing.T, key string, v []byte, ttl time.Duration) {
		t.Helper()
		if err := c.Set(ctx, key, v, ttl); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}

	t.Run("a key never set is a miss", func(t *testing.T) {
		if v, ok := get(t, key("never")); ok {
			t.Errorf("got a hit %q, want a miss", v)
		}
	})

	t.Run("a value is read back byte for byte, binary and empty ones included", func(t *testing.T) {
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		for name, v := range map[string][]byte{"binary": all, "empty": {}, "text": []byte("scope")} {
			set(t, key("rt", name), v, time.Minute)
			got, ok := get(t, key("rt", name))
			if !ok || !bytes.Equal(got, v) {
				t.Errorf("%s: got %q (hit %v), want %q", name, got, ok, v)
			}
		}
	})

	t.Run("the cache keeps its own copy of a value", func(t *testing.T) {
		v := []byte("original")
		set(t, key("copy"), v, time.Minute)
		copy(v, "MUTATED!")
		got, _ := get(t, key("copy"))
		if string(got) != "original" {
			t.Fatalf("after the caller changed its slice, got %q, want original", got)
		}
		got[0] = 'X'
		again, _ := get(t, key("copy"))
		if string(again) != "original" {
			t.Errorf("after the reader changed its slice, got %q, want original", again)
		}
	})

	t.Run("a second Set replaces the value", func(t *testing.T) {
		set(t, key("replace"), []byte("one"), time.Minute)
		set(t, key("replace"), []byte("two"), time.Minute)
		if got, _ := get(t, key("replace")); string(got) != "two" {
			t.Errorf("got %q, want two", got)
		}
	})

	t.Run("keys that differ in any part are different keys", func(t *testing.T) {
		set(t, key("a", "bc"), []byte("1"), time.Minute)
		set(t, key("ab", "c"), []byte("2"), time.Minute)
		a, _ := get(t, key("a", "bc"))
		b, _ := get(t, key("ab", "c"))
		if string(a) != "1" || string(b) != "2" {
			t.Errorf("got %q and %q, want 1 and 2", a, b)
		}
	})

	t.Run("a value is gone after its TTL", func(t *testing.T) {
		set(t, key("ttl"), []byte("short"), 300*time.Millisecond)
		set(t, key("ttl-long"), []byte("long"), time.Minute)
		if _, ok := get(t, key("ttl")); !ok {
			t.Fatal("miss right after Set")
		}
		waitFor(t, "the value with a 300ms TTL is still there", 5*time.Second, func() bool {
			_, ok := get(t, key("ttl"))
			return !ok
		})
		if _, ok := get(t, key("ttl-long")); !ok {
			t.Error("the value with a one-minute TTL expired too")
		}
	})

	t.Run("Delete removes keys and ignores absent ones", func(t *testing.T) {
		set(t, key("d1"), []byte("1"), time.Minute)
		set(t, key("d2"), []byte("2"), time.Minute)
		set(t, key("d3"), []byte("3"), time.Minute)
		if err := c.Delete(ctx, key("d1"), key("d2"), key("absent")); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatalf("Delete of nothing: %v", err)
		}
		for _, k := range []string{"d1", "d2"} {
			if _, ok := get(t, key(k)); ok {
				t.Errorf("%s still there after Delete", k)
			}
		}
		if _, ok := get(t, key("d3")); !ok {
			t.Error("d3 was deleted too")
		}
	})

	t.Run("keys outside the namespace are refused", func(t *testing.T) {
		for _, bad := range []string{"", "scope:x", "registrar:v0:scope:x", cache.Namespace} {
			if _, _, err := c.Get(ctx, bad); !errors.Is(err, cache.ErrKey) {
				t.Errorf("Get(%q): got %v, want ErrKey", bad, err)
			}
			if err := c.Set(ctx, bad, []byte("x"), time.Minute); !errors.Is(err, cache.ErrKey) {
				t.Errorf("Set(%q): got %v, want ErrKey", bad, err)
			}
			if err := c.Delete(ctx, bad); !errors.Is(err, cache.ErrKey) {
				t.Errorf("Delete(%q): got %v, want ErrKey", bad, err)
			}
		}
	})

	t.Run("every value needs a TTL", func(t *testing.T) {
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := c.Set(ctx, key("nottl"), []byte("x"), ttl); !errors.Is(err, cache.ErrTTL) {
				t.Errorf("Set with TTL %v: got %v, want ErrTTL", ttl, err)
			}
		}
		if _, ok := get(t, key("nottl")); ok {
			t.Error("a refused value was stored")
		}
	})

	t.Run("a value larger than MaxValue is refused", func(t *testing.T) {
		if err := c.Set(ctx, key("big"), make([]byte, cache.MaxValue+1), time.Minute); !errors.Is(err, cache.ErrTooLarge) {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
		set(t, key("half"), make([]byte, cache.MaxValue/2), time.Minute)
		if v, ok := get(t, key("half")); !ok || len(v) != cache.MaxValue/2 {
			t.Errorf("a value of MaxValue/2 bytes: got %d bytes (hit %v)", len(v), ok)
		}
	})

	t.Run("readers and writers run concurrently", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				for i := range 50 {
					kk := key("conc", fmt.Sprint(i%10))
					want := fmt.Sprintf("w%d-%d", w, i)
					if err := c.Set(ctx, kk, []byte(want), time.Minute); err != nil {
						errs <- err
						return
					}
					if _, _, err := c.Get(ctx, kk); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("Ping answers and Stats count hits and misses", func(t *testing.T) {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		before := c.Stats()
		set(t, key("stats"), []byte("x"), time.Minute)
		get(t, key("stats"))
		get(t, key("stats-absent"))
		after := c.Stats()
		if after.Hits-before.Hits != 1 || after.Misses-before.Misses != 1 {
			t.Errorf("hits +%d, misses +%d; want +1 and +1", after.Hits-before.Hits, after.Misses-before.Misses)
		}
		if after.Degraded || after.Backend == "" {
			t.Errorf("stats %+v: want a named, healthy backend", after)
		}
	})
}
