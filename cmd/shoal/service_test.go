package main

import (
	"bytes"
	"cmp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestServiceCreateSpec(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *objectv1.ServiceSpec
	}{
		{
			name: "only what was given",
			args: []string{"--name", "web", "nginx"},
			want: &objectv1.ServiceSpec{
				Annotations: &objectv1.Annotations{Name: "web"},
				Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx"}},
			},
		},
		{
			name: "args after the image are the container's, flags included",
			args: []string{"--name", "sh", "busybox", "sh", "-c", "echo hi", "--replicas", "9"},
			want: &objectv1.ServiceSpec{
				Annotations: &objectv1.Annotations{Name: "sh"},
				Task: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
					Image: "busybox",
					Args:  []string{"sh", "-c", "echo hi", "--replicas", "9"},
				}},
			},
		},
		{
			name: "global",
			args: []string{"--name", "agent", "--mode", "global", "img"},
			want: &objectv1.ServiceSpec{
				Annotations: &objectv1.Annotations{Name: "agent"},
				Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}},
				Mode:        &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}},
			},
		},
		{
			name: "mode replicated alone means one replica",
			args: []string{"--mode", "replicated", "img"},
			want: &objectv1.ServiceSpec{
				Task: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}},
				Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
			},
		},
		{
			// 0 sent means all at once: an update config made for another
			// flag keeps the default of one at a time.
			name: "update delay alone keeps one task at a time",
			args: []string{"--update-delay", "10s", "img"},
			want: &objectv1.ServiceSpec{
				Task:   &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}},
				Update: &objectv1.UpdateConfig{Parallelism: 1, Delay: durationpb.New(10 * time.Second)},
			},
		},
		{
			name: "zero replicas is kept",
			args: []string{"--replicas", "0", "img"},
			want: &objectv1.ServiceSpec{
				Task: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}},
				Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 0}},
			},
		},
		{
			name: "every flag",
			args: []string{
				"--name", "web", "--replicas", "3",
				"--env", "A=1", "-e", "B=x=y", "--label", "tier=front", "-l", "canary",
				"--publish", "8080:80", "-p", "5353:53/udp", "-p", "published=9000,target=90,protocol=tcp,mode=host",
				"--constraint", "node.labels.zone==a", "--constraint", "node.role!=manager",
				"--placement-pref", "spread=node.labels.rack",
				"--limit-cpu", "0.5", "--limit-memory", "256MiB", "--reserve-cpu", "0.25", "--reserve-memory", "1G",
				"--restart-condition", "on-failure", "--restart-delay", "5s", "--restart-max-attempts", "3", "--restart-window", "1m",
				"--update-parallelism", "2", "--update-delay", "10s", "--update-failure-action", "rollback", "--update-order", "start-first",
				"--update-monitor", "30s", "--update-max-failure-ratio", "0.25",
				"--workdir", "/srv", "--user", "1000:1000", "--stop-signal", "SIGQUIT", "--stop-grace-period", "30s",
				"--max-replicas-per-node", "2",
				"nginx:1.27", "nginx", "-g", "daemon off;",
			},
			want: &objectv1.ServiceSpec{
				Annotations: &objectv1.Annotations{Name: "web", Labels: map[string]string{"tier": "front", "canary": ""}},
				Task: &objectv1.TaskSpec{
					Container: &objectv1.ContainerSpec{
						Image:           "nginx:1.27",
						Args:            []string{"nginx", "-g", "daemon off;"},
						Env:             []string{"A=1", "B=x=y"},
						Dir:             "/srv",
						User:            "1000:1000",
						StopSignal:      "SIGQUIT",
						StopGracePeriod: durationpb.New(30 * time.Second),
					},
					Resources: &objectv1.ResourceRequirements{
						Limits:       &objectv1.Resources{NanoCpus: 500_000_000, MemoryBytes: 256 << 20},
						Reservations: &objectv1.Resources{NanoCpus: 250_000_000, MemoryBytes: 1 << 30},
					},
					Restart: &objectv1.RestartPolicy{
						Condition:   objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE,
						Delay:       durationpb.New(5 * time.Second),
						MaxAttempts: 3,
						Window:      durationpb.New(time.Minute),
					},
					Placement: &objectv1.Placement{
						Constraints:        []string{"node.labels.zone==a", "node.role!=manager"},
						Preferences:        []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}},
						MaxReplicasPerNode: 2,
					},
				},
				Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}},
				Update: &objectv1.UpdateConfig{
					Parallelism:     2,
					Delay:           durationpb.New(10 * time.Second),
					FailureAction:   objectv1.FailureAction_FAILURE_ACTION_ROLLBACK,
					Monitor:         durationpb.New(30 * time.Second),
					MaxFailureRatio: 0.25,
					Order:           objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST,
				},
				Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{
					{TargetPort: 80, PublishedPort: 8080},
					{Protocol: "udp", TargetPort: 53, PublishedPort: 5353},
					{Protocol: "tcp", TargetPort: 90, PublishedPort: 9000, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			host := f.serve(t)
			args := append([]string{"service", "create", "--detach"}, tt.args...)
			res := runCLI(host, args...)
			if res.code != 0 {
				t.Fatalf("%v: exit %d, stderr %q", args, res.code, res.stderr)
			}
			if len(f.creates) != 1 {
				t.Fatalf("%v: %d CreateService calls, want 1", args, len(f.creates))
			}
			if got := f.creates[0].Spec; !proto.Equal(got, tt.want) {
				t.Errorf("%v: spec = %v, want %v", args, got, tt.want)
			}
			if want := "svc0000000000000000000001\n"; res.stdout != want {
				t.Errorf("%v: stdout = %q, want the ID %q", args, res.stdout, want)
			}
			if n := f.callsOf("ListTasks"); n != 0 {
				t.Errorf("%v: --detach polled tasks %d times, want 0", args, n)
			}
		})
	}
}

func TestServiceCreateBadFlag(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--limit-memory", "12XB"}, `"--limit-memory" flag`},
		{[]string{"--reserve-memory", "-1"}, `"--reserve-memory" flag`},
		{[]string{"--limit-cpu", "half"}, `"--limit-cpu" flag`},
		{[]string{"--limit-cpu", "0.0000000001"}, `"--limit-cpu" flag`},
		{[]string{"--reserve-cpu", "1e3"}, `"--reserve-cpu" flag`},
		{[]string{"--publish", "80:http"}, `--publish" flag`},
		{[]string{"--publish", "8080:80/"}, `--publish" flag`},
		{[]string{"--publish", "published=8080,target=80,bogus=1"}, `--publish" flag`},
		{[]string{"--restart-condition", "sometimes"}, `"--restart-condition" flag: want one of none, on-failure, any`},
		{[]string{"--update-order", "random"}, `"--update-order" flag`},
		{[]string{"--update-failure-action", "explode"}, `"--update-failure-action" flag`},
		{[]string{"--update-monitor", "5"}, `"--update-monitor" flag`},
		{[]string{"--update-max-failure-ratio", "a tenth"}, `"--update-max-failure-ratio" flag`},
		{[]string{"--restart-delay", "5"}, `"--restart-delay" flag`},
		{[]string{"--env", "NOVALUE"}, `--env" flag`},
		{[]string{"--label", "=x"}, `--label" flag`},
		{[]string{"--replicas", "three"}, `"--replicas" flag`},
		{[]string{"--placement-pref", "binpack=x"}, `"--placement-pref" flag`},
		{[]string{"--mode", "daemon"}, `"--mode" flag`},
		{[]string{"--mode", "global", "--replicas", "2"}, `--replicas: only for --mode replicated`},
	}
	for _, tt := range tests {
		f := newFakeControl()
		host := f.serve(t)
		args := append(append([]string{"service", "create", "--name", "web"}, tt.args...), "nginx")
		res := runCLI(host, args...)
		if res.code != 1 {
			t.Errorf("%v: exit %d, want 1", tt.args, res.code)
		}
		if !strings.HasPrefix(res.stderr, "Error: ") || !strings.Contains(res.stderr, tt.wantErr) {
			t.Errorf("%v: stderr = %q, want an error with %q", tt.args, res.stderr, tt.wantErr)
		}
		if len(f.calls) != 0 {
			t.Errorf("%v: server got %v, want nothing", tt.args, f.calls)
		}
	}
}

func TestServiceCreateFieldErrors(t *testing.T) {
	f := newFakeControl()
	f.createErr = sdk.FieldErrors{
		{Field: "spec.annotations.name", Message: "required"},
		{Field: "spec.mode.replicated.replicas", Message: "must be 0 or more, got -1"},
	}
	host := f.serve(t)
	res := runCLI(host, "service", "create", "--replicas", "-1", "nginx")
	want := "Error: invalid argument:\n" +
		"  spec.annotations.name: required\n" +
		"  spec.mode.replicated.replicas: must be 0 or more, got -1\n"
	if res.code != 1 || res.stderr != want || res.stdout != "" {
		t.Errorf("create with field errors = exit %d, stdout %q, stderr %q; want exit 1, stderr %q", res.code, res.stdout, res.stderr, want)
	}
}

// pendingTasks returns an onCreate that makes the service's tasks PENDING
// with msg, as the kernel does when no worker can run them.
func pendingTasks(msg string) func(*objectv1.Service) []*objectv1.Task {
	return func(svc *objectv1.Service) []*objectv1.Task {
		var tasks []*objectv1.Task
		for slot := range uint64(svc.GetSpec().GetReplicated().GetReplicas()) {
			tasks = append(tasks, &objectv1.Task{
				Id:           svc.Id + "-t" + string(rune('1'+slot)),
				ServiceId:    svc.Id,
				Slot:         slot + 1,
				Spec:         svc.GetSpec().GetTask(),
				SpecVersion:  svc.GetSpecVersion(),
				DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
				Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PENDING, Message: msg},
			})
		}
		return tasks
	}
}

// runTasksAt makes every task run from the ListTasks call number n on.
func runTasksAt(n int) func(*fakeControl, int) {
	return func(f *fakeControl, call int) {
		if call < n {
			return
		}
		for _, t := range f.tasks {
			t.Status = &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING}
		}
	}
}

func TestServiceCreateProgress(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		onCreate    func(*objectv1.Service) []*objectv1.Task
		onListTasks func(*fakeControl, int)
		timeout     string
		wantCode    int
		wantStdout  string
		wantStderr  string
	}{
		{
			name:        "stops when all tasks run",
			args:        []string{"--replicas", "2"},
			onCreate:    pendingTasks(""),
			onListTasks: runTasksAt(3),
			wantStdout:  "svc0000000000000000000001\nweb: 0/2 running, 2 pending\nweb: 2/2 running\n",
		},
		{
			name:       "stops when every task waits with a reason",
			args:       []string{"--replicas", "3"},
			onCreate:   pendingTasks("waiting for a node to run it"),
			wantStdout: "svc0000000000000000000001\nweb: 0/3 running, 3 pending\nweb: 3 tasks pending: waiting for a node to run it\n",
		},
		{
			name:       "waits for pending tasks without a reason until --timeout",
			args:       []string{"--replicas", "1"},
			onCreate:   pendingTasks(""),
			timeout:    "400ms",
			wantCode:   1,
			wantStdout: "svc0000000000000000000001\nweb: 0/1 running, 1 pending\n",
			wantStderr: "Error: web: not converged within --timeout 400ms (0/1 running, 1 pending); it goes on in the background, see 'shoal service ps web'\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			f.onCreate, f.onListTasks = tt.onCreate, tt.onListTasks
			host := f.serve(t)
			c := newTestCLI()
			c.now = time.Now
			// A generous timeout where waiting must end by itself.
			timeout := cmp.Or(tt.timeout, "30s")
			args := append(append([]string{"--timeout", timeout, "service", "create", "--name", "web"}, tt.args...), "nginx")
			res := c.run(host, args...)
			if res.code != tt.wantCode || res.stdout != tt.wantStdout || res.stderr != tt.wantStderr {
				t.Errorf("%v = exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
					args, res.code, res.stdout, res.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestServiceScaleRetriesOnVersionConflict(t *testing.T) {
	tests := []struct {
		conflicts   int
		wantCode    int
		wantUpdates int
	}{
		{conflicts: 0, wantCode: 0, wantUpdates: 1},
		{conflicts: 2, wantCode: 0, wantUpdates: 3},
		{conflicts: maxConflictRetries, wantCode: 0, wantUpdates: maxConflictRetries + 1},
		{conflicts: maxConflictRetries + 1, wantCode: 1, wantUpdates: maxConflictRetries + 1},
	}
	for _, tt := range tests {
		f := newFakeControl()
		seed(f)
		f.conflicts = tt.conflicts
		host := f.serve(t)
		res := runCLI(host, "service", "scale", "--detach", "web=5")
		if res.code != tt.wantCode {
			t.Errorf("scale with %d conflicts: exit %d (stderr %q), want %d", tt.conflicts, res.code, res.stderr, tt.wantCode)
		}
		if len(f.updates) != tt.wantUpdates {
			t.Errorf("scale with %d conflicts: %d UpdateService calls, want %d", tt.conflicts, len(f.updates), tt.wantUpdates)
		}
		got := f.services[webID].GetSpec().GetReplicated().GetReplicas()
		if tt.wantCode == 0 {
			if got != 5 || res.stdout != "web scaled to 5\n" {
				t.Errorf("scale with %d conflicts: replicas %d, stdout %q; want 5, %q", tt.conflicts, got, res.stdout, "web scaled to 5\n")
			}
			// Only the replicas changed: the rest of the spec went back as read.
			want := proto.CloneOf(f.updates[0].Spec)
			want.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}}
			seeded := newFakeControl()
			seed(seeded)
			if !proto.Equal(want, seeded.services[webID].Spec) {
				t.Errorf("scale changed more than replicas: sent %v", f.updates[0].Spec)
			}
		} else if !strings.Contains(res.stderr, "version conflict") {
			t.Errorf("scale with %d conflicts: stderr %q, want the version conflict", tt.conflicts, res.stderr)
		}
	}
}

func TestServiceScaleArgs(t *testing.T) {
	for _, args := range [][]string{{"web"}, {"web=x"}, {"=3"}, {"web=3", "db=-"}} {
		f := newFakeControl()
		seed(f)
		host := f.serve(t)
		res := runCLI(host, append([]string{"service", "scale", "-d"}, args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, "want SERVICE=REPLICAS") || len(f.calls) != 0 {
			t.Errorf("scale %v = exit %d, stderr %q, calls %v; want exit 1, a usage error, no call", args, res.code, res.stderr, f.calls)
		}
	}

	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "scale", "-d", "db=3")
	if res.code != 1 || !strings.Contains(res.stderr, "only for replicated services") || len(f.updates) != 0 {
		t.Errorf("scale of a global service = exit %d, stderr %q, %d updates; want exit 1, an error, no update", res.code, res.stderr, len(f.updates))
	}
}

func TestServiceScaleWaits(t *testing.T) {
	f := newFakeControl()
	seed(f)
	// The seeded web has 3 replicas with one pending; scaling to 2 makes
	// the orchestrator stop slot 3, which the fake does on the first poll.
	f.onListTasks = func(f *fakeControl, _ int) {
		for _, t := range f.tasks {
			if t.Slot == 3 {
				t.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
			}
		}
	}
	host := f.serve(t)
	c := newTestCLI()
	c.now = time.Now
	res := c.run(host, "service", "scale", "web=2")
	if want := "web scaled to 2\nweb: 2/2 running\n"; res.code != 0 || res.stdout != want {
		t.Errorf("scale web=2 = exit %d, stdout %q, stderr %q; want exit 0, stdout %q", res.code, res.stdout, res.stderr, want)
	}
}

func TestServiceUpdate(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		change func(*objectv1.ServiceSpec)
	}{
		{
			name: "image and args",
			args: []string{"--image", "nginx:1.28", "--args", `nginx -g "daemon off;" 'a b'`},
			change: func(s *objectv1.ServiceSpec) {
				s.Task.Container.Image = "nginx:1.28"
				s.Task.Container.Args = []string{"nginx", "-g", "daemon off;", "a b"}
			},
		},
		{
			name:   "empty args clear them",
			args:   []string{"--args", ""},
			change: func(s *objectv1.ServiceSpec) { s.Task.Container.Args = nil },
		},
		{
			name:   "env add replaces, rm removes",
			args:   []string{"--env-add", "B=3", "--env-add", "C=4", "--env-rm", "A"},
			change: func(s *objectv1.ServiceSpec) { s.Task.Container.Env = []string{"B=3", "C=4"} },
		},
		{
			name: "labels",
			args: []string{"--label-add", "env=prod", "--label-rm", "tier"},
			change: func(s *objectv1.ServiceSpec) {
				s.Annotations.Labels = map[string]string{"env": "prod"}
			},
		},
		{
			name: "constraints",
			args: []string{"--constraint-rm", "node.role==worker", "--constraint-add", "node.labels.ssd==true"},
			change: func(s *objectv1.ServiceSpec) {
				s.Task.Placement.Constraints = []string{"node.labels.ssd==true"}
			},
		},
		{
			name: "ports",
			args: []string{"--publish-rm", "8080", "--publish-add", "9090:90", "--publish-add", "53:53/udp"},
			change: func(s *objectv1.ServiceSpec) {
				s.Endpoint.Ports = []*objectv1.PortConfig{
					{TargetPort: 90, PublishedPort: 9090},
					{Protocol: "udp", TargetPort: 53, PublishedPort: 53},
				}
			},
		},
		{
			name: "publish-add replaces the same published port",
			args: []string{"--publish-add", "8080:8000"},
			change: func(s *objectv1.ServiceSpec) {
				s.Endpoint.Ports = []*objectv1.PortConfig{{TargetPort: 8000, PublishedPort: 8080}}
			},
		},
		{
			name: "replicas and resources",
			args: []string{"--replicas", "7", "--limit-memory", "512m", "--update-parallelism", "0"},
			change: func(s *objectv1.ServiceSpec) {
				s.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 7}}
				s.Task.Resources = &objectv1.ResourceRequirements{Limits: &objectv1.Resources{MemoryBytes: 512 << 20}}
				s.Update = &objectv1.UpdateConfig{}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			seed(f)
			want := proto.CloneOf(f.services[webID].Spec)
			tt.change(want)
			host := f.serve(t)
			args := append(append([]string{"service", "update", "--detach"}, tt.args...), "web")
			res := runCLI(host, args...)
			if res.code != 0 || res.stdout != "web\n" {
				t.Fatalf("%v = exit %d, stdout %q, stderr %q; want exit 0, stdout %q", args, res.code, res.stdout, res.stderr, "web\n")
			}
			if len(f.updates) != 1 {
				t.Fatalf("%v: %d UpdateService calls, want 1", args, len(f.updates))
			}
			u := f.updates[0]
			if u.Ref != webID || u.Version != 5 {
				t.Errorf("%v: update ref %q version %d, want %q version 5", args, u.Ref, u.Version, webID)
			}
			if !proto.Equal(u.Spec, want) {
				t.Errorf("%v: spec = %v, want %v", args, u.Spec, want)
			}
		})
	}
}

func TestServiceUpdateNoChange(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "update", "--image", "nginx:1.27", "web")
	if res.code != 0 || res.stdout != "web: no change\n" || len(f.updates) != 0 {
		t.Errorf("update to the same image = exit %d, stdout %q, %d updates; want exit 0, %q, none",
			res.code, res.stdout, len(f.updates), "web: no change\n")
	}
}

func TestServiceUpdateRefused(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--replicas", "2", "db"}, "--replicas: service db is global"},
		{[]string{"--args", `"unterminated`, "web"}, `"--args" flag`},
		{[]string{"--publish-rm", "x", "web"}, `"--publish-rm" flag`},
		{[]string{"--image", "x", "nope"}, `Error: service "nope": not found`},
	}
	for _, tt := range tests {
		f := newFakeControl()
		seed(f)
		host := f.serve(t)
		res := runCLI(host, append([]string{"service", "update", "-d"}, tt.args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, tt.wantErr) || len(f.updates) != 0 {
			t.Errorf("update %v = exit %d, stderr %q, %d updates; want exit 1, %q, none", tt.args, res.code, res.stderr, len(f.updates), tt.wantErr)
		}
	}
}

func TestServiceRm(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "rm", "web", "nope", "db")
	if res.code != 1 || res.stdout != "web\ndb\n" || res.stderr != "Error: service \"nope\": not found\n" {
		t.Errorf("rm web nope db = exit %d, stdout %q, stderr %q; want 1, the removed ones, the missing one", res.code, res.stdout, res.stderr)
	}
	if len(f.services) != 0 {
		t.Errorf("after rm, %d services left, want 0", len(f.services))
	}
}

func TestServiceTables(t *testing.T) {
	tests := []struct {
		golden string
		args   []string
	}{
		{"service_ls.golden", []string{"service", "ls"}},
		{"service_ls_quiet.golden", []string{"service", "ls", "-q"}},
		{"service_ps.golden", []string{"service", "ps", "web", "db"}},
		{"service_ps_notrunc.golden", []string{"service", "ps", "--no-trunc", "web"}},
		{"service_ps_running.golden", []string{"service", "ps", "--filter", "desired-state=running", "-q", "web"}},
		{"service_inspect_pretty.golden", []string{"service", "inspect", "--pretty", "web"}},
		{"node_ls.golden", []string{"node", "ls"}},
	}
	for _, tt := range tests {
		f := newFakeControl()
		seed(f)
		host := f.serve(t)
		res := runCLI(host, tt.args...)
		if res.code != 0 {
			t.Errorf("%v: exit %d, stderr %q", tt.args, res.code, res.stderr)
			continue
		}
		checkGolden(t, tt.golden, res.stdout)
	}
}

func TestServicePsFilter(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "service", "ps", "--filter", "node=x", "web")
	if res.code != 1 || !strings.Contains(res.stderr, "--filter") || len(f.calls) != 0 {
		t.Errorf("ps --filter node=x = exit %d, stderr %q, calls %v; want exit 1, a --filter error, no call", res.code, res.stderr, f.calls)
	}
	res = runCLI(host, "service", "ps", "--filter", "desired-state=running", "web")
	if res.code != 0 {
		t.Fatalf("ps --filter desired-state=running: exit %d, stderr %q", res.code, res.stderr)
	}
	want := []objectv1.TaskState{objectv1.TaskState_TASK_STATE_RUNNING}
	if got := f.listTasks[0].DesiredStates; len(got) != 1 || got[0] != want[0] {
		t.Errorf("ps --filter desired-state=running sent desired_states %v, want %v", got, want)
	}
}

// TestServiceUpdateStopsWhenPaused: waiting for an update ends as soon as
// the orchestrator pauses it, with its reason, instead of at --timeout.
func TestServiceUpdateStopsWhenPaused(t *testing.T) {
	f := newFakeControl()
	seed(f)
	f.afterUpdate = func(s *objectv1.Service) {
		s.UpdateStatus = &objectv1.UpdateStatus{
			State:       objectv1.UpdateState_UPDATE_STATE_PAUSED,
			SpecVersion: s.SpecVersion,
			Message:     "update paused: task abc failed: exit code 1",
		}
	}
	host := f.serve(t)
	res := runCLI(host, "service", "update", "--timeout", "1m", "--image", "nginx:1.28", "web")
	want := "Error: service web: update paused: task abc failed: exit code 1; see 'shoal service ps web'\n"
	if res.code != 1 || res.stderr != want {
		t.Fatalf("update = exit %d, stderr %q; want exit 1, %q", res.code, res.stderr, want)
	}
}

// TestServicePsNewestFirstAcrossNodes: a replicated slot's tasks are listed
// newest first whatever nodes they ran on (a drain moves a slot to a node
// whose ID may sort either way).
func TestServicePsNewestFirstAcrossNodes(t *testing.T) {
	now := time.Now()
	task := func(id, node string, age time.Duration) *objectv1.Task {
		return &objectv1.Task{
			Id: id, ServiceId: "s", Slot: 1, NodeId: node,
			ServiceAnnotations: &objectv1.Annotations{Name: "web"},
			Meta:               &objectv1.Meta{CreatedAt: timestamppb.New(now.Add(-age))},
		}
	}
	for _, nodes := range [][2]string{{"aaa", "zzz"}, {"zzz", "aaa"}} {
		var buf bytes.Buffer
		old, cur := task("oldtask00000", nodes[0], time.Hour), task("newtask00000", nodes[1], time.Minute)
		if err := (taskTable{now: now}).write(&buf, []*objectv1.Task{old, cur}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[1], "newtask") || !strings.Contains(lines[2], `\_ web.1`) {
			t.Errorf("old task on %s, new one on %s: service ps =\n%s\nwant the new task first, the old one under it", nodes[0], nodes[1], buf.String())
		}
	}
}
