package state

import (
	"slices"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// indexQueries is every index query the tests check, by a short name.
var indexQueries = []struct {
	name string
	run  func(tx *ReadTx) []string
}{
	{"role=manager", func(tx *ReadTx) []string { return ids(tx.NodesByRole(manager)) }},
	{"role=worker", func(tx *ReadTx) []string { return ids(tx.NodesByRole(worker)) }},
	{"avail=active", func(tx *ReadTx) []string { return ids(tx.NodesByAvailability(active)) }},
	{"avail=drain", func(tx *ReadTx) []string { return ids(tx.NodesByAvailability(drain)) }},
	{"name=web", func(tx *ReadTx) []string { return serviceIDs(tx.ServiceByName("web")) }},
	{"name=www", func(tx *ReadTx) []string { return serviceIDs(tx.ServiceByName("www")) }},
	{"name=db", func(tx *ReadTx) []string { return serviceIDs(tx.ServiceByName("db")) }},
	{"service=s1", func(tx *ReadTx) []string { return ids(tx.TasksByService("s1")) }},
	{"service=s2", func(tx *ReadTx) []string { return ids(tx.TasksByService("s2")) }},
	{"node=n1", func(tx *ReadTx) []string { return ids(tx.TasksByNode("n1")) }},
	{"node=n2", func(tx *ReadTx) []string { return ids(tx.TasksByNode("n2")) }},
	{"node=", func(tx *ReadTx) []string { return ids(tx.TasksByNode("")) }},
	{"state=running", func(tx *ReadTx) []string { return ids(tx.TasksByState(running)) }},
	{"state=assigned", func(tx *ReadTx) []string { return ids(tx.TasksByState(objectv1.TaskState_TASK_STATE_ASSIGNED)) }},
	{"state=pending", func(tx *ReadTx) []string { return ids(tx.TasksByState(pending)) }},
	{"state=failed", func(tx *ReadTx) []string { return ids(tx.TasksByState(failed)) }},
	{"desired=running", func(tx *ReadTx) []string { return ids(tx.TasksByDesiredState(running)) }},
	{"desired=shutdown", func(tx *ReadTx) []string { return ids(tx.TasksByDesiredState(stopped)) }},
}

func serviceIDs(s *objectv1.Service) []string {
	if s == nil {
		return []string{}
	}
	return []string{s.GetId()}
}

func TestIndexes(t *testing.T) {
	// Steps apply in order on one store; after each, every query must give
	// exactly want (absent: nothing), so a stale entry anywhere shows.
	steps := []struct {
		name string
		txn  *raftv1.Transaction
		want map[string][]string
	}{
		{"seeded", nil, map[string][]string{
			"role=manager": {"n1"}, "role=worker": {"n2"}, "avail=active": {"n1", "n2"},
			"name=web": {"s1"}, "name=db": {"s2"},
			"service=s1": {"t1", "t2"}, "service=s2": {"t3"},
			"node=n1": {"t1"}, "node=n2": {"t2"}, "node=": {"t3"},
			"state=running": {"t1"}, "state=assigned": {"t2"}, "state=pending": {"t3"},
			"desired=running": {"t1", "t2", "t3"},
		}},
		{"task moves node, state and desired state", txn(
			act(opUpdate, withVersion(testTask("t1", "s1", "n2", stopped, failed), 1)),
		), map[string][]string{
			"role=manager": {"n1"}, "role=worker": {"n2"}, "avail=active": {"n1", "n2"},
			"name=web": {"s1"}, "name=db": {"s2"},
			"service=s1": {"t1", "t2"}, "service=s2": {"t3"},
			"node=n2": {"t1", "t2"}, "node=": {"t3"},
			"state=assigned": {"t2"}, "state=pending": {"t3"}, "state=failed": {"t1"},
			"desired=running": {"t2", "t3"}, "desired=shutdown": {"t1"},
		}},
		{"task changes service, keeps the rest", txn(
			act(opUpdate, withVersion(testTask("t3", "s1", "", running, pending), 1)),
		), map[string][]string{
			"role=manager": {"n1"}, "role=worker": {"n2"}, "avail=active": {"n1", "n2"},
			"name=web": {"s1"}, "name=db": {"s2"},
			"service=s1": {"t1", "t2", "t3"},
			"node=n2":    {"t1", "t2"}, "node=": {"t3"},
			"state=assigned": {"t2"}, "state=pending": {"t3"}, "state=failed": {"t1"},
			"desired=running": {"t2", "t3"}, "desired=shutdown": {"t1"},
		}},
		{"node promoted and drained, service renamed", txn(
			act(opUpdate, withVersion(testNode("n2", manager, drain), 1)),
			act(opUpdate, withVersion(testService("s1", "www"), 1)),
		), map[string][]string{
			"role=manager": {"n1", "n2"}, "avail=active": {"n1"}, "avail=drain": {"n2"},
			"name=www": {"s1"}, "name=db": {"s2"},
			"service=s1": {"t1", "t2", "t3"},
			"node=n2":    {"t1", "t2"}, "node=": {"t3"},
			"state=assigned": {"t2"}, "state=pending": {"t3"}, "state=failed": {"t1"},
			"desired=running": {"t2", "t3"}, "desired=shutdown": {"t1"},
		}},
		{"deletes", txn(
			act(opDelete, &objectv1.Task{Id: "t1"}),
			act(opDelete, &objectv1.Task{Id: "t3"}),
			act(opDelete, &objectv1.Node{Id: "n1"}),
			act(opDelete, &objectv1.Service{Id: "s2"}),
		), map[string][]string{
			"role=manager": {"n2"}, "avail=drain": {"n2"},
			"name=www":        {"s1"},
			"service=s1":      {"t2"},
			"node=n2":         {"t2"},
			"state=assigned":  {"t2"},
			"desired=running": {"t2"},
		}},
		{"a failed transaction leaves every index", txn(
			act(opCreate, testTask("t9", "s2", "n1", running, running)),
			act(opUpdate, withVersion(testNode("n2", worker, active), 4)),
			act(opCreate, testService("s9", "www")),
		), map[string][]string{
			"role=manager": {"n2"}, "avail=drain": {"n2"},
			"name=www":        {"s1"},
			"service=s1":      {"t2"},
			"node=n2":         {"t2"},
			"state=assigned":  {"t2"},
			"desired=running": {"t2"},
		}},
	}
	s := seeded(t)
	for i, step := range steps {
		if step.txn != nil {
			s.Apply(uint64(i+1), command(step.txn))
		}
		checkIndexes(t, s)
		checkIndexQueries(t, s, step.name, step.want)
	}
}

func TestKeyIndexDropsEmptySets(t *testing.T) {
	s := seeded(t)
	mustApply(t, s, 2, txn(
		act(opDelete, &objectv1.Task{Id: "t1"}),
		act(opDelete, &objectv1.Task{Id: "t2"}),
		act(opDelete, &objectv1.Task{Id: "t3"}),
	))
	s.View(func(tx *ReadTx) {
		for name, sets := range map[string]int{
			"tasksByService":      len(tx.t.tasksByService.sets),
			"tasksByNode":         len(tx.t.tasksByNode.sets),
			"tasksByState":        len(tx.t.tasksByState.sets),
			"tasksByDesiredState": len(tx.t.tasksByDesiredState.sets),
		} {
			if sets != 0 {
				t.Errorf("%s holds %d keys with no task, want 0", name, sets)
			}
		}
	})
}

// checkIndexQueries checks, after the step named after, that every query of
// indexQueries gives exactly want[query] (absent: nothing), so a stale
// entry anywhere shows, and that the counts the metrics read agree with the
// listings.
func checkIndexQueries(t *testing.T, s *Store, after string, want map[string][]string) {
	t.Helper()
	s.View(func(tx *ReadTx) {
		for _, q := range indexQueries {
			w := want[q.name]
			if w == nil {
				w = []string{}
			}
			if got := q.run(tx); !slices.Equal(got, w) {
				t.Errorf("after %q: %s = %v, want %v", after, q.name, got, w)
			}
		}
		// The counts the metrics read agree with the listings.
		if got, want := tx.CountNodes(), len(tx.Nodes()); got != want {
			t.Errorf("after %q: CountNodes = %d, want %d", after, got, want)
		}
		for _, st := range []objectv1.TaskState{running, pending, failed} {
			if got, want := tx.CountTasksByState(st), len(tx.TasksByState(st)); got != want {
				t.Errorf("after %q: CountTasksByState(%v) = %d, want %d", after, st, got, want)
			}
		}
	})
}
