package vault

import "sync"

// keyCache is a bounded map of unwrapped keys by subject. When full it drops about a
// tenth of its entries, in map order (random): cheap, and bounded.
type keyCache[T any] struct {
	mu  sync.RWMutex
	m   map[string]T
	max int
}

func newKeyCache[T any](max int) *keyCache[T] {
	return &keyCache[T]{m: map[string]T{}, max: max}
}

func (c *keyCache[T]) get(subject string) (T, bool) {
	c.mu.RLock()
	v, ok := c.m[subject]
	c.mu.RUnlock()
	return v, ok
}

func (c *keyCache[T]) put(subject string, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[subject]; !ok && len(c.m) >= c.max {
		n := max(1, c.max/10) // at least one, or a small cache would grow without bound
		for k := range c.m {
			if n <= 0 {
				break
			}
			delete(c.m, k)
			n--
		}
	}
	c.m[subject] = v
}

func (c *keyCache[T]) del(subject string) {
	c.mu.Lock()
	delete(c.m, subject)
	c.mu.Unlock()
}

func (c *keyCache[T]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
