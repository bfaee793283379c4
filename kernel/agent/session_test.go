package agent

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

// TestHeartbeatPacing drives the heartbeat loop with a fake manager that
// answers each heartbeat after a delay with a period.
func TestHeartbeatPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		replies := make(chan time.Duration, 1)
		var sent []time.Duration
		periods := []time.Duration{time.Second, 3 * time.Second, 0, time.Nanosecond}
		send := func() error {
			sent = append(sent, time.Since(start))
			if len(sent) <= len(periods) {
				p := periods[len(sent)-1]
				time.AfterFunc(10*time.Millisecond, func() { replies <- p })
			}
			return nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		if err := send(); err != nil { // the session sends the first one
			t.Fatal(err)
		}
		go func() { done <- heartbeat(ctx, send, replies, 2*time.Second) }()
		err := <-done
		// Replies come 10ms after each heartbeat; the next heartbeat
		// follows the reply's period; a zero period means the default
		// (5s), a tiny one is raised to minHeartbeatPeriod. After the last
		// reply nothing comes: the loop gives up after 3 periods, at
		// least MinHeartbeatTimeout.
		want := []time.Duration{
			0,
			10*time.Millisecond + time.Second,
			20*time.Millisecond + 4*time.Second,
			30*time.Millisecond + 9*time.Second,
			40*time.Millisecond + 9*time.Second + minHeartbeatPeriod,
		}
		if !slices.Equal(sent, want) {
			t.Errorf("heartbeats sent at %v, want %v", sent, want)
		}
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("heartbeat loop = %v, want a timeout of kind %v", err, sdk.ErrUnavailable)
		}
		if gaveUp, want := time.Since(start), want[len(want)-1]+2*time.Second; gaveUp != want {
			t.Errorf("gave up at %s, want %s (MinHeartbeatTimeout after the last heartbeat)", gaveUp, want)
		}
	})
}

func TestHeartbeatTimeout(t *testing.T) {
	tests := []struct {
		period, min, want time.Duration
	}{
		{period: 5 * time.Second, min: 15 * time.Second, want: 15 * time.Second},
		{period: 10 * time.Second, min: 15 * time.Second, want: 30 * time.Second},
		{period: time.Second, min: 15 * time.Second, want: 15 * time.Second},
		{period: 50 * time.Millisecond, min: 10 * time.Millisecond, want: 150 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := heartbeatTimeout(tt.period, tt.min); got != tt.want {
			t.Errorf("heartbeatTimeout(%s, %s) = %s, want %s", tt.period, tt.min, got, tt.want)
		}
	}
}

func TestHeartbeatStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- heartbeat(ctx, func() error { return nil }, nil, time.Hour) }()
		time.Sleep(time.Minute)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("heartbeat after cancel = %v, want nil", err)
		}
	})
}
