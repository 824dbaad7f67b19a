package cache

import (
	"sync"
	"time"
)

// breaker keeps a failing backend from being asked on every request. Closed: calls
// pass. After threshold consecutive failures it opens: calls fail at once for a
// cooldown, after which one call (the probe) passes; its success closes the breaker,
// its failure opens it again for twice the cooldown, up to maxCooldown.
type breaker struct {
	mu          sync.Mutex
	threshold   int
	base, limit time.Duration
	now         func() time.Time

	open     bool
	probing  bool // a probe is in flight (half-open)
	failures int
	openedAt time.Time
	cooldown time.Duration
}

func newBreaker(threshold int, base, limit time.Duration, now func() time.Time) *breaker {
	return &breaker{threshold: threshold, base: base, limit: limit, now: now, cooldown: base}
}

// allow reports whether a call may go to the backend now.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true
	}
	if b.probing || b.now().Sub(b.openedAt) < b.cooldown {
		return false
	}
	b.probing = true
	return true
}

// success records a call the backend answered; it reports whether that closed the
// breaker.
func (b *breaker) success() (closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	closed = b.open
	b.open, b.probing, b.failures, b.cooldown = false, false, 0, b.base
	return closed
}

// failure records a call the backend did not answer; it reports whether that opened
// the breaker (from closed).
func (b *breaker) failure() (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.probing:
		b.probing = false
		b.openedAt = b.now()
		b.cooldown = min(2*b.cooldown, b.limit)
	case b.open:
		// A call let through before the breaker opened: nothing more to learn.
	default:
		b.failures++
		if b.failures >= b.threshold {
			b.open, b.openedAt, b.cooldown = true, b.now(), b.base
			return true
		}
	}
	return false
}

// abandoned records a call that ended without an answer either way (the caller went
// away): a probe's turn passes to the next call.
func (b *breaker) abandoned() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probing {
		b.probing = false
		b.openedAt = b.now().Add(-b.cooldown)
	}
}

// degraded reports whether the backend is considered down.
func (b *breaker) degraded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}
