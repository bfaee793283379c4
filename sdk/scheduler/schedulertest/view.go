package schedulertest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// checkViewVersioning: the scheduler keeps its view between calls and
// applies deltas to it; a delta on a view it does not hold fails with
// FailedPrecondition; a full view (view_base 0) replaces whatever it held.
func checkViewVersioning(t *testing.T, h *harness) {
	const why = "an error of kind sdk.ErrFailedPrecondition (fmt.Errorf(\"...: %w\", sdk.ErrFailedPrecondition)), so that the kernel resends the whole view"
	precondition := func(err error, what string) {
		t.Helper()
		if err != nil && !errors.Is(err, sdk.ErrFailedPrecondition) {
			t.Errorf("%s: Schedule = %v, want %s", what, err, why)
		}
	}

	s := h.open(t)
	orphan := &schedulerv1.ScheduleRequest{
		ViewBase:    41,
		ViewVersion: 48,
		UpsertNodes: []*schedulerv1.NodeInfo{newNode("n1", 4, 8*gib)},
		Tasks:       newTasks("orphan", "svc", 1, nil, 0, 0),
	}
	precondition(scheduleErr(t.Context(), t, s, orphan, "an error: the scheduler holds no view yet, "+why), "a delta (view_base 41) to a scheduler that holds no view")

	c := newCluster(newNode("n1", 4, 8*gib), newNode("n2", 4, 8*gib))
	schedule(t, s, c, c.full(newTasks("a", "svc", 4, nil, 0, 0)), "full view {n1, n2}")

	c.set(newNode("n3", 4, 8*gib))
	tasks := concat(
		newTasks("on-n3", "pinned", 1, constrained("node.id==n3"), 0, 0),
		newTasks("on-n1", "pinned", 1, constrained("node.id==n1"), 0, 0),
	)
	resp := schedule(t, s, c, c.delta(tasks), "delta adding n3")
	for _, want := range []struct{ task, node, why string }{
		{"on-n3-0", "n3", "the delta added n3"},
		{"on-n1-0", "n1", "n1 came with the full view and the delta kept it"},
	} {
		if d := decisionOf(resp, want.task); d.GetNodeId() != want.node {
			t.Errorf("delta adding n3: task %s (constraint node.id==%s) %s, want placed on %s: %s", want.task, want.node, decisionString(d), want.node, want.why)
		}
	}

	for _, base := range []uint64{c.version - 1, c.version + 1} {
		req := &schedulerv1.ScheduleRequest{ViewBase: base, ViewVersion: c.version + 100, Tasks: newTasks("stale", "svc", 1, nil, 0, 0)}
		what := fmt.Sprintf("a delta on view %d while the scheduler holds view %d", base, c.version)
		precondition(scheduleErr(t.Context(), t, s, req, "an error: "+what+" cannot be applied, "+why), what)
	}

	// The kernel resends the whole view, in which only n4 and n5 remain.
	c.remove(c.ids()...)
	c.set(newNode("n4", 4, 8*gib))
	c.set(newNode("n5", 4, 8*gib))
	tasks = concat(newTasks("b", "svc", 6, nil, 0, 0), newTasks("old-n1", "pinned", 1, constrained("node.id==n1"), 0, 0))
	resp = schedule(t, s, c, c.full(tasks), "full view {n4, n5} replacing {n1, n2, n3}")
	if d := decisionOf(resp, "old-n1-0"); d.GetNodeId() != "" {
		t.Errorf("full view {n4, n5}: task old-n1-0 (constraint node.id==n1) %s, want refused: a full view replaces the old one", decisionString(d))
	}
	resp = schedule(t, s, c, c.delta(newTasks("c", "svc", 4, nil, 0, 0)), "delta after the full view")
	if got := placedCount(resp); got != 4 {
		t.Errorf("delta after the full view: placed %d of 4 tasks, want 4 on n4 and n5", got)
	}
}

// checkViewOnlyRequests: a request without tasks only updates the view
// (the kernel keeps the scheduler's view current that way while nothing
// waits); it gets a reply without decisions, and later requests build on
// it.
func checkViewOnlyRequests(t *testing.T, h *harness) {
	s := h.open(t)
	c := newCluster(newNode("n1", 4, 8*gib))
	if resp := schedule(t, s, c, c.full(nil), "a full view {n1} without tasks"); len(resp.GetDecisions()) != 0 {
		t.Errorf("a full view without tasks: %d decisions, want none", len(resp.GetDecisions()))
	}
	c.set(newNode("n2", 4, 8*gib))
	if resp := schedule(t, s, c, c.delta(nil), "a delta adding n2, without tasks"); len(resp.GetDecisions()) != 0 {
		t.Errorf("a delta without tasks: %d decisions, want none", len(resp.GetDecisions()))
	}
	resp := schedule(t, s, c, c.delta(newTasks("on-n2", "pinned", 1, constrained("node.id==n2"), 0, 0)), "a delta after view-only requests")
	if d := decisionOf(resp, "on-n2-0"); d.GetNodeId() != "n2" {
		t.Errorf("a task constrained to n2, added by a view-only request: %s, want placed on n2", decisionString(d))
	}
}

// checkNodeRemovals: a removed node gets no task; a node removed and added
// again does.
func checkNodeRemovals(t *testing.T, h *harness) {
	s := h.open(t)
	var nodes []*schedulerv1.NodeInfo
	for i := 1; i <= 6; i++ {
		nodes = append(nodes, newNode(fmt.Sprintf("n%d", i), 4, 8*gib))
	}
	c := newCluster(nodes...)
	schedule(t, s, c, c.full(newTasks("a", "svc", 12, nil, 0, 0)), "full view n1..n6")

	c.remove("n2", "n4")
	resp := schedule(t, s, c, c.delta(newTasks("b", "svc", 30, nil, 0, 0)), "after removing n2 and n4")
	if got := placedCount(resp); got != 30 {
		t.Errorf("after removing n2 and n4: placed %d of 30 tasks, want 30 on n1, n3, n5 and n6", got)
	}

	c.remove(c.ids()...)
	schedule(t, s, c, c.delta(newTasks("c", "svc", 5, nil, 0, 0)), "after removing every node")

	c.set(newNode("n2", 4, 8*gib))
	resp = schedule(t, s, c, c.delta(newTasks("d", "svc", 4, nil, 0, 0)), "after adding n2 back")
	expectEach(t, resp, "after adding n2 back", "placed on n2, the only node", func(d *schedulerv1.Decision) bool { return d.GetNodeId() == "n2" })
}

// constraintView is a view where each constraint of checkConstraints
// matches some nodes and not others.
func constraintView() []*schedulerv1.NodeInfo {
	type spec struct {
		id, role, platform string
		labels             []string
	}
	specs := []spec{
		{"n1", "worker", "linux/amd64", []string{"rack", "r1", "zone", "a", "ssd", "true"}},
		{"n2", "worker", "linux/arm64", []string{"rack", "r2", "zone", "a"}},
		{"n3", "manager", "linux/amd64", []string{"rack", "r1", "zone", "b"}},
		{"n4", "worker", "windows/amd64", []string{"rack", "r3", "zone", "b", "ssd", "false"}},
		{"n5", "manager", "linux/arm64", nil},
		{"n6", "worker", "linux/amd64", []string{"rack", "r2", "zone", "b", "ssd", "true"}},
		{"n7", "worker", "freebsd/riscv64", []string{"zone", "a"}},
		{"n8", "manager", "windows/arm64", []string{"rack", "r3", "ssd", "true"}},
	}
	nodes := make([]*schedulerv1.NodeInfo, len(specs))
	for i, s := range specs {
		n := newNode(s.id, 8, 32*gib, s.labels...)
		n.Platform = s.platform
		if s.role == "manager" {
			n.Role = objectv1.NodeRole_NODE_ROLE_MANAGER
		}
		if s.id == "n3" {
			n.Hostname = "Host-N3" // for the constraints on host name case
		}
		nodes[i] = n
	}
	return nodes
}

// checkConstraints: every placement meets every constraint of its task, a
// task that some node meets is placed, and one no node meets is refused.
func checkConstraints(t *testing.T, h *harness) {
	cases := [][]string{
		{"node.id==n3"},
		{"node.id!=n3"},
		{"node.hostname==host-n2"},
		{"node.hostname!=host-n2"},
		// Host names compare without regard to ASCII case, as DNS names
		// do; nothing else does.
		{"node.hostname==HOST-N2"},
		{"node.hostname!=Host-N1"},
		{"node.hostname==host-n2", "node.id==n2"},
		{"node.hostname==host-n3"}, // n3's host name is Host-N3
		{"node.labels.rack==R1"},
		{"node.platform.os==Linux"},
		{"node.role==manager"},
		{"node.role==worker"},
		{"node.role!=manager"},
		{"node.platform.os==windows"},
		{"node.platform.os!=linux"},
		{"node.platform.arch==arm64"},
		{"node.platform.arch!=amd64"},
		{"node.labels.rack==r1"},
		{"node.labels.rack!=r1"},
		{"node.labels.ssd==true"},
		{"node.labels.rack == r2"},
		{"node.labels.zone==a", "node.platform.arch==amd64"},
		{"node.role==worker", "node.labels.rack!=r1", "node.labels.ssd!=false"},
		// Constraints no node meets.
		{"node.labels.rack==r9"},
		{"node.id==nope"},
		{"node.labels.nolabel==x"},
		{"node.labels.zone==a", "node.labels.zone==b"},
		{"node.platform.os==linux", "node.role==manager", "node.labels.ssd==true"},
	}
	s := h.open(t)
	c := newCluster(constraintView()...)
	schedule(t, s, c, c.full(nil), "full view of 8 nodes")
	for i, exprs := range cases {
		var matching []string
		for _, id := range c.ids() {
			if meetsAll(c.node(id), exprs) {
				matching = append(matching, id)
			}
		}
		what := fmt.Sprintf("constraints %q (met by %v)", exprs, matching)
		resp := schedule(t, s, c, c.delta(newTasks(fmt.Sprintf("c%d", i), fmt.Sprintf("svc%d", i), 8, constrained(exprs...), 0, 0)), what)
		if len(matching) == 0 {
			expectEach(t, resp, what, "refused (no node meets the constraints)", func(d *schedulerv1.Decision) bool { return d.GetNodeId() == "" })
		} else {
			expectEach(t, resp, what, fmt.Sprintf("placed on one of %v", matching), func(d *schedulerv1.Decision) bool { return d.GetNodeId() != "" })
		}
	}
}

func meetsAll(n *schedulerv1.NodeInfo, exprs []string) bool {
	for _, e := range exprs {
		if ok, _ := meets(n, e); !ok {
			return false
		}
	}
	return true
}

// checkCancellation: with a cancelled ctx, Schedule returns the ctx's error
// instead of deciding a large batch, and the scheduler works afterwards.
func checkCancellation(t *testing.T, h *harness) {
	s := h.open(t)
	var nodes []*schedulerv1.NodeInfo
	for i := range 100 {
		nodes = append(nodes, newNode(fmt.Sprintf("n%03d", i), 64, 256*gib, "rack", fmt.Sprintf("r%d", i%10)))
	}
	c := newCluster(nodes...)
	p := &objectv1.Placement{
		Constraints: []string{"node.labels.rack!=r0"},
		Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}},
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := scheduleErr(ctx, t, s, c.full(newTasks("t", "svc", 5000, p, cpu/100, mib)), "an error wrapping context.Canceled: return ctx.Err() when ctx is done")
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Schedule(cancelled ctx, 5000 tasks) = %v, want an error wrapping context.Canceled (ctx.Err())", err)
	}
	schedule(t, s, c, c.full(newTasks("after", "svc", 50, p, cpu/100, mib)), "full view after a cancelled batch")
}
