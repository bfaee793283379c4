package pluginhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/internal/testbin"
	"github.com/shoalhq/shoal/sdk"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// testPlugin is the path of testdata/testplugin, built by TestMain.
var testPlugin string

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) != "" {
		runAgent()
		return
	}
	testbin.Main(m, "./testdata/testplugin", func(path string) {
		testPlugin = path
		os.Setenv(agentPluginEnv, path)
	})
}

// waitLimit bounds every wait of these tests; reaching it is a failure,
// not a timing assertion.
const waitLimit = 20 * time.Second

// fastTiming supervises quickly, so that tests notice crashes at once. Its
// ping timeout stays generous: a healthy plugin must never fail it, even
// under the race detector on a busy machine.
var fastTiming = timing{
	minBackoff:       10 * time.Millisecond,
	maxBackoff:       100 * time.Millisecond,
	resetAfter:       time.Hour,
	exitPoll:         10 * time.Millisecond,
	pingInterval:     100 * time.Millisecond,
	pingTimeout:      3 * time.Second,
	startTimeout:     waitLimit,
	configureTimeout: waitLimit,
	killGrace:        5 * time.Second,
}

// logs keeps the records of a slog logger (see recorder).
type logs struct {
	mu      sync.Mutex
	recs    []map[string]any // "level", "msg" and the attributes
	changed chan struct{}
}

func newLogs() *logs { return &logs{changed: make(chan struct{})} }

func (l *logs) logger() *slog.Logger { return slog.New(&recorder{logs: l}) }

// waitFor waits until a record has every key and value of want.
func (l *logs) waitFor(t *testing.T, want map[string]any) map[string]any {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		l.mu.Lock()
		changed := l.changed
		for _, r := range l.recs {
			if matches(r, want) {
				l.mu.Unlock()
				return r
			}
		}
		l.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no log record with %v", want)
		}
	}
}

func matches(r, want map[string]any) bool {
	for k, v := range want {
		if fmt.Sprint(r[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// recorder is a slog.Handler writing into logs.
type recorder struct {
	logs  *logs
	attrs []slog.Attr
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{logs: r.logs, attrs: append(append([]slog.Attr(nil), r.attrs...), as...)}
}

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]any{"level": rec.Level.String(), "msg": rec.Message}
	for _, a := range r.attrs {
		m[a.Key] = a.Value.Any()
	}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	r.logs.mu.Lock()
	defer r.logs.mu.Unlock()
	r.logs.recs = append(r.logs.recs, m)
	close(r.logs.changed)
	r.logs.changed = make(chan struct{})
	return nil
}

func testConfig(t *testing.T, l *logs, config string) Config {
	return Config{
		Kind:      sdk.KindScheduler,
		Path:      testPlugin,
		Config:    []byte(config),
		SocketDir: t.TempDir(),
		Plugins:   plugin.PluginSet{sdk.KindScheduler: &scheduler.Plugin{}},
		Logger:    l.logger(),
	}
}

// running is a Host whose Run runs in a goroutine until stop.
type running[T any] struct {
	*Host[T]
	wait func() error // waits for Run to return and returns its result
	stop func() error // cancels Run's ctx, then wait
}

func start[T any](t *testing.T, cfg Config, tm timing) running[T] {
	t.Helper()
	h, err := New[T](cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.timing = tm
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	result := sync.OnceValue(func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(waitLimit):
			return errors.New("Run did not return")
		}
	})
	stop := func() error {
		cancel()
		return result()
	}
	t.Cleanup(func() { stop() })
	return running[T]{Host: h, wait: result, stop: stop}
}

// waitUntil waits until cond holds of the host's state.
func (h *Host[T]) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		h.mu.Lock()
		changed := h.changed
		h.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waiting for %s: gave up", what)
		}
	}
}

// pid is the running plugin's process ID, 0 while it is down.
func (h *Host[T]) pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return 0
	}
	return h.cur.pid
}

func get[T any](t *testing.T, h *Host[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := h.Get(ctx)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return c
}

var twoNodes = &schedulerv1.ScheduleRequest{
	ViewVersion: 1,
	UpsertNodes: []*schedulerv1.NodeInfo{{Id: "n1"}, {Id: "n2"}},
	Tasks:       []*schedulerv1.TaskInfo{{Id: "t1"}, {Id: "t2"}},
}

var onFirstNode = &schedulerv1.ScheduleResponse{Decisions: []*schedulerv1.Decision{
	{TaskId: "t1", NodeId: "n1"},
	{TaskId: "t2", NodeId: "n1"},
}}

func schedule(t *testing.T, s scheduler.Scheduler, req *schedulerv1.ScheduleRequest) *schedulerv1.ScheduleResponse {
	t.Helper()
	resp, err := s.Schedule(context.Background(), req)
	if err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	return resp
}

// gone tells whether no process has pid.
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func TestServesSchedule(t *testing.T) {
	l := newLogs()
	h := start[scheduler.Scheduler](t, testConfig(t, l, `greeting = "hello"`), fastTiming)
	s := get(t, h.Host)
	if got := schedule(t, s, twoNodes); !proto.Equal(got, onFirstNode) {
		t.Errorf("Schedule(two nodes) = %v, want %v", got, onFirstNode)
	}
	if got := h.Restarts(); got != 0 {
		t.Errorf("Restarts() = %d, want 0", got)
	}
	// The plugin's JSON log line comes out at its level, tagged with the
	// kind, with its fields.
	l.waitFor(t, map[string]any{"level": "WARN", "msg": "configured", "plugin": "scheduler", "greeting": "hello"})
}

func TestRestartAfterKill(t *testing.T) {
	l := newLogs()
	h := start[scheduler.Scheduler](t, testConfig(t, l, `greeting = "again"`), fastTiming)
	old := get(t, h.Host)
	pid := h.pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill plugin: %v", err)
	}
	h.waitUntil(t, "a restarted plugin", func() bool { return h.Restarts() > 0 && h.pid() != 0 })

	if got := h.Restarts(); got != 1 {
		t.Errorf("Restarts() = %d, want 1", got)
	}
	if got := h.pid(); got == pid {
		t.Errorf("pid after restart = %d, the killed one", got)
	}
	if !gone(pid) {
		t.Errorf("killed plugin %d still exists", pid)
	}
	s := get(t, h.Host)
	if got := schedule(t, s, twoNodes); !proto.Equal(got, onFirstNode) {
		t.Errorf("Schedule(two nodes) = %v, want %v", got, onFirstNode)
	}
	// The new process was configured.
	noNodes := &schedulerv1.ScheduleRequest{Tasks: []*schedulerv1.TaskInfo{{Id: "t1"}}}
	if got := schedule(t, s, noNodes).GetDecisions()[0].GetRefusal(); !strings.Contains(got, "again") {
		t.Errorf("refusal = %q, want the configured greeting %q in it", got, "again")
	}
	// The client of the killed process says why it fails.
	_, err := old.Schedule(context.Background(), twoNodes)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "scheduler plugin restarting") {
		t.Errorf("Schedule on the killed plugin's client = %v, want %v %q", err, sdk.ErrUnavailable, "scheduler plugin restarting")
	}
	l.waitFor(t, map[string]any{"level": "ERROR", "msg": "plugin crashed", "pid": pid})
}

func TestRestartAfterFailedHealthCheck(t *testing.T) {
	tm := fastTiming
	tm.pingTimeout = 500 * time.Millisecond
	h := start[scheduler.Scheduler](t, testConfig(t, newLogs(), ""), tm)
	get(t, h.Host)
	pid := h.pid()
	// A stopped process is alive but answers nothing: only the health
	// check can tell.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stop plugin: %v", err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	h.waitUntil(t, "a restarted plugin", func() bool { return h.Restarts() > 0 && h.pid() != 0 })
	if !gone(pid) {
		t.Errorf("wedged plugin %d still exists", pid)
	}
	if got := schedule(t, get(t, h.Host), twoNodes); !proto.Equal(got, onFirstNode) {
		t.Errorf("Schedule(two nodes) = %v, want %v", got, onFirstNode)
	}
}

func TestCancelKillsPlugin(t *testing.T) {
	h := start[scheduler.Scheduler](t, testConfig(t, newLogs(), ""), fastTiming)
	get(t, h.Host)
	pid := h.pid()
	if err := h.stop(); err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	if !gone(pid) {
		t.Errorf("plugin %d still exists after Run returned", pid)
	}
	_, err := h.Get(context.Background())
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Get after Run = %v, want %v saying stopped", err, sdk.ErrUnavailable)
	}
}

func TestConfigureRejected(t *testing.T) {
	l := newLogs()
	h := start[scheduler.Scheduler](t, testConfig(t, l, "bogus = 1"), fastTiming)
	// Run ends by itself: a rejected config is not retried.
	err := h.wait()
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 || fe[0].Field != "plugins.scheduler.config.bogus" {
		t.Fatalf("Run = %v, want field error on plugins.scheduler.config.bogus", err)
	}
	if got := h.Restarts(); got != 0 {
		t.Errorf("Restarts() = %d, want 0", got)
	}
	// go-plugin logs the pid it started.
	pid, _ := l.waitFor(t, map[string]any{"msg": "plugin started", "module": "plugin"})["pid"].(float64)
	if pid == 0 || !gone(int(pid)) {
		t.Errorf("plugin %v still exists after Run returned", pid)
	}
}

func TestConfigureUnavailableRetried(t *testing.T) {
	ready := filepath.Join(t.TempDir(), "ready")
	l := newLogs()
	h := start[scheduler.Scheduler](t, testConfig(t, l, fmt.Sprintf("wait_for = %q", ready)), fastTiming)
	// Not ready: the start fails as Unavailable, and is retried, even
	// though the plugin never ran.
	l.waitFor(t, map[string]any{"level": "ERROR", "msg": "plugin start failed"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Get(ctx); !errors.Is(err, sdk.ErrUnavailable) {
		t.Errorf("Get while not ready = %v, want %v", err, sdk.ErrUnavailable)
	}
	if err := os.WriteFile(ready, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := schedule(t, get(t, h.Host), twoNodes); !proto.Equal(got, onFirstNode) {
		t.Errorf("Schedule(two nodes) = %v, want %v", got, onFirstNode)
	}
	if got := h.Restarts(); got < 1 {
		t.Errorf("Restarts() = %d, want at least 1 failed start counted", got)
	}
}

func TestNotAPluginStopsRun(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "not-a-plugin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, newLogs(), "")
	cfg.Path = bin
	h := start[scheduler.Scheduler](t, cfg, fastTiming)
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "start scheduler plugin "+bin) {
		t.Errorf("Run = %v, want an error starting %s", err, bin)
	}
	if got := h.Restarts(); got != 0 {
		t.Errorf("Restarts() = %d, want 0: a first start that fails is not retried", got)
	}
}

func TestDispensedTypeMismatch(t *testing.T) {
	type other interface{ Other() }
	h := start[other](t, testConfig(t, newLogs(), ""), fastTiming)
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "*scheduler.Client") {
		t.Errorf("Run = %v, want an error naming the dispensed *scheduler.Client", err)
	}
}

func TestGetWhileNotRunning(t *testing.T) {
	h, err := New[scheduler.Scheduler](testConfig(t, newLogs(), ""))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = h.Get(ctx)
	if !errors.Is(err, sdk.ErrUnavailable) || err.Error() != "scheduler plugin starting: unavailable" {
		t.Errorf("Get(cancelled) = %v, want %q of kind %v", err, "scheduler plugin starting: unavailable", sdk.ErrUnavailable)
	}
}

func TestStaleSocketsRemoved(t *testing.T) {
	cfg := testConfig(t, newLogs(), "")
	dir := filepath.Join(cfg.SocketDir, cfg.Kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A socket a killed plugin left: bound, never unlinked.
	stale := filepath.Join(dir, "plugin123")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	// A placeholder go-plugin creates before binding, and an unrelated file.
	placeholder := filepath.Join(dir, "plugin456")
	other := filepath.Join(dir, "notes.txt")
	for _, f := range []string{placeholder, other} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	h := start[scheduler.Scheduler](t, cfg, fastTiming)
	get(t, h.Host)

	for _, f := range []string{stale, placeholder} {
		if _, err := os.Lstat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s: Lstat = %v, want not exist", f, err)
		}
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("unrelated %s removed: %v", other, err)
	}
	h.mu.Lock()
	addr := h.cur.client.ReattachConfig().Addr
	h.mu.Unlock()
	if addr.Network() != "unix" || filepath.Dir(addr.String()) != dir {
		t.Errorf("plugin listens on %s %s, want a unix socket in %s", addr.Network(), addr, dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v, %v, want 0700", fi.Mode().Perm(), err)
	}
}

func TestNewRejects(t *testing.T) {
	tmp := t.TempDir()
	notExec := filepath.Join(tmp, "notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing")
	good := func() Config {
		return Config{
			Kind:      sdk.KindScheduler,
			Path:      testPlugin,
			SocketDir: tmp,
			Plugins:   plugin.PluginSet{sdk.KindScheduler: &scheduler.Plugin{}},
		}
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
		is     error
	}{
		{"missing binary", func(c *Config) { c.Path = missing }, "scheduler plugin binary: stat " + missing + ": no such file or directory", fs.ErrNotExist},
		{"directory", func(c *Config) { c.Path = tmp }, "not a regular file", nil},
		{"not executable", func(c *Config) { c.Path = notExec }, "not executable", nil},
		{"no path", func(c *Config) { c.Path = "" }, "no path", nil},
		{"no kind", func(c *Config) { c.Kind = "" }, "no plugin kind", nil},
		{"kind not in set", func(c *Config) { c.Kind = sdk.KindIPAM }, "ipam: kind missing from the plugin set", nil},
		{"no socket dir", func(c *Config) { c.SocketDir = "" }, "no socket directory", nil},
		{"socket dir too long", func(c *Config) { c.SocketDir = "/" + strings.Repeat("d", 100) }, "too long for unix sockets", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.change(&cfg)
			_, err := New[scheduler.Scheduler](cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("New(%s) = %v, want errors.Is %v", tt.name, err, tt.is)
			}
		})
	}
	if _, err := New[scheduler.Scheduler](good()); err != nil {
		t.Errorf("New(good config) = %v, want nil", err)
	}
}

// agentEnv makes the test binary an agent (runAgent) for TestAgentDeath;
// agentPluginEnv names the plugin binary it runs.
const (
	agentEnv       = "PLUGINHOST_TEST_AGENT_SOCKETS"
	agentPluginEnv = "PLUGINHOST_TEST_PLUGIN"
)

// runAgent runs a host of the test plugin, prints the plugin's pid, and
// waits to be killed.
func runAgent() {
	h, err := New[scheduler.Scheduler](Config{
		Kind:      sdk.KindScheduler,
		Path:      os.Getenv(agentPluginEnv),
		SocketDir: os.Getenv(agentEnv),
		Plugins:   plugin.PluginSet{sdk.KindScheduler: &scheduler.Plugin{}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		err := h.Run(context.Background())
		fmt.Fprintln(os.Stderr, "Run returned:", err)
		os.Exit(1)
	}()
	if _, err := h.Get(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(h.pid())
	select {}
}

// dead tells whether process pid has exited: it is gone, or a zombie not
// yet reaped by its new parent.
func dead(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	return len(rest) > 1 && rest[1] == 'Z'
}

func TestAgentDeathKillsPlugin(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), agentEnv+"="+t.TempDir())
	agent.Stderr = os.Stderr
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read plugin pid from agent: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		t.Fatalf("agent printed %q, want the plugin's pid", line)
	}
	if dead(pid) {
		t.Fatalf("plugin %d dead before the agent", pid)
	}
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	agent.Wait()
	// Nothing signals the death of a process that is not our child: poll.
	for deadline := time.Now().Add(waitLimit); !dead(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin %d outlived its killed agent", pid)
		}
	}
}
