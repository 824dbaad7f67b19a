package cache_test

import (
	"context"
	"sync"
	"testing"

	"registrar/cache"
)

// fakeLog is a change log in memory (a hand-written fake of ChangesAfter).
type fakeLog struct {
	mu      sync.Mutex
	changes []cache.Change // ids 1..n in order
	reads   int
	// When set, a read of a long page says so on entered and waits for release.
	entered, release chan struct{}
}

func (f *fakeLog) add(entity string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.changes = append(f.changes, cache.Change{ID: int64(len(f.changes) + 1), Entity: entity})
	}
}

func (f *fakeLog) read(_ context.Context, after int64, limit int) ([]cache.Change, error) {
	if f.release != nil && limit > 256 {
		f.entered <- struct{}{}
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	start := min(int(after), len(f.changes))
	end := min(start+limit, len(f.changes))
	return append([]cache.Change(nil), f.changes[start:end]...), nil
}

func TestGenerations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	current := func(t *testing.T, g *cache.Generations) (int64, bool) {
		t.Helper()
		gen, ok, err := g.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return gen, ok
	}

	t.Run("it moves with roster changes only", func(t *testing.T) {
		log := &fakeLog{}
		g := cache.NewGenerations(log.read, cache.RosterEntities)
		log.add("user", 3)
		if gen, ok := current(t, g); !ok || gen != 3 {
			t.Fatalf("got %d (ok %v), want 3", gen, ok)
		}
		log.add("result", 5)
		log.add("enrollment", 5)
		if gen, _ := current(t, g); gen != 3 {
			t.Errorf("after results and enrollments: got %d, want 3", gen)
		}
		log.add("org", 1)
		log.add("result", 1)
		if gen, _ := current(t, g); gen != 14 {
			t.Errorf("after an org: got %d, want 14", gen)
		}
		log.add("demographics", 1)
		if gen, _ := current(t, g); gen != 16 {
			t.Errorf("after demographics: got %d, want 16", gen)
		}
		before := log.reads
		current(t, g)
		if log.reads-before != 1 {
			t.Errorf("steady state: %d reads of the log, want 1", log.reads-before)
		}
	})

	t.Run("a long log is read to its end within one call", func(t *testing.T) {
		log := &fakeLog{}
		log.add("user", 30000)
		log.add("result", 10)
		g := cache.NewGenerations(log.read, cache.RosterEntities)
		if gen, ok := current(t, g); !ok || gen != 30000 {
			t.Errorf("got %d (ok %v), want 30000", gen, ok)
		}
	})

	t.Run("a log longer than one call reads is caught up over several, without the cache meanwhile", func(t *testing.T) {
		log := &fakeLog{}
		log.add("result", 250000)
		log.add("user", 1)
		g := cache.NewGenerations(log.read, cache.RosterEntities)
		calls := 0
		for {
			calls++
			gen, ok := current(t, g)
			if ok {
				if gen != 250001 {
					t.Errorf("caught up at %d, want 250001", gen)
				}
				break
			}
			if calls > 10 {
				t.Fatal("never caught up")
			}
		}
		if calls < 2 {
			t.Errorf("caught up in %d call: the bound per call is not applied", calls)
		}
	})

	t.Run("while one caller catches up the others do without the cache", func(t *testing.T) {
		log := &fakeLog{entered: make(chan struct{}, 100), release: make(chan struct{})}
		log.add("user", 20000)
		g := cache.NewGenerations(log.read, cache.RosterEntities)
		done := make(chan bool)
		go func() {
			_, ok, _ := g.Current(ctx)
			done <- ok
		}()
		<-log.entered // the first caller read a full short page and holds the catch-up
		before := log.reads
		if _, ok := current(t, g); ok {
			t.Error("a second caller used the cache while the log was being caught up")
		}
		if log.reads-before != 1 {
			t.Errorf("the second caller read the log %d times, want 1 (its short page)", log.reads-before)
		}
		close(log.release)
		if !<-done {
			t.Error("the catching-up caller did not finish")
		}
	})
}
