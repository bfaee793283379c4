package orchestrator

import (
	"fmt"
	"sort"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// defaultHistory is the number of retired tasks kept per slot when the
// cluster sets none (the cluster default, 5).
const defaultHistory = 5

// pruneHistory deletes the oldest retired tasks of each slot (each node, for
// global services) beyond the cluster's task_history_retention, so that
// restarts and updates do not grow the state without end.
func pruneHistory(tx *state.Tx, svc *objectv1.Service, stats *passStats) error {
	keep := defaultHistory
	if o := tx.Cluster().GetSpec().GetOrchestration(); o != nil {
		keep = int(max(o.GetTaskHistoryRetention(), 0))
	}
	bySlot := map[string][]*objectv1.Task{}
	for _, t := range tx.TasksByService(svc.Id) {
		if !retired(t) {
			continue
		}
		key := fmt.Sprint(t.GetSlot())
		if isGlobal(svc) {
			key = t.GetNodeId()
		}
		bySlot[key] = append(bySlot[key], t)
	}
	for _, hist := range bySlot {
		if len(hist) <= keep {
			continue
		}
		sort.Slice(hist, func(i, j int) bool {
			a, b := hist[i].GetMeta().GetCreatedAt().AsTime(), hist[j].GetMeta().GetCreatedAt().AsTime()
			if !a.Equal(b) {
				return a.After(b)
			}
			return hist[i].Id > hist[j].Id
		})
		for _, t := range hist[keep:] {
			stats.removed++
			if err := tx.DeleteTask(t.Id); err != nil {
				return err
			}
		}
	}
	return nil
}
