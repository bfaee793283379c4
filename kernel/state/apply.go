package state

import (
	"fmt"
	"slices"
	"time"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// ErrVersionConflict is the error of an update (or versioned delete) whose
// object changed since the writer read it. It is of kind
// sdk.ErrFailedPrecondition; the writer re-reads and retries.
var ErrVersionConflict = fmt.Errorf("version conflict: %w", sdk.ErrFailedPrecondition)

// Apply applies the command committed at Raft index index. It is
// deterministic: every replica applying the same commands from the same
// state reaches the same state (see the package documentation).
//
// Each transaction applies whole or not at all. The result has one entry per
// transaction of cmd: nil if it applied, else why not: sdk.ErrNotFound,
// sdk.ErrAlreadyExists (an ID, or the name of a service, network, secret or
// config), ErrVersionConflict, or sdk.ErrInvalidArgument for a malformed
// action (no or unknown kind, no target, an empty ID, a named kind without a
// name, a secret with clear data, a second cluster object, a cluster
// delete). Every object applied gets meta.version = index.
//
// index must be above the last applied index (Raft indexes only grow); if it
// is not, nothing applies and every transaction gets an
// sdk.ErrFailedPrecondition error. Otherwise the store's index becomes index
// even if every transaction failed: the command itself was applied.
//
// Apply takes ownership of cmd: its objects are stored as they are, and
// those of failed transactions may have been modified. Watchers get one
// Event per applied action, after the whole command, and never slow Apply.
func (s *Store) Apply(index uint64, cmd *raftv1.Command) []error {
	txns := cmd.GetTransactions()
	errs := make([]error, len(txns))
	n := 0
	for _, txn := range txns {
		n += len(txn.GetActions())
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.t.index {
		err := fmt.Errorf("apply raft index %d: not after the last applied index %d: %w", index, s.t.index, sdk.ErrFailedPrecondition)
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	// The events double as the undo log of a failing transaction.
	events := make([]Event, 0, n)
	for i, txn := range txns {
		start := len(events)
		events, errs[i] = s.t.applyTxn(index, txn, events)
		if errs[i] != nil {
			s.t.undo(events[start:])
			clear(events[start:])
			events = events[:start]
		}
	}
	s.t.index = index
	s.cluster.Store(s.t.cluster)
	s.noteEntered(events)
	s.publish(events)
	return errs
}

// noteEntered records the time of the task state changes among events.
func (s *Store) noteEntered(events []Event) {
	var now int64
	for _, e := range events {
		if e.Task == nil || e.Kind == raftv1.ActionKind_ACTION_KIND_DELETE {
			continue
		}
		st := e.Task.GetStatus().GetState()
		if st < 0 || int(st) >= len(s.entered) || (e.OldTask != nil && e.OldTask.GetStatus().GetState() == st) {
			continue
		}
		if now == 0 {
			now = time.Now().UnixNano()
		}
		s.entered[st].Store(now)
	}
}

// applyTxn applies txn's actions, appending one event each to events. On
// error, the events of the actions already applied are still appended, for
// the caller to undo.
func (t *tables) applyTxn(index uint64, txn *raftv1.Transaction, events []Event) ([]Event, error) {
	start := len(events)
	if id := txn.GetRequestId(); id != "" {
		if _, done := t.requests.get(id); done {
			return events, fmt.Errorf("request %s: %w", id, ErrDuplicateRequest)
		}
	}
	for i, a := range txn.GetActions() {
		e := Event{Index: index, Kind: a.GetKind()}
		if err := t.applyAction(index, a, &e); err != nil {
			return events, fmt.Errorf("action %d: %w", i, err)
		}
		events = append(events, e)
	}
	// Names are checked once every action is in, so that a transaction may
	// move a name from one service to another, or swap two names.
	for i, e := range events[start:] {
		if err := t.checkNames(e); err != nil {
			return events, fmt.Errorf("action %d: %w", i, err)
		}
	}
	if id := txn.GetRequestId(); id != "" {
		t.requests.add(id, Request{Index: index, ObjectID: FirstObjectID(txn)})
	}
	return events, nil
}

func (t *tables) applyAction(index uint64, a *raftv1.StoreAction, e *Event) error {
	kind := a.GetKind()
	switch kind {
	case raftv1.ActionKind_ACTION_KIND_CREATE, raftv1.ActionKind_ACTION_KIND_UPDATE, raftv1.ActionKind_ACTION_KIND_DELETE:
	default:
		return fmt.Errorf("action kind %d: %w", kind, sdk.ErrInvalidArgument)
	}
	switch target := a.GetTarget().(type) {
	case *raftv1.StoreAction_Cluster:
		return t.applyCluster(index, kind, target.Cluster, e)
	case *raftv1.StoreAction_Node:
		return applyObject(t, nodeKind, index, kind, target.Node, e)
	case *raftv1.StoreAction_Service:
		return applyObject(t, serviceKind, index, kind, target.Service, e)
	case *raftv1.StoreAction_Task:
		return applyObject(t, taskKind, index, kind, target.Task, e)
	case *raftv1.StoreAction_Network:
		return applyObject(t, networkKind, index, kind, target.Network, e)
	case *raftv1.StoreAction_Secret:
		return applyObject(t, secretKind, index, kind, target.Secret, e)
	case *raftv1.StoreAction_Config:
		return applyObject(t, configKind, index, kind, target.Config, e)
	}
	return fmt.Errorf("%s: no target: %w", verb(kind), sdk.ErrInvalidArgument)
}

func applyObject[T object](t *tables, k *kindOf[T], index uint64, kind raftv1.ActionKind, v T, e *Event) error {
	var zero T
	if v == zero {
		return fmt.Errorf("%s %s: no target: %w", verb(kind), k.name, sdk.ErrInvalidArgument)
	}
	id := v.GetId()
	if id == "" {
		return fmt.Errorf("%s %s: empty id: %w", verb(kind), k.name, sdk.ErrInvalidArgument)
	}
	if err := applyChecked(k.table(t), k, index, kind, v, e); err != nil {
		return fmt.Errorf("%s %s %s: %w", verb(kind), k.name, id, err)
	}
	return nil
}

// applyChecked applies one action on an object with an ID, or returns why
// not (the caller adds which action).
func applyChecked[T object](tbl *table[T], k *kindOf[T], index uint64, kind raftv1.ActionKind, v T, e *Event) error {
	var zero T
	id := v.GetId()
	old := tbl.get(id)
	switch kind {
	case raftv1.ActionKind_ACTION_KIND_CREATE:
		if old != zero {
			return sdk.ErrAlreadyExists
		}
		if err := validateStored(k, v); err != nil {
			return err
		}
		m := v.GetMeta()
		k.setMeta(v, &objectv1.Meta{Version: index, CreatedAt: m.GetCreatedAt(), UpdatedAt: m.GetUpdatedAt()})
		tbl.set(id, v)
		k.event(e, v, zero)
	case raftv1.ActionKind_ACTION_KIND_UPDATE:
		if old == zero {
			return sdk.ErrNotFound
		}
		if v == old {
			return errInPlace
		}
		if err := checkVersion(v.GetMeta().GetVersion(), old.GetMeta().GetVersion()); err != nil {
			return err
		}
		if err := validateStored(k, v); err != nil {
			return err
		}
		// created_at is set once: an update cannot rewrite it.
		k.setMeta(v, &objectv1.Meta{Version: index, CreatedAt: old.GetMeta().GetCreatedAt(), UpdatedAt: v.GetMeta().GetUpdatedAt()})
		tbl.set(id, v)
		k.event(e, v, old)
	case raftv1.ActionKind_ACTION_KIND_DELETE:
		if old == zero {
			return sdk.ErrNotFound
		}
		if got := v.GetMeta().GetVersion(); got != 0 {
			if err := checkVersion(got, old.GetMeta().GetVersion()); err != nil {
				return err
			}
		}
		tbl.set(id, zero)
		k.event(e, old, zero)
	}
	return nil
}

func validateStored[T object](k *kindOf[T], v T) error {
	if k.validate == nil {
		return nil
	}
	return k.validate(v)
}

// applyCluster applies an action on the cluster object, of which there is
// at most one and which is never deleted.
func (t *tables) applyCluster(index uint64, kind raftv1.ActionKind, c *objectv1.Cluster, e *Event) error {
	if c == nil {
		return fmt.Errorf("%s cluster: no target: %w", verb(kind), sdk.ErrInvalidArgument)
	}
	id := c.GetId()
	if id == "" {
		return fmt.Errorf("%s cluster: empty id: %w", verb(kind), sdk.ErrInvalidArgument)
	}
	old := t.cluster
	switch kind {
	case raftv1.ActionKind_ACTION_KIND_CREATE:
		if old != nil {
			return clusterExists(id, old.GetId())
		}
		m := c.GetMeta()
		c.Meta = &objectv1.Meta{Version: index, CreatedAt: m.GetCreatedAt(), UpdatedAt: m.GetUpdatedAt()}
		t.cluster = c
		e.Cluster = c
		return nil
	case raftv1.ActionKind_ACTION_KIND_UPDATE:
		var err error
		switch {
		case old == nil || old.GetId() != id:
			err = sdk.ErrNotFound
		case c == old:
			err = errInPlace
		default:
			err = checkVersion(c.GetMeta().GetVersion(), old.GetMeta().GetVersion())
		}
		if err != nil {
			return fmt.Errorf("update cluster %s: %w", id, err)
		}
		c.Meta = &objectv1.Meta{Version: index, CreatedAt: old.GetMeta().GetCreatedAt(), UpdatedAt: c.GetMeta().GetUpdatedAt()}
		t.cluster = c
		e.Cluster, e.OldCluster = c, old
		return nil
	}
	// The cluster object holds the root CA and every cluster-wide setting;
	// no command may remove it.
	return fmt.Errorf("delete cluster %s: the cluster object cannot be deleted: %w", id, sdk.ErrInvalidArgument)
}

// checkNames checks, at the end of a transaction, that the named object an
// event stored still holds its name alone among its kind.
func (t *tables) checkNames(e Event) error {
	switch {
	case e.Service != nil:
		return checkName(t, serviceKind, e.Kind, e.Service)
	case e.Network != nil:
		return checkName(t, networkKind, e.Kind, e.Network)
	case e.Secret != nil:
		return checkName(t, secretKind, e.Kind, e.Secret)
	case e.Config != nil:
		return checkName(t, configKind, e.Kind, e.Config)
	}
	return nil
}

func checkName[T object](t *tables, k *kindOf[T], kind raftv1.ActionKind, v T) error {
	// A later action of the transaction may have replaced or deleted v: the
	// check is for the object stored now, by its own event.
	if kind == raftv1.ActionKind_ACTION_KIND_DELETE || k.table(t).get(v.GetId()) != v {
		return nil
	}
	name := k.nameOf(v)
	set := k.byName(t).get(name).list
	if len(set) <= 1 {
		return nil
	}
	others := make([]string, 0, len(set)-1)
	for _, e := range set {
		if id := e.v.GetId(); id != v.GetId() {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	return fmt.Errorf("%s %s %s: name %q is used by %s %s: %w", verb(kind), k.name, v.GetId(), name, k.name, others[0], sdk.ErrAlreadyExists)
}

// undo reverts the events of a failed transaction, last first.
func (t *tables) undo(events []Event) {
	for i := len(events) - 1; i >= 0; i-- {
		e := &events[i]
		switch {
		case e.Cluster != nil:
			t.cluster = e.OldCluster
		case e.Node != nil:
			undoObject(&t.nodes, e.Kind, e.Node, e.OldNode)
		case e.Service != nil:
			undoObject(&t.services, e.Kind, e.Service, e.OldService)
		case e.Task != nil:
			undoObject(&t.tasks, e.Kind, e.Task, e.OldTask)
		case e.Network != nil:
			undoObject(&t.networks, e.Kind, e.Network, e.OldNetwork)
		case e.Secret != nil:
			undoObject(&t.secrets, e.Kind, e.Secret, e.OldSecret)
		case e.Config != nil:
			undoObject(&t.configs, e.Kind, e.Config, e.OldConfig)
		}
	}
}

func undoObject[T object](tbl *table[T], kind raftv1.ActionKind, v, old T) {
	var zero T
	switch kind {
	case raftv1.ActionKind_ACTION_KIND_CREATE:
		tbl.set(v.GetId(), zero)
	case raftv1.ActionKind_ACTION_KIND_UPDATE:
		tbl.set(v.GetId(), old)
	case raftv1.ActionKind_ACTION_KIND_DELETE:
		tbl.set(v.GetId(), v)
	}
}

// checkVersion refuses a write from a stale read.
func checkVersion(got, want uint64) error {
	if got != want {
		return fmt.Errorf("read at version %d, stored at version %d: %w", got, want, ErrVersionConflict)
	}
	return nil
}

// errInPlace refuses an update whose object is the one read, modified in
// place: that object is shared with every reader, and changing it bypasses
// Raft. The writer must modify a proto.Clone.
var errInPlace = fmt.Errorf("the object is the stored one, modified in place; write a proto.Clone: %w", sdk.ErrInvalidArgument)

// clusterExists is the error of creating a second cluster object.
func clusterExists(id, existing string) error {
	if id == existing {
		return fmt.Errorf("create cluster %s: %w", id, sdk.ErrAlreadyExists)
	}
	// Another ID is not a race between two creators of the same thing but a
	// malformed request: there is only ever one cluster.
	return fmt.Errorf("create cluster %s: cluster %s exists and there is only one: %w", id, existing, sdk.ErrInvalidArgument)
}

func verb(k raftv1.ActionKind) string {
	switch k {
	case raftv1.ActionKind_ACTION_KIND_CREATE:
		return "create"
	case raftv1.ActionKind_ACTION_KIND_UPDATE:
		return "update"
	case raftv1.ActionKind_ACTION_KIND_DELETE:
		return "delete"
	}
	return "apply"
}
