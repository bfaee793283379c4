package controlapi

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func replicatedJobMode(maxConcurrent, total uint64) *objectv1.ServiceSpec_ReplicatedJob {
	return &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: &objectv1.ReplicatedJob{MaxConcurrent: maxConcurrent, TotalCompletions: total}}
}

func TestValidateJobModes(t *testing.T) {
	tests := []struct {
		name string
		mode *objectv1.ServiceSpec // its mode is the one tested
		want []string
	}{
		{"replicated job", &objectv1.ServiceSpec{Mode: replicatedJobMode(5, 20)}, nil},
		{"replicated job defaults", &objectv1.ServiceSpec{Mode: replicatedJobMode(0, 0)}, nil},
		{"replicated job max only", &objectv1.ServiceSpec{Mode: replicatedJobMode(3, 0)}, nil},
		{"replicated job nil", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_ReplicatedJob{}}, []string{"spec.mode.replicated_job"}},
		{"total at limit", &objectv1.ServiceSpec{Mode: replicatedJobMode(1, maxReplicas)}, nil},
		{"total over limit", &objectv1.ServiceSpec{Mode: replicatedJobMode(1, maxReplicas+1)}, []string{"spec.mode.replicated_job.total_completions"}},
		{"max over total", &objectv1.ServiceSpec{Mode: replicatedJobMode(6, 5)}, []string{"spec.mode.replicated_job.max_concurrent"}},
		{"both over", &objectv1.ServiceSpec{Mode: replicatedJobMode(maxReplicas+2, maxReplicas+1)},
			[]string{"spec.mode.replicated_job.total_completions", "spec.mode.replicated_job.max_concurrent"}},
		{"global job", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}}, nil},
		{"global job nil", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{}}, []string{"spec.mode.global_job"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServiceSpec()
			s.Mode = tt.mode.Mode
			if got := fields(t, ValidateServiceSpec(s)); !slices.Equal(got, tt.want) {
				t.Errorf("fields = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestApplyServiceDefaultsJobs(t *testing.T) {
	for _, tt := range []struct {
		in                 *objectv1.ReplicatedJob
		wantMax, wantTotal uint64
	}{
		{nil, 1, 1},
		{&objectv1.ReplicatedJob{}, 1, 1},
		{&objectv1.ReplicatedJob{MaxConcurrent: 4}, 4, 4},
		{&objectv1.ReplicatedJob{TotalCompletions: 9}, 1, 9},
		{&objectv1.ReplicatedJob{MaxConcurrent: 5, TotalCompletions: 20}, 5, 20},
	} {
		spec := &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: tt.in}}
		ApplyServiceDefaults(spec)
		j := spec.GetReplicatedJob()
		if j.GetMaxConcurrent() != tt.wantMax || j.GetTotalCompletions() != tt.wantTotal {
			t.Errorf("defaults of %v = %v, want max_concurrent %d, total_completions %d", tt.in, j, tt.wantMax, tt.wantTotal)
		}
		if got := spec.GetTask().GetRestart().GetCondition(); got != objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE {
			t.Errorf("job restart condition = %v, want on-failure", got)
		}
	}
	spec := &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{}}
	ApplyServiceDefaults(spec)
	if spec.GetGlobalJob() == nil || spec.GetTask().GetRestart().GetCondition() != objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE {
		t.Errorf("global job defaults = %v, want a global_job with restart on-failure", spec)
	}
	// An explicit condition stays.
	spec = &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{}, Task: &objectv1.TaskSpec{
		Restart: &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_NONE}}}
	ApplyServiceDefaults(spec)
	if got := spec.GetTask().GetRestart().GetCondition(); got != objectv1.RestartCondition_RESTART_CONDITION_NONE {
		t.Errorf("explicit condition = %v, want none kept", got)
	}
}

func TestCreateJobAndModeChange(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := t.Context()
	spec := validServiceSpec()
	spec.Mode = replicatedJobMode(5, 20)
	spec.Task.Restart = nil
	created, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatalf("CreateService(replicated job) = %v", err)
	}
	svc := created.GetService()
	if svc.GetSpec().GetTask().GetRestart().GetCondition() != objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE {
		t.Errorf("stored restart = %v, want on-failure", svc.GetSpec().GetTask().GetRestart())
	}
	// A job cannot become a service, nor a global job.
	for _, other := range []*objectv1.ServiceSpec{
		{Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}}},
		{Mode: &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}},
	} {
		mode := other.Mode
		next := validServiceSpec()
		next.Mode = mode
		_, err = s.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: svc.GetId(), Version: svc.GetMeta().GetVersion(), Spec: next})
		if got := fields(t, sdk.FromGRPC(err)); !slices.Equal(got, []string{"spec.mode"}) || !strings.Contains(err.Error(), "replicated-job") {
			t.Errorf("UpdateService(replicated-job to %T) = %v, want an error naming spec.mode", mode, err)
		}
	}
	// More completions: allowed, and the job runs again.
	next := validServiceSpec()
	next.Mode = replicatedJobMode(5, 30)
	updated, err := s.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: svc.GetId(), Version: svc.GetMeta().GetVersion(), Spec: next})
	if err != nil {
		t.Fatalf("UpdateService(replicated job, 30 completions) = %v", err)
	}
	if got := updated.GetService().GetSpecVersion(); got != svc.GetSpecVersion()+1 {
		t.Errorf("spec_version = %d, want %d", got, svc.GetSpecVersion()+1)
	}
}
