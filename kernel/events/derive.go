package events

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// The object types an event names.
const (
	TypeService = "service"
	TypeNode    = "node"
	TypeTask    = "task"
	TypeNetwork = "network"
	TypeSecret  = "secret"
	TypeConfig  = "config"
	TypeCluster = "cluster"
)

// Types lists every event type, for validation and help.
var Types = []string{TypeService, TypeNode, TypeTask, TypeNetwork, TypeSecret, TypeConfig, TypeCluster}

// The actions every type has. A service also has ActionScale; a node's and
// a task's state changes are named for the new state (see stateAction).
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionRemove = "remove"
	ActionScale  = "scale"
)

// Derive turns one applied change into its event, or nil for a change of
// no kind it knows. clock is the time given to a removal, which carries
// none of its own (see Event.time in events.proto). Derive reads only e:
// every manager derives the same event from the same change.
//
// The index and position are the caller's to set.
func Derive(e state.Event, clock time.Time) *controlv1.Event {
	var ev *controlv1.Event
	switch {
	case e.Service != nil:
		ev = deriveService(e.Kind, e.Service, e.OldService)
	case e.Task != nil:
		ev = deriveTask(e.Kind, e.Task, e.OldTask)
	case e.Node != nil:
		ev = deriveNode(e.Kind, e.Node, e.OldNode)
	case e.Network != nil:
		ev = plain(TypeNetwork, e.Kind, e.Network.GetId(), e.Network.GetSpec().GetAnnotations().GetName(), e.Network.GetMeta())
	case e.Secret != nil:
		// Only the name and ID: the sealed data, its digest and size stay out.
		ev = plain(TypeSecret, e.Kind, e.Secret.GetId(), e.Secret.GetSpec().GetAnnotations().GetName(), e.Secret.GetMeta())
	case e.Config != nil:
		ev = plain(TypeConfig, e.Kind, e.Config.GetId(), e.Config.GetSpec().GetAnnotations().GetName(), e.Config.GetMeta())
	case e.Cluster != nil:
		ev = plain(TypeCluster, e.Kind, e.Cluster.GetId(), "", e.Cluster.GetMeta())
	default:
		return nil
	}
	if ev.Action == ActionRemove || ev.Time == nil {
		ev.Time = timestamppb.New(clock)
	}
	return ev
}

// kindAction is the action of a change that says nothing more specific.
func kindAction(k raftv1.ActionKind) string {
	switch k {
	case raftv1.ActionKind_ACTION_KIND_CREATE:
		return ActionCreate
	case raftv1.ActionKind_ACTION_KIND_DELETE:
		return ActionRemove
	}
	return ActionUpdate
}

func plain(typ string, k raftv1.ActionKind, id, name string, m *objectv1.Meta) *controlv1.Event {
	return &controlv1.Event{Time: m.GetUpdatedAt(), Type: typ, Action: kindAction(k), Id: id, Name: name}
}

func deriveService(k raftv1.ActionKind, s, old *objectv1.Service) *controlv1.Event {
	ev := plain(TypeService, k, s.GetId(), s.GetSpec().GetAnnotations().GetName(), s.GetMeta())
	ev.Attributes = map[string]string{}
	if img := s.GetSpec().GetTask().GetContainer().GetImage(); img != "" {
		ev.Attributes["image"] = img
	}
	if r := s.GetSpec().GetReplicated(); r != nil {
		ev.Attributes["replicas"] = strconv.FormatInt(r.GetReplicas(), 10)
		if or := old.GetSpec().GetReplicated(); k == raftv1.ActionKind_ACTION_KIND_UPDATE && or != nil && or.GetReplicas() != r.GetReplicas() {
			ev.Action = ActionScale
			ev.Attributes["old_replicas"] = strconv.FormatInt(or.GetReplicas(), 10)
		}
	}
	if us := s.GetUpdateStatus(); us != nil && us.GetState() != objectv1.UpdateState_UPDATE_STATE_UNSPECIFIED {
		ev.Attributes["update_state"] = enumName(us.GetState().String(), "UPDATE_STATE_")
	}
	return ev
}

// TaskName is a task's name as docker shows it: SERVICE.SLOT, or
// SERVICE.NODE_ID for a global service's task (slot 0).
func TaskName(t *objectv1.Task) string {
	svc := t.GetServiceAnnotations().GetName()
	if svc == "" {
		svc = t.GetServiceId()
	}
	if t.GetSlot() == 0 {
		return svc + "." + t.GetNodeId()
	}
	return svc + "." + strconv.FormatUint(t.GetSlot(), 10)
}

func deriveTask(k raftv1.ActionKind, t, old *objectv1.Task) *controlv1.Event {
	ev := plain(TypeTask, k, t.GetId(), TaskName(t), t.GetMeta())
	st := t.GetStatus()
	a := map[string]string{
		"service":       t.GetServiceAnnotations().GetName(),
		"service_id":    t.GetServiceId(),
		"state":         stateName(st.GetState()),
		"desired_state": stateName(t.GetDesiredState()),
	}
	if n := t.GetNodeId(); n != "" {
		a["node_id"] = n
	}
	if img := t.GetSpec().GetContainer().GetImage(); img != "" {
		a["image"] = img
	}
	if k == raftv1.ActionKind_ACTION_KIND_UPDATE && old.GetStatus().GetState() != st.GetState() {
		ev.Action = stateName(st.GetState())
		a["old_state"] = stateName(old.GetStatus().GetState())
	}
	if s := st.GetState(); s == objectv1.TaskState_TASK_STATE_COMPLETE || s == objectv1.TaskState_TASK_STATE_FAILED {
		a["exit_code"] = strconv.Itoa(int(st.GetExitCode()))
	}
	if e := st.GetErr(); e != "" {
		a["error"] = e
	}
	if m := st.GetMessage(); m != "" {
		a["message"] = m
	}
	ev.Attributes = a
	return ev
}

func deriveNode(k raftv1.ActionKind, n, old *objectv1.Node) *controlv1.Event {
	name := n.GetDescription().GetHostname()
	if name == "" {
		name = n.GetSpec().GetAnnotations().GetName()
	}
	ev := plain(TypeNode, k, n.GetId(), name, n.GetMeta())
	a := map[string]string{
		"state":        nodeStateName(n.GetStatus().GetState()),
		"role":         enumName(n.GetRole().String(), "NODE_ROLE_"),
		"availability": enumName(n.GetSpec().GetAvailability().String(), "NODE_AVAILABILITY_"),
	}
	if k == raftv1.ActionKind_ACTION_KIND_UPDATE && old.GetStatus().GetState() != n.GetStatus().GetState() {
		ev.Action = nodeStateName(n.GetStatus().GetState())
		a["old_state"] = nodeStateName(old.GetStatus().GetState())
	}
	if m := n.GetStatus().GetMessage(); m != "" {
		a["message"] = m
	}
	ev.Attributes = a
	return ev
}

func stateName(s objectv1.TaskState) string { return enumName(s.String(), "TASK_STATE_") }

func nodeStateName(s objectv1.NodeState) string { return enumName(s.String(), "NODE_STATE_") }

// enumName is an enum value's name without its prefix, in lower case:
// TASK_STATE_RUNNING is "running".
func enumName(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }
