package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	calls := 0
	err := Until(time.Minute, time.Second, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("call without a deadline")
		}
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("Until(succeeds on the third call) = %v after %d calls, want nil after 3", err, calls)
	}
}

func TestUntilTimesOut(t *testing.T) {
	last := errors.New("still not")
	if err := Until(10*time.Millisecond, time.Second, func(context.Context) error { return last }); err != last {
		t.Errorf("Until(never succeeds) = %v, want the last error %v", err, last)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Millisecond) {
		t.Error("Sleep(live ctx, 1ms) = false, want true")
	}
	if !Sleep(t.Context(), 0) {
		t.Error("Sleep(live ctx, 0) = false, want true")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep(ended ctx, 1h) = true, want false")
	}
	if Sleep(ctx, 0) {
		t.Error("Sleep(ended ctx, 0) = true, want false")
	}
}
