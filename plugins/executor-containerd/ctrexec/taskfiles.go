package ctrexec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/netfiles"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A task with networks has its own resolv.conf, hosts and hostname in its
// directory of task files, StateDir/tasks/TASKID: made at Prepare before
// its container, bind-mounted into the container (taskFileMounts), deleted
// by Remove. The directory's path depends only on the state directory and
// the task's ID, so a restarted executor finds the files of the tasks it
// adopts, and their containers keep their mounts throughout.

// renderTaskFiles renders the files of a task with networks: resolv.conf
// names the node's DNS server at its first network's gateway with the
// search domains and options of the host's resolv.conf (read now, at
// Prepare, from resolvConf); hosts maps its addresses to its hostname and
// names (sdk/netfiles). Errors name the task's fields.
func renderTaskFiles(t *objectv1.Task, resolvConf string) (map[string][]byte, error) {
	host, err := netfiles.ReadHostConfig(resolvConf)
	if errors.Is(err, fs.ErrNotExist) {
		// As the C library, which resolves without one: no search
		// domains, no options.
		host, err = netfiles.HostConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", t.GetId(), err)
	}
	hostname := hostnameOf(t)
	rc, hosts, err := netfiles.TaskFiles(t, host, hostname)
	if err != nil {
		var fe sdk.FieldErrors
		if errors.As(err, &fe) {
			prefixed := make(sdk.FieldErrors, len(fe))
			for i, f := range fe {
				prefixed[i] = sdk.FieldError{Field: "task." + f.Field, Message: f.Message}
			}
			return nil, prefixed
		}
		return nil, fmt.Errorf("task %s: %w", t.GetId(), err)
	}
	return map[string][]byte{"resolv.conf": rc, "hosts": hosts, "hostname": []byte(hostname + "\n")}, nil
}

// writeTaskFiles writes files into dir, each replaced whole (written
// aside, then renamed): a Prepare cut short leaves whole files, and a
// container already running on them keeps the ones it has.
func writeTaskFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range taskFiles {
		b, ok := files[f.name]
		if !ok {
			return fmt.Errorf("no %s rendered", f.name)
		}
		path := filepath.Join(dir, f.name)
		tmp := path + ".tmp"
		// 0644 as docker's: the task's processes may run as any user.
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}

// sweepTaskFiles deletes the directories of task files whose container is
// gone: what a Prepare or Remove cut short leaves behind.
func sweepTaskFiles(ctx context.Context, c *client.Client, dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("listing task files", "dir", dir, "err", err)
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
		if err := os.RemoveAll(filepath.Join(dir, id)); err != nil {
			log.Warn("removing the files of a removed task", "task_id", id, "err", err)
			continue
		}
		log.Info("removed the files of a task whose container is gone", "task_id", id)
	}
}
