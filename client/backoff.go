package client

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with full jitter: the wait before retry
// number n (0 for the first) is uniformly random in [0, min(max, base·2ⁿ)).
// Full jitter, not a fixed delay plus a little noise, is what spreads a
// crowd out: a thousand clients cut off by one server restart come back
// spread over the whole first interval (a second by default for
// subscribers), not together.
type backoff struct {
	base, max time.Duration
}

// delay is the wait before retry number attempt.
func (b backoff) delay(attempt int) time.Duration {
	ceil := b.max
	if attempt < 62 {
		if d := b.base << attempt; d > 0 && d < ceil {
			ceil = d
		}
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}

// sleep waits d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
