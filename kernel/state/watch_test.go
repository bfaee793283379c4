package state

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// eventSummary is an Event reduced to what the tests compare.
type eventSummary struct {
	index   uint64
	kind    raftv1.ActionKind
	id      string
	version uint64
	oldID   string
	oldVer  uint64
}

func summarize(e Event) eventSummary {
	s := eventSummary{index: e.Index, kind: e.Kind}
	var cur, old interface {
		GetId() string
		GetMeta() *objectv1.Meta
	}
	switch {
	case e.Cluster != nil:
		cur = e.Cluster
		if e.OldCluster != nil {
			old = e.OldCluster
		}
	case e.Node != nil:
		cur = e.Node
		if e.OldNode != nil {
			old = e.OldNode
		}
	case e.Service != nil:
		cur = e.Service
		if e.OldService != nil {
			old = e.OldService
		}
	case e.Task != nil:
		cur = e.Task
		if e.OldTask != nil {
			old = e.OldTask
		}
	}
	if cur != nil {
		s.id, s.version = cur.GetId(), cur.GetMeta().GetVersion()
	}
	if old != nil {
		s.oldID, s.oldVer = old.GetId(), old.GetMeta().GetVersion()
	}
	return s
}

func TestWatchEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := seeded(t)
		events, cancel := s.Watch()
		defer cancel()
		errs := s.Apply(2, command(
			txn(
				act(opCreate, testTask("t9", "s1", "", running, pending)),
				act(opUpdate, withVersion(testTask("t1", "s1", "n2", running, running), 1)),
				act(opDelete, &objectv1.Task{Id: "t2"}),
			),
			// Fails: no events.
			creates(testNode("n3", worker, active), testNode("n1", worker, active)),
			txn(act(opUpdate, withVersion(testCluster("c1"), 1))),
		))
		if errs[0] != nil || errs[1] == nil || errs[2] != nil {
			t.Fatalf("Apply = %v, want [nil, error, nil]", errs)
		}
		mustApply(t, s, 3, txn(act(opDelete, withVersion(&objectv1.Service{Id: "s2"}, 1))))
		want := []eventSummary{
			{2, opCreate, "t9", 2, "", 0},
			{2, opUpdate, "t1", 2, "t1", 1},
			{2, opDelete, "t2", 1, "", 0}, // the object as it was
			{2, opUpdate, "c1", 2, "c1", 1},
			{3, opDelete, "s2", 1, "", 0},
		}
		for i, w := range want {
			if got := summarize(<-events); got != w {
				t.Errorf("event %d = %+v, want %+v", i, got, w)
			}
		}
		select {
		case e := <-events:
			t.Errorf("extra event %+v", summarize(e))
		default:
		}
	})
}

func TestWatchCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := seeded(t)
		events, cancel := s.Watch()
		mustApply(t, s, 2, creates(testNode("n3", worker, active)))
		cancel()
		cancel() // idempotent
		for range events {
		}
		s.watchMu.Lock()
		n := len(s.watchers)
		s.watchMu.Unlock()
		if n != 0 {
			t.Errorf("watchers after cancel = %d, want 0", n)
		}
		mustApply(t, s, 3, creates(testNode("n4", worker, active)))
	})
}

func TestSlowWatcherDoesNotBlockApply(t *testing.T) {
	// In a synctest bubble, an Apply blocked on the watcher would be a
	// deadlock, which fails the test at once.
	synctest.Test(t, func(t *testing.T) {
		const commands = 1000 // far more than the channel's buffer
		s := New()
		events, cancel := s.Watch()
		defer cancel()
		for i := range commands {
			mustApply(t, s, uint64(i+1), creates(testTask(fmt.Sprint("t", i), "", "", running, pending)))
		}
		// Nothing was lost while nobody read.
		for i := range commands {
			e, ok := <-events
			if want := fmt.Sprint("t", i); !ok || e.Task.GetId() != want || e.Index != uint64(i+1) {
				t.Fatalf("event %d = %+v, %t, want %s at index %d", i, summarize(e), ok, want, i+1)
			}
		}
	})
}

func TestWatchOverflowCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const commands = watchChanBuffer + 500
		s := New()
		s.watchLimit = 10
		events, cancel := s.Watch()
		defer cancel()
		fast, cancelFast := s.Watch()
		defer cancelFast()
		var wg sync.WaitGroup
		fastGot := 0
		wg.Go(func() {
			for range fast {
				if fastGot++; fastGot == commands {
					return
				}
			}
		})
		for i := range commands {
			mustApply(t, s, uint64(i+1), creates(testTask(fmt.Sprint("t", i), "", "", running, pending)))
			synctest.Wait() // let the fast watcher keep up
		}
		wg.Wait()
		if fastGot != commands {
			t.Errorf("watcher that keeps up got %d events, want %d", fastGot, commands)
		}
		got := 0
		for range events {
			got++
		}
		// The channel buffer, the event in hand and the queue limit.
		if limit := watchChanBuffer + 1 + 2*s.watchLimit; got > limit {
			t.Errorf("watcher that fell behind got %d events before its channel closed, want at most %d", got, limit)
		}
		s.watchMu.Lock()
		n := len(s.watchers)
		s.watchMu.Unlock()
		if n != 1 {
			t.Errorf("watchers after overflow = %d, want 1", n)
		}
	})
}

func TestViewAndWatchMissesNothing(t *testing.T) {
	// One writer applies commands while watchers join at different points.
	// Each watcher rebuilds the task versions from its view plus its events;
	// all must end equal to the final state, which they cannot if a change
	// was missed or seen twice.
	const (
		commands = 300
		watchers = 12
	)
	s := New()
	var wg sync.WaitGroup
	results := make(chan error, watchers)
	watch := func() { results <- watchTaskVersions(s, commands+1) }
	for i := 1; i <= commands; i++ {
		txn, err := s.Prepare(now, func(tx *Tx) error {
			if err := tx.CreateTask(testTask(fmt.Sprint("t", i), "s", "", running, pending)); err != nil {
				return err
			}
			if cur := tx.Task(fmt.Sprint("t", i/2)); cur != nil {
				up := clone(cur)
				up.NodeId = fmt.Sprint("n", i)
				if err := tx.UpdateTask(up); err != nil {
					return err
				}
			}
			if i%7 == 0 && tx.Task(fmt.Sprint("t", i-3)) != nil {
				return tx.DeleteTask(fmt.Sprint("t", i-3))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Prepare %d = %v", i, err)
		}
		if i%(commands/watchers) == 1 {
			wg.Go(watch)
		}
		mustApply(t, s, uint64(i), txn)
	}
	mustApply(t, s, commands+1, creates(testTask("last", "s", "", running, pending)))
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Error(err)
		}
	}
}

// watchTaskVersions rebuilds the version of every task from a ViewAndWatch
// of s: its view, then its events until the one at index last (which is
// one event: seeing it means having seen all). It returns nil when the
// versions rebuilt are those of s's final state, and an error naming the
// index the watch started from at the first change missed or seen twice.
func watchTaskVersions(s *Store, last uint64) error {
	versions := map[string]uint64{}
	var viewIndex uint64
	events, cancel := s.ViewAndWatch(func(tx *ReadTx) {
		viewIndex = tx.Index()
		for _, tk := range tx.Tasks() {
			versions[tk.GetId()] = tk.GetMeta().GetVersion()
		}
	})
	defer cancel()
	seen := viewIndex
	for seen < last {
		e, ok := <-events
		if !ok {
			return fmt.Errorf("watch from index %d closed", viewIndex)
		}
		if e.Index <= viewIndex || e.Index < seen {
			return fmt.Errorf("watch from index %d: event at index %d after %d", viewIndex, e.Index, seen)
		}
		seen = e.Index
		if err := applyTaskEvent(versions, e); err != nil {
			return fmt.Errorf("watch from index %d: %w", viewIndex, err)
		}
	}
	if err := sameTaskVersions(s, versions); err != nil {
		return fmt.Errorf("watch from index %d: %w", viewIndex, err)
	}
	return nil
}

// applyTaskEvent applies a task event to versions, the version of each task
// by ID: an error for a create of a task known already, an update from
// another version than the one known, or a delete of a task unknown.
func applyTaskEvent(versions map[string]uint64, e Event) error {
	id := e.Task.GetId()
	v, exists := versions[id]
	switch e.Kind {
	case opCreate:
		if exists {
			return fmt.Errorf("create of %s seen twice", id)
		}
		versions[id] = e.Task.GetMeta().GetVersion()
	case opUpdate:
		if !exists || v != e.OldTask.GetMeta().GetVersion() {
			return fmt.Errorf("update of %s from version %d, have %d (%t)", id, e.OldTask.GetMeta().GetVersion(), v, exists)
		}
		versions[id] = e.Task.GetMeta().GetVersion()
	case opDelete:
		if !exists {
			return fmt.Errorf("delete of unknown %s", id)
		}
		delete(versions, id)
	}
	return nil
}

// sameTaskVersions reports how versions differs from the versions of the
// tasks in s's snapshot, or nil when it does not.
func sameTaskVersions(s *Store, versions map[string]uint64) error {
	want := map[string]uint64{}
	for _, tk := range s.Snapshot().Tasks {
		want[tk.GetId()] = tk.GetMeta().GetVersion()
	}
	if len(want) != len(versions) {
		return fmt.Errorf("%d tasks, want %d", len(versions), len(want))
	}
	for id, v := range want {
		if versions[id] != v {
			return fmt.Errorf("task %s at version %d, want %d", id, versions[id], v)
		}
	}
	return nil
}
