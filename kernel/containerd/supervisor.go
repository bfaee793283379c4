// Package containerd runs the node's own containerd: the embedded default
// when the node's config names no containerd socket, like single-binary
// distributions do.
//
// A Supervisor writes containerd's config (root, state, sockets and plugin
// directories all under one directory, the CRI plugin disabled), starts
// /usr/bin/containerd, restarts it with backoff when it dies, and stops it
// (SIGTERM, then SIGKILL) when its context ends. containerd dies with the
// process that supervises it (Pdeathsig), but the containers do not: their
// shims outlive containerd, and a restarted containerd finds them again.
package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
)

// DefaultBinary is the containerd Debian installs.
const DefaultBinary = "/usr/bin/containerd"

// maxSocketPath is the longest gRPC socket path we use. The kernel limits a
// unix socket path to 107 bytes (108 with its NUL), and containerd adds
// ".ttrpc" (6 bytes) for its second socket.
const maxSocketPath = 100

// shortSocketRoot holds the sockets of supervisors whose directory is too
// deep for a socket path; each gets a subdirectory named by the hash of its
// directory, so the path is stable across restarts and distinct per node.
const shortSocketRoot = "/run/shoal/containerd"

// Timing of restarts and stops.
const (
	// firstBackoff is the wait before the first restart of a containerd
	// that died; each further death in a row doubles it up to maxBackoff.
	firstBackoff = 200 * time.Millisecond
	maxBackoff   = 10 * time.Second
	// stableRun is how long containerd must have run for its next death to
	// count as a new series (the backoff starts over).
	stableRun = 30 * time.Second
	// stopGrace is how long containerd has to exit after SIGTERM before
	// SIGKILL; it flushes its metadata database on the way out.
	stopGrace = 10 * time.Second
	// readyPoll is how often the socket is tried while containerd starts.
	readyPoll = 50 * time.Millisecond
	// startTimeout bounds the wait for a started containerd to answer;
	// past it, the process is killed and counts as a death.
	startTimeout = 60 * time.Second
)

// Config says where the supervised containerd keeps everything.
type Config struct {
	// Dir holds containerd's config file, its root (images, snapshots,
	// metadata), its state and its log. Required; an absolute path.
	Dir string
	// Binary is the containerd executable. Default: DefaultBinary.
	Binary string
	// Address is the gRPC socket containerd listens on. Default:
	// SocketPath(Dir).
	Address string
	// LogLevel is containerd's log level ("debug", "info", "warn",
	// "error"); its log goes to Dir/containerd.log. Default: "warn".
	LogLevel string
	// Logger receives the supervisor's transitions (start, death,
	// restart). Default: discard.
	Logger *slog.Logger
}

// SocketPath is the gRPC socket of a supervisor whose Config.Dir is dir:
// dir/containerd.sock when that is short enough for a unix socket, else a
// path under /run/shoal/containerd named by the hash of dir. The CLI uses it
// to find the node's containerd from the node's config.
func SocketPath(dir string) string {
	p := filepath.Join(dir, "containerd.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	return filepath.Join(shortSocketRoot, hex.EncodeToString(sum[:8]), "containerd.sock")
}

// Supervisor runs one containerd. Create it with New, run it with Run.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	config string // path of the config file

	// mu guards ready: closed while containerd answers on its socket,
	// replaced by an open channel while it (re)starts.
	mu    sync.Mutex
	ready chan struct{}
}

// New checks cfg and writes containerd's config file; Run starts it.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("containerd: dir: must be an absolute path, got %q", cfg.Dir)
	}
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.Address == "" {
		cfg.Address = SocketPath(cfg.Dir)
	}
	if len(cfg.Address) > maxSocketPath {
		return nil, fmt.Errorf("containerd: address: %q is %d bytes, at most %d fit a unix socket", cfg.Address, len(cfg.Address), maxSocketPath)
	}
	switch cfg.LogLevel {
	case "":
		cfg.LogLevel = "warn"
	case "trace", "debug", "info", "warn", "error", "fatal", "panic":
	default:
		return nil, fmt.Errorf("containerd: log_level: must be debug, info, warn or error, got %q", cfg.LogLevel)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("containerd: binary: %w", err)
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, config: filepath.Join(cfg.Dir, "config.toml"), ready: make(chan struct{})}
	for _, d := range []string{cfg.Dir, s.root(), s.state(), filepath.Dir(cfg.Address)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("containerd: %w", err)
		}
	}
	if err := os.WriteFile(s.config, []byte(s.configText()), 0o600); err != nil {
		return nil, fmt.Errorf("containerd: write config: %w", err)
	}
	return s, nil
}

// Address is containerd's gRPC socket.
func (s *Supervisor) Address() string { return s.cfg.Address }

func (s *Supervisor) root() string  { return filepath.Join(s.cfg.Dir, "root") }
func (s *Supervisor) state() string { return filepath.Join(s.cfg.Dir, "state") }

// configText is containerd 1.6's config (version 2 of its format). Every
// path containerd would otherwise put under /var/lib/containerd,
// /run/containerd or /opt/containerd is under Dir, so it shares nothing with
// a system containerd but the shim socket directory, whose names are hashes
// of our state path.
func (s *Supervisor) configText() string {
	q := strconv.Quote
	return strings.Join([]string{
		"# Written by shoal at every start; edits are lost.",
		"version = 2",
		"root = " + q(s.root()),
		"state = " + q(s.state()),
		"plugin_dir = " + q(filepath.Join(s.cfg.Dir, "plugins")),
		"# shoal needs no Kubernetes CRI.",
		`disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
		"[grpc]",
		"  address = " + q(s.cfg.Address),
		"[ttrpc]",
		"  address = " + q(s.cfg.Address+".ttrpc"),
		"[debug]",
		`  address = ""`,
		"  level = " + q(s.cfg.LogLevel),
		"[metrics]",
		`  address = ""`,
		"[plugins]",
		`  [plugins."io.containerd.internal.v1.opt"]`,
		"    path = " + q(filepath.Join(s.cfg.Dir, "opt")),
		"",
	}, "\n")
}

// Ready blocks until containerd answers on its socket, or ctx ends.
func (s *Supervisor) Ready(ctx context.Context) error {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Supervisor) setReady(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ready:
		if !up {
			s.ready = make(chan struct{})
		}
	default:
		if up {
			close(s.ready)
		}
	}
}

// ErrAlreadyRunning is returned by Run when something already answers on
// the socket: another containerd owns the directory.
var ErrAlreadyRunning = errors.New("containerd already answers on the socket")

// Run starts containerd and keeps it running until ctx ends, then stops it
// and returns nil. It returns an error only when containerd cannot be
// started at all (the socket is taken, the binary will not run).
func (s *Supervisor) Run(ctx context.Context) error {
	if serving(ctx, s.cfg.Address) {
		return fmt.Errorf("containerd: %s: %w", s.cfg.Address, ErrAlreadyRunning)
	}
	backoff := firstBackoff
	for {
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var startErr *startError
		if errors.As(err, &startErr) {
			return err
		}
		if time.Since(started) >= stableRun {
			backoff = firstBackoff
		}
		s.log.Warn("containerd died, restarting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// startError is a failure to start the process at all; Run gives up.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// runOnce runs one containerd process until it exits or ctx ends (then it
// stops it). Its goroutine is locked to its OS thread for the life of the
// process: Pdeathsig fires when the starting thread ends, and this keeps
// that thread alive exactly as long as the process is supervised.
func (s *Supervisor) runOnce(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	logFile, err := os.OpenFile(filepath.Join(s.cfg.Dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return &startError{fmt.Errorf("containerd: log: %w", err)}
	}
	defer logFile.Close()
	cmd := exec.Command(s.cfg.Binary, "--config", s.config)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = s.cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return &startError{fmt.Errorf("containerd: start %s: %w", s.cfg.Binary, err)}
	}
	s.log.Info("containerd started", "pid", cmd.Process.Pid, "address", s.cfg.Address)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait for the socket to answer.
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for up := false; !up; {
		select {
		case err := <-exited:
			return fmt.Errorf("containerd exited while starting (see %s): %v", logFile.Name(), err)
		case <-startCtx.Done():
			if ctx.Err() != nil {
				return s.stop(cmd, exited)
			}
			s.stop(cmd, exited)
			return fmt.Errorf("containerd did not answer on %s within %v", s.cfg.Address, startTimeout)
		case <-tick.C:
			up = serving(startCtx, s.cfg.Address)
		}
	}
	s.setReady(true)
	defer s.setReady(false)
	s.log.Info("containerd ready", "pid", cmd.Process.Pid)

	select {
	case err := <-exited:
		return fmt.Errorf("containerd exited: %v", err)
	case <-ctx.Done():
		return s.stop(cmd, exited)
	}
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits for the exit.
func (s *Supervisor) stop(cmd *exec.Cmd, exited <-chan error) error {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		s.log.Info("containerd stopped", "pid", cmd.Process.Pid)
		return err
	case <-time.After(stopGrace):
	}
	_ = cmd.Process.Kill()
	err := <-exited
	s.log.Warn("containerd killed after the stop grace period", "pid", cmd.Process.Pid, "grace", stopGrace)
	return err
}

// serving reports whether a containerd answers on address.
func serving(ctx context.Context, address string) bool {
	if _, err := os.Stat(address); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := client.New(address, client.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	return err == nil && ok
}

// NodeDir is the directory of the containerd a node embeds, under the
// node's data directory: the agent supervises it there, and the CLI finds
// its socket (SocketPath(NodeDir(data_dir))) from the node's config.
func NodeDir(dataDir string) string { return filepath.Join(dataDir, "containerd") }
