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
//
// The stage's goroutine runs the batch loop (loop.go), which calls the
// plugin (schedule.go), keeps the plugin's copy of the node view
// (view.go), and starts the commits of the decisions (commit.go), each in
// a goroutine of its own.
package placement

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
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
