package cache_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"registrar/cache"
)

func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := func(i int) string { return cache.Key("m", fmt.Sprint(i)) }

	t.Run("the least recently used entry goes first when the entry bound is reached", func(t *testing.T) {
		m := cache.NewMemory(cache.MemoryOptions{MaxEntries: 3})
		for i := range 3 {
			if err := m.Set(ctx, key(i), []byte("v"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok, _ := m.Get(ctx, key(0)); !ok { // 0 is now the most recently used
			t.Fatal("entry 0 missing before any eviction")
		}
		if err := m.Set(ctx, key(3), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
		want := map[int]bool{0: true, 1: false, 2: true, 3: true}
		for i, present := range want {
			if _, ok, _ := m.Get(ctx, key(i)); ok != present {
				t.Errorf("entry %d present = %v, want %v", i, ok, present)
			}
		}
		if n := m.Stats().Entries; n != 3 {
			t.Errorf("%d entries, want 3", n)
		}
	})

	t.Run("the byte bound holds whatever the entry count", func(t *testing.T) {
		m := cache.NewMemory(cache.MemoryOptions{MaxEntries: 1000, MaxBytes: 10 << 10})
		for i := range 100 {
			if err := m.Set(ctx, key(i), make([]byte, 1000), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if n := m.Stats().Entries; n < 1 || n > 10 {
			t.Errorf("%d entries of 1000 bytes under a 10 KiB bound", n)
		}
		if _, ok, _ := m.Get(ctx, key(99)); !ok {
			t.Error("the newest entry was evicted")
		}
	})

	t.Run("an expired entry is a miss and leaves", func(t *testing.T) {
		now := time.Unix(1000, 0)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		m := cache.NewMemory(cache.MemoryOptions{Now: clock})
		if err := m.Set(ctx, key(1), []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(time.Second)
		mu.Unlock()
		if _, ok, _ := m.Get(ctx, key(1)); ok {
			t.Error("hit at the expiry instant, want a miss")
		}
		if n := m.Stats().Entries; n != 0 {
			t.Errorf("%d entries after the expired one was read, want 0", n)
		}
	})

	t.Run("Close empties it", func(t *testing.T) {
		m := cache.NewMemory(cache.MemoryOptions{})
		_ = m.Set(ctx, key(1), []byte("v"), time.Minute)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := m.Get(ctx, key(1)); ok {
			t.Error("hit after Close")
		}
	})
}
