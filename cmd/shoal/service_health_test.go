package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestServiceCreateHealthFlags(t *testing.T) {
	tests := []struct {
		args []string
		want *objectv1.HealthConfig
	}{
		{[]string{"--health-cmd", "test -f /tmp/ok"}, &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "test -f /tmp/ok"}}},
		{[]string{"--health-cmd", "true", "--health-interval", "2s", "--health-timeout", "1s", "--health-retries", "5", "--health-start-period", "10s"},
			&objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Interval: durationpb.New(2 * time.Second),
				Timeout: durationpb.New(time.Second), Retries: 5, StartPeriod: durationpb.New(10 * time.Second)}},
		{[]string{"--health-interval", "5s"}, &objectv1.HealthConfig{Interval: durationpb.New(5 * time.Second)}},
		{[]string{"--no-healthcheck"}, &objectv1.HealthConfig{Test: []string{"NONE"}}},
		// Refused by the server, naming the field.
		{[]string{"--health-retries", "-1"}, &objectv1.HealthConfig{Retries: -1}},
	}
	for _, tt := range tests {
		f := newFakeControl()
		host := f.serve(t)
		args := append(append([]string{"service", "create", "--detach"}, tt.args...), "img")
		if res := runCLI(host, args...); res.code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, res.code, res.stderr)
		}
		if got := f.creates[0].Spec.GetTask().GetContainer().GetHealthcheck(); !proto.Equal(got, tt.want) {
			t.Errorf("%v: healthcheck = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestServiceCreateNoHealthcheckConflicts(t *testing.T) {
	f := newFakeControl()
	host := f.serve(t)
	res := runCLI(host, "service", "create", "--no-healthcheck", "--health-cmd", "true", "img")
	if res.code != 1 || !strings.Contains(res.stderr, "--no-healthcheck: conflicts with --health-* options") {
		t.Errorf("exit %d, stderr %q; want exit 1 naming the conflict", res.code, res.stderr)
	}
	if len(f.calls) != 0 {
		t.Errorf("server got %v, want nothing", f.calls)
	}
}

func TestServiceUpdateHealthFlags(t *testing.T) {
	tests := []struct {
		name   string
		before *objectv1.HealthConfig
		args   []string
		want   *objectv1.HealthConfig
	}{
		{"a command", nil, []string{"--health-cmd", "true"}, &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}}},
		{"timing keeps the command", &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}}, []string{"--health-retries", "2"},
			&objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Retries: 2}},
		{"empty command: the image's", &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}}, []string{"--health-cmd", ""}, nil},
		{"no check", &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}, Retries: 2}, []string{"--no-healthcheck"},
			&objectv1.HealthConfig{Test: []string{"NONE"}}},
		{"no check undone", &objectv1.HealthConfig{Test: []string{"NONE"}}, []string{"--no-healthcheck=false"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			seed(f)
			f.services[webID].Spec.Task.Container.Healthcheck = tt.before
			host := f.serve(t)
			args := append(append([]string{"service", "update", "--detach"}, tt.args...), "web")
			if res := runCLI(host, args...); res.code != 0 {
				t.Fatalf("%v: exit %d, stderr %q", args, res.code, res.stderr)
			}
			if got := f.updates[0].Spec.GetTask().GetContainer().GetHealthcheck(); !proto.Equal(got, tt.want) {
				t.Errorf("%v: healthcheck = %v, want %v", tt.args, got, tt.want)
			}
		})
	}
}

func TestServicePsShowsHealth(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ts := timestamppb.New(now.Add(-5 * time.Second))
	task := func(id string, st objectv1.TaskState, h objectv1.TaskHealth) *objectv1.Task {
		return &objectv1.Task{Id: id, ServiceId: "svc", Slot: 1, DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
			ServiceAnnotations: &objectv1.Annotations{Name: "web"},
			Status:             &objectv1.TaskStatus{State: st, Timestamp: ts, Health: h}}
	}
	for _, tt := range []struct {
		task *objectv1.Task
		want string
	}{
		{task("a", objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskHealth_TASK_HEALTH_HEALTHY), "running (healthy) 5 seconds ago"},
		{task("b", objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskHealth_TASK_HEALTH_STARTING), "running (starting) 5 seconds ago"},
		{task("c", objectv1.TaskState_TASK_STATE_RUNNING, objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED), "running 5 seconds ago"},
		{task("d", objectv1.TaskState_TASK_STATE_FAILED, objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY), "failed 5 seconds ago"},
	} {
		if got := (taskTable{now: now}).currentState(tt.task); got != tt.want {
			t.Errorf("currentState(%v) = %q, want %q", tt.task.GetStatus(), got, tt.want)
		}
	}
}
