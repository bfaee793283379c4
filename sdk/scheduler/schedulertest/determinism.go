package schedulertest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// checkDeterministic: two fresh instances given the same requests give the
// same responses. The workload has many equal nodes, so a scheduler that
// breaks ties by map iteration order or time is caught.
func checkDeterministic(t *testing.T, h *harness) {
	var got [2][]*schedulerv1.ScheduleResponse
	for i := range got {
		s := h.open(t)
		w := newWorkload()
		c := newCluster(w.nodes...)
		for b, tasks := range w.batches {
			var req *schedulerv1.ScheduleRequest
			if b == 0 {
				req = c.full(tasks)
			} else {
				w.change(c, b)
				req = c.delta(tasks)
			}
			got[i] = append(got[i], schedule(t, s, c, req, fmt.Sprintf("instance %d, batch %d", i+1, b+1)))
		}
	}
	for b := range got[0] {
		a, z := got[0][b], got[1][b]
		if proto.Equal(a, z) {
			continue
		}
		t.Errorf("batch %d: two fresh instances given the same requests differ, want identical responses "+
			"(break ties by something in the request, such as node ID, never by map order, time or randomness): %s",
			b+1, firstDifference(a, z))
	}
}

// firstDifference describes where two responses first differ.
func firstDifference(a, z *schedulerv1.ScheduleResponse) string {
	da, dz := a.GetDecisions(), z.GetDecisions()
	for i := range min(len(da), len(dz)) {
		if !proto.Equal(da[i], dz[i]) {
			return fmt.Sprintf("decisions[%d]: instance 1 has task %s %s, instance 2 has task %s %s",
				i, da[i].GetTaskId(), decisionString(da[i]), dz[i].GetTaskId(), decisionString(dz[i]))
		}
	}
	return fmt.Sprintf("instance 1 has %d decisions, instance 2 has %d", len(da), len(dz))
}

// workload is a few batches over a varied view: services with and without
// constraints, preferences, caps and reservations; view changes between
// batches.
type workload struct {
	nodes   []*schedulerv1.NodeInfo
	batches [][]*schedulerv1.TaskInfo
}

// newWorkload returns the same workload every time (a fixed seed).
func newWorkload() *workload {
	r := rand.New(rand.NewPCG(20, 24))
	w := &workload{}
	for i := range 40 {
		n := newNode(fmt.Sprintf("v%02d", i), 4+r.Int64N(13), (8+r.Int64N(57))*gib)
		n.Labels = map[string]string{"zone": []string{"a", "b"}[r.IntN(2)]}
		if r.IntN(5) > 0 {
			n.Labels["rack"] = fmt.Sprintf("r%d", r.IntN(6))
		}
		if r.IntN(4) == 0 {
			n.Role = objectv1.NodeRole_NODE_ROLE_MANAGER
		}
		if r.IntN(5) == 0 {
			n.Platform = "linux/arm64"
		}
		n.Reserved = &objectv1.Resources{NanoCpus: r.Int64N(3) * cpu, MemoryBytes: r.Int64N(4) * gib}
		n.ServiceTasks = map[string]uint32{"s0": uint32(r.IntN(3)), "s3": uint32(r.IntN(2))}
		w.nodes = append(w.nodes, n)
	}
	// Equal nodes: only a tie-breaker tells them apart.
	for i := range 20 {
		w.nodes = append(w.nodes, newNode(fmt.Sprintf("e%02d", i), 8, 32*gib, "zone", "a", "rack", "r9"))
	}
	placements := []*objectv1.Placement{
		nil,
		{Constraints: []string{"node.labels.zone==a"}, Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}}},
		{MaxReplicasPerNode: 2},
		{Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"}}},
		{Constraints: []string{"node.role!=manager", "node.platform.arch==amd64"}},
	}
	for b := range 3 {
		var tasks []*schedulerv1.TaskInfo
		for i := range 150 {
			svc := r.IntN(len(placements))
			t := &schedulerv1.TaskInfo{
				Id:        fmt.Sprintf("b%d-t%03d", b, i),
				ServiceId: fmt.Sprintf("s%d", svc),
				Placement: placements[svc],
			}
			if svc >= 2 {
				t.Reservations = &objectv1.Resources{NanoCpus: cpu / 4 * (1 + r.Int64N(4)), MemoryBytes: 256 * mib * (1 + r.Int64N(8))}
			}
			tasks = append(tasks, t)
		}
		w.batches = append(w.batches, tasks)
	}
	return w
}

// change alters the view before batch b (b ≥ 1), the same way every time.
func (w *workload) change(c *cluster, b int) {
	switch b {
	case 1:
		c.remove("v03", "v17", "e05")
		n := proto.CloneOf(c.node("v08"))
		n.Labels["rack"] = "r9"
		c.set(n)
		c.set(newNode("w00", 16, 64*gib, "zone", "b", "rack", "r1"))
	case 2:
		c.remove("e11", "w00")
		c.set(newNode("v03", 8, 16*gib, "zone", "a"))
	}
}
