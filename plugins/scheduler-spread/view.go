package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// maxFieldErrors caps the fields one error names: errors travel in gRPC
// trailers, and the first few say what is wrong.
const maxFieldErrors = 20

// node is a node of the view, with what scheduling reads of it unpacked
// once, when it arrives, rather than once per task.
type node struct {
	id, hostname string
	role         string // "worker", "manager" or ""
	os, arch     string // platform "os/arch"
	labels       map[string]string
	// totalCPU and totalMem are what the node offers (0: not reported);
	// reservedCPU and reservedMem what its tasks hold.
	totalCPU, totalMem       int64
	reservedCPU, reservedMem int64
	// serviceTasks counts its tasks per service; tasks is their sum.
	serviceTasks map[string]uint32
	tasks        uint64
}

func newNode(ni *schedulerv1.NodeInfo) *node {
	os, arch, _ := strings.Cut(ni.GetPlatform(), "/")
	n := &node{
		id:           ni.GetId(),
		hostname:     ni.GetHostname(),
		role:         roleName(ni.GetRole()),
		os:           os,
		arch:         arch,
		labels:       ni.GetLabels(),
		totalCPU:     ni.GetTotal().GetNanoCpus(),
		totalMem:     ni.GetTotal().GetMemoryBytes(),
		reservedCPU:  ni.GetReserved().GetNanoCpus(),
		reservedMem:  ni.GetReserved().GetMemoryBytes(),
		serviceTasks: ni.GetServiceTasks(),
	}
	for _, c := range n.serviceTasks {
		n.tasks += uint64(c)
	}
	return n
}

// roleName is a role as constraints name it.
func roleName(r objectv1.NodeRole) string {
	switch r {
	case objectv1.NodeRole_NODE_ROLE_WORKER:
		return "worker"
	case objectv1.NodeRole_NODE_ROLE_MANAGER:
		return "manager"
	}
	return ""
}

// view is the scheduler's copy of the eligible nodes, as of version.
type view struct {
	// held is whether the view holds anything at all: a fresh plugin holds
	// no version, not even 0.
	held    bool
	version uint64
	// nodes are sorted by ID: their index is the final tie-breaker, so
	// that decisions do not depend on the order nodes arrived in.
	nodes []*node
	index map[string]int
}

// check returns an error of kind sdk.ErrFailedPrecondition when req's
// changes do not apply to the view held.
func (v *view) check(req *schedulerv1.ScheduleRequest) error {
	base := req.GetViewBase()
	switch {
	case base == 0:
		return nil
	case !v.held:
		return fmt.Errorf("the request changes view %d, but the scheduler holds no view (it restarted): %w", base, sdk.ErrFailedPrecondition)
	case base != v.version:
		return fmt.Errorf("the request changes view %d, but the scheduler holds view %d: %w", base, v.version, sdk.ErrFailedPrecondition)
	}
	return nil
}

// apply applies req's node changes, which check and validate accepted.
// Removals come after upserts: a node both upserted and removed leaves the
// view, the safe reading of a contradictory request. Removing a node the
// view does not hold is not an error: the kernel may not know whether an
// earlier request reached the plugin.
func (v *view) apply(req *schedulerv1.ScheduleRequest) {
	if req.GetViewBase() == 0 {
		v.nodes, v.index = v.nodes[:0], make(map[string]int, len(req.GetUpsertNodes()))
	}
	resort := false
	for _, ni := range req.GetUpsertNodes() {
		n := newNode(ni)
		if i, ok := v.index[n.id]; ok {
			v.nodes[i] = n
			continue
		}
		v.index[n.id] = len(v.nodes)
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
		v.nodes = slices.DeleteFunc(v.nodes, func(n *node) bool { return n == nil })
		slices.SortFunc(v.nodes, func(a, b *node) int { return cmp.Compare(a.id, b.id) })
		clear(v.index)
		for i, n := range v.nodes {
			v.index[n.id] = i
		}
	}
	v.held, v.version = true, req.GetViewVersion()
}

// validate checks what the scheduler relies on in a request: IDs present
// and unique, no negative resources. The kernel never sends such a request;
// one that does is refused whole (InvalidArgument, naming the fields)
// rather than guessed at, and the view stays as it was. Field names are
// made only for errors: validation runs on every node and task of every
// batch.
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
