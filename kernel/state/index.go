package state

import (
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// object is what the generated node, service and task types have in common.
type object interface {
	comparable
	GetId() string
	GetMeta() *objectv1.Meta
}

// indexer keeps a secondary index of a table up to date.
type indexer[T object] interface {
	insert(v T)
	remove(v T)
	replace(old, v T)
}

// keyIndex files objects under a key computed from them: a map of sets, kept
// incrementally on every change so that a query costs the size of its answer.
type keyIndex[K comparable, T object] struct {
	key  func(T) K
	sets map[K]map[string]T
}

func newKeyIndex[K comparable, T object](key func(T) K) *keyIndex[K, T] {
	return &keyIndex[K, T]{key: key, sets: make(map[K]map[string]T)}
}

// get returns the set filed under k, by ID. The caller must not modify it.
func (x *keyIndex[K, T]) get(k K) map[string]T { return x.sets[k] }

func (x *keyIndex[K, T]) insert(v T) {
	k := x.key(v)
	s := x.sets[k]
	if s == nil {
		s = make(map[string]T)
		x.sets[k] = s
	}
	s[v.GetId()] = v
}

func (x *keyIndex[K, T]) remove(v T) {
	k := x.key(v)
	s := x.sets[k]
	delete(s, v.GetId())
	if len(s) == 0 {
		delete(x.sets, k)
	}
}

func (x *keyIndex[K, T]) replace(old, v T) {
	if k := x.key(v); k == x.key(old) {
		if s := x.sets[k]; s != nil {
			s[v.GetId()] = v
			return
		}
	}
	x.remove(old)
	x.insert(v)
}

// table is the objects of one kind by ID, with their secondary indexes.
type table[T object] struct {
	byID    map[string]T
	indexes []indexer[T]
}

func newTable[T object](indexes ...indexer[T]) table[T] {
	return table[T]{byID: make(map[string]T), indexes: indexes}
}

func (t *table[T]) get(id string) T { return t.byID[id] }

// set stores v under id (v's own ID), or deletes id when v is the zero value,
// and returns what was there. Every index follows.
func (t *table[T]) set(id string, v T) (old T) {
	var zero T
	old = t.byID[id]
	switch {
	case old == zero && v == zero:
	case old == zero:
		t.byID[id] = v
		for _, x := range t.indexes {
			x.insert(v)
		}
	case v == zero:
		delete(t.byID, id)
		for _, x := range t.indexes {
			x.remove(old)
		}
	default:
		t.byID[id] = v
		for _, x := range t.indexes {
			x.replace(old, v)
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
}

func newTables() *tables {
	t := &tables{
		nodesByRole:         newKeyIndex(func(n *objectv1.Node) objectv1.NodeRole { return n.GetRole() }),
		nodesByAvailability: newKeyIndex(func(n *objectv1.Node) objectv1.NodeAvailability { return n.GetSpec().GetAvailability() }),
		servicesByName:      newKeyIndex(serviceName),
		tasksByService:      newKeyIndex(func(t *objectv1.Task) string { return t.GetServiceId() }),
		tasksByNode:         newKeyIndex(func(t *objectv1.Task) string { return t.GetNodeId() }),
		tasksByState:        newKeyIndex(func(t *objectv1.Task) objectv1.TaskState { return t.GetStatus().GetState() }),
		tasksByDesiredState: newKeyIndex(func(t *objectv1.Task) objectv1.TaskState { return t.GetDesiredState() }),
	}
	t.nodes = newTable[*objectv1.Node](t.nodesByRole, t.nodesByAvailability)
	t.services = newTable[*objectv1.Service](t.servicesByName)
	t.tasks = newTable[*objectv1.Task](t.tasksByService, t.tasksByNode, t.tasksByState, t.tasksByDesiredState)
	return t
}

func serviceName(s *objectv1.Service) string { return s.GetSpec().GetAnnotations().GetName() }
