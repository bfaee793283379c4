package containerd

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/shoalhq/shoal/internal/ps"
)

func TestSocketPath(t *testing.T) {
	short := SocketPath("/var/lib/shoal/containerd")
	if want := "/var/lib/shoal/containerd/containerd.sock"; short != want {
		t.Errorf("SocketPath(short) = %q, want %q", short, want)
	}
	deep := "/" + strings.Repeat("very-long-directory-name/", 6) + "containerd"
	got := SocketPath(deep)
	if !strings.HasPrefix(got, shortSocketRoot+"/") || len(got) > maxSocketPath {
		t.Errorf("SocketPath(deep) = %q (%d bytes), want under %s and at most %d bytes", got, len(got), shortSocketRoot, maxSocketPath)
	}
	if again := SocketPath(deep + "/"); again != got {
		t.Errorf("SocketPath(deep/) = %q, want %q (stable for the same directory)", again, got)
	}
	if other := SocketPath(deep + "2"); other == got {
		t.Errorf("SocketPath of two directories = %q both", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative dir", Config{Dir: "var/lib"}, "dir: must be an absolute path"},
		{"long address", Config{Dir: t.TempDir(), Address: "/" + strings.Repeat("x", 120)}, "address:"},
		{"log level", Config{Dir: t.TempDir(), LogLevel: "loud"}, "log_level:"},
		{"missing binary", Config{Dir: t.TempDir(), Binary: "/nonexistent/containerd"}, "binary:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// requireContainerd skips when containerd is not installed or we are not
// root; scripts/deps.sh installs it, so `make test` runs these.
func requireContainerd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultBinary); err != nil {
		t.Skipf("containerd is not installed (%v): run scripts/deps.sh", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
}

func TestSupervisorRestartsAndStops(t *testing.T) {
	requireContainerd(t)
	dir := t.TempDir()
	s, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()

	version := func() string {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		if err := s.Ready(rctx); err != nil {
			t.Fatalf("Ready = %v", err)
		}
		c, err := client.New(s.Address())
		if err != nil {
			t.Fatalf("client.New(%s) = %v", s.Address(), err)
		}
		defer c.Close()
		v, err := c.Version(rctx)
		if err != nil {
			t.Fatalf("Version = %v", err)
		}
		return v.Version
	}
	if v := version(); v == "" {
		t.Fatal("Version is empty")
	}
	first := pidOf(t, s.config)
	if first == 0 {
		t.Fatal("no containerd process runs with our config")
	}

	// A second supervisor of the same socket refuses to start.
	other, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run = %v, want ErrAlreadyRunning", err)
	}

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var second int
	for second == 0 || second == first {
		if time.Now().After(deadline) {
			t.Fatal("containerd was not restarted within 30s")
		}
		time.Sleep(50 * time.Millisecond)
		second = pidOf(t, s.config)
	}
	version()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after ctx ends", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s of ctx ending")
	}
	done <- nil // Run has returned; for the deferred receive
	if pid := pidOf(t, s.config); pid != 0 {
		t.Errorf("containerd %d still runs after Run returned", pid)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "config.toml")); !bytes.Contains(b, []byte(`disabled_plugins = ["io.containerd.grpc.v1.cri"]`)) {
		t.Errorf("config.toml does not disable CRI:\n%s", b)
	}
}

// pidOf returns the pid of the containerd started with config, or 0.
func pidOf(t *testing.T, config string) int {
	t.Helper()
	for _, p := range ps.List() {
		// A zombie is one not yet reaped.
		if bytes.Contains(p.Cmdline, []byte("--config\x00"+config+"\x00")) && !p.Zombie() {
			return p.PID
		}
	}
	return 0
}
