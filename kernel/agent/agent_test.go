package agent_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

const (
	period      = 50 * time.Millisecond
	complete    = workerv1.AssignmentsType_ASSIGNMENTS_TYPE_COMPLETE
	incremental = workerv1.AssignmentsType_ASSIGNMENTS_TYPE_INCREMENTAL

	assigned  = objectv1.TaskState_TASK_STATE_ASSIGNED
	stRunning = objectv1.TaskState_TASK_STATE_RUNNING
	shutdown  = objectv1.TaskState_TASK_STATE_SHUTDOWN
	failed    = objectv1.TaskState_TASK_STATE_FAILED
	rejected  = objectv1.TaskState_TASK_STATE_REJECTED
	finished  = objectv1.TaskState_TASK_STATE_COMPLETE
)

func TestHelloThenHeartbeats(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	n := startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), simexec.New(simexec.Config{}), agent.Config{Managers: []string{m.addr}})

	m.waitFor(t, "5 heartbeats", func() bool {
		s := m.session(0)
		return s != nil && len(s.beats) >= 5
	})
	m.mu.Lock()
	s := m.session(0)
	msgs, beats := slices.Clone(s.received), slices.Clone(s.beats)
	m.mu.Unlock()

	if s.nodeID != "node-1" {
		t.Errorf("session's certificate names %q, want node-1", s.nodeID)
	}
	if got := msgs[0].GetHello().GetDescription().GetHostname(); got != "worker-1" {
		t.Errorf("first message = %v, want a hello with hostname worker-1", msgs[0])
	}
	if msgs[1].GetHeartbeat() == nil {
		t.Errorf("second message = %v, want a heartbeat right after hello", msgs[1])
	}
	for i, b := range beats[1:] {
		if gap := b.received.Sub(b.prevReply); gap < period {
			t.Errorf("heartbeat %d came %s after the reply, want at least the period %s", i+2, gap, period)
		}
	}
	st := n.agent.Status()
	if st.Manager != m.addr || st.SessionID != s.id || st.Reconnects != 0 {
		t.Errorf("Status() = %+v, want manager %s, session %s, no reconnect", st, m.addr, s.id)
	}
}

func TestAssignmentsDriveExecutor(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	m.initial = []*objectv1.Task{newTask("a", stRunning, assigned)}
	exec := simexec.New(simexec.Config{StartDelay: time.Millisecond})
	n := startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), exec, agent.Config{Managers: []string{m.addr}})

	m.waitFor(t, "a running", func() bool { return m.hasState("a", stRunning) })
	m.assign(t, incremental,
		update(newTask("b", stRunning, assigned)),
		update(newTask("fails", stRunning, assigned, "SHOAL_SIM_EXIT_AFTER=20ms", "SHOAL_SIM_EXIT_CODE=3")),
		update(newTask("ends", stRunning, assigned, "SHOAL_SIM_EXIT_AFTER=20ms")),
		update(newTask("bad", stRunning, assigned, "SHOAL_SIM_FAIL_PREPARE=no such image")),
		update(newTask("never", shutdown, assigned)),
	)
	m.waitFor(t, "every task settled", func() bool {
		return m.hasState("b", stRunning) && m.hasState("fails", failed) && m.hasState("ends", finished) &&
			m.hasState("bad", rejected) && m.hasState("never", shutdown)
	})

	m.mu.Lock()
	for _, id := range []string{"a", "b", "fails", "ends", "bad", "never"} {
		if states := m.states(id); !increasing(states) {
			t.Errorf("states reported for %s = %v, want strictly increasing", id, states)
		}
	}
	if st := m.latest("fails"); st.GetExitCode() != 3 || st.GetErr() != "task exited with code 3" {
		t.Errorf("status of a failing task = %v, want exit code 3 and its error", st)
	}
	if st := m.latest("bad"); !strings.Contains(st.GetErr(), "no such image") {
		t.Errorf("status of a task that cannot prepare = %v, want the executor's error", st)
	}
	if st := m.latest("b"); st.GetContainerId() != "sim-b" || st.GetPid() == 0 {
		t.Errorf("status of a running task = %v, want its container ID and pid", st)
	}
	batched := false
	for _, r := range m.session(0).reports() {
		batched = batched || len(r.GetUpdates()) > 1
	}
	m.mu.Unlock()
	if !batched {
		t.Error("no status report carried more than one update, want batches")
	}
	if n := exec.Starts("never"); n != 0 {
		t.Errorf("a task never desired running started %d times", n)
	}

	// Shut one down, remove another.
	m.assign(t, incremental, update(newTask("a", shutdown, stRunning)), remove("b"))
	m.waitFor(t, "a shut down, b removed", func() bool {
		return m.hasState("a", shutdown) && !held(t, exec, "b")
	})
	if got := running(t, exec); len(got) != 0 {
		t.Errorf("executor runs %v, want nothing", got)
	}
	if !held(t, exec, "a") {
		t.Error("a shut-down task was removed from the executor, want it kept until the manager removes it")
	}
	if got := n.agent.Status().Tasks; got != 5 {
		t.Errorf("Status().Tasks = %d, want 5 (all but b)", got)
	}
	for _, id := range []string{"a", "b"} {
		if n := exec.Starts(id); n != 1 {
			t.Errorf("task %s started %d times, want once", id, n)
		}
	}
}

func increasing(states []objectv1.TaskState) bool {
	for i := 1; i < len(states); i++ {
		if states[i] <= states[i-1] {
			return false
		}
	}
	return len(states) > 0
}

// TestReconnectKeepsTasks cuts the agent's session: it must go to the other
// manager of positive weight, keep its tasks running, and tell the new
// manager their status at once.
func TestReconnectKeepsTasks(t *testing.T) {
	c := newTestCA(t)
	ma := newFakeManager(t, c, "manager-a", period)
	mb := newFakeManager(t, c, "manager-b", period)
	mc := newFakeManager(t, c, "manager-c", period) // weight 0: out of rotation
	list := []*workerv1.WeightedManager{
		{Addr: ma.addr, NodeId: "manager-a", Weight: 10},
		{Addr: mb.addr, NodeId: "manager-b", Weight: 10},
		{Addr: mc.addr, NodeId: "manager-c", Weight: 0},
	}
	for _, m := range []*fakeManager{ma, mb, mc} {
		m.managers = list
	}
	ma.initial = []*objectv1.Task{newTask("t1", stRunning, assigned), newTask("t2", stRunning, assigned)}
	mb.initial = []*objectv1.Task{newTask("t1", stRunning, stRunning), newTask("t2", stRunning, stRunning)}
	exec := simexec.New(simexec.Config{})
	n := startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), exec,
		agent.Config{Managers: []string{ma.addr}, BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})

	ma.waitFor(t, "tasks running", func() bool { return ma.hasState("t1", stRunning) && ma.hasState("t2", stRunning) })
	ma.mu.Lock()
	ma.refuse = true
	close(ma.session(0).end)
	ma.mu.Unlock()

	mb.waitFor(t, "the statuses resent to manager b", func() bool {
		s := mb.session(0)
		return s != nil && len(s.reports()) > 0
	})
	mb.mu.Lock()
	first := mb.session(0).reports()[0]
	mb.mu.Unlock()
	var got []string
	for _, u := range first.GetUpdates() {
		got = append(got, u.GetTaskId()+":"+u.GetStatus().GetState().String())
	}
	if want := []string{"t1:TASK_STATE_RUNNING", "t2:TASK_STATE_RUNNING"}; !slices.Equal(got, want) {
		t.Errorf("first report to the new manager = %v, want %v", got, want)
	}
	mb.waitFor(t, "a heartbeat on the new session", func() bool { return len(mb.session(0).beats) > 1 })
	for _, id := range []string{"t1", "t2"} {
		if got := exec.Starts(id); got != 1 {
			t.Errorf("task %s started %d times, want once: a reconnect must not restart tasks", id, got)
		}
	}
	if got := running(t, exec); !slices.Equal(got, []string{"t1", "t2"}) {
		t.Errorf("executor runs %v, want [t1 t2]", got)
	}
	st := n.agent.Status()
	if st.Manager != mb.addr || st.Reconnects != 1 || st.Tasks != 2 {
		t.Errorf("Status() = %+v, want manager b, 1 reconnect, 2 tasks", st)
	}
	mc.mu.Lock()
	if len(mc.sessions) != 0 {
		t.Errorf("manager of weight 0 got %d sessions, want none", len(mc.sessions))
	}
	mc.mu.Unlock()
}

func TestSilentManagerIsLeft(t *testing.T) {
	c := newTestCA(t)
	ma := newFakeManager(t, c, "manager-a", period)
	mb := newFakeManager(t, c, "manager-b", period)
	list := []*workerv1.WeightedManager{{Addr: ma.addr, Weight: 1}, {Addr: mb.addr, Weight: 1}}
	ma.managers, mb.managers = list, list
	n := startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), simexec.New(simexec.Config{}),
		agent.Config{Managers: []string{ma.addr}, MinHeartbeatTimeout: 200 * time.Millisecond, BackoffBase: 10 * time.Millisecond})
	// Two heartbeats: the agent has a reply, so it knows the period.
	ma.waitFor(t, "a session with a", func() bool { return len(ma.sessions) == 1 && len(ma.session(0).beats) >= 2 })
	ma.mu.Lock()
	ma.mute = true
	ma.mu.Unlock()
	mb.waitFor(t, "a session with b", func() bool { return len(mb.sessions) == 1 })
	ma.mu.Lock()
	closed := ma.session(0).closed
	ma.mu.Unlock()
	if !closed {
		// The agent cancels the stream; the fake sees it end soon after.
		ma.waitFor(t, "the session with a closed", func() bool { return ma.session(0).closed })
	}
	mb.waitFor(t, "the agent to record the new session", func() bool { return n.agent.Status().Manager == mb.addr })
}

// TestRestartAdoptsTasks stops an agent and starts another on the same
// executor: running tasks are adopted, not restarted; a task the set no
// longer names is stopped and removed; the manager list comes from the
// state directory.
func TestRestartAdoptsTasks(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	m.managers = []*workerv1.WeightedManager{{Addr: m.addr, NodeId: "manager-1", Weight: 10}}
	m.initial = []*objectv1.Task{newTask("keep", stRunning, assigned), newTask("drop", stRunning, assigned)}
	id := c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER)
	exec := simexec.New(simexec.Config{})
	stateDir := t.TempDir()

	first := startAgent(t, id, exec, agent.Config{Managers: []string{m.addr}, StateDir: stateDir})
	m.waitFor(t, "tasks running", func() bool { return m.hasState("keep", stRunning) && m.hasState("drop", stRunning) })
	if err := first.stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if got := running(t, exec); !slices.Equal(got, []string{"drop", "keep"}) {
		t.Fatalf("after the agent stopped, executor runs %v, want both tasks still", got)
	}

	m.mu.Lock()
	m.initial = []*objectv1.Task{newTask("keep", stRunning, stRunning)}
	m.mu.Unlock()
	second := startAgent(t, id, exec, agent.Config{StateDir: stateDir}) // no address: the saved list
	m.waitFor(t, "a second session", func() bool { return len(m.sessions) == 2 })
	m.waitFor(t, "the dropped task removed", func() bool { return !held(t, exec, "drop") })
	if got := running(t, exec); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("executor runs %v, want [keep]", got)
	}
	if got := exec.Starts("keep"); got != 1 {
		t.Errorf("adopted task started %d times, want once", got)
	}
	if got := second.agent.Status().Tasks; got != 1 {
		t.Errorf("Status().Tasks = %d, want 1", got)
	}
	// The adopted task is still watched: its end is reported.
	m.assign(t, incremental, update(newTask("keep", shutdown, stRunning)))
	m.waitFor(t, "keep shut down", func() bool { return m.hasState("keep", shutdown) })
}

// TestRenewsCertificate gives the agent a certificate that is soon half
// through its validity: the agent renews it through its manager.
func TestRenewsCertificate(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	id := c.identityFor(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER, 3*time.Second)
	before := id.NotAfter()
	renewed := id.Changed()
	startAgent(t, id, simexec.New(simexec.Config{}), agent.Config{Managers: []string{m.addr}})
	select {
	case <-renewed:
	case <-time.After(waitTimeout):
		t.Fatal("certificate not renewed")
	}
	if after := id.NotAfter(); !after.After(before.Add(time.Minute)) {
		t.Errorf("certificate valid until %s after renewal, want about an hour from now", after)
	}
	m.ca.mu.Lock()
	defer m.ca.mu.Unlock()
	if m.ca.renewals != 1 {
		t.Errorf("manager renewed %d certificates, want 1", m.ca.renewals)
	}
}

func TestNewChecksConfig(t *testing.T) {
	c := newTestCA(t)
	id := c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER)
	desc := &objectv1.NodeDescription{Hostname: "h"}
	exec := simexec.New(simexec.Config{})
	tests := []struct {
		name   string
		cfg    agent.Config
		fields []string // named in the error; nil for success
	}{
		{name: "valid", cfg: agent.Config{Identity: id, Executor: exec, Description: desc, Managers: []string{"10.0.0.1:4242"}}},
		{name: "empty", cfg: agent.Config{Managers: []string{"x"}}, fields: []string{"identity", "executor", "description", "managers[0]"}},
		{name: "negative knobs", cfg: agent.Config{Identity: id, Executor: exec, Description: desc, Managers: []string{"h:1"}, BackoffBase: -1, StatusBatchSize: -1},
			fields: []string{"backoff_base", "status_batch_size"}},
		{name: "no manager", cfg: agent.Config{Identity: id, Executor: exec, Description: desc}, fields: []string{"manager"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := agent.New(tt.cfg)
			if (err == nil) != (tt.fields == nil) {
				t.Fatalf("New(%s) = %v, want error %v", tt.name, err, tt.fields != nil)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("New(%s) = %v, want it to name %s", tt.name, err, f)
				}
			}
			var fe sdk.FieldErrors
			if len(tt.fields) > 1 && !errors.As(err, &fe) {
				t.Errorf("New(%s) = %v, want sdk.FieldErrors", tt.name, err)
			}
		})
	}
}

// TestOnSession: every session information the manager sends reaches
// Config.OnSession, the first one and a later one alike.
func TestOnSession(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	infos := make(chan *workerv1.SessionInfo, 10)
	startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), simexec.New(simexec.Config{}), agent.Config{
		Managers:  []string{m.addr},
		OnSession: func(info *workerv1.SessionInfo) { infos <- info },
	})
	next := func() *workerv1.SessionInfo {
		t.Helper()
		select {
		case info := <-infos:
			return info
		case <-time.After(10 * time.Second):
			t.Fatal("OnSession not called within 10s")
			return nil
		}
	}
	if first := next(); first.GetNodeId() != "node-1" {
		t.Errorf("first OnSession(%v), want the session of node-1", first)
	}
	m.send(t, &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Session{Session: &workerv1.SessionInfo{
		NodeId: "node-1", GossipPeers: []string{"192.168.1.2:7946"}, GossipKey: make([]byte, 32),
	}}})
	if again := next(); !slices.Equal(again.GetGossipPeers(), []string{"192.168.1.2:7946"}) || len(again.GetGossipKey()) != 32 {
		t.Errorf("second OnSession(%v), want the gossip peers and key sent", again)
	}
}
