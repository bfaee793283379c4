package ctrexec

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Prepare pulls the task's image when the node lacks it, attaches the task
// to its networks, mounts the tmpfs of its secrets and configs, and creates
// its container.
func (e *Executor) Prepare(ctx context.Context, t *objectv1.Task, taskFiles []*objectv1.TaskFile, progress func(string)) error {
	e.mu.RLock()
	nodeID, volumesDir := e.nodeID, e.volumesDir
	e.mu.RUnlock()
	if err := validateTask(t, nodeID); err != nil {
		return err
	}
	refFiles, err := checkRefFiles(t, taskFiles)
	if err != nil {
		return err
	}
	ctx, c, err := e.conn(ctx)
	if err != nil {
		return err
	}
	e.mu.RLock()
	refsDir := e.taskRefsDir(t.GetId())
	e.mu.RUnlock()
	if _, err := c.LoadContainer(ctx, t.GetId()); err == nil {
		return remountRefFiles(t.GetId(), refsDir, refFiles)
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("task %s: %w", t.GetId(), kind(err))
	}
	if progress == nil {
		progress = func(string) {}
	}
	network, files, err := e.networkFor(t)
	if err != nil {
		return err
	}
	img, err := e.ensureImage(ctx, c, t.GetSpec().GetContainer().GetImage(), progress)
	if err != nil {
		return err
	}
	netns, filesDir := "", ""
	// undo removes what Prepare made for the task before its container,
	// when the container is not made.
	undo := func() {
		e.detach(ctx, t.GetId(), netns)
		if filesDir != "" {
			if err := os.RemoveAll(filesDir); err != nil {
				e.log.Warn("remove task files after a failed prepare", "task_id", t.GetId(), "err", err)
			}
		}
		if len(refFiles) > 0 {
			if err := removeRefFiles(refsDir); err != nil {
				e.log.Warn("remove secrets and configs after a failed prepare", "task_id", t.GetId(), "err", err)
			}
		}
	}
	if network != nil {
		e.mu.RLock()
		filesDir = e.taskFilesDir(t.GetId())
		e.mu.RUnlock()
		if err := writeTaskFiles(filesDir, files); err != nil {
			undo()
			return fmt.Errorf("task %s: write resolv.conf, hosts and hostname: %w", t.GetId(), err)
		}
		if netns, err = network.Attach(ctx, t.GetId(), t.GetNetworks(), taskPorts(t)); err != nil {
			undo()
			return fmt.Errorf("task %s: networks: %w", t.GetId(), err)
		}
	}
	e.volumeMu.RLock()
	defer e.volumeMu.RUnlock()
	if err := makeVolumes(volumesDir, t.GetSpec().GetContainer().GetMounts()); err != nil {
		undo()
		return fmt.Errorf("task %s: %w", t.GetId(), err)
	}
	if len(refFiles) > 0 {
		if err := writeRefFiles(refsDir, refFiles); err != nil {
			undo()
			return fmt.Errorf("task %s: secrets and configs: %w", t.GetId(), err)
		}
	}
	specOpts, err := containerSpec(ctx, img, t, netns, filesDir, volumesDir, refsDir, refFiles)
	if err != nil {
		undo()
		return err
	}
	labels := containerLabels(t, netns)
	if err := e.createContainer(ctx, c, t, img, specOpts, labels); err != nil {
		undo()
		return err
	}
	return nil
}

// remountRefFiles mounts the tmpfs of the secrets and configs of a task
// whose container is held already when it is not mounted: it is gone after
// a reboot of the node, while containerd keeps the container.
func remountRefFiles(taskID, refsDir string, refFiles []refFile) error {
	if len(refFiles) == 0 {
		return nil
	}
	if mounted, err := isTmpfs(refsDir); err != nil || !mounted {
		if err := writeRefFiles(refsDir, refFiles); err != nil {
			return fmt.Errorf("task %s: secrets and configs: %w", taskID, err)
		}
	}
	return nil
}

// createContainer creates the task's container on a new snapshot of img.
// It returns nil too when the container was created concurrently. On an
// error it leaves no snapshot behind; the caller undoes the rest of
// Prepare.
func (e *Executor) createContainer(ctx context.Context, c *client.Client, t *objectv1.Task, img client.Image, specOpts []oci.SpecOpts, labels map[string]string) error {
	e.mu.RLock()
	snapshotter, runtime := e.cfg.Snapshotter, e.cfg.Runtime
	e.mu.RUnlock()
	// A snapshot named for a task without a container is what a Prepare
	// cut short (the plugin died) left behind: nobody else uses the name.
	if err := c.SnapshotService(snapshotter).Remove(ctx, t.GetId()); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("task %s: remove a stale snapshot: %w", t.GetId(), kind(err))
	}
	_, err := c.NewContainer(ctx, t.GetId(),
		client.WithImage(img),
		client.WithSnapshotter(snapshotter),
		client.WithNewSnapshot(t.GetId(), img),
		client.WithRuntime(runtime, nil),
		client.WithContainerLabels(labels),
		client.WithNewSpec(specOpts...),
	)
	if errdefs.IsAlreadyExists(err) {
		if _, lerr := c.LoadContainer(ctx, t.GetId()); lerr == nil {
			return nil // prepared concurrently
		}
	}
	if err != nil {
		// WithNewSnapshot leaves its snapshot when a later option fails.
		_ = c.SnapshotService(snapshotter).Remove(ctx, t.GetId())
		return fmt.Errorf("task %s: create container: %w", t.GetId(), kind(err))
	}
	e.log.Debug("task prepared", "task_id", t.GetId(), "image", img.Name())
	return nil
}

// networkFor returns the task networking and the rendered resolv.conf,
// hosts and hostname of a task with networks; nil and nil for a task
// without. It fails with ErrFailedPrecondition when the task has networks
// and the node has no task networking. Prepare calls it before the image is
// pulled, so that such a task fails fast.
func (e *Executor) networkFor(t *objectv1.Task) (Network, map[string][]byte, error) {
	if len(t.GetNetworks()) == 0 {
		return nil, nil, nil
	}
	e.mu.RLock()
	network, netErr := e.net, e.netErr
	e.mu.RUnlock()
	if network == nil {
		return nil, nil, fmt.Errorf("task %s: networks: %v: %w", t.GetId(), netErr, sdk.ErrFailedPrecondition)
	}
	files, err := renderTaskFiles(t, e.opts.ResolvConf)
	if err != nil {
		return nil, nil, err
	}
	return network, files, nil
}

// containerSpec is the OCI spec of the task's container: specFor's, the
// read-only bind mounts of its secrets and configs under refsDir (when it
// has any), and its health check. The caller undoes what it made when this
// fails.
func containerSpec(ctx context.Context, img client.Image, t *objectv1.Task, netns, filesDir, volumesDir, refsDir string, refFiles []refFile) ([]oci.SpecOpts, error) {
	specOpts, err := specFor(ctx, img, t, netns, filesDir, volumesDir)
	if err != nil {
		return nil, err
	}
	if len(refFiles) > 0 {
		specOpts = append(specOpts, oci.WithMounts(refFileMounts(refsDir, refFiles)))
	}
	hopt, err := healthSpecOpt(ctx, img, t)
	if hopt != nil {
		specOpts = append(specOpts, hopt)
	}
	return specOpts, err
}

// containerLabels are the labels of the task's container, which keep what
// a restarted executor needs of the task (see the package comment): its IDs,
// slot, stop signal, service name and network namespace, the last two only
// when it has them.
func containerLabels(t *objectv1.Task, netns string) map[string]string {
	labels := map[string]string{
		labelTaskID:     t.GetId(),
		labelServiceID:  t.GetServiceId(),
		labelSlot:       strconv.FormatUint(t.GetSlot(), 10),
		labelStopSignal: t.GetSpec().GetContainer().GetStopSignal(),
	}
	if name := t.GetServiceAnnotations().GetName(); name != "" {
		labels[labelServiceName] = name
	}
	if netns != "" {
		labels[labelNetns] = netns
	}
	return labels
}

// makeVolumes makes the directories of the named volumes the mounts use
// that do not exist yet (0755, as docker makes a volume's _data). A volume
// is kept when its tasks are removed: its data outlives them.
func makeVolumes(volumesDir string, mounts []*objectv1.Mount) error {
	for _, m := range mounts {
		if m.GetType() != objectv1.MountType_MOUNT_TYPE_VOLUME {
			continue
		}
		if err := os.MkdirAll(volumeDataDir(volumesDir, m.GetSource()), 0o755); err != nil {
			return fmt.Errorf("volume %s: %w", m.GetSource(), err)
		}
	}
	return nil
}

// detach undoes Attach on a failed Prepare; a failure here is logged
// because the Prepare error is what the caller needs.
func (e *Executor) detach(ctx context.Context, taskID, netns string) {
	if netns == "" {
		return
	}
	e.mu.RLock()
	network := e.net
	e.mu.RUnlock()
	if network == nil {
		return
	}
	if err := network.Detach(context.WithoutCancel(ctx), taskID); err != nil {
		e.log.Warn("detach after a failed prepare", "task_id", taskID, "err", err)
	}
}

// taskPorts are the ports a task publishes on its node, from its service's
// endpoint as the task recorded it; netattach maps them into the task's
// namespace (tasks without networks share the node's network and bind their
// ports there themselves).
func taskPorts(t *objectv1.Task) []*objectv1.PortConfig { return t.GetEndpoint().GetPorts() }
