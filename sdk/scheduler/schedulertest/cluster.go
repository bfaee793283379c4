package schedulertest

import (
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// versionStep is how far the kit moves the view version per request. Not 1,
// so that a scheduler that counts requests instead of reading view_version
// is caught.
const versionStep = 7

// cluster is the kit's stand-in for the kernel's placement stage. It holds
// the node view as the kernel last described it to the scheduler, the
// version of that view, and the changes not sent yet. Like the kernel, it
// commits placements into the nodes (reserved and service_tasks grow) and
// sends the nodes that changed with the next request.
type cluster struct {
	// version is the version of the view last sent; 0 before the first.
	version uint64
	nodes   map[string]*schedulerv1.NodeInfo
	// dirty are the nodes changed since the last request; removed the nodes
	// that left the view since then.
	dirty   map[string]bool
	removed []string
}

func newCluster(nodes ...*schedulerv1.NodeInfo) *cluster {
	c := &cluster{nodes: make(map[string]*schedulerv1.NodeInfo), dirty: make(map[string]bool)}
	for _, n := range nodes {
		c.set(n)
	}
	return c
}

// set adds or replaces a node; the next delta carries it.
func (c *cluster) set(n *schedulerv1.NodeInfo) {
	c.nodes[n.GetId()] = n
	c.dirty[n.GetId()] = true
	c.removed = slices.DeleteFunc(c.removed, func(id string) bool { return id == n.GetId() })
}

// remove takes nodes out of the view; the next delta carries the removals.
func (c *cluster) remove(ids ...string) {
	for _, id := range ids {
		if _, ok := c.nodes[id]; !ok {
			continue
		}
		delete(c.nodes, id)
		delete(c.dirty, id)
		c.removed = append(c.removed, id)
	}
}

// node returns the node as the kernel knows it, or nil.
func (c *cluster) node(id string) *schedulerv1.NodeInfo { return c.nodes[id] }

// ids returns the IDs of the view, sorted.
func (c *cluster) ids() []string { return slices.Sorted(maps.Keys(c.nodes)) }

// full returns a request carrying the whole view (view_base 0).
func (c *cluster) full(tasks []*schedulerv1.TaskInfo) *schedulerv1.ScheduleRequest {
	req := &schedulerv1.ScheduleRequest{
		ViewBase:    0,
		ViewVersion: c.version + versionStep,
		Tasks:       tasks,
	}
	for _, id := range c.ids() {
		req.UpsertNodes = append(req.UpsertNodes, proto.CloneOf(c.nodes[id]))
	}
	c.sent(req)
	return req
}

// delta returns a request carrying the changes since the last request.
func (c *cluster) delta(tasks []*schedulerv1.TaskInfo) *schedulerv1.ScheduleRequest {
	req := &schedulerv1.ScheduleRequest{
		ViewBase:     c.version,
		ViewVersion:  c.version + versionStep,
		RemovedNodes: slices.Clone(c.removed),
		Tasks:        tasks,
	}
	for _, id := range slices.Sorted(maps.Keys(c.dirty)) {
		req.UpsertNodes = append(req.UpsertNodes, proto.CloneOf(c.nodes[id]))
	}
	c.sent(req)
	return req
}

// sent records that req went out. Nodes are cloned into requests, so that
// an in-process scheduler that keeps them sees no later change by the kit.
func (c *cluster) sent(req *schedulerv1.ScheduleRequest) {
	c.version = req.GetViewVersion()
	clear(c.dirty)
	c.removed = nil
}

// commit applies the placements of resp the way the kernel does once it
// has written them: the nodes' reservations and service task counts grow,
// and the nodes go out again with the next delta. Decisions for unknown
// tasks or nodes are ignored (verify reports them).
func (c *cluster) commit(req *schedulerv1.ScheduleRequest, resp *schedulerv1.ScheduleResponse) {
	tasks := make(map[string]*schedulerv1.TaskInfo, len(req.GetTasks()))
	for _, t := range req.GetTasks() {
		tasks[t.GetId()] = t
	}
	for _, d := range resp.GetDecisions() {
		t, n := tasks[d.GetTaskId()], c.nodes[d.GetNodeId()]
		if t == nil || n == nil {
			continue
		}
		delete(tasks, d.GetTaskId()) // a duplicate decision commits once
		n = proto.CloneOf(n)
		if n.Reserved == nil {
			n.Reserved = &objectv1.Resources{}
		}
		n.Reserved.NanoCpus += t.GetReservations().GetNanoCpus()
		n.Reserved.MemoryBytes += t.GetReservations().GetMemoryBytes()
		if n.ServiceTasks == nil {
			n.ServiceTasks = make(map[string]uint32)
		}
		n.ServiceTasks[t.GetServiceId()]++
		c.set(n)
	}
}
