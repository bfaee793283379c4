package ctrexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// Named volumes are the directories NAME/_data under the executor's
// volumes directory (Prepare makes them, makeVolumes). Which tasks use one
// is read from the containers' OCI specs, whose bind mounts name the
// volume's directory: the containers are the truth, running or not, and
// no second record can drift from them.

var _ executor.Volumes = (*Executor)(nil)

// ListVolumes returns the node's named volumes, each with the tasks whose
// containers mount it.
func (e *Executor) ListVolumes(ctx context.Context) ([]executor.VolumeInfo, error) {
	e.mu.RLock()
	dir := e.volumesDir
	e.mu.RUnlock()
	users, err := e.volumeUsers(ctx, dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	var out []executor.VolumeInfo
	for _, ent := range entries {
		if !ent.IsDir() || !validVolumeName(ent.Name()) {
			continue
		}
		v := executor.VolumeInfo{Name: ent.Name(), InUseBy: users[ent.Name()]}
		if fi, err := ent.Info(); err == nil {
			v.CreatedAt = fi.ModTime()
		}
		out = append(out, v)
	}
	return out, nil
}

// RemoveVolume deletes the volume name and its data, unless a task's
// container mounts it. It waits for the Prepares that are between making
// their volumes and creating their containers (volumeMu), so that a
// volume is never deleted under a container about to mount it.
func (e *Executor) RemoveVolume(ctx context.Context, name string) error {
	if !validVolumeName(name) {
		return sdk.FieldErrors{{Field: "name", Message: fmt.Sprintf("must be a volume name of 1 to %d letters, digits and _ . - starting with a letter or digit, got %q", maxVolumeNameLen, name)}}
	}
	e.mu.RLock()
	dir := e.volumesDir
	e.mu.RUnlock()
	if _, _, err := e.conn(ctx); err != nil {
		return err
	}
	e.volumeMu.Lock()
	defer e.volumeMu.Unlock()
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no volume %s on this node: %w", name, sdk.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	users, err := e.volumeUsers(ctx, dir)
	if err != nil {
		return err
	}
	if tasks := users[name]; len(tasks) > 0 {
		return fmt.Errorf("volume %s is in use by task %s: remove the task first: %w", name, strings.Join(tasks, ", "), sdk.ErrFailedPrecondition)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	e.log.Info("volume removed", "volume", name)
	return nil
}

// volumeUsers returns the IDs of the tasks whose containers mount each
// volume under dir, sorted, by volume name.
func (e *Executor) volumeUsers(ctx context.Context, dir string) (map[string][]string, error) {
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return nil, err
	}
	ctrs, err := c.ContainerService().List(nctx, "labels."+strconv.Quote(labelTaskID))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", kind(err))
	}
	users := map[string][]string{}
	for _, ctr := range ctrs {
		if ctr.Spec == nil {
			continue
		}
		var spec specs.Spec
		if err := json.Unmarshal(ctr.Spec.GetValue(), &spec); err != nil {
			e.log.Warn("container spec unreadable; its volumes are not counted", "task_id", ctr.ID, "error", err)
			continue
		}
		for _, m := range spec.Mounts {
			if name, ok := volumeOf(dir, m.Source); ok && !slices.Contains(users[name], ctr.ID) {
				users[name] = append(users[name], ctr.ID)
			}
		}
	}
	for _, ids := range users {
		slices.Sort(ids)
	}
	return users, nil
}

// volumeOf returns the volume whose data directory under dir is source.
func volumeOf(dir, source string) (string, bool) {
	rel, err := filepath.Rel(dir, source)
	if err != nil {
		return "", false
	}
	name, rest, ok := strings.Cut(rel, string(filepath.Separator))
	if !ok || rest != "_data" || !validVolumeName(name) {
		return "", false
	}
	return name, true
}
