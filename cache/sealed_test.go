package cache_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/cache"
	"registrar/vault"
)

// testKeys derives cache keys as the server does, from a fresh vault's PRF.
func testKeys(t testing.TB) cache.Keys {
	t.Helper()
	return keysOf(t, openVault(t))
}

func openVault(t testing.TB) *vault.Vault {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func keysOf(t testing.TB, v *vault.Vault) cache.Keys {
	t.Helper()
	k, err := cache.KeysFromPRF(v.BlindIndex)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// spy is a Cache that remembers what reached it (a hand-written fake over Memory).
type spy struct {
	cache.Cache
	mu   sync.Mutex
	sets map[string][]byte
	last string // the name of the last Set
}

func newSpy() *spy {
	return &spy{Cache: cache.NewMemory(cache.MemoryOptions{}), sets: map[string][]byte{}}
}

func (s *spy) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	s.mu.Lock()
	s.sets[key] = append([]byte(nil), val...)
	s.last = key
	s.mu.Unlock()
	return s.Cache.Set(ctx, key, val, ttl)
}

func TestSealed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := testKeys(t)

	t.Run("the backend sees a keyed hash for a name and ciphertext for a value", func(t *testing.T) {
		backend := newSpy()
		c := cache.NewSealed(backend, keys)
		secretPart, plaintext := "user-student-minor", []byte(`{"s":["user-student-minor"]}`)
		if err := c.Set(ctx, cache.Key("scope", "user", secretPart), plaintext, time.Minute); err != nil {
			t.Fatal(err)
		}
		if len(backend.sets) != 1 {
			t.Fatalf("%d keys reached the backend, want 1", len(backend.sets))
		}
		for name, val := range backend.sets {
			if !strings.HasPrefix(name, cache.Namespace+"scope:") || strings.Contains(name, secretPart) {
				t.Errorf("backend key %q: want %sscope:<hash> without the key's parts", name, cache.Namespace)
			}
			if bytes.Contains(val, []byte(secretPart)) || bytes.Contains(val, plaintext) {
				t.Errorf("backend value holds the plaintext: %q", val)
			}
		}
		got, ok, err := c.Get(ctx, cache.Key("scope", "user", secretPart))
		if err != nil || !ok || !bytes.Equal(got, plaintext) {
			t.Errorf("read back %q (hit %v, %v), want the plaintext", got, ok, err)
		}
	})

	t.Run("a value moved to another key, altered, or sealed under other keys does not open", func(t *testing.T) {
		backend := newSpy()
		c := cache.NewSealed(backend, keys)
		a, b := cache.Key("scope", "a"), cache.Key("scope", "b")
		seal := func(k, v string) (name string, ct []byte) {
			t.Helper()
			if err := c.Set(ctx, k, []byte(v), time.Minute); err != nil {
				t.Fatal(err)
			}
			return backend.last, backend.sets[backend.last]
		}
		nameA, va := seal(a, "scope of a")
		nameB, vb := seal(b, "scope of b")
		// Swap the two ciphertexts: each now sits under the other's name.
		_ = backend.Cache.Set(ctx, nameA, vb, time.Minute)
		_ = backend.Cache.Set(ctx, nameB, va, time.Minute)
		for _, k := range []string{a, b} {
			if v, ok, err := c.Get(ctx, k); ok || !errors.Is(err, cache.ErrSealed) {
				t.Errorf("a swapped value: got %q (hit %v, %v), want a miss with ErrSealed", v, ok, err)
			}
		}
		// Flip one bit of a value in place.
		_, va = seal(a, "scope of a")
		altered := bytes.Clone(va)
		altered[len(altered)-1] ^= 1
		_ = backend.Cache.Set(ctx, nameA, altered, time.Minute)
		if v, ok, err := c.Get(ctx, a); ok || !errors.Is(err, cache.ErrSealed) {
			t.Errorf("an altered value: got %q (hit %v, %v), want a miss with ErrSealed", v, ok, err)
		}
		// Another deployment's keys (another service keyset) name and seal differently.
		other := cache.NewSealed(backend, testKeys(t))
		_ = c.Set(ctx, a, []byte("scope of a"), time.Minute)
		if v, ok, _ := other.Get(ctx, a); ok {
			t.Errorf("other keys read %q", v)
		}
		if c.Stats().Rejected < 3 {
			t.Errorf("rejected %d, want at least 3", c.Stats().Rejected)
		}
	})
}
