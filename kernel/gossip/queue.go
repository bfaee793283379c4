package gossip

import (
	"cmp"
	"math"
	"slices"
	"sync"
)

// queue holds the entries to gossip, each sent a limited number of times,
// least-sent first. It replaces memberlist.TransmitLimitedQueue, which (in
// v0.7.0) can silently drop a message: it resets its ID counter whenever it
// empties, also between allocating a new message's ID and inserting it, so
// two queued messages of the same length can get the same ID, and its
// B-tree then keeps only one of them (hashicorp/memberlist pull request
// #263, open since 2022). TestFiftyMembers lost updates to it.
type queue struct {
	numNodes func() int
	mult     int

	// mu guards items and next.
	mu    sync.Mutex
	items map[string]*queued
	next  uint64
}

type queued struct {
	msg       []byte
	transmits int
	order     uint64 // higher is newer
}

// maxQueued bounds the queue; past it the most-sent messages are dropped
// (a full sync repairs what they would have carried).
const maxQueued = 8192

// put queues msg under name, replacing a message of the same name.
func (q *queue) put(name string, msg []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.items == nil {
		q.items = map[string]*queued{}
	}
	q.next++
	q.items[name] = &queued{msg: msg, order: q.next}
	if len(q.items) > maxQueued {
		var worst string
		for n, it := range q.items {
			if w := q.items[worst]; worst == "" || it.transmits > w.transmits || (it.transmits == w.transmits && it.order < w.order) {
				worst = n
			}
		}
		delete(q.items, worst)
	}
}

// get returns messages that fit in limit bytes, each costing overhead
// more, least-sent and then newest first, and counts them sent.
func (q *queue) get(overhead, limit int) [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil
	}
	// memberlist's retransmit rule: mult * ceil(log10(n+1)).
	maxTransmits := q.mult * int(math.Ceil(math.Log10(float64(q.numNodes()+1))))
	names := make([]string, 0, len(q.items))
	for n := range q.items {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		x, y := q.items[a], q.items[b]
		return cmp.Or(cmp.Compare(x.transmits, y.transmits), cmp.Compare(y.order, x.order))
	})
	var out [][]byte
	used := 0
	for _, n := range names {
		it := q.items[n]
		if used+overhead+len(it.msg) > limit {
			continue
		}
		used += overhead + len(it.msg)
		out = append(out, it.msg)
		it.transmits++
		if it.transmits >= maxTransmits {
			delete(q.items, n)
		}
	}
	return out
}
