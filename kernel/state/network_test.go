package state

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

func testNetwork(id, name string) *objectv1.Network {
	return &objectv1.Network{Id: id, Spec: &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: name}}}
}

func TestNetworkTable(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(testNetwork("net1", "front"), testNetwork("net2", "back")))
	s.View(func(tx *ReadTx) {
		if got := ids(tx.Networks()); !slices.Equal(got, []string{"net2", "net1"}) {
			t.Errorf("Networks() = %v, want [net2 net1] (by name: back, front)", got)
		}
		if got := tx.NetworkByName("front").GetId(); got != "net1" {
			t.Errorf("NetworkByName(front) = %q, want net1", got)
		}
		if got := tx.Network("net2").GetMeta().GetVersion(); got != 1 {
			t.Errorf("Network(net2) version = %d, want 1", got)
		}
		for ref, want := range map[string]string{"net1": "net1", "back": "net2", "net": "", "nope": ""} {
			n, err := tx.LookupNetwork(ref)
			if n.GetId() != want {
				t.Errorf("LookupNetwork(%q) = %q, %v; want %q", ref, n.GetId(), err, want)
			}
		}
		if _, err := tx.LookupNetwork("net"); !errors.Is(err, sdk.ErrFailedPrecondition) {
			t.Errorf("LookupNetwork(ambiguous prefix) error = %v, want FailedPrecondition", err)
		}
	})

	// A duplicate name is refused by Prepare and by Apply.
	_, err := s.Prepare(time.Now(), func(tx *Tx) error { return tx.CreateNetwork(testNetwork("net3", "front")) })
	if !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Errorf("Prepare(create a second network named front) = %v, want AlreadyExists", err)
	}
	if errs := s.Apply(2, command(creates(testNetwork("net3", "front")))); !errors.Is(errs[0], sdk.ErrAlreadyExists) {
		t.Errorf("Apply(create a second network named front) = %v, want AlreadyExists", errs[0])
	}
	// A network without a name is refused.
	if errs := s.Apply(3, command(creates(testNetwork("net4", "")))); !errors.Is(errs[0], sdk.ErrInvalidArgument) {
		t.Errorf("Apply(create a network without a name) = %v, want InvalidArgument", errs[0])
	}
	// A network and a service may share a name.
	mustApply(t, s, 4, creates(testService("s1", "front")))

	// An update through Prepare, seen by a watcher; then a delete.
	events, cancel := s.Watch()
	defer cancel()
	txn, err := s.Prepare(time.Now(), func(tx *Tx) error {
		n := proto.Clone(tx.Network("net1")).(*objectv1.Network)
		n.Subnet = "10.200.0.0/16"
		n.NodeSubnets = map[string]string{"node1": "10.200.1.0/24"}
		return tx.UpdateNetwork(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 5, txn)
	ev := <-events
	if ev.Network.GetSubnet() != "10.200.0.0/16" || ev.OldNetwork.GetSubnet() != "" || ev.Kind != raftv1.ActionKind_ACTION_KIND_UPDATE {
		t.Errorf("update event = %v, old %v; want the network with its subnet, and the old one without", ev.Network, ev.OldNetwork)
	}
	txn, err = s.Prepare(time.Now(), func(tx *Tx) error { return tx.DeleteNetwork("net2") })
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, 6, txn)
	if ev := <-events; ev.Network.GetId() != "net2" || ev.Kind != raftv1.ActionKind_ACTION_KIND_DELETE {
		t.Errorf("delete event = %v %v, want net2 deleted", ev.Kind, ev.Network)
	}
	s.View(func(tx *ReadTx) {
		if tx.NetworkByName("back") != nil || tx.Network("net2") != nil {
			t.Error("net2 still readable after its delete")
		}
	})
	checkIndexes(t, s)
}

func TestNetworkRenameSwapAndUndo(t *testing.T) {
	s := New()
	mustApply(t, s, 1, creates(testNetwork("a", "x"), testNetwork("b", "y")))
	// Swapping two names in one transaction is fine.
	mustApply(t, s, 2, txn(act(opUpdate, withVersion(testNetwork("a", "y"), 1)), act(opUpdate, withVersion(testNetwork("b", "x"), 1))))
	// A transaction that leaves two networks with one name fails whole:
	// its first action (a create) is undone.
	errs := s.Apply(3, command(txn(act(opCreate, testNetwork("c", "z")), act(opUpdate, withVersion(testNetwork("a", "x"), 2)))))
	if !errors.Is(errs[0], sdk.ErrAlreadyExists) {
		t.Errorf("Apply(rename onto a used name) = %v, want AlreadyExists", errs[0])
	}
	s.View(func(tx *ReadTx) {
		if tx.Network("c") != nil {
			t.Error("network c created by a failed transaction")
		}
		if got := tx.NetworkByName("y").GetId(); got != "a" {
			t.Errorf("NetworkByName(y) = %q, want a", got)
		}
	})
	checkIndexes(t, s)
}

func TestNetworkSnapshot(t *testing.T) {
	s := seeded(t)
	n := testNetwork("net1", "front")
	n.Subnet = "10.200.0.0/16"
	mustApply(t, s, 2, creates(n, testNetwork("net0", "back")))
	snap := s.Snapshot()
	if got := ids(snap.GetNetworks()); !slices.Equal(got, []string{"net0", "net1"}) {
		t.Errorf("Snapshot networks = %v, want [net0 net1]", got)
	}
	r := New()
	if err := r.Restore(proto.Clone(snap).(*raftv1.Snapshot)); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot(); !proto.Equal(got, snap) {
		t.Errorf("Snapshot after Restore = %v, want %v", got, snap)
	}
	checkIndexes(t, r)

	bad := proto.Clone(snap).(*raftv1.Snapshot)
	bad.Networks[0].Spec.Annotations.Name = "front"
	if err := New().Restore(bad); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Restore(two networks named front) = %v, want InvalidArgument", err)
	}
}
