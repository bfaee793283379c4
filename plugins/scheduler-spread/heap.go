package main

// The heaps of a class's groups: binary min-heaps of node indexes (leaf
// groups, ranked by nodeLess) or group indexes (the others, ranked by
// groupLess), each item's position kept in its slot or group so that a
// changed item can be moved or removed in O(log n).

func (c *class) less(g *group, x, y int32) bool {
	if g.leaf {
		return c.nodeLess(x, y)
	}
	return c.groupLess(x, y)
}

// setPos records that the item at i of g's heap is there.
func (c *class) setPos(g *group, i int) {
	if g.leaf {
		c.slots[g.items[i]].pos = int32(i)
	} else {
		c.groups[g.items[i]].pos = int32(i)
	}
}

func (c *class) swap(g *group, i, j int) {
	g.items[i], g.items[j] = g.items[j], g.items[i]
	c.setPos(g, i)
	c.setPos(g, j)
}

func (c *class) up(g *group, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !c.less(g, g.items[i], g.items[p]) {
			return
		}
		c.swap(g, i, p)
		i = p
	}
}

// down moves the item at i down; it reports whether it moved.
func (c *class) down(g *group, i int) bool {
	start, n := i, len(g.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && c.less(g, g.items[r], g.items[l]) {
			m = r
		}
		if !c.less(g, g.items[m], g.items[i]) {
			break
		}
		c.swap(g, i, m)
		i = m
	}
	return i > start
}

// fix restores the heap of group gi after the item at i changed rank.
func (c *class) fix(gi int32, i int) {
	g := &c.groups[gi]
	if !c.down(g, i) {
		c.up(g, i)
	}
}

// remove takes the item at i out of group gi's heap.
func (c *class) remove(gi int32, i int) {
	g := &c.groups[gi]
	last := len(g.items) - 1
	if i != last {
		c.swap(g, i, last)
	}
	if g.leaf {
		c.slots[g.items[last]].pos = -1
	} else {
		c.groups[g.items[last]].pos = -1
	}
	g.items = g.items[:last]
	if i != last {
		c.fix(gi, i)
	}
}

// heapify orders group gi's items into a heap.
func (c *class) heapify(gi int32) {
	g := &c.groups[gi]
	for i := range g.items {
		c.setPos(g, i)
	}
	for i := len(g.items)/2 - 1; i >= 0; i-- {
		c.down(g, i)
	}
}
