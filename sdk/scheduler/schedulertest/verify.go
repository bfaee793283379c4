package schedulertest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// maxProblems caps what one reply reports: past the first few, more lines
// of the same mistake do not help a plugin author.
const maxProblems = 10

// verify checks resp, the reply to req, against the contract every reply
// must keep, whatever the scheduler's policy: one decision per task and
// only for tasks of req; placements only on nodes of the view (c, after the
// changes of req); a reason with every refusal; every constraint of a placed
// task met by its node; max_replicas_per_node kept; and no node given more
// reservations than it has. It returns the problems found, worded for the
// plugin's author.
func (c *cluster) verify(req *schedulerv1.ScheduleRequest, resp *schedulerv1.ScheduleResponse) []string {
	if resp == nil {
		return []string{"Schedule returned a nil response and no error; return one decision per task"}
	}
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if got, want := len(resp.GetDecisions()), len(req.GetTasks()); got != want {
		add("got %d decisions for %d tasks, want exactly one decision per task", got, want)
	}
	tasks := make(map[string]*schedulerv1.TaskInfo, len(req.GetTasks()))
	for _, t := range req.GetTasks() {
		tasks[t.GetId()] = t
	}
	decided := make(map[string]int, len(tasks))
	// placed lists the tasks placed on each node, in decision order.
	placed := make(map[string][]*schedulerv1.TaskInfo)
	for i, d := range resp.GetDecisions() {
		id := d.GetTaskId()
		t, ok := tasks[id]
		if !ok {
			add("decisions[%d] is for task %q, which is not in the request", i, id)
			continue
		}
		if decided[id]++; decided[id] == 2 {
			add("task %q has more than one decision, want exactly one", id)
		}
		if decided[id] > 1 {
			continue
		}
		if d.GetNodeId() == "" {
			if d.GetRefusal() == "" {
				add("task %q is refused (no node_id) with an empty refusal; say why no node fits, e.g. \"no suitable node: ...\"", id)
			}
			continue
		}
		n := c.node(d.GetNodeId())
		if n == nil {
			add("task %q is placed on node %q, which is not in the view (never sent, or removed)", id, d.GetNodeId())
			continue
		}
		for _, expr := range t.GetPlacement().GetConstraints() {
			if ok, why := meets(n, expr); !ok {
				add("task %q is placed on node %q (%s), which does not meet its constraint %q: %s", id, n.GetId(), describe(n), expr, why)
			}
		}
		placed[n.GetId()] = append(placed[n.GetId()], t)
	}
	for _, t := range req.GetTasks() {
		if decided[t.GetId()] == 0 {
			add("task %q has no decision, want exactly one decision per task", t.GetId())
		}
	}
	for _, id := range slices.Sorted(maps.Keys(placed)) {
		problems = append(problems, overcommit(c.node(id), placed[id])...)
		problems = append(problems, overCap(c.node(id), placed[id])...)
	}
	if len(problems) > maxProblems {
		more := len(problems) - maxProblems
		problems = append(problems[:maxProblems], fmt.Sprintf("... and %d more problems", more))
	}
	return problems
}

// overcommit reports the resources of n that the tasks placed on it by one
// batch take beyond its total, for each resource whose total is set.
func overcommit(n *schedulerv1.NodeInfo, tasks []*schedulerv1.TaskInfo) []string {
	var cpus, mem int64
	for _, t := range tasks {
		cpus += t.GetReservations().GetNanoCpus()
		mem += t.GetReservations().GetMemoryBytes()
	}
	var problems []string
	if total, reserved := n.GetTotal().GetNanoCpus(), n.GetReserved().GetNanoCpus(); total > 0 && reserved+cpus > total && cpus > 0 {
		problems = append(problems, fmt.Sprintf(
			"node %q: CPU over-committed: total %s, already reserved %s, this batch placed %s more (tasks %s)",
			n.GetId(), fmtCPU(total), fmtCPU(reserved), fmtCPU(cpus), taskIDs(tasks)))
	}
	if total, reserved := n.GetTotal().GetMemoryBytes(), n.GetReserved().GetMemoryBytes(); total > 0 && reserved+mem > total && mem > 0 {
		problems = append(problems, fmt.Sprintf(
			"node %q: memory over-committed: total %s, already reserved %s, this batch placed %s more (tasks %s)",
			n.GetId(), fmtMem(total), fmtMem(reserved), fmtMem(mem), taskIDs(tasks)))
	}
	return problems
}

// overCap reports the services whose tasks on n pass the
// max_replicas_per_node of a task placed there.
func overCap(n *schedulerv1.NodeInfo, tasks []*schedulerv1.TaskInfo) []string {
	count := make(map[string]uint64)
	for _, t := range tasks {
		count[t.GetServiceId()]++
	}
	var problems []string
	reported := make(map[string]bool)
	for _, t := range tasks {
		svc, limit := t.GetServiceId(), t.GetPlacement().GetMaxReplicasPerNode()
		total := uint64(n.GetServiceTasks()[svc]) + count[svc]
		if limit == 0 || total <= limit || reported[svc] {
			continue
		}
		reported[svc] = true
		problems = append(problems, fmt.Sprintf(
			"node %q: service %q has %d tasks there after this batch (%d before), over its max_replicas_per_node %d",
			n.GetId(), svc, total, n.GetServiceTasks()[svc], limit))
	}
	return problems
}

// meets reports whether n meets the constraint expr, in the language of
// scheduler.ParseConstraint, and says why not. An expression that does not
// parse is met by no node.
func meets(n *schedulerv1.NodeInfo, expr string) (bool, string) {
	c, err := scheduler.ParseConstraint(expr)
	if err != nil {
		return false, err.Error()
	}
	return c.Match(n), c.Explain(n)
}

// describe sums up a node's attributes for messages.
func describe(n *schedulerv1.NodeInfo) string {
	s := fmt.Sprintf("hostname %s, role %s, platform %s", n.GetHostname(), scheduler.RoleName(n.GetRole()), n.GetPlatform())
	if len(n.GetLabels()) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(n.GetLabels())) {
			kv = append(kv, k+"="+n.GetLabels()[k])
		}
		s += ", labels " + strings.Join(kv, ",")
	}
	return s
}

func fmtCPU(nano int64) string { return fmt.Sprintf("%.2f CPUs", float64(nano)/1e9) }
func fmtMem(b int64) string    { return fmt.Sprintf("%d MiB", b>>20) }

// taskIDs lists tasks for messages, shortened past a few.
func taskIDs(tasks []*schedulerv1.TaskInfo) string {
	var ids []string
	for i, t := range tasks {
		if i == 5 {
			ids = append(ids, fmt.Sprintf("and %d more", len(tasks)-i))
			break
		}
		ids = append(ids, t.GetId())
	}
	return strings.Join(ids, ", ")
}
