package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/state/statetest"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// fakePresence records beats and lets a test declare nodes down.
type fakePresence struct {
	mu     sync.Mutex
	beats  map[string]int
	downFn func([]string)
	ready  chan struct{}
}

func newFakePresence() *fakePresence {
	return &fakePresence{beats: map[string]int{}, ready: make(chan struct{})}
}

func (p *fakePresence) Beat(id string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.beats[id]++
	return 5 * time.Second
}
func (p *fakePresence) Expect([]string, time.Duration) {}
func (p *fakePresence) Forget(string)                  {}
func (p *fakePresence) Run(ctx context.Context, down func([]string)) error {
	p.mu.Lock()
	p.downFn = down
	p.mu.Unlock()
	close(p.ready)
	<-ctx.Done()
	return nil
}

// fakePeer collects what a session sends.
type fakePeer struct {
	mu     sync.Mutex
	msgs   []*workerv1.ManagerMessage
	closed error
}

func (p *fakePeer) send(m *workerv1.ManagerMessage) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return true
}

func (p *fakePeer) close(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = err
}

func (p *fakePeer) messages() []*workerv1.ManagerMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*workerv1.ManagerMessage(nil), p.msgs...)
}

type env struct {
	t    *testing.T
	st   *state.Store
	raft *statetest.Raft
	pres *fakePresence
	d    *Dispatcher
	stop func()
}

func newEnv(t *testing.T) *env { return newEnvConfig(t, Config{Grace: time.Minute}) }

func newEnvConfig(t *testing.T, cfg Config) *env {
	st := state.New()
	e := &env{t: t, st: st, raft: statetest.NewRaft(st), pres: newFakePresence()}
	e.write(func(tx *state.Tx) error {
		for _, id := range []string{"n1", "n2"} {
			if err := tx.CreateNode(&objectv1.Node{Id: id, Role: objectv1.NodeRole_NODE_ROLE_WORKER,
				Spec:        &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
				Description: &objectv1.NodeDescription{Executor: "simulated"},
				Status:      &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_UNKNOWN}}); err != nil {
				return err
			}
		}
		return nil
	})
	e.d = New(e.raft, st, e.pres, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.d.Run(ctx) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}
	t.Cleanup(e.stop)
	<-e.pres.ready
	return e
}

func (e *env) write(fn func(tx *state.Tx) error) {
	e.t.Helper()
	if err := e.raft.Update(context.Background(), fn); err != nil {
		e.t.Fatal(err)
	}
}

func task(id, node string, st objectv1.TaskState) *objectv1.Task {
	return &objectv1.Task{Id: id, ServiceId: "s1", NodeId: node, DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
		Status: &objectv1.TaskStatus{State: st}}
}

func (e *env) open(node string) (*session, *fakePeer) {
	e.t.Helper()
	p := &fakePeer{}
	s, err := e.d.Open(context.Background(), node, &workerv1.Hello{Description: &objectv1.NodeDescription{Hostname: node, Executor: "simulated"}}, p)
	if err != nil {
		e.t.Fatal(err)
	}
	return s, p
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("not within 10s: %s", what)
}

// changes sums the assignment changes a peer received, by batch type.
func changes(msgs []*workerv1.ManagerMessage) (complete, incremental [][]*workerv1.AssignmentChange) {
	for _, m := range msgs {
		if a := m.GetAssignments(); a != nil {
			if a.GetType() == workerv1.AssignmentsType_ASSIGNMENTS_TYPE_COMPLETE {
				complete = append(complete, a.GetChanges())
			} else {
				incremental = append(incremental, a.GetChanges())
			}
		}
	}
	return complete, incremental
}

func TestOpenSendsSessionThenCompleteSet(t *testing.T) {
	e := newEnv(t)
	e.write(func(tx *state.Tx) error {
		for _, tk := range []*objectv1.Task{
			task("t1", "n1", objectv1.TaskState_TASK_STATE_ASSIGNED),
			task("t2", "n1", objectv1.TaskState_TASK_STATE_RUNNING),
			task("t3", "n2", objectv1.TaskState_TASK_STATE_RUNNING), // another node's
			task("t4", "n1", objectv1.TaskState_TASK_STATE_PENDING), // not placed yet
		} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	_, p := e.open("n1")
	msgs := p.messages()
	if len(msgs) < 2 || msgs[0].GetSession().GetNodeId() != "n1" {
		t.Fatalf("first message = %v, want the session info for n1", msgs)
	}
	complete, _ := changes(msgs)
	if len(complete) != 1 || len(complete[0]) != 2 {
		t.Fatalf("complete sets = %v, want one with t1 and t2", complete)
	}
	for _, c := range complete[0] {
		if id := c.GetTask().GetId(); id != "t1" && id != "t2" {
			t.Errorf("complete set holds %s, which is not n1's placed task", id)
		}
	}
	eventually(t, "n1 committed ready", func() bool {
		var st objectv1.NodeState
		e.st.View(func(tx *state.ReadTx) { st = tx.Node("n1").GetStatus().GetState() })
		return st == objectv1.NodeState_NODE_STATE_READY
	})
}

func TestUnknownNodeIsRefused(t *testing.T) {
	e := newEnv(t)
	_, err := e.d.Open(context.Background(), "ghost", &workerv1.Hello{}, &fakePeer{})
	if !errors.Is(err, sdk.ErrPermissionDenied) {
		t.Fatalf("Open(unknown node) = %v, want PermissionDenied", err)
	}
}

func TestChangesAreBatched(t *testing.T) {
	e := newEnv(t)
	_, p := e.open("n1")
	// 250 tasks placed on n1 in one write: at most 100 per message.
	e.write(func(tx *state.Tx) error {
		for i := range 250 {
			if err := tx.CreateTask(task(fmt.Sprintf("t%03d", i), "n1", objectv1.TaskState_TASK_STATE_ASSIGNED)); err != nil {
				return err
			}
		}
		return nil
	})
	eventually(t, "250 changes delivered", func() bool {
		_, inc := changes(p.messages())
		n := 0
		for _, b := range inc {
			n += len(b)
		}
		return n == 250
	})
	_, inc := changes(p.messages())
	for _, b := range inc {
		if len(b) > maxBatch {
			t.Errorf("a batch of %d changes, want at most %d", len(b), maxBatch)
		}
	}
	if len(inc) > 4 {
		t.Errorf("250 changes in %d messages, want at most 4", len(inc))
	}

	// A status change the worker itself reported is not echoed back.
	before := len(p.messages())
	e.write(func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t000")).(*objectv1.Task)
		next.Status = &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING}
		return tx.UpdateTask(next)
	})
	// A desired-state change is sent.
	e.write(func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t001")).(*objectv1.Task)
		next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
		return tx.UpdateTask(next)
	})
	eventually(t, "the shutdown sent", func() bool { return len(p.messages()) > before })
	time.Sleep(3 * maxBatchInterval) // nothing else may follow
	msgs := p.messages()[before:]
	if len(msgs) != 1 || len(msgs[0].GetAssignments().GetChanges()) != 1 || msgs[0].GetAssignments().GetChanges()[0].GetTask().GetId() != "t001" {
		t.Errorf("after a status report and a shutdown: %v, want only t001's update", msgs)
	}
}

func TestStatusReports(t *testing.T) {
	e := newEnv(t)
	e.write(func(tx *state.Tx) error {
		if err := tx.CreateTask(task("mine", "n1", objectv1.TaskState_TASK_STATE_ASSIGNED)); err != nil {
			return err
		}
		return tx.CreateTask(task("theirs", "n2", objectv1.TaskState_TASK_STATE_ASSIGNED))
	})
	s, _ := e.open("n1")
	report := func(id string, st objectv1.TaskState) *workerv1.WorkerMessage {
		return &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Status{Status: &workerv1.StatusReport{Updates: []*workerv1.TaskStatusUpdate{
			{TaskId: id, Status: &objectv1.TaskStatus{State: st}},
		}}}}
	}
	for _, m := range []*workerv1.WorkerMessage{
		report("mine", objectv1.TaskState_TASK_STATE_RUNNING),
		report("theirs", objectv1.TaskState_TASK_STATE_FAILED), // not n1's to report
	} {
		if err := s.Handle(m); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "mine running", func() bool {
		var st objectv1.TaskState
		e.st.View(func(tx *state.ReadTx) { st = tx.Task("mine").GetStatus().GetState() })
		return st == objectv1.TaskState_TASK_STATE_RUNNING
	})
	// States only move forward.
	if err := s.Handle(report("mine", objectv1.TaskState_TASK_STATE_STARTING)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * maxBatchInterval)
	e.st.View(func(tx *state.ReadTx) {
		if st := tx.Task("mine").GetStatus().GetState(); st != objectv1.TaskState_TASK_STATE_RUNNING {
			t.Errorf("mine = %v after a stale report, want running", st)
		}
		if st := tx.Task("theirs").GetStatus().GetState(); st != objectv1.TaskState_TASK_STATE_ASSIGNED {
			t.Errorf("theirs = %v, changed by another node's report", st)
		}
	})
	// Malformed reports are refused with the field named.
	err := s.Handle(report("", objectv1.TaskState_TASK_STATE_REMOVE))
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 2 {
		t.Errorf("Handle(bad report) = %v, want task_id and status.state named", err)
	}
}

func TestHeartbeatAndDown(t *testing.T) {
	e := newEnv(t)
	s, p := e.open("n1")
	if err := s.Handle(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Heartbeat{Heartbeat: &workerv1.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}
	var reply *workerv1.HeartbeatReply
	for _, m := range p.messages() {
		if h := m.GetHeartbeat(); h != nil {
			reply = h
		}
	}
	if reply.GetPeriod().AsDuration() != 5*time.Second {
		t.Fatalf("heartbeat reply = %v, want the tracker's period", reply)
	}
	eventually(t, "n1 ready", func() bool {
		var st objectv1.NodeState
		e.st.View(func(tx *state.ReadTx) { st = tx.Node("n1").GetStatus().GetState() })
		return st == objectv1.NodeState_NODE_STATE_READY
	})
	before := e.raft.Writes()
	e.pres.mu.Lock()
	down := e.pres.downFn
	e.pres.mu.Unlock()
	down([]string{"n1", "n2"})
	eventually(t, "both down", func() bool {
		n := 0
		e.st.View(func(tx *state.ReadTx) {
			for _, id := range []string{"n1", "n2"} {
				if tx.Node(id).GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN {
					n++
				}
			}
		})
		return n == 2
	})
	if w := e.raft.Writes() - before; w != 1 {
		t.Errorf("two nodes down took %d writes, want 1", w)
	}
}

// An ended task stays in its node's assignment set, whatever its desired
// state, until it is deleted: the worker keeps its container, and so its
// logs, as long as the task is listed.
func TestEndedTaskStaysAssignedUntilDeleted(t *testing.T) {
	e := newEnv(t)
	e.write(func(tx *state.Tx) error {
		return tx.CreateTask(task("t1", "n1", objectv1.TaskState_TASK_STATE_RUNNING))
	})
	_, p := e.open("n1")
	eventually(t, "the complete set", func() bool {
		complete, _ := changes(p.messages())
		return len(complete) == 1
	})
	// It ends, and is not wanted any more: sent once more (the desired
	// state changed), never removed.
	e.write(func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t1")).(*objectv1.Task)
		next.Status = &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_COMPLETE}
		next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
		return tx.UpdateTask(next)
	})
	eventually(t, "the desired state sent", func() bool {
		_, inc := changes(p.messages())
		return len(inc) == 1
	})
	time.Sleep(3 * maxBatchInterval)
	_, inc := changes(p.messages())
	if len(inc) != 1 || len(inc[0]) != 1 || inc[0][0].GetAction() != workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE {
		t.Fatalf("after the task ended: %v, want one update", inc)
	}
	// A new session (the worker's next) lists it too.
	_, p2 := e.open("n1")
	eventually(t, "the second complete set", func() bool {
		complete, _ := changes(p2.messages())
		return len(complete) == 1 && len(complete[0]) == 1 && complete[0][0].GetTask().GetId() == "t1"
	})
	// Deleted (pruned as history): removed.
	e.write(func(tx *state.Tx) error { return tx.DeleteTask("t1") })
	eventually(t, "the removal", func() bool {
		_, inc := changes(p2.messages())
		return len(inc) == 1 && len(inc[0]) == 1 && inc[0][0].GetAction() == workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_REMOVE
	})
}
