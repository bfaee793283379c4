// Package retry calls a function again until it succeeds or time runs out:
// how tests wait for processes and clusters to converge, through calls
// (RPCs) that each get a deadline of their own.
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
