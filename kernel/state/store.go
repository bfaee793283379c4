package state

import (
	"sync"
	"sync/atomic"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// watchQueueLimit is how many undelivered events a watcher may fall behind
// before its watch is closed. 1<<20 events (about 100 MiB of queue at worst)
// absorb the largest bursts the kernel makes, such as rescheduling every task
// of a big cluster at once, while a watcher that stopped reading cannot grow
// the manager's memory without bound.
const watchQueueLimit = 1 << 20

// Store is the in-memory cluster state. It is safe for concurrent use.
//
// Objects it returns are shared and immutable: see the package
// documentation. Never modify them; proto.Clone first.
type Store struct {
	// mu guards t. Apply and Restore write; every read holds it for reading.
	mu sync.RWMutex
	t  *tables

	// watchMu guards watchers. Lock order: mu, then watchMu.
	watchMu  sync.Mutex
	watchers map[*watcher]struct{}

	// watchLimit is watchQueueLimit; tests lower it.
	watchLimit int

	// entered is, per observed task state, the wall time (Unix nanoseconds)
	// this store last applied a change moving a task into it: for metrics,
	// read without mu so that a scrape never waits behind writers.
	entered [maxTaskState + 1]atomic.Int64

	// cluster is t.cluster, published after every Apply and Restore so
	// that hot paths (every worker heartbeat reads the period) read the
	// cluster configuration without waiting behind a writer.
	cluster atomic.Pointer[objectv1.Cluster]
}

// Cluster returns the cluster object as of the last applied command, or
// nil before the cluster exists. It never waits for the store's lock: use
// it where a consistent view with other objects is not needed.
func (s *Store) Cluster() *objectv1.Cluster { return s.cluster.Load() }

// maxTaskState bounds the task states entered records.
const maxTaskState = 32

// TaskStateEntered returns when this store last applied a change that moved
// a task into observed state st (a create in st counts), or the zero time
// if none did since the store was created. It is local, wall-clock
// bookkeeping, not replicated state.
func (s *Store) TaskStateEntered(st objectv1.TaskState) time.Time {
	if st < 0 || int(st) >= len(s.entered) {
		return time.Time{}
	}
	ns := s.entered[st].Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// New returns an empty store at Raft index 0.
func New() *Store {
	return &Store{
		t:          newTables(),
		watchers:   make(map[*watcher]struct{}),
		watchLimit: watchQueueLimit,
	}
}

// View runs fn on a consistent view of the state. The ReadTx is valid only
// while fn runs; fn must not call other Store methods.
func (s *Store) View(fn func(tx *ReadTx)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(&ReadTx{t: s.t})
}

// ReadTx reads a consistent view of the state. Inside Prepare it is the
// Tx's reader, and every method then also sees the Tx's own writes.
//
// The objects it returns are the stored ones, shared with every other
// reader: never modify them (proto.Clone first).
type ReadTx struct {
	t *tables
	// ov is the Tx's own writes; nil outside Prepare.
	ov *overlay
}

// Index returns the Raft index of the last applied command (0 when empty).
func (tx *ReadTx) Index() uint64 { return tx.t.index }

// Cluster returns the cluster object, or nil before the cluster exists.
func (tx *ReadTx) Cluster() *objectv1.Cluster {
	if tx.ov != nil && tx.ov.cluster != nil {
		return tx.ov.t.cluster
	}
	return tx.t.cluster
}

// Node returns the node with this ID, or nil.
func (tx *ReadTx) Node(id string) *objectv1.Node { return get(tx, nodeKind, id) }

// Nodes returns every node, sorted by ID.
func (tx *ReadTx) Nodes() []*objectv1.Node { return all(tx, nodeKind) }

// NodesByRole returns the nodes whose current role is r, sorted by ID.
func (tx *ReadTx) NodesByRole(r objectv1.NodeRole) []*objectv1.Node {
	return indexed(tx, nodeKind, func(t *tables) entries[*objectv1.Node] { return t.nodesByRole.get(r) })
}

// NodesByAvailability returns the nodes whose spec.availability is a, sorted
// by ID.
func (tx *ReadTx) NodesByAvailability(a objectv1.NodeAvailability) []*objectv1.Node {
	return indexed(tx, nodeKind, func(t *tables) entries[*objectv1.Node] { return t.nodesByAvailability.get(a) })
}

// Service returns the service with this ID, or nil.
func (tx *ReadTx) Service(id string) *objectv1.Service { return get(tx, serviceKind, id) }

// ServiceByName returns the service whose spec.annotations.name is name, or
// nil.
func (tx *ReadTx) ServiceByName(name string) *objectv1.Service { return byName(tx, serviceKind, name) }

// Services returns every service, sorted by name.
func (tx *ReadTx) Services() []*objectv1.Service { return allByName(tx, serviceKind) }

// Task returns the task with this ID, or nil.
func (tx *ReadTx) Task(id string) *objectv1.Task { return get(tx, taskKind, id) }

// Tasks returns every task, sorted by ID.
func (tx *ReadTx) Tasks() []*objectv1.Task { return all(tx, taskKind) }

// TasksByService returns the tasks of a service, sorted by ID.
func (tx *ReadTx) TasksByService(serviceID string) []*objectv1.Task {
	return indexed(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByService.get(serviceID) })
}

// CountNodes returns how many nodes there are, without listing or sorting
// them (metrics).
func (tx *ReadTx) CountNodes() int {
	n := 0
	each(tx, nodeKind, func(t *tables) entries[*objectv1.Node] { return t.nodes.all() }, func(*objectv1.Node) { n++ })
	return n
}

// CountTasksByState returns how many tasks have observed state st, in
// constant time (metrics).
func (tx *ReadTx) CountTasksByState(st objectv1.TaskState) int {
	n := 0
	each(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByState.get(st) }, func(*objectv1.Task) { n++ })
	return n
}

// EachTaskOfNode calls fn for every task assigned to a node, in no
// particular order and without allocating: for hot paths that only
// aggregate (the scheduler's view of a node's reservations).
func (tx *ReadTx) EachTaskOfNode(nodeID string, fn func(*objectv1.Task)) {
	each(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByNode.get(nodeID) }, fn)
}

// TasksByNode returns the tasks assigned to a node, sorted by ID. The empty
// nodeID gives the tasks not assigned to any node.
func (tx *ReadTx) TasksByNode(nodeID string) []*objectv1.Task {
	return indexed(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByNode.get(nodeID) })
}

// TasksByState returns the tasks whose observed state (status.state) is st,
// sorted by ID.
func (tx *ReadTx) TasksByState(st objectv1.TaskState) []*objectv1.Task {
	return indexed(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByState.get(st) })
}

// TasksByDesiredState returns the tasks whose desired_state is st, sorted by
// ID.
func (tx *ReadTx) TasksByDesiredState(st objectv1.TaskState) []*objectv1.Task {
	return indexed(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByDesiredState.get(st) })
}

// CountTasks counts a service's tasks whose desired_state is desired
// (desiredN) and those whose observed state is observed (observedN), without
// allocating: CountTasks(id, RUNNING, RUNNING) gives the "2/3" of a service
// listing as (3, 2).
func (tx *ReadTx) CountTasks(serviceID string, desired, observed objectv1.TaskState) (desiredN, observedN int) {
	each(tx, taskKind, func(t *tables) entries[*objectv1.Task] { return t.tasksByService.get(serviceID) },
		func(t *objectv1.Task) {
			if t.GetDesiredState() == desired {
				desiredN++
			}
			if t.GetStatus().GetState() == observed {
				observedN++
			}
		})
	return desiredN, observedN
}

// Network returns the network with this ID, or nil.
func (tx *ReadTx) Network(id string) *objectv1.Network { return get(tx, networkKind, id) }

// NetworkByName returns the network whose spec.annotations.name is name, or
// nil.
func (tx *ReadTx) NetworkByName(name string) *objectv1.Network { return byName(tx, networkKind, name) }

// Networks returns every network, sorted by name.
func (tx *ReadTx) Networks() []*objectv1.Network { return allByName(tx, networkKind) }

// Secret returns the secret with this ID, or nil. Its spec.data is empty:
// the data is in sealed.
func (tx *ReadTx) Secret(id string) *objectv1.Secret { return get(tx, secretKind, id) }

// SecretByName returns the secret whose spec.annotations.name is name, or
// nil.
func (tx *ReadTx) SecretByName(name string) *objectv1.Secret { return byName(tx, secretKind, name) }

// Secrets returns every secret, sorted by name.
func (tx *ReadTx) Secrets() []*objectv1.Secret { return allByName(tx, secretKind) }

// Config returns the config with this ID, or nil.
func (tx *ReadTx) Config(id string) *objectv1.Config { return get(tx, configKind, id) }

// ConfigByName returns the config whose spec.annotations.name is name, or
// nil.
func (tx *ReadTx) ConfigByName(name string) *objectv1.Config { return byName(tx, configKind, name) }

// Configs returns every config, sorted by name.
func (tx *ReadTx) Configs() []*objectv1.Config { return allByName(tx, configKind) }
