package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/pluginhost"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// bundledExecutor is the executor plugin that ships with shoal, found next
// to the shoal binary when [plugins.executor] names no path.
const bundledExecutor = "executor-containerd"

// errNoBundledExecutor says that [plugins.executor] names no path and the
// bundled executor is not installed.
var errNoBundledExecutor = errors.New("no executor")

// nodeExecutor is the executor a node's agent runs its tasks on, as the
// node's config asks for it.
type nodeExecutor struct {
	executor.Executor
	// name goes in the node's description (`shoal node ls`): "simulated",
	// or the plugin binary's name.
	name string
	// host runs the plugin; nil for the simulated executor.
	host *pluginhost.Host[executor.Executor]
}

// newExecutor makes the executor [plugins.executor] names: the simulated
// one for path = "simulated", else the plugin at path, or the bundled
// plugin when path is empty. node is what the plugin is told about its
// node; its StateDir is set here.
func newExecutor(cfg config.Config, node executor.NodeInfo, logger *slog.Logger) (*nodeExecutor, error) {
	pc := cfg.Plugins[sdk.KindExecutor]
	if pc.Path == config.SimulatedExecutor {
		return &nodeExecutor{Executor: simexec.New(simexec.Config{}), name: config.SimulatedExecutor}, nil
	}
	path, err := pluginhost.Resolve(sdk.KindExecutor, pc.Path, bundledExecutor)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", errNoBundledExecutor, err)
	}
	if err != nil {
		return nil, err
	}
	node.StateDir = cfg.PluginDir(sdk.KindExecutor)
	h, err := pluginhost.New[executor.Executor](pluginhost.Config{
		Kind:      sdk.KindExecutor,
		Path:      path,
		Config:    pc.Config,
		SocketDir: filepath.Join(cfg.Node.DataDir, "plugins"),
		Plugins:   plugin.PluginSet{sdk.KindExecutor: &executor.Plugin{}},
		Logger:    logger.With("part", "pluginhost"),
		Node:      node,
	})
	if err != nil {
		return nil, err
	}
	return &nodeExecutor{Executor: hosted{h}, name: filepath.Base(path), host: h}, nil
}

// hosted is an Executor that calls the plugin process its host runs now:
// each call gets the current client, so a call after a plugin restart
// reaches the new process, and a call while the plugin is down waits for it
// within its ctx (an error of kind sdk.ErrUnavailable when ctx ends first,
// which the agent retries). The tasks live in the executor's own state
// (containerd), not in the plugin process: a restart loses none.
type hosted struct {
	h *pluginhost.Host[executor.Executor]
}

var _ executor.Executor = hosted{}

func (x hosted) Prepare(ctx context.Context, t *objectv1.Task, files []*objectv1.TaskFile, progress func(string)) error {
	c, err := x.h.Get(ctx)
	if err != nil {
		return err
	}
	return c.Prepare(ctx, t, files, progress)
}

func (x hosted) Start(ctx context.Context, taskID string) error {
	c, err := x.h.Get(ctx)
	if err != nil {
		return err
	}
	return c.Start(ctx, taskID)
}

func (x hosted) Wait(ctx context.Context, taskID string) (executor.ExitStatus, error) {
	c, err := x.h.Get(ctx)
	if err != nil {
		return executor.ExitStatus{}, err
	}
	return c.Wait(ctx, taskID)
}

func (x hosted) Stop(ctx context.Context, taskID, signal string, grace time.Duration) error {
	c, err := x.h.Get(ctx)
	if err != nil {
		return err
	}
	return c.Stop(ctx, taskID, signal, grace)
}

func (x hosted) Remove(ctx context.Context, taskID string) error {
	c, err := x.h.Get(ctx)
	if err != nil {
		return err
	}
	return c.Remove(ctx, taskID)
}

func (x hosted) List(ctx context.Context) ([]executor.TaskInfo, error) {
	c, err := x.h.Get(ctx)
	if err != nil {
		return nil, err
	}
	return c.List(ctx)
}

func (x hosted) Inspect(ctx context.Context, taskID string) (executor.TaskInfo, error) {
	c, err := x.h.Get(ctx)
	if err != nil {
		return executor.TaskInfo{}, err
	}
	return c.Inspect(ctx, taskID)
}

func (x hosted) Logs(ctx context.Context, taskID string, opts executor.LogOptions, emit func(executor.LogEntry) error) error {
	c, err := x.h.Get(ctx)
	if err != nil {
		return err
	}
	return c.Logs(ctx, taskID, opts, emit)
}

func (x hosted) Stats(ctx context.Context, taskID string) (executor.Stats, error) {
	c, err := x.h.Get(ctx)
	if err != nil {
		return executor.Stats{}, err
	}
	return c.Stats(ctx, taskID)
}

func (x hosted) Exec(ctx context.Context, taskID string, spec executor.ExecSpec, stdio executor.ExecIO) (int, error) {
	c, err := x.h.Get(ctx)
	if err != nil {
		return 0, err
	}
	return c.Exec(ctx, taskID, spec, stdio)
}
