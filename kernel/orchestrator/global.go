package orchestrator

import (
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// reconcileGlobal keeps one task of a global service on every eligible
// node, the way reconcileReplicated keeps one per slot (slot.go). A node
// that is up keeps its task unless drained; only an active one gets a new
// task (eligibleNodes).
func reconcileGlobal(tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats) error {
	keeps, accepts := eligibleNodes(tx.ReadTx)
	keeping := func(t *objectv1.Task) bool { return keeps[t.GetNodeId()] }
	return keepSlots(tx, svc, tasks, now, stats, slotRules[string]{
		key:     (*objectv1.Task).GetNodeId,
		drop:    func(t *objectv1.Task) bool { return !keeping(t) },
		holds:   keeping,
		accepts: func(id string) bool { return accepts[id] },
		at:      func(id string) (uint64, string) { return 0, id },
		free: func(live map[string]bool) []string {
			return uncovered(accepts, func(id string) bool { return live[id] })
		},
	})
}
