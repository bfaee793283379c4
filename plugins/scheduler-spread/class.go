package main

import (
	"fmt"
	"strings"

	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// class is the tasks of a batch that share service, placement and
// reservations, and so the nodes they may go to and the order in which
// they want them.
//
// The nodes that meet the constraints form a tree: one level per placement
// preference, each group holding the nodes with one value of the
// preference's attribute; with no preference the tree is its root. Each
// group keeps its children in a heap, fewest tasks of the service first;
// a leaf group keeps its nodes in a heap ordered by rank (see nodeLess).
// The best node is found by walking down the heap tops, in O(depth) and
// O(log nodes) per update, instead of ranking every node for every task.
//
// Nodes leave the tree for good when they stop fitting: within a batch,
// free resources only shrink and task counts only grow, so a node that
// cannot take a task of the class now never will. Each is counted by why,
// for the refusal.
type class struct {
	b       *batch
	service string
	// cpu and mem are the reservations of each task; max its
	// max_replicas_per_node (0: none).
	cpu, mem int64
	max      uint64
	// last is the index, in the request, of the class's last task.
	last int
	// eligible is how many nodes meet the constraints.
	eligible int
	// fixed is the refusal of every task of the class when its placement
	// leaves no node at all (constraints, an invalid preference).
	fixed string
	// count is the service's task count per node, shared with the batch.
	count []uint32
	// groups[0] is the root; slots locate each node in its leaf.
	groups []group
	slots  []slot
	// spreadNodes ranks nodes by the service's task count first.
	spreadNodes bool
	// unfit counts the eligible nodes that left the tree, by reason.
	unfit [reasons]int
	// exhausted is the refusal once no node is left, made once.
	exhausted string
}

// group is a node of the tree: the eligible nodes with one value of a
// preference attribute, under the group of the previous preference.
type group struct {
	// parent is the index of the parent group (-1 for the root); pos the
	// group's position in its parent's heap (-1 when out of it).
	parent, pos int32
	// value is the attribute value the group stands for ("" for nodes
	// without the label).
	value string
	// count is the tasks of the service on the group's eligible nodes,
	// those that left the tree included: they still run there.
	count uint64
	// leaf groups hold node indexes, the others group indexes.
	leaf  bool
	items []int32
}

// slot places a node in a class's tree: its leaf group (-1 when the node is
// not eligible) and its position in the leaf's heap (-1 when out of it).
type slot struct{ leaf, pos int32 }

// reason is why a node cannot take a task of a class, checked in this
// order; a node failing several is counted under the first.
type reason int

const (
	fits reason = iota
	overCap
	noCPU
	noMem
	reasons
)

// newClass builds the class of task t, whose last task in the batch is at
// index last.
func (b *batch) newClass(t *schedulerv1.TaskInfo, last int) *class {
	p := t.GetPlacement()
	c := &class{
		b:           b,
		service:     t.GetServiceId(),
		cpu:         t.GetReservations().GetNanoCpus(),
		mem:         t.GetReservations().GetMemoryBytes(),
		max:         p.GetMaxReplicasPerNode(),
		last:        last,
		spreadNodes: b.cfg.SpreadOverHosts,
	}
	e := b.eligibleFor(p.GetConstraints())
	c.eligible = len(e.nodes)
	if e.refusal != "" {
		c.fixed = e.refusal
		return c
	}
	prefs := make([]scheduler.Attribute, len(p.GetPreferences()))
	for i, pref := range p.GetPreferences() {
		a, err := scheduler.ParseAttribute(pref.GetSpread())
		if err != nil {
			c.fixed = fmt.Sprintf("no suitable node: invalid placement preference spread=%q: %s", pref.GetSpread(), err.(*scheduler.SyntaxError).Reason)
			return c
		}
		prefs[i] = a
	}
	c.count = b.serviceCounts(c.service)
	c.slots = b.newSlots()
	c.build(e.nodes, prefs)
	b.live = append(b.live, c)
	return c
}

// build makes the tree of the eligible nodes.
func (c *class) build(eligible []int32, prefs []scheduler.Attribute) {
	c.groups = []group{{parent: -1, pos: -1, leaf: len(prefs) == 0}}
	// children maps, per internal group, a value to its child group.
	var children []map[string]int32
	if len(prefs) > 0 {
		children = []map[string]int32{{}}
	}
	for _, n := range eligible {
		g := int32(0)
		for level, a := range prefs {
			v, _ := a.Value(c.b.nodes[n])
			child, ok := children[g][v]
			if !ok {
				child = int32(len(c.groups))
				leaf := level == len(prefs)-1
				c.groups = append(c.groups, group{parent: g, pos: -1, value: v, leaf: leaf})
				children = append(children, nil)
				if !leaf {
					children[child] = map[string]int32{}
				}
				children[g][v] = child
			}
			g = child
		}
		c.slots[n].leaf = g
		if cnt := uint64(c.count[n]); cnt > 0 {
			for x := g; x >= 0; x = c.groups[x].parent {
				c.groups[x].count += cnt
			}
		}
		if r := c.fit(n); r != fits {
			c.unfit[r]++
			continue
		}
		c.groups[g].items = append(c.groups[g].items, n)
	}
	// Groups were made parents first: going backwards, a group's children
	// are complete when it joins its parent, and an empty group never does.
	for g := len(c.groups) - 1; g > 0; g-- {
		if len(c.groups[g].items) > 0 {
			p := c.groups[g].parent
			c.groups[p].items = append(c.groups[p].items, int32(g))
		}
	}
	for g := range c.groups {
		c.heapify(int32(g))
	}
}

// fit says whether node n can take a task of the class now.
func (c *class) fit(n int32) reason {
	switch {
	case c.max > 0 && uint64(c.count[n]) >= c.max:
		return overCap
	// A node that reports no total of a resource takes no task that
	// reserves some: free is then zero or less.
	case c.cpu > 0 && c.b.freeCPU[n] < c.cpu:
		return noCPU
	case c.mem > 0 && c.b.freeMem[n] < c.mem:
		return noMem
	}
	return fits
}

// pick returns the best node for the next task of the class, removing the
// nodes that no longer fit on the way.
func (c *class) pick() (int32, bool) {
	if c.fixed != "" {
		return -1, false
	}
	for {
		g := &c.groups[0]
		if len(g.items) == 0 {
			return -1, false
		}
		for !g.leaf {
			g = &c.groups[g.items[0]]
		}
		n := g.items[0]
		if r := c.fit(n); r != fits {
			c.unfit[r]++
			c.drop(n)
			continue
		}
		return n, true
	}
}

// drop takes node n out of the tree, and the groups it leaves empty.
func (c *class) drop(n int32) {
	g := c.slots[n].leaf
	c.remove(g, int(c.slots[n].pos))
	for g != 0 && len(c.groups[g].items) == 0 {
		p := c.groups[g].parent
		c.remove(p, int(c.groups[g].pos))
		g = p
	}
}

// countTask records one more task of the service on node n, an eligible
// node, in the counts of its groups.
func (c *class) countTask(n int32) {
	for g := c.slots[n].leaf; g >= 0; g = c.groups[g].parent {
		c.groups[g].count++
		if p, pos := c.groups[g].parent, c.groups[g].pos; p >= 0 && pos >= 0 {
			c.fix(p, int(pos))
		}
	}
}

// refusal says why a task of the class has no node.
func (c *class) refusal() string {
	if c.fixed != "" {
		return c.fixed
	}
	if c.exhausted != "" {
		return c.exhausted
	}
	var parts []string
	if n := c.unfit[overCap]; n > 0 {
		parts = append(parts, fmt.Sprintf("max_replicas_per_node (%d) reached on %s", c.max, countNodes(n)))
	}
	if n := c.unfit[noCPU]; n > 0 {
		parts = append(parts, "insufficient CPU on "+countNodes(n))
	}
	if n := c.unfit[noMem]; n > 0 {
		parts = append(parts, "insufficient memory on "+countNodes(n))
	}
	c.exhausted = "no suitable node: " + strings.Join(parts, ", ")
	if total := len(c.b.nodes); c.eligible < total {
		c.exhausted += fmt.Sprintf(" (%d of %s meet the constraints)", c.eligible, countNodes(total))
	}
	return c.exhausted
}

// nodeLess ranks node x before node y in a leaf: fewest tasks of the
// service (with spread_over_hosts), then fewest tasks, then the smallest
// reserved share, then node ID (nodes are sorted by ID), so that equal
// nodes are always chosen in the same order.
func (c *class) nodeLess(x, y int32) bool {
	if c.spreadNodes && c.count[x] != c.count[y] {
		return c.count[x] < c.count[y]
	}
	b := c.b
	if b.tasks[x] != b.tasks[y] {
		return b.tasks[x] < b.tasks[y]
	}
	if b.load[x] != b.load[y] {
		return b.load[x] < b.load[y]
	}
	return x < y
}

// groupLess ranks group x before group y among siblings: fewest tasks of
// the service, then by value.
func (c *class) groupLess(x, y int32) bool {
	gx, gy := &c.groups[x], &c.groups[y]
	if gx.count != gy.count {
		return gx.count < gy.count
	}
	return gx.value < gy.value
}
