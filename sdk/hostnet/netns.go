package hostnet

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// CreateNetns makes a new network namespace kept alive by a bind mount at
// path, as `ip netns add` does. The calling goroutine's thread is not
// touched: the namespace is made on a thread of its own, which exits with
// the goroutine because its network namespace is no longer the process's.
func CreateNetns(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns mount point: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create netns mount point: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime ends a locked thread whose goroutine
		// exits, so no other goroutine ever runs in the new namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount netns on %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// IsNetns reports whether path is a mounted network namespace. A file left
// by a reboot (the mount is gone, the empty file remains) is not.
func IsNetns(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Type == unix.NSFS_MAGIC, nil
}

// RemoveNetns unmounts and removes a namespace made by CreateNetns. The
// namespace itself goes when its last user (a process inside, an open file)
// goes. Removing one that does not exist is not an error.
func RemoveNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}
