package e2etest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shoalhq/shoal/internal/logbuf"
	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/kernel/clustertest"
	"github.com/shoalhq/shoal/kernel/containerd"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// testImage is the name the test image is imported under.
const testImage = "docker.io/shoale2e/prog:1"

// executorName is the bundled executor plugin's binary, next to shoal.
const executorName = "executor-containerd"

// executorNamespace is the containerd namespace of the executor's tasks
// (its default).
const executorNamespace = "shoal"

// requireRealContainers skips tb unless real containers can run here.
func requireRealContainers(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("real containers need root")
	}
	for _, bin := range []string{containerd.DefaultBinary, "/usr/bin/containerd-shim-runc-v2"} {
		if _, err := os.Stat(bin); err != nil {
			tb.Skipf("containerd is not installed (%v): run scripts/deps.sh", err)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		tb.Skipf("runc is not installed (%v): run scripts/deps.sh", err)
	}
}

// imageTar is the test image as an OCI layout tar, written once per test
// binary.
var imageTar struct {
	once sync.Once
	path string
	err  error
}

func testImageTar(tb testing.TB) string {
	tb.Helper()
	imageTar.once.Do(func() {
		im, err := testimage.New(testImage)
		if err != nil {
			imageTar.err = err
			return
		}
		dir, err := os.MkdirTemp("", "shoal-e2e-image-")
		if err != nil {
			imageTar.err = err
			return
		}
		imageTar.path = filepath.Join(dir, "prog.tar")
		imageTar.err = im.WriteFile(imageTar.path, "oci")
	})
	if imageTar.err != nil {
		tb.Fatalf("test image: %v", imageTar.err)
	}
	return imageTar.path
}

// node is a one-node cluster: one `shoal agent` process whose config makes
// it a manager with its own worker, on the bundled executor-containerd and
// the node's own containerd.
type node struct {
	tb     testing.TB
	bin    string
	dir    string
	config string
	socket string
	// metrics is the metrics listener's address: /metrics and the
	// dashboard.
	metrics string
	client  controlv1.ControlClient
	// table is the node's nftables table (services.nftables_table): its
	// own, since every node of these tests shares the host's namespace
	// (and perhaps a `make run` node's); deleted when the node stops.
	table string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *logbuf.Buffer // the current process's output
	logs []string       // earlier processes' output
}

// startNode starts a one-node cluster, waits until its worker is ready and
// imports the test image. Everything it started ends with the test: its
// services are removed (so no container outlives it), then the agent
// stops.
func startNode(tb testing.TB) *node {
	tb.Helper()
	requireRealContainers(tb)
	bin := clustertest.Binary(tb)
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "shoal-e2e-")
	if err != nil {
		tb.Fatal(err)
	}
	ports := clustertest.FreePorts(tb, 3)
	n := &node{
		tb:      tb,
		bin:     bin,
		dir:     dir,
		config:  filepath.Join(dir, "node.toml"),
		socket:  filepath.Join(dir, "control.sock"),
		metrics: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		table:   filepath.Base(dir),
	}
	cfg := fmt.Sprintf(`version = 1
[node]
hostname = "e2e"
data_dir = %q
[manager]
listen_addr = "127.0.0.1:%d"
raft_listen_addr = "127.0.0.1:%d"
control_socket = %q
[metrics]
listen_addr = "127.0.0.1:%d"
[log]
level = "info"
# Gossip on a free loopback port: the machine may run other nodes on 7946.
[gossip]
listen_addr = "127.0.0.1:0"
[services]
nftables_table = %q
# [plugins.executor] is not set: the bundled executor-containerd next to the
# shoal binary, on the node's own containerd under data_dir.
`, filepath.Join(dir, "data"), ports[0], ports[1], n.socket, ports[2], n.table)
	if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+n.socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)))
	if err != nil {
		tb.Fatal(err)
	}
	n.client = controlv1.NewControlClient(conn)
	tb.Cleanup(func() {
		n.cleanup()
		conn.Close()
	})
	n.start()
	n.waitReady(90 * time.Second)
	n.importImage()
	return n
}

// start starts the agent process.
func (n *node) start() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		n.tb.Fatal("the agent runs already")
	}
	if n.log != nil {
		n.logs = append(n.logs, n.log.String())
	}
	n.log = &logbuf.Buffer{}
	cmd := exec.Command(n.bin, "agent", "--config", n.config)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	// The agent dies with the test binary; its containers would not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		n.tb.Fatalf("start shoal agent: %v", err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(n.done)
}

// kill sends the agent SIGKILL and waits for it to exit.
func (n *node) kill() { n.signal(syscall.SIGKILL) }

// signal sends the agent sig and waits up to 60s for it to exit (then
// kills it).
func (n *node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		n.tb.Errorf("the agent did not exit within 60s of %v: killing it", sig)
		cmd.Process.Kill()
		<-done
	}
	n.mu.Lock()
	n.cmd = nil
	n.mu.Unlock()
}

// pid is the agent's process ID, 0 when it does not run.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// output is what the current agent process printed so far.
func (n *node) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// cleanup removes every service, waits until the node holds no task (its
// containers are stopped and removed), stops the agent and deletes the
// node's directory. A test that failed gets the agent's log.
func (n *node) cleanup() {
	if n.pid() == 0 {
		n.start() // a test that killed the agent: it must clean up
	}
	err := n.removeAllServices(60 * time.Second)
	if err != nil {
		n.tb.Errorf("cleanup: %v", err)
	}
	n.signal(syscall.SIGTERM)
	n.killShims()
	n.deleteTable()
	if n.tb.Failed() || err != nil {
		n.mu.Lock()
		all := strings.Join(append(n.logs, n.log.String()), "\n---- agent restarted ----\n")
		n.mu.Unlock()
		n.tb.Logf("---- agent log (tail) ----\n%s", tail(all, 12000))
	}
	if dir := os.Getenv("SHOAL_TEST_LOGDIR"); dir != "" {
		n.mu.Lock()
		all := strings.Join(append(n.logs, n.log.String()), "\n---- agent restarted ----\n")
		n.mu.Unlock()
		os.WriteFile(filepath.Join(dir, strings.ReplaceAll(n.tb.Name(), "/", "_")+".log"), []byte(all), 0o644)
	}
	if err == nil {
		// With every task removed nothing is mounted under dir any more.
		if rerr := os.RemoveAll(n.dir); rerr != nil {
			n.tb.Errorf("cleanup: %v", rerr)
		}
	}
}

// deleteTable deletes the node's nftables table, which a stopped node
// keeps (for its tasks, across a restart); absent is fine.
func (n *node) deleteTable() {
	if n.table == "" {
		return
	}
	out, err := exec.Command("nft", "delete", "table", "ip", n.table).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		n.tb.Logf("nft delete table ip %s: %v: %s", n.table, err, out)
	}
}

// removeAllServices removes every service and waits until the node holds
// no task.
func (n *node) removeAllServices(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := n.removeAllOnce(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove every service: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *node) removeAllOnce(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	svcs, err := n.client.ListServices(cctx, &controlv1.ListServicesRequest{})
	if err != nil {
		return err
	}
	for _, s := range svcs.GetServices() {
		if _, err := n.client.RemoveService(cctx, &controlv1.RemoveServiceRequest{Ref: s.GetId()}); err != nil && !errors.Is(sdk.FromGRPC(err), sdk.ErrNotFound) {
			return err
		}
	}
	tasks, err := n.client.ListTasks(cctx, &controlv1.ListTasksRequest{})
	if err != nil {
		return err
	}
	if len(tasks.GetTasks()) > 0 {
		return fmt.Errorf("%d tasks left: %s", len(tasks.GetTasks()), summary(tasks.GetTasks()))
	}
	// The store forgets a task before its node removes the container:
	// wait for the node too.
	if c, err := n.containers(cctx); err != nil || c > 0 {
		return fmt.Errorf("containers left on the node: %d (%v)", c, err)
	}
	// The executor detaches a task's networks after deleting its
	// container: wait for the network namespaces to go too.
	if ns, _ := os.ReadDir(filepath.Join(n.dir, "data", "plugins", "executor", "net", "netns")); len(ns) > 0 {
		return fmt.Errorf("%d task network namespaces left on the node", len(ns))
	}
	return nil
}

// containerdAddress is the socket of the node's own containerd.
func (n *node) containerdAddress() string {
	return containerd.SocketPath(containerd.NodeDir(filepath.Join(n.dir, "data")))
}

// containers counts the containers of the node's containerd namespace:
// those the executor has not removed.
func (n *node) containers(ctx context.Context) (int, error) {
	c, err := client.New(n.containerdAddress(), client.WithTimeout(5*time.Second))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cs, err := c.Containers(namespaces.WithNamespace(ctx, executorNamespace))
	return len(cs), err
}

// killShims kills the containerd shims of the node's containerd that are
// left once the node stopped. A shim outlives its container when
// containerd's shutdown call to it fails (seen with 300 containers
// removed at once on a loaded machine); nothing would ever end it.
func (n *node) killShims() {
	addr := "-address\x00" + n.containerdAddress() + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(cmdline), "/usr/bin/containerd-shim") && strings.Contains(string(cmdline), addr) {
			n.tb.Logf("cleanup: killing shim %d, left by the node's containerd", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitReady waits until the node is a ready manager with its own worker on
// the bundled executor.
func (n *node) waitReady(timeout time.Duration) {
	n.tb.Helper()
	eventually(n.tb, timeout, func(ctx context.Context) error {
		resp, err := n.client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		if len(resp.GetNodes()) != 1 {
			return fmt.Errorf("nodes: %v", resp.GetNodes())
		}
		nd := resp.GetNodes()[0]
		if nd.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY || nd.GetDescription().GetExecutor() != executorName {
			return fmt.Errorf("node is %s with executor %q, want ready with %q", nd.GetStatus().GetState(), nd.GetDescription().GetExecutor(), executorName)
		}
		return nil
	})
}

// importImage loads the test image with `shoal image import`, which finds
// the node's containerd from the node's config.
func (n *node) importImage() {
	n.tb.Helper()
	tar := testImageTar(n.tb)
	var out string
	eventually(n.tb, 60*time.Second, func(context.Context) error {
		var err error
		out, err = n.run("image", "import", "--config", n.config, tar)
		return err
	})
	if !strings.Contains(out, "Loaded image: "+testImage) {
		n.tb.Fatalf("shoal image import printed %q, want it to name %s", out, testImage)
	}
}

// run runs the shoal CLI against the node and returns its stdout; the
// error carries its stderr.
func (n *node) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--host", "unix://" + n.socket}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("shoal %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// mustRun is run that fails the test on error.
func (n *node) mustRun(args ...string) string {
	n.tb.Helper()
	out, err := n.run(args...)
	if err != nil {
		n.tb.Fatal(err)
	}
	return out
}

// ps is `shoal service ps --format json SERVICE`.
func (n *node) ps(service string) ([]*objectv1.Task, error) {
	out, err := n.run("service", "ps", "--format", "json", service)
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("service ps --format json: %v: %q", err, out)
	}
	tasks := make([]*objectv1.Task, len(raw))
	for i, r := range raw {
		tasks[i] = &objectv1.Task{}
		if err := protojson.Unmarshal(r, tasks[i]); err != nil {
			return nil, fmt.Errorf("service ps --format json: task %d: %v", i, err)
		}
	}
	return tasks, nil
}

// tasks lists a service's tasks through the control API.
func (n *node) tasks(ctx context.Context, serviceID string) ([]*objectv1.Task, error) {
	resp, err := n.client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{serviceID}})
	if err != nil {
		return nil, err
	}
	return resp.GetTasks(), nil
}

// serviceID returns the ID of the service named name.
func (n *node) serviceID(name string) string {
	n.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := n.client.GetService(ctx, &controlv1.GetServiceRequest{Ref: name})
	if err != nil {
		n.tb.Fatalf("GetService(%s) = %v", name, err)
	}
	return resp.GetService().GetId()
}

// waitRunning waits until want tasks of the service run with a process ID,
// and returns them.
func (n *node) waitRunning(serviceID string, want int, timeout time.Duration) []*objectv1.Task {
	n.tb.Helper()
	var running []*objectv1.Task
	eventually(n.tb, timeout, func(ctx context.Context) error {
		tasks, err := n.tasks(ctx, serviceID)
		if err != nil {
			return err
		}
		running = running[:0]
		for _, t := range tasks {
			if t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetPid() > 0 {
				running = append(running, t)
			}
		}
		if len(running) != want {
			return fmt.Errorf("%d of %d tasks run: %s", len(running), want, summary(tasks))
		}
		return nil
	})
	return running
}

// summary is a short description of tasks for failure messages.
func summary(tasks []*objectv1.Task) string {
	var b strings.Builder
	for _, t := range tasks {
		st := t.GetStatus()
		fmt.Fprintf(&b, "\n  %s slot %d desired %s: %s pid %d exit %d msg %q err %q", t.GetId(), t.GetSlot(),
			t.GetDesiredState(), st.GetState(), st.GetPid(), st.GetExitCode(), st.GetMessage(), st.GetErr())
	}
	return b.String()
}

// eventually retries fn until it returns nil, failing tb after timeout.
func eventually(tb testing.TB, timeout time.Duration, fn func(ctx context.Context) error) {
	tb.Helper()
	if err := retry.Until(timeout, 10*time.Second, fn); err != nil {
		tb.Fatalf("not within %s: %v", timeout, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// logTime is the time of the first line of log (slog's text format) whose
// message is msg, and whether there is one.
func logTime(log, msg string) (time.Time, bool) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="`+msg+`"`) && !strings.Contains(line, "msg="+msg+" ") {
			continue
		}
		ts, ok := strings.CutPrefix(line, "time=")
		if !ok {
			continue
		}
		ts, _, _ = strings.Cut(ts, " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		return t, true
	}
	return time.Time{}, false
}

// proc is a process as /proc shows it.
type proc struct {
	pid, ppid int
	// start is the process's start time in clock ticks since boot: with
	// the pid, it names one process even when pids are reused.
	start uint64
	exe   string
}

// readProc reads /proc/pid; ok is false when no such process runs (or it
// is a zombie).
func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3, the state
	if len(f) < 20 || f[0] == "Z" {
		return proc{}, false
	}
	p := proc{pid: pid}
	p.ppid, _ = strconv.Atoi(f[1])
	p.start, _ = strconv.ParseUint(f[19], 10, 64)
	p.exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return p, true
}

// children returns the processes whose parent is pid.
func children(pid int) []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(id); ok && p.ppid == pid {
			out = append(out, p)
		}
	}
	return out
}

// executorPlugin is the agent's executor-containerd child process.
func (n *node) executorPlugin() (proc, bool) {
	for _, p := range children(n.pid()) {
		if filepath.Base(p.exe) == executorName {
			return p, true
		}
	}
	return proc{}, false
}
