// Package placement is the kernel's side of scheduling, a leader-only
// stage. It collects tasks waiting for a node, hands them in batches to the
// scheduler plugin together with the changes to the eligible nodes' view
// since the plugin's last call, validates the plugin's decisions and commits
// them in batched writes. A refusal is shown to the user as the task's
// status message ("no suitable node: ...").
//
// The plugin is an out-of-process program that may crash at any time: a
// batch whose call fails is retried once the plugin is back, with the whole
// view, and a decision is only committed for a task still waiting
// unplaced, so each task is placed exactly once.
package placement

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

const (
	// batchSize is the most tasks handed to the plugin at once: big enough
	// that a 10,000-replica service is ten calls, small enough that one
	// reply (and one Raft entry of placements) stays around a megabyte.
	batchSize = 1000
	// settle is how long pending tasks are gathered after the first one
	// arrives, so a burst becomes full batches.
	settle = 20 * time.Millisecond
	// retryRefused is how often tasks no node fits are offered again even
	// without a change of the nodes (a plugin may weigh things the kernel
	// does not watch).
	retryRefused = 5 * time.Second
	// viewRefresh is how often the plugin's copy of the node view is
	// brought up to date while nothing waits for placement, so that the
	// first batch of a burst carries the few latest node changes rather
	// than the whole view (10,000 nodes took a fifth of a second to
	// compute and send under load).
	viewRefresh = time.Second
	// refreshTimeout bounds a view-only request.
	refreshTimeout = 5 * time.Second
	// NoSuitableNode prefixes the status message of a refused task.
	NoSuitableNode = "no suitable node: "
	// AssignedMessage is the status message of a placed task.
	AssignedMessage = "assigned"
)

// Raft commits transactions; raftstore.Node implements it.
type Raft interface {
	Update(ctx context.Context, fn func(tx *state.Tx) error) error
}

// Plugin returns the scheduler, waiting while its process (re)starts;
// pluginhost.Host implements it.
type Plugin interface {
	Get(ctx context.Context) (scheduler.Scheduler, error)
}

// Placer is the placement stage.
type Placer struct {
	raft   Raft
	st     *state.Store
	plugin Plugin
	log    *slog.Logger

	// The plugin's copy of the node view, as last sent, and the nodes
	// whose entry may have changed since (a node event, or a task placed on
	// or leaving it): only those are recomputed for the next request.
	sent        map[string]*schedulerv1.NodeInfo
	viewVersion uint64
	viewValid   bool
	dirty       map[string]bool
	// born holds the creation time (createdNs) of every task waiting for
	// placement that the stage knows of, to order the queue without
	// reading it back from the store (run's goroutine only).
	born map[string]int64
	// inflight are the batches whose commit is under way (run's goroutine
	// only).
	inflight map[*batch]bool
}

// New returns a placement stage.
func New(r Raft, st *state.Store, p Plugin, logger *slog.Logger) *Placer {
	return &Placer{raft: r, st: st, plugin: p, log: logger}
}

const deleteKind = raftv1.ActionKind_ACTION_KIND_DELETE

// createdNs is when t was created, in ns since the epoch: the order in which
// waiting tasks are offered.
func createdNs(t *objectv1.Task) int64 {
	at := t.GetMeta().GetCreatedAt()
	return at.GetSeconds()*1e9 + int64(at.GetNanos())
}

// waiting reports whether t waits for placement by the plugin.
func waiting(t *objectv1.Task) bool {
	return t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_PENDING
}

// eligible reports whether n may be given tasks.
func eligible(n *objectv1.Node) bool {
	return n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY &&
		n.GetSpec().GetAvailability() == objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE &&
		n.GetDescription().GetExecutor() != ""
}

// Run places tasks until ctx ends.
func (p *Placer) Run(ctx context.Context) error {
	for {
		err := p.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		// The watch closed (this stage fell behind, or the store was
		// restored from a snapshot): start over from the store, in place,
		// as only this stage's picture is stale.
		p.log.Warn("state watch closed (fell behind, or the state was restored); starting over from the store")
	}
}

func (p *Placer) run(ctx context.Context) error {
	queue := map[string]bool{}    // tasks to offer
	refused := map[string]bool{}  // tasks no node fits, until nodes change
	deciding := map[string]bool{} // tasks whose decision is being committed
	p.born = map[string]int64{}
	events, cancel := p.st.ViewAndWatch(func(tx *state.ReadTx) {
		for _, t := range tx.TasksByState(objectv1.TaskState_TASK_STATE_PENDING) {
			if waiting(t) {
				queue[t.Id] = true
				p.born[t.Id] = createdNs(t)
			}
		}
	})
	defer cancel()
	p.viewValid = false
	p.inflight = map[*batch]bool{}

	// Commits run beside the next batch's scheduling: a batch's decisions
	// count in the node view (inflight) until its commit is applied, so
	// the plugin never sees capacity that is already promised.
	type result struct {
		b        *batch
		done, no []string
		err      error
	}
	results := make(chan result, maxCommits)
	var wg sync.WaitGroup
	defer wg.Wait()
	finish := func(r result) {
		delete(p.inflight, r.b)
		for _, d := range r.b.decisions {
			delete(deciding, d.GetTaskId())
			if d.GetNodeId() != "" {
				p.markDirty(d.GetNodeId())
			}
		}
		if r.err != nil {
			if ctx.Err() == nil {
				p.log.Warn("committing placements; offering the tasks again", "tasks", len(r.b.decisions), "error", r.err)
			}
			for _, d := range r.b.decisions {
				queue[d.GetTaskId()] = true
			}
			return
		}
		for _, id := range r.no {
			refused[id] = true
		}
	}

	retry := time.NewTicker(retryRefused)
	defer retry.Stop()
	refresh := time.NewTicker(viewRefresh)
	defer refresh.Stop()
	backoff := 100 * time.Millisecond
	for {
		if len(queue) > 0 && len(queue) < batchSize && len(p.inflight) < maxCommits {
			// Whatever has arrived joins this batch: a commit finishing
			// mid-burst must not send the plugin a batch of the few
			// events read so far.
		drain:
			for len(queue) < batchSize {
				select {
				case ev, ok := <-events:
					if !ok {
						return nil
					}
					p.mark(ev, queue, refused, deciding)
				default:
					break drain
				}
			}
		}
		if len(queue) > 0 && len(p.inflight) < maxCommits {
			ids := make([]string, 0, len(queue))
			for id := range queue {
				ids = append(ids, id)
			}
			// Oldest first, so a backlog drains in creation order; this
			// runs outside the store's lock, which the Raft applies take.
			slices.SortFunc(ids, func(a, b string) int {
				if c := cmp.Compare(p.born[a], p.born[b]); c != 0 {
					return c
				}
				return strings.Compare(a, b)
			})
			b, gone, err := p.decide(ctx, ids)
			switch {
			case err == nil:
				backoff = 100 * time.Millisecond
				for _, id := range gone {
					delete(queue, id)
				}
				for _, d := range b.decisions {
					delete(queue, d.GetTaskId())
					deciding[d.GetTaskId()] = true
					// The next request carries these nodes with this
					// batch's placements counted (see viewChanges).
					if d.GetNodeId() != "" {
						p.markDirty(d.GetNodeId())
					}
				}
				if len(b.decisions) > 0 {
					bp := &b
					p.inflight[bp] = true
					wg.Add(1)
					go func() {
						defer wg.Done()
						done, no, err := p.commit(ctx, bp.decisions)
						results <- result{b: bp, done: done, no: no, err: err}
					}()
				}
			case errors.Is(err, sdk.ErrFailedPrecondition) && p.viewValid:
				// The plugin lost its copy of the view (it restarted):
				// send the whole view at once.
				p.viewValid = false
				continue
			case errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, sdk.ErrFailedPrecondition) || errors.Is(err, context.DeadlineExceeded):
				// The plugin is restarting or lost its view: resend it
				// whole once it is back.
				p.viewValid = false
				p.log.Warn("scheduler unavailable; retrying", "tasks", len(queue), "error", err, "backoff", backoff)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			default:
				return err
			}
			if len(queue) > 0 && len(p.inflight) < maxCommits {
				continue // the rest of a big backlog, at once
			}
		}
		// Wait for work (an event, a commit done, the retry tick), then
		// gather the burst it starts.
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			finish(r)
			continue
		case <-retry.C:
			for id := range refused {
				queue[id] = true
			}
			clear(refused)
			continue
		case <-refresh.C:
			if len(queue) == 0 && len(p.inflight) == 0 && (!p.viewValid || len(p.dirty) > 0) {
				p.refreshView(ctx)
			}
			continue
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			p.mark(ev, queue, refused, deciding)
		}
		timer := time.NewTimer(settle)
	gather:
		for len(queue) < batchSize {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case r := <-results:
				finish(r)
			case ev, ok := <-events:
				if !ok {
					timer.Stop()
					return nil
				}
				p.mark(ev, queue, refused, deciding)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
	}
}

// refreshView sends the plugin the node view's changes in a request with
// no tasks. On failure the next request sends the whole view.
func (p *Placer) refreshView(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	client, err := p.plugin.Get(ctx)
	if err != nil {
		p.viewValid = false
		return
	}
	req := &schedulerv1.ScheduleRequest{}
	p.st.View(func(tx *state.ReadTx) { p.viewChanges(tx, req) })
	resp, err := client.Schedule(ctx, req)
	if err != nil {
		p.viewValid = false
		if ctx.Err() == nil {
			p.log.Debug("refreshing the scheduler's node view", "error", err)
		}
		return
	}
	if err := validate(req, resp, p.sent); err != nil {
		p.log.Error("scheduler plugin reply refused", "error", err)
	}
	p.viewValid = true
}

// maxCommits bounds the batches whose commit is under way while the next
// is scheduled: enough to hide a commit's latency behind the plugin's
// work, few enough that a failed commit sends back little.
const maxCommits = 4

func (p *Placer) markDirty(nodeID string) {
	if p.dirty == nil {
		p.dirty = map[string]bool{}
	}
	p.dirty[nodeID] = true
}

func (p *Placer) mark(ev state.Event, queue, refused, deciding map[string]bool) {
	if p.dirty == nil {
		p.dirty = map[string]bool{}
	}
	if p.born == nil {
		p.born = map[string]int64{}
	}
	switch {
	case ev.Task != nil:
		// Most task changes are status reports that leave the task's
		// weight on its node as it was: only a change of that weight makes
		// the node's entry of the view worth recomputing.
		before, after := ev.OldTask, ev.Task
		switch ev.Kind {
		case deleteKind:
			if before == nil {
				before = ev.Task
			}
			after = nil
		case raftv1.ActionKind_ACTION_KIND_CREATE:
			before = nil
		}
		if !sameWeight(before, after) {
			if n := before.GetNodeId(); n != "" {
				p.dirty[n] = true
			}
			if n := after.GetNodeId(); n != "" {
				p.dirty[n] = true
			}
		}
	case ev.Node != nil:
		p.dirty[ev.Node.Id] = true
	}
	switch {
	case ev.Task != nil:
		id := ev.Task.Id
		if ev.Kind != deleteKind && waiting(ev.Task) {
			p.born[id] = createdNs(ev.Task)
			if !refused[id] && !deciding[id] {
				queue[id] = true
			}
			return
		}
		delete(queue, id)
		delete(refused, id)
		delete(p.born, id)
	case ev.Node != nil:
		// Nodes changed: what did not fit may fit now.
		for id := range refused {
			queue[id] = true
		}
		clear(refused)
	}
}

// place offers up to batchSize of ids to the scheduler and commits its
// decisions. It returns the tasks placed and refused (including those no
// longer waiting, as placed).
// batch is one set of decisions on its way to be committed.
type batch struct {
	decisions []*schedulerv1.Decision
	// placing are the decisions that put a task on a node, with what the
	// task weighs there: the node view sent to the plugin counts them
	// until the commit is applied (see viewChanges).
	placing []placing
}

// placing is one task on its way to a node.
type placing struct {
	nodeID string
	task   *schedulerv1.TaskInfo
}

// decide offers up to batchSize of ids to the scheduler. It returns the
// decisions, and the ids no longer waiting (gone, or placed meanwhile).
func (p *Placer) decide(ctx context.Context, ids []string) (b batch, placed []string, err error) {
	client, err := p.plugin.Get(ctx)
	if err != nil {
		return b, nil, err
	}
	// A restarted plugin holds no view: it answers FailedPrecondition to a
	// request that builds on one, and the next request carries the whole
	// view (see run).
	req := &schedulerv1.ScheduleRequest{}
	// ids come oldest first (see run). Only the lookups of one batch and
	// the view's changes hold the store's read lock, which the Raft
	// applies wait for: a backlog of 10,000 tasks is not read whole for
	// every batch of 1,000.
	var global []*objectv1.Task
	p.st.View(func(tx *state.ReadTx) {
		for _, id := range ids {
			if len(req.Tasks) == batchSize {
				break
			}
			t := tx.Task(id)
			if t == nil || !waiting(t) {
				placed = append(placed, id) // gone or handled: drop it
				continue
			}
			if t.GetNodeId() != "" {
				global = append(global, t) // global tasks come with their node
				continue
			}
			req.Tasks = append(req.Tasks, &schedulerv1.TaskInfo{
				Id: t.Id, ServiceId: t.GetServiceId(),
				Placement: t.GetSpec().GetPlacement(), Reservations: t.GetSpec().GetResources().GetReservations(),
			})
		}
		// A request goes out only with tasks: view changes made for none
		// would advance the version past the plugin's copy, and the next
		// request would be refused and sent again with the whole view.
		// Unsent, the changes stay marked for the next request.
		if len(req.Tasks) > 0 {
			p.viewChanges(tx, req)
		}
	})
	var decisions []*schedulerv1.Decision
	for _, t := range global {
		decisions = append(decisions, &schedulerv1.Decision{TaskId: t.Id, NodeId: t.GetNodeId()})
	}
	if len(req.Tasks) > 0 {
		resp, err := client.Schedule(ctx, req)
		if err != nil {
			return b, nil, fmt.Errorf("scheduler plugin: %w", err)
		}
		p.viewValid = true
		if err := validate(req, resp, p.sent); err != nil {
			// A plugin that breaks its contract places nothing of this
			// batch; the tasks say why, and are offered again later.
			p.log.Error("scheduler plugin reply refused", "error", err)
			decisions = decisions[:0:0]
			for _, t := range req.Tasks {
				decisions = append(decisions, &schedulerv1.Decision{TaskId: t.Id, Refusal: "scheduler plugin error: " + err.Error()})
			}
		} else {
			decisions = append(decisions, resp.GetDecisions()...)
		}
	}
	b.decisions = decisions
	infos := make(map[string]*schedulerv1.TaskInfo, len(req.Tasks))
	for _, t := range req.Tasks {
		infos[t.GetId()] = t
	}
	for _, d := range decisions {
		// A global task is counted on its node from its creation (see
		// counted): only the plugin's placements are added.
		if t, n := infos[d.GetTaskId()], d.GetNodeId(); t != nil && n != "" {
			b.placing = append(b.placing, placing{nodeID: n, task: t})
		}
	}
	return b, placed, nil
}

// commit writes a batch's decisions, for the tasks still waiting. It
// returns the tasks done with (placed, or no longer waiting) and refused.
func (p *Placer) commit(ctx context.Context, decisions []*schedulerv1.Decision) (done, no []string, err error) {
	if len(decisions) == 0 {
		return nil, nil, nil
	}

	err = p.raft.Update(ctx, func(tx *state.Tx) error {
		done, no = done[:0], no[:0]
		now := timestamppb.New(tx.Now())
		for _, d := range decisions {
			t := tx.Task(d.GetTaskId())
			if t == nil || !waiting(t) || (t.GetNodeId() != "" && t.GetNodeId() != d.GetNodeId()) {
				done = append(done, d.GetTaskId())
				continue // placed meanwhile (once is enough) or gone
			}
			next := shallowCopy(t)
			if d.GetNodeId() != "" {
				n := tx.Node(d.GetNodeId())
				if n == nil || !eligible(n) {
					no = append(no, d.GetTaskId())
					continue // the node left since the view was sent
				}
				next.NodeId = d.GetNodeId()
				next.Status = &objectv1.TaskStatus{Timestamp: now, State: objectv1.TaskState_TASK_STATE_ASSIGNED, Message: AssignedMessage}
				done = append(done, d.GetTaskId())
			} else {
				msg := d.GetRefusal()
				if !strings.HasPrefix(msg, NoSuitableNode) {
					msg = NoSuitableNode + msg
				}
				no = append(no, d.GetTaskId())
				if t.GetStatus().GetMessage() == msg {
					continue
				}
				next.Status = proto.Clone(t.GetStatus()).(*objectv1.TaskStatus)
				next.Status.Message = msg
				next.Status.Timestamp = now
			}
			if err := tx.UpdateTask(next); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("commit placements: %w", err)
	}
	return done, no, nil
}

// shallowCopy returns a new Task holding t's fields, sharing its
// sub-messages. A commit writes 1,000 tasks back with only their node and
// status changed while holding the store's read lock, which the Raft
// applies wait for; proto.Clone copied each whole (spec, annotations,
// networks) by reflection. Sharing is sound because stored objects are
// never modified and the Tx replaces meta rather than changing it, and
// next.Status is set anew (or cloned) before the write.
// TestShallowCopyCoversFields fails when Task gains a field this misses.
func shallowCopy(t *objectv1.Task) *objectv1.Task {
	c := &objectv1.Task{
		Id: t.Id, Meta: t.Meta, ServiceId: t.ServiceId, Slot: t.Slot, NodeId: t.NodeId,
		Spec: t.Spec, SpecVersion: t.SpecVersion, ServiceAnnotations: t.ServiceAnnotations,
		DesiredState: t.DesiredState, Status: t.Status, Networks: t.Networks, Endpoint: t.Endpoint,
	}
	if u := t.ProtoReflect().GetUnknown(); len(u) > 0 {
		c.ProtoReflect().SetUnknown(u)
	}
	return c
}

// counted reports whether t counts in its node's entry of the view (its
// reservations and its service's task count; see nodeInfo).
func counted(t *objectv1.Task) bool {
	return t != nil && t.GetNodeId() != "" &&
		t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING &&
		t.GetStatus().GetState() <= objectv1.TaskState_TASK_STATE_RUNNING
}

// sameWeight reports whether tasks a and b (either may be nil) weigh the
// same on the same node in the view.
func sameWeight(a, b *objectv1.Task) bool {
	ca, cb := counted(a), counted(b)
	if !ca || !cb {
		return ca == cb
	}
	ra, rb := a.GetSpec().GetResources().GetReservations(), b.GetSpec().GetResources().GetReservations()
	return a.GetNodeId() == b.GetNodeId() && a.GetServiceId() == b.GetServiceId() &&
		ra.GetNanoCpus() == rb.GetNanoCpus() && ra.GetMemoryBytes() == rb.GetMemoryBytes()
}

// nodeInfo is what the scheduler knows of node n.
func nodeInfo(tx *state.ReadTx, n *objectv1.Node) *schedulerv1.NodeInfo {
	info := &schedulerv1.NodeInfo{
		Id: n.Id, Hostname: n.GetDescription().GetHostname(), Role: n.GetRole(),
		Labels: n.GetSpec().GetAnnotations().GetLabels(), Platform: n.GetDescription().GetPlatform(),
		Total: n.GetDescription().GetResources(), Reserved: &objectv1.Resources{},
	}
	tx.EachTaskOfNode(n.Id, func(t *objectv1.Task) {
		if !counted(t) {
			return
		}
		r := t.GetSpec().GetResources().GetReservations()
		info.Reserved.NanoCpus += r.GetNanoCpus()
		info.Reserved.MemoryBytes += r.GetMemoryBytes()
		if info.ServiceTasks == nil {
			info.ServiceTasks = map[string]uint32{}
		}
		info.ServiceTasks[t.GetServiceId()]++
	})
	return info
}

// viewChanges fills req with the node view changes since the plugin's copy
// (or the whole view) and records what was sent. Only nodes marked dirty
// since the last request are looked at, unless the whole view is sent.
func (p *Placer) viewChanges(tx *state.ReadTx, req *schedulerv1.ScheduleRequest) {
	base := p.viewVersion
	var candidates []string
	if !p.viewValid || p.sent == nil {
		base, p.sent = 0, map[string]*schedulerv1.NodeInfo{}
		for _, n := range tx.Nodes() {
			candidates = append(candidates, n.Id)
		}
	} else {
		for id := range p.dirty {
			candidates = append(candidates, id)
		}
	}
	clear(p.dirty)
	promised := p.promised(tx)
	for _, id := range candidates {
		n := tx.Node(id)
		if n == nil || !eligible(n) {
			if _, ok := p.sent[id]; ok {
				req.RemovedNodes = append(req.RemovedNodes, id)
				delete(p.sent, id)
			}
			continue
		}
		info := nodeInfo(tx, n)
		for _, t := range promised[id] {
			r := t.GetReservations()
			info.Reserved.NanoCpus += r.GetNanoCpus()
			info.Reserved.MemoryBytes += r.GetMemoryBytes()
			if info.ServiceTasks == nil {
				info.ServiceTasks = map[string]uint32{}
			}
			info.ServiceTasks[t.GetServiceId()]++
		}
		if old, ok := p.sent[id]; !ok || !sameInfo(old, info) {
			req.UpsertNodes = append(req.UpsertNodes, info)
			p.sent[id] = info
		}
	}
	sort.Slice(req.UpsertNodes, func(i, j int) bool { return req.UpsertNodes[i].Id < req.UpsertNodes[j].Id })
	sort.Strings(req.RemovedNodes)
	p.viewVersion++
	req.ViewBase, req.ViewVersion = base, p.viewVersion
}

// promised returns, per node, the tasks that batches whose commit is under
// way put there and that still wait in tx: the plugin must see them on their
// node, or it would hand out capacity already promised. A task whose commit
// is already applied is not among them: nodeInfo counts it from the store,
// and counting it twice would show the node fuller than it is (a backlog's
// batches are decided while the earlier ones commit, so this is the common
// case, not a race).
func (p *Placer) promised(tx *state.ReadTx) map[string][]*schedulerv1.TaskInfo {
	var out map[string][]*schedulerv1.TaskInfo
	for b := range p.inflight {
		for _, pl := range b.placing {
			if t := tx.Task(pl.task.GetId()); t == nil || !waiting(t) {
				continue // placed (counted by nodeInfo), or gone
			}
			if out == nil {
				out = map[string][]*schedulerv1.TaskInfo{}
			}
			out[pl.nodeID] = append(out[pl.nodeID], pl.task)
		}
	}
	return out
}

// sameInfo reports whether two entries of the view, as nodeInfo makes them,
// are equal: proto.Equal's reflection took half of the placement loop's
// time with thousands of changed nodes per batch. TestSameInfoCoversFields
// fails when NodeInfo gains a field this does not compare.
func sameInfo(a, b *schedulerv1.NodeInfo) bool {
	return a.GetId() == b.GetId() && a.GetHostname() == b.GetHostname() && a.GetRole() == b.GetRole() &&
		a.GetPlatform() == b.GetPlatform() &&
		maps.Equal(a.GetLabels(), b.GetLabels()) && maps.Equal(a.GetServiceTasks(), b.GetServiceTasks()) &&
		sameResources(a.GetTotal(), b.GetTotal()) && sameResources(a.GetReserved(), b.GetReserved())
}

func sameResources(a, b *objectv1.Resources) bool {
	return (a == nil) == (b == nil) && a.GetNanoCpus() == b.GetNanoCpus() && a.GetMemoryBytes() == b.GetMemoryBytes()
}

// validate checks a plugin reply against its request: one decision per
// task, only nodes of the view, a reason with every refusal.
func validate(req *schedulerv1.ScheduleRequest, resp *schedulerv1.ScheduleResponse, view map[string]*schedulerv1.NodeInfo) error {
	want := make(map[string]bool, len(req.GetTasks()))
	for _, t := range req.GetTasks() {
		want[t.GetId()] = true
	}
	seen := make(map[string]bool, len(want))
	for i, d := range resp.GetDecisions() {
		switch {
		case !want[d.GetTaskId()]:
			return fmt.Errorf("decisions[%d]: task %q was not asked for", i, d.GetTaskId())
		case seen[d.GetTaskId()]:
			return fmt.Errorf("decisions[%d]: task %q decided twice", i, d.GetTaskId())
		case d.GetNodeId() == "" && d.GetRefusal() == "":
			return fmt.Errorf("decisions[%d]: task %q has neither a node nor a refusal reason", i, d.GetTaskId())
		case d.GetNodeId() != "" && view[d.GetNodeId()] == nil:
			return fmt.Errorf("decisions[%d]: node %q is not in the view", i, d.GetNodeId())
		}
		seen[d.GetTaskId()] = true
	}
	if len(seen) != len(want) {
		return fmt.Errorf("%d of %d tasks decided", len(seen), len(want))
	}
	return nil
}
