package ctrexec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A task's secrets and configs (Prepare's files) live on a tmpfs of its
// own, StateDir/secrets/TASKID, mounted at Prepare before its container
// and unmounted by Remove: their data is never on the node's disk, only in
// memory, and only as long as the task. Each file is bind-mounted
// read-only into the container, a secret at /run/secrets/TARGET, a config
// at its target. As with the task files (taskfiles.go), the directory
// depends only on the state directory and the task's ID, so a restarted
// executor finds the tmpfs of the tasks it adopts.

const (
	// maxFileData bounds one file's data: the control API's bound on a
	// secret or a config (500 KiB).
	maxFileData = 500 << 10
	// maxNameLen bounds each element of a target path, as Linux bounds a
	// file name.
	maxNameLen = 255
	// maxTargetLen bounds a whole target path (PATH_MAX, less its NUL).
	maxTargetLen = 4095
	// secretsMountDir is where a secret's relative target goes.
	secretsMountDir = "/run/secrets"
	// tmpfsSlack is room on a task's tmpfs above its files' pages: the
	// root directory's own, and margin; the tmpfs is sized so that
	// nothing else fits.
	tmpfsSlack = 64 << 10
	// defaultFileMode is a file's mode when its reference has none.
	defaultFileMode = 0o444
)

// refFile is one of a task's files, checked and placed.
type refFile struct {
	name     string // in the task's tmpfs
	target   string // in the container, absolute and clean
	uid, gid int
	mode     os.FileMode
	data     []byte
}

// checkRefFiles matches Prepare's files to the references of the task's
// spec (a file is for the reference its ref equals, secret for secret) and
// checks both; errors name the fields. Every reference needs its file and
// every file a reference. It returns nil for a task without any.
func checkRefFiles(t *objectv1.Task, files []*objectv1.TaskFile) ([]refFile, error) {
	c := t.GetSpec().GetContainer()
	var fe sdk.FieldErrors
	used := make([]bool, len(files))
	for i, f := range files {
		if f.GetRef() == nil {
			fe.Add(fmt.Sprintf("files[%d].ref", i), "is required")
			used[i] = true
		}
	}
	var out []refFile
	targets := map[string]string{} // target → the field that has it
	add := func(field string, secret bool, ref *objectv1.FileReference) {
		kindName := "config"
		if secret {
			kindName = "secret"
		}
		target, err := fileTarget(secret, ref)
		if err != nil {
			fe.Add(field+".target", "%v", err)
		} else if other, dup := targets[target]; dup {
			fe.Add(field+".target", "%s is also the target of %s", target, other)
		} else {
			targets[target] = field
		}
		uid, err := fileOwner(ref.GetUid())
		if err != nil {
			fe.Add(field+".uid", "%v", err)
		}
		gid, err := fileOwner(ref.GetGid())
		if err != nil {
			fe.Add(field+".gid", "%v", err)
		}
		mode := ref.GetMode()
		if mode > 0o777 {
			fe.Add(field+".mode", "must be permission bits, at most 0777, got %#o", mode)
		}
		if mode == 0 {
			mode = defaultFileMode
		}
		var data []byte
		found := false
		for i, f := range files {
			if used[i] || f.GetSecret() != secret || !proto.Equal(f.GetRef(), ref) {
				continue
			}
			used[i], found, data = true, true, f.GetData()
			if len(data) > maxFileData {
				fe.Add(fmt.Sprintf("files[%d].data", i), "the data of %s %q is %d bytes, at most %d (500 KiB)", kindName, ref.GetName(), len(data), maxFileData)
			}
			break
		}
		if !found {
			fe.Add(field, "the data of %s %q (%s) did not come with the task", kindName, ref.GetName(), ref.GetId())
		}
		out = append(out, refFile{
			name: fmt.Sprintf("%s-%d", kindName, len(out)), target: target,
			uid: uid, gid: gid, mode: os.FileMode(mode), data: data,
		})
	}
	for i, ref := range c.GetSecrets() {
		add(fmt.Sprintf("task.spec.container.secrets[%d]", i), true, ref)
	}
	for i, ref := range c.GetConfigs() {
		add(fmt.Sprintf("task.spec.container.configs[%d]", i), false, ref)
	}
	for i, f := range files {
		if !used[i] {
			fe.Add(fmt.Sprintf("files[%d]", i), "is for no reference of the task's spec (%q, target %q)", f.GetRef().GetName(), f.GetRef().GetTarget())
		}
	}
	if err := fe.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// fileTarget is where a reference's file is in the container: for a secret
// /run/secrets/TARGET (TARGET a file name) or TARGET when absolute, for a
// config TARGET, absolute; an empty target is the reference's name.
func fileTarget(secret bool, ref *objectv1.FileReference) (string, error) {
	target := ref.GetTarget()
	if target == "" {
		target = ref.GetName()
		if !secret {
			target = "/" + target
		}
	}
	if !path.IsAbs(target) {
		if !secret {
			return "", fmt.Errorf("must be an absolute path in the container, got %q", target)
		}
		if target == "" || target == "." || target == ".." || strings.Contains(target, "/") {
			return "", fmt.Errorf("must be a file name under %s or an absolute path, got %q", secretsMountDir, target)
		}
		target = secretsMountDir + "/" + target
	}
	if len(target) > maxTargetLen {
		return "", fmt.Errorf("must be at most %d bytes long, got %d", maxTargetLen, len(target))
	}
	if target == "/" || path.Clean(target) != target {
		return "", fmt.Errorf("must be a clean path to a file, got %q", target)
	}
	for el := range strings.SplitSeq(target[1:], "/") {
		if el == ".." {
			return "", fmt.Errorf("must not contain \"..\", got %q", target)
		}
		if len(el) > maxNameLen {
			return "", fmt.Errorf("must have names of at most %d bytes, got one of %d", maxNameLen, len(el))
		}
		if strings.ContainsRune(el, 0) {
			return "", fmt.Errorf("must not contain NUL, got %q", target)
		}
	}
	return target, nil
}

// fileOwner parses a uid or gid: a number, "0" when empty.
func fileOwner(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, fmt.Errorf("must be a number from 0 to %d, got %q", uint32(1<<32-2), s)
	}
	return int(n), nil
}

// tmpfsSize is the size of a tmpfs that holds files: their pages and
// tmpfsSlack.
func tmpfsSize(files []refFile) int {
	page := os.Getpagesize()
	size := tmpfsSlack
	for _, f := range files {
		size += (len(f.data) + page - 1) / page * page
	}
	return size
}

// writeRefFiles mounts a new tmpfs at dir, sized for files, and writes them
// there with their owners and modes; what a Prepare cut short left at dir
// goes first. On error what it made is left for removeRefFiles.
func writeRefFiles(dir string, files []refFile) error {
	if err := removeRefFiles(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0700", tmpfsSize(files), len(files)+16)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	// Nothing is written unless the tmpfs is there: the data must not
	// reach the disk below.
	if mounted, err := isTmpfs(dir); err != nil || !mounted {
		return fmt.Errorf("%s is not a tmpfs after mounting one (%v)", dir, err)
	}
	for _, f := range files {
		if err := writeRefFile(filepath.Join(dir, f.name), f); err != nil {
			return err
		}
	}
	return nil
}

func writeRefFile(name string, f refFile) error {
	fd, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = fd.Write(f.data)
	if err == nil {
		err = fd.Chown(f.uid, f.gid)
	}
	if err == nil {
		err = fd.Chmod(f.mode) // after Chown, which clears set-id bits
	}
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.target, err)
	}
	return nil
}

// isTmpfs reports whether dir is the root of a tmpfs mounted on it (its
// filesystem is a tmpfs and not its parent's).
func isTmpfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		return false, nil
	}
	var self, parent unix.Stat_t
	if err := unix.Stat(dir, &self); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return self.Dev != parent.Dev, nil
}

// removeRefFiles unmounts dir's tmpfs (every one, should there be more)
// and deletes dir; a dir that does not exist is no error.
func removeRefFiles(dir string) error {
	for range 8 {
		err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EBUSY) {
			// Busy (a process has its cwd there): detach it, so that it
			// goes once no one uses it.
			err = unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not a mount point (any more), or no dir
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return os.RemoveAll(dir)
}

// refFileMounts bind-mounts each file from dir read-only onto its target.
func refFileMounts(dir string, files []refFile) []specs.Mount {
	var mounts []specs.Mount
	for _, f := range files {
		mounts = append(mounts, specs.Mount{
			Type: "bind", Source: filepath.Join(dir, f.name), Destination: f.target,
			Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return mounts
}

// sweepRefFiles unmounts and deletes the tmpfs of tasks whose container is
// gone: what a Prepare or Remove cut short leaves behind.
func sweepRefFiles(ctx context.Context, c *client.Client, dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("listing secrets and configs", "dir", dir, "err", err)
		}
		return
	}
	for _, en := range entries {
		id := en.Name()
		if checkTaskID(id) != nil {
			continue // not a task's: leave it
		}
		if _, err := c.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
			continue // it exists (or containerd could not say): keep it
		}
		if err := removeRefFiles(filepath.Join(dir, id)); err != nil {
			log.Warn("removing the secrets and configs of a removed task", "task_id", id, "err", err)
			continue
		}
		log.Info("removed the secrets and configs of a task whose container is gone", "task_id", id)
	}
}
