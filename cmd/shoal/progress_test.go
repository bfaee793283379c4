package main

import (
	"strings"
	"testing"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestConvergenceObserve(t *testing.T) {
	const (
		pending  = objectv1.TaskState_TASK_STATE_PENDING
		assigned = objectv1.TaskState_TASK_STATE_ASSIGNED
		running  = objectv1.TaskState_TASK_STATE_RUNNING
		failed   = objectv1.TaskState_TASK_STATE_FAILED
	)
	spec := &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx:2"}}
	oldSpec := &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx:1"}}
	task := func(id string, state objectv1.TaskState, msg string) *objectv1.Task {
		return &objectv1.Task{
			Id: id, Spec: spec, SpecVersion: 2,
			DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
			Status:       &objectv1.TaskStatus{State: state, Message: msg},
		}
	}
	outdated := task("old", running, "")
	outdated.Spec, outdated.SpecVersion = oldSpec, 1
	scaledOnly := task("scaled", running, "") // same spec, older version: a scale
	scaledOnly.SpecVersion = 1
	replicated := &objectv1.Service{
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "web"},
			Task:        spec,
			Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}},
		},
		SpecVersion: 2,
	}
	global := &objectv1.Service{
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "agent"},
			Task:        spec,
			Mode:        &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}},
		},
		SpecVersion: 2,
	}
	const settle = 2 * time.Second
	type step struct {
		at       time.Duration
		tasks    []*objectv1.Task
		wantLine string
		wantDone bool
	}
	tests := []struct {
		name  string
		svc   *objectv1.Service
		steps []step
	}{
		{
			name: "converges",
			svc:  replicated,
			steps: []step{
				{0, nil, "web: 0/2 running", false},
				{time.Second, []*objectv1.Task{task("a", pending, ""), task("b", assigned, "")}, "web: 0/2 running, 1 pending, 1 assigned", false},
				{2 * time.Second, []*objectv1.Task{task("a", running, ""), task("b", failed, "")}, "web: 1/2 running, 1 failed", false},
				{3 * time.Second, []*objectv1.Task{task("a", running, ""), task("b", running, "")}, "web: 2/2 running", true},
			},
		},
		{
			name: "stops on tasks pending with a reason once settled",
			svc:  replicated,
			steps: []step{
				{0, []*objectv1.Task{task("a", pending, "no node")}, "web: 0/2 running, 1 pending", false},
				{time.Second, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, "web: 0/2 running, 2 pending", false},
				{2900 * time.Millisecond, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, "web: 0/2 running, 2 pending", false},
				{3 * time.Second, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, "web: 2 tasks pending: no node", true},
			},
		},
		{
			name: "a change restarts the settle time",
			svc:  replicated,
			steps: []step{
				{0, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, "web: 0/2 running, 2 pending", false},
				{1500 * time.Millisecond, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "still no node")}, "web: 0/2 running, 2 pending", false},
				{3 * time.Second, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "still no node")}, "web: 0/2 running, 2 pending", false},
				{3500 * time.Millisecond, []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "still no node")}, "web: 2 tasks pending: no node", true},
			},
		},
		{
			name: "pending without a reason is waited for",
			svc:  replicated,
			steps: []step{
				{0, []*objectv1.Task{task("a", pending, ""), task("b", pending, "")}, "web: 0/2 running, 2 pending", false},
				{time.Minute, []*objectv1.Task{task("a", pending, ""), task("b", pending, "")}, "web: 0/2 running, 2 pending", false},
			},
		},
		{
			name: "some running, some pending with a reason is waited for",
			svc:  replicated,
			steps: []step{
				{0, []*objectv1.Task{task("a", running, ""), task("b", pending, "no node")}, "web: 1/2 running, 1 pending", false},
				{time.Minute, []*objectv1.Task{task("a", running, ""), task("b", pending, "no node")}, "web: 1/2 running, 1 pending", false},
			},
		},
		{
			name: "outdated tasks are waited for",
			svc:  replicated,
			steps: []step{
				{0, []*objectv1.Task{task("a", running, ""), task("b", running, ""), outdated}, "web: 2/2 running, 1 to update", false},
			},
		},
		{
			name: "a scale leaves tasks up to date",
			svc:  replicated,
			steps: []step{
				{0, []*objectv1.Task{task("a", running, ""), scaledOnly}, "web: 2/2 running", true},
			},
		},
		{
			name: "global converges",
			svc:  global,
			steps: []step{
				{0, []*objectv1.Task{task("a", running, ""), task("b", assigned, "")}, "agent: 1/2 running, 1 assigned", false},
				{time.Second, []*objectv1.Task{task("a", running, ""), task("b", running, "")}, "agent: 2/2 running", true},
			},
		},
		{
			name: "global without eligible nodes stops once settled",
			svc:  global,
			steps: []step{
				{0, nil, "agent: 0/0 running", false},
				{settle, nil, "agent: no node is eligible for this global service yet", true},
			},
		},
	}
	for _, tt := range tests {
		cv := newConvergence(tt.svc, settle)
		start := time.Unix(1000, 0)
		for i, s := range tt.steps {
			line, done := cv.observe(start.Add(s.at), s.tasks)
			if line != s.wantLine || done != s.wantDone {
				t.Errorf("%s: step %d: observe = %q, %v; want %q, %v", tt.name, i, line, done, s.wantLine, s.wantDone)
			}
		}
	}
}

func TestProgressPrinter(t *testing.T) {
	tests := []struct {
		tty  bool
		want string
	}{
		{false, "a\nb\n"},
		{true, "\r\x1b[2Ka\r\x1b[2Kb\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		p := &progressPrinter{w: &b, tty: tt.tty}
		for _, line := range []string{"a", "a", "b"} {
			p.show(line)
		}
		p.end()
		if b.String() != tt.want {
			t.Errorf("progress (tty %v) of a, a, b = %q, want %q", tt.tty, b.String(), tt.want)
		}
	}
}
