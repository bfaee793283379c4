package gossip

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// entry is the unit of gossip: one key of one node's record. The record of
// a node is all its entries of its newest epoch: the head (key "", the
// node's slices and VTEP MAC) and one entry per endpoint (key task ID + NUL + network
// ID), removed endpoints staying as tombstones for a while.
//
// Order: a newer Epoch (the publisher's start time) replaces everything of
// older epochs of the node, so a restarted node's record replaces its old
// one whole; within an epoch, per key, the higher Seq wins.
type entry struct {
	Node     string    `json:"n"`
	Epoch    int64     `json:"e"`
	Seq      uint64    `json:"s"`
	Key      string    `json:"k,omitempty"`
	Deleted  bool      `json:"d,omitempty"`
	Endpoint *Endpoint `json:"ep,omitempty"`
	Slices   []Slice   `json:"sl,omitempty"`
	// MAC is the node's VTEP MAC, on its head entry only.
	MAC string `json:"mac,omitempty"`
}

// headKey is the key of a node's head entry.
const headKey = ""

// endpointKey is the key of an endpoint in its node's record.
func endpointKey(e Endpoint) string { return e.TaskID + "\x00" + e.NetworkID }

// nodeRecord is what the store holds of one node.
type nodeRecord struct {
	epoch   int64
	entries map[string]*stored
}

type stored struct {
	entry
	// deletedAt is when this member learnt of the tombstone (for its
	// expiry); zero for live entries.
	deletedAt time.Time
}

// store is the merged view of every node's record. It is pure state: the
// gossip transport feeds it entries and asks it for the full state.
type store struct {
	self string
	// vtepMAC is this node's VTEP MAC, for its head entry; set before
	// the store is used.
	vtepMAC string

	// mu guards every field below.
	mu sync.Mutex
	// seq is the last sequence number this node gave one of its entries:
	// never reused, even when the entry that had it has expired.
	seq   uint64
	nodes map[string]*nodeRecord
	// alive are the members memberlist reports alive, by node ID, with
	// their address. Entries of other nodes wait in pending until the node
	// is seen alive (its entries can arrive first), and a node that leaves
	// or dies has its record dropped.
	alive   map[string]string
	pending map[string]*pendingRecord
	// gone are the members with a record that are no longer alive, and
	// since when.
	gone map[string]time.Time
}

type pendingRecord struct {
	since   time.Time
	entries []entry
}

// Bounds on what the store keeps for nodes it does not know yet.
const (
	pendingTTL        = time.Minute
	maxPendingEntries = 4096
	goneRetention     = 5 * time.Minute
)

func newStore(self string) *store {
	return &store{
		self:    self,
		nodes:   map[string]*nodeRecord{},
		alive:   map[string]string{},
		pending: map[string]*pendingRecord{},
		gone:    map[string]time.Time{},
	}
}

// applyResult says what apply did with an entry.
type applyResult int

const (
	ignored     applyResult = iota // older than what the store has
	applied                        // newer: the view changed
	waiting                        // the node is not known alive yet
	contradicts                    // about this node, newer than its own record: the node must answer
)

// apply merges an entry received from another member.
func (s *store) apply(e entry, now time.Time) applyResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked(e, now)
}

func (s *store) applyLocked(e entry, now time.Time) applyResult {
	if e.Node == s.self {
		rec := s.nodes[s.self]
		if rec == nil {
			return ignored
		}
		cur, ok := rec.entries[e.Key]
		if e.Epoch == rec.epoch && !e.Deleted && (!ok || cur.Seq < e.Seq) {
			// Another member holds a live entry of ours that we no longer
			// have (its tombstone expired here): it must be deleted again.
			return contradicts
		}
		return ignored
	}
	if _, ok := s.alive[e.Node]; !ok {
		p := s.pending[e.Node]
		if p == nil {
			p = &pendingRecord{since: now}
			s.pending[e.Node] = p
		}
		if len(p.entries) < maxPendingEntries {
			p.entries = append(p.entries, e)
		}
		return waiting
	}
	rec := s.nodes[e.Node]
	switch {
	case rec == nil || e.Epoch > rec.epoch:
		rec = &nodeRecord{epoch: e.Epoch, entries: map[string]*stored{}}
		s.nodes[e.Node] = rec
	case e.Epoch < rec.epoch:
		return ignored
	}
	if cur, ok := rec.entries[e.Key]; ok && cur.Seq >= e.Seq {
		return ignored
	}
	st := &stored{entry: e}
	if e.Deleted {
		st.deletedAt = now
		st.Endpoint, st.Slices, st.MAC = nil, nil, ""
	}
	rec.entries[e.Key] = st
	return applied
}

// setAlive records a member as alive and applies what waited for it.
func (s *store) setAlive(node, addr string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.alive[node] != addr
	s.alive[node] = addr
	delete(s.gone, node)
	if p := s.pending[node]; p != nil {
		delete(s.pending, node)
		for _, e := range p.entries {
			if s.applyLocked(e, now) == applied {
				changed = true
			}
		}
	}
	return changed
}

// numAlive is the number of live members, this one included.
func (s *store) numAlive() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.alive), 1)
}

// setGone hides a member that left or died, and its record. The record is
// kept for goneRetention: a member wrongly declared dead (an overloaded
// host misses its probes) comes back with its record intact, so late copies
// of its older entries cannot override newer ones.
func (s *store) setGone(node string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if node == s.self {
		// memberlist reports this node's own leave; its record stays.
		return false
	}
	_, had := s.alive[node]
	delete(s.alive, node)
	delete(s.pending, node)
	if _, ok := s.nodes[node]; ok {
		s.gone[node] = now
	}
	return had
}

// local replaces this node's own record's slices (when sl is non-nil)
// and endpoints (when setEndpoints) and returns the entries that changed, each
// with the next sequence number.
func (s *store) local(epoch int64, sl []Slice, eps []Endpoint, setEndpoints bool, now time.Time) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.nodes[s.self]
	if rec == nil {
		rec = &nodeRecord{epoch: epoch, entries: map[string]*stored{}}
		s.nodes[s.self] = rec
	}
	var changed []entry
	put := func(e entry) {
		s.seq++
		e.Node, e.Epoch, e.Seq = s.self, rec.epoch, s.seq
		st := &stored{entry: e}
		if e.Deleted {
			st.deletedAt = now
		}
		rec.entries[e.Key] = st
		changed = append(changed, e)
	}
	if sl != nil || rec.entries[headKey] == nil {
		if cur := rec.entries[headKey]; cur == nil || !slices.Equal(cur.Slices, sl) || cur.MAC != s.vtepMAC {
			put(entry{Key: headKey, Slices: slices.Clone(sl), MAC: s.vtepMAC})
		}
	}
	if setEndpoints {
		want := make(map[string]Endpoint, len(eps))
		for _, ep := range eps {
			want[endpointKey(ep)] = ep
		}
		keys := make([]string, 0, len(rec.entries))
		for k := range rec.entries {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if st := rec.entries[k]; k != headKey && !st.Deleted {
				if _, ok := want[k]; !ok {
					put(entry{Key: k, Deleted: true})
				}
			}
		}
		for _, ep := range eps {
			k := endpointKey(ep)
			if st := rec.entries[k]; st != nil && !st.Deleted && st.Endpoint.equal(ep) {
				continue
			}
			put(entry{Key: k, Endpoint: ep.clone()})
		}
	}
	return changed
}

// tombstone re-deletes a key of this node's record that another member
// still holds live.
func (s *store) tombstone(key string, seqAbove uint64, now time.Time) entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.nodes[s.self]
	s.seq = max(s.seq, seqAbove) + 1
	e := entry{Node: s.self, Epoch: rec.epoch, Seq: s.seq, Key: key, Deleted: true}
	rec.entries[key] = &stored{entry: e, deletedAt: now}
	return e
}

// state returns the entries of this node and the live members (for a full
// sync), after expiring old tombstones, pending records and the records of
// members long gone.
func (s *store) state(now time.Time, tombstoneTTL time.Duration) []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	for node, p := range s.pending {
		if now.Sub(p.since) > pendingTTL {
			delete(s.pending, node)
		}
	}
	for node, since := range s.gone {
		if now.Sub(since) > goneRetention {
			delete(s.gone, node)
			delete(s.nodes, node)
		}
	}
	var out []entry
	for node, rec := range s.nodes {
		if _, ok := s.alive[node]; !ok && node != s.self {
			continue // gone: not passed on
		}
		for k, st := range rec.entries {
			if st.Deleted && now.Sub(st.deletedAt) > tombstoneTTL {
				delete(rec.entries, k)
				continue
			}
			out = append(out, st.entry)
		}
	}
	return out
}

// endpoints returns the live endpoints of this node and the alive members,
// sorted by service, network and task.
func (s *store) endpoints(match func(*Endpoint) bool) []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Endpoint
	for node, rec := range s.nodes {
		if _, ok := s.alive[node]; !ok && node != s.self {
			continue
		}
		for _, st := range rec.entries {
			if st.Deleted || st.Endpoint == nil || (match != nil && !match(st.Endpoint)) {
				continue
			}
			ep := *st.Endpoint.clone()
			ep.NodeID = node
			out = append(out, ep)
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.ServiceName, b.ServiceName), cmp.Compare(a.NetworkID, b.NetworkID), cmp.Compare(a.TaskID, b.TaskID), cmp.Compare(a.NodeID, b.NodeID))
	})
	return out
}

// peers returns the alive members other than this node, sorted by ID.
func (s *store) peers() []PeerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerInfo, 0, len(s.alive))
	for node, addr := range s.alive {
		if node == s.self {
			continue
		}
		p := PeerInfo{NodeID: node, Addr: addr}
		if rec := s.nodes[node]; rec != nil {
			if h := rec.entries[headKey]; h != nil && !h.Deleted {
				p.Slices = slices.Clone(h.Slices)
				p.VTEPMAC = h.MAC
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}

func (e *Endpoint) clone() *Endpoint {
	c := *e
	c.Aliases = slices.Clone(e.Aliases)
	c.Ingress = slices.Clone(e.Ingress)
	return &c
}

func (e *Endpoint) equal(o Endpoint) bool {
	return e.TaskID == o.TaskID && e.ServiceID == o.ServiceID && e.ServiceName == o.ServiceName &&
		e.NetworkID == o.NetworkID && e.NodeID == o.NodeID && e.Addr == o.Addr && slices.Equal(e.Aliases, o.Aliases) &&
		e.TaskName == o.TaskName && e.VIP == o.VIP && e.DNSRR == o.DNSRR && e.Backend == o.Backend && slices.Equal(e.Ingress, o.Ingress)
}
