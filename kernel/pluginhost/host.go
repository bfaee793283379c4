package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/kernel/hclogslog"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// Config configures a Host.
type Config struct {
	// Kind is the plugin's kind, sdk.KindScheduler, ...: the plugin
	// dispensed from Plugins and the "plugin" attribute of the host's logs.
	Kind string
	// Path is the plugin binary. It must exist and be executable.
	Path string
	// Config is the plugin's [plugins.<kind>.config] table as TOML text,
	// handed to its Configure after each start if the dispensed client has
	// one. Empty when unset.
	Config []byte
	// SocketDir is the node's directory for plugin sockets. The host keeps
	// its plugin's socket in the subdirectory named for Kind, so hosts of
	// different kinds may share SocketDir; it creates it (mode 0700) and
	// removes stale sockets from it before each start.
	SocketDir string
	// Plugins is the client side of the plugin kinds the host can dispense,
	// e.g. {sdk.KindScheduler: &scheduler.Plugin{}}. It must hold Kind.
	Plugins plugin.PluginSet
	// Logger receives the host's logs and the plugin's. Nil discards them.
	Logger *slog.Logger
	// Node is what an executor plugin's Configure is told about its node
	// (executor.Configurer); other kinds ignore it.
	Node executor.NodeInfo
}

// timing holds the supervision intervals; tests shorten them.
type timing struct {
	// A crashed plugin is restarted after minBackoff, doubled per crash up
	// to maxBackoff: a plugin crashing in a loop costs little, and one that
	// was fixed (its binary replaced) is back within maxBackoff.
	minBackoff, maxBackoff time.Duration
	// resetAfter is how long a start must stay up for its crash to count as
	// a new problem, restarted after minBackoff again.
	resetAfter time.Duration
	// exitPoll is how often the host looks whether the process exited: a
	// check under a mutex, cheap enough to notice a crash quickly.
	exitPoll time.Duration
	// pingInterval is how often the plugin is health-checked over gRPC,
	// and pingTimeout how long it has to answer: a wedged plugin is found
	// within their sum.
	pingInterval, pingTimeout time.Duration
	// startTimeout bounds a start, to the plugin's handshake; plugins that
	// connect to something before serving (an executor to containerd)
	// need some of it.
	startTimeout time.Duration
	// configureTimeout bounds Configure. A plugin that does not answer in
	// time is treated as crashed.
	configureTimeout time.Duration
	// killGrace is how long a plugin has to exit when asked, at shutdown,
	// before it is killed.
	killGrace time.Duration
}

var defaultTiming = timing{
	minBackoff:       100 * time.Millisecond,
	maxBackoff:       10 * time.Second,
	resetAfter:       30 * time.Second,
	exitPoll:         250 * time.Millisecond,
	pingInterval:     3 * time.Second,
	pingTimeout:      5 * time.Second,
	startTimeout:     30 * time.Second,
	configureTimeout: 30 * time.Second,
	killGrace:        5 * time.Second,
}

// configurer is the optional capability of a dispensed client to take the
// plugin's settings (scheduler.Configurer and its kin). An executor's
// client takes the node's facts too (executor.Configurer).
type configurer interface {
	Configure(ctx context.Context, config []byte) error
}

// Host runs one plugin process and hands out its client, of type T (for a
// scheduler, scheduler.Scheduler or *scheduler.Client).
type Host[T any] struct {
	cfg       Config
	socketDir string
	env       []string
	log       *slog.Logger
	hclog     hclog.Logger
	timing    timing

	ran atomic.Bool

	// mu guards the fields below. changed is closed, and replaced, on every
	// change of them.
	mu       sync.Mutex
	cur      *instance // the running plugin; nil while it is down
	client   T         // cur's dispensed client
	everUp   bool
	stopped  bool // Run has returned
	restarts int
	changed  chan struct{}
}

// New checks cfg and returns a Host; Run starts the plugin.
func New[T any](cfg Config) (*Host[T], error) {
	if cfg.Kind == "" {
		return nil, errors.New("pluginhost: no plugin kind")
	}
	p, ok := cfg.Plugins[cfg.Kind]
	if !ok {
		return nil, fmt.Errorf("pluginhost: %s: kind missing from the plugin set", cfg.Kind)
	}
	if _, ok := p.(plugin.GRPCPlugin); !ok {
		return nil, fmt.Errorf("pluginhost: %s: %T does not support gRPC", cfg.Kind, p)
	}
	if err := checkBinary(cfg.Path); err != nil {
		return nil, fmt.Errorf("%s plugin binary: %w", cfg.Kind, err)
	}
	if cfg.SocketDir == "" {
		return nil, fmt.Errorf("pluginhost: %s: no socket directory", cfg.Kind)
	}
	socketDir := filepath.Join(cfg.SocketDir, cfg.Kind)
	if err := checkSocketDir(socketDir); err != nil {
		return nil, fmt.Errorf("pluginhost: %s: %w", cfg.Kind, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("plugin", cfg.Kind)
	return &Host[T]{
		cfg:       cfg,
		socketDir: socketDir,
		env:       pluginEnv(socketDir),
		log:       logger,
		hclog:     hclogslog.New(slog.New(goPluginHandler{logger.Handler()}), "plugin"),
		timing:    defaultTiming,
		changed:   make(chan struct{}),
	}, nil
}

// checkBinary tells whether path names an executable file.
func checkBinary(path string) error {
	if path == "" {
		return errors.New("no path")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not executable", path)
	}
	return nil
}

// Run starts the plugin and supervises it until ctx ends, then stops it. It
// returns after the plugin process has exited: nil when ctx ended, or the
// error that restarting cannot fix (see the package documentation). Run may
// be called once.
func (h *Host[T]) Run(ctx context.Context) error {
	if !h.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("pluginhost: %s: Run called twice", h.cfg.Kind)
	}
	defer h.update(func() { h.stopped = true })
	if err := prepareSocketDir(h.socketDir); err != nil {
		return fmt.Errorf("pluginhost: %s: %w", h.cfg.Kind, err)
	}
	backoff := h.timing.minBackoff
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if !retry.Sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, h.timing.maxBackoff)
			h.update(func() { h.restarts++ })
		}
		in, client, err := h.start(ctx)
		if ctx.Err() != nil {
			if in != nil {
				in.shutdown(h.timing.killGrace)
			}
			return nil
		}
		if err != nil {
			var pe *permanentError
			var le *launchError
			switch {
			case errors.As(err, &pe):
				return pe.err
			case attempt == 0 && errors.As(err, &le):
				return le.err
			}
			h.log.Error("plugin start failed", "error", err, "retry_in", backoff)
			continue
		}
		h.log.Info("plugin started", "path", h.cfg.Path, "pid", in.pid, "protocol_version", in.client.NegotiatedVersion())
		startedAt := time.Now()
		h.update(func() { h.cur, h.client, h.everUp = in, client, true })
		reason := h.supervise(ctx, in)
		h.update(func() { h.cur, h.client = nil, *new(T) })
		if reason == nil { // ctx ended
			in.shutdown(h.timing.killGrace)
			h.log.Info("plugin stopped", "pid", in.pid)
			return nil
		}
		in.close()
		if time.Since(startedAt) >= h.timing.resetAfter {
			backoff = h.timing.minBackoff
		}
		h.log.Error("plugin crashed", "pid", in.pid, "error", reason, "restart_in", backoff)
	}
}

// start launches the plugin, dispenses its client and configures it. On
// error, no process is left running.
func (h *Host[T]) start(ctx context.Context) (*instance, T, error) {
	var zero T
	// No plugin of the directory runs: whatever socket is there is stale.
	if err := removeStale(h.socketDir); err != nil {
		return nil, zero, fmt.Errorf("pluginhost: %s: %w", h.cfg.Kind, err)
	}
	in, err := h.launch(ctx)
	if err != nil {
		return nil, zero, err
	}
	raw, err := in.rpc.Dispense(h.cfg.Kind)
	if err != nil {
		in.close()
		return nil, zero, permanent(fmt.Errorf("dispense %s plugin: %w", h.cfg.Kind, err))
	}
	client, ok := raw.(T)
	if !ok {
		in.close()
		return nil, zero, permanent(fmt.Errorf("dispense %s plugin: got %T, not a %v", h.cfg.Kind, raw, reflect.TypeFor[T]()))
	}
	var configure func(context.Context) error
	switch c := raw.(type) {
	case configurer:
		configure = func(ctx context.Context) error { return c.Configure(ctx, h.cfg.Config) }
	case executor.Configurer:
		configure = func(ctx context.Context) error { return c.Configure(ctx, h.cfg.Node, h.cfg.Config) }
	}
	if configure != nil {
		cctx, cancel := context.WithTimeout(ctx, h.timing.configureTimeout)
		err := configure(cctx)
		cancel()
		if err != nil {
			// A plugin that died or hung while configuring, or said that
			// what it needs is not up yet, is retried like a crash; one
			// that answered with another error rejected its config.
			crashed := in.client.Exited() || errors.Is(err, sdk.ErrUnavailable) ||
				errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
			in.close()
			err = fmt.Errorf("configure %s plugin: %w", h.cfg.Kind, qualify(h.cfg.Kind, err))
			if !crashed {
				err = permanent(err)
			}
			return nil, zero, err
		}
	}
	return in, client, nil
}

// supervise watches a running plugin until it crashes, returning why, or
// until ctx ends, returning nil.
func (h *Host[T]) supervise(ctx context.Context, in *instance) error {
	exit := time.NewTicker(h.timing.exitPoll)
	defer exit.Stop()
	ping := time.NewTicker(h.timing.pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-exit.C:
			if in.client.Exited() {
				return errExited
			}
		case <-ping.C:
			if err := in.ping(ctx, h.timing.pingTimeout); err != nil {
				switch {
				case ctx.Err() != nil:
					return nil
				case in.client.Exited():
					return errExited
				}
				return fmt.Errorf("health check: %w", err)
			}
		}
	}
}

// Get returns the running plugin's client. While the plugin is starting or
// restarting, it waits, and returns an error of kind sdk.ErrUnavailable if
// ctx ends first; it returns one at once when Run has returned.
//
// The client stays usable as long as that plugin process runs; after a
// crash its calls fail with sdk.ErrUnavailable, and the next Get returns
// the new process's client. Callers Get the client per unit of work rather
// than keeping it.
func (h *Host[T]) Get(ctx context.Context) (T, error) {
	for {
		h.mu.Lock()
		cur, client, everUp, stopped, changed := h.cur, h.client, h.everUp, h.stopped, h.changed
		h.mu.Unlock()
		switch {
		case cur != nil:
			return client, nil
		case stopped:
			return client, fmt.Errorf("%s plugin stopped: %w", h.cfg.Kind, sdk.ErrUnavailable)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			verb := "starting"
			if everUp {
				verb = "restarting"
			}
			return client, fmt.Errorf("%s plugin %s: %w", h.cfg.Kind, verb, sdk.ErrUnavailable)
		}
	}
}

// Restarts is how many times the plugin was started again after a crash
// (counting starts that failed).
func (h *Host[T]) Restarts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.restarts
}

// update changes the host's state under its lock and wakes the waiters.
func (h *Host[T]) update(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
	close(h.changed)
	h.changed = make(chan struct{})
}

// permanentError marks an error restarting the plugin cannot fix: Run
// returns it.
type permanentError struct{ err error }

func permanent(err error) error         { return &permanentError{err: err} }
func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// launchError marks a plugin that could not be started or connected to.
// On the first start, it is a configuration error (a binary that is not a
// shoal plugin, an incompatible protocol version, a plugin that exits at
// once) and Run returns it; once the plugin ran, it is retried, since the
// binary may be in the middle of an upgrade.
type launchError struct{ err error }

func (e *launchError) Error() string { return e.err.Error() }
func (e *launchError) Unwrap() error { return e.err }

// qualify names the fields of a plugin's config errors by their path in
// the node's config: "config.zone" becomes "plugins.scheduler.config.zone".
func qualify(kind string, err error) error {
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) {
		return err
	}
	out := make(sdk.FieldErrors, len(fe))
	for i, f := range fe {
		if f.Field == "config" || strings.HasPrefix(f.Field, "config.") {
			f.Field = "plugins." + kind + "." + f.Field
		}
		out[i] = f
	}
	return out
}
