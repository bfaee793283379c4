// Package events derives a stream of cluster events (a service created or
// scaled, a task failed, a node down) from a manager's replicated store,
// keeps the recent ones for replay, and serves them over gRPC (the Events
// service of sdk/proto/shoal/control/v1/events.proto) to `shoal events` and
// the dashboard.
//
// Every manager runs a Hub over its own store. The store applies the same
// Raft log on every manager and Derive reads only the applied change, so
// followers derive the same events, with the same index, position and
// time, as the leader: any manager serves the stream.
//
// Goroutines: Hub.Run owns the store watch and is the only writer of the
// ring; Subscribe and the subscriptions are safe from any goroutine. The
// hub never waits for a subscriber: one whose buffer is full is dropped
// with ErrTooSlow.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// DefaultRingSize is how many recent events a hub keeps for replay. An
// event takes under a kilobyte in memory (a task's carries about ten short
// attributes in a map), so 10,000 cost at most some 10 MB per manager,
// little beside the state itself; and they hold about what a
// cluster of a thousand tasks produces in a rolling update of all of them
// (some ten events per task: created, assigned, ..., running, shutdown),
// which is the span `shoal events --since` is most wanted for.
const DefaultRingSize = 10_000

// DefaultSubscriberBuffer is how many events a subscriber may fall behind
// before it is dropped. It absorbs a burst (a service of 1,000 replicas
// created in one go) without letting one stalled client hold memory
// without bound.
const DefaultSubscriberBuffer = 4096

var (
	// ErrTooSlow ends a subscription that fell too far behind. It is of
	// kind sdk.ErrResourceExhausted.
	ErrTooSlow = fmt.Errorf("events: subscriber fell too far behind; subscribe again with since: %w", sdk.ErrResourceExhausted)
	// ErrStopped ends the subscriptions of a hub whose Run returned. It is
	// of kind sdk.ErrUnavailable.
	ErrStopped = fmt.Errorf("events: the manager is stopping: %w", sdk.ErrUnavailable)
)

// Config sizes a Hub.
type Config struct {
	// RingSize is how many recent events are kept for replay.
	// Default: DefaultRingSize.
	RingSize int
	// SubscriberBuffer is how many events a subscriber may fall behind
	// before it is dropped. Default: DefaultSubscriberBuffer.
	SubscriberBuffer int
}

// Hub derives events from a store and hands them to subscribers.
type Hub struct {
	st  *state.Store
	log *slog.Logger
	cfg Config

	// mu guards everything below.
	mu sync.Mutex
	// ring holds the last len(ring) events: oldest at ring[head] once
	// full, in order of (index, position).
	ring    []*controlv1.Event
	head    int
	full    bool
	subs    map[*Subscription]struct{}
	stopped bool
	// clock is the latest event time seen, the time given to removals.
	clock time.Time
	// last is the index of the latest command whose events were derived,
	// and pos the position of the next event of that command.
	last uint64
	pos  uint32
	// watches counts the store watches Run started (tests wait on it).
	watches int
}

// New returns a hub over st. Run feeds it.
func New(cfg Config, st *state.Store, logger *slog.Logger) *Hub {
	if cfg.RingSize <= 0 {
		cfg.RingSize = DefaultRingSize
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = DefaultSubscriberBuffer
	}
	return &Hub{st: st, log: logger, cfg: cfg, ring: make([]*controlv1.Event, 0, min(cfg.RingSize, 1024)), subs: map[*Subscription]struct{}{}}
}

// Run watches the store and publishes the events of every change until ctx
// ends. When the watch closes (the state was restored from a snapshot, or
// the hub fell behind the store), it starts over from a fresh view: the
// changes in between produce no events, since none can be told apart from
// what the view already held. When it returns, every subscription ends
// with ErrStopped.
func (h *Hub) Run(ctx context.Context) error {
	defer h.stop()
	for {
		var index uint64
		ch, cancel := h.st.ViewAndWatch(func(tx *state.ReadTx) {
			index = tx.Index()
			h.startAt(tx)
		})
		h.mu.Lock()
		h.watches++
		if index < h.last {
			// The state went back (a restore from an older snapshot): the
			// events after it belong to a history that no longer is.
			h.forgetAfter(index)
		}
		h.mu.Unlock()
		done := h.follow(ctx, ch)
		cancel()
		if done {
			return nil
		}
		h.log.Info("events: store watch closed; starting over from the current state", "index", index)
	}
}

// startAt seeds the clock from a view when the hub has seen no event yet,
// so that a removal right after start has a replicated time too.
func (h *Hub) startAt(tx *state.ReadTx) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.clock.IsZero() {
		return
	}
	later := func(t time.Time) {
		if t.After(h.clock) {
			h.clock = t
		}
	}
	if c := tx.Cluster(); c != nil {
		later(c.GetMeta().GetUpdatedAt().AsTime())
	}
	for _, n := range tx.Nodes() {
		later(n.GetMeta().GetUpdatedAt().AsTime())
	}
	for _, s := range tx.Services() {
		later(s.GetMeta().GetUpdatedAt().AsTime())
	}
}

// follow publishes the events of ch until it closes (false) or ctx ends
// (true).
func (h *Hub) follow(ctx context.Context, ch <-chan state.Event) bool {
	for {
		select {
		case <-ctx.Done():
			return true
		case e, ok := <-ch:
			if !ok {
				return false
			}
			h.publish(e)
		}
	}
}

// publish derives e's event, keeps it and hands it to the subscribers it
// matches.
func (h *Hub) publish(e state.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := Derive(e, h.clock)
	if ev == nil {
		return
	}
	if t := ev.GetTime().AsTime(); t.After(h.clock) {
		h.clock = t
	}
	if e.Index != h.last {
		h.last, h.pos = e.Index, 0
	}
	ev.Index, ev.Position = e.Index, h.pos
	h.pos++
	h.keep(ev)
	for s := range h.subs {
		if !s.filter.Match(ev) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			h.drop(s, ErrTooSlow)
		}
	}
}

func (h *Hub) keep(ev *controlv1.Event) {
	if len(h.ring) < h.cfg.RingSize {
		h.ring = append(h.ring, ev)
		return
	}
	h.ring[h.head] = ev
	h.head = (h.head + 1) % len(h.ring)
	h.full = true
}

// ordered returns the kept events, oldest first.
func (h *Hub) ordered() []*controlv1.Event {
	if !h.full {
		return slices.Clone(h.ring)
	}
	return append(slices.Clone(h.ring[h.head:]), h.ring[:h.head]...)
}

// forgetAfter drops the kept events of commands after index.
func (h *Hub) forgetAfter(index uint64) {
	kept := slices.DeleteFunc(h.ordered(), func(ev *controlv1.Event) bool { return ev.GetIndex() > index })
	h.ring = append(make([]*controlv1.Event, 0, cap(h.ring)), kept...)
	h.head, h.full = 0, false
	h.last, h.pos = index, 0
}

func (h *Hub) drop(s *Subscription, err error) {
	delete(h.subs, s)
	s.err = err
	close(s.ch)
}

func (h *Hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	for s := range h.subs {
		h.drop(s, ErrStopped)
	}
}

// Filter selects events. The zero Filter selects all.
type Filter struct {
	// Since, when not zero, selects the kept events from that time on for
	// replay; zero: no replay. Live events are not filtered by time: their
	// times are the leaders' clocks, which need not agree with the caller's.
	Since time.Time
	// Types, when not empty, selects events of these types.
	Types []string
	// Names, when not empty, selects events whose name or ID is one of
	// these; a task also matches by its service's name or ID.
	Names []string
}

// Match reports whether f selects ev, Since aside.
func (f Filter) Match(ev *controlv1.Event) bool {
	if len(f.Types) > 0 && !slices.Contains(f.Types, ev.GetType()) {
		return false
	}
	if len(f.Names) == 0 {
		return true
	}
	for _, n := range f.Names {
		if n == ev.GetName() || n == ev.GetId() {
			return true
		}
		if ev.GetType() == TypeTask && (n == ev.GetAttributes()["service"] || n == ev.GetAttributes()["service_id"]) {
			return true
		}
	}
	return false
}

// Subscription is one subscriber's stream: the replay, then the live
// events.
type Subscription struct {
	h      *Hub
	filter Filter
	replay []*controlv1.Event
	ch     chan *controlv1.Event
	// err is why ch closed; written by the hub under h.mu before it closes
	// ch, read after.
	err error
}

// Subscribe returns a subscription to the events f selects: first those
// kept from f.Since on (if set), then every new one. The two meet without
// a gap or a repeat: both are taken in one step under the hub's lock.
// The caller must Close it.
func (h *Hub) Subscribe(f Filter) *Subscription {
	s := &Subscription{h: h, filter: f, ch: make(chan *controlv1.Event, h.cfg.SubscriberBuffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !f.Since.IsZero() {
		for _, ev := range h.ordered() {
			if !ev.GetTime().AsTime().Before(f.Since) && f.Match(ev) {
				s.replay = append(s.replay, ev)
			}
		}
	}
	if h.stopped {
		s.err = ErrStopped
		close(s.ch)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

// Replay returns the kept events selected, oldest first. The events are
// shared: never modify them.
func (s *Subscription) Replay() []*controlv1.Event { return s.replay }

// Events returns the channel of live events; it closes when the
// subscription ends, after which Err says why.
func (s *Subscription) Events() <-chan *controlv1.Event { return s.ch }

// Err is why the subscription ended: ErrTooSlow, ErrStopped, or nil after
// Close. It may be called only once Events is closed.
func (s *Subscription) Err() error { return s.err }

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		h.drop(s, nil)
	}
}
