package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

// First returns what recv (the stream's Recv) gives first. It gives up when
// timeout has passed, with an InvalidArgument error that says no what came
// within it, or when ctx (the stream's) ends, with ctx.Err(). recv runs in
// a goroutine that ends with the stream: a caller that gives up returns from
// its handler, which ends the stream.
func First[M any](ctx context.Context, timeout time.Duration, what string, recv func() (M, error)) (M, error) {
	type result struct {
		m   M
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := recv()
		ch <- result{m, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var zero M
	select {
	case r := <-ch:
		return r.m, r.err
	case <-timer.C:
		return zero, fmt.Errorf("no %s within %s: %w", what, timeout, sdk.ErrInvalidArgument)
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
