// Package clustertest starts shoal clusters for tests and benchmarks: real
// `shoal agent` processes on 127.0.0.1, with real gRPC, TLS and Raft, that a
// test can SIGKILL, restart and query.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/shoalhq/shoal/internal/logbuf"
	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/kernel/controlapi"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary builds the shoal binary once per test process and returns its path.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		// SHOAL_TEST_BINARY runs the tests against a shoal built elsewhere
		// (with its plugins beside it): to show a test fails on old code.
		if bin := os.Getenv("SHOAL_TEST_BINARY"); bin != "" {
			buildBin = bin
			return
		}
		dir, err := os.MkdirTemp("", "shoal-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "shoal")
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		// The bundled plugins go next to shoal, where the agent looks.
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/shoal", "./plugins/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildBin
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the shoal module")
	}
	return filepath.Dir(mod), nil
}

// FreePorts returns n TCP ports free on 127.0.0.1 right now.
func FreePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Manager is one manager process.
type Manager struct {
	Name string
	// Host is the loopback address the manager listens on: 127.0.0.1, or
	// its own with Options.OwnAddresses.
	Host string
	// MetricsAddr serves /metrics when Options.Metrics is set.
	MetricsAddr string
	Dir         string
	APIAddr     string
	Socket      string
	config      string
	bin         string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *logbuf.Buffer
}

// Cluster is a set of manager processes.
type Cluster struct {
	tb       testing.TB
	Managers []*Manager
}

// Options tune a cluster.
type Options struct {
	// Raft holds extra [raft] lines, e.g. `heartbeat_timeout = "300ms"`.
	Raft string
	// Metrics makes each manager serve /metrics on a free port.
	Metrics bool
	// OwnAddresses puts each manager on its own loopback address
	// (127.0.0.10, .11, ...; Linux routes all of 127/8 to lo), so that a
	// firewall rule can cut one off from the others (Partition).
	OwnAddresses bool
	// Config is TOML appended to each manager's config: a
	// [plugins.scheduler] table naming another scheduler plugin, say.
	Config string
}

// Start starts n managers: the first bootstraps the cluster, the others
// join it with the manager token. It waits until all are in the Raft group.
func Start(tb testing.TB, n int, opts Options) *Cluster {
	tb.Helper()
	bin := Binary(tb)
	base := tb.TempDir()
	c := &Cluster{tb: tb}
	tb.Cleanup(c.Stop)
	for i := range n {
		ports := FreePorts(tb, 3)
		host := "127.0.0.1"
		if opts.OwnAddresses {
			host = fmt.Sprintf("127.0.0.%d", 10+i)
		}
		m := &Manager{
			Name:    fmt.Sprintf("m%d", i),
			Host:    host,
			Dir:     filepath.Join(base, fmt.Sprintf("m%d", i)),
			APIAddr: fmt.Sprintf("%s:%d", host, ports[0]),
			bin:     bin,
		}
		m.Socket = filepath.Join(m.Dir, "control.sock")
		if opts.Metrics {
			m.MetricsAddr = fmt.Sprintf("%s:%d", host, ports[2])
		}
		if err := os.MkdirAll(m.Dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		join := ""
		if i > 0 {
			token := c.JoinToken(tb, "manager")
			join = fmt.Sprintf("[join]\naddrs = [%q]\ntoken = %q\n", c.Managers[0].APIAddr, token)
		}
		cfg := fmt.Sprintf(`version = 1
[node]
hostname = %q
data_dir = %q
[manager]
listen_addr = %q
raft_listen_addr = "%s:%d"
control_socket = %q
[raft]
%s
[metrics]
listen_addr = %q
[log]
level = "info"
# The managers only manage: tasks run on the tests' simulated workers, so
# killing a manager never takes tasks with it.
[plugins.executor]
path = "none"
%s
%s`, m.Name, filepath.Join(m.Dir, "data"), m.APIAddr, host, ports[1], m.Socket, opts.Raft, m.MetricsAddr, opts.Config, join)
		m.config = filepath.Join(m.Dir, "node.toml")
		if err := os.WriteFile(m.config, []byte(cfg), 0o600); err != nil {
			tb.Fatal(err)
		}
		c.Managers = append(c.Managers, m)
		if err := m.Start(); err != nil {
			tb.Fatal(err)
		}
		c.WaitManagers(tb, i+1, 60*time.Second)
	}
	return c
}

// Start starts (or restarts) the manager's process.
func (m *Manager) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return errors.New("already running")
	}
	m.log = &logbuf.Buffer{}
	cmd := exec.Command(m.bin, "agent", "--config", m.config)
	cmd.Stdout = m.log
	cmd.Stderr = m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd = cmd
	m.done = make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.done)
	return nil
}

// Kill sends SIGKILL and waits for the process to exit.
func (m *Manager) Kill() { m.signal(syscall.SIGKILL) }

// Terminate sends SIGTERM and waits for a graceful exit.
func (m *Manager) Terminate() { m.signal(syscall.SIGTERM) }

func (m *Manager) signal(sig syscall.Signal) {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	// A paused process acts on no signal but SIGKILL until it continues.
	cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	m.mu.Lock()
	m.cmd = nil
	m.mu.Unlock()
}

// Pause stops the process with SIGSTOP, as a long GC pause or an
// overloaded machine would; Resume continues it.
func (m *Manager) Pause() { m.sendOnly(syscall.SIGSTOP) }

// Resume continues a paused process (SIGCONT).
func (m *Manager) Resume() { m.sendOnly(syscall.SIGCONT) }

func (m *Manager) sendOnly(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.cmd.Process.Signal(sig)
	}
}

// Pid is the process ID, or 0 when it is not running.
func (m *Manager) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Running reports whether the process is up.
func (m *Manager) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// Log returns what the process printed so far.
func (m *Manager) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.log == nil {
		return ""
	}
	return m.log.String()
}

// Client returns a control API client over the manager's unix socket.
func (m *Manager) Client(tb testing.TB) controlv1.ControlClient {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return controlv1.NewControlClient(conn)
}

// LocalRead marks ctx so the manager answers reads from its own replica.
func LocalRead(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, controlapi.ReadLocalKey, "1")
}

// Stop terminates every manager.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, m := range c.Managers {
		wg.Add(1)
		go func() { defer wg.Done(); m.Terminate() }()
	}
	wg.Wait()
	if dir := os.Getenv("SHOAL_TEST_LOGDIR"); dir != "" {
		for _, m := range c.Managers {
			os.WriteFile(filepath.Join(dir, c.tb.Name()+"-"+m.Name+".log"), []byte(m.Log()), 0o644)
		}
	}
	if c.tb.Failed() {
		for _, m := range c.Managers {
			c.tb.Logf("---- %s log (tail) ----\n%s", m.Name, tail(m.Log(), 4000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Running returns the managers whose process is up.
func (c *Cluster) Running() []*Manager {
	var out []*Manager
	for _, m := range c.Managers {
		if m.Running() {
			out = append(out, m)
		}
	}
	return out
}

// JoinToken reads a join token through the first running manager.
func (c *Cluster) JoinToken(tb testing.TB, role string) string {
	tb.Helper()
	var tok string
	c.eventually(tb, 30*time.Second, func(ctx context.Context) error {
		for _, m := range c.Running() {
			resp, err := m.Client(tb).GetCluster(ctx, &controlv1.GetClusterRequest{})
			if err != nil {
				continue
			}
			if role == "manager" {
				tok = resp.GetCluster().GetRootCa().GetJoinTokens().GetManager()
			} else {
				tok = resp.GetCluster().GetRootCa().GetJoinTokens().GetWorker()
			}
			return nil
		}
		return errors.New("no manager answers")
	})
	return tok
}

// Leader returns the running manager that leads now, waiting up to timeout.
func (c *Cluster) Leader(tb testing.TB, timeout time.Duration) *Manager {
	tb.Helper()
	var leader *Manager
	c.eventually(tb, timeout, func(ctx context.Context) error {
		for _, m := range c.Running() {
			resp, err := m.Client(tb).GetCluster(LocalRead(ctx), &controlv1.GetClusterRequest{})
			if err != nil || resp.GetLeaderId() == "" {
				continue
			}
			id := resp.GetLeaderId()
			nodes, err := m.Client(tb).ListNodes(LocalRead(ctx), &controlv1.ListNodesRequest{})
			if err != nil {
				continue
			}
			for _, n := range nodes.GetNodes() {
				if n.Id != id {
					continue
				}
				for _, cand := range c.Running() {
					if cand.APIAddr == n.GetManagerStatus().GetApiAddr() {
						leader = cand
						return nil
					}
				}
			}
		}
		return errors.New("no leader yet")
	})
	return leader
}

// WaitManagers waits until n managers are recorded as ready managers.
func (c *Cluster) WaitManagers(tb testing.TB, n int, timeout time.Duration) {
	tb.Helper()
	c.eventually(tb, timeout, func(ctx context.Context) error {
		for _, m := range c.Running() {
			// Each manager gets its own deadline: one that knows no leader
			// waits out its forwarding, which must not starve the others.
			mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := m.Client(tb).ListNodes(mctx, &controlv1.ListNodesRequest{})
			cancel()
			if err != nil {
				continue
			}
			ready := 0
			for _, node := range resp.GetNodes() {
				if node.GetManagerStatus().GetApiAddr() != "" && node.GetStatus().GetState().String() == "NODE_STATE_READY" {
					ready++
				}
			}
			if ready >= n {
				return nil
			}
			return fmt.Errorf("%d of %d managers ready", ready, n)
		}
		return errors.New("no manager answers")
	})
}

func (c *Cluster) eventually(tb testing.TB, timeout time.Duration, fn func(ctx context.Context) error) {
	tb.Helper()
	err := retry.Until(timeout, 5*time.Second, fn)
	if err == nil {
		return
	}
	for _, m := range c.Managers {
		tb.Logf("---- %s log (tail) ----\n%s", m.Name, tail(m.Log(), 3000))
	}
	tb.Fatalf("not within %s: %v", timeout, sdk.FromGRPC(err))
}
