package cache

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the in-process cache: least-recently-used eviction within a bound on
// entries and on bytes, and a TTL per entry. It is the embedded default, and the
// near level in front of Redis.
type Memory struct {
	mu       sync.Mutex
	ll       *list.List // front: most recently used
	items    map[string]*list.Element
	bytes    int
	maxItems int
	maxBytes int
	now      func() time.Time

	hits, misses atomic.Uint64
}

type memEntry struct {
	key     string
	val     []byte
	expires time.Time
}

// MemoryOptions bound a Memory cache.
type MemoryOptions struct {
	MaxEntries int // default 65536
	MaxBytes   int // keys and values; default 64 MiB
	// Now replaces the clock (tests).
	Now func() time.Time
}

var _ Cache = (*Memory)(nil)

// NewMemory returns an empty memory cache.
func NewMemory(o MemoryOptions) *Memory {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 65536
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Memory{ll: list.New(), items: map[string]*list.Element{}, maxItems: o.MaxEntries, maxBytes: o.MaxBytes, now: o.Now}
}

func entrySize(key string, val []byte) int { return len(key) + len(val) + 64 }

// Get implements Cache.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	m.mu.Lock()
	el, ok := m.items[key]
	if ok {
		e := el.Value.(*memEntry)
		if !m.now().Before(e.expires) {
			m.remove(el)
			ok = false
		} else {
			m.ll.MoveToFront(el)
			val := append([]byte(nil), e.val...)
			m.mu.Unlock()
			m.hits.Add(1)
			return val, true, nil
		}
	}
	m.mu.Unlock()
	m.misses.Add(1)
	return nil, false, nil
}

// Set implements Cache.
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkSet(key, val, ttl); err != nil {
		return err
	}
	e := &memEntry{key: key, val: append([]byte(nil), val...), expires: m.now().Add(ttl)}
	size := entrySize(key, val)
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	if size > m.maxBytes {
		return ErrTooLarge
	}
	m.items[key] = m.ll.PushFront(e)
	m.bytes += size
	for len(m.items) > m.maxItems || m.bytes > m.maxBytes {
		m.remove(m.ll.Back())
	}
	return nil
}

// remove drops an element; m.mu is held.
func (m *Memory) remove(el *list.Element) {
	e := el.Value.(*memEntry)
	m.ll.Remove(el)
	delete(m.items, e.key)
	m.bytes -= entrySize(e.key, e.val)
}

// Delete implements Cache.
func (m *Memory) Delete(_ context.Context, keys ...string) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		if el, ok := m.items[k]; ok {
			m.remove(el)
		}
	}
	return nil
}

// Ping implements Cache: memory is always there.
func (m *Memory) Ping(context.Context) error { return nil }

// Stats implements Cache.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	n := len(m.items)
	m.mu.Unlock()
	return Stats{Backend: "memory", Hits: m.hits.Load(), Misses: m.misses.Load(), Entries: int64(n)}
}

// Close implements Cache.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ll.Init()
	m.items = map[string]*list.Element{}
	m.bytes = 0
	return nil
}
