package main

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// referenceDecide decides tasks the slow, obvious way, ranking every node
// for every task. It is the policy of doc.go written plainly: the heaps,
// trees and lazy removals of batch must give exactly its answers.
func referenceDecide(nodes []*schedulerv1.NodeInfo, cfg Config, tasks []*schedulerv1.TaskInfo) []string {
	b := newBatch(nodes, cfg) // only for its per-node state and loadOf
	counts := make(map[string][]uint32)
	count := func(svc string) []uint32 {
		if counts[svc] == nil {
			counts[svc] = make([]uint32, len(nodes))
			for i, n := range nodes {
				counts[svc][i] = n.GetServiceTasks()[svc]
			}
		}
		return counts[svc]
	}
	var out []string
	for _, t := range tasks {
		p, svc := t.GetPlacement(), t.GetServiceId()
		cpu, mem := t.GetReservations().GetNanoCpus(), t.GetReservations().GetMemoryBytes()
		sc := count(svc)
		var eligible []int
		ok := true
		var cs []scheduler.Constraint
		for _, e := range p.GetConstraints() {
			c, err := scheduler.ParseConstraint(e)
			if err != nil {
				ok = false
			}
			cs = append(cs, c)
		}
		var prefs []scheduler.Attribute
		for _, pref := range p.GetPreferences() {
			a, err := scheduler.ParseAttribute(pref.GetSpread())
			if err != nil {
				ok = false
			}
			prefs = append(prefs, a)
		}
		for i, n := range nodes {
			if ok && !slices.ContainsFunc(cs, func(c scheduler.Constraint) bool { return !c.Match(n) }) {
				eligible = append(eligible, i)
			}
		}
		fits := func(i int) bool {
			return (p.GetMaxReplicasPerNode() == 0 || uint64(sc[i]) < p.GetMaxReplicasPerNode()) &&
				(cpu == 0 || b.freeCPU[i] >= cpu) && (mem == 0 || b.freeMem[i] >= mem)
		}
		candidates := slices.DeleteFunc(slices.Clone(eligible), func(i int) bool { return !fits(i) })
		// Descend the preferences: among the candidates' values, the one
		// whose eligible nodes (with the same values above) run fewest
		// tasks of the service, ties by value.
		prefix := func(i, levels int) []string {
			var vs []string
			for _, a := range prefs[:levels] {
				v, _ := a.Value(nodes[i])
				vs = append(vs, v)
			}
			return vs
		}
		for level := range prefs {
			if len(candidates) == 0 {
				break
			}
			above := prefix(candidates[0], level)
			groupCount := make(map[string]uint64)
			for _, i := range eligible {
				if slices.Equal(prefix(i, level), above) {
					v, _ := prefs[level].Value(nodes[i])
					groupCount[v] += uint64(sc[i])
				}
			}
			best := ""
			for k, i := range candidates {
				v, _ := prefs[level].Value(nodes[i])
				if k == 0 || groupCount[v] < groupCount[best] || groupCount[v] == groupCount[best] && v < best {
					best = v
				}
			}
			candidates = slices.DeleteFunc(candidates, func(i int) bool { v, _ := prefs[level].Value(nodes[i]); return v != best })
		}
		if len(candidates) == 0 {
			out = append(out, "")
			continue
		}
		n := slices.MinFunc(candidates, func(x, y int) int {
			if cfg.SpreadOverHosts && sc[x] != sc[y] {
				return cmp.Compare(sc[x], sc[y])
			}
			return cmp.Or(cmp.Compare(b.tasks[x], b.tasks[y]), cmp.Compare(b.load[x], b.load[y]), cmp.Compare(x, y))
		})
		out = append(out, nodes[n].GetId())
		b.freeCPU[n] -= cpu
		b.freeMem[n] -= mem
		b.tasks[n]++
		b.load[n] = b.loadOf(int32(n))
		sc[n]++
	}
	return out
}

// TestMatchesReference checks the batch against referenceDecide on random
// clusters and batches mixing services, constraints, preferences, caps and
// reservations.
func TestMatchesReference(t *testing.T) {
	placements := []*objectv1.Placement{
		nil,
		{Constraints: []string{"node.labels.zone==a"}},
		{Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}}},
		{Constraints: []string{"node.role!=manager"}, Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"}}},
		{MaxReplicasPerNode: 3},
		{Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}}, MaxReplicasPerNode: 2},
		{Constraints: []string{"node.labels.rack!=r1", "node.platform.arch==amd64"}, Preferences: []*objectv1.PlacementPreference{{Spread: "node.hostname"}}},
	}
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 7))
		var nodes []*schedulerv1.NodeInfo
		for i := range 10 + r.IntN(40) {
			ni := &schedulerv1.NodeInfo{
				Id:           fmt.Sprintf("n%02d", i),
				Hostname:     fmt.Sprintf("h%d", r.IntN(8)),
				Role:         objectv1.NodeRole(1 + r.IntN(2)),
				Platform:     []string{"linux/amd64", "linux/arm64"}[r.IntN(2)],
				Labels:       map[string]string{"zone": []string{"a", "b"}[r.IntN(2)]},
				Total:        &objectv1.Resources{NanoCpus: r.Int64N(5) * 1e9, MemoryBytes: r.Int64N(9) * gib},
				Reserved:     &objectv1.Resources{NanoCpus: r.Int64N(2) * 1e9, MemoryBytes: r.Int64N(3) * gib},
				ServiceTasks: map[string]uint32{},
			}
			if r.IntN(6) > 0 {
				ni.Labels["rack"] = fmt.Sprintf("r%d", r.IntN(5))
			}
			for s := range 4 {
				if c := r.IntN(4); c > 0 {
					ni.ServiceTasks[fmt.Sprintf("s%d", s)] = uint32(c)
				}
			}
			nodes = append(nodes, ni)
		}
		var tasks []*schedulerv1.TaskInfo
		for i := range 300 {
			tasks = append(tasks, &schedulerv1.TaskInfo{
				Id:        fmt.Sprintf("t%d", i),
				ServiceId: fmt.Sprintf("s%d", r.IntN(4)),
				Placement: placements[r.IntN(len(placements))],
				Reservations: &objectv1.Resources{
					NanoCpus:    []int64{0, 5e8, 1e9}[r.IntN(3)],
					MemoryBytes: []int64{0, gib / 2, gib}[r.IntN(3)],
				},
			})
		}
		for _, cfg := range []Config{{SpreadOverHosts: true}, {SpreadOverHosts: false}} {
			want := referenceDecide(nodes, cfg, tasks)
			decisions, err := newBatch(nodes, cfg).decide(t.Context(), tasks)
			if err != nil {
				t.Fatalf("seed %d: decide = %v", seed, err)
			}
			for i, d := range decisions {
				if d.GetNodeId() != want[i] {
					t.Fatalf("seed %d, %+v: task %d (%s, placement %v, reservations %v) placed on %q, reference %q",
						seed, cfg, i, tasks[i].GetServiceId(), tasks[i].GetPlacement(), tasks[i].GetReservations(), d.GetNodeId(), want[i])
				}
				if d.GetNodeId() == "" && d.GetRefusal() == "" {
					t.Fatalf("seed %d: task %d refused without a reason", seed, i)
				}
			}
		}
	}
}
