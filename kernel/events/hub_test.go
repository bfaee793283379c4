package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// wait bounds what a test waits for the hub; generous, never asserted.
const wait = 30 * time.Second

// write applies fn's changes to st at index, stamped now.
func write(t *testing.T, st *state.Store, index uint64, now time.Time, fn func(tx *state.Tx) error) {
	t.Helper()
	txn, err := st.Prepare(now, fn)
	if err != nil {
		t.Fatal(err)
	}
	if errs := st.Apply(index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
}

func newService(id, name string, replicas int64) *objectv1.Service {
	return &objectv1.Service{Id: id, Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: name},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}},
	}}
}

// scale sets service id's replicas.
func scale(id string, replicas int64) func(tx *state.Tx) error {
	return func(tx *state.Tx) error {
		s := proto.Clone(tx.Service(id)).(*objectv1.Service)
		s.Spec.GetReplicated().Replicas = replicas
		return tx.UpdateService(s)
	}
}

// startHub runs a hub over st until the test ends.
func startHub(t *testing.T, st *state.Store, cfg Config) *Hub {
	t.Helper()
	h := New(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	waitWatches(t, h, 1)
	return h
}

// waitWatches waits until h has started n store watches.
func waitWatches(t *testing.T, h *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		h.mu.Lock()
		got := h.watches
		h.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub started %d watches, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// next receives n live events from s.
func next(t *testing.T, s *Subscription, n int) []*controlv1.Event {
	t.Helper()
	var got []*controlv1.Event
	timeout := time.After(wait)
	for len(got) < n {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("subscription ended after %d of %d events: %v", len(got), n, s.Err())
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(got), n)
		}
	}
	return got
}

// summary is an event as "index.position type action name".
func summary(evs []*controlv1.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%d.%d %s %s %s", ev.GetIndex(), ev.GetPosition(), ev.GetType(), ev.GetAction(), ev.GetName()))
	}
	return out
}

func checkSummary(t *testing.T, what string, got []*controlv1.Event, want ...string) {
	t.Helper()
	if s := summary(got); !slices.Equal(s, want) {
		t.Errorf("%s = %q, want %q", what, s, want)
	}
}

// TestHubReplayAndLive: a subscriber with since gets the kept events from
// then on, then the new ones, each once, in order; the ring keeps only the
// last RingSize.
func TestHubReplayAndLive(t *testing.T) {
	st := state.New()
	h := startHub(t, st, Config{RingSize: 3})
	all := h.Subscribe(Filter{})
	defer all.Close()

	write(t, st, 1, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s1", "web", 1)) })
	write(t, st, 2, t0.Add(1*time.Second), scale("s1", 3))
	write(t, st, 3, t0.Add(2*time.Second), func(tx *state.Tx) error {
		if err := tx.CreateService(newService("s2", "db", 1)); err != nil {
			return err
		}
		return tx.CreateNetwork(&objectv1.Network{Id: "w1", Spec: &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: "backend"}}})
	})
	write(t, st, 4, t0.Add(3*time.Second), scale("s1", 5))
	checkSummary(t, "live", next(t, all, 5),
		"1.0 service create web", "2.0 service scale web", "3.0 service create db", "3.1 network create backend", "4.0 service scale web")

	// The ring holds the last 3; since selects from t0+2s on.
	s := h.Subscribe(Filter{Since: t0.Add(2 * time.Second)})
	defer s.Close()
	checkSummary(t, "replay since t0+2s", s.Replay(), "3.0 service create db", "3.1 network create backend", "4.0 service scale web")
	s2 := h.Subscribe(Filter{Since: t0.Add(3 * time.Second)})
	defer s2.Close()
	checkSummary(t, "replay since t0+3s", s2.Replay(), "4.0 service scale web")
	if got := h.Subscribe(Filter{}).Replay(); got != nil {
		t.Errorf("replay without since = %q, want none", summary(got))
	}

	write(t, st, 5, t0.Add(4*time.Second), func(tx *state.Tx) error { return tx.DeleteService("s2") })
	checkSummary(t, "live after replay", next(t, s, 1), "5.0 service remove db")
	ev := next(t, all, 1)[0]
	if got, want := ev.GetTime().AsTime(), t0.Add(3*time.Second); !got.Equal(want) {
		t.Errorf("removal time = %v, want the latest time seen before it, %v", got, want)
	}
}

// TestHubFilter: types and names narrow both the replay and the live
// events; a task matches its service's name.
func TestHubFilter(t *testing.T) {
	st := state.New()
	h := startHub(t, st, Config{})
	write(t, st, 1, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s1", "web", 1)) })
	write(t, st, 2, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s2", "db", 1)) })
	write(t, st, 3, t0, func(tx *state.Tx) error {
		return tx.CreateTask(&objectv1.Task{Id: "t1", ServiceId: "s1", Slot: 1, ServiceAnnotations: &objectv1.Annotations{Name: "web"},
			Status: &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_NEW}})
	})
	all := h.Subscribe(Filter{Since: t0})
	for len(all.Replay()) < 3 {
		next(t, all, 1)
		all.Close()
		all = h.Subscribe(Filter{Since: t0})
	}
	all.Close()

	tests := []struct {
		f    Filter
		want []string
	}{
		{Filter{Since: t0, Types: []string{"task"}}, []string{"3.0 task create web.1"}},
		{Filter{Since: t0, Names: []string{"web"}}, []string{"1.0 service create web", "3.0 task create web.1"}},
		{Filter{Since: t0, Names: []string{"s2"}}, []string{"2.0 service create db"}},
		{Filter{Since: t0, Types: []string{"service"}, Names: []string{"web", "db"}}, []string{"1.0 service create web", "2.0 service create db"}},
		{Filter{Since: t0, Types: []string{"node"}}, nil},
	}
	for _, tt := range tests {
		s := h.Subscribe(tt.f)
		if got := summary(s.Replay()); !slices.Equal(got, tt.want) {
			t.Errorf("Subscribe(%+v).Replay() = %q, want %q", tt.f, got, tt.want)
		}
		s.Close()
	}

	s := h.Subscribe(Filter{Types: []string{"service"}, Names: []string{"db"}})
	defer s.Close()
	write(t, st, 4, t0, scale("s1", 2))
	write(t, st, 5, t0, scale("s2", 2))
	checkSummary(t, "live filtered", next(t, s, 1), "5.0 service scale db")
}

// TestHubDropsSlowSubscriber: a subscriber that does not read is dropped
// with ErrTooSlow once its buffer is full; the hub and the others go on.
func TestHubDropsSlowSubscriber(t *testing.T) {
	st := state.New()
	h := startHub(t, st, Config{SubscriberBuffer: 2})
	slow := h.Subscribe(Filter{})
	defer slow.Close()
	fast := h.Subscribe(Filter{})
	defer fast.Close()
	write(t, st, 1, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s1", "web", 1)) })
	for i := range 3 {
		write(t, st, uint64(2+i), t0, scale("s1", int64(2+i)))
		// Read as they come, so that only slow falls behind.
		next(t, fast, 1)
	}
	next(t, fast, 1)
	n := 0
	for range slow.Events() {
		n++
	}
	if n != 2 || !errors.Is(slow.Err(), ErrTooSlow) {
		t.Errorf("slow subscriber got %d events, then %v; want 2, then ErrTooSlow", n, slow.Err())
	}

	write(t, st, 5, t0, scale("s1", 9))
	checkSummary(t, "after the drop", next(t, fast, 1), "5.0 service scale web")
}

// TestHubRestore: when the store is restored from a snapshot, the hub
// starts over from it without an event for what the snapshot changed; a
// restore to an older state forgets the events after it.
func TestHubRestore(t *testing.T) {
	st := state.New()
	h := startHub(t, st, Config{})
	s := h.Subscribe(Filter{})
	defer s.Close()
	write(t, st, 1, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s1", "web", 1)) })
	next(t, s, 1)

	// Forward: another store, further on, as a follower gets from its
	// leader.
	other := state.New()
	write(t, other, 1, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s1", "web", 1)) })
	write(t, other, 5, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s2", "db", 1)) })
	snap := other.Snapshot()
	if err := st.Restore(snap); err != nil {
		t.Fatal(err)
	}
	waitWatches(t, h, 2)
	write(t, st, 6, t0.Add(time.Second), scale("s2", 4))
	checkSummary(t, "after a restore", next(t, s, 1), "6.0 service scale db")

	// Back: a snapshot at index 5 drops the event of 6 from the ring.
	back := other.Snapshot()
	if err := st.Restore(back); err != nil {
		t.Fatal(err)
	}
	waitWatches(t, h, 3)
	checkSummary(t, "replay after going back", h.Subscribe(Filter{Since: t0}).Replay(), "1.0 service create web")
	write(t, st, 6, t0.Add(2*time.Second), scale("s2", 7))
	checkSummary(t, "after going back", next(t, s, 1), "6.0 service scale db")
}

// TestHubStop: subscriptions end with ErrStopped when Run returns, and a
// subscription made after is ended at once.
func TestHubStop(t *testing.T) {
	st := state.New()
	h := New(Config{}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	s := h.Subscribe(Filter{})
	cancel()
	<-done
	for range s.Events() {
	}
	if !errors.Is(s.Err(), ErrStopped) {
		t.Errorf("Err after Run returned = %v, want ErrStopped", s.Err())
	}
	late := h.Subscribe(Filter{})
	if _, ok := <-late.Events(); ok || !errors.Is(late.Err(), ErrStopped) {
		t.Errorf("subscription after stop: open %v, Err %v; want closed, ErrStopped", ok, late.Err())
	}
}
