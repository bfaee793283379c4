package state

import (
	"fmt"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// objKind names an object kind in a Tx's change log.
type objKind uint8

const (
	kindCluster objKind = iota + 1
	kindNode
	kindService
	kindTask
	kindNetwork
	kindSecret
	kindConfig
)

// kindOf is what the generic Tx and Apply code needs to know about the
// node, service, task, network, secret and config kinds. The cluster, a
// singleton, is coded apart.
type kindOf[T object] struct {
	kind objKind
	// name is the kind in error messages.
	name string
	// table selects the kind's table.
	table func(*tables) *table[T]
	// setMeta replaces v's meta.
	setMeta func(v T, m *objectv1.Meta)
	// stub is a delete target: an object carrying only its ID.
	stub func(id string) T
	// action wraps v into a StoreAction.
	action func(k raftv1.ActionKind, v T) *raftv1.StoreAction
	// event fills the kind's fields of an Event.
	event func(e *Event, v, old T)
	// validate, when set, checks what the store itself requires of an
	// object it holds (beyond a non-empty ID).
	validate func(v T) error
	// nameOf and byName, set on the kinds whose spec.annotations.name is
	// unique among the kind, give an object's name and the index by name.
	nameOf func(v T) string
	byName func(*tables) *keyIndex[string, T]
}

// requireName is the validate of the kinds whose name is their handle.
func requireName(name string) error {
	if name == "" {
		return fmt.Errorf("spec.annotations.name is empty: %w", sdk.ErrInvalidArgument)
	}
	return nil
}

var nodeKind = &kindOf[*objectv1.Node]{
	kind:    kindNode,
	name:    "node",
	table:   func(t *tables) *table[*objectv1.Node] { return &t.nodes },
	setMeta: func(v *objectv1.Node, m *objectv1.Meta) { v.Meta = m },
	stub:    func(id string) *objectv1.Node { return &objectv1.Node{Id: id} },
	action: func(k raftv1.ActionKind, v *objectv1.Node) *raftv1.StoreAction {
		return &raftv1.StoreAction{Kind: k, Target: &raftv1.StoreAction_Node{Node: v}}
	},
	event: func(e *Event, v, old *objectv1.Node) { e.Node, e.OldNode = v, old },
}

var serviceKind = &kindOf[*objectv1.Service]{
	kind:    kindService,
	name:    "service",
	table:   func(t *tables) *table[*objectv1.Service] { return &t.services },
	setMeta: func(v *objectv1.Service, m *objectv1.Meta) { v.Meta = m },
	stub:    func(id string) *objectv1.Service { return &objectv1.Service{Id: id} },
	action: func(k raftv1.ActionKind, v *objectv1.Service) *raftv1.StoreAction {
		return &raftv1.StoreAction{Kind: k, Target: &raftv1.StoreAction_Service{Service: v}}
	},
	event: func(e *Event, v, old *objectv1.Service) { e.Service, e.OldService = v, old },
	// The name is the service's unique handle (ServiceByName, the CLI); a
	// service without one could never be told apart from another.
	validate: func(v *objectv1.Service) error { return requireName(serviceName(v)) },
	nameOf:   serviceName,
	byName:   func(t *tables) *keyIndex[string, *objectv1.Service] { return t.servicesByName },
}

var taskKind = &kindOf[*objectv1.Task]{
	kind:    kindTask,
	name:    "task",
	table:   func(t *tables) *table[*objectv1.Task] { return &t.tasks },
	setMeta: func(v *objectv1.Task, m *objectv1.Meta) { v.Meta = m },
	stub:    func(id string) *objectv1.Task { return &objectv1.Task{Id: id} },
	action: func(k raftv1.ActionKind, v *objectv1.Task) *raftv1.StoreAction {
		return &raftv1.StoreAction{Kind: k, Target: &raftv1.StoreAction_Task{Task: v}}
	},
	event: func(e *Event, v, old *objectv1.Task) { e.Task, e.OldTask = v, old },
}

var networkKind = &kindOf[*objectv1.Network]{
	kind:    kindNetwork,
	name:    "network",
	table:   func(t *tables) *table[*objectv1.Network] { return &t.networks },
	setMeta: func(v *objectv1.Network, m *objectv1.Meta) { v.Meta = m },
	stub:    func(id string) *objectv1.Network { return &objectv1.Network{Id: id} },
	action: func(k raftv1.ActionKind, v *objectv1.Network) *raftv1.StoreAction {
		return &raftv1.StoreAction{Kind: k, Target: &raftv1.StoreAction_Network{Network: v}}
	},
	event: func(e *Event, v, old *objectv1.Network) { e.Network, e.OldNetwork = v, old },
	// Like a service's, the name is the network's handle: services join
	// networks by name.
	validate: func(v *objectv1.Network) error { return requireName(networkName(v)) },
	nameOf:   networkName,
	byName:   func(t *tables) *keyIndex[string, *objectv1.Network] { return t.networksByName },
}

var secretKind = &kindOf[*objectv1.Secret]{
	kind:    kindSecret,
	name:    "secret",
	table:   func(t *tables) *table[*objectv1.Secret] { return &t.secrets },
	setMeta: func(v *objectv1.Secret, m *objectv1.Meta) { v.Meta = m },
	stub:    func(id string) *objectv1.Secret { return &objectv1.Secret{Id: id} },
	action: func(k raftv1.ActionKind, v *objectv1.Secret) *raftv1.StoreAction {
		return &raftv1.StoreAction{Kind: k, Target: &raftv1.StoreAction_Secret{Secret: v}}
	},
	event: func(e *Event, v, old *objectv1.Secret) { e.Secret, e.OldSecret = v, old },
	// Tasks refer to secrets by name. The store holds only the sealed data:
	// clear data here would be in the Raft log and every snapshot, on every
	// manager's disk, so a writer that forgot to seal it is refused rather
	// than trusted.
	validate: func(v *objectv1.Secret) error {
		if len(v.GetSpec().GetData()) != 0 {
			return fmt.Errorf("spec.data holds clear data; the store takes only sealed data: %w", sdk.ErrInvalidArgument)
		}
		return requireName(secretName(v))
	},
	nameOf: secretName,
	byName: func(t *tables) *keyIndex[string, *objectv1.Secret] { return t.secretsByName },
}

var configKind = &kindOf[*objectv1.Config]{
	kind:    kindConfig,
	name:    "config",
	table:   func(t *tables) *table[*objectv1.Config] { return &t.configs },
	setMeta: func(v *objectv1.Config, m *objectv1.Meta) { v.Meta = m },
	stub:    func(id string) *objectv1.Config { return &objectv1.Config{Id: id} },
	action: func(k raftv1.ActionKind, v *objectv1.Config) *raftv1.StoreAction {
		return &raftv1.StoreAction{Kind: k, Target: &raftv1.StoreAction_Config{Config: v}}
	},
	event: func(e *Event, v, old *objectv1.Config) { e.Config, e.OldConfig = v, old },
	// Tasks refer to configs by name.
	validate: func(v *objectv1.Config) error { return requireName(configName(v)) },
	nameOf:   configName,
	byName:   func(t *tables) *keyIndex[string, *objectv1.Config] { return t.configsByName },
}
