package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/sdk/executor"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// waitTimeout bounds every wait of these tests: a correct agent gets there
// in milliseconds; a broken one fails the test instead of hanging it.
const waitTimeout = 15 * time.Second

// testCA issues node identities of one test cluster.
type testCA struct {
	root   *objectv1.RootCA
	signer *ca.Signer
	dir    string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	root, err := ca.NewRootCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ca.NewSigner(root)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{root: root, signer: signer, dir: t.TempDir()}
}

func (c *testCA) identity(t *testing.T, nodeID string, role objectv1.NodeRole) *ca.Identity {
	t.Helper()
	return c.identityFor(t, nodeID, role, time.Hour)
}

// identityFor issues an identity valid for ttl.
func (c *testCA) identityFor(t *testing.T, nodeID string, role objectv1.NodeRole, ttl time.Duration) *ca.Identity {
	t.Helper()
	key, err := ca.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ca.NewCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.signer.Sign(csr, nodeID, role, "test-cluster", time.Now(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.NewIdentity(filepath.Join(c.dir, nodeID), key, cert, c.root.CertPem)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// fakeManager is a Dispatcher served over real mutual TLS with a manager
// certificate. Each session gets the manager list and the initial complete
// set; heartbeats are answered with the configured period; everything the
// worker sends is recorded.
type fakeManager struct {
	workerv1.UnimplementedDispatcherServer
	addr   string
	period time.Duration
	ca     *fakeCA

	mu       sync.Mutex
	managers []*workerv1.WeightedManager
	initial  []*objectv1.Task
	mute     bool // do not answer heartbeats
	refuse   bool // refuse new sessions
	sessions []*fakeSession
	changed  chan struct{} // closed and replaced on every event
}

type fakeSession struct {
	id     string
	nodeID string // from the worker's certificate
	out    chan *workerv1.ManagerMessage
	end    chan struct{} // closed to end the session from the manager side

	// Guarded by the manager's mu.
	received []*workerv1.WorkerMessage
	beats    []beat
	closed   bool
}

// beat is a heartbeat's arrival and the previous reply's departure.
type beat struct {
	received, prevReply time.Time
}

func newFakeManager(t *testing.T, c *testCA, name string, period time.Duration) *fakeManager {
	t.Helper()
	id := c.identity(t, name, objectv1.NodeRole_NODE_ROLE_MANAGER)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeManager{addr: lis.Addr().String(), period: period, changed: make(chan struct{})}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(id.ServerTLS())))
	workerv1.RegisterDispatcherServer(srv, m)
	m.ca = &fakeCA{signer: c.signer}
	cav1.RegisterNodeCAServer(srv, m.ca)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return m
}

// fakeCA renews node certificates for an hour, keeping the caller's role.
type fakeCA struct {
	cav1.UnimplementedNodeCAServer
	signer *ca.Signer

	mu       sync.Mutex
	renewals int
}

func (f *fakeCA) RenewNodeCertificate(ctx context.Context, req *cav1.RenewNodeCertificateRequest) (*cav1.RenewNodeCertificateResponse, error) {
	p, err := ca.PeerFromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	cert, err := f.signer.Sign(req.GetCsr(), p.NodeID, p.Role, p.ClusterID, time.Now(), time.Hour)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.mu.Lock()
	f.renewals++
	f.mu.Unlock()
	return &cav1.RenewNodeCertificateResponse{CertificatePem: cert, Role: p.Role}, nil
}

// notify wakes waiters. m.mu is held.
func (m *fakeManager) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *fakeManager) Connect(stream grpc.BidiStreamingServer[workerv1.WorkerMessage, workerv1.ManagerMessage]) error {
	p, err := ca.PeerFromContext(stream.Context())
	if err != nil {
		return status.Error(codes.PermissionDenied, err.Error())
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.refuse {
		m.mu.Unlock()
		return status.Error(codes.Unavailable, "refusing sessions")
	}
	s := &fakeSession{
		id:       fmt.Sprintf("%s-session-%d", m.addr, len(m.sessions)+1),
		nodeID:   p.NodeID,
		out:      make(chan *workerv1.ManagerMessage, 1000),
		end:      make(chan struct{}),
		received: []*workerv1.WorkerMessage{first},
	}
	m.sessions = append(m.sessions, s)
	info := &workerv1.SessionInfo{SessionId: s.id, NodeId: p.NodeID, Managers: m.managers}
	set := &workerv1.Assignments{Type: workerv1.AssignmentsType_ASSIGNMENTS_TYPE_COMPLETE}
	for _, t := range m.initial {
		set.Changes = append(set.Changes, &workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE, Task: t})
	}
	m.notify()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		s.closed = true
		m.notify()
		m.mu.Unlock()
	}()

	s.out <- &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Session{Session: info}}
	s.out <- &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Assignments{Assignments: set}}
	recvErr := make(chan error, 1)
	lastReply := make(chan time.Time, 1)
	go func() {
		var prev time.Time
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case prev = <-lastReply:
			default:
			}
			m.mu.Lock()
			s.received = append(s.received, msg)
			mute := m.mute
			if msg.GetHeartbeat() != nil {
				s.beats = append(s.beats, beat{received: time.Now(), prevReply: prev})
			}
			m.notify()
			m.mu.Unlock()
			if msg.GetHeartbeat() != nil && !mute {
				s.out <- &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Heartbeat{Heartbeat: &workerv1.HeartbeatReply{Period: durationpb.New(m.period)}}}
			}
		}
	}()
	for {
		select {
		case msg := <-s.out:
			if msg.GetHeartbeat() != nil {
				// The next heartbeat must come a period after this.
				select {
				case <-lastReply:
				default:
				}
				lastReply <- time.Now()
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		case <-s.end:
			return status.Error(codes.Unavailable, "manager going away")
		case err := <-recvErr:
			return err
		}
	}
}

// waitFor waits until cond holds; cond runs with m.mu held, after every
// event (heartbeats come every period, so conditions on other state are
// checked that often too).
func (m *fakeManager) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		m.mu.Lock()
		ok, changed := cond(), m.changed
		m.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// session returns the i-th session (from 0), or nil. m.mu is held.
func (m *fakeManager) session(i int) *fakeSession {
	if i < len(m.sessions) {
		return m.sessions[i]
	}
	return nil
}

// reports returns the status reports of a session. m.mu is held.
func (s *fakeSession) reports() []*workerv1.StatusReport {
	var out []*workerv1.StatusReport
	for _, msg := range s.received {
		if r := msg.GetStatus(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

// latest returns the latest status reported for a task in any session.
// m.mu is held.
func (m *fakeManager) latest(taskID string) *objectv1.TaskStatus {
	var st *objectv1.TaskStatus
	for _, s := range m.sessions {
		for _, r := range s.reports() {
			for _, u := range r.GetUpdates() {
				if u.GetTaskId() == taskID {
					st = u.GetStatus()
				}
			}
		}
	}
	return st
}

// states returns every state reported for a task, in order. m.mu is held.
func (m *fakeManager) states(taskID string) []objectv1.TaskState {
	var out []objectv1.TaskState
	for _, s := range m.sessions {
		for _, r := range s.reports() {
			for _, u := range r.GetUpdates() {
				if u.GetTaskId() == taskID {
					out = append(out, u.GetStatus().GetState())
				}
			}
		}
	}
	return out
}

// send sends a message on the latest session.
func (m *fakeManager) send(t *testing.T, msg *workerv1.ManagerMessage) {
	t.Helper()
	m.mu.Lock()
	s := m.session(len(m.sessions) - 1)
	m.mu.Unlock()
	if s == nil {
		t.Fatal("send: no session")
	}
	s.out <- msg
}

func (m *fakeManager) assign(t *testing.T, typ workerv1.AssignmentsType, changes ...*workerv1.AssignmentChange) {
	t.Helper()
	m.send(t, &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_Assignments{Assignments: &workerv1.Assignments{Type: typ, Changes: changes}}})
}

// hasState reports whether the latest status of a task is state. m.mu is
// held.
func (m *fakeManager) hasState(taskID string, state objectv1.TaskState) bool {
	return m.latest(taskID).GetState() == state
}

func update(t *objectv1.Task) *workerv1.AssignmentChange {
	return &workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE, Task: t}
}

func remove(id string) *workerv1.AssignmentChange {
	return &workerv1.AssignmentChange{Action: workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_REMOVE, Task: &objectv1.Task{Id: id}}
}

// newTask returns a task for node-1 in the given desired and reported
// states; env controls the simulated process.
func newTask(id string, desired, reported objectv1.TaskState, env ...string) *objectv1.Task {
	return &objectv1.Task{
		Id: id, NodeId: "node-1", DesiredState: desired,
		Status: &objectv1.TaskStatus{State: reported},
		Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
			Image: "sim", Env: env, StopGracePeriod: durationpb.New(time.Second),
		}},
	}
}

// node is an agent under test, with its simulated executor.
type node struct {
	agent *agent.Agent
	exec  *simexec.Executor
	stop  func() error // cancels Run and returns its result
}

// startAgent runs an agent for node-1.
func startAgent(t *testing.T, id *ca.Identity, exec *simexec.Executor, cfg agent.Config) *node {
	t.Helper()
	cfg.Identity = id
	cfg.Executor = exec
	cfg.Description = &objectv1.NodeDescription{Hostname: "worker-1", Platform: "linux/amd64"}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return &node{agent: a, exec: exec, stop: stop}
}

// running returns the IDs of the tasks the executor runs.
func running(t *testing.T, e *simexec.Executor) []string {
	t.Helper()
	list, err := e.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, et := range list {
		if et.Running {
			ids = append(ids, et.TaskID)
		}
	}
	return ids
}

func held(t *testing.T, e *simexec.Executor, id string) bool {
	t.Helper()
	list, err := e.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(list, func(et executor.TaskInfo) bool { return et.TaskID == id })
}
