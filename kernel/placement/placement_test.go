package placement

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

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
	reqs := e.plugin.requests()
	if len(reqs) != 3 {
		t.Errorf("%d plugin calls for 2,500 tasks, want 3 batches", len(reqs))
	}
	for i, r := range reqs {
		if len(r.GetTasks()) > batchSize {
			t.Errorf("call %d: %d tasks, want at most %d", i, len(r.GetTasks()), batchSize)
		}
		if i == 0 && (r.GetViewBase() != 0 || len(r.GetUpsertNodes()) != 3) {
			t.Errorf("first call: base %d with %d nodes, want the whole view (base 0, 3 nodes)", r.GetViewBase(), len(r.GetUpsertNodes()))
		}
		if i > 0 && r.GetViewBase() != reqs[i-1].GetViewVersion() {
			t.Errorf("call %d: base %d, want the previous version %d", i, r.GetViewBase(), reqs[i-1].GetViewVersion())
		}
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
