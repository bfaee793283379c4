package ctrexec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// cpuPeriod is the CFS period for CPU limits, in microseconds: the kernel's
// default, as Docker uses it for --cpus.
const cpuPeriod = 100000

// minMemoryLimit is the smallest memory limit runc accepts.
const minMemoryLimit = 6 << 20

// minNanoCPUs is the smallest CPU limit: the kernel wants a CFS quota of at
// least 1 ms per period, 1% of a CPU with cpuPeriod.
const minNanoCPUs = 10_000_000

// checkTaskID validates a task ID as a containerd container ID.
func checkTaskID(id string) error {
	if err := identifiers.Validate(id); err != nil {
		return sdk.FieldErrors{{Field: "task.id", Message: fmt.Sprintf("must be 1 to 76 letters, digits and inner . _ -, got %q", id)}}
	}
	return nil
}

// maxVolumeNameLen is the longest volume name, as the control API bounds
// it (kernel/controlapi).
const maxVolumeNameLen = 63

// validVolumeName reports whether name is a volume's name: 1 to
// maxVolumeNameLen letters, digits, '_', '.' and '-', starting with a
// letter or digit (so never "." or "..": it is a directory under the
// volumes directory), as the control API checks it.
func validVolumeName(name string) bool {
	if name == "" || len(name) > maxVolumeNameLen || name[0] == '.' || name[0] == '-' || name[0] == '_' {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// volumeDataDir is where the volume name keeps its data under the
// executor's volumes directory.
func volumeDataDir(volumesDir, name string) string {
	return filepath.Join(volumesDir, name, "_data")
}

// validateTask checks what Prepare needs of a task and names every bad
// field; nodeID names the node in errors about its paths.
func validateTask(t *objectv1.Task, nodeID string) error {
	var fe sdk.FieldErrors
	if t == nil {
		fe.Add("task", "is required")
		return fe
	}
	if identifiers.Validate(t.GetId()) != nil {
		fe.Add("task.id", "must be 1 to 76 letters, digits and inner . _ -, got %q", t.GetId())
	}
	c := t.GetSpec().GetContainer()
	if c == nil {
		fe.Add("task.spec.container", "is required")
		return fe
	}
	if c.GetImage() == "" {
		fe.Add("task.spec.container.image", "is required")
	} else if _, err := normalizeRef(c.GetImage()); err != nil {
		fe.Add("task.spec.container.image", "%v", err)
	}
	for i, kv := range c.GetEnv() {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			fe.Add(fmt.Sprintf("task.spec.container.env[%d]", i), "must be KEY=value, got %q", kv)
		}
	}
	if d := c.GetDir(); d != "" && !filepath.IsAbs(d) {
		fe.Add("task.spec.container.dir", "must be an absolute path, got %q", d)
	}
	for i, m := range c.GetMounts() {
		f := fmt.Sprintf("task.spec.container.mounts[%d]", i)
		switch m.GetType() {
		case objectv1.MountType_MOUNT_TYPE_UNSPECIFIED, objectv1.MountType_MOUNT_TYPE_BIND:
			if !filepath.IsAbs(m.GetSource()) {
				fe.Add(f+".source", "must be an absolute path on the node, got %q", m.GetSource())
			} else if _, err := os.Stat(m.GetSource()); errors.Is(err, fs.ErrNotExist) {
				fe.Add(f+".source", "%s does not exist on node %s", m.GetSource(), nodeID)
			} else if err != nil {
				fe.Add(f+".source", "must exist on node %s: %v", nodeID, err)
			}
		case objectv1.MountType_MOUNT_TYPE_VOLUME:
			if !validVolumeName(m.GetSource()) {
				fe.Add(f+".source", "must be a volume name of 1 to %d letters, digits and _ . - starting with a letter or digit, got %q", maxVolumeNameLen, m.GetSource())
			}
		case objectv1.MountType_MOUNT_TYPE_TMPFS:
			if m.GetSource() != "" {
				fe.Add(f+".source", "must be empty for a tmpfs mount, got %q", m.GetSource())
			}
			if n := m.GetTmpfsSizeBytes(); n < 0 {
				fe.Add(f+".tmpfs_size_bytes", "must be at least 0, got %d", n)
			}
		default:
			fe.Add(f+".type", "must be bind, volume or tmpfs, got %s", m.GetType())
		}
		if m.GetTmpfsSizeBytes() != 0 && m.GetType() != objectv1.MountType_MOUNT_TYPE_TMPFS {
			fe.Add(f+".tmpfs_size_bytes", "is for tmpfs mounts only")
		}
		if !filepath.IsAbs(m.GetTarget()) {
			fe.Add(f+".target", "must be an absolute path in the container, got %q", m.GetTarget())
		}
	}
	if _, err := executor.ParseSignal(c.GetStopSignal()); err != nil {
		fe.Add("task.spec.container.stop_signal", "%v", err)
	}
	lim := t.GetSpec().GetResources().GetLimits()
	if n := lim.GetNanoCpus(); n < 0 || (n > 0 && n < minNanoCPUs) {
		fe.Add("task.spec.resources.limits.nano_cpus", "must be 0 (no limit) or at least %d (0.01 CPU), got %d", minNanoCPUs, n)
	}
	if m := lim.GetMemoryBytes(); m < 0 || (m > 0 && m < minMemoryLimit) {
		fe.Add("task.spec.resources.limits.memory_bytes", "must be 0 (no limit) or at least %d (6 MiB), got %d", minMemoryLimit, m)
	}
	for i, n := range t.GetNetworks() {
		if n.GetNetworkId() == "" {
			fe.Add(fmt.Sprintf("task.networks[%d].network_id", i), "is required")
		}
	}
	return fe.Err()
}

// specFor is the OCI spec of the task's container, on top of containerd's
// defaults: the image's config, then the task's overrides. A task without
// networks (netns empty) shares the node's network namespace, hosts and
// resolv.conf; one with networks joins netns and gets the files of
// filesDir (writeTaskFiles).
func specFor(ctx context.Context, img client.Image, t *objectv1.Task, netns, filesDir, volumesDir string) ([]oci.SpecOpts, error) {
	c := t.GetSpec().GetContainer()
	imgSpec, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.Name(), kind(err))
	}
	args := append([]string(nil), imgSpec.Config.Entrypoint...)
	cmd := imgSpec.Config.Cmd
	if len(c.GetCommand()) > 0 {
		args, cmd = append([]string(nil), c.GetCommand()...), nil
	}
	if len(c.GetArgs()) > 0 {
		cmd = c.GetArgs()
	}
	args = append(args, cmd...)
	if len(args) == 0 {
		return nil, sdk.FieldErrors{{Field: "task.spec.container.command", Message: fmt.Sprintf("image %s has no entrypoint or command: set command", img.Name())}}
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(args...),
		oci.WithHostname(hostnameOf(t)),
	}
	if len(c.GetEnv()) > 0 {
		opts = append(opts, oci.WithEnv(c.GetEnv()))
	}
	if c.GetDir() != "" {
		opts = append(opts, oci.WithProcessCwd(c.GetDir()))
	}
	if c.GetUser() != "" {
		opts = append(opts, oci.WithUser(c.GetUser()), oci.WithAdditionalGIDs(c.GetUser()))
	}
	var mounts []specs.Mount
	for _, m := range c.GetMounts() {
		mounts = append(mounts, ociMount(m, volumesDir))
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}
	lim := t.GetSpec().GetResources().GetLimits()
	if n := lim.GetNanoCpus(); n > 0 {
		opts = append(opts, oci.WithCPUCFS(n*cpuPeriod/1e9, cpuPeriod))
	}
	if m := lim.GetMemoryBytes(); m > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(m)))
	}
	if netns == "" {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns}))
		if fm := taskFileMounts(filesDir, c.GetMounts()); len(fm) > 0 {
			opts = append(opts, oci.WithMounts(fm))
		}
	}
	return opts, nil
}

// ociMount is the OCI mount of m: a bind mount of its source (bind) or of
// its volume's directory under volumesDir (volume), or a tmpfs of its size
// (0: the kernel's default), world-writable with the sticky bit like /tmp.
func ociMount(m *objectv1.Mount, volumesDir string) specs.Mount {
	mode := "rw"
	if m.GetReadOnly() {
		mode = "ro"
	}
	switch m.GetType() {
	case objectv1.MountType_MOUNT_TYPE_VOLUME:
		return specs.Mount{Type: "bind", Source: volumeDataDir(volumesDir, m.GetSource()), Destination: m.GetTarget(), Options: []string{"rbind", "rprivate", mode}}
	case objectv1.MountType_MOUNT_TYPE_TMPFS:
		opts := []string{"nosuid", "nodev", "mode=1777", mode}
		if n := m.GetTmpfsSizeBytes(); n > 0 {
			opts = append(opts, "size="+strconv.FormatInt(n, 10))
		}
		return specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.GetTarget(), Options: opts}
	default:
		return specs.Mount{Type: "bind", Source: m.GetSource(), Destination: m.GetTarget(), Options: []string{"rbind", "rprivate", mode}}
	}
}

// hostnameOf is the hostname of the task's container: its ID, cut to the
// 63 characters a host name may have.
func hostnameOf(t *objectv1.Task) string {
	hostname := t.GetId()
	if len(hostname) > 63 {
		hostname = hostname[:63]
	}
	return hostname
}

// The files of a task with networks in its directory of task files (see
// writeTaskFiles), and where they are mounted in its container.
var taskFiles = []struct{ name, target string }{
	{"resolv.conf", "/etc/resolv.conf"},
	{"hosts", "/etc/hosts"},
	{"hostname", "/etc/hostname"},
}

// taskFileMounts bind-mounts the task's resolv.conf, hosts and hostname
// from dir onto /etc, except where the task mounts a file of its own.
//
// They are mounted read-write, as docker mounts the same files of a
// container's own directory (unless the container's root is read-only):
// programs such as some init scripts rewrite /etc/hosts or /etc/hostname,
// and a change stays in the task's own copy, which Remove deletes.
func taskFileMounts(dir string, own []*objectv1.Mount) []specs.Mount {
	var mounts []specs.Mount
	for _, f := range taskFiles {
		if slices.ContainsFunc(own, func(m *objectv1.Mount) bool { return filepath.Clean(m.GetTarget()) == f.target }) {
			continue
		}
		mounts = append(mounts, specs.Mount{
			Type: "bind", Source: filepath.Join(dir, f.name), Destination: f.target,
			Options: []string{"rbind", "rprivate", "rw"},
		})
	}
	return mounts
}
