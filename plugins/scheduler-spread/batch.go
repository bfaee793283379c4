package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// cancelCheckEvery is how many tasks the scheduler decides between looks
// at ctx: a few microseconds of work, so a cancelled batch stops at once
// without the look costing anything measurable.
const cancelCheckEvery = 256

// batch is the work of one Schedule call: what it has placed on each node
// so far, and the classes of its tasks. Nodes are referred to by their
// index in nodes, which is sorted by ID.
type batch struct {
	cfg   Config
	nodes []*schedulerv1.NodeInfo
	// freeCPU and freeMem are each node's total minus its reservations and
	// the batch's placements (negative when the kernel reports a node
	// over-committed); tasks counts its tasks, the batch's included; load
	// is the larger of its reserved CPU and memory shares.
	freeCPU, freeMem []int64
	tasks            []uint64
	load             []float64
	// services counts a service's tasks on each node, the batch's
	// included; the classes of a service share its counts.
	services map[string][]uint32
	// eligible holds the nodes that meet a list of constraints, computed
	// once per batch per distinct list.
	eligible map[string]*eligibility
	// all lists every node index, the start of every constraint filter.
	all []int32
	// classes are the classes with tasks yet to decide, by key; live are
	// the same classes with a tree, which each placement updates.
	classes map[string]*class
	live    []*class
	// spare are the slots of retired classes, for reuse.
	spare [][]slot
}

// eligibility is the outcome of the constraints of a class.
type eligibility struct {
	nodes []int32
	// refusal says why no node is eligible, when none is.
	refusal string
}

func newBatch(nodes []*schedulerv1.NodeInfo, cfg Config) *batch {
	b := &batch{
		cfg:      cfg,
		nodes:    nodes,
		freeCPU:  make([]int64, len(nodes)),
		freeMem:  make([]int64, len(nodes)),
		tasks:    make([]uint64, len(nodes)),
		load:     make([]float64, len(nodes)),
		services: make(map[string][]uint32),
		eligible: make(map[string]*eligibility),
		all:      make([]int32, len(nodes)),
		classes:  make(map[string]*class),
	}
	for i, n := range nodes {
		b.freeCPU[i] = n.GetTotal().GetNanoCpus() - n.GetReserved().GetNanoCpus()
		b.freeMem[i] = n.GetTotal().GetMemoryBytes() - n.GetReserved().GetMemoryBytes()
		for _, c := range n.GetServiceTasks() {
			b.tasks[i] += uint64(c)
		}
		b.load[i] = b.loadOf(int32(i))
		b.all[i] = int32(i)
	}
	return b
}

// decide returns a decision for each task, in order. Tasks with the same
// service, placement and reservations form a class that shares its
// filtering and ranking work; a placement updates every live class.
func (b *batch) decide(ctx context.Context, tasks []*schedulerv1.TaskInfo) ([]*schedulerv1.Decision, error) {
	keys := make([]string, len(tasks))
	last := make(map[string]int)
	for i, t := range tasks {
		keys[i] = classKey(t)
		last[keys[i]] = i
	}
	decisions := make([]*schedulerv1.Decision, len(tasks))
	for i, t := range tasks {
		if i%cancelCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		c := b.classes[keys[i]]
		if c == nil {
			c = b.newClass(t, last[keys[i]])
			b.classes[keys[i]] = c
		}
		d := &schedulerv1.Decision{TaskId: t.GetId()}
		if n, ok := c.pick(); ok {
			d.NodeId = b.nodes[n].GetId()
			b.place(c, n)
		} else {
			d.Refusal = c.refusal()
		}
		decisions[i] = d
		if c.last == i {
			b.retire(c)
			delete(b.classes, keys[i])
		}
	}
	return decisions, nil
}

// classKey identifies what the decision for t depends on besides the
// nodes: its service, placement and reservations. Strings are length
// prefixed, so that no two different placements share a key.
func classKey(t *schedulerv1.TaskInfo) string {
	p := t.GetPlacement()
	k := make([]byte, 0, 64)
	k = appendString(k, t.GetServiceId())
	k = appendStrings(k, p.GetConstraints())
	k = strconv.AppendInt(k, int64(len(p.GetPreferences())), 10)
	k = append(k, '/')
	for _, pref := range p.GetPreferences() {
		k = appendString(k, pref.GetSpread())
	}
	k = append(k, '/')
	k = strconv.AppendUint(k, p.GetMaxReplicasPerNode(), 10)
	k = append(k, '/')
	k = strconv.AppendInt(k, t.GetReservations().GetNanoCpus(), 10)
	k = append(k, '/')
	k = strconv.AppendInt(k, t.GetReservations().GetMemoryBytes(), 10)
	return string(k)
}

// appendString appends s to a key, length first, so that no two lists of
// strings make the same key whatever bytes they hold.
func appendString(k []byte, s string) []byte {
	k = strconv.AppendInt(k, int64(len(s)), 10)
	k = append(k, ':')
	return append(k, s...)
}

// appendStrings appends a list of strings to a key, count first.
func appendStrings(k []byte, ss []string) []byte {
	k = strconv.AppendInt(k, int64(len(ss)), 10)
	k = append(k, '/')
	for _, s := range ss {
		k = appendString(k, s)
	}
	return k
}

// place records a task of class c on node n and updates every live class
// that ranks n.
func (b *batch) place(c *class, n int32) {
	b.freeCPU[n] -= c.cpu
	b.freeMem[n] -= c.mem
	b.tasks[n]++
	b.load[n] = b.loadOf(n)
	c.count[n]++ // shared by the classes of the service
	for _, lc := range b.live {
		if lc.slots[n].leaf < 0 {
			continue // not eligible for lc
		}
		if lc.service == c.service {
			lc.countTask(n)
		}
		if pos := lc.slots[n].pos; pos >= 0 {
			lc.fix(lc.slots[n].leaf, int(pos))
		}
	}
}

// retire drops a class whose last task is decided.
func (b *batch) retire(c *class) {
	if i := slices.Index(b.live, c); i >= 0 {
		b.live[i] = b.live[len(b.live)-1]
		b.live = b.live[:len(b.live)-1]
		b.spare = append(b.spare, c.slots)
	}
}

// newSlots returns slots for every node, all "not eligible".
func (b *batch) newSlots() []slot {
	var s []slot
	if n := len(b.spare); n > 0 {
		s, b.spare = b.spare[n-1], b.spare[:n-1]
	} else {
		s = make([]slot, len(b.nodes))
	}
	for i := range s {
		s[i] = slot{leaf: -1, pos: -1}
	}
	return s
}

// loadOf is the larger of n's reserved shares of CPU and memory, of the
// resources it reports.
func (b *batch) loadOf(n int32) float64 {
	cpu, mem, load := b.nodes[n].GetTotal().GetNanoCpus(), b.nodes[n].GetTotal().GetMemoryBytes(), 0.0
	if cpu > 0 {
		load = float64(cpu-b.freeCPU[n]) / float64(cpu)
	}
	if mem > 0 {
		load = max(load, float64(mem-b.freeMem[n])/float64(mem))
	}
	return load
}

// serviceCounts returns the per-node task counts of a service.
func (b *batch) serviceCounts(service string) []uint32 {
	if s, ok := b.services[service]; ok {
		return s
	}
	s := make([]uint32, len(b.nodes))
	for i, n := range b.nodes {
		s[i] = n.GetServiceTasks()[service]
	}
	b.services[service] = s
	return s
}

// eligibleFor returns the nodes that meet every constraint of exprs,
// filtering in the order written so that a refusal can name the
// constraint that left no node.
func (b *batch) eligibleFor(exprs []string) *eligibility {
	key := string(appendStrings(nil, exprs))
	if e, ok := b.eligible[key]; ok {
		return e
	}
	e := b.filter(exprs)
	b.eligible[key] = e
	return e
}

func (b *batch) filter(exprs []string) *eligibility {
	if len(b.nodes) == 0 {
		return &eligibility{refusal: "no suitable node: no node is available"}
	}
	cs, err := scheduler.ParseConstraints(exprs)
	if err != nil {
		return &eligibility{refusal: "no suitable node: " + err.Error()}
	}
	nodes := b.all
	for i, c := range cs {
		var met []int32
		for _, n := range nodes {
			if c.Match(b.nodes[n]) {
				met = append(met, n)
			}
		}
		if len(met) == 0 {
			if i == 0 {
				return &eligibility{refusal: fmt.Sprintf("no suitable node: constraint %s matched 0 of %s", c, countNodes(len(nodes)))}
			}
			before := make([]string, i)
			for j := range before {
				before[j] = cs[j].String()
			}
			return &eligibility{refusal: fmt.Sprintf("no suitable node: constraint %s matched 0 of the %s that meet %s",
				c, countNodes(len(nodes)), strings.Join(before, " and "))}
		}
		nodes = met
	}
	return &eligibility{nodes: nodes}
}

// countNodes is "1 node" or "12 nodes".
func countNodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return strconv.Itoa(n) + " nodes"
}
