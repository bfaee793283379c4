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
	"github.com/shoalhq/shoal/kernel/state/statetest"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

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
	raft   *statetest.Raft
	plugin *fakePlugin
}

func newEnv(t *testing.T) *env {
	st := state.New()
	e := &env{t: t, st: st, raft: statetest.NewRaft(st), plugin: &fakePlugin{}}
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

// TestPlacesInBatchesWithViewChanges places a backlog of 2.5 batches. It
// checks what the stage promises, however the watch happens to deliver the
// events (it may hand over a burst in one go or a few at a time, so the
// number of batches is not fixed): every task is offered to the plugin once
// and placed once, no request carries more than batchSize tasks, the first
// request carries the whole view and each later one only changes on top of
// the plugin's last version, and every request's view counts on n2 the tasks
// of the earlier batches, committed or not (the plugin never sees capacity
// already promised, nor the same task twice).
func TestPlacesInBatchesWithViewChanges(t *testing.T) {
	const tasks = 2500
	e := newEnv(t)
	writes := e.watchTaskUpdates()
	e.createTasks(tasks, "t")
	e.waitFor("2500 assigned to n2", func(tx *state.ReadTx) bool {
		return len(tx.TasksByNode("n2")) == tasks
	})
	all := e.plugin.requests()
	view := map[string]*schedulerv1.NodeInfo{}
	offered := map[string]int{}
	batches := 0
	for i, r := range all {
		if len(r.GetTasks()) > batchSize {
			t.Errorf("call %d: %d tasks, want at most %d", i, len(r.GetTasks()), batchSize)
		}
		if i == 0 && (r.GetViewBase() != 0 || len(r.GetUpsertNodes()) != 3) {
			t.Errorf("first call: base %d with %d nodes, want the whole view (base 0, 3 nodes)", r.GetViewBase(), len(r.GetUpsertNodes()))
		}
		if i > 0 && r.GetViewBase() != all[i-1].GetViewVersion() {
			t.Errorf("call %d: base %d, want the previous version %d", i, r.GetViewBase(), all[i-1].GetViewVersion())
		}
		for _, n := range r.GetUpsertNodes() {
			view[n.GetId()] = n
		}
		for _, id := range r.GetRemovedNodes() {
			delete(view, id)
		}
		if len(r.GetTasks()) == 0 {
			continue
		}
		batches++
		// firstFit put every earlier task on n2.
		if got, want := view["n2"].GetServiceTasks()["s1"], uint32(len(offered)); got != want {
			t.Errorf("call %d: the plugin's view has %d tasks on n2, want the %d of earlier batches", i, got, want)
		}
		for _, tk := range r.GetTasks() {
			offered[tk.GetId()]++
		}
	}
	if min := (tasks + batchSize - 1) / batchSize; batches < min {
		t.Errorf("%d plugin calls with tasks for %d tasks, want at least %d", batches, tasks, min)
	}
	if len(offered) != tasks {
		t.Errorf("%d tasks offered to the plugin, want %d", len(offered), tasks)
	}
	for id, n := range offered {
		if n != 1 {
			t.Errorf("task %s offered %d times, want once", id, n)
		}
	}
	// Each task is written once, pending to assigned on n2, and never again.
	got := writes(tasks)
	if len(got) != tasks {
		t.Errorf("%d tasks written, want %d", len(got), tasks)
	}
	for id, ws := range got {
		if len(ws) != 1 || ws[0].GetNodeId() != "n2" || ws[0].GetStatus().GetState() != objectv1.TaskState_TASK_STATE_ASSIGNED {
			t.Errorf("task %s written %d times (%v), want once, assigned to n2", id, len(ws), ws)
		}
	}
}

// watchTaskUpdates records every update of a task from now on. The
// returned function waits until at least n tasks were updated (or 10s),
// then returns the updates so far, per task.
func (e *env) watchTaskUpdates() func(n int) map[string][]*objectv1.Task {
	events, cancel := e.st.Watch()
	var mu sync.Mutex
	updates := map[string][]*objectv1.Task{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			if ev.Task == nil || ev.Kind != raftv1.ActionKind_ACTION_KIND_UPDATE {
				continue
			}
			mu.Lock()
			updates[ev.Task.Id] = append(updates[ev.Task.Id], ev.Task)
			mu.Unlock()
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
	return func(n int) map[string][]*objectv1.Task {
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := len(updates)
			mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string][]*objectv1.Task, len(updates))
		for id, ws := range updates {
			out[id] = slices.Clone(ws)
		}
		return out
	}
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
	if len(reqs) == 0 {
		t.Fatal("no request after the outage")
	}
	if reqs[0].GetViewBase() != 0 {
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
