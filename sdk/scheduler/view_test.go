package scheduler_test

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
)

const (
	cpu = int64(1e9)
	gib = int64(1 << 30)
)

// node returns a worker with cpus CPUs and gibs GiB (0: total not
// reported), labels as key, value, ...
func node(id string, cpus, gibs int64, labels ...string) *schedulerv1.NodeInfo {
	n := &schedulerv1.NodeInfo{
		Id: id, Hostname: "host-" + id, Role: objectv1.NodeRole_NODE_ROLE_WORKER, Platform: "linux/amd64",
		Total: &objectv1.Resources{NanoCpus: cpus * cpu, MemoryBytes: gibs * gib},
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[labels[i]] = labels[i+1]
	}
	return n
}

func task(id, service string, cpus, gibs int64, max uint64, constraints ...string) *schedulerv1.TaskInfo {
	return &schedulerv1.TaskInfo{
		Id: id, ServiceId: service,
		Placement:    &objectv1.Placement{Constraints: constraints, MaxReplicasPerNode: max},
		Reservations: &objectv1.Resources{NanoCpus: cpus * cpu, MemoryBytes: gibs * gib},
	}
}

func ids(nodes []*schedulerv1.NodeInfo) []string {
	s := []string{}
	for _, n := range nodes {
		s = append(s, n.GetId())
	}
	return s
}

func TestViewApply(t *testing.T) {
	type step struct {
		req     *schedulerv1.ScheduleRequest
		want    []string // node IDs after the step
		wantErr error
		msg     string // in the error
	}
	full := func(version uint64, nodes ...*schedulerv1.NodeInfo) *schedulerv1.ScheduleRequest {
		return &schedulerv1.ScheduleRequest{ViewVersion: version, UpsertNodes: nodes}
	}
	delta := func(base, version uint64, upsert []*schedulerv1.NodeInfo, removed ...string) *schedulerv1.ScheduleRequest {
		return &schedulerv1.ScheduleRequest{ViewBase: base, ViewVersion: version, UpsertNodes: upsert, RemovedNodes: removed}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"a delta to a fresh view", []step{
			{req: delta(3, 4, nil), wantErr: sdk.ErrFailedPrecondition, msg: "holds no view (it restarted)"},
		}},
		{"full views, sorted by ID", []step{
			{req: full(5, node("c", 1, 1), node("a", 1, 1), node("b", 1, 1)), want: []string{"a", "b", "c"}},
			{req: full(9, node("z", 1, 1)), want: []string{"z"}},
			{req: full(10), want: []string{}},
		}},
		{"deltas", []step{
			{req: full(5, node("b", 1, 1)), want: []string{"b"}},
			{req: delta(5, 7, []*schedulerv1.NodeInfo{node("a", 1, 1), node("c", 1, 1)}), want: []string{"a", "b", "c"}},
			{req: delta(7, 8, nil, "b", "gone"), want: []string{"a", "c"}},
			// Upserted and removed by one request: removed.
			{req: delta(8, 9, []*schedulerv1.NodeInfo{node("d", 1, 1)}, "d"), want: []string{"a", "c"}},
			{req: delta(8, 10, nil), wantErr: sdk.ErrFailedPrecondition, msg: "changes view 8, but the scheduler holds view 9"},
			{req: delta(9, 10, nil), want: []string{"a", "c"}},
		}},
		{"invalid requests leave the view as it was", []step{
			{req: full(5, node("a", 1, 1)), want: []string{"a"}},
			{req: full(6, node("b", 1, 1), node("b", 1, 1)), wantErr: sdk.ErrInvalidArgument, msg: `upsert_nodes[1].id: "b" repeats upsert_nodes[0].id`},
			{req: delta(5, 6, []*schedulerv1.NodeInfo{{}}), wantErr: sdk.ErrInvalidArgument, msg: "upsert_nodes[0].id: is required"},
			{req: delta(5, 6, nil, ""), wantErr: sdk.ErrInvalidArgument, msg: "removed_nodes[0]: must not be empty"},
			{req: delta(5, 6, []*schedulerv1.NodeInfo{{Id: "c", Total: &objectv1.Resources{MemoryBytes: -1}}}), wantErr: sdk.ErrInvalidArgument, msg: "upsert_nodes[0].total.memory_bytes: must not be negative, got -1"},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 5, ViewVersion: 6, Tasks: []*schedulerv1.TaskInfo{{Id: "t"}, {Id: "t"}}}, wantErr: sdk.ErrInvalidArgument, msg: `tasks[1].id: "t" repeats tasks[0].id`},
			{req: &schedulerv1.ScheduleRequest{ViewBase: 5, ViewVersion: 6, Tasks: []*schedulerv1.TaskInfo{{Id: "t", Reservations: &objectv1.Resources{NanoCpus: -2}}}}, wantErr: sdk.ErrInvalidArgument, msg: "tasks[0].reservations.nano_cpus: must not be negative, got -2"},
			{req: delta(5, 6, nil), want: []string{"a"}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v scheduler.View
			for i, s := range tc.steps {
				err := v.Apply(s.req)
				switch {
				case s.wantErr != nil:
					if !errors.Is(err, s.wantErr) || !strings.Contains(err.Error(), s.msg) {
						t.Fatalf("step %d: Apply = %v, want an error of kind %v with %q", i, err, s.wantErr, s.msg)
					}
				case err != nil:
					t.Fatalf("step %d: Apply = %v", i, err)
				default:
					if got := ids(v.Nodes()); !slices.Equal(got, s.want) {
						t.Fatalf("step %d: Nodes = %v, want %v", i, got, s.want)
					}
					if v.Version() != s.req.GetViewVersion() {
						t.Fatalf("step %d: Version = %d, want %d", i, v.Version(), s.req.GetViewVersion())
					}
				}
			}
		})
	}
}

func TestViewCapsFieldErrors(t *testing.T) {
	req := &schedulerv1.ScheduleRequest{Tasks: make([]*schedulerv1.TaskInfo, 50)}
	for i := range req.Tasks {
		req.Tasks[i] = &schedulerv1.TaskInfo{}
	}
	var v scheduler.View
	var fe sdk.FieldErrors
	if err := v.Apply(req); !errors.As(err, &fe) {
		t.Fatalf("Apply(50 tasks without ID) = %v, want FieldErrors", err)
	}
	if got, want := len(fe), 21; got != want || fe[20].Message != "30 more invalid fields not shown" {
		t.Errorf("Apply(50 tasks without ID) names %d fields, last %q; want %d, the last saying 30 more", got, fe[len(fe)-1], want)
	}
}

func TestViewFit(t *testing.T) {
	nodes := []*schedulerv1.NodeInfo{
		node("n1", 2, 4, "rack", "r1"),
		node("n2", 4, 2, "rack", "r2"),
		node("n3", 0, 0, "rack", "r1"), // reports no totals
		node("n4", 8, 8),
	}
	nodes[1].ServiceTasks = map[string]uint32{"web": 2}
	nodes[3].Reserved = &objectv1.Resources{NanoCpus: 7 * cpu, MemoryBytes: 7 * gib}
	cases := []struct {
		name    string
		task    *schedulerv1.TaskInfo
		want    []string
		refusal string
	}{
		{"no constraints, no reservations", task("t", "web", 0, 0, 0), []string{"n1", "n2", "n3", "n4"}, ""},
		{"constraint", task("t", "web", 0, 0, 0, "node.labels.rack==r1"), []string{"n1", "n3"}, ""},
		{"host name in another case", task("t", "web", 0, 0, 0, "node.hostname==HOST-N2"), []string{"n2"}, ""},
		{"no label differs", task("t", "web", 0, 0, 0, "node.labels.rack!=r1"), []string{"n2", "n4"}, ""},
		{"reservations", task("t", "web", 2, 2, 0), []string{"n1", "n2"}, ""},
		{"memory only: no CPU total needed", task("t", "web", 0, 1, 0), []string{"n1", "n2", "n4"}, ""},
		{"cap counts the tasks on the node", task("t", "web", 0, 0, 2), []string{"n1", "n3", "n4"}, ""},
		{"constraint matching none",
			task("t", "web", 0, 0, 0, "node.labels.rack==r9"), nil,
			"no suitable node: constraint node.labels.rack==r9 matched 0 of 4 nodes"},
		{"constraint matching none after others, with the one node's reason",
			task("t", "web", 0, 0, 0, "node.labels.rack==r2", "node.platform.arch==arm64"), nil,
			`no suitable node: constraint node.platform.arch==arm64 matched 0 of the 1 node that meets node.labels.rack==r2 (node n2: node.platform.arch is "amd64", not "arm64")`},
		{"resources",
			task("t", "web", 3, 3, 0), nil,
			"no suitable node: insufficient CPU on 3 nodes, insufficient memory on 1 node"},
		{"cap and resources among the constrained",
			task("t", "web", 0, 3, 1, "node.labels.rack!=r1"), nil,
			"no suitable node: max_replicas_per_node (1) reached on 1 node, insufficient memory on 1 node (2 of 4 nodes meet the constraints)"},
		{"invalid constraint",
			task("t", "web", 0, 0, 0, "node.labels.rack=r1"), nil,
			`no suitable node: invalid constraint "node.labels.rack=r1": must be KEY==VALUE or KEY!=VALUE`},
	}
	var v scheduler.View
	if err := v.Apply(&schedulerv1.ScheduleRequest{ViewVersion: 1, UpsertNodes: nodes}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		got, refusal := v.Fit(tc.task)
		if !slices.Equal(ids(got), tc.want) && len(got)+len(tc.want) > 0 || refusal != tc.refusal {
			t.Errorf("%s: Fit = %v, %q; want %v, %q", tc.name, ids(got), refusal, tc.want, tc.refusal)
		}
	}

	var empty scheduler.View
	if got, refusal := empty.Fit(task("t", "web", 0, 0, 0)); got != nil || refusal != "no suitable node: no node is available" {
		t.Errorf("Fit on an empty view = %v, %q; want no node is available", ids(got), refusal)
	}
}

// TestViewBatch: the placements of a batch count until the next Apply,
// whose upserts carry them as the kernel committed them.
func TestViewBatch(t *testing.T) {
	var v scheduler.View
	if err := v.Apply(&schedulerv1.ScheduleRequest{ViewVersion: 1, UpsertNodes: []*schedulerv1.NodeInfo{node("a", 2, 4), node("b", 2, 4)}}); err != nil {
		t.Fatal(err)
	}
	place := func() string {
		tk := task(fmt.Sprint("t", v.Version()), "web", 1, 1, 3)
		nodes, refusal := v.Fit(tk)
		if len(nodes) == 0 {
			return refusal
		}
		v.Place(tk, nodes[0])
		return nodes[0].GetId()
	}
	var got []string
	for range 5 {
		got = append(got, place())
	}
	want := []string{"a", "a", "b", "b", "no suitable node: insufficient CPU on 2 nodes"}
	if !slices.Equal(got, want) {
		t.Errorf("five 1-CPU tasks on two 2-CPU nodes = %q, want %q", got, want)
	}
	a := v.Node("a")
	if cpus, mem := v.Free(a); cpus != 0 || mem != 2*gib {
		t.Errorf("Free(a) = %d, %d; want 0, 2 GiB", cpus, mem)
	}
	if n := v.ServiceTasks(a, "web"); n != 2 {
		t.Errorf("ServiceTasks(a, web) = %d, want 2", n)
	}

	// The kernel commits two tasks on a, none on b, and says so.
	a = node("a", 2, 4)
	a.Reserved = &objectv1.Resources{NanoCpus: 2 * cpu, MemoryBytes: 2 * gib}
	a.ServiceTasks = map[string]uint32{"web": 2}
	if err := v.Apply(&schedulerv1.ScheduleRequest{ViewBase: 1, ViewVersion: 2, UpsertNodes: []*schedulerv1.NodeInfo{a}}); err != nil {
		t.Fatal(err)
	}
	if cpus, _ := v.Free(v.Node("b")); cpus != 2*cpu {
		t.Errorf("after Apply, Free(b) = %d CPUs, want 2: the batch's placements are forgotten", cpus/cpu)
	}
	if got, want := place(), "b"; got != want {
		t.Errorf("after Apply, a task goes to %q, want %q", got, want)
	}
	if n := v.ServiceTasks(v.Node("a"), "web"); n != 2 {
		t.Errorf("ServiceTasks(a, web) = %d, want 2 (as the kernel reports)", n)
	}
	if v.Node("gone") != nil {
		t.Errorf("Node(gone) = %v, want nil", v.Node("gone"))
	}
}
