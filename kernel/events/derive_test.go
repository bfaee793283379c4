package events

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

var (
	t0 = time.Date(2026, 12, 6, 21, 30, 0, 0, time.UTC)
	t1 = t0.Add(time.Second)
)

const (
	create = raftv1.ActionKind_ACTION_KIND_CREATE
	update = raftv1.ActionKind_ACTION_KIND_UPDATE
	remove = raftv1.ActionKind_ACTION_KIND_DELETE
)

func meta(t time.Time) *objectv1.Meta { return &objectv1.Meta{UpdatedAt: timestamppb.New(t)} }

func service(replicas int64, image string, at time.Time) *objectv1.Service {
	return &objectv1.Service{Id: "s1", Meta: meta(at), Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "web"},
		Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: image}},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}},
	}}
}

func task(slot uint64, st objectv1.TaskState, exit int32, errMsg string, at time.Time) *objectv1.Task {
	return &objectv1.Task{Id: "t1", Meta: meta(at), ServiceId: "s1", Slot: slot, NodeId: "n1",
		ServiceAnnotations: &objectv1.Annotations{Name: "web"}, DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
		Spec:   &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "hello:1"}},
		Status: &objectv1.TaskStatus{State: st, ExitCode: exit, Err: errMsg}}
}

func node(st objectv1.NodeState, at time.Time) *objectv1.Node {
	return &objectv1.Node{Id: "n1", Meta: meta(at), Role: objectv1.NodeRole_NODE_ROLE_WORKER,
		Spec:        &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
		Description: &objectv1.NodeDescription{Hostname: "worker-1"},
		Status:      &objectv1.NodeStatus{State: st}}
}

// TestDerive: each kind of change gives its action, name, time and
// attributes, and nothing of a secret but its name and ID.
func TestDerive(t *testing.T) {
	clock := t1.Add(time.Hour)
	running, failed := objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskState_TASK_STATE_FAILED
	ready, down := objectv1.NodeState_NODE_STATE_READY, objectv1.NodeState_NODE_STATE_DOWN
	tests := []struct {
		name string
		in   state.Event
		want *controlv1.Event
	}{
		{"service create", state.Event{Kind: create, Service: service(3, "hello:1", t0)},
			&controlv1.Event{Time: timestamppb.New(t0), Type: "service", Action: "create", Id: "s1", Name: "web",
				Attributes: map[string]string{"image": "hello:1", "replicas": "3"}}},
		{"service scale", state.Event{Kind: update, Service: service(5, "hello:1", t1), OldService: service(3, "hello:1", t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "service", Action: "scale", Id: "s1", Name: "web",
				Attributes: map[string]string{"image": "hello:1", "replicas": "5", "old_replicas": "3"}}},
		{"service update", state.Event{Kind: update, Service: service(3, "hello:2", t1), OldService: service(3, "hello:1", t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "service", Action: "update", Id: "s1", Name: "web",
				Attributes: map[string]string{"image": "hello:2", "replicas": "3"}}},
		{"service remove", state.Event{Kind: remove, Service: service(3, "hello:1", t0)},
			&controlv1.Event{Time: timestamppb.New(clock), Type: "service", Action: "remove", Id: "s1", Name: "web",
				Attributes: map[string]string{"image": "hello:1", "replicas": "3"}}},
		{"task running", state.Event{Kind: update, Task: task(2, running, 0, "", t1), OldTask: task(2, objectv1.TaskState_TASK_STATE_STARTING, 0, "", t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "task", Action: "running", Id: "t1", Name: "web.2",
				Attributes: map[string]string{"service": "web", "service_id": "s1", "node_id": "n1", "image": "hello:1",
					"state": "running", "old_state": "starting", "desired_state": "running"}}},
		{"task failed", state.Event{Kind: update, Task: task(2, failed, 3, "exit status 3", t1), OldTask: task(2, running, 0, "", t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "task", Action: "failed", Id: "t1", Name: "web.2",
				Attributes: map[string]string{"service": "web", "service_id": "s1", "node_id": "n1", "image": "hello:1",
					"state": "failed", "old_state": "running", "desired_state": "running", "exit_code": "3", "error": "exit status 3"}}},
		{"global task update", state.Event{Kind: update, Task: task(0, running, 0, "", t1), OldTask: task(0, running, 0, "", t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "task", Action: "update", Id: "t1", Name: "web.n1",
				Attributes: map[string]string{"service": "web", "service_id": "s1", "node_id": "n1", "image": "hello:1",
					"state": "running", "desired_state": "running"}}},
		{"node down", state.Event{Kind: update, Node: node(down, t1), OldNode: node(ready, t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "node", Action: "down", Id: "n1", Name: "worker-1",
				Attributes: map[string]string{"state": "down", "old_state": "ready", "role": "worker", "availability": "active"}}},
		{"node update", state.Event{Kind: update, Node: node(ready, t1), OldNode: node(ready, t0)},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "node", Action: "update", Id: "n1", Name: "worker-1",
				Attributes: map[string]string{"state": "ready", "role": "worker", "availability": "active"}}},
		{"secret create", state.Event{Kind: create, Secret: &objectv1.Secret{Id: "x1", Meta: meta(t0),
			Spec:   &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: "db-password"}},
			Sealed: &objectv1.SealedData{Ciphertext: []byte("sealed")}, Digest: "sha256:abc", Size: 6}},
			&controlv1.Event{Time: timestamppb.New(t0), Type: "secret", Action: "create", Id: "x1", Name: "db-password"}},
		{"network remove", state.Event{Kind: remove, Network: &objectv1.Network{Id: "w1", Meta: meta(t0),
			Spec: &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: "backend"}}}},
			&controlv1.Event{Time: timestamppb.New(clock), Type: "network", Action: "remove", Id: "w1", Name: "backend"}},
		{"config update", state.Event{Kind: update, Config: &objectv1.Config{Id: "c1", Meta: meta(t1),
			Spec: &objectv1.ConfigSpec{Annotations: &objectv1.Annotations{Name: "app.toml"}, Data: []byte("x")}}},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "config", Action: "update", Id: "c1", Name: "app.toml"}},
		{"cluster update", state.Event{Kind: update, Cluster: &objectv1.Cluster{Id: "k1", Meta: meta(t1)}},
			&controlv1.Event{Time: timestamppb.New(t1), Type: "cluster", Action: "update", Id: "k1"}},
	}
	for _, tt := range tests {
		got := Derive(tt.in, clock)
		if !proto.Equal(got, tt.want) {
			t.Errorf("%s: Derive = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got := Derive(state.Event{Kind: create}, clock); got != nil {
		t.Errorf("Derive(no object) = %v, want nil", got)
	}
}
