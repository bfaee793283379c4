package e2etest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if imageTar.path != "" {
		os.RemoveAll(filepath.Dir(imageTar.path))
	}
	os.Exit(code)
}

// running is what a running task was when a test looked: its container and
// its process.
type running struct {
	task      *objectv1.Task
	container string
	proc      proc
}

// snapshot records the running tasks and their processes, checking that
// each task's pid is a live process of the test program.
func snapshot(t *testing.T, tasks []*objectv1.Task) map[string]running {
	t.Helper()
	out := map[string]running{}
	for _, task := range tasks {
		pid := int(task.GetStatus().GetPid())
		p, ok := readProc(pid)
		if !ok {
			t.Fatalf("task %s reports pid %d, which does not run", task.GetId(), pid)
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.HasPrefix(string(cmdline), "/prog\x00") {
			t.Fatalf("task %s reports pid %d, which runs %q, want the test program /prog", task.GetId(), pid, cmdline)
		}
		if task.GetStatus().GetContainerId() == "" {
			t.Fatalf("task %s reports no container ID", task.GetId())
		}
		out[task.GetId()] = running{task: task, container: task.GetStatus().GetContainerId(), proc: p}
	}
	return out
}

// checkUntouched checks that every task of before is still the same
// process (same pid and start time) and that the service's tasks are
// exactly before's, RUNNING with the same container and pid: nothing was
// restarted or replaced.
func checkUntouched(ctx context.Context, n *node, serviceID string, before map[string]running) error {
	for id, r := range before {
		p, ok := readProc(r.proc.pid)
		if !ok || p.start != r.proc.start {
			return fmt.Errorf("task %s: its process %d is gone", id, r.proc.pid)
		}
	}
	tasks, err := n.tasks(ctx, serviceID)
	if err != nil {
		return err
	}
	if len(tasks) != len(before) {
		return fmt.Errorf("the service has %d tasks, want the %d it had: %s", len(tasks), len(before), summary(tasks))
	}
	for _, task := range tasks {
		r, ok := before[task.GetId()]
		st := task.GetStatus()
		switch {
		case !ok:
			return fmt.Errorf("new task %s: %s", task.GetId(), summary(tasks))
		case st.GetState() != objectv1.TaskState_TASK_STATE_RUNNING || st.GetContainerId() != r.container || int(st.GetPid()) != r.proc.pid:
			return fmt.Errorf("task %s is %s in container %q with pid %d, want RUNNING in %q with pid %d",
				task.GetId(), st.GetState(), st.GetContainerId(), st.GetPid(), r.container, r.proc.pid)
		}
	}
	return nil
}

// killAndWatch SIGKILLs one task's process and waits until the task is
// reported FAILED with exit code 137 (128 + SIGKILL): proof that the agent
// watches it.
func killAndWatch(t *testing.T, n *node, serviceID string, r running) {
	t.Helper()
	killed := time.Now()
	if err := syscall.Kill(r.proc.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", r.proc.pid, err)
	}
	defer func() {
		t.Logf("kill -9 of task %s reported as exit code 137 within %v", r.task.GetId(), time.Since(killed).Round(time.Millisecond))
	}()
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		tasks, err := n.tasks(ctx, serviceID)
		if err != nil {
			return err
		}
		for _, task := range tasks {
			if task.GetId() != r.task.GetId() {
				continue
			}
			if st := task.GetStatus(); st.GetState() == objectv1.TaskState_TASK_STATE_FAILED && st.GetExitCode() == 137 {
				return nil
			}
		}
		return fmt.Errorf("task %s is not reported FAILED with exit code 137: %s", r.task.GetId(), summary(tasks))
	})
}

// TestReplicasRestartWithExitCodes: a 3-replica service runs in three real
// containers; killing one container's process gets its task replaced after
// the restart delay, with the real exit code (137) in `service ps`; a task
// that exits with code 3 shows 3; `service logs` shows every replica's
// output.
func TestReplicasRestartWithExitCodes(t *testing.T) {
	n := startNode(t)
	// Without --detach, create waits until the service converged.
	n.mustRun("service", "create", "--name", "web", "--replicas", "3", "--restart-delay", "200ms",
		testImage, "out:hello", "sleep:inf")
	webID := n.serviceID("web")
	before := snapshot(t, n.waitRunning(webID, 3, 60*time.Second))

	killOneReplica(t, n, before)
	checkExitCodeRestarts(t, n)
	replicas := n.waitRunning(webID, 3, 30*time.Second)
	checkReplicasLogs(t, n, replicas)
	removeReplicas(t, n, replicas)
}

// killOneReplica kills one of web's tasks and checks that it shows its
// exit code and is replaced in its slot, the others untouched.
func killOneReplica(t *testing.T, n *node, before map[string]running) {
	t.Helper()
	var victim running
	for _, r := range before {
		victim = r
		break
	}
	if err := syscall.Kill(victim.proc.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", victim.proc.pid, err)
	}
	// The dead task shows its exit code in `service ps`, and a new task
	// runs in its slot; the other two are untouched.
	var ps []*objectv1.Task
	eventually(t, 60*time.Second, func(context.Context) error {
		var err error
		if ps, err = n.ps("web"); err != nil {
			return err
		}
		var dead, replaced bool
		runningNow := 0
		for _, task := range ps {
			st := task.GetStatus()
			switch {
			case task.GetId() == victim.task.GetId():
				dead = st.GetState() == objectv1.TaskState_TASK_STATE_FAILED && st.GetExitCode() == 137
			case st.GetState() == objectv1.TaskState_TASK_STATE_RUNNING:
				runningNow++
				if _, old := before[task.GetId()]; !old && task.GetSlot() == victim.task.GetSlot() {
					replaced = true
				}
			}
		}
		if !dead || !replaced || runningNow != 3 {
			return fmt.Errorf("want task %s FAILED with exit code 137 and a new task running in slot %d beside the other two: %s",
				victim.task.GetId(), victim.task.GetSlot(), summary(ps))
		}
		return nil
	})
	for id, r := range before {
		if id == victim.task.GetId() {
			continue
		}
		if p, ok := readProc(r.proc.pid); !ok || p.start != r.proc.start {
			t.Errorf("task %s: its process %d died with another task's", id, r.proc.pid)
		}
	}
	// The table shows the exit code too.
	if table := n.mustRun("service", "ps", "--no-trunc", "web"); !strings.Contains(table, "137") {
		t.Errorf("service ps web does not show exit code 137:\n%s", table)
	}
}

// checkExitCodeRestarts checks that a task that exits with code 3 is FAILED
// with exit code 3, and is restarted.
func checkExitCodeRestarts(t *testing.T, n *node) {
	t.Helper()
	// A task that exits with code 3 is FAILED with exit code 3, and is
	// restarted.
	n.mustRun("service", "create", "--name", "exit3", "--detach", "--restart-delay", "200ms", testImage, "out:bye", "exit:3")
	eventually(t, 60*time.Second, func(context.Context) error {
		ps, err := n.ps("exit3")
		if err != nil {
			return err
		}
		failed := 0
		for _, task := range ps {
			if st := task.GetStatus(); st.GetState() == objectv1.TaskState_TASK_STATE_FAILED && st.GetExitCode() == 3 {
				failed++
			}
		}
		if failed < 2 {
			return fmt.Errorf("want at least 2 tasks FAILED with exit code 3 (restarted once): %s", summary(ps))
		}
		return nil
	})
}

// checkReplicasLogs checks that service logs web prints every replica's
// output, prefixed with its task.
func checkReplicasLogs(t *testing.T, n *node, replicas []*objectv1.Task) {
	t.Helper()
	// Every replica's output, prefixed with its task. (The dead task's
	// logs went with it: the node drops a finished task that is no longer
	// wanted, and its logs.)
	eventually(t, 30*time.Second, func(context.Context) error {
		out, err := n.run("service", "logs", "web")
		if err != nil {
			return err
		}
		for _, task := range replicas {
			// "web.SLOT.TASKID@node | hello", the task ID maybe shortened.
			re := regexp.MustCompile(fmt.Sprintf(`(?m)^web\.%d\.(\w+)@\S+\s+\| hello$`, task.GetSlot()))
			found := false
			for _, m := range re.FindAllStringSubmatch(out, -1) {
				if strings.HasPrefix(task.GetId(), m[1]) {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("service logs web has no line \"hello\" from task %s (slot %d):\n%s", task.GetId(), task.GetSlot(), out)
			}
		}
		return nil
	})
}

// removeReplicas removes web and exit3 and checks that no task, container
// or process of theirs is left.
func removeReplicas(t *testing.T, n *node, replicas []*objectv1.Task) {
	t.Helper()
	// `service rm` stops the containers and leaves no task behind.
	n.mustRun("service", "rm", "web", "exit3")
	eventually(t, 60*time.Second, func(ctx context.Context) error {
		resp, err := n.client.ListTasks(ctx, &controlv1.ListTasksRequest{})
		if err != nil {
			return err
		}
		if len(resp.GetTasks()) > 0 {
			return fmt.Errorf("tasks left after service rm: %s", summary(resp.GetTasks()))
		}
		if c, err := n.containers(ctx); err != nil || c > 0 {
			return fmt.Errorf("containers left after service rm: %d (%v)", c, err)
		}
		return nil
	})
	for _, task := range replicas {
		if _, ok := readProc(int(task.GetStatus().GetPid())); ok {
			t.Errorf("task %s: its process %d runs after service rm", task.GetId(), task.GetStatus().GetPid())
		}
	}
}

// TestExecutorPluginKilled: SIGKILL of the executor plugin leaves every
// container running untouched; the plugin is restarted, the node's tasks
// stay RUNNING with no restart, and the restarted plugin watches them.
func TestExecutorPluginKilled(t *testing.T) {
	n := startNode(t)
	n.mustRun("service", "create", "--name", "web", "--replicas", "3", "--restart-delay", "200ms", testImage, "out:hello", "sleep:inf")
	webID := n.serviceID("web")
	before := snapshot(t, n.waitRunning(webID, 3, 60*time.Second))

	plugin, ok := n.executorPlugin()
	if !ok {
		t.Fatalf("the agent (pid %d) has no %s child", n.pid(), executorName)
	}
	if err := syscall.Kill(plugin.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var restarted proc
	eventually(t, 30*time.Second, func(context.Context) error {
		p, ok := n.executorPlugin()
		if !ok || (p.pid == plugin.pid && p.start == plugin.start) {
			return fmt.Errorf("the executor plugin is not restarted")
		}
		restarted = p
		return nil
	})
	t.Logf("executor plugin pid %d killed, restarted as pid %d", plugin.pid, restarted.pid)
	// Nothing changes, for a while after the restart.
	until := time.Now().Add(3 * time.Second)
	for time.Now().Before(until) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := checkUntouched(ctx, n, webID, before)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	victim := before[slices.Sorted(maps.Keys(before))[0]]
	killAndWatch(t, n, webID, victim)
}

// TestAgentRestart: SIGKILL of the agent (manager, worker, executor plugin
// and the node's containerd go with it) leaves every container running;
// the restarted agent, on the same data directory, adopts them: the tasks
// stay RUNNING with the same container and pid, and the agent watches
// them. It logs how long the node took.
func TestAgentRestart(t *testing.T) {
	n := startNode(t)
	n.mustRun("service", "create", "--name", "web", "--replicas", "3", "--restart-delay", "200ms", testImage, "out:hello", "sleep:inf")
	webID := n.serviceID("web")
	before := snapshot(t, n.waitRunning(webID, 3, 60*time.Second))

	n.kill()
	time.Sleep(500 * time.Millisecond) // let anything that would die with it die
	for id, r := range before {
		if p, ok := readProc(r.proc.pid); !ok || p.start != r.proc.start {
			t.Fatalf("task %s: its process %d died with the agent", id, r.proc.pid)
		}
	}
	restart := time.Now()
	n.start()
	// The store still says RUNNING from before the restart: what counts is
	// what the node says once its agent is back, so the clock starts when
	// the agent's session with the (restarted) manager opens.
	var session time.Time
	eventually(t, 90*time.Second, func(context.Context) error {
		var ok bool
		if session, ok = logTime(n.output(), "session with manager opened"); !ok {
			return errors.New("the restarted agent has no session yet")
		}
		return nil
	})
	var ready time.Time
	eventually(t, 30*time.Second, func(ctx context.Context) error {
		nodes, err := n.client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		if len(nodes.GetNodes()) != 1 || nodes.GetNodes()[0].GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY {
			return fmt.Errorf("node not ready: %v", nodes.GetNodes())
		}
		if err := checkUntouched(ctx, n, webID, before); err != nil {
			return err
		}
		ready = time.Now()
		return nil
	})
	adopted, ok := logTime(n.output(), "agent started")
	if !ok || !strings.Contains(n.output(), "executor_tasks=3") {
		t.Errorf("the restarted agent did not find the 3 tasks in the executor:\n%s", n.output())
	}
	afterSession := ready.Sub(session)
	t.Logf("agent restart: executor's tasks adopted %v after start, session up %v after start; every task reported unchanged %v after the session came up",
		adopted.Sub(restart).Round(time.Millisecond), session.Sub(restart).Round(time.Millisecond), afterSession.Round(time.Millisecond))
	// The goal is 1s; the bound is generous for a loaded 2-core machine.
	if afterSession > 5*time.Second {
		t.Errorf("the tasks were reported unchanged %v after the session came up, want well within 1s (bound 5s)", afterSession)
	}
	// Nothing changes later either.
	until := time.Now().Add(3 * time.Second)
	for time.Now().Before(until) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := checkUntouched(ctx, n, webID, before)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	victim := before[slices.Sorted(maps.Keys(before))[0]]
	killAndWatch(t, n, webID, victim)
}
