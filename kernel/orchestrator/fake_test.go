package orchestrator

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// fakeRaft is a one-manager Raft: Update prepares the transaction on the real
// store and applies it at the next index, as a leader whose every proposal
// commits at once. Writes are serialized, like entries in a log.
type fakeRaft struct {
	st *state.Store

	// mu serializes writes (the log has one order) and guards the fields
	// below.
	mu sync.Mutex
	// updates counts Update calls, commits the commands those calls applied.
	updates, commits int
	// err, when set, is what every Update returns, writing nothing.
	err error
	// interfere, when set, runs once inside the next Update that has
	// something to write, between its Prepare and its Apply: a concurrent
	// writer whose entry lands first.
	interfere func(tx *state.Tx) error
}

var _ Raft = (*fakeRaft)(nil)

func (r *fakeRaft) Update(ctx context.Context, fn func(tx *state.Tx) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates++
	if r.err != nil {
		return r.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	txn, err := r.st.Prepare(time.Now(), fn)
	if err != nil || txn == nil {
		return err
	}
	if in := r.interfere; in != nil {
		r.interfere = nil
		other, err := r.st.Prepare(time.Now(), in)
		if err != nil {
			return err
		}
		if err := r.apply(other); err != nil {
			return err
		}
	}
	if err := r.apply(txn); err != nil {
		return err
	}
	r.commits++
	return nil
}

// apply commits txn at the index after the store's. The caller holds mu.
func (r *fakeRaft) apply(txn *raftv1.Transaction) error {
	if txn == nil {
		return nil
	}
	var index uint64
	r.st.View(func(tx *state.ReadTx) { index = tx.Index() + 1 })
	return r.st.Apply(index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}})[0]
}

// write commits fn as another writer (the control API, the scheduler, a
// worker's status report) would: it is not counted as the orchestrator's.
func (r *fakeRaft) write(t *testing.T, fn func(tx *state.Tx) error) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	txn, err := r.st.Prepare(time.Now(), fn)
	if err == nil {
		err = r.apply(txn)
	}
	if err != nil {
		t.Fatalf("write: %v", err)
	}
}

// counts returns the orchestrator's Update calls and commits so far.
func (r *fakeRaft) counts() (updates, commits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.updates, r.commits
}

func (r *fakeRaft) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *fakeRaft) setInterfere(fn func(tx *state.Tx) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.interfere = fn
}

// env is a store, its fake Raft and the orchestrator running on them. Every
// test runs in a synctest bubble: the settle timer runs on the bubble's
// clock, so waiting costs no real time and "nothing more happens" can be
// asserted exactly.
type env struct {
	t    *testing.T
	st   *state.Store
	raft *fakeRaft
	// stop cancels the running orchestrator and returns Run's result.
	stop func() error
	// done receives Run's result when it returns.
	done chan error
}

func newEnv(t *testing.T) *env {
	st := state.New()
	return &env{t: t, st: st, raft: &fakeRaft{st: st}}
}

// start runs a new orchestrator on the env's store. The test must call
// e.stopRun before the bubble ends.
func (e *env) start() {
	e.t.Helper()
	if e.stop != nil {
		e.t.Fatal("start: an orchestrator is already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o := New(e.raft, e.st, slog.New(slog.DiscardHandler))
	go func() { done <- o.Run(ctx) }()
	e.done = done
	e.stop = func() error {
		cancel()
		return <-done
	}
}

// exited reports whether Run has returned on its own.
func (e *env) exited() bool {
	synctest.Wait()
	return len(e.done) > 0
}

// stopRun stops the orchestrator and requires Run to return nil, as it must
// when its context ends.
func (e *env) stopRun() {
	e.t.Helper()
	if e.stop == nil {
		return
	}
	err := e.stop()
	e.stop = nil
	if err != nil {
		e.t.Errorf("Run = %v, want nil when its context ends", err)
	}
}

// bubble runs fn in a synctest bubble with a fresh env and stops the
// orchestrator at the end.
func bubble(t *testing.T, fn func(e *env)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t)
		defer e.stopRun()
		fn(e)
	})
}

// waitLimit bounds a wait on the bubble's clock: far more settle periods than
// any scenario needs, and free in real time.
const waitLimit = 10 * time.Second

// waitFor polls the store until cond holds, failing the test if it does not
// within waitLimit of the bubble's clock.
func (e *env) waitFor(what string, cond func(tx *state.ReadTx) bool) {
	e.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		synctest.Wait()
		ok := false
		e.st.View(func(tx *state.ReadTx) { ok = cond(tx) })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waited %v for %s", waitLimit, what)
		}
		time.Sleep(5 * settle)
	}
}

// idle returns once the orchestrator has acted on every change written so
// far and has nothing left to do: every goroutine of the bubble is blocked
// and no settle timer is pending. After it, the state can be asserted not to
// change.
func (e *env) idle() {
	e.t.Helper()
	time.Sleep(50 * settle)
	synctest.Wait()
}

// Fixtures.

const (
	stateNew       = objectv1.TaskState_TASK_STATE_NEW
	statePending   = objectv1.TaskState_TASK_STATE_PENDING
	stateAssigned  = objectv1.TaskState_TASK_STATE_ASSIGNED
	stateReady     = objectv1.TaskState_TASK_STATE_READY
	stateRunning   = objectv1.TaskState_TASK_STATE_RUNNING
	stateComplete  = objectv1.TaskState_TASK_STATE_COMPLETE
	stateShutdown  = objectv1.TaskState_TASK_STATE_SHUTDOWN
	stateFailed    = objectv1.TaskState_TASK_STATE_FAILED
	stateRejected  = objectv1.TaskState_TASK_STATE_REJECTED
	availActive    = objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	availPause     = objectv1.NodeAvailability_NODE_AVAILABILITY_PAUSE
	availDrain     = objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
	nodeReady      = objectv1.NodeState_NODE_STATE_READY
	nodeUnknown    = objectv1.NodeState_NODE_STATE_UNKNOWN
	nodeDown       = objectv1.NodeState_NODE_STATE_DOWN
	restartUnset   = objectv1.RestartCondition_RESTART_CONDITION_UNSPECIFIED
	restartNone    = objectv1.RestartCondition_RESTART_CONDITION_NONE
	restartFailure = objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE
	restartAny     = objectv1.RestartCondition_RESTART_CONDITION_ANY
)

func taskSpec(image string, cond objectv1.RestartCondition) *objectv1.TaskSpec {
	return &objectv1.TaskSpec{
		Container: &objectv1.ContainerSpec{Image: image, Env: []string{"MODE=test"}},
		Resources: &objectv1.ResourceRequirements{},
		Restart:   &objectv1.RestartPolicy{Condition: cond},
	}
}

func replicatedService(id string, replicas int64, cond objectv1.RestartCondition) *objectv1.Service {
	return &objectv1.Service{
		Id:          id,
		SpecVersion: 1,
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "svc-" + id, Labels: map[string]string{"tier": "web"}},
			Task:        taskSpec("registry.local:5000/web:1", cond),
			Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}},
		},
	}
}

func globalService(id string, cond objectv1.RestartCondition) *objectv1.Service {
	return &objectv1.Service{
		Id:          id,
		SpecVersion: 1,
		Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "svc-" + id},
			Task:        taskSpec("registry.local:5000/agent:1", cond),
			Mode:        &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}},
		},
	}
}

func node(id string, avail objectv1.NodeAvailability, st objectv1.NodeState) *objectv1.Node {
	return &objectv1.Node{
		Id:          id,
		Role:        objectv1.NodeRole_NODE_ROLE_WORKER,
		Spec:        &objectv1.NodeSpec{Availability: avail},
		Status:      &objectv1.NodeStatus{State: st},
		Description: &objectv1.NodeDescription{Executor: "simulated"},
	}
}

// Writes other parts of the cluster make.

func (e *env) createService(s *objectv1.Service) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error { return tx.CreateService(s) })
}

// updateService applies change to a clone of the stored service, bumping
// spec_version as the control API does.
func (e *env) updateService(id string, change func(s *objectv1.Service)) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Service(id)).(*objectv1.Service)
		change(next)
		next.SpecVersion++
		return tx.UpdateService(next)
	})
}

func (e *env) removeService(id string) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error { return tx.DeleteService(id) })
}

func (e *env) createNode(n *objectv1.Node) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error { return tx.CreateNode(n) })
}

func (e *env) updateNode(id string, change func(n *objectv1.Node)) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Node(id)).(*objectv1.Node)
		change(next)
		return tx.UpdateNode(next)
	})
}

func (e *env) removeNode(id string) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error { return tx.DeleteNode(id) })
}

// report sets a task's observed state, as the scheduler (ASSIGNED, with a
// node) or a worker's status report (anything after) does. The scheduler
// places tasks only on nodes of the cluster: a node named here that the test
// did not create is created, ready and active, in the same write (a task on
// a node the store does not know is a removed node's, and replaced).
func (e *env) report(taskID, nodeID string, st objectv1.TaskState) {
	e.t.Helper()
	e.reportStatus(taskID, nodeID, &objectv1.TaskStatus{State: st})
}

// reportStatus is report with a whole status (an exit code, an error); its
// timestamp is set to the write's time.
func (e *env) reportStatus(taskID, nodeID string, status *objectv1.TaskStatus) {
	e.t.Helper()
	e.raft.write(e.t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Task(taskID)).(*objectv1.Task)
		if nodeID != "" {
			if tx.Node(nodeID) == nil {
				if err := tx.CreateNode(node(nodeID, availActive, nodeReady)); err != nil {
					return err
				}
			}
			next.NodeId = nodeID
		}
		status = proto.Clone(status).(*objectv1.TaskStatus)
		status.Timestamp = timestamppb.New(tx.Now())
		next.Status = status
		return tx.UpdateTask(next)
	})
}

// Reads.

// tasksOf returns a service's tasks, sorted by slot, then node, then ID.
func tasksOf(tx *state.ReadTx, serviceID string) []*objectv1.Task {
	ts := tx.TasksByService(serviceID)
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].GetSlot() != ts[j].GetSlot() {
			return ts[i].GetSlot() < ts[j].GetSlot()
		}
		return ts[i].GetNodeId() < ts[j].GetNodeId()
	})
	return ts
}

// desired returns the tasks whose desired state is st.
func desired(ts []*objectv1.Task, st objectv1.TaskState) []*objectv1.Task {
	var out []*objectv1.Task
	for _, t := range ts {
		if t.GetDesiredState() == st {
			out = append(out, t)
		}
	}
	return out
}

// wantedIn returns the tasks desired running or held (desired READY).
func wantedIn(ts []*objectv1.Task) []*objectv1.Task {
	var out []*objectv1.Task
	for _, t := range ts {
		if wanted(t) {
			out = append(out, t)
		}
	}
	return out
}

// countDesired returns how many of a service's tasks are desired in st.
func countDesired(tx *state.ReadTx, serviceID string, st objectv1.TaskState) int {
	return len(desired(tx.TasksByService(serviceID), st))
}

// inSlot returns a service's tasks in slot, sorted as tasksOf.
func inSlot(tx *state.ReadTx, serviceID string, slot uint64) []*objectv1.Task {
	var out []*objectv1.Task
	for _, t := range tasksOf(tx, serviceID) {
		if t.GetSlot() == slot {
			out = append(out, t)
		}
	}
	return out
}

// onNode returns a service's tasks on node, sorted by ID.
func onNode(tx *state.ReadTx, serviceID, nodeID string) []*objectv1.Task {
	var out []*objectv1.Task
	for _, t := range tx.TasksByService(serviceID) {
		if t.GetNodeId() == nodeID {
			out = append(out, t)
		}
	}
	return out
}

// tasks returns every task in the store.
func (e *env) tasks() []*objectv1.Task {
	var out []*objectv1.Task
	e.st.View(func(tx *state.ReadTx) { out = tx.Tasks() })
	return out
}

func (e *env) task(id string) *objectv1.Task {
	var out *objectv1.Task
	e.st.View(func(tx *state.ReadTx) { out = tx.Task(id) })
	return out
}

// slotTask returns the one task of a service's slot desired RUNNING, failing
// if there is not exactly one.
func (e *env) slotTask(serviceID string, slot uint64) *objectv1.Task {
	e.t.Helper()
	var ts []*objectv1.Task
	e.st.View(func(tx *state.ReadTx) { ts = desired(inSlot(tx, serviceID, slot), stateRunning) })
	if len(ts) != 1 {
		e.t.Fatalf("service %s slot %d has %d tasks desired running, want 1", serviceID, slot, len(ts))
	}
	return ts[0]
}

// heldTask returns the one task of a service's slot that is held (desired
// READY), failing if there is not exactly one.
func (e *env) heldTask(serviceID string, slot uint64) *objectv1.Task {
	e.t.Helper()
	var ts []*objectv1.Task
	e.st.View(func(tx *state.ReadTx) { ts = desired(inSlot(tx, serviceID, slot), stateReady) })
	if len(ts) != 1 {
		e.t.Fatalf("service %s slot %d has %d tasks held, want 1", serviceID, slot, len(ts))
	}
	return ts[0]
}

// nodeTask is slotTask for a global service's task on a node.
func (e *env) nodeTask(serviceID, nodeID string) *objectv1.Task {
	e.t.Helper()
	var ts []*objectv1.Task
	e.st.View(func(tx *state.ReadTx) { ts = desired(onNode(tx, serviceID, nodeID), stateRunning) })
	if len(ts) != 1 {
		e.t.Fatalf("service %s node %s has %d tasks desired running, want 1", serviceID, nodeID, len(ts))
	}
	return ts[0]
}
