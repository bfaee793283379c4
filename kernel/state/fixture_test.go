package state

import (
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// Builders of objects and commands shared by the tests.

const (
	opCreate = raftv1.ActionKind_ACTION_KIND_CREATE
	opUpdate = raftv1.ActionKind_ACTION_KIND_UPDATE
	opDelete = raftv1.ActionKind_ACTION_KIND_DELETE
)

func testNode(id string, role objectv1.NodeRole, avail objectv1.NodeAvailability) *objectv1.Node {
	return &objectv1.Node{
		Id:          id,
		Role:        role,
		Spec:        &objectv1.NodeSpec{Availability: avail},
		Description: &objectv1.NodeDescription{Hostname: "host-" + id},
	}
}

func testService(id, name string) *objectv1.Service {
	return &objectv1.Service{Id: id, Spec: &objectv1.ServiceSpec{Annotations: &objectv1.Annotations{Name: name}}}
}

func testTask(id, serviceID, nodeID string, desired, observed objectv1.TaskState) *objectv1.Task {
	return &objectv1.Task{
		Id:           id,
		ServiceId:    serviceID,
		NodeId:       nodeID,
		DesiredState: desired,
		Status:       &objectv1.TaskStatus{State: observed},
	}
}

func testCluster(id string) *objectv1.Cluster {
	return &objectv1.Cluster{Id: id, Spec: &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{Name: "default"}}}
}

// withVersion returns a clone of m at meta.version v, as a writer that read
// version v would send it.
func withVersion[T proto.Message](m T, v uint64) T {
	c := proto.Clone(m).(T)
	meta := &objectv1.Meta{Version: v}
	switch o := any(c).(type) {
	case *objectv1.Cluster:
		o.Meta = meta
	case *objectv1.Node:
		o.Meta = meta
	case *objectv1.Service:
		o.Meta = meta
	case *objectv1.Task:
		o.Meta = meta
	case *objectv1.Network:
		o.Meta = meta
	case *objectv1.Secret:
		o.Meta = meta
	case *objectv1.Config:
		o.Meta = meta
	}
	return c
}

// act builds a StoreAction on a clone of obj (Apply takes ownership).
func act(kind raftv1.ActionKind, obj proto.Message) *raftv1.StoreAction {
	a := &raftv1.StoreAction{Kind: kind}
	switch o := proto.Clone(obj).(type) {
	case *objectv1.Cluster:
		a.Target = &raftv1.StoreAction_Cluster{Cluster: o}
	case *objectv1.Node:
		a.Target = &raftv1.StoreAction_Node{Node: o}
	case *objectv1.Service:
		a.Target = &raftv1.StoreAction_Service{Service: o}
	case *objectv1.Task:
		a.Target = &raftv1.StoreAction_Task{Task: o}
	case *objectv1.Network:
		a.Target = &raftv1.StoreAction_Network{Network: o}
	case *objectv1.Secret:
		a.Target = &raftv1.StoreAction_Secret{Secret: o}
	case *objectv1.Config:
		a.Target = &raftv1.StoreAction_Config{Config: o}
	}
	return a
}

func txn(actions ...*raftv1.StoreAction) *raftv1.Transaction {
	return &raftv1.Transaction{Actions: actions}
}

func creates(objs ...proto.Message) *raftv1.Transaction {
	t := &raftv1.Transaction{}
	for _, o := range objs {
		t.Actions = append(t.Actions, act(opCreate, o))
	}
	return t
}

func command(txns ...*raftv1.Transaction) *raftv1.Command {
	return &raftv1.Command{Transactions: txns}
}

// mustApply applies txns as one command and fails the test on any error.
func mustApply(t testing.TB, s *Store, index uint64, txns ...*raftv1.Transaction) {
	t.Helper()
	for i, err := range s.Apply(index, command(txns...)) {
		if err != nil {
			t.Fatalf("Apply(%d) transaction %d = %v, want nil", index, i, err)
		}
	}
}

// seeded returns a store at index 1 holding a cluster, two nodes, two
// services and three tasks.
func seeded(t testing.TB) *Store {
	t.Helper()
	s := New()
	mustApply(t, s, 1, creates(
		testCluster("c1"),
		testNode("n1", objectv1.NodeRole_NODE_ROLE_MANAGER, objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE),
		testNode("n2", objectv1.NodeRole_NODE_ROLE_WORKER, objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE),
		testService("s1", "web"),
		testService("s2", "db"),
		testTask("t1", "s1", "n1", objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskState_TASK_STATE_RUNNING),
		testTask("t2", "s1", "n2", objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskState_TASK_STATE_ASSIGNED),
		testTask("t3", "s2", "", objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskState_TASK_STATE_PENDING),
	))
	return s
}

// ids returns the IDs of objs in order.
func ids[T interface{ GetId() string }](objs []T) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetId()
	}
	return out
}

// checkIndexes fails the test unless every index of s is exactly what
// rebuilding it from the primary tables gives.
func checkIndexes(t testing.TB, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := indexesConsistent(s.t); err != "" {
		t.Fatal(err)
	}
}

// indexesConsistent returns a description of the first index that differs
// from a rebuild, or "".
func indexesConsistent(got *tables) string {
	want := newTables()
	for id, e := range got.nodes.byID {
		want.nodes.set(id, e.v)
	}
	for id, e := range got.services.byID {
		want.services.set(id, e.v)
	}
	for id, e := range got.tasks.byID {
		want.tasks.set(id, e.v)
	}
	for id, e := range got.networks.byID {
		want.networks.set(id, e.v)
	}
	for id, e := range got.secrets.byID {
		want.secrets.set(id, e.v)
	}
	for id, e := range got.configs.byID {
		want.configs.set(id, e.v)
	}
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"nodesByRole", sameIndex(got.nodesByRole, want.nodesByRole)},
		{"nodesByAvailability", sameIndex(got.nodesByAvailability, want.nodesByAvailability)},
		{"servicesByName", sameIndex(got.servicesByName, want.servicesByName)},
		{"tasksByService", sameIndex(got.tasksByService, want.tasksByService)},
		{"tasksByNode", sameIndex(got.tasksByNode, want.tasksByNode)},
		{"tasksByState", sameIndex(got.tasksByState, want.tasksByState)},
		{"tasksByDesiredState", sameIndex(got.tasksByDesiredState, want.tasksByDesiredState)},
		{"networksByName", sameIndex(got.networksByName, want.networksByName)},
		{"secretsByName", sameIndex(got.secretsByName, want.secretsByName)},
		{"configsByName", sameIndex(got.configsByName, want.configsByName)},
	} {
		if !c.ok {
			return "index " + c.name + " differs from a rebuild from the tables"
		}
	}
	return ""
}

// sameIndex reports whether two indexes file the same objects under the
// same keys, and got's entries know their place in its buckets.
func sameIndex[K comparable, T object](got, want *keyIndex[K, T]) bool {
	flat := func(x *keyIndex[K, T]) map[K]map[string]T {
		out := make(map[K]map[string]T)
		for k, b := range x.sets {
			out[k] = make(map[string]T)
			for _, e := range b.items {
				out[k][e.v.GetId()] = e.v
			}
		}
		return out
	}
	for _, b := range got.sets {
		if len(b.items) == 0 {
			return false
		}
		for i, e := range b.items {
			if int(e.pos[got.slot]) != i {
				return false
			}
		}
	}
	return maps.EqualFunc(flat(got), flat(want), func(a, b map[string]T) bool { return maps.Equal(a, b) })
}
