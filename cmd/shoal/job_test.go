package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func replicatedJobSpec(maxConcurrent, total uint64) *objectv1.ServiceSpec_ReplicatedJob {
	return &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: &objectv1.ReplicatedJob{MaxConcurrent: maxConcurrent, TotalCompletions: total}}
}

func TestServiceCreateJob(t *testing.T) {
	tests := []struct {
		args []string
		want *objectv1.ServiceSpec
	}{
		{[]string{"--mode", "replicated-job", "--replicas", "20", "--max-concurrent", "5", "img"},
			&objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 20)}},
		// Without --max-concurrent, all of --replicas at once, as docker.
		{[]string{"--mode", "replicated-job", "--replicas", "3", "img"}, &objectv1.ServiceSpec{Mode: replicatedJobSpec(3, 3)}},
		// Neither: the server's defaults (1 of 1).
		{[]string{"--mode", "replicated-job", "img"}, &objectv1.ServiceSpec{Mode: replicatedJobSpec(0, 0)}},
		{[]string{"--mode", "global-job", "img"}, &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}}},
	}
	for _, tt := range tests {
		tt.want.Task = &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}}
		f := newFakeControl()
		host := f.serve(t)
		// No --detach: a job is not waited for.
		args := append([]string{"service", "create"}, tt.args...)
		res := runCLI(host, args...)
		if res.code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, res.code, res.stderr)
		}
		if len(f.creates) != 1 || !proto.Equal(f.creates[0].Spec, tt.want) {
			t.Errorf("%v: creates = %v, want one with %v", args, f.creates, tt.want)
		}
		if n := f.callsOf("ListTasks"); n != 0 {
			t.Errorf("%v: polled tasks %d times, want 0 (a job is not waited for)", args, n)
		}
	}
}

func TestServiceCreateJobBadFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--mode", "global-job", "--replicas", "2"}, "not for --mode global-job"},
		{[]string{"--mode", "global-job", "--max-concurrent", "2"}, "not for --mode global-job"},
		{[]string{"--mode", "replicated", "--max-concurrent", "2"}, "--max-concurrent: only for --mode replicated-job"},
		{[]string{"--max-concurrent", "2"}, "--max-concurrent: only for replicated jobs"},
		{[]string{"--mode", "replicated-job", "--replicas", "0"}, "at least 1 completion"},
		{[]string{"--mode", "cron"}, `"--mode" flag`},
	}
	for _, tt := range tests {
		f := newFakeControl()
		host := f.serve(t)
		args := append(append([]string{"service", "create", "--name", "j"}, tt.args...), "img")
		res := runCLI(host, args...)
		if res.code != 1 || !strings.Contains(res.stderr, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and an error with %q", tt.args, res.code, res.stderr, tt.wantErr)
		}
		if len(f.calls) != 0 {
			t.Errorf("%v: server got %v, want nothing", tt.args, f.calls)
		}
	}
}

func TestApplyJobModeUpdate(t *testing.T) {
	tests := []struct {
		name    string
		mode    *objectv1.ServiceSpec
		set     map[string]bool
		f       serviceFlags
		want    *objectv1.ServiceSpec
		wantErr string
	}{
		{"more completions keeps max", &objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 20)}, map[string]bool{"replicas": true},
			serviceFlags{replicas: 30}, &objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 30)}, ""},
		{"fewer completions lower max", &objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 20)}, map[string]bool{"replicas": true},
			serviceFlags{replicas: 3}, &objectv1.ServiceSpec{Mode: replicatedJobSpec(3, 3)}, ""},
		{"max concurrent", &objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 20)}, map[string]bool{"max-concurrent": true},
			serviceFlags{maxConcurrent: 10}, &objectv1.ServiceSpec{Mode: replicatedJobSpec(10, 20)}, ""},
		{"global job replicas", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}},
			map[string]bool{"replicas": true}, serviceFlags{replicas: 2}, nil, "is a global job"},
		{"service max concurrent", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}}},
			map[string]bool{"max-concurrent": true}, serviceFlags{maxConcurrent: 2}, nil, "only for replicated jobs"},
	}
	for _, tt := range tests {
		spec := proto.CloneOf(tt.mode)
		err := tt.f.applyMode(func(name string) bool { return tt.set[name] }, spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want one with %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !proto.Equal(spec, tt.want) {
			t.Errorf("%s: spec %v, err %v; want %v", tt.name, spec, err, tt.want)
		}
	}
}

func TestJobTableColumns(t *testing.T) {
	svc := func(mode *objectv1.ServiceSpec) *objectv1.Service {
		mode.Annotations = &objectv1.Annotations{Name: "j"}
		mode.Task = &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}}
		return &objectv1.Service{Id: "svc1", Spec: mode}
	}
	var b strings.Builder
	err := writeServiceTable(&b, []serviceRow{
		{svc: svc(&objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 20)}), running: 3, completed: 8},
		{svc: svc(&objectv1.ServiceSpec{Mode: replicatedJobSpec(5, 20)}), running: 2, completed: 18},
		{svc: svc(&objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}}), running: 1, desired: 2, completed: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replicated job   3/5 (8/20 completed)", "replicated job   2/2 (18/20 completed)", "global job       1/2 (1 completed)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table:\n%s\nwant a row with %q", b.String(), want)
		}
	}
}
