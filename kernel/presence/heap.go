package presence

import "time"

// Heap is a min-heap of heartbeat deadlines, one per node, with an index by
// node ID so that a node's deadline can be moved or removed in O(log n). It
// is the pure core of the Tracker: no clock, no goroutines, no lock; every
// call that needs the time takes it as an argument. The zero Heap is not
// usable; call NewHeap.
type Heap struct {
	// items is the heap array: items[i].deadline is not after the deadline
	// of items[2i+1] and items[2i+2].
	items []*item
	// index finds a node's item; item.pos is kept equal to its place in
	// items, so a move touches no map entry but the node's own.
	index map[string]*item
}

// item is one node's deadline. Items are pointers so that sifting updates
// pos in place: one map lookup per Set, however far the item travels.
type item struct {
	deadline time.Time
	nodeID   string
	pos      int
}

// NewHeap returns an empty Heap.
func NewHeap() *Heap {
	return &Heap{index: make(map[string]*item)}
}

// Len is the number of nodes in the heap.
func (h *Heap) Len() int { return len(h.items) }

// Set inserts nodeID with deadline, or moves its deadline if it is already
// there. It does not allocate when nodeID is already present.
func (h *Heap) Set(nodeID string, deadline time.Time) {
	if it, ok := h.index[nodeID]; ok {
		earlier := deadline.Before(it.deadline)
		it.deadline = deadline
		if earlier {
			h.up(it.pos)
		} else {
			h.down(it.pos)
		}
		return
	}
	it := &item{deadline: deadline, nodeID: nodeID, pos: len(h.items)}
	h.items = append(h.items, it)
	h.index[nodeID] = it
	h.up(it.pos)
}

// Deadline returns nodeID's deadline, and whether the node is in the heap.
func (h *Heap) Deadline(nodeID string) (time.Time, bool) {
	it, ok := h.index[nodeID]
	if !ok {
		return time.Time{}, false
	}
	return it.deadline, true
}

// Remove takes nodeID out of the heap. Removing an absent node does nothing.
func (h *Heap) Remove(nodeID string) {
	it, ok := h.index[nodeID]
	if !ok {
		return
	}
	h.removeAt(it.pos)
}

// Expired pops every node whose deadline is not after now, earliest first,
// and returns their IDs; nil if there is none.
func (h *Heap) Expired(now time.Time) []string {
	var ids []string
	for len(h.items) > 0 && !h.items[0].deadline.After(now) {
		ids = append(ids, h.removeAt(0).nodeID)
	}
	return ids
}

// Next returns the earliest deadline, and false if the heap is empty.
func (h *Heap) Next() (time.Time, bool) {
	if len(h.items) == 0 {
		return time.Time{}, false
	}
	return h.items[0].deadline, true
}

// Postpone moves every deadline earlier than until to until, in O(n): the
// map d ↦ max(d, until) keeps the order of deadlines, so the heap stays a
// heap without sifting. The Tracker uses it to give every node a fresh grace
// period after the leader itself was stalled and could not hear anyone.
func (h *Heap) Postpone(until time.Time) {
	for _, it := range h.items {
		if it.deadline.Before(until) {
			it.deadline = until
		}
	}
}

// removeAt takes out the item at position i and returns it.
func (h *Heap) removeAt(i int) *item {
	it := h.items[i]
	last := len(h.items) - 1
	if i != last {
		h.swap(i, last)
	}
	h.items[last] = nil // let the collector have the item
	h.items = h.items[:last]
	delete(h.index, it.nodeID)
	if i != last {
		// The item moved into i may belong above or below it.
		h.down(i)
		h.up(i)
	}
	return it
}

func (h *Heap) less(i, j int) bool {
	return h.items[i].deadline.Before(h.items[j].deadline)
}

func (h *Heap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].pos = i
	h.items[j].pos = j
}

func (h *Heap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *Heap) down(i int) {
	n := len(h.items)
	for {
		smallest := i
		if l := 2*i + 1; l < n && h.less(l, smallest) {
			smallest = l
		}
		if r := 2*i + 2; r < n && h.less(r, smallest) {
			smallest = r
		}
		if smallest == i {
			return
		}
		h.swap(i, smallest)
		i = smallest
	}
}
