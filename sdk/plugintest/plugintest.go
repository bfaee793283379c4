// Package plugintest starts plugin binaries for the conformance kits
// (schedulertest.RunBinary and its kin), the way the kernel starts them: the
// handshake of sdk.Handshake, gRPC only, mutual TLS set up per start
// (go-plugin's AutoMTLS), a unix socket in a private directory, and the
// plugin killed with the test process (Linux's parent-death signal).
//
// A plugin in any language that passes a kit started this way speaks what
// the kernel speaks. Plugin authors call the kits, not this package.
package plugintest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/shoalhq/shoal/sdk"
)

// startTimeout bounds a plugin's start, to its handshake line. An
// interpreted plugin loads its gRPC library first; on a loaded CI machine
// that takes seconds, not minutes.
const startTimeout = 30 * time.Second

// Start runs the plugin binary at path and returns the client of kind
// dispensed from it (for sdk.KindScheduler with p a &scheduler.Plugin{}, a
// *scheduler.Client), not configured. The process is stopped when the test
// ends. What the plugin writes to stderr goes to the test's log.
func Start(t testing.TB, path, kind string, p plugin.Plugin) any {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("plugin binary %s: %v", path, err)
	}
	if fi, err := os.Stat(abs); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("plugin binary %s: not an executable file (%v)", path, err)
	}
	// The kernel's socket directory is the node's; here a short private
	// one, since t.TempDir's names can pass the 107 bytes of a socket path.
	dir, err := os.MkdirTemp("", "shoal-plugintest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	cmd := exec.Command(abs)
	cmd.Env = append(os.Environ(), plugin.EnvUnixSocketDir+"="+dir)
	cmd.SysProcAttr = sysProcAttr()
	out := &testWriter{t: t}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {kind: p}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: filepath.Base(path),
			// go-plugin logs a plugin's stderr lines that are not JSON
			// (a Python traceback) at Debug.
			Level:  hclog.Debug,
			Output: out,
		}),
		SyncStdout: out,
		SyncStderr: out,
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes), grpc.MaxCallSendMsgSize(sdk.MaxMessageBytes)),
		},
	})
	// Cleanups run last first: the process is gone before the log closes.
	t.Cleanup(out.close)
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start %s plugin %s: %v", kind, path, err)
	}
	if err := rpc.Ping(); err != nil {
		t.Fatalf("%s plugin %s: health check (grpc.health.v1, service %q): %v", kind, path, plugin.GRPCServiceName, err)
	}
	raw, err := rpc.Dispense(kind)
	if err != nil {
		t.Fatalf("dispense %s plugin %s: %v", kind, path, err)
	}
	return raw
}

// Build compiles the Go main package pkg (an import path, or a directory
// such as ".") into a directory of the test and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "plugin")
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// testWriter writes a plugin's output to the test log, line by line, until
// the test ends; go-plugin's goroutines may still write after.
type testWriter struct {
	t testing.TB

	// mu guards the fields below.
	mu     sync.Mutex
	buf    []byte
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.t.Log(fmt.Sprintf("plugin: %s", w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.t.Log(fmt.Sprintf("plugin: %s", w.buf))
	}
	w.closed = true
}

// BothWays runs run twice, as the kits' Run checks an implementation: in a
// subtest "InProcess" with overGRPC false, where the checks call the
// implementation directly, and in a subtest "GRPC" with overGRPC true, where
// they call it through OverGRPC.
func BothWays(t *testing.T, run func(t *testing.T, overGRPC bool)) {
	t.Helper()
	for _, overGRPC := range []bool{false, true} {
		name := "InProcess"
		if overGRPC {
			name = "GRPC"
		}
		t.Run(name, func(t *testing.T) { run(t, overGRPC) })
	}
}

// OverGRPC serves p (for sdk.KindScheduler a &scheduler.Plugin{Impl: impl})
// on an in-memory gRPC connection, with go-plugin's own glue on both ends,
// and returns the client of kind dispensed from it (a *scheduler.Client):
// what a kit's checks call to learn what survives the wire, without a
// process. The connection closes when the test ends.
func OverGRPC[C any](t testing.TB, kind string, p plugin.Plugin) C {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{kind: p})
	// Close asks the server to stop through go-plugin's controller; calling
	// the server's Stop as well would race with that.
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(kind)
	if err != nil {
		t.Fatalf("Dispense(%q) = %v, want a %s client", kind, err, kind)
	}
	c, ok := raw.(C)
	if !ok {
		t.Fatalf("Dispense(%q) = %T, want %T", kind, raw, c)
	}
	return c
}

// Check is one part of a kit's contract: a subtest named Name that runs
// against the kit's harness H (what opens plugin instances for it).
type Check[H any] struct {
	Name string
	Run  func(t *testing.T, h H)
}

// RunChecks runs each check as a subtest, against h.
func RunChecks[H any](t *testing.T, checks []Check[H], h H) {
	t.Helper()
	for _, c := range checks {
		t.Run(c.Name, func(t *testing.T) { c.Run(t, h) })
	}
}

// Source is where a kit's checks get plugin instances of interface I (a
// scheduler.Scheduler) from: the plugin binary at Binary, started afresh
// for each (RunBinary); else Factory, whose instances the checks call
// directly or, with OverGRPC, through the gRPC glue.
type Source[I any] struct {
	Factory  func() I
	OverGRPC bool
	Binary   string
}

// Instance is one new plugin instance as a kit's check sees it; C is the
// kind's Configurer interface.
type Instance[I, C any] struct {
	// Plugin is the implementation itself, or the gRPC client that calls it.
	Plugin I
	// Configurer is how to configure it: the implementation, or the gRPC
	// client (which always is one); nil when neither.
	Configurer C
	// ImplConfigurable is whether the implementation is a Configurer. It is
	// false for a binary: whether it takes settings is not known from
	// outside.
	ImplConfigurable bool
}

// Fresh returns a new, unconfigured instance of the plugin of kind from s.
// wrap makes the go-plugin plugin of an implementation (for
// sdk.KindScheduler, &scheduler.Plugin{Impl: impl}); for a binary it is
// called with the zero I, for the client side.
func Fresh[I, C any](t *testing.T, s Source[I], kind string, wrap func(impl I) plugin.Plugin) Instance[I, C] {
	t.Helper()
	var raw any
	var implConfigurable bool
	if s.Binary != "" {
		var none I
		raw = Start(t, s.Binary, kind, wrap(none))
	} else {
		impl := s.Factory()
		if any(impl) == nil {
			t.Fatalf("factory returned a nil %s plugin", kind)
		}
		c, ok := any(impl).(C)
		if !s.OverGRPC {
			return Instance[I, C]{Plugin: impl, Configurer: c, ImplConfigurable: ok}
		}
		implConfigurable = ok
		raw = OverGRPC[any](t, kind, wrap(impl))
	}
	p, ok := raw.(I)
	c, okC := raw.(C)
	if !ok || !okC {
		t.Fatalf("%s client %T is not the plugin's interface and its Configurer", kind, raw)
	}
	return Instance[I, C]{Plugin: p, Configurer: c, ImplConfigurable: implConfigurable}
}
