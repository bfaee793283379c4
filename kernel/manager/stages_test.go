package manager

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// logBuffer collects a manager's logs, to show when a test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startLogged is start with the manager's logs (Info and up) kept in logs.
func startLogged(t *testing.T, cfg config.Config, logs *logBuffer) *running {
	t.Helper()
	return startWith(t, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
}

// simWorker is a real agent with a simulated executor, in this process.
type simWorker struct {
	nodeID string
	cancel context.CancelFunc
	done   chan error
}

// startSimWorkers joins n simulated workers to m and runs them until the
// test ends.
func startSimWorkers(t *testing.T, m *running, n int) []*simWorker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := m.client(t).GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	token := cl.GetCluster().GetRootCa().GetJoinTokens().GetWorker()
	addr := m.cfg.Manager.ListenAddr
	dir := t.TempDir()
	var ws []*simWorker
	for i := range n {
		name := fmt.Sprintf("w%02d", i)
		id, err := ca.Join(ctx, []string{addr}, token, name, "linux/amd64", filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: join: %v", name, err)
		}
		a, err := agent.New(agent.Config{
			Identity:    id,
			Managers:    []string{addr},
			Description: simexec.NodeDescription(name),
			Executor:    simexec.New(simexec.Config{}),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		w := &simWorker{nodeID: id.NodeID(), cancel: rcancel, done: make(chan error, 1)}
		go func() { w.done <- a.Run(rctx) }()
		ws = append(ws, w)
	}
	t.Cleanup(func() {
		for _, w := range ws {
			w.cancel()
			<-w.done
		}
	})
	return ws
}

// eventuallyStore polls m's store until cond holds, failing the test after
// timeout with what cond last reported.
func eventuallyStore(t *testing.T, m *running, logs *logBuffer, timeout time.Duration, what string, cond func(tx *state.ReadTx) (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		var ok bool
		m.m.Store().View(func(tx *state.ReadTx) { ok, last = cond(tx) })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Logf("manager log (tail):\n%s", tail(logs.String(), 6000))
			t.Fatalf("%s: not within %s: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// serviceTasks counts a service's tasks, and those of them running.
func serviceTasks(tx *state.ReadTx, name string) (svc *objectv1.Service, total, running int) {
	for _, s := range tx.Services() {
		if s.GetSpec().GetAnnotations().GetName() == name {
			svc = s
		}
	}
	if svc == nil {
		return nil, 0, 0
	}
	for _, tk := range tx.TasksByService(svc.Id) {
		total++
		if tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
			running++
		}
	}
	return svc, total, running
}

// TestStagesRecoverFromWatchOverflow lowers the leader's watch queue limit
// below what one write of a 3,000-replica service produces, so that every
// leader stage's state watch overflows. The stages must end and be
// restarted from the store while the manager leads: the service's tasks
// all run, a service created afterwards runs too, and no worker is ever
// marked down (a dispatcher that wedged stopped serving sessions while
// its presence tracker went on declaring their nodes down).
func TestStagesRecoverFromWatchOverflow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 3,000 simulated tasks")
	}
	const (
		replicas = 3000
		workers  = 6
		// The orchestrator creates a service's tasks in one transaction:
		// 3,000 events in one command, more than a watch may queue.
		watchLimit = 1000
	)
	logs := &logBuffer{}
	m := startLogged(t, testConfig(t, t.TempDir()), logs)
	ws := startSimWorkers(t, m, workers)
	workerIDs := map[string]bool{}
	for _, w := range ws {
		workerIDs[w.nodeID] = true
	}
	eventuallyStore(t, m, logs, 60*time.Second, "workers ready", func(tx *state.ReadTx) (bool, string) {
		ready := 0
		for id := range workerIDs {
			if tx.Node(id).GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY {
				ready++
			}
		}
		return ready == workers, fmt.Sprintf("%d of %d workers ready", ready, workers)
	})

	// Watch for any worker marked down, for the rest of the test.
	stopWatch := watchDown(t, m, workerIDs)

	m.m.Store().SetWatchLimit(watchLimit)
	c := m.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("big", "example.local/big:1", replicas)}); err != nil {
		t.Fatal(err)
	}
	eventuallyStore(t, m, logs, 4*time.Minute, "big's tasks running", func(tx *state.ReadTx) (bool, string) {
		_, total, running := serviceTasks(tx, "big")
		return running == replicas, fmt.Sprintf("%d tasks, %d running, want %d running", total, running, replicas)
	})
	if n := m.m.stageRestarts.Load(); n == 0 {
		t.Fatal("the leader stages were never restarted: the watch did not overflow, and the test proved nothing")
	} else {
		t.Logf("leader stages restarted %d times:", n)
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "leader stage") || strings.Contains(line, "state watch closed") {
				t.Log(line)
			}
		}
	}

	// A service created now runs too, the limit still low.
	if _, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("after", "example.local/after:1", 10)}); err != nil {
		t.Fatal(err)
	}
	eventuallyStore(t, m, logs, 2*time.Minute, "the later service's tasks running", func(tx *state.ReadTx) (bool, string) {
		_, total, running := serviceTasks(tx, "after")
		return running == 10, fmt.Sprintf("%d tasks, %d running, want 10 running", total, running)
	})

	if down := stopWatch(); len(down) > 0 {
		t.Errorf("workers marked down: %s", strings.Join(down[:min(len(down), 10)], ", "))
	}
	// No task was ever replaced: a worker marked down, even briefly,
	// would have had its tasks rescheduled.
	m.m.Store().View(func(tx *state.ReadTx) {
		if _, total, _ := serviceTasks(tx, "big"); total != replicas {
			t.Errorf("big has %d tasks, want %d: some were replaced", total, replicas)
		}
		if !m.m.raft.IsLeader() {
			t.Error("the manager no longer leads")
		}
	})
}

// watchDown polls m's store for any of workers marked down until the
// returned function is called (or the test ends); that function returns
// those seen down, with the reason.
func watchDown(t *testing.T, m *running, workers map[string]bool) (stop func() []string) {
	t.Helper()
	var (
		mu   sync.Mutex
		down []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			m.m.Store().View(func(tx *state.ReadTx) {
				for id := range workers {
					if n := tx.Node(id); n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_DOWN {
						mu.Lock()
						down = append(down, fmt.Sprintf("%s (%s)", n.GetDescription().GetHostname(), n.GetStatus().GetMessage()))
						mu.Unlock()
					}
				}
			})
		}
	}()
	stop = func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(down)
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestLeaderStepsDownWhenStagesKeepFailing: a leader whose stages fail
// again and again (its dispatcher's watch overflows at every write) hands
// leadership to another manager, where they run.
func TestLeaderStepsDownWhenStagesKeepFailing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three managers")
	}
	dir := t.TempDir()
	all := map[string]*running{} // by node ID
	logs := map[*running]*logBuffer{}
	firstLogs := &logBuffer{}
	first := startLogged(t, testConfig(t, filepath.Join(dir, "m1")), firstLogs)
	all[first.m.NodeID()], logs[first] = first, firstLogs
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := first.client(t).GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	token := cl.GetCluster().GetRootCa().GetJoinTokens().GetManager()
	for _, name := range []string{"m2", "m3"} {
		cfg := testConfig(t, filepath.Join(dir, name))
		cfg.Join = config.Join{Addrs: []string{first.cfg.Manager.ListenAddr}, Token: token}
		lb := &logBuffer{}
		m := startLogged(t, cfg, lb)
		all[m.m.NodeID()], logs[m] = m, lb
	}
	leader := waitLeaderOfThree(t, first, all)

	// Every write of more than one object now overflows the leader's
	// watches.
	leader.m.Store().SetWatchLimit(1)
	c := leader.client(t)
	writeCtx, stopWrites := context.WithCancel(context.Background())
	writesDone := make(chan struct{})
	go func() {
		defer close(writesDone)
		for i := 0; writeCtx.Err() == nil; i++ {
			wctx, cancel := context.WithTimeout(writeCtx, 5*time.Second)
			c.CreateService(wctx, &controlv1.CreateServiceRequest{Spec: spec(fmt.Sprintf("s%03d", i), "example.local/app:1", 3)})
			cancel()
			select {
			case <-writeCtx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	defer func() { stopWrites(); <-writesDone }()

	var next *running
	deadline := time.Now().Add(2 * time.Minute)
	for next == nil {
		if time.Now().After(deadline) {
			t.Logf("the leader's log (tail):\n%s", tail(logs[leader].String(), 6000))
			t.Fatal("the leader still leads 2 minutes after its stages started failing")
		}
		time.Sleep(100 * time.Millisecond)
		if id, _ := leader.m.Raft().Leader(); all[id] != nil && all[id] != leader && all[id].m.Raft().IsLeader() {
			next = all[id]
		}
	}
	stopWrites()
	<-writesDone
	for _, line := range strings.Split(logs[leader].String(), "\n") {
		if strings.Contains(line, "leader stage") {
			t.Log(line)
		}
	}
	if !strings.Contains(logs[leader].String(), "handed leadership to another manager") {
		t.Error("leadership moved, but the failing leader did not say it handed it over")
	}

	// The new leader's stages run: a new service gets its tasks.
	if _, err := next.client(t).CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("after", "example.local/app:1", 2)}); err != nil {
		t.Fatal(err)
	}
	eventuallyStore(t, next, logs[next], time.Minute, "the new leader creates the later service's tasks", func(tx *state.ReadTx) (bool, string) {
		_, total, _ := serviceTasks(tx, "after")
		return total == 2, fmt.Sprintf("%d tasks, want 2", total)
	})
}

// waitLeaderOfThree waits until one of all (by node ID) leads, with three
// voters in its view, and returns it.
func waitLeaderOfThree(t *testing.T, first *running, all map[string]*running) *running {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("no leader with three voters within 60s")
		}
		time.Sleep(100 * time.Millisecond)
		id, _ := first.m.Raft().Leader()
		l := all[id]
		if l == nil || !l.m.Raft().IsLeader() {
			continue
		}
		ms, err := l.m.Raft().Members()
		voters := 0
		for _, mb := range ms {
			if mb.Voter {
				voters++
			}
		}
		if err == nil && voters == 3 {
			return l
		}
	}
}
