// Package retry waits between attempts: Sleep, a pause that the end of a
// context cuts short, and Until, which calls a function again until it
// succeeds or time runs out (how tests wait for processes and clusters to
// converge, through calls that each get a deadline of their own). The
// delays themselves (backoff, jitter) are each caller's policy.
package retry

import (
	"context"
	"time"
)

// interval is the pause between two calls: short beside the seconds a
// cluster takes to converge, long enough not to load the processes
// under test with calls.
const interval = 50 * time.Millisecond

// Until calls fn until it returns nil, and then returns nil; once timeout
// has passed, it returns fn's last error. Each call gets a context that
// ends after perCall, so that one call that hangs cannot use up the whole
// timeout.
func Until(timeout, perCall time.Duration, fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), perCall)
		err := fn(ctx)
		cancel()
		if err == nil || !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// Sleep waits for d or until ctx ends, and reports whether it waited; a d
// of zero or less does not wait, and reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
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
