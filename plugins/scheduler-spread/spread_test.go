package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

func TestConformance(t *testing.T) {
	schedulertest.Run(t, func() scheduler.Scheduler { return New() })
}

const gib = int64(1 << 30)

// nodeSpec is a test node: 8 CPUs and 32 GiB unless set, labels as
// "k=v" pairs, tasks as "service=count" pairs.
type nodeSpec struct {
	id       string
	labels   []string
	tasks    []string
	cpus     int64 // whole CPUs; -1 for no total
	mem      int64 // bytes; -1 for no total
	reserved [2]int64
	manager  bool
}

func (s nodeSpec) info() *schedulerv1.NodeInfo {
	n := &schedulerv1.NodeInfo{
		Id:       s.id,
		Hostname: "host-" + s.id,
		Role:     objectv1.NodeRole_NODE_ROLE_WORKER,
		Platform: "linux/amd64",
		Total:    &objectv1.Resources{NanoCpus: 8e9, MemoryBytes: 32 * gib},
		Reserved: &objectv1.Resources{NanoCpus: s.reserved[0], MemoryBytes: s.reserved[1]},
		Labels:   map[string]string{},
	}
	if s.manager {
		n.Role = objectv1.NodeRole_NODE_ROLE_MANAGER
	}
	switch {
	case s.cpus > 0:
		n.Total.NanoCpus = s.cpus * 1e9
	case s.cpus < 0:
		n.Total.NanoCpus = 0
	}
	switch {
	case s.mem > 0:
		n.Total.MemoryBytes = s.mem
	case s.mem < 0:
		n.Total.MemoryBytes = 0
	}
	for _, kv := range s.labels {
		k, v, _ := strings.Cut(kv, "=")
		n.Labels[k] = v
	}
	for _, kv := range s.tasks {
		svc, count, _ := strings.Cut(kv, "=")
		var c uint32
		fmt.Sscan(count, &c)
		if n.ServiceTasks == nil {
			n.ServiceTasks = map[string]uint32{}
		}
		n.ServiceTasks[svc] = c
	}
	return n
}

// taskSpec is n tasks of a service with a placement and reservations.
type taskSpec struct {
	service string
	n       int
	p       *objectv1.Placement
	cpu     int64 // nano CPUs
	mem     int64
}

func taskInfos(specs ...taskSpec) []*schedulerv1.TaskInfo {
	var tasks []*schedulerv1.TaskInfo
	for _, s := range specs {
		for range s.n {
			tasks = append(tasks, &schedulerv1.TaskInfo{
				Id:           fmt.Sprintf("t%d", len(tasks)),
				ServiceId:    s.service,
				Placement:    s.p,
				Reservations: &objectv1.Resources{NanoCpus: s.cpu, MemoryBytes: s.mem},
			})
		}
	}
	return tasks
}

func spreadOver(keys ...string) *objectv1.Placement {
	p := &objectv1.Placement{}
	for _, k := range keys {
		p.Preferences = append(p.Preferences, &objectv1.PlacementPreference{Spread: k})
	}
	return p
}

// scheduleFull sends a whole view and tasks to s and returns, per task, the
// node chosen or "refused: <reason>".
func scheduleFull(t *testing.T, s *Spread, nodes []nodeSpec, tasks []*schedulerv1.TaskInfo) []string {
	t.Helper()
	req := &schedulerv1.ScheduleRequest{ViewVersion: 1, Tasks: tasks}
	for _, n := range nodes {
		req.UpsertNodes = append(req.UpsertNodes, n.info())
	}
	resp, err := s.Schedule(t.Context(), req)
	if err != nil {
		t.Fatalf("Schedule = %v, want decisions", err)
	}
	return outcomes(resp)
}

func outcomes(resp *schedulerv1.ScheduleResponse) []string {
	var got []string
	for _, d := range resp.GetDecisions() {
		if d.GetNodeId() == "" {
			got = append(got, "refused: "+d.GetRefusal())
			continue
		}
		got = append(got, d.GetNodeId())
	}
	return got
}

func nodesN(n int, labels func(i int) []string) []nodeSpec {
	var nodes []nodeSpec
	for i := range n {
		s := nodeSpec{id: fmt.Sprintf("n%d", i+1)}
		if labels != nil {
			s.labels = labels(i)
		}
		nodes = append(nodes, s)
	}
	return nodes
}

func TestPolicy(t *testing.T) {
	racks := []nodeSpec{
		{id: "a1", labels: []string{"rack=r1", "zone=z1"}},
		{id: "a2", labels: []string{"rack=r1", "zone=z1"}},
		{id: "b1", labels: []string{"rack=r2", "zone=z1"}},
		{id: "c1", labels: []string{"rack=r3", "zone=z2"}},
		{id: "c2", labels: []string{"rack=r3", "zone=z2"}},
		{id: "c3", labels: []string{"rack=r3", "zone=z2"}},
	}
	cases := []struct {
		name  string
		cfg   string
		nodes []nodeSpec
		tasks []*schedulerv1.TaskInfo
		want  []string
	}{{
		name:  "equal nodes take turns, in ID order",
		nodes: nodesN(3, nil),
		tasks: taskInfos(taskSpec{service: "web", n: 6}),
		want:  []string{"n1", "n2", "n3", "n1", "n2", "n3"},
	}, {
		name: "fewest tasks of the service first, then fewest tasks",
		nodes: []nodeSpec{
			{id: "n1", tasks: []string{"web=2"}},
			{id: "n2", tasks: []string{"db=5"}},
			{id: "n3", tasks: []string{"web=1"}},
		},
		tasks: taskInfos(taskSpec{service: "web", n: 4}),
		// n2 (0 web); then n2 and n3 have 1 web, n3 fewer tasks; then n2
		// (1 web); then all have 2 web, n1 and n3 2 tasks, n1 first by ID.
		want: []string{"n2", "n3", "n2", "n1"},
	}, {
		name: "without spread_over_hosts, fewest tasks only",
		cfg:  "spread_over_hosts = false",
		nodes: []nodeSpec{
			{id: "n1", tasks: []string{"web=2"}},
			{id: "n2", tasks: []string{"db=5"}},
			{id: "n3", tasks: []string{"web=1"}},
		},
		tasks: taskInfos(taskSpec{service: "web", n: 4}),
		want:  []string{"n3", "n1", "n3", "n1"},
	}, {
		name: "smallest reserved share breaks a tie in tasks",
		nodes: []nodeSpec{
			{id: "n1", reserved: [2]int64{4e9, 0}},                      // CPU half reserved
			{id: "n2", reserved: [2]int64{0, 8 * gib}},                  // memory quarter reserved
			{id: "n3", reserved: [2]int64{2e9, 24 * gib}},               // memory three quarters
			{id: "n4", reserved: [2]int64{1e9, 1 * gib}, mem: 64 * gib}, // an eighth of CPU
		},
		tasks: taskInfos(taskSpec{service: "web", n: 4}),
		want:  []string{"n4", "n2", "n1", "n3"},
	}, {
		name:  "preference: the rack with fewest tasks of the service, ties by value",
		nodes: racks,
		tasks: taskInfos(taskSpec{service: "web", n: 6, p: spreadOver("node.labels.rack")}),
		// r1, r2, r3 in turn; within a rack, its nodes in turn.
		want: []string{"a1", "b1", "c1", "a2", "b1", "c2"},
	}, {
		name: "preference counts the service's tasks already in a rack",
		nodes: []nodeSpec{
			{id: "a1", labels: []string{"rack=r1"}, tasks: []string{"web=3"}},
			{id: "b1", labels: []string{"rack=r2"}, tasks: []string{"web=1", "db=9"}},
			{id: "c1", labels: []string{"rack=r3"}},
			{id: "c2", labels: []string{"rack=r3"}},
		},
		tasks: taskInfos(taskSpec{service: "web", n: 5, p: spreadOver("node.labels.rack")}),
		// r3 (0), then r2 and r3 in turn; r1 (3 tasks) never comes first.
		want: []string{"c1", "b1", "c2", "b1", "c1"},
	}, {
		name:  "nested preferences: zone, then rack",
		nodes: racks,
		tasks: taskInfos(taskSpec{service: "web", n: 6, p: spreadOver("node.labels.zone", "node.labels.rack")}),
		// z1 (r1, r2) and z2 (r3) alternate; within z1, r1 and r2 alternate.
		want: []string{"a1", "c1", "b1", "c2", "a2", "c3"},
	}, {
		name: "nodes without the label are a group of their own",
		nodes: []nodeSpec{
			{id: "a1", labels: []string{"rack=r1"}},
			{id: "x1"},
			{id: "x2"},
		},
		tasks: taskInfos(taskSpec{service: "web", n: 4, p: spreadOver("node.labels.rack")}),
		// The unlabelled group's value is "", before "r1".
		want: []string{"x1", "a1", "x2", "a1"},
	}, {
		name: "preference groups count only nodes that meet the constraints",
		nodes: []nodeSpec{
			{id: "a1", labels: []string{"rack=r1", "disk=hdd"}, tasks: []string{"web=5"}},
			{id: "a2", labels: []string{"rack=r1", "disk=ssd"}},
			{id: "b1", labels: []string{"rack=r2", "disk=ssd"}, tasks: []string{"web=1"}},
		},
		tasks: taskInfos(taskSpec{service: "web", n: 3, p: &objectv1.Placement{
			Constraints: []string{"node.labels.disk==ssd"},
			Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}},
		}}),
		// r1 counts a2's 0 tasks, not a1's 5.
		want: []string{"a2", "a2", "b1"},
	}, {
		name: "a full rack gives way to the next",
		nodes: []nodeSpec{
			{id: "a1", labels: []string{"rack=r1"}, cpus: 1},
			{id: "b1", labels: []string{"rack=r2"}, tasks: []string{"web=4"}},
		},
		tasks: taskInfos(taskSpec{service: "web", n: 3, p: spreadOver("node.labels.rack"), cpu: 1e9}),
		want:  []string{"a1", "b1", "b1"},
	}, {
		name:  "max_replicas_per_node counts the batch's tasks",
		nodes: []nodeSpec{{id: "n1", tasks: []string{"web=1"}}, {id: "n2"}},
		tasks: taskInfos(taskSpec{service: "web", n: 4, p: &objectv1.Placement{MaxReplicasPerNode: 2}}),
		want:  []string{"n2", "n1", "n2", "refused: no suitable node: max_replicas_per_node (2) reached on 2 nodes"},
	}, {
		name:  "max_replicas_per_node counts only the service's tasks",
		nodes: []nodeSpec{{id: "n1", tasks: []string{"db=7"}}},
		tasks: taskInfos(taskSpec{service: "web", n: 1, p: &objectv1.Placement{MaxReplicasPerNode: 1}}),
		want:  []string{"n1"},
	}, {
		name:  "reservations add up within a batch",
		nodes: []nodeSpec{{id: "n1", cpus: 2, reserved: [2]int64{5e8, 0}}},
		tasks: taskInfos(taskSpec{service: "web", n: 3, cpu: 7e8}),
		want:  []string{"n1", "n1", "refused: no suitable node: insufficient CPU on 1 node"},
	}, {
		name:  "a node without a total takes only tasks that reserve none of it",
		nodes: []nodeSpec{{id: "n1", cpus: -1, mem: -1}},
		tasks: taskInfos(taskSpec{service: "a", n: 1, cpu: 1}, taskSpec{service: "b", n: 1, mem: 1}, taskSpec{service: "c", n: 1}),
		want: []string{
			"refused: no suitable node: insufficient CPU on 1 node",
			"refused: no suitable node: insufficient memory on 1 node",
			"n1",
		},
	}, {
		name:  "tasks of other services move the load",
		nodes: nodesN(2, nil),
		tasks: []*schedulerv1.TaskInfo{
			{Id: "db-1", ServiceId: "db"},
			{Id: "web-1", ServiceId: "web"},
			{Id: "web-2", ServiceId: "web"},
			{Id: "db-2", ServiceId: "db"},
		},
		// web-1 avoids n1, busier by db-1; db-2 goes where db is not.
		want: []string{"n1", "n2", "n1", "n2"},
	}, {
		name:  "same service, different reservations: one spread",
		nodes: nodesN(2, nil),
		tasks: []*schedulerv1.TaskInfo{
			{Id: "a", ServiceId: "web", Reservations: &objectv1.Resources{NanoCpus: 1e9}},
			{Id: "b", ServiceId: "web", Reservations: &objectv1.Resources{NanoCpus: 2e9}},
			{Id: "c", ServiceId: "web", Reservations: &objectv1.Resources{NanoCpus: 1e9}},
		},
		want: []string{"n1", "n2", "n1"},
	}, {
		name: "constraints on every attribute",
		nodes: []nodeSpec{
			{id: "m1", manager: true, labels: []string{"gpu=yes"}},
			{id: "w1", labels: []string{"gpu=yes"}},
			{id: "w2"},
		},
		tasks: []*schedulerv1.TaskInfo{
			{Id: "1", ServiceId: "a", Placement: &objectv1.Placement{Constraints: []string{"node.role==manager"}}},
			{Id: "2", ServiceId: "b", Placement: &objectv1.Placement{Constraints: []string{"node.role!=manager", "node.labels.gpu==yes"}}},
			{Id: "3", ServiceId: "c", Placement: &objectv1.Placement{Constraints: []string{"node.labels.gpu!=yes"}}},
			{Id: "4", ServiceId: "d", Placement: &objectv1.Placement{Constraints: []string{"node.hostname==HOST-W2"}}},
			{Id: "5", ServiceId: "e", Placement: &objectv1.Placement{Constraints: []string{"node.platform.os==linux", "node.platform.arch!=arm64", "node.id!=m1", "node.id!=w1"}}},
		},
		want: []string{"m1", "w1", "w2", "w2", "w2"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			if err := s.Configure(t.Context(), []byte(tc.cfg)); err != nil {
				t.Fatalf("Configure(%q) = %v", tc.cfg, err)
			}
			if got := scheduleFull(t, s, tc.nodes, tc.tasks); !slices.Equal(got, tc.want) {
				t.Errorf("Schedule = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	twelve := nodesN(12, func(i int) []string { return []string{fmt.Sprintf("rack=r%d", i%3), fmt.Sprintf("zone=z%d", i%2)} })
	cases := []struct {
		name  string
		nodes []nodeSpec
		task  taskSpec
		want  string
	}{{
		name:  "constraint no node meets",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, p: &objectv1.Placement{Constraints: []string{"node.labels.rack==r9"}}},
		want:  "no suitable node: constraint node.labels.rack==r9 matched 0 of 12 nodes",
	}, {
		name:  "constraint no node left by the previous ones meets, written with spaces",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, p: &objectv1.Placement{Constraints: []string{" node.labels.rack == r0", "node.id!=n1", "node.labels.zone==z9"}}},
		want:  "no suitable node: constraint node.labels.zone==z9 matched 0 of the 3 nodes that meet node.labels.rack==r0 and node.id!=n1",
	}, {
		name:  "insufficient memory",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, mem: 33 * gib},
		want:  "no suitable node: insufficient memory on 12 nodes",
	}, {
		name:  "insufficient CPU among the nodes meeting the constraints",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, cpu: 9e9, p: &objectv1.Placement{Constraints: []string{"node.labels.zone==z0"}}},
		want:  "no suitable node: insufficient CPU on 6 nodes (6 of 12 nodes meet the constraints)",
	}, {
		name: "several reasons",
		nodes: []nodeSpec{
			{id: "n1", tasks: []string{"web=1"}},
			{id: "n2", cpus: 1},
			{id: "n3", mem: gib},
			{id: "n4", cpus: 1, mem: gib},
		},
		task: taskSpec{service: "web", n: 1, cpu: 2e9, mem: 2 * gib, p: &objectv1.Placement{MaxReplicasPerNode: 1}},
		want: "no suitable node: max_replicas_per_node (1) reached on 1 node, insufficient CPU on 2 nodes, insufficient memory on 1 node",
	}, {
		name:  "invalid constraint",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, p: &objectv1.Placement{Constraints: []string{"node.labels.rack=r1"}}},
		want:  `no suitable node: invalid constraint "node.labels.rack=r1": must be KEY==VALUE or KEY!=VALUE`,
	}, {
		name:  "unknown attribute",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, p: &objectv1.Placement{Constraints: []string{"node.rack==r1"}}},
		want:  `no suitable node: invalid constraint "node.rack==r1": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`,
	}, {
		name:  "invalid preference",
		nodes: twelve,
		task:  taskSpec{service: "web", n: 1, p: spreadOver("rack")},
		want:  `no suitable node: invalid placement preference spread="rack": must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.<label>`,
	}, {
		name: "empty view",
		task: taskSpec{service: "web", n: 1},
		want: "no suitable node: no node is available",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := scheduleFull(t, New(), tc.nodes, taskInfos(tc.task))
			if want := []string{"refused: " + tc.want}; !slices.Equal(got, want) {
				t.Errorf("Schedule = %q, want %q", got, want)
			}
		})
	}
}

func TestView(t *testing.T) {
	node := func(id string) *schedulerv1.NodeInfo { return nodeSpec{id: id}.info() }
	pinned := func(id string) []*schedulerv1.TaskInfo {
		return []*schedulerv1.TaskInfo{{Id: "t", ServiceId: "web", Placement: &objectv1.Placement{Constraints: []string{"node.id==" + id}}}}
	}
	type step struct {
		req     *schedulerv1.ScheduleRequest
		want    []string // outcomes; nil when wantErr
		wantErr error
	}
	cases := []struct {
		name  string
		steps []step
	}{{
		name: "a delta to a fresh scheduler",
		steps: []step{
			{req: &schedulerv1.ScheduleRequest{ViewBase: 3, ViewVersion: 4}, wantErr: sdk.ErrFailedPrecondition},
		},
	}, {
		name: "a delta on another version leaves the view",
		steps: []step{
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 5, UpsertNodes: []*schedulerv1.NodeInfo{node("a")}}, want: []string{}},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 4, ViewVersion: 6, RemovedNodes: []string{"a"}}, wantErr: sdk.ErrFailedPrecondition},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 5, ViewVersion: 6, Tasks: pinned("a")}, want: []string{"a"}},
		},
	}, {
		name: "an invalid request leaves the view",
		steps: []step{
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, UpsertNodes: []*schedulerv1.NodeInfo{node("a")}}, want: []string{}},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 1, ViewVersion: 2, UpsertNodes: []*schedulerv1.NodeInfo{node("b"), node("b")}}, wantErr: sdk.ErrInvalidArgument},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 1, ViewVersion: 2, Tasks: pinned("b")}, want: []string{"refused: no suitable node: constraint node.id==b matched 0 of 1 node"}},
		},
	}, {
		name: "a full view replaces the view",
		steps: []step{
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, UpsertNodes: []*schedulerv1.NodeInfo{node("a"), node("b")}}, want: []string{}},
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 9, UpsertNodes: []*schedulerv1.NodeInfo{node("c")}, Tasks: pinned("a")}, want: []string{"refused: no suitable node: constraint node.id==a matched 0 of 1 node"}},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 9, ViewVersion: 10, Tasks: pinned("c")}, want: []string{"c"}},
		},
	}, {
		name: "upserts replace nodes; removals win; unknown removals are no-ops",
		steps: []step{
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, UpsertNodes: []*schedulerv1.NodeInfo{node("a"), node("b")}}, want: []string{}},
			{req: &schedulerv1.ScheduleRequest{
				ViewBase: 1, ViewVersion: 2,
				UpsertNodes:  []*schedulerv1.NodeInfo{nodeSpec{id: "a", labels: []string{"rack=r2"}}.info(), node("c")},
				RemovedNodes: []string{"c", "zz"},
				Tasks:        []*schedulerv1.TaskInfo{{Id: "t", ServiceId: "web", Placement: &objectv1.Placement{Constraints: []string{"node.labels.rack==r2"}}}},
			}, want: []string{"a"}},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 2, ViewVersion: 3, Tasks: pinned("c")}, want: []string{"refused: no suitable node: constraint node.id==c matched 0 of 2 nodes"}},
		},
	}, {
		name: "negative resources and missing IDs",
		steps: []step{
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, UpsertNodes: []*schedulerv1.NodeInfo{{Id: "a", Total: &objectv1.Resources{NanoCpus: -1}}}}, wantErr: sdk.ErrInvalidArgument},
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, Tasks: []*schedulerv1.TaskInfo{{ServiceId: "web"}}}, wantErr: sdk.ErrInvalidArgument},
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, Tasks: []*schedulerv1.TaskInfo{{Id: "x"}, {Id: "x"}}}, wantErr: sdk.ErrInvalidArgument},
			{req: &schedulerv1.ScheduleRequest{ViewVersion: 1, RemovedNodes: []string{""}}, wantErr: sdk.ErrInvalidArgument},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			for i, st := range tc.steps {
				resp, err := s.Schedule(t.Context(), st.req)
				if st.wantErr != nil {
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d: Schedule = %v, want an error of kind %v", i, err, st.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: Schedule = %v, want decisions", i, err)
				}
				if got := outcomes(resp); !slices.Equal(got, st.want) {
					t.Fatalf("step %d: Schedule = %q, want %q", i, got, st.want)
				}
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	cases := []struct {
		config  string
		want    Config
		wantErr string // in the error; "" for none
	}{
		{config: "", want: Config{SpreadOverHosts: true}},
		{config: "spread_over_hosts = false", want: Config{SpreadOverHosts: false}},
		{config: "spread_over_hosts = true\n", want: Config{SpreadOverHosts: true}},
		{config: "spread_over_host = false", wantErr: "config.spread_over_host: unknown key"},
		{config: "spread_over_hosts = 1", wantErr: "spread_over_hosts"},
	}
	for _, tc := range cases {
		s := New()
		// A previous config does not linger.
		if err := s.Configure(t.Context(), []byte("spread_over_hosts = false")); err != nil {
			t.Fatal(err)
		}
		err := s.Configure(t.Context(), []byte(tc.config))
		if tc.wantErr != "" {
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Configure(%q) = %v, want an InvalidArgument naming %q", tc.config, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Configure(%q) = %v, want nil", tc.config, err)
			continue
		}
		if s.cfg != tc.want {
			t.Errorf("Configure(%q) gives %+v, want %+v", tc.config, s.cfg, tc.want)
		}
	}
}
