package ctrexec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestVolumeOf(t *testing.T) {
	for src, want := range map[string]string{
		"/s/volumes/db/_data": "db", "/s/volumes/db": "", "/s/volumes/db/_data/x": "", "/s/other/db/_data": "",
		"/s/volumes/../x/_data": "", "/s/volumes/.x/_data": "",
	} {
		if got, ok := volumeOf("/s/volumes", src); got != want || ok != (want != "") {
			t.Errorf("volumeOf(%q) = %q, %v; want %q", src, got, ok, want)
		}
	}
}

// volumeNames lists e's volumes as "name:task,task".
func volumeNames(t *testing.T, e *Executor) []string {
	t.Helper()
	vols, err := e.ListVolumes(ctxT(t))
	if err != nil {
		t.Fatalf("ListVolumes = %v", err)
	}
	var out []string
	for _, v := range vols {
		if v.CreatedAt.IsZero() {
			t.Errorf("volume %s without a creation time", v.Name)
		}
		out = append(out, v.Name+":"+strings.Join(v.InUseBy, ","))
	}
	slices.Sort(out)
	return out
}

// TestListAndRemoveVolumes: the volumes tasks made are listed with the
// tasks whose containers mount them, exited or running; removing one is
// refused, naming them, until they are removed, and then deletes its data.
func TestListAndRemoveVolumes(t *testing.T) {
	state := t.TempDir()
	e := newExecutor(t, state, "")
	var _ executor.Volumes = e
	if got := volumeNames(t, e); len(got) != 0 {
		t.Fatalf("volumes of a new node = %v", got)
	}

	writer := newTask(t, "write:/data/kept=x")
	writer.Spec.Container.Mounts = []*objectv1.Mount{{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "data", Target: "/data"}}
	run(t, e, writer)
	wait(t, e, writer.Id) // exited: its container still mounts the volume
	sleeper := newTask(t, "sleep:inf")
	sleeper.Spec.Container.Mounts = []*objectv1.Mount{
		{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "busy", Target: "/busy"},
		{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "data", Target: "/data", ReadOnly: true},
	}
	run(t, e, sleeper)

	want := []string{"busy:" + sleeper.Id, "data:" + strings.Join(slices.Sorted(slices.Values([]string{writer.Id, sleeper.Id})), ",")}
	if got := volumeNames(t, e); !slices.Equal(got, want) {
		t.Errorf("volumes = %v, want %v", got, want)
	}

	for _, name := range []string{"data", "busy"} {
		err := e.RemoveVolume(ctxT(t), name)
		if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), sleeper.Id) {
			t.Errorf("RemoveVolume(%s) while mounted = %v, want FailedPrecondition naming %s", name, err, sleeper.Id)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "volumes", "data", "_data", "kept")); err != nil {
		t.Errorf("a refused removal touched the data: %v", err)
	}

	for _, id := range []string{writer.Id, sleeper.Id} {
		if err := e.Remove(ctxT(t), id); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := volumeNames(t, e), []string{"busy:", "data:"}; !slices.Equal(got, want) {
		t.Errorf("volumes after the tasks' removal = %v, want %v", got, want)
	}
	if err := e.RemoveVolume(ctxT(t), "data"); err != nil {
		t.Fatalf("RemoveVolume(data) = %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "volumes", "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume directory after removal: %v", err)
	}
	if got, want := volumeNames(t, e), []string{"busy:"}; !slices.Equal(got, want) {
		t.Errorf("volumes after removing data = %v, want %v", got, want)
	}
	if err := e.RemoveVolume(ctxT(t), "data"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("RemoveVolume of a removed volume = %v, want NotFound", err)
	}
	for _, bad := range []string{"", "..", "a/b", "../volumes"} {
		if err := e.RemoveVolume(ctxT(t), bad); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("RemoveVolume(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}
