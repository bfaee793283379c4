package state

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// errTxDone is returned by writes on a Tx whose Prepare has returned.
var errTxDone = errors.New("write on a finished transaction")

// Prepare runs fn against a consistent view of the state and returns the
// Transaction that makes fn's writes, to be proposed through Raft. Nothing
// is applied here: the returned Transaction changes the state only when it
// is committed and applied.
//
// Inside fn, the Tx's reads see its own earlier writes. The writes check
// early, for a clear error, what Apply will check again: creating an
// existing ID gives sdk.ErrAlreadyExists, updating or deleting a missing
// object sdk.ErrNotFound, an update from a stale read ErrVersionConflict, a
// service name used by another service sdk.ErrAlreadyExists. fn decides what
// to do with those errors; if fn returns an error, Prepare returns it
// unchanged and no transaction.
//
// Several writes to one object are folded into one action per object
// (a create then an update is one create; a create then a delete is
// nothing), in the order the objects were first written. If fn changed
// nothing, Prepare returns a nil Transaction and a nil error: there is
// nothing to propose.
//
// now stamps meta.created_at and meta.updated_at. fn runs under the store's
// read lock: it must be quick (no I/O) and must not call Store methods.
func (s *Store) Prepare(now time.Time, fn func(tx *Tx) error) (*raftv1.Transaction, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ov := &overlay{t: newTables(), changes: make(map[changeKey]*change)}
	tx := &Tx{ReadTx: &ReadTx{t: s.t, ov: ov}, now: now, ov: ov}
	defer func() { tx.done = true }()
	if err := fn(tx); err != nil {
		return nil, err
	}
	return ov.transaction(), nil
}

// Tx is a write transaction being prepared. Its embedded ReadTx reads the
// store's state as changed by the Tx's own writes, so code written against
// *ReadTx can be handed tx.ReadTx and will see them. A Tx is used by one
// goroutine, and only while Prepare's fn runs.
//
// Create methods set meta.version to 0 and meta.created_at and
// meta.updated_at to Now. Update methods keep the meta.version of the object
// passed, which is the version the writer read and the one Apply will
// require, and set updated_at to Now. Delete methods delete by ID, whatever
// the version.
//
// Objects passed to the write methods become the Tx's: the caller must not
// modify or reuse them afterwards (they end up in the Transaction, and after
// it is applied, in the store). Build them with proto.Clone of what was read,
// never by modifying a read object.
type Tx struct {
	*ReadTx
	now time.Time
	ov  *overlay
	// done is set when Prepare returns; later writes fail.
	done bool
}

// Now returns the time this transaction stamps on the objects it writes, for
// writers that record it elsewhere too (such as a task's status.timestamp).
func (tx *Tx) Now() time.Time { return tx.now }

// CreateCluster creates the cluster object. There is only one: creating it
// again gives sdk.ErrAlreadyExists (same ID) or sdk.ErrInvalidArgument
// (another ID).
func (tx *Tx) CreateCluster(c *objectv1.Cluster) error {
	if err := tx.writable("create", "cluster", c == nil, c.GetId()); err != nil {
		return err
	}
	if cur := tx.Cluster(); cur != nil {
		return clusterExists(c.GetId(), cur.GetId())
	}
	c.Meta = tx.createdMeta()
	tx.ov.touchCluster(tx.t.cluster != nil)
	tx.ov.t.cluster = c
	return nil
}

// UpdateCluster replaces the cluster object, which must exist with c's ID
// at c's meta.version.
func (tx *Tx) UpdateCluster(c *objectv1.Cluster) error {
	if err := tx.writable("update", "cluster", c == nil, c.GetId()); err != nil {
		return err
	}
	cur := tx.Cluster()
	var err error
	switch {
	case cur == nil || cur.GetId() != c.GetId():
		err = sdk.ErrNotFound
	case c == cur:
		err = errInPlace
	default:
		err = checkVersion(c.GetMeta().GetVersion(), cur.GetMeta().GetVersion())
	}
	if err != nil {
		return fmt.Errorf("update cluster %s: %w", c.GetId(), err)
	}
	c.Meta = tx.updatedMeta(cur.GetMeta())
	tx.ov.touchCluster(tx.t.cluster != nil)
	tx.ov.t.cluster = c
	return nil
}

// CreateNode creates a node.
func (tx *Tx) CreateNode(n *objectv1.Node) error { return create(tx, nodeKind, n) }

// UpdateNode replaces a node, which must exist at n's meta.version.
func (tx *Tx) UpdateNode(n *objectv1.Node) error { return update(tx, nodeKind, n) }

// DeleteNode deletes a node. Its tasks are left to the orchestrator.
func (tx *Tx) DeleteNode(id string) error { return remove(tx, nodeKind, id) }

// CreateService creates a service. Its spec.annotations.name must be set and
// not used by another service.
func (tx *Tx) CreateService(s *objectv1.Service) error { return create(tx, serviceKind, s) }

// UpdateService replaces a service, which must exist at s's meta.version.
// A new name must not be used by another service.
func (tx *Tx) UpdateService(s *objectv1.Service) error { return update(tx, serviceKind, s) }

// DeleteService deletes a service. Its tasks are left to the orchestrator.
func (tx *Tx) DeleteService(id string) error { return remove(tx, serviceKind, id) }

// CreateTask creates a task.
func (tx *Tx) CreateTask(t *objectv1.Task) error { return create(tx, taskKind, t) }

// UpdateTask replaces a task, which must exist at t's meta.version.
func (tx *Tx) UpdateTask(t *objectv1.Task) error { return update(tx, taskKind, t) }

// DeleteTask deletes a task.
func (tx *Tx) DeleteTask(id string) error { return remove(tx, taskKind, id) }

// CreateNetwork creates a network. Its spec.annotations.name must be set
// and not used by another network.
func (tx *Tx) CreateNetwork(n *objectv1.Network) error { return create(tx, networkKind, n) }

// UpdateNetwork replaces a network, which must exist at n's meta.version.
// A new name must not be used by another network.
func (tx *Tx) UpdateNetwork(n *objectv1.Network) error { return update(tx, networkKind, n) }

// DeleteNetwork deletes a network. The store does not check that no
// service or task refers to it: the control API does.
func (tx *Tx) DeleteNetwork(id string) error { return remove(tx, networkKind, id) }

// CreateSecret creates a secret. Its spec.annotations.name must be set and
// not used by another secret, and its spec.data must be empty: the data is
// stored only sealed (s.sealed), and clear data gives sdk.ErrInvalidArgument.
func (tx *Tx) CreateSecret(s *objectv1.Secret) error { return create(tx, secretKind, s) }

// UpdateSecret replaces a secret, which must exist at s's meta.version. A
// new name must not be used by another secret; spec.data must be empty.
func (tx *Tx) UpdateSecret(s *objectv1.Secret) error { return update(tx, secretKind, s) }

// DeleteSecret deletes a secret. The store does not check that no service
// or task refers to it: the control API does.
func (tx *Tx) DeleteSecret(id string) error { return remove(tx, secretKind, id) }

// CreateConfig creates a config. Its spec.annotations.name must be set and
// not used by another config.
func (tx *Tx) CreateConfig(c *objectv1.Config) error { return create(tx, configKind, c) }

// UpdateConfig replaces a config, which must exist at c's meta.version.
// A new name must not be used by another config.
func (tx *Tx) UpdateConfig(c *objectv1.Config) error { return update(tx, configKind, c) }

// DeleteConfig deletes a config. The store does not check that no service
// or task refers to it: the control API does.
func (tx *Tx) DeleteConfig(id string) error { return remove(tx, configKind, id) }

func create[T object](tx *Tx, k *kindOf[T], v T) error {
	var zero T
	id := v.GetId()
	if err := tx.writable("create", k.name, v == zero, id); err != nil {
		return err
	}
	var err error
	switch {
	case get(tx.ReadTx, k, id) != zero:
		err = sdk.ErrAlreadyExists
	default:
		err = validate(tx, k, v)
	}
	if err != nil {
		return fmt.Errorf("create %s %s: %w", k.name, id, err)
	}
	k.setMeta(v, tx.createdMeta())
	tx.ov.touch(k.kind, id, k.table(tx.t).get(id) != zero)
	k.table(tx.ov.t).set(id, v)
	return nil
}

func update[T object](tx *Tx, k *kindOf[T], v T) error {
	var zero T
	id := v.GetId()
	if err := tx.writable("update", k.name, v == zero, id); err != nil {
		return err
	}
	cur := get(tx.ReadTx, k, id)
	var err error
	switch {
	case cur == zero:
		err = sdk.ErrNotFound
	case v == cur:
		err = errInPlace
	default:
		if err = checkVersion(v.GetMeta().GetVersion(), cur.GetMeta().GetVersion()); err == nil {
			err = validate(tx, k, v)
		}
	}
	if err != nil {
		return fmt.Errorf("update %s %s: %w", k.name, id, err)
	}
	k.setMeta(v, tx.updatedMeta(cur.GetMeta()))
	tx.ov.touch(k.kind, id, k.table(tx.t).get(id) != zero)
	k.table(tx.ov.t).set(id, v)
	return nil
}

func remove[T object](tx *Tx, k *kindOf[T], id string) error {
	var zero T
	if err := tx.writable("delete", k.name, false, id); err != nil {
		return err
	}
	if get(tx.ReadTx, k, id) == zero {
		return fmt.Errorf("delete %s %s: %w", k.name, id, sdk.ErrNotFound)
	}
	c := tx.ov.touch(k.kind, id, k.table(tx.t).get(id) != zero)
	c.deleted = c.existed
	k.table(tx.ov.t).set(id, zero)
	return nil
}

// writable checks what every write needs: a live Tx, an object, an ID.
func (tx *Tx) writable(verb, kind string, isNil bool, id string) error {
	switch {
	case tx.done:
		return fmt.Errorf("%s %s %s: %w", verb, kind, id, errTxDone)
	case isNil:
		return fmt.Errorf("%s %s: nil object: %w", verb, kind, sdk.ErrInvalidArgument)
	case id == "":
		return fmt.Errorf("%s %s: empty id: %w", verb, kind, sdk.ErrInvalidArgument)
	}
	return nil
}

// validate runs the kind's own checks, and for the named kinds, the unique
// name.
func validate[T object](tx *Tx, k *kindOf[T], v T) error {
	if err := validateStored(k, v); err != nil {
		return err
	}
	if k.byName == nil {
		return nil
	}
	var zero T
	name := k.nameOf(v)
	if other := byName(tx.ReadTx, k, name); other != zero && other.GetId() != v.GetId() {
		return fmt.Errorf("name %q is used by %s %s: %w", name, k.name, other.GetId(), sdk.ErrAlreadyExists)
	}
	return nil
}

func (tx *Tx) createdMeta() *objectv1.Meta {
	return &objectv1.Meta{CreatedAt: timestamppb.New(tx.now), UpdatedAt: timestamppb.New(tx.now)}
}

// updatedMeta keeps the version read (the one Apply checks) and the
// creation time. It is a new message: the caller's meta may be shared with
// a stored object.
func (tx *Tx) updatedMeta(cur *objectv1.Meta) *objectv1.Meta {
	return &objectv1.Meta{Version: cur.GetVersion(), CreatedAt: cur.GetCreatedAt(), UpdatedAt: timestamppb.New(tx.now)}
}

// overlay is a Tx's own writes: the objects it wrote, indexed like the
// store's, and the IDs it touched, which shadow the store's.
type overlay struct {
	// t holds the objects written and not deleted by the Tx.
	t *tables
	// cluster is set once the Tx wrote the cluster object.
	cluster *change
	changes map[changeKey]*change
	// order is every change, in the order objects were first written.
	order []*change
}

type changeKey struct {
	kind objKind
	id   string
}

// change is what a Tx did to one object.
type change struct {
	key changeKey
	// existed is whether the store held the object when the Tx began.
	existed bool
	// deleted is whether the Tx deleted the stored object; written again
	// after that, it is a new object (DELETE then CREATE).
	deleted bool
}

// shadows reports whether the Tx touched the object, so that reads must
// ignore the store's copy. It is false on a nil overlay (a plain ReadTx).
func (o *overlay) shadows(k objKind, id string) bool {
	if o == nil {
		return false
	}
	_, ok := o.changes[changeKey{k, id}]
	return ok
}

func (o *overlay) touch(k objKind, id string, existed bool) *change {
	key := changeKey{k, id}
	c, ok := o.changes[key]
	if !ok {
		c = &change{key: key, existed: existed}
		o.changes[key] = c
		o.order = append(o.order, c)
	}
	return c
}

func (o *overlay) touchCluster(existed bool) {
	if o.cluster == nil {
		o.cluster = &change{key: changeKey{kind: kindCluster}, existed: existed}
		o.order = append(o.order, o.cluster)
	}
}

// transaction turns the changes into actions, or nil when there are none.
func (o *overlay) transaction() *raftv1.Transaction {
	acts := make([]*raftv1.StoreAction, 0, len(o.order))
	for _, c := range o.order {
		switch c.key.kind {
		case kindCluster:
			kind := raftv1.ActionKind_ACTION_KIND_CREATE
			if c.existed {
				kind = raftv1.ActionKind_ACTION_KIND_UPDATE
			}
			acts = append(acts, &raftv1.StoreAction{Kind: kind, Target: &raftv1.StoreAction_Cluster{Cluster: o.t.cluster}})
		case kindNode:
			acts = appendActions(acts, o, nodeKind, c)
		case kindService:
			acts = appendActions(acts, o, serviceKind, c)
		case kindTask:
			acts = appendActions(acts, o, taskKind, c)
		case kindNetwork:
			acts = appendActions(acts, o, networkKind, c)
		case kindSecret:
			acts = appendActions(acts, o, secretKind, c)
		case kindConfig:
			acts = appendActions(acts, o, configKind, c)
		}
	}
	if len(acts) == 0 {
		return nil
	}
	return &raftv1.Transaction{Actions: acts}
}

func appendActions[T object](acts []*raftv1.StoreAction, o *overlay, k *kindOf[T], c *change) []*raftv1.StoreAction {
	var zero T
	cur := k.table(o.t).get(c.key.id)
	if c.existed && (cur == zero || c.deleted) {
		// A delete carries no version: deleting by ID is unconditional, as
		// a user removing a service or the orchestrator removing a task
		// means it whatever changed since it was read.
		acts = append(acts, k.action(raftv1.ActionKind_ACTION_KIND_DELETE, k.stub(c.key.id)))
	}
	if cur != zero {
		kind := raftv1.ActionKind_ACTION_KIND_UPDATE
		if !c.existed || c.deleted {
			kind = raftv1.ActionKind_ACTION_KIND_CREATE
		}
		acts = append(acts, k.action(kind, cur))
	}
	return acts
}
