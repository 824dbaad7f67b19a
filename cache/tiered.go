package cache

import (
	"context"
	"time"
)

// Tiered puts the in-process cache in front of a shared one (Redis): a hit in
// process costs no network round trip (which on a real network costs more than the
// ECDSA verification it would save), and the shared level lets instances reuse
// each other's work. It is coherent without any invalidation messages because a
// key's value never changes (every key carries what its value was computed from);
// the near level only bounds, by nearTTL, how much longer an entry read from the
// far level may live in process.
type Tiered struct {
	near    *Memory
	far     Cache
	nearTTL time.Duration
}

var _ Cache = (*Tiered)(nil)

// NewTiered returns near in front of far; entries read from far are kept in near
// for nearTTL (default 5s).
func NewTiered(near *Memory, far Cache, nearTTL time.Duration) *Tiered {
	if nearTTL <= 0 {
		nearTTL = 5 * time.Second
	}
	return &Tiered{near: near, far: far, nearTTL: nearTTL}
}

// Get implements Cache.
func (t *Tiered) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if v, ok, err := t.near.Get(ctx, key); ok || err != nil {
		return v, ok, err
	}
	v, ok, err := t.far.Get(ctx, key)
	if ok {
		_ = t.near.Set(ctx, key, v, t.nearTTL) // memory: fails only for a value far could not hold either
	}
	return v, ok, err
}

// Set implements Cache: both levels, the near one for at most nearTTL.
func (t *Tiered) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := t.near.Set(ctx, key, val, min(ttl, t.nearTTL)); err != nil {
		return err
	}
	return t.far.Set(ctx, key, val, ttl)
}

// Delete implements Cache.
func (t *Tiered) Delete(ctx context.Context, keys ...string) error {
	if err := t.near.Delete(ctx, keys...); err != nil {
		return err
	}
	return t.far.Delete(ctx, keys...)
}

// Ping implements Cache: the far level is the one that can fail.
func (t *Tiered) Ping(ctx context.Context) error { return t.far.Ping(ctx) }

// Stats implements Cache: hits at either level, misses at both, the far level's
// health.
func (t *Tiered) Stats() Stats {
	n, f := t.near.Stats(), t.far.Stats()
	f.Hits += n.Hits
	f.Entries = n.Entries
	return f
}

// Close implements Cache.
func (t *Tiered) Close() error {
	_ = t.near.Close() // memory: nothing to fail
	return t.far.Close()
}
