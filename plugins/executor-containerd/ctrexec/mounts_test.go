package ctrexec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestOCIMount(t *testing.T) {
	for _, tc := range []struct {
		m    *objectv1.Mount
		want specs.Mount
	}{
		{&objectv1.Mount{Source: "/srv", Target: "/data", ReadOnly: true},
			specs.Mount{Type: "bind", Source: "/srv", Destination: "/data", Options: []string{"rbind", "rprivate", "ro"}}},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "db", Target: "/data"},
			specs.Mount{Type: "bind", Source: "/state/volumes/db/_data", Destination: "/data", Options: []string{"rbind", "rprivate", "rw"}}},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch", TmpfsSizeBytes: 64 << 20},
			specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: "/scratch", Options: []string{"nosuid", "nodev", "mode=1777", "rw", "size=67108864"}}},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch", ReadOnly: true},
			specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: "/scratch", Options: []string{"nosuid", "nodev", "mode=1777", "ro"}}},
	} {
		if got := ociMount(tc.m, "/state/volumes"); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ociMount(%v) = %+v, want %+v", tc.m, got, tc.want)
		}
	}
}

func TestValidVolumeName(t *testing.T) {
	for name, want := range map[string]bool{
		"db": true, "a.b_c-1": true, strings.Repeat("v", 63): true,
		"": false, ".": false, "..": false, "-x": false, "_x": false, "a/b": false, "a b": false, strings.Repeat("v", 64): false,
	} {
		if got := validVolumeName(name); got != want {
			t.Errorf("validVolumeName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestVolumeKeepsDataAcrossTasks: a named volume is made on first use and
// keeps what one task wrote for a later task on the node, after the first
// is removed (issue 13: a named volume keeps its data across a task's
// replacement on the same node).
func TestVolumeKeepsDataAcrossTasks(t *testing.T) {
	state := t.TempDir()
	e := newExecutor(t, state, "")
	vol := []*objectv1.Mount{{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "data", Target: "/data"}}

	first := newTask(t, "write:/data/kept=from the first task")
	first.Spec.Container.Mounts = vol
	run(t, e, first)
	if st := wait(t, e, first.Id); st.ExitCode != 0 {
		t.Fatalf("writer exit = %d; logs %q", st.ExitCode, logs(t, e, first.Id, executor.LogOptions{Tail: -1}))
	}
	dir := filepath.Join(state, "volumes", "data", "_data")
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("volume directory %s: %v, %v; want 0755", dir, fi, err)
	}
	if err := e.Remove(ctxT(t), first.Id); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "kept")); err != nil || string(b) != "from the first task" {
		t.Errorf("volume file after the task's Remove = %q, %v", b, err)
	}

	second := newTask(t, "cat:/data/kept")
	second.Spec.Container.Mounts = []*objectv1.Mount{{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "data", Target: "/data", ReadOnly: true}}
	run(t, e, second)
	if st := wait(t, e, second.Id); st.ExitCode != 0 {
		t.Errorf("reader exit = %d", st.ExitCode)
	}
	if got := streamLines(logs(t, e, second.Id, executor.LogOptions{Tail: -1}), "stdout"); len(got) != 1 || got[0] != "from the first task" {
		t.Errorf("reader stdout = %q, want the first task's text", got)
	}
}

// TestTmpfsMount: a tmpfs mount is a tmpfs of its size, nosuid and nodev,
// in the task's /proc/mounts (which shows no mode when it is 1777, the default).
func TestTmpfsMount(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "cat:/proc/mounts", "write:/scratch/f=x", "cat:/scratch/f")
	task.Spec.Container.Mounts = []*objectv1.Mount{{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch", TmpfsSizeBytes: 8 << 20}}
	run(t, e, task)
	if st := wait(t, e, task.Id); st.ExitCode != 0 {
		t.Fatalf("exit = %d; logs %q", st.ExitCode, logs(t, e, task.Id, executor.LogOptions{Tail: -1}))
	}
	var line string
	out := streamLines(logs(t, e, task.Id, executor.LogOptions{Tail: -1}), "stdout")
	for _, l := range out {
		if f := strings.Fields(l); len(f) > 3 && f[1] == "/scratch" {
			line = l
		}
	}
	f := strings.Fields(line)
	if len(f) < 4 || f[2] != "tmpfs" {
		t.Fatalf("/scratch in /proc/mounts = %q, want a tmpfs; stdout %q", line, out)
	}
	opts := "," + f[3] + ","
	for _, o := range []string{",rw,", ",nosuid,", ",nodev,", ",size=8192k,"} {
		if !strings.Contains(opts, o) {
			t.Errorf("/scratch options %s lack %s", f[3], strings.Trim(o, ","))
		}
	}
	if out[len(out)-1] != "x" {
		t.Errorf("the tmpfs did not keep a written file: stdout %q", out)
	}
}

// TestMountErrors: a bind mount of a missing path, a bad volume name and a
// tmpfs with a source fail Prepare naming the field (and the path and
// node).
func TestMountErrors(t *testing.T) {
	e := newExecutor(t, "", "")
	for _, tc := range []struct {
		m     *objectv1.Mount
		field string
		msg   string
	}{
		{&objectv1.Mount{Source: "/nonexistent/src", Target: "/x"}, "task.spec.container.mounts[0].source", "/nonexistent/src does not exist on node node1"},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "../etc", Target: "/x"}, "task.spec.container.mounts[0].source", "volume name"},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Source: "/tmp", Target: "/x"}, "task.spec.container.mounts[0].source", "tmpfs"},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/x", TmpfsSizeBytes: -1}, "task.spec.container.mounts[0].tmpfs_size_bytes", "at least 0"},
		{&objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "v", Target: "/x", TmpfsSizeBytes: 1}, "task.spec.container.mounts[0].tmpfs_size_bytes", "tmpfs mounts only"},
	} {
		task := newTask(t, "exit:0")
		task.Spec.Container.Mounts = []*objectv1.Mount{tc.m}
		err := e.Prepare(ctxT(t), task, nil, nil)
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || fe[0].Field != tc.field || !strings.Contains(fe[0].Message, tc.msg) {
			t.Errorf("Prepare with mount %v = %v, want %s: ...%s...", tc.m, err, tc.field, tc.msg)
		}
		_ = e.Remove(context.Background(), task.Id)
	}
}
