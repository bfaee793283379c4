package placement

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

type fakeRaft struct {
	mu    sync.Mutex
	st    *state.Store
	index uint64
}

func (r *fakeRaft) Update(_ context.Context, fn func(tx *state.Tx) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	txn, err := r.st.Prepare(time.Now(), fn)
	if err != nil || txn == nil {
		return err
	}
	r.index++
	return r.st.Apply(r.index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}})[0]
}

// fakePlugin hands out a scheduler that a test can swap or break.
type fakePlugin struct {
	mu    sync.Mutex
	s     scheduler.Scheduler
	calls []*schedulerv1.ScheduleRequest
}

func (p *fakePlugin) Get(context.Context) (scheduler.Scheduler, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s, nil
}

func (p *fakePlugin) requests() []*schedulerv1.ScheduleRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*schedulerv1.ScheduleRequest(nil), p.calls...)
}

// firstFit places every task on the first node of its view whose label
// "ok" is "yes", refusing otherwise; it keeps the view like a real plugin.
func (p *fakePlugin) firstFit() scheduler.Scheduler {
	view := map[string]*schedulerv1.NodeInfo{}
	var version uint64
	return scheduler.Func(func(_ context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
		p.mu.Lock()
		p.calls = append(p.calls, req)
		p.mu.Unlock()
		if req.GetViewBase() != 0 && req.GetViewBase() != version {
			return nil, fmt.Errorf("view %d, have %d: %w", req.GetViewBase(), version, sdk.ErrFailedPrecondition)
		}
		if req.GetViewBase() == 0 {
			view = map[string]*schedulerv1.NodeInfo{}
		}
		for _, n := range req.GetUpsertNodes() {
			view[n.GetId()] = n
		}
		for _, id := range req.GetRemovedNodes() {
			delete(view, id)
		}
		version = req.GetViewVersion()
		resp := &schedulerv1.ScheduleResponse{}
		for _, t := range req.GetTasks() {
			d := &schedulerv1.Decision{TaskId: t.GetId(), Refusal: "no node labelled ok=yes"}
			for _, id := range []string{"n1", "n2", "n3"} {
				if n := view[id]; n != nil && n.GetLabels()["ok"] == "yes" {
					d = &schedulerv1.Decision{TaskId: t.GetId(), NodeId: id}
					break
				}
			}
			resp.Decisions = append(resp.Decisions, d)
		}
		return resp, nil
	})
}

type env struct {
	t      *testing.T
	st     *state.Store
	raft   *fakeRaft
	plugin *fakePlugin
}

func newEnv(t *testing.T) *env {
	st := state.New()
	e := &env{t: t, st: st, raft: &fakeRaft{st: st}, plugin: &fakePlugin{}}
	e.plugin.s = e.plugin.firstFit()
	e.write(func(tx *state.Tx) error {
		for i, ok := range []string{"no", "yes", "yes"} {
			n := &objectv1.Node{
				Id:          fmt.Sprintf("n%d", i+1),
				Spec:        &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, Annotations: &objectv1.Annotations{Labels: map[string]string{"ok": ok}}},
				Status:      &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY},
				Description: &objectv1.NodeDescription{Executor: "simulated"},
			}
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(e.raft, st, e.plugin, slog.New(slog.DiscardHandler)).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return e
}

func (e *env) write(fn func(tx *state.Tx) error) {
	e.t.Helper()
	if err := e.raft.Update(context.Background(), fn); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) createTasks(n int, prefix string) {
	e.write(func(tx *state.Tx) error {
		for i := range n {
			if err := tx.CreateTask(&objectv1.Task{
				Id: fmt.Sprintf("%s%05d", prefix, i), ServiceId: "s1", DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
				Status: &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PENDING},
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *env) waitFor(what string, cond func(tx *state.ReadTx) bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ok := false
		e.st.View(func(tx *state.ReadTx) { ok = cond(tx) })
		if ok {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("not within 10s: %s", what)
}

func TestPlacesInBatchesWithViewChanges(t *testing.T) {
	e := newEnv(t)
	e.createTasks(2500, "t")
	e.waitFor("2500 assigned to n2", func(tx *state.ReadTx) bool {
		return len(tx.TasksByNode("n2")) == 2500
	})
	all := e.plugin.requests()
	var reqs []*schedulerv1.ScheduleRequest // those with tasks
	for i, r := range all {
		if len(r.GetTasks()) > 0 {
			reqs = append(reqs, r)
		}
		if len(r.GetTasks()) > batchSize {
			t.Errorf("call %d: %d tasks, want at most %d", i, len(r.GetTasks()), batchSize)
		}
		if i == 0 && (r.GetViewBase() != 0 || len(r.GetUpsertNodes()) != 3) {
			t.Errorf("first call: base %d with %d nodes, want the whole view (base 0, 3 nodes)", r.GetViewBase(), len(r.GetUpsertNodes()))
		}
		if i > 0 && r.GetViewBase() != all[i-1].GetViewVersion() {
			t.Errorf("call %d: base %d, want the previous version %d", i, r.GetViewBase(), all[i-1].GetViewVersion())
		}
	}
	if len(reqs) != 3 {
		t.Errorf("%d plugin calls with tasks for 2,500 tasks, want 3 batches", len(reqs))
	}
	// Later calls carry only n2, whose reservations and task count changed.
	if last := reqs[len(reqs)-1]; len(last.GetUpsertNodes()) != 1 || last.GetUpsertNodes()[0].GetId() != "n2" {
		t.Errorf("last call's node changes = %v, want only n2", last.GetUpsertNodes())
	}
	e.st.View(func(tx *state.ReadTx) {
		for _, tk := range tx.TasksByNode("n2") {
			if tk.GetStatus().GetState() != objectv1.TaskState_TASK_STATE_ASSIGNED {
				t.Fatalf("task %s is %v, want assigned", tk.Id, tk.GetStatus().GetState())
			}
		}
	})
}

func TestRefusalIsShownAndRetriedWhenNodesChange(t *testing.T) {
	e := newEnv(t)
	e.write(func(tx *state.Tx) error {
		for _, id := range []string{"n2", "n3"} {
			n := tx.Node(id)
			next := &objectv1.Node{Id: n.Id, Meta: n.Meta, Spec: &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN}, Status: n.Status, Description: n.Description}
			if err := tx.UpdateNode(next); err != nil {
				return err
			}
		}
		return nil
	})
	e.createTasks(1, "r")
	e.waitFor("refusal shown", func(tx *state.ReadTx) bool {
		return tx.Task("r00000").GetStatus().GetMessage() == NoSuitableNode+"no node labelled ok=yes"
	})
	// n3 becomes active again: the task is offered again and placed.
	e.write(func(tx *state.Tx) error {
		n := tx.Node("n3")
		next := &objectv1.Node{Id: n.Id, Meta: n.Meta, Status: n.Status, Description: n.Description,
			Spec: &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, Annotations: &objectv1.Annotations{Labels: map[string]string{"ok": "yes"}}}}
		return tx.UpdateNode(next)
	})
	e.waitFor("placed on n3", func(tx *state.ReadTx) bool { return tx.Task("r00000").GetNodeId() == "n3" })
}

func TestBadPluginReplyPlacesNothing(t *testing.T) {
	e := newEnv(t)
	e.plugin.mu.Lock()
	e.plugin.s = scheduler.Func(func(_ context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
		// Places every task on a node it was never shown.
		resp := &schedulerv1.ScheduleResponse{}
		for _, t := range req.GetTasks() {
			resp.Decisions = append(resp.Decisions, &schedulerv1.Decision{TaskId: t.GetId(), NodeId: "ghost"})
		}
		return resp, nil
	})
	e.plugin.mu.Unlock()
	e.createTasks(3, "b")
	e.waitFor("error shown", func(tx *state.ReadTx) bool {
		return strings.Contains(tx.Task("b00000").GetStatus().GetMessage(), `node "ghost" is not in the view`)
	})
	e.st.View(func(tx *state.ReadTx) {
		if n := len(tx.TasksByNode("ghost")); n != 0 {
			t.Errorf("%d tasks placed on a node outside the view", n)
		}
	})
}

func TestPluginOutageDelaysPlacement(t *testing.T) {
	e := newEnv(t)
	good := e.plugin.firstFit()
	calls := 0
	e.plugin.mu.Lock()
	e.plugin.s = scheduler.Func(func(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
		calls++
		if calls <= 2 {
			return nil, fmt.Errorf("scheduler plugin restarting: %w", sdk.ErrUnavailable)
		}
		return good.Schedule(ctx, req)
	})
	e.plugin.mu.Unlock()
	e.createTasks(50, "o")
	e.waitFor("all placed after the outage", func(tx *state.ReadTx) bool { return len(tx.TasksByNode("n2")) == 50 })
	// After the outage the plugin got the whole view again.
	reqs := e.plugin.requests()
	if len(reqs) == 0 || reqs[0].GetViewBase() != 0 {
		t.Errorf("first request after the outage has view base %d, want 0 (whole view)", reqs[0].GetViewBase())
	}
}

func TestViewKeptCurrentWhileIdle(t *testing.T) {
	e := newEnv(t)
	// Nothing to place: the plugin still gets the whole view.
	deadline := time.Now().Add(10 * time.Second)
	for len(e.plugin.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	reqs := e.plugin.requests()
	if len(reqs) != 1 || reqs[0].GetViewBase() != 0 || len(reqs[0].GetUpsertNodes()) != 3 || len(reqs[0].GetTasks()) != 0 {
		t.Fatalf("idle with 3 nodes: requests %v, want one whole view (3 nodes) without tasks", reqs)
	}
	// A node changes: the change follows on its own, and only it.
	e.write(func(tx *state.Tx) error {
		n := tx.Node("n1")
		next := &objectv1.Node{Id: n.Id, Meta: n.Meta, Status: n.Status, Description: n.Description,
			Spec: &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, Annotations: &objectv1.Annotations{Labels: map[string]string{"ok": "yes", "new": "label"}}}}
		return tx.UpdateNode(next)
	})
	deadline = time.Now().Add(10 * time.Second)
	for len(e.plugin.requests()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	reqs = e.plugin.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests after a node change, want 2", len(reqs))
	}
	if r := reqs[1]; r.GetViewBase() != reqs[0].GetViewVersion() || len(r.GetUpsertNodes()) != 1 || r.GetUpsertNodes()[0].GetLabels()["new"] != "label" || len(r.GetTasks()) != 0 {
		t.Errorf("after n1 changed: %v, want a delta on version %d with only the new n1 and no tasks", r, reqs[0].GetViewVersion())
	}
	// A task then comes with no node changes: the view was current.
	e.createTasks(1, "i")
	e.waitFor("placed", func(tx *state.ReadTx) bool { return tx.Task("i00000").GetNodeId() != "" })
	reqs = e.plugin.requests()
	if r := reqs[len(reqs)-1]; len(r.GetTasks()) != 1 || len(r.GetUpsertNodes()) != 0 {
		t.Errorf("the task's request carries %d tasks and %d node changes, want 1 and none", len(r.GetTasks()), len(r.GetUpsertNodes()))
	}
}

func TestOnlyWeightChangesDirtyNodes(t *testing.T) {
	running := func(state objectv1.TaskState, node string, cpus int64) *objectv1.Task {
		return &objectv1.Task{Id: "t", ServiceId: "s", NodeId: node, DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
			Spec:   &objectv1.TaskSpec{Resources: &objectv1.ResourceRequirements{Reservations: &objectv1.Resources{NanoCpus: cpus}}},
			Status: &objectv1.TaskStatus{State: state}}
	}
	assigned := running(objectv1.TaskState_TASK_STATE_ASSIGNED, "n1", 1)
	for _, c := range []struct {
		name      string
		kind      raftv1.ActionKind
		old, task *objectv1.Task
		wantDirty []string
	}{
		{"status report", raftv1.ActionKind_ACTION_KIND_UPDATE, assigned, running(objectv1.TaskState_TASK_STATE_RUNNING, "n1", 1), nil},
		{"placement", raftv1.ActionKind_ACTION_KIND_UPDATE, running(objectv1.TaskState_TASK_STATE_PENDING, "", 1), assigned, []string{"n1"}},
		{"task ended", raftv1.ActionKind_ACTION_KIND_UPDATE, assigned, running(objectv1.TaskState_TASK_STATE_FAILED, "n1", 1), []string{"n1"}},
		{"reservation changed", raftv1.ActionKind_ACTION_KIND_UPDATE, assigned, running(objectv1.TaskState_TASK_STATE_ASSIGNED, "n1", 2), []string{"n1"}},
		{"moved", raftv1.ActionKind_ACTION_KIND_UPDATE, assigned, running(objectv1.TaskState_TASK_STATE_ASSIGNED, "n2", 1), []string{"n1", "n2"}},
		{"created on a node", raftv1.ActionKind_ACTION_KIND_CREATE, nil, assigned, []string{"n1"}},
		{"deleted", deleteKind, assigned, assigned, []string{"n1"}},
		{"deleted, ended", deleteKind, nil, running(objectv1.TaskState_TASK_STATE_FAILED, "n1", 1), nil},
	} {
		p := &Placer{}
		p.mark(state.Event{Kind: c.kind, Task: c.task, OldTask: c.old}, map[string]bool{}, map[string]bool{}, map[string]bool{})
		var got []string
		for id := range p.dirty {
			got = append(got, id)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.wantDirty) {
			t.Errorf("%s: dirty nodes %v, want %v", c.name, got, c.wantDirty)
		}
	}
}

// TestSameInfoCoversFields fails when NodeInfo or Resources gain a field
// that sameInfo does not compare.
func TestSameInfoCoversFields(t *testing.T) {
	for msg, want := range map[protoreflect.ProtoMessage][]string{
		&schedulerv1.NodeInfo{}: {"hostname", "id", "labels", "platform", "reserved", "role", "service_tasks", "total"},
		&objectv1.Resources{}:   {"memory_bytes", "nano_cpus"},
	} {
		var got []string
		fields := msg.ProtoReflect().Descriptor().Fields()
		for i := range fields.Len() {
			got = append(got, string(fields.Get(i).Name()))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v; sameInfo compares %v: update it", msg.ProtoReflect().Descriptor().FullName(), got, want)
		}
	}
	a := &schedulerv1.NodeInfo{Id: "n", Labels: map[string]string{"a": "b"}, Total: &objectv1.Resources{NanoCpus: 1}, Reserved: &objectv1.Resources{}, ServiceTasks: map[string]uint32{"s": 1}}
	if !sameInfo(a, proto.Clone(a).(*schedulerv1.NodeInfo)) {
		t.Error("a copy differs")
	}
	for name, change := range map[string]func(*schedulerv1.NodeInfo){
		"hostname": func(n *schedulerv1.NodeInfo) { n.Hostname = "h" },
		"role":     func(n *schedulerv1.NodeInfo) { n.Role = objectv1.NodeRole_NODE_ROLE_MANAGER },
		"platform": func(n *schedulerv1.NodeInfo) { n.Platform = "linux/arm64" },
		"labels":   func(n *schedulerv1.NodeInfo) { n.Labels["a"] = "c" },
		"total":    func(n *schedulerv1.NodeInfo) { n.Total.MemoryBytes = 1 },
		"reserved": func(n *schedulerv1.NodeInfo) { n.Reserved.NanoCpus = 1 },
		"tasks":    func(n *schedulerv1.NodeInfo) { n.ServiceTasks["s"] = 2 },
		"no total": func(n *schedulerv1.NodeInfo) { n.Total = nil },
	} {
		b := proto.Clone(a).(*schedulerv1.NodeInfo)
		change(b)
		if sameInfo(a, b) {
			t.Errorf("a change of %s goes unnoticed", name)
		}
	}
}

func TestShallowCopyCoversFields(t *testing.T) {
	task := &objectv1.Task{
		Id: "t", Meta: &objectv1.Meta{Version: 3}, ServiceId: "s", Slot: 2, NodeId: "n",
		Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "img"}}, SpecVersion: 4,
		ServiceAnnotations: &objectv1.Annotations{Name: "web"}, DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
		Status:   &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PENDING},
		Networks: []*objectv1.NetworkAttachment{{NetworkId: "net"}}, Endpoint: &objectv1.EndpointSpec{},
	}
	task.ProtoReflect().SetUnknown(protowire.AppendTag(nil, 999, protowire.VarintType))
	task.ProtoReflect().SetUnknown(protowire.AppendVarint(task.ProtoReflect().GetUnknown(), 1))
	fields := task.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if !task.ProtoReflect().Has(fields.Get(i)) {
			t.Fatalf("the test task leaves %s unset: set it, and copy it in shallowCopy", fields.Get(i).Name())
		}
	}
	if c := shallowCopy(task); !proto.Equal(c, task) {
		t.Errorf("shallowCopy = %v, want %v", c, task)
	}
}
