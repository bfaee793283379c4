package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

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
			ServiceAnnotations: &objectv1.Annotations{Name: "web"},
			DesiredState:       objectv1.TaskState_TASK_STATE_RUNNING,
			Status:             &objectv1.TaskStatus{State: state, Message: msg},
		}
	}
	rejectedTask := func(id, err string) *objectv1.Task {
		t := task(id, objectv1.TaskState_TASK_STATE_REJECTED, "rejected")
		t.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
		t.Status.Err = err
		return t
	}
	const noSource = "task.spec.container.mounts[0].source: /x does not exist on node n1"
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
			Annotations: &objectv1.Annotations{Name: "web"},
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
		// status, when set, is the service's update status at this step.
		status      *objectv1.UpdateStatus
		wantFailure string
	}
	status := func(state objectv1.UpdateState, version uint64, msg string) *objectv1.UpdateStatus {
		return &objectv1.UpdateStatus{State: state, SpecVersion: version, Message: msg}
	}
	const (
		updating        = objectv1.UpdateState_UPDATE_STATE_UPDATING
		completed       = objectv1.UpdateState_UPDATE_STATE_COMPLETED
		paused          = objectv1.UpdateState_UPDATE_STATE_PAUSED
		rollbackStarted = objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED
		rolledBack      = objectv1.UpdateState_UPDATE_STATE_ROLLBACK_COMPLETED
	)
	rolledBackTo := func(st *objectv1.UpdateStatus) *objectv1.Service {
		// The orchestrator's rollback: the old spec under a new version.
		s := proto.CloneOf(replicated)
		s.Spec.Task, s.SpecVersion, s.UpdateStatus = oldSpec, 3, st
		return s
	}
	back := func(id string, state objectv1.TaskState) *objectv1.Task {
		t := task(id, state, "")
		t.Spec, t.SpecVersion = oldSpec, 3
		return t
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
				{at: 0, tasks: nil, wantLine: "web: 0/2 running", wantDone: false},
				{at: time.Second, tasks: []*objectv1.Task{task("a", pending, ""), task("b", assigned, "")}, wantLine: "web: 0/2 running, 1 pending, 1 assigned", wantDone: false},
				{at: 2 * time.Second, tasks: []*objectv1.Task{task("a", running, ""), task("b", failed, "")}, wantLine: "web: 1/2 running, 1 failed", wantDone: false},
				{at: 3 * time.Second, tasks: []*objectv1.Task{task("a", running, ""), task("b", running, "")}, wantLine: "web: 2/2 running", wantDone: true},
			},
		},
		{
			name: "stops on tasks pending with a reason once settled",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", pending, "no node")}, wantLine: "web: 0/2 running, 1 pending", wantDone: false},
				{at: time.Second, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
				{at: 2900 * time.Millisecond, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
				{at: 3 * time.Second, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, wantLine: "web: 2 tasks pending: no node", wantDone: true},
			},
		},
		{
			name: "a change restarts the settle time",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "no node")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
				{at: 1500 * time.Millisecond, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "still no node")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
				{at: 3 * time.Second, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "still no node")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
				{at: 3500 * time.Millisecond, tasks: []*objectv1.Task{task("a", pending, "no node"), task("b", pending, "still no node")}, wantLine: "web: 2 tasks pending: no node", wantDone: true},
			},
		},
		{
			name: "pending without a reason is waited for",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", pending, ""), task("b", pending, "")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
				{at: time.Minute, tasks: []*objectv1.Task{task("a", pending, ""), task("b", pending, "")}, wantLine: "web: 0/2 running, 2 pending", wantDone: false},
			},
		},
		{
			name: "some running, some pending with a reason is waited for",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", running, ""), task("b", pending, "no node")}, wantLine: "web: 1/2 running, 1 pending", wantDone: false},
				{at: time.Minute, tasks: []*objectv1.Task{task("a", running, ""), task("b", pending, "no node")}, wantLine: "web: 1/2 running, 1 pending", wantDone: false},
			},
		},
		{
			name: "outdated tasks are waited for",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", running, ""), task("b", running, ""), outdated}, wantLine: "web: 2/2 running, 1 to update", wantDone: false},
			},
		},
		{
			name: "an update is waited for until it completes",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{outdated, task("b", running, "")}, wantLine: "web: 1/2 running, 1 to update"},
				{at: time.Second, tasks: []*objectv1.Task{task("a", running, ""), task("b", running, "")}, status: status(updating, 2, ""),
					wantLine: "web: updating, 2/2 running"},
				{at: 6 * time.Second, tasks: []*objectv1.Task{task("a", running, ""), task("b", running, "")}, status: status(completed, 2, "update completed"),
					wantLine: "web: update completed, 2/2 running", wantDone: true},
			},
		},
		{
			name: "an older update's status is not this change's",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", running, ""), scaledOnly}, status: status(paused, 1, "update paused: old"),
					wantLine: "web: 2/2 running", wantDone: true},
			},
		},
		{
			name: "a paused update ends waiting with its reason",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{outdated, task("b", pending, "")}, status: status(paused, 2, "update paused: task b failed: exit code 1"),
					wantLine: "web: 0/2 running, 1 pending, 1 to update", wantDone: true, wantFailure: "update paused: task b failed: exit code 1"},
			},
		},
		{
			name: "a rollback is followed to its end, then fails with the reason it started",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", running, ""), task("b", running, "")}, status: status(updating, 2, ""),
					wantLine: "web: updating, 2/2 running"},
				{at: time.Second, tasks: []*objectv1.Task{task("a", running, ""), back("c", running)},
					status:   status(rollbackStarted, 3, "update rolled back: task b failed: exit code 1"),
					wantLine: "web: rolling back, 1/2 running, 1 to update"},
				{at: 7 * time.Second, tasks: []*objectv1.Task{back("d", running), back("c", running)},
					status:   status(rolledBack, 3, "rollback completed"),
					wantLine: "web: rolled back, 2/2 running", wantDone: true, wantFailure: "update rolled back: task b failed: exit code 1"},
			},
		},
		{
			name: "a completed rollback is waited for until its tasks run",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", failed, ""), back("c", running)},
					status:   status(rolledBack, 3, "update rolled back: task a failed: exit code 1"),
					wantLine: "web: rolling back, 1/2 running, 1 to update"},
				{at: time.Second, tasks: []*objectv1.Task{back("d", running), back("c", running)},
					status:   status(rolledBack, 3, "update rolled back: task a failed: exit code 1"),
					wantLine: "web: rolled back, 2/2 running", wantDone: true, wantFailure: "update rolled back: task a failed: exit code 1"},
			},
		},
		{
			name: "a rollback of an older server says it rolled back",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{back("d", running), back("c", running)},
					status:   status(rolledBack, 3, "rollback completed"),
					wantLine: "web: rolled back, 2/2 running", wantDone: true, wantFailure: "update rolled back"},
			},
		},
		{
			name: "a rollback seen only once completed",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{back("d", running), back("c", running)},
					status:   status(rolledBack, 3, "update rolled back: task b failed: exit code 1"),
					wantLine: "web: rolled back, 2/2 running", wantDone: true, wantFailure: "update rolled back: task b failed: exit code 1"},
			},
		},
		{
			name: "a scale leaves tasks up to date",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", running, ""), scaledOnly}, wantLine: "web: 2/2 running", wantDone: true},
			},
		},
		{
			name: "tasks rejected again and again end the wait",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{rejectedTask("a", noSource), rejectedTask("b", noSource), task("c", assigned, ""), task("d", assigned, "")},
					wantLine: "web: 0/2 running, 2 assigned", wantDone: false},
				{at: time.Second, tasks: []*objectv1.Task{rejectedTask("a", noSource), rejectedTask("b", noSource), rejectedTask("c", noSource), task("d", assigned, ""), task("e", pending, "")},
					wantLine: "web: 0/2 running, 1 pending, 1 assigned", wantDone: true, wantFailure: "its tasks were rejected 3 times: " + noSource},
			},
		},
		{
			name: "a rejection beside a running task does not end the wait",
			svc:  replicated,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{rejectedTask("a", noSource), rejectedTask("b", noSource), rejectedTask("c", noSource), task("d", running, ""), task("e", assigned, "")},
					wantLine: "web: 1/2 running, 1 assigned", wantDone: false},
			},
		},
		{
			name: "global converges",
			svc:  global,
			steps: []step{
				{at: 0, tasks: []*objectv1.Task{task("a", running, ""), task("b", assigned, "")}, wantLine: "web: 1/2 running, 1 assigned", wantDone: false},
				{at: time.Second, tasks: []*objectv1.Task{task("a", running, ""), task("b", running, "")}, wantLine: "web: 2/2 running", wantDone: true},
			},
		},
		{
			name: "global without eligible nodes stops once settled",
			svc:  global,
			steps: []step{
				{at: 0, tasks: nil, wantLine: "web: 0/0 running", wantDone: false},
				{at: settle, tasks: nil, wantLine: "web: no node is eligible for this global service yet", wantDone: true},
			},
		},
	}
	for _, tt := range tests {
		cv := newConvergence(tt.svc, settle)
		start := time.Unix(1000, 0)
		for i, s := range tt.steps {
			svc := proto.CloneOf(tt.svc)
			switch {
			case s.status.GetSpecVersion() > tt.svc.GetSpecVersion():
				svc = rolledBackTo(s.status)
			case s.status != nil:
				svc.UpdateStatus = s.status
			}
			line, done, failure := cv.observe(start.Add(s.at), svc, s.tasks)
			if line != s.wantLine || done != s.wantDone || failure != s.wantFailure {
				t.Errorf("%s: step %d: observe = %q, %v, %q; want %q, %v, %q", tt.name, i, line, done, failure, s.wantLine, s.wantDone, s.wantFailure)
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
