package state

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

func TestSnapshotRoundTrip(t *testing.T) {
	s := seeded(t)
	mustApply(t, s, 2,
		txn(act(opUpdate, withVersion(testTask("t1", "s1", "n2", stopped, failed), 1))),
		creates(testTask("t4", "s2", "n1", running, running)),
	)
	snap := s.Snapshot()
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	decoded := &raftv1.Snapshot{}
	if err := proto.Unmarshal(data, decoded); err != nil {
		t.Fatal(err)
	}

	// Restore over a store holding other objects: they must go.
	r := New()
	mustApply(t, r, 9, creates(testNode("other", worker, active), testService("s9", "web")))
	if err := r.Restore(decoded); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if got := r.Snapshot(); !proto.Equal(got, snap) {
		t.Errorf("Snapshot after Restore = %v, want %v", got, snap)
	}
	checkIndexes(t, r)
	r.View(func(tx *ReadTx) {
		if got := tx.Index(); got != 2 {
			t.Errorf("Index() after Restore = %d, want 2", got)
		}
		if got := ids(tx.TasksByNode("n2")); !slices.Equal(got, []string{"t1", "t2"}) {
			t.Errorf("TasksByNode(n2) after Restore = %v, want [t1 t2]", got)
		}
		if got := tx.ServiceByName("web").GetId(); got != "s1" {
			t.Errorf("ServiceByName(web) after Restore = %q, want s1", got)
		}
	})
	// Applying continues from the snapshot's index.
	mustApply(t, r, 3, creates(testNode("n3", worker, active)))
}

func TestSnapshotIsSortedAndStable(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(
		testTask("b", "", "", running, pending), testTask("c", "", "", running, pending), testTask("a", "", "", running, pending),
		testNode("z", worker, active), testNode("y", worker, active),
		testService("2", "two"), testService("1", "one"),
	))
	snap := s.Snapshot()
	if got := ids(snap.Tasks); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Snapshot tasks = %v, want [a b c]", got)
	}
	if got := ids(snap.Nodes); !slices.Equal(got, []string{"y", "z"}) {
		t.Errorf("Snapshot nodes = %v, want [y z]", got)
	}
	if got := ids(snap.Services); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("Snapshot services = %v, want [1 2]", got)
	}
	if snap.Version != SnapshotVersion || snap.Index != 1 {
		t.Errorf("Snapshot version, index = %d, %d, want %d, 1", snap.Version, snap.Index, SnapshotVersion)
	}
}

func TestRestoreRefusesInvalid(t *testing.T) {
	valid := func() *raftv1.Snapshot {
		return &raftv1.Snapshot{
			Version:  SnapshotVersion,
			Index:    5,
			Clusters: []*objectv1.Cluster{testCluster("c1")},
			Nodes:    []*objectv1.Node{testNode("n1", worker, active)},
			Services: []*objectv1.Service{testService("s1", "web")},
			Tasks:    []*objectv1.Task{testTask("t1", "s1", "n1", running, running)},
		}
	}
	tests := []struct {
		name   string
		modify func(*raftv1.Snapshot) *raftv1.Snapshot
	}{
		{"nil", func(*raftv1.Snapshot) *raftv1.Snapshot { return nil }},
		{"unknown version", func(s *raftv1.Snapshot) *raftv1.Snapshot { s.Version = 2; return s }},
		{"no version", func(s *raftv1.Snapshot) *raftv1.Snapshot { s.Version = 0; return s }},
		{"two clusters", func(s *raftv1.Snapshot) *raftv1.Snapshot {
			s.Clusters = append(s.Clusters, testCluster("c2"))
			return s
		}},
		{"cluster without id", func(s *raftv1.Snapshot) *raftv1.Snapshot { s.Clusters[0].Id = ""; return s }},
		{"duplicate node", func(s *raftv1.Snapshot) *raftv1.Snapshot {
			s.Nodes = append(s.Nodes, testNode("n1", manager, drain))
			return s
		}},
		{"nil node", func(s *raftv1.Snapshot) *raftv1.Snapshot { s.Nodes = append(s.Nodes, nil); return s }},
		{"task without id", func(s *raftv1.Snapshot) *raftv1.Snapshot {
			s.Tasks = append(s.Tasks, testTask("", "s1", "", running, pending))
			return s
		}},
		{"duplicate task", func(s *raftv1.Snapshot) *raftv1.Snapshot {
			s.Tasks = append(s.Tasks, testTask("t1", "s1", "", running, pending))
			return s
		}},
		{"duplicate service name", func(s *raftv1.Snapshot) *raftv1.Snapshot {
			s.Services = append(s.Services, testService("s2", "web"))
			return s
		}},
		{"service without name", func(s *raftv1.Snapshot) *raftv1.Snapshot {
			s.Services = append(s.Services, testService("s2", ""))
			return s
		}},
	}
	if err := New().Restore(valid()); err != nil {
		t.Fatalf("Restore(valid) = %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := seeded(t)
				before := s.Snapshot()
				events, cancel := s.Watch()
				defer cancel()
				if err := s.Restore(tc.modify(valid())); !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Errorf("Restore = %v, want an invalid argument error", err)
				}
				if after := s.Snapshot(); !proto.Equal(after, before) {
					t.Errorf("state after refused Restore = %v, want %v", after, before)
				}
				// The watch still works.
				mustApply(t, s, 2, creates(testNode("n9", worker, active)))
				if e, ok := <-events; !ok || e.Node.GetId() != "n9" {
					t.Errorf("event after refused Restore = %v, %t, want the creation of n9", e, ok)
				}
			})
		})
	}
}

func TestRestoreClosesWatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := seeded(t)
		w1, cancel1 := s.Watch()
		defer cancel1()
		var w2 <-chan Event
		var cancel2 func()
		w2, cancel2 = s.ViewAndWatch(func(*ReadTx) {})
		defer cancel2()
		mustApply(t, s, 2, creates(testNode("n9", worker, active)))

		if err := s.Restore(seeded(t).Snapshot()); err != nil {
			t.Fatal(err)
		}
		for i, w := range []<-chan Event{w1, w2} {
			n := 0
			for range w { // a watch left open would deadlock the bubble
				n++
			}
			if n > 1 {
				t.Errorf("watch %d got %d events before closing, want at most 1", i, n)
			}
		}
		// A new watch sees what follows.
		w3, cancel3 := s.Watch()
		defer cancel3()
		mustApply(t, s, 2, creates(testNode("n8", worker, active)))
		if e := <-w3; e.Node.GetId() != "n8" || e.Index != 2 {
			t.Errorf("event after Restore = %+v, want n8 at index 2", e)
		}
	})
}
