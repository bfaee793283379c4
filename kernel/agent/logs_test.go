package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/agent"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// logBatches returns the log batches of subscription id the latest
// session received. m.mu is held.
func (m *fakeManager) logBatches(id string) []*workerv1.LogBatch {
	s := m.session(len(m.sessions) - 1)
	if s == nil {
		return nil
	}
	var out []*workerv1.LogBatch
	for _, msg := range s.received {
		if b := msg.GetLogs(); b != nil && b.GetSubscriptionId() == id {
			out = append(out, b)
		}
	}
	return out
}

func subscribe(sub *workerv1.LogSubscription) *workerv1.ManagerMessage {
	return &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_LogSubscription{LogSubscription: sub}}
}

func logControl(id string, credit uint32, cancel bool) *workerv1.ManagerMessage {
	return &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_LogControl{LogControl: &workerv1.LogControl{SubscriptionId: id, Credit: credit, Cancel: cancel}}}
}

// TestLogsWithinCredit: the agent reads only its own tasks, sends no more
// batches than its credit, and sends every line in order, a long line in
// pieces.
func TestLogsWithinCredit(t *testing.T) {
	const lines = 5000
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	long := strings.Repeat("x", 40<<10)
	m.initial = []*objectv1.Task{newTask("a", stRunning, assigned, "SHOAL_SIM_STDOUT="+long, fmt.Sprintf("SHOAL_SIM_LOG_LINES=%d", lines), "SHOAL_SIM_STDERR=oops")}
	startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), simexec.New(simexec.Config{}), agent.Config{Managers: []string{m.addr}})
	m.waitFor(t, "a running", func() bool { return m.hasState("a", stRunning) })

	m.send(t, subscribe(&workerv1.LogSubscription{Id: "s1", TaskIds: []string{"a", "someone-elses"}, Tail: -1, Credit: 2}))
	m.waitFor(t, "two batches", func() bool { return len(m.logBatches("s1")) >= 2 })
	// A heartbeat round trip later, still two: the credit is spent.
	m.mu.Lock()
	beats := len(m.session(len(m.sessions) - 1).beats)
	m.mu.Unlock()
	m.waitFor(t, "two more heartbeats", func() bool { return len(m.session(len(m.sessions)-1).beats) >= beats+2 })
	m.mu.Lock()
	n := len(m.logBatches("s1"))
	m.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d batches sent on a credit of 2", n)
	}

	m.send(t, logControl("s1", 1000, false))
	m.waitFor(t, "the last batch", func() bool {
		b := m.logBatches("s1")
		return len(b) > 0 && b[len(b)-1].GetDone()
	})
	m.mu.Lock()
	batches := m.logBatches("s1")
	m.mu.Unlock()
	var stdout, stderr []string
	var foreign bool
	for i, b := range batches {
		if b.GetDone() != (i == len(batches)-1) {
			t.Errorf("batch %d of %d: done = %v", i, len(batches), b.GetDone())
		}
		size := 0
		for _, l := range b.GetLines() {
			if l.GetTaskId() != "a" {
				t.Fatalf("line of task %s", l.GetTaskId())
			}
			size += len(l.GetData())
			if l.GetStream() == workerv1.LogStream_LOG_STREAM_STDERR {
				stderr = append(stderr, string(l.GetData()))
			} else {
				stdout = append(stdout, string(l.GetData()))
			}
		}
		if size > 64<<10 || len(b.GetLines()) > 1000 {
			t.Errorf("batch %d: %d lines, %d bytes", i, len(b.GetLines()), size)
		}
		for _, e := range b.GetErrors() {
			foreign = foreign || (e.GetTaskId() == "someone-elses" && strings.Contains(e.GetError(), "not assigned to this node"))
		}
	}
	if !foreign {
		t.Error("no error for the task the node does not hold")
	}
	if len(stdout) < 3 || stdout[0]+stdout[1]+stdout[2] != long {
		t.Fatalf("the 40 KiB line did not come first, in 3 pieces")
	}
	for i, l := range stdout[3:] {
		if want := fmt.Sprintf("line %d", i+1); l != want {
			t.Fatalf("stdout line %d = %q, want %q", i+3, l, want)
		}
	}
	if len(stdout) != lines+3 || len(stderr) != 1 || stderr[0] != "oops" {
		t.Errorf("%d stdout lines, stderr %q; want %d and [oops]", len(stdout), stderr, lines+3)
	}
}

// TestLogsFollowCancelled: a follow subscription ends by itself once its
// task's process exited and every line went, unless the manager cancelled
// it before: then nothing more comes, not even the done batch.
func TestLogsFollowCancelled(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	// b exits on its own; a runs until told to stop, which happens only
	// once its subscription was cancelled: its process's exit must not end
	// the cancelled subscription with done, however slowly the tail came.
	m.initial = []*objectv1.Task{
		newTask("a", stRunning, assigned, "SHOAL_SIM_LOG_LINES=3"),
		newTask("b", stRunning, assigned, "SHOAL_SIM_LOG_LINES=3", "SHOAL_SIM_EXIT_AFTER=500ms"),
	}
	startAgent(t, c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER), simexec.New(simexec.Config{}), agent.Config{Managers: []string{m.addr}})
	m.waitFor(t, "a and b running", func() bool { return m.hasState("a", stRunning) && m.hasState("b", stRunning) })

	for _, id := range []string{"a", "b"} {
		m.send(t, subscribe(&workerv1.LogSubscription{Id: "follow-" + id, TaskIds: []string{id}, Follow: true, Tail: 1, Credit: 8}))
	}
	m.waitFor(t, "the tail lines", func() bool {
		return len(m.logBatches("follow-a")) > 0 && len(m.logBatches("follow-b")) > 0
	})
	m.send(t, logControl("follow-a", 0, true))
	m.assign(t, incremental, update(newTask("a", shutdown, stRunning, "SHOAL_SIM_LOG_LINES=3")))
	m.waitFor(t, "b's logs done as its process exited", func() bool {
		b := m.logBatches("follow-b")
		return b[len(b)-1].GetDone()
	})
	m.waitFor(t, "a stopped", func() bool { return m.hasState("a", shutdown) || m.hasState("a", finished) })
	m.mu.Lock()
	beats := len(m.session(len(m.sessions) - 1).beats)
	m.mu.Unlock()
	m.waitFor(t, "two more heartbeats", func() bool { return len(m.session(len(m.sessions)-1).beats) >= beats+2 })
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.logBatches("follow-a") {
		if b.GetDone() {
			t.Error("a cancelled follow subscription sent done")
		}
	}
	var tail []string
	for _, b := range m.logBatches("follow-b") {
		for _, l := range b.GetLines() {
			tail = append(tail, string(l.GetData()))
		}
	}
	if strings.Join(tail, ",") != "line 3" {
		t.Errorf("follow --tail 1 of b sent %q, want [line 3]", tail)
	}
}

// pacedLogs is a simulated executor whose Logs, when following, writes
// the lines the test hands it, when it hands them, and then waits for its
// caller to go: a task that is still running and quiet in between, as
// real ones are.
type pacedLogs struct {
	*simexec.Executor
	lines chan string
}

func (p *pacedLogs) Logs(ctx context.Context, taskID string, opts executor.LogOptions, emit func(executor.LogEntry) error) error {
	if !opts.Follow {
		return p.Executor.Logs(ctx, taskID, opts, emit)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l := <-p.lines:
			if err := emit(executor.LogEntry{Stream: executor.Stdout, Time: time.Now(), Line: []byte(l)}); err != nil {
				return err
			}
		}
	}
}

// followedLines returns the lines of subscription id, and whether a batch
// said done. m.mu is held.
func (m *fakeManager) followedLines(id string) (lines []string, done bool) {
	for _, b := range m.logBatches(id) {
		for _, l := range b.GetLines() {
			lines = append(lines, string(l.GetData()))
		}
		done = done || b.GetDone()
	}
	return lines, done
}

// TestLogsFollowSendsLinesAsTheyCome: a follow subscription sends each
// line soon after the executor read it, while the task runs on: the tail
// lines that come after the first (empty) answer went, then a line
// written later. Before, they waited for a batch to fill up or the task
// to end, which a quiet task never does.
func TestLogsFollowSendsLinesAsTheyCome(t *testing.T) {
	c := newTestCA(t)
	m := newFakeManager(t, c, "manager-1", period)
	m.initial = []*objectv1.Task{newTask("a", stRunning, assigned)}
	exec := &pacedLogs{Executor: simexec.New(simexec.Config{}), lines: make(chan string)}
	a, err := agent.New(agent.Config{
		Managers:    []string{m.addr},
		Identity:    c.identity(t, "node-1", objectv1.NodeRole_NODE_ROLE_WORKER),
		Executor:    exec,
		Description: &objectv1.NodeDescription{Hostname: "worker-1", Platform: "linux/amd64"},
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	m.waitFor(t, "a running", func() bool { return m.hasState("a", stRunning) })

	m.send(t, subscribe(&workerv1.LogSubscription{Id: "f", TaskIds: []string{"a"}, Follow: true, Tail: 2, Credit: 8}))
	m.waitFor(t, "the first answer", func() bool { return len(m.logBatches("f")) > 0 })
	for _, l := range []string{"tail 1", "tail 2"} {
		exec.lines <- l
	}
	m.waitFor(t, "the tail lines", func() bool { got, _ := m.followedLines("f"); return len(got) == 2 })
	exec.lines <- "later"
	m.waitFor(t, "the line written later", func() bool { got, _ := m.followedLines("f"); return len(got) == 3 })
	m.mu.Lock()
	got, ended := m.followedLines("f")
	m.mu.Unlock()
	if strings.Join(got, ",") != "tail 1,tail 2,later" || ended {
		t.Errorf("followed %q, done %v; want [tail 1 tail 2 later] and the subscription still open", got, ended)
	}
}
