package stream

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with full jitter: each wait is uniform in
// [0, min(max, base*2^n)), so many workers retrying at once spread out.
type backoff struct {
	base, max time.Duration
	n         int
}

func newBackoff(base, max time.Duration) *backoff { return &backoff{base: base, max: max} }

func (b *backoff) next() time.Duration {
	d := b.base << min(b.n, 20)
	if d <= 0 || d > b.max {
		d = b.max
	}
	b.n++
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

func (b *backoff) reset() { b.n = 0 }

// wait sleeps for the next backoff interval or until ctx ends.
func (b *backoff) wait(ctx context.Context) error { return sleep(ctx, b.next()) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
