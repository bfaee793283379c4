package state

import (
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// object is what the generated object types have in common.
type object interface {
	comparable
	GetId() string
	GetMeta() *objectv1.Meta
}

// maxIndexes is the most secondary indexes one table has (tasks: 4).
const maxIndexes = 4

// entry is one stored object and its position in each bucket holding it, so
// that removing it from an index is a swap with the bucket's last entry.
type entry[T object] struct {
	v   T
	pos [maxIndexes]int32
}

// bucket is the entries filed under one key of an index, in no order.
type bucket[T object] struct {
	items []*entry[T]
}

// entries is a set of stored objects: an index bucket or a whole table.
type entries[T object] struct {
	list []*entry[T]
	byID map[string]*entry[T]
}

func (es entries[T]) len() int { return len(es.list) + len(es.byID) }

// each calls fn with every object.
func (es entries[T]) each(fn func(T)) {
	for _, e := range es.list {
		fn(e.v)
	}
	for _, e := range es.byID {
		fn(e.v)
	}
}

// indexer keeps a secondary index of a table up to date. slot is the
// index's position in the table, where it keeps its place in entry.pos.
type indexer[T object] interface {
	bind(slot int)
	insert(e *entry[T])
	remove(e *entry[T])
	// move re-files e, whose object changed from old to e.v.
	move(e *entry[T], old T)
}

// keyIndex files objects under a key computed from them. It is kept
// incrementally on every change, at the cost of a small-map lookup and an
// append or a swap: the indexes add little to a write, and a query costs the
// size of its answer.
type keyIndex[K comparable, T object] struct {
	key  func(T) K
	slot int
	sets map[K]*bucket[T]
}

func newKeyIndex[K comparable, T object](key func(T) K) *keyIndex[K, T] {
	return &keyIndex[K, T]{key: key, sets: make(map[K]*bucket[T])}
}

// get returns the entries filed under k. The caller must not modify them.
func (x *keyIndex[K, T]) get(k K) entries[T] {
	if b := x.sets[k]; b != nil {
		return entries[T]{list: b.items}
	}
	return entries[T]{}
}

func (x *keyIndex[K, T]) bind(slot int) { x.slot = slot }

func (x *keyIndex[K, T]) insert(e *entry[T]) { x.add(x.key(e.v), e) }

func (x *keyIndex[K, T]) remove(e *entry[T]) { x.drop(x.key(e.v), e) }

func (x *keyIndex[K, T]) move(e *entry[T], old T) {
	if ko, kn := x.key(old), x.key(e.v); ko != kn {
		x.drop(ko, e)
		x.add(kn, e)
	}
}

func (x *keyIndex[K, T]) add(k K, e *entry[T]) {
	b := x.sets[k]
	if b == nil {
		b = &bucket[T]{}
		x.sets[k] = b
	}
	e.pos[x.slot] = int32(len(b.items))
	b.items = append(b.items, e)
}

// minShrink is the capacity under which a bucket is never reallocated
// smaller; above it, a bucket shrinks when a quarter full, so that a burst
// (every task pending at once) does not pin its memory forever.
const minShrink = 1024

func (x *keyIndex[K, T]) drop(k K, e *entry[T]) {
	b := x.sets[k]
	if b == nil {
		return
	}
	p, last := int(e.pos[x.slot]), len(b.items)-1
	if p > last || b.items[p] != e {
		return // not filed here; cannot happen while the index is exact
	}
	moved := b.items[last]
	b.items[p] = moved
	moved.pos[x.slot] = int32(p)
	b.items[last] = nil
	b.items = b.items[:last]
	switch {
	case last == 0:
		delete(x.sets, k)
	case cap(b.items) > minShrink && last < cap(b.items)/4:
		b.items = append(make([]*entry[T], 0, 2*last), b.items...)
	}
}

// table is the objects of one kind by ID, with their secondary indexes.
type table[T object] struct {
	byID    map[string]*entry[T]
	indexes []indexer[T]
}

func newTable[T object](indexes ...indexer[T]) table[T] {
	for i, x := range indexes {
		x.bind(i)
	}
	return table[T]{byID: make(map[string]*entry[T]), indexes: indexes}
}

// get returns the object with this ID, or nil.
func (t *table[T]) get(id string) T {
	if e := t.byID[id]; e != nil {
		return e.v
	}
	var zero T
	return zero
}

// all returns every object of the table.
func (t *table[T]) all() entries[T] { return entries[T]{byID: t.byID} }

// set stores v under id (v's own ID), or deletes id when v is nil, and
// returns what was there. Every index follows.
func (t *table[T]) set(id string, v T) (old T) {
	var zero T
	e := t.byID[id]
	switch {
	case e == nil && v == zero:
	case e == nil:
		e = &entry[T]{v: v}
		t.byID[id] = e
		for _, x := range t.indexes {
			x.insert(e)
		}
	case v == zero:
		old = e.v
		delete(t.byID, id)
		for _, x := range t.indexes {
			x.remove(e)
		}
	default:
		old = e.v
		e.v = v
		for _, x := range t.indexes {
			x.move(e, old)
		}
	}
	return old
}

// tables is one complete state: the store's, or a Tx's own writes.
type tables struct {
	// index is the Raft index of the last applied command.
	index   uint64
	cluster *objectv1.Cluster

	nodes    table[*objectv1.Node]
	services table[*objectv1.Service]
	tasks    table[*objectv1.Task]
	networks table[*objectv1.Network]
	secrets  table[*objectv1.Secret]
	configs  table[*objectv1.Config]

	nodesByRole         *keyIndex[objectv1.NodeRole, *objectv1.Node]
	nodesByAvailability *keyIndex[objectv1.NodeAvailability, *objectv1.Node]
	// servicesByName holds sets, like the others, although names are unique
	// between transactions: inside one, Apply lets two services share a name
	// until the end-of-transaction check.
	servicesByName      *keyIndex[string, *objectv1.Service]
	tasksByService      *keyIndex[string, *objectv1.Task]
	tasksByNode         *keyIndex[string, *objectv1.Task]
	tasksByState        *keyIndex[objectv1.TaskState, *objectv1.Task]
	tasksByDesiredState *keyIndex[objectv1.TaskState, *objectv1.Task]
	// networksByName holds sets for the same reason as servicesByName.
	networksByName *keyIndex[string, *objectv1.Network]
	secretsByName  *keyIndex[string, *objectv1.Secret]
	configsByName  *keyIndex[string, *objectv1.Config]

	// requests are the request IDs of the last applied transactions.
	requests requests
}

func newTables() *tables {
	t := &tables{
		nodesByRole:         newKeyIndex(nodeRole),
		nodesByAvailability: newKeyIndex(nodeAvailability),
		servicesByName:      newKeyIndex(serviceName),
		tasksByService:      newKeyIndex(taskService),
		tasksByNode:         newKeyIndex(taskNode),
		tasksByState:        newKeyIndex(taskState),
		tasksByDesiredState: newKeyIndex(taskDesiredState),
		networksByName:      newKeyIndex(networkName),
		secretsByName:       newKeyIndex(secretName),
		configsByName:       newKeyIndex(configName),
	}
	t.nodes = newTable[*objectv1.Node](t.nodesByRole, t.nodesByAvailability)
	t.services = newTable[*objectv1.Service](t.servicesByName)
	t.tasks = newTable[*objectv1.Task](t.tasksByService, t.tasksByNode, t.tasksByState, t.tasksByDesiredState)
	t.networks = newTable[*objectv1.Network](t.networksByName)
	t.secrets = newTable[*objectv1.Secret](t.secretsByName)
	t.configs = newTable[*objectv1.Config](t.configsByName)
	return t
}

// The index keys.

func nodeRole(n *objectv1.Node) objectv1.NodeRole { return n.GetRole() }

func nodeAvailability(n *objectv1.Node) objectv1.NodeAvailability {
	return n.GetSpec().GetAvailability()
}

func serviceName(s *objectv1.Service) string { return s.GetSpec().GetAnnotations().GetName() }

func taskService(t *objectv1.Task) string { return t.GetServiceId() }

func taskNode(t *objectv1.Task) string { return t.GetNodeId() }

func taskState(t *objectv1.Task) objectv1.TaskState { return t.GetStatus().GetState() }

func taskDesiredState(t *objectv1.Task) objectv1.TaskState { return t.GetDesiredState() }

func networkName(n *objectv1.Network) string { return n.GetSpec().GetAnnotations().GetName() }

func secretName(s *objectv1.Secret) string { return s.GetSpec().GetAnnotations().GetName() }

func configName(c *objectv1.Config) string { return c.GetSpec().GetAnnotations().GetName() }
