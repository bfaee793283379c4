package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Tracker holds the heartbeat deadlines of the nodes the leader hears from,
// and reports those that miss them. Beat, Expect, Forget and Len are safe
// for concurrent use; Run runs once at a time.
type Tracker struct {
	period func() time.Duration
	grace  int
	jitter float64
	rand   func() float64
	now    func() time.Time
	logger *slog.Logger

	// wake tells Run that a deadline earlier than the one its timer waits
	// for was inserted. Size 1: senders never block, and any number of
	// signals before Run looks cost one wake-up.
	wake chan struct{}
	// running makes a second concurrent Run fail instead of racing the
	// first for expirations.
	running atomic.Bool

	mu   sync.Mutex
	heap *Heap
	// armed says Run waits for armedAt, the earliest deadline when it last
	// looked; a deadline before armedAt (or any deadline while !armed)
	// must wake it.
	armed   bool
	armedAt time.Time
}

// NewTracker returns a Tracker configured by cfg, with its zero fields set to
// their defaults. It panics if Grace or Jitter is out of range: both are
// constants of the calling code, not operator input.
func NewTracker(cfg Config) *Tracker {
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Grace < 2 {
		panic(fmt.Sprintf("presence: grace must be at least 2 periods, got %d", cfg.Grace))
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = DefaultJitter
	}
	if !(cfg.Jitter > 0 && cfg.Jitter < 1) {
		panic(fmt.Sprintf("presence: jitter must be between 0 and 1 (exclusive), got %v", cfg.Jitter))
	}
	if cfg.Period == nil {
		cfg.Period = func() time.Duration { return DefaultPeriod }
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{
		period: cfg.Period,
		grace:  cfg.Grace,
		jitter: cfg.Jitter,
		rand:   cfg.Rand,
		now:    cfg.Now,
		logger: cfg.Logger,
		wake:   make(chan struct{}, 1),
		heap:   NewHeap(),
	}
}

// currentPeriod is Config.Period, or DefaultPeriod if it returns nonsense.
func (t *Tracker) currentPeriod() time.Duration {
	if p := t.period(); p > 0 {
		return p
	}
	return DefaultPeriod
}

// Beat records a heartbeat from nodeID and returns the period to hand back
// to it: the current period ± Jitter. The node's deadline becomes now +
// returned + (Grace-1)·period, so a node that pings when told has Grace-1
// periods to spare. A node that was not tracked (new, forgotten, or already
// reported down) is tracked again. Beat is O(log n) and does not allocate
// for a node already tracked.
func (t *Tracker) Beat(nodeID string) time.Duration {
	p := t.currentPeriod()
	r := time.Duration(float64(p) * (1 + t.jitter*(2*t.rand()-1)))
	deadline := t.now().Add(r + time.Duration(t.grace-1)*p)

	t.mu.Lock()
	t.heap.Set(nodeID, deadline)
	wake := !t.armed || deadline.Before(t.armedAt)
	t.mu.Unlock()
	if wake {
		t.signal()
	}
	return r
}

// Expect starts tracking nodeIDs as the leader's known nodes, each with a
// deadline of now + grace: a node that beats before then stays up, one that
// stays silent is reported down. grace ≤ 0 means Grace periods. Expect never
// moves a deadline earlier, so a node that already beat (its session opened
// before the caller got to Expect) keeps its own deadline.
func (t *Tracker) Expect(nodeIDs []string, grace time.Duration) {
	if len(nodeIDs) == 0 {
		return
	}
	if grace <= 0 {
		grace = time.Duration(t.grace) * t.currentPeriod()
	}
	deadline := t.now().Add(grace)

	t.mu.Lock()
	set := false
	for _, id := range nodeIDs {
		if d, ok := t.heap.Deadline(id); ok && !d.Before(deadline) {
			continue
		}
		t.heap.Set(id, deadline)
		set = true
	}
	wake := set && (!t.armed || deadline.Before(t.armedAt))
	t.mu.Unlock()
	if wake {
		t.signal()
	}
}

// Forget stops tracking nodeID: the node was removed, or closed its session
// gracefully (the caller records that state itself). Forgetting an untracked
// node does nothing.
func (t *Tracker) Forget(nodeID string) {
	t.mu.Lock()
	t.heap.Remove(nodeID)
	t.mu.Unlock()
	// No wake-up: removing a deadline can only make the earliest one later,
	// and Run copes with a timer that fires for nothing.
}

// Len is the number of nodes tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.heap.Len()
}

func (t *Tracker) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Run reports the nodes whose deadline passed, until ctx is cancelled; then
// it returns nil. It calls down from its own goroutine with every node found
// expired at one wake-up (so the caller makes one Raft write per batch), and
// waits for down to return before looking again; expirations that come due
// meanwhile form the next batch. Each batch is a new slice, which down owns.
//
// A node reported down is no longer tracked. A Beat that races with the
// report (after the node expired, before down marks it down) tracks it again
// and the caller sees a heartbeat from a node it is marking down: the
// dispatcher should end such a session, so the worker reconnects and is
// marked ready by a new session. If down cannot commit its write, it should
// Expect the nodes again with a short grace (they will be reported again),
// or end the leader's stages: the next leader Expects every node anyway.
//
// Run returns an error if another Run of t is in progress.
func (t *Tracker) Run(ctx context.Context, down func(nodeIDs []string)) error {
	if !t.running.CompareAndSwap(false, true) {
		return errors.New("presence: run: already running")
	}
	defer t.running.Store(false)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// target is when the armed timer should fire; fired says it did, so
	// that its lateness tells whether the leader stalled.
	var target time.Time
	fired := false
	for {
		now := t.now()
		p := t.currentPeriod()
		if late := now.Sub(target); fired && late > p {
			t.stalled(now, late, p)
		}
		t.mu.Lock()
		expired := t.heap.Expired(now)
		next, ok := t.heap.Next()
		t.armed, t.armedAt = ok, next
		t.mu.Unlock()

		if len(expired) > 0 {
			down(expired)
			fired = false
			if ctx.Err() != nil {
				return nil
			}
			continue // more may have come due while down ran
		}
		if ok {
			// Waiting a further Jitter·p after the earliest deadline lets
			// nodes that went silent together come in a few batches, not one
			// per node; see the package comment.
			wait := next.Sub(now) + time.Duration(t.jitter*float64(p))
			timer.Reset(wait)
			target = now.Add(wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.wake:
			fired = false
		case <-timer.C:
			fired = true
		}
	}
}

// stalled postpones every deadline to a fresh grace period after Run's timer
// fired late by more than a period: the leader (the VM, the process) was
// stalled and could hear no heartbeat, so silence says nothing about the
// nodes. Heartbeats queued while it stalled arrive in the next moments.
func (t *Tracker) stalled(now time.Time, late, p time.Duration) {
	t.mu.Lock()
	t.heap.Postpone(now.Add(time.Duration(t.grace) * p))
	n := t.heap.Len()
	t.mu.Unlock()
	t.logger.Warn("leader stalled, heartbeat deadlines postponed",
		"late", late, "nodes", n)
}
