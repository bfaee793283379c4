package schedulertest

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// checkConfigure: an empty config is accepted (all defaults); an unknown
// key is refused with InvalidArgument, naming the key.
func checkConfigure(t *testing.T, h *harness) {
	in := h.fresh(t)
	if in.configurer == nil {
		t.Skip("the scheduler is not a scheduler.Configurer: it takes no settings")
	}
	for _, cfg := range [][]byte{nil, {}} {
		if err := in.configurer.Configure(t.Context(), cfg); err != nil {
			t.Errorf("Configure(%q) = %v, want nil: an empty config means all defaults", cfg, err)
		}
	}
	const key = "schedulertest_no_such_setting"
	cfg := []byte(key + " = 1\n")
	err := in.configurer.Configure(t.Context(), cfg)
	switch {
	case !errors.Is(err, sdk.ErrInvalidArgument):
		t.Errorf("Configure(%q) = %v, want an error of kind sdk.ErrInvalidArgument: decode the config with sdk.DecodeConfig, which refuses unknown keys", cfg, err)
	case in.implConfigurable && !strings.Contains(err.Error(), key):
		t.Errorf("Configure(%q) = %v, want the error to name the unknown key %q", cfg, err, key)
	}
	// A scheduler configured with defaults works.
	if err := in.configurer.Configure(t.Context(), nil); err != nil {
		t.Fatalf("Configure(empty config) after a refused one = %v, want nil", err)
	}
	c := newCluster(newNode("n1", 4, 8*gib))
	schedule(t, in, c, c.full(newTasks("t", "svc", 3, nil, 0, 0)), "first batch after Configure")
}

// checkOneDecisionPerTask: a batch mixing tasks that fit and tasks that
// cannot gets one decision per task; so does an empty batch (none).
func checkOneDecisionPerTask(t *testing.T, h *harness) {
	s := h.open(t)
	c := newCluster(newNode("n1", 4, 8*gib), newNode("n2", 4, 8*gib), newNode("n3", 4, 8*gib))
	tasks := concat(
		newTasks("fits", "a", 12, nil, 0, 0),
		newTasks("nowhere", "b", 4, constrained("node.labels.rack==nowhere"), 0, 0),
		newTasks("huge", "c", 4, nil, 64*cpu, 0),
		newTasks("small", "a", 6, nil, cpu/2, 256*mib),
	)
	schedule(t, s, c, c.full(tasks), "mixed batch of 26 tasks")
	resp := schedule(t, s, c, c.delta(nil), "batch of no tasks")
	if n := len(resp.GetDecisions()); n != 0 {
		t.Errorf("batch of no tasks: got %d decisions, want 0", n)
	}
	schedule(t, s, c, c.delta(newTasks("after-empty", "a", 5, nil, 0, 0)), "batch after an empty one")
}

// checkOnlyViewNodes: placements go only to nodes of the view, as it
// changes; with an empty view every task is refused.
func checkOnlyViewNodes(t *testing.T, h *harness) {
	s := h.open(t)
	c := newCluster(newNode("n1", 4, 8*gib), newNode("n2", 4, 8*gib))
	schedule(t, s, c, c.full(newTasks("a", "svc", 10, nil, 0, 0)), "view {n1, n2}")

	c.set(newNode("n3", 4, 8*gib))
	c.remove("n1")
	resp := schedule(t, s, c, c.delta(concat(
		newTasks("b", "svc", 10, nil, 0, 0),
		newTasks("on-n3", "other", 1, constrained("node.id==n3"), 0, 0),
	)), "after adding n3 and removing n1")
	if d := decisionOf(resp, "on-n3-0"); d.GetNodeId() != "n3" {
		t.Errorf("after adding n3: task on-n3-0 (constraint node.id==n3) %s, want placed on n3: the delta added n3 to the view", decisionString(d))
	}

	c.remove(c.ids()...)
	resp = schedule(t, s, c, c.delta(newTasks("c", "svc", 5, nil, 0, 0)), "after removing every node")
	if n := placedCount(resp); n != 0 {
		t.Errorf("after removing every node: %d tasks placed, want all refused: the view is empty", n)
	}
}

// checkRefusalsHaveReasons: tasks no node can take are refused, each with
// a reason.
func checkRefusalsHaveReasons(t *testing.T, h *harness) {
	full := newNode("full", 4, 8*gib)
	full.ServiceTasks = map[string]uint32{"capped": 1}
	s := h.open(t)
	c := newCluster(newNode("n1", 4, 8*gib), newNode("n2", 2, 16*gib), full)
	tasks := concat(
		newTasks("no-constraint-match", "a", 2, constrained("node.labels.rack==nowhere"), 0, 0),
		newTasks("too-much-cpu", "b", 2, nil, 5*cpu, 0),
		newTasks("too-much-memory", "c", 2, nil, 0, 17*gib),
		newTasks("cap-reached", "capped", 2, &objectv1.Placement{Constraints: []string{"node.id==full"}, MaxReplicasPerNode: 1}, 0, 0),
	)
	resp := schedule(t, s, c, c.full(tasks), "tasks no node can take")
	expectEach(t, resp, "tasks no node can take", "refused", func(d *schedulerv1.Decision) bool { return d.GetNodeId() == "" })
	c.remove(c.ids()...)
	schedule(t, s, c, c.delta(newTasks("empty-view", "a", 2, nil, 0, 0)), "empty view")
}

// checkPlacesTasksThatFit: a task that plainly fits is placed, not refused.
func checkPlacesTasksThatFit(t *testing.T, h *harness) {
	s := h.open(t)
	c := newCluster(newNode("n1", 4, 8*gib), newNode("n2", 4, 8*gib), newNode("n3", 4, 8*gib), newNode("n4", 4, 8*gib))
	for _, id := range []string{"n1", "n2", "n3"} {
		n := c.node(id)
		n.Reserved = &objectv1.Resources{NanoCpus: 4 * cpu, MemoryBytes: 8 * gib}
		c.set(n)
	}
	tasks := concat(
		newTasks("plain", "a", 20, nil, 0, 0),
		newTasks("only-n3", "b", 1, constrained("node.id==n3"), 0, 0),
		newTasks("needs-cpu", "c", 1, nil, cpu, 0),
	)
	resp := schedule(t, s, c, c.full(tasks), "tasks that fit")
	expectEach(t, resp, "tasks that fit", "placed (some node of the view can take each)", func(d *schedulerv1.Decision) bool { return d.GetNodeId() != "" })
	if d := decisionOf(resp, "needs-cpu-0"); d.GetNodeId() != "" && d.GetNodeId() != "n4" {
		t.Errorf("task needs-cpu-0 %s, want placed on n4, the only node with a free CPU", decisionString(d))
	}
}

// checkNoOvercommit: within a batch, reservations never pass a node's
// total, and every task that fits is placed (uniform task sizes, so any
// scheduler that places what fits fills the nodes exactly).
func checkNoOvercommit(t *testing.T, h *harness) {
	t.Run("CPU", func(t *testing.T) {
		s := h.open(t)
		n1 := newNode("n1", 4, 8*gib)
		n1.Reserved.NanoCpus = cpu
		c := newCluster(n1, newNode("n2", 4, 8*gib), newNode("n3", 4, 8*gib))
		resp := schedule(t, s, c, c.full(newTasks("t", "svc", 15, nil, cpu, 512*mib)), "15 tasks of 1 CPU on 3 nodes of 4 CPUs, 1 reserved")
		if got, want := placedCount(resp), 11; got != want {
			t.Errorf("placed %d of 15 tasks of 1 CPU, want %d: the nodes have exactly %d CPUs free", got, want, want)
		}
	})
	t.Run("Memory", func(t *testing.T) {
		s := h.open(t)
		c := newCluster(newNode("n1", 16, 8*gib), newNode("n2", 16, 8*gib))
		resp := schedule(t, s, c, c.full(newTasks("t", "svc", 10, nil, cpu/2, 3*gib)), "10 tasks of 3 GiB on 2 nodes of 8 GiB")
		if got, want := placedCount(resp), 4; got != want {
			t.Errorf("placed %d of 10 tasks of 3 GiB, want %d: two fit on each 8 GiB node", got, want)
		}
	})
	t.Run("PartialTotals", func(t *testing.T) {
		// Nodes that report only some totals: the kit only requires that
		// the totals that are set are kept.
		s := h.open(t)
		c := newCluster(newNode("cpu-only", 2, 0), newNode("mem-only", 0, 2*gib), newNode("neither", 0, 0), newNode("both", 2, 2*gib))
		tasks := concat(
			newTasks("cpu", "a", 4, nil, cpu, 0),
			newTasks("mem", "b", 4, nil, 0, gib),
			newTasks("both", "c", 4, nil, cpu, gib),
			newTasks("none", "d", 4, nil, 0, 0),
		)
		schedule(t, s, c, c.full(tasks), "nodes with partial totals")
	})
}

// checkNoOvercommitAcrossBatches: the second batch sees the reservations
// of the first through the kernel's node upserts, neither ignoring them nor
// counting them twice; a node whose reservations drop gets tasks again.
func checkNoOvercommitAcrossBatches(t *testing.T, h *harness) {
	s := h.open(t)
	c := newCluster(newNode("n1", 4, 16*gib), newNode("n2", 4, 16*gib), newNode("n3", 4, 16*gib))
	resp := schedule(t, s, c, c.full(newTasks("b1", "svc", 6, nil, cpu, gib)), "batch 1: 6 tasks of 1 CPU on 12 free CPUs")
	if got := placedCount(resp); got != 6 {
		t.Errorf("batch 1: placed %d of 6 tasks of 1 CPU, want 6: the nodes have 12 CPUs free", got)
	}
	free := int64(0)
	for _, id := range c.ids() {
		n := c.node(id)
		free += (n.GetTotal().GetNanoCpus() - n.GetReserved().GetNanoCpus()) / cpu
	}
	resp = schedule(t, s, c, c.delta(newTasks("b2", "svc", 10, nil, cpu, gib)), "batch 2: 10 tasks of 1 CPU, the kernel sent the new reservations")
	if got := placedCount(resp); got != int(free) {
		t.Errorf("batch 2: placed %d of 10 tasks of 1 CPU, want %d: that many CPUs are free after batch 1 "+
			"(fewer: are the scheduler's own earlier placements counted on top of the reserved totals the kernel sent?)", got, free)
	}
	resp = schedule(t, s, c, c.delta(newTasks("b3", "svc", 2, nil, cpu, gib)), "batch 3: the nodes are full")
	if got := placedCount(resp); got != 0 {
		t.Errorf("batch 3: placed %d tasks of 1 CPU, want 0: every CPU is reserved", got)
	}
	// Tasks on n1 ended: the kernel sends n1 with nothing reserved.
	n1 := c.node("n1")
	n1.Reserved = &objectv1.Resources{}
	n1.ServiceTasks = nil
	c.set(n1)
	resp = schedule(t, s, c, c.delta(newTasks("b4", "svc", 3, nil, cpu, gib)), "batch 4: n1 freed by the kernel")
	expectEach(t, resp, "batch 4", "placed on n1 (the kernel's upsert freed its 4 CPUs)", func(d *schedulerv1.Decision) bool { return d.GetNodeId() == "n1" })
}

// checkMaxReplicasPerNode: max_replicas_per_node counts the tasks already
// on a node and those placed by the batch, and only the service's own.
func checkMaxReplicasPerNode(t *testing.T, h *harness) {
	s := h.open(t)
	n1, n2 := newNode("n1", 8, 32*gib), newNode("n2", 8, 32*gib)
	n1.ServiceTasks = map[string]uint32{"capped": 1}
	n2.ServiceTasks = map[string]uint32{"other": 5}
	c := newCluster(n1, n2, newNode("n3", 8, 32*gib))
	p := &objectv1.Placement{MaxReplicasPerNode: 2}
	resp := schedule(t, s, c, c.full(newTasks("a", "capped", 8, p, 0, 0)), "8 tasks, max 2 per node, 1 already on n1")
	if got, want := placedCount(resp), 5; got != want {
		t.Errorf("placed %d of 8 tasks with max_replicas_per_node 2, want %d: n1 takes 1 more, n2 and n3 take 2 each", got, want)
	}
	resp = schedule(t, s, c, c.delta(newTasks("b", "capped", 2, p, 0, 0)), "2 more tasks, every node at the cap")
	if got := placedCount(resp); got != 0 {
		t.Errorf("placed %d tasks, want 0: every node runs 2 tasks of the service, its max_replicas_per_node", got)
	}
}
