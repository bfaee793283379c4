package orchestrator

import (
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// reconcileReplicated keeps one task of a replicated service in each slot,
// 1 to its replica count (slot.go): higher slots are scaled away, and the
// tasks of drained nodes are replaced elsewhere.
func reconcileReplicated(tx *state.Tx, svc *objectv1.Service, tasks []*objectv1.Task, now time.Time, stats *passStats) error {
	// Validation bounds replicas; a negative count must still never become
	// a huge unsigned one.
	want := uint64(max(svc.GetSpec().GetReplicated().GetReplicas(), 0))
	inRange := func(t *objectv1.Task) bool {
		return t.GetSlot() >= 1 && t.GetSlot() <= want
	}
	return keepSlots(tx, svc, tasks, now, stats, slotRules[uint64]{
		key: (*objectv1.Task).GetSlot,
		drop: func(t *objectv1.Task) bool {
			return onDrainedNode(tx.ReadTx, t, stats) || !inRange(t)
		},
		holds:   inRange,
		accepts: func(uint64) bool { return true },
		at:      func(slot uint64) (uint64, string) { return slot, "" },
		free: func(live map[uint64]bool) []uint64 {
			var free []uint64
			for slot := uint64(1); slot <= want; slot++ {
				if !live[slot] {
					free = append(free, slot)
				}
			}
			return free
		},
	})
}
