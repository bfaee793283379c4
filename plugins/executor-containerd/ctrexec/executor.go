// Package ctrexec runs a node's tasks as containers through containerd: the
// implementation of sdk/executor.Executor behind the executor-containerd
// plugin.
//
// The containerd namespace (Config.Namespace) is the executor's whole
// state: one container per task, named by the task's ID and labelled with
// it, its service, its stop settings and, once its process exited, how it
// ended (see exit.go: the exited process's containerd task is then deleted,
// which ends its shim and its log streams). Nothing else is kept in memory
// that a restarted plugin would miss, so a new Executor finds running
// containers again and Wait, Stop and Logs work on them as before.
//
// Output goes through a logging binary that the containerd shim starts
// beside each task (containerd's "binary://" stdio):
// executor-containerd-logdriver installed beside the plugin (or the
// plugin's own executable), run as `log-driver DIR max-size BYTES
// max-files N` (package logdriver). It is a child of the shim, not of the
// plugin, so a task's logs keep flowing into its files while the plugin is
// down. Each stream has its own files of time-stamped lines under the
// executor's state directory, rotated by size (log_max_size,
// log_max_files).
//
// Networking: a task without networks shares the node's network namespace
// (like `docker run --network host`), which keeps a one-node cluster simple
// and its published ports trivially reachable. A task with networks gets
// its own network namespace from the Network given to the executor
// (package sdk/netattach in the plugin's main), and its own resolv.conf
// (the node's DNS server at its first network's gateway), hosts and
// hostname, rendered with sdk/netfiles and kept in the executor's state
// directory until Remove (taskfiles.go).
//
// A task's secrets and configs are on a tmpfs of its own, mounted at
// Prepare and unmounted by Remove, and bind-mounted read-only into its
// container: their data never reaches the node's disk (secrets.go).
package ctrexec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netfiles"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Labels on every container of a task.
const (
	labelTaskID      = "io.shoal.task.id"
	labelServiceID   = "io.shoal.service.id"
	labelServiceName = "io.shoal.service.name"
	labelSlot        = "io.shoal.task.slot"
	labelStopSignal  = "io.shoal.stop.signal"
	labelNetns       = "io.shoal.netns"
)

// LogDriverName is the file name of the dedicated log driver command
// (cmd/executor-containerd-logdriver), looked for beside the plugin's
// executable.
const LogDriverName = "executor-containerd-logdriver"

// defaultLogDriver is LogDriverName beside this process's executable if it
// is an executable file there, else the executable itself. The dedicated
// binary starts several times cheaper, once per container; a missing one
// (a plugin copied alone) costs speed, not function.
func defaultLogDriver() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return logDriverBeside(exe), nil
}

// logDriverBeside is LogDriverName in exe's directory if it is an
// executable file, else exe.
func logDriverBeside(exe string) string {
	sibling := filepath.Join(filepath.Dir(exe), LogDriverName)
	if st, err := os.Stat(sibling); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
		return sibling
	}
	return exe
}

// Network gives tasks with networks their network namespace. Both methods
// are idempotent; Detach of a task that has none returns nil.
type Network interface {
	Attach(ctx context.Context, taskID string, nets []*objectv1.NetworkAttachment, ports []*objectv1.PortConfig) (netnsPath string, err error)
	Detach(ctx context.Context, taskID string) error
}

// Options are what the plugin's main gives an Executor besides its config.
type Options struct {
	// LogDriver is the executable the shim runs as each task's logging
	// binary with the arguments of logdriver.Args ("log-driver DIR" and
	// the rotation limits).
	// Default: LogDriverName beside this process's executable when it is
	// there, else this process's executable (whose main must then hand
	// logdriver.IsDriver invocations to logdriver.Main).
	LogDriver string
	// NewNetwork makes the Network once the executor knows its state
	// directory. Nil: tasks with networks are refused.
	NewNetwork func(stateDir string) (Network, error)
	// Logger receives the executor's transitions. Default: discard.
	Logger *slog.Logger
	// ResolvConf is the host's resolver configuration, read at each
	// Prepare of a task with networks, whose resolv.conf copies its
	// search domains and options. Default: /etc/resolv.conf. (Tasks
	// without networks get the host's /etc/resolv.conf itself.)
	ResolvConf string
}

// Executor runs tasks as containerd containers. Create it with New; it
// does nothing until Configure connects it to containerd.
type Executor struct {
	opts       Options
	log        *slog.Logger
	imageLocks keyedLock // per image reference, while it is pulled
	finalizing keyedLock // per task, while its exit is recorded
	health     probers   // per running task with a health check (health.go)
	// volumeMu is held shared by a Prepare from making its volumes to
	// creating its container, and exclusively by RemoveVolume
	// (volumes_list.go).
	volumeMu sync.RWMutex

	// mu guards the fields below, set once by Configure.
	mu       sync.RWMutex
	cfg      Config
	client   *client.Client
	net      Network
	netErr   error // why net is nil
	logDir   string
	filesDir string // the task files of tasks with networks (taskfiles.go)
	// refsDir holds each task's tmpfs of secrets and configs (secrets.go).
	refsDir string
	// volumesDir holds the node's named volumes, each in NAME/_data:
	// made on a task's first use, kept across tasks (no Remove deletes
	// one).
	volumesDir string
	nodeID     string
	driver     string // the log driver's executable
	pullTime   time.Duration
	hosts      registryHosts
}

var (
	_ executor.Executor   = (*Executor)(nil)
	_ executor.Configurer = (*Executor)(nil)
)

// New returns an Executor to be configured.
func New(opts Options) *Executor {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = netfiles.DefaultResolvConf
	}
	return &Executor{opts: opts, log: opts.Logger}
}

// Configure decodes [plugins.executor.config], checks it, and connects to
// containerd. Calling it again replaces the connection.
func (e *Executor) Configure(ctx context.Context, node executor.NodeInfo, config []byte) error {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("plugin config: %w", err)
	}
	address := cfg.ContainerdAddress
	if address == "" {
		address = node.ContainerdAddress
	}
	var fe sdk.FieldErrors
	if address == "" {
		fe.Add("config.containerd_address", "the node runs no containerd: set containerd_address")
	}
	if node.StateDir == "" || !filepath.IsAbs(node.StateDir) {
		fe.Add("node.state_dir", "must be an absolute path, got %q", node.StateDir)
	}
	if err := fe.Err(); err != nil {
		return err
	}
	driver := e.opts.LogDriver
	if driver == "" {
		var err error
		if driver, err = defaultLogDriver(); err != nil {
			return fmt.Errorf("log driver: %w", err)
		}
	}
	logDir := filepath.Join(node.StateDir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	// A node that cannot give tasks networks (CNI plugins missing) still
	// runs the tasks that need none; the others fail with the reason.
	var network Network
	netErr := errors.New("this executor has no task networking")
	if e.opts.NewNetwork != nil {
		n, err := e.opts.NewNetwork(filepath.Join(node.StateDir, "net"))
		if err != nil {
			netErr = fmt.Errorf("task networking is unavailable: %w", err)
			e.log.Warn("tasks with networks will fail", "err", err)
		} else {
			network = n
		}
	}
	c, err := client.New(address, client.WithDefaultNamespace(cfg.Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("containerd at %s: %w: %w", address, err, sdk.ErrUnavailable)
	}
	if ok, err := c.IsServing(ctx); err != nil || !ok {
		c.Close()
		return fmt.Errorf("containerd at %s does not answer: %v: %w", address, err, sdk.ErrUnavailable)
	}
	if err := checkSnapshotter(ctx, c, cfg.Snapshotter); err != nil {
		c.Close()
		return err
	}
	pullTime, _ := parseDuration(cfg.PullTimeout)

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client != nil {
		e.client.Close()
	}
	e.cfg, e.client, e.net, e.netErr, e.logDir, e.driver, e.pullTime = cfg, c, network, netErr, logDir, driver, pullTime
	e.filesDir = filepath.Join(node.StateDir, "tasks")
	e.refsDir = filepath.Join(node.StateDir, "secrets")
	e.volumesDir = filepath.Join(node.StateDir, "volumes")
	e.nodeID = node.NodeID
	e.hosts = newRegistryHosts(cfg.InsecureRegistries)
	e.log.Info("executor configured", "containerd", address, "namespace", cfg.Namespace, "snapshotter", cfg.Snapshotter, "log_driver", driver)
	if l, ok := network.(attachedLister); ok {
		// Configure runs before any other call, so no Prepare is between
		// its Attach and its container here.
		sweepAttachments(ctx, c, l, network, e.log)
	}
	sweepTaskFiles(ctx, c, e.filesDir, e.log)
	sweepRefFiles(ctx, c, e.refsDir, e.log)
	return nil
}

// attachedLister is implemented by a Network that can list the tasks it
// holds attachments for (netattach.Manager does).
type attachedLister interface {
	Attached() ([]string, error)
}

// sweepAttachments detaches the networks of tasks whose container is gone:
// what a Remove interrupted between deleting the container and detaching
// leaves behind, and that no one would otherwise ask to remove again.
func sweepAttachments(ctx context.Context, c *client.Client, l attachedLister, network Network, log *slog.Logger) {
	ids, err := l.Attached()
	if err != nil {
		log.Warn("listing task network attachments", "err", err)
		return
	}
	for _, id := range ids {
		if _, err := c.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
			continue // it exists (or containerd could not say): keep it
		}
		if err := network.Detach(ctx, id); err != nil {
			log.Warn("detaching the networks of a removed task", "task_id", id, "err", err)
			continue
		}
		log.Info("detached the networks of a task whose container is gone", "task_id", id)
	}
}

// Close closes the connection to containerd; tasks keep running.
func (e *Executor) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client == nil {
		return nil
	}
	err := e.client.Close()
	e.client = nil
	return err
}

// conn returns the client and a ctx in the executor's namespace.
func (e *Executor) conn(ctx context.Context) (context.Context, *client.Client, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.client == nil {
		return nil, nil, fmt.Errorf("executor not configured: %w", sdk.ErrFailedPrecondition)
	}
	return namespaces.WithNamespace(ctx, e.cfg.Namespace), e.client, nil
}

// load returns the task's container, or an error of kind sdk.ErrNotFound.
func (e *Executor) load(ctx context.Context, c *client.Client, taskID string) (client.Container, error) {
	if err := checkTaskID(taskID); err != nil {
		return nil, err
	}
	ctr, err := c.LoadContainer(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", taskID, kind(err))
	}
	return ctr, nil
}

// kind maps containerd's error classes to the sdk's.
func kind(err error) error {
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", err, sdk.ErrNotFound)
	case errdefs.IsAlreadyExists(err):
		return fmt.Errorf("%w: %w", err, sdk.ErrAlreadyExists)
	case errdefs.IsInvalidArgument(err):
		return fmt.Errorf("%w: %w", err, sdk.ErrInvalidArgument)
	case errdefs.IsFailedPrecondition(err):
		return fmt.Errorf("%w: %w", err, sdk.ErrFailedPrecondition)
	case errdefs.IsUnavailable(err):
		return fmt.Errorf("%w: %w", err, sdk.ErrUnavailable)
	}
	return err
}

// taskLogDir is where the task's log files are. Callers hold e.mu.
func (e *Executor) taskLogDir(taskID string) string { return filepath.Join(e.logDir, taskID) }

// taskFilesDir is where the resolv.conf, hosts and hostname of a task with
// networks are (taskfiles.go). Callers hold e.mu.
func (e *Executor) taskFilesDir(taskID string) string { return filepath.Join(e.filesDir, taskID) }

// taskRefsDir is where the tmpfs of the task's secrets and configs is
// mounted (secrets.go). Callers hold e.mu.
func (e *Executor) taskRefsDir(taskID string) string { return filepath.Join(e.refsDir, taskID) }

// errdefsFromGRPC turns an error of a raw containerd service call into
// containerd's error classes.
func errdefsFromGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToNative(err)
}

// ctxFirst replaces *err with ctx's error when ctx ended: a call cut short
// by its caller's deadline reports that, not how the cut showed up in the
// containerd call it interrupted.
func ctxFirst(ctx context.Context, err *error) {
	if *err == nil {
		return
	}
	if cerr := ctxErr(ctx); cerr != nil && !errors.Is(*err, cerr) {
		*err = fmt.Errorf("%v: %w", *err, cerr)
	}
}

// ctxErr is ctx.Err(), or DeadlineExceeded once ctx's deadline has passed
// even if its timer has not fired yet: the deadline travels with a call to
// containerd and its shim, which may give up a moment before ctx does.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// checkSnapshotter fails when containerd does not have the snapshotter, or
// could not start it (overlayfs on a filesystem without overlay support):
// better a clear error at configuration than one per task.
func checkSnapshotter(ctx context.Context, c *client.Client, name string) error {
	resp, err := c.IntrospectionService().Plugins(ctx, "type==io.containerd.snapshotter.v1,id=="+name)
	if err != nil {
		return fmt.Errorf("containerd plugins: %w", kind(err))
	}
	if len(resp.GetPlugins()) == 0 {
		return sdk.FieldErrors{{Field: "config.snapshotter", Message: fmt.Sprintf("containerd has no snapshotter %q", name)}}
	}
	if ie := resp.GetPlugins()[0].GetInitErr(); ie != nil {
		return sdk.FieldErrors{{Field: "config.snapshotter", Message: fmt.Sprintf("containerd cannot use %q on this host (%s): choose another, such as \"native\"", name, ie.GetMessage())}}
	}
	return nil
}
