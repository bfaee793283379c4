package presence

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// benchNodes is the scale the package is sized for: 10,000 workers.
const benchNodes = 10000

func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%05d", i)
	}
	return ids
}

// BenchmarkBeat is one heartbeat among 10,000 tracked nodes, with Run
// waiting, as on a leader: the cost of a ping.
func BenchmarkBeat(b *testing.B) {
	tr := NewTracker(Config{Period: constPeriod(5 * time.Second)})
	ids := nodeIDs(benchNodes)
	for _, id := range ids {
		tr.Beat(id)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, func([]string) {}) }()
	defer func() { cancel(); <-done }()

	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tr.Beat(ids[i])
		i++
		if i == len(ids) {
			i = 0
		}
	}
}

// BenchmarkBeatParallel is BenchmarkBeat from every core at once: the cost
// of the one mutex under contention.
func BenchmarkBeatParallel(b *testing.B) {
	tr := NewTracker(Config{Period: constPeriod(5 * time.Second)})
	ids := nodeIDs(benchNodes)
	for _, id := range ids {
		tr.Beat(id)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tr.Beat(ids[i])
			i = (i + 7) % len(ids)
		}
	})
}

// BenchmarkExpire pops 10,000 nodes at once, as when a leader's Expect
// grace ends with the whole cluster silent; one op is the whole batch.
func BenchmarkExpire(b *testing.B) {
	ids := nodeIDs(benchNodes)
	h := NewHeap()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i, id := range ids {
			h.Set(id, t0.Add(time.Duration(i*7919%benchNodes)*time.Millisecond))
		}
		b.StartTimer()
		if got := h.Expired(t0.Add(time.Hour)); len(got) != benchNodes {
			b.Fatalf("Expired() = %d nodes, want %d", len(got), benchNodes)
		}
	}
}
