package controlapi

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestApplyServiceDefaultsMinimal(t *testing.T) {
	spec := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "web"},
		Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx"}},
		Endpoint:    &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{TargetPort: 80, PublishedPort: 8080}}},
	}
	ApplyServiceDefaults(spec)
	want := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "web"},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: "nginx", StopGracePeriod: durationpb.New(10 * time.Second)},
			Restart: &objectv1.RestartPolicy{
				Condition: objectv1.RestartCondition_RESTART_CONDITION_ANY,
				Delay:     durationpb.New(5 * time.Second),
			},
		},
		Update: &objectv1.UpdateConfig{
			Parallelism:   1,
			FailureAction: objectv1.FailureAction_FAILURE_ACTION_PAUSE,
			Monitor:       durationpb.New(5 * time.Second),
			Order:         objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST,
		},
		Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{
			Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST,
		}}},
	}
	if !proto.Equal(spec, want) {
		t.Errorf("ApplyServiceDefaults(minimal) = %v, want %v", spec, want)
	}
	if err := ValidateServiceSpec(spec); err != nil {
		t.Errorf("ValidateServiceSpec(defaulted minimal) = %v, want nil", err)
	}
}

func TestApplyServiceDefaultsKeepsSetFields(t *testing.T) {
	tests := []struct {
		name string
		in   *objectv1.ServiceSpec
	}{
		{"full spec", validServiceSpec()},
		{"zero replicas", &objectv1.ServiceSpec{
			Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 0}},
		}},
		{"global", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}}}},
		{"zero durations and parallelism", &objectv1.ServiceSpec{
			Task: &objectv1.TaskSpec{
				Container: &objectv1.ContainerSpec{StopGracePeriod: durationpb.New(0)},
				Restart:   &objectv1.RestartPolicy{Delay: durationpb.New(0)},
			},
			Update: &objectv1.UpdateConfig{Parallelism: 0, Monitor: durationpb.New(0)},
		}},
		{"invalid values", &objectv1.ServiceSpec{
			Task: &objectv1.TaskSpec{Restart: &objectv1.RestartPolicy{Condition: 42, Delay: durationpb.New(-time.Second)}},
			Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{
				{Protocol: "sctp", Mode: 9},
			}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := proto.Clone(tt.in).(*objectv1.ServiceSpec)
			ApplyServiceDefaults(got)
			keptSet(t, "spec", tt.in.ProtoReflect(), got.ProtoReflect())
		})
	}
}

// keptSet reports every field set in in whose value differs in got.
func keptSet(t *testing.T, path string, in, got protoreflect.Message) {
	t.Helper()
	in.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		f := path + "." + string(fd.Name())
		gv := got.Get(fd)
		switch {
		case fd.IsList() && fd.Message() != nil:
			if v.List().Len() != gv.List().Len() {
				t.Errorf("%s has %d entries, want %d", f, gv.List().Len(), v.List().Len())
				return true
			}
			for i := range v.List().Len() {
				keptSet(t, fmt.Sprintf("%s[%d]", f, i), v.List().Get(i).Message(), gv.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			keptSet(t, f, v.Message(), gv.Message())
		case !v.Equal(gv):
			t.Errorf("%s = %v, want %v kept", f, gv, v)
		}
		return true
	})
}

func TestApplyServiceDefaultsOnlyWhenUnset(t *testing.T) {
	spec := &objectv1.ServiceSpec{
		Mode:   &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{}},
		Update: &objectv1.UpdateConfig{Delay: durationpb.New(time.Second)},
	}
	ApplyServiceDefaults(spec)
	if got := spec.GetReplicated().GetReplicas(); got != 0 {
		t.Errorf("replicas of an explicit replicated mode = %d, want 0 kept", got)
	}
	// In an update config that was sent, parallelism 0 means "all at once".
	if got := spec.GetUpdate().GetParallelism(); got != 0 {
		t.Errorf("parallelism of an explicit update config = %d, want 0 kept", got)
	}
	if got := spec.GetUpdate().GetFailureAction(); got != objectv1.FailureAction_FAILURE_ACTION_PAUSE {
		t.Errorf("failure action = %v, want PAUSE", got)
	}

	empty := &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Replicated{}}
	ApplyServiceDefaults(empty)
	if got := empty.GetReplicated().GetReplicas(); got != 1 {
		t.Errorf("replicas of a nil replicated mode = %d, want 1", got)
	}
	global := &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Global{}}
	ApplyServiceDefaults(global)
	if global.GetGlobal() == nil {
		t.Error("nil global mode stays nil, want an empty GlobalService")
	}
}

func TestApplyServiceDefaultsIdempotent(t *testing.T) {
	for _, in := range []*objectv1.ServiceSpec{
		{},
		validServiceSpec(),
		{Mode: &objectv1.ServiceSpec_Global{}, Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{nil, {}}}},
	} {
		once := proto.Clone(in).(*objectv1.ServiceSpec)
		ApplyServiceDefaults(once)
		twice := proto.Clone(once).(*objectv1.ServiceSpec)
		ApplyServiceDefaults(twice)
		if !proto.Equal(once, twice) {
			t.Errorf("ApplyServiceDefaults twice = %v, want %v", twice, once)
		}
	}
	ApplyServiceDefaults(nil) // must not panic
}

func TestApplyClusterDefaults(t *testing.T) {
	spec := &objectv1.ClusterSpec{}
	ApplyClusterDefaults(spec)
	want := &objectv1.ClusterSpec{
		Dispatcher:    &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(5 * time.Second)},
		Ca:            &objectv1.CAConfig{NodeCertExpiry: durationpb.New(2160 * time.Hour)},
		Orchestration: &objectv1.OrchestrationConfig{TaskHistoryRetention: 5},
	}
	if !proto.Equal(spec, want) {
		t.Errorf("ApplyClusterDefaults(empty) = %v, want %v", spec, want)
	}
	if err := ValidateClusterSpec(spec); err != nil {
		t.Errorf("ValidateClusterSpec(defaulted empty) = %v, want nil", err)
	}
	again := proto.Clone(spec).(*objectv1.ClusterSpec)
	ApplyClusterDefaults(again)
	if !proto.Equal(again, spec) {
		t.Errorf("ApplyClusterDefaults twice = %v, want %v", again, spec)
	}
	ApplyClusterDefaults(nil) // must not panic
}

func TestApplyClusterDefaultsKeepsSetFields(t *testing.T) {
	in := &objectv1.ClusterSpec{
		Annotations:   &objectv1.Annotations{Name: "prod"},
		Dispatcher:    &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(time.Minute)},
		Ca:            &objectv1.CAConfig{NodeCertExpiry: durationpb.New(0)},
		Orchestration: &objectv1.OrchestrationConfig{TaskHistoryRetention: 0},
	}
	got := proto.Clone(in).(*objectv1.ClusterSpec)
	ApplyClusterDefaults(got)
	if !proto.Equal(got, in) {
		t.Errorf("ApplyClusterDefaults(%v) = %v, want it unchanged", in, got)
	}
}
