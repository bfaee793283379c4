package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// maxFieldErrors caps the fields one error names: errors travel in gRPC
// trailers, and the first few say what is wrong.
const maxFieldErrors = 20

// View is a scheduler's copy of the node view, kept between calls to
// Schedule, with what the batch being decided has placed so far. It does
// for a scheduler what every scheduler must do besides its policy:
//
//	func (s *mine) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
//		if err := s.view.Apply(req); err != nil {
//			return nil, err
//		}
//		for _, t := range req.GetTasks() {
//			nodes, refusal := s.view.Fit(t) // the nodes that can take t now
//			... choose one of nodes, then s.view.Place(t, node) ...
//		}
//	}
//
// The zero View holds no view. A View is not safe for concurrent use: the
// kernel calls Schedule from one goroutine at a time; a scheduler that
// wants more guards its View with a mutex.
type View struct {
	// held is whether the view holds anything at all: a fresh plugin holds
	// no version, not even 0.
	held    bool
	version uint64
	// nodes are sorted by ID, so that whatever ranks them can break ties
	// by position and stay deterministic; index maps an ID to a position.
	nodes []*schedulerv1.NodeInfo
	index map[string]int
	// placed is what the batch placed on each node, by position; nil
	// until the batch places something there.
	placed []*placed
}

// placed is what one batch has put on a node.
type placed struct {
	cpu, mem int64
	services map[string]uint32
}

// Apply brings the view up to date with req and starts a new batch,
// forgetting what the previous one placed: the kernel's node upserts carry
// the placements it committed, in reserved and service_tasks.
//
// A request whose view_base is not the version held (the plugin restarted,
// or lost a request) fails with an error of kind sdk.ErrFailedPrecondition,
// and the kernel sends the whole view again. A request that breaks what a
// scheduler relies on (node and task IDs present and unique, no negative
// resources) fails with sdk.ErrInvalidArgument naming the fields. Both leave
// the view as it was.
//
// Removals come after upserts: a node both upserted and removed leaves the
// view, the safe reading of a contradictory request. Removing a node the
// view does not hold is not an error: the kernel may not know whether an
// earlier request reached the plugin.
//
// The view keeps req's nodes: the caller must not change them afterwards.
func (v *View) Apply(req *schedulerv1.ScheduleRequest) error {
	switch base := req.GetViewBase(); {
	case base == 0:
	case !v.held:
		return fmt.Errorf("the request changes view %d, but the scheduler holds no view (it restarted): %w", base, sdk.ErrFailedPrecondition)
	case base != v.version:
		return fmt.Errorf("the request changes view %d, but the scheduler holds view %d: %w", base, v.version, sdk.ErrFailedPrecondition)
	}
	if err := validate(req); err != nil {
		return err
	}
	if req.GetViewBase() == 0 {
		v.nodes, v.index = v.nodes[:0], make(map[string]int, len(req.GetUpsertNodes()))
	}
	resort := false
	for _, n := range req.GetUpsertNodes() {
		if i, ok := v.index[n.GetId()]; ok {
			v.nodes[i] = n
			continue
		}
		v.index[n.GetId()] = len(v.nodes)
		v.nodes = append(v.nodes, n)
		resort = true
	}
	for _, id := range req.GetRemovedNodes() {
		if i, ok := v.index[id]; ok {
			v.nodes[i] = nil
			delete(v.index, id)
			resort = true
		}
	}
	if resort {
		v.nodes = slices.DeleteFunc(v.nodes, func(n *schedulerv1.NodeInfo) bool { return n == nil })
		slices.SortFunc(v.nodes, func(a, b *schedulerv1.NodeInfo) int { return cmp.Compare(a.GetId(), b.GetId()) })
		clear(v.index)
		for i, n := range v.nodes {
			v.index[n.GetId()] = i
		}
	}
	v.held, v.version = true, req.GetViewVersion()
	v.placed = slices.Grow(v.placed[:0], len(v.nodes))[:len(v.nodes)]
	clear(v.placed)
	return nil
}

// Version returns the version of the view held (0 when none is).
func (v *View) Version() uint64 { return v.version }

// Nodes returns the nodes of the view, sorted by ID. The slice and the
// nodes are the view's own: read them, do not change them; they are valid
// until the next Apply.
func (v *View) Nodes() []*schedulerv1.NodeInfo { return v.nodes }

// Node returns the node of the view with the ID, or nil.
func (v *View) Node(id string) *schedulerv1.NodeInfo {
	if i, ok := v.index[id]; ok {
		return v.nodes[i]
	}
	return nil
}

// Free returns what node n has free for tasks: its totals minus its
// reservations and what the batch placed there. A resource whose total n
// does not report has none free (0 or less).
func (v *View) Free(n *schedulerv1.NodeInfo) (nanoCPUs, memoryBytes int64) {
	nanoCPUs = n.GetTotal().GetNanoCpus() - n.GetReserved().GetNanoCpus()
	memoryBytes = n.GetTotal().GetMemoryBytes() - n.GetReserved().GetMemoryBytes()
	if p := v.placedOn(n); p != nil {
		nanoCPUs -= p.cpu
		memoryBytes -= p.mem
	}
	return nanoCPUs, memoryBytes
}

// ServiceTasks returns how many tasks of a service node n runs, those the
// batch placed there included.
func (v *View) ServiceTasks(n *schedulerv1.NodeInfo, service string) uint64 {
	count := uint64(n.GetServiceTasks()[service])
	if p := v.placedOn(n); p != nil {
		count += uint64(p.services[service])
	}
	return count
}

// placedOn returns what the batch placed on n, or nil.
func (v *View) placedOn(n *schedulerv1.NodeInfo) *placed {
	if i, ok := v.index[n.GetId()]; ok && i < len(v.placed) {
		return v.placed[i]
	}
	return nil
}

// Place records that the batch puts task t on node n, a node of the view:
// from then on, Fit, Free and ServiceTasks count it.
func (v *View) Place(t *schedulerv1.TaskInfo, n *schedulerv1.NodeInfo) {
	i, ok := v.index[n.GetId()]
	if !ok {
		return
	}
	p := v.placed[i]
	if p == nil {
		p = &placed{services: make(map[string]uint32)}
		v.placed[i] = p
	}
	p.cpu += t.GetReservations().GetNanoCpus()
	p.mem += t.GetReservations().GetMemoryBytes()
	p.services[t.GetServiceId()]++
}

// Fit returns the nodes of the view that can take task t now, sorted by
// ID: those that meet all its constraints, run fewer of its service's tasks
// than its max_replicas_per_node, and have its reservations free (see
// Free; a task that reserves none of a resource fits on a node that
// reports none). When no node can, it returns none and the refusal to send
// for t, which names what left no node:
//
//	no suitable node: constraint node.labels.rack==r9 matched 0 of 12 nodes
//	no suitable node: insufficient memory on 12 nodes
//	no suitable node: max_replicas_per_node (2) reached on 3 nodes, insufficient CPU on 2 nodes (5 of 12 nodes meet the constraints)
//
// It costs O(nodes × constraints): a scheduler that places many tasks of
// the same placement on large views may want to filter once per batch.
func (v *View) Fit(t *schedulerv1.TaskInfo) ([]*schedulerv1.NodeInfo, string) {
	cs, err := ParseConstraints(t.GetPlacement().GetConstraints())
	if err != nil {
		return nil, "no suitable node: " + err.Error()
	}
	if len(v.nodes) == 0 {
		return nil, "no suitable node: no node is available"
	}
	met := v.nodes
	for i, c := range cs {
		var kept []*schedulerv1.NodeInfo
		for _, n := range met {
			if c.Match(n) {
				kept = append(kept, n)
			}
		}
		if len(kept) == 0 {
			return nil, noneMatched(cs[:i], c, met)
		}
		met = kept
	}
	var fit []*schedulerv1.NodeInfo
	var unfit [3]int // by reason: cap, CPU, memory
	for _, n := range met {
		if r := v.refuse(t, n); r >= 0 {
			unfit[r]++
			continue
		}
		fit = append(fit, n)
	}
	if len(fit) > 0 {
		return fit, ""
	}
	var parts []string
	if unfit[0] > 0 {
		parts = append(parts, fmt.Sprintf("max_replicas_per_node (%d) reached on %s", t.GetPlacement().GetMaxReplicasPerNode(), nodeCount(unfit[0])))
	}
	if unfit[1] > 0 {
		parts = append(parts, "insufficient CPU on "+nodeCount(unfit[1]))
	}
	if unfit[2] > 0 {
		parts = append(parts, "insufficient memory on "+nodeCount(unfit[2]))
	}
	refusal := "no suitable node: " + strings.Join(parts, ", ")
	if len(met) < len(v.nodes) {
		refusal += fmt.Sprintf(" (%d of %s meet the constraints)", len(met), nodeCount(len(v.nodes)))
	}
	return nil, refusal
}

// refuse returns why node n, which meets t's constraints, cannot take t
// now: 0 for its cap, 1 for CPU, 2 for memory; or -1 when it can.
func (v *View) refuse(t *schedulerv1.TaskInfo, n *schedulerv1.NodeInfo) int {
	if limit := t.GetPlacement().GetMaxReplicasPerNode(); limit > 0 && v.ServiceTasks(n, t.GetServiceId()) >= limit {
		return 0
	}
	cpu, mem := v.Free(n)
	if want := t.GetReservations().GetNanoCpus(); want > 0 && cpu < want {
		return 1
	}
	if want := t.GetReservations().GetMemoryBytes(); want > 0 && mem < want {
		return 2
	}
	return -1
}

// noneMatched is the refusal when constraint c matched none of the nodes
// that meet the constraints before it; with one such node, it says why.
func noneMatched(before Constraints, c Constraint, nodes []*schedulerv1.NodeInfo) string {
	s := fmt.Sprintf("no suitable node: constraint %s matched 0 of %s", c, nodeCount(len(nodes)))
	if len(before) > 0 {
		names := make([]string, len(before))
		for i, b := range before {
			names[i] = b.String()
		}
		verb := "meet"
		if len(nodes) == 1 {
			verb = "meets"
		}
		s = fmt.Sprintf("no suitable node: constraint %s matched 0 of the %s that %s %s", c, nodeCount(len(nodes)), verb, strings.Join(names, " and "))
	}
	if len(nodes) == 1 {
		s += " (node " + nodes[0].GetId() + ": " + c.Explain(nodes[0]) + ")"
	}
	return s
}

// nodeCount is "1 node" or "12 nodes".
func nodeCount(n int) string {
	if n == 1 {
		return "1 node"
	}
	return strconv.Itoa(n) + " nodes"
}

// validate checks what a scheduler relies on in a request: IDs present and
// unique, no negative resources. The kernel never sends such a request; one
// that does is refused whole rather than guessed at. Field names are made
// only for errors: validation runs on every node and task of every batch.
func validate(req *schedulerv1.ScheduleRequest) error {
	var fe sdk.FieldErrors
	dropped := 0
	add := func(field, format string, args ...any) {
		if len(fe) == maxFieldErrors {
			dropped++
			return
		}
		fe.Add(field, format, args...)
	}
	nodes := make(map[string]int, len(req.GetUpsertNodes()))
	for i, n := range req.GetUpsertNodes() {
		switch j, dup := nodes[n.GetId()]; {
		case n.GetId() == "":
			add(fmt.Sprintf("upsert_nodes[%d].id", i), "is required")
		case dup:
			add(fmt.Sprintf("upsert_nodes[%d].id", i), "%q repeats upsert_nodes[%d].id", n.GetId(), j)
		default:
			nodes[n.GetId()] = i
		}
		checkResources(add, "upsert_nodes", i, "total", n.GetTotal())
		checkResources(add, "upsert_nodes", i, "reserved", n.GetReserved())
	}
	for i, id := range req.GetRemovedNodes() {
		if id == "" {
			add(fmt.Sprintf("removed_nodes[%d]", i), "must not be empty")
		}
	}
	tasks := make(map[string]int, len(req.GetTasks()))
	for i, t := range req.GetTasks() {
		switch j, dup := tasks[t.GetId()]; {
		case t.GetId() == "":
			add(fmt.Sprintf("tasks[%d].id", i), "is required")
		case dup:
			add(fmt.Sprintf("tasks[%d].id", i), "%q repeats tasks[%d].id", t.GetId(), j)
		default:
			tasks[t.GetId()] = i
		}
		checkResources(add, "tasks", i, "reservations", t.GetReservations())
	}
	if dropped > 0 {
		fe.Add("request", "%d more invalid fields not shown", dropped)
	}
	return fe.Err()
}

// checkResources checks the resources r at list[i].name.
func checkResources(add func(field, format string, args ...any), list string, i int, name string, r *objectv1.Resources) {
	if c := r.GetNanoCpus(); c < 0 {
		add(fmt.Sprintf("%s[%d].%s.nano_cpus", list, i, name), "must not be negative, got %d", c)
	}
	if m := r.GetMemoryBytes(); m < 0 {
		add(fmt.Sprintf("%s[%d].%s.memory_bytes", list, i, name), "must not be negative, got %d", m)
	}
}
