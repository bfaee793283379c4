package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

// volumeExec is an Executor (its task calls unused) with named volumes.
type volumeExec struct {
	Executor
	vols    []VolumeInfo
	removed []string
}

func (v *volumeExec) ListVolumes(context.Context) ([]VolumeInfo, error) { return v.vols, nil }

func (v *volumeExec) RemoveVolume(_ context.Context, name string) error {
	if name == "used" {
		return fmt.Errorf("volume used is in use by task t1: %w", sdk.ErrFailedPrecondition)
	}
	v.removed = append(v.removed, name)
	return nil
}

// plainExec is an Executor without volumes.
type plainExec struct{ Executor }

// TestVolumesOverGRPC: the optional Volumes capability crosses the wire
// with its errors' kinds; an executor without it, and a plugin that
// predates it, answer "no volumes".
func TestVolumesOverGRPC(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	impl := &volumeExec{vols: []VolumeInfo{{Name: "db", InUseBy: []string{"t2", "t1"}, CreatedAt: created}, {Name: "cache"}}}
	c := serve(t, NewServer(impl))
	got, err := c.ListVolumes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "db" || strings.Join(got[0].InUseBy, ",") != "t1,t2" || !got[0].CreatedAt.Equal(created) || !got[1].CreatedAt.IsZero() {
		t.Errorf("ListVolumes = %+v", got)
	}
	if err := c.RemoveVolume(t.Context(), "db"); err != nil || len(impl.removed) != 1 {
		t.Errorf("RemoveVolume(db) = %v, removed %v", err, impl.removed)
	}
	if err := c.RemoveVolume(t.Context(), "used"); !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "t1") {
		t.Errorf("RemoveVolume(used) = %v, want FailedPrecondition naming t1", err)
	}
	if err := c.RemoveVolume(t.Context(), ""); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("RemoveVolume(\"\") = %v, want InvalidArgument", err)
	}

	for name, c := range map[string]*Client{"without Volumes": serve(t, NewServer(plainExec{})), "predating volumes": serve(t, &liar{})} {
		if _, err := c.ListVolumes(t.Context()); !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "has no volumes") {
			t.Errorf("%s: ListVolumes = %v, want no volumes", name, err)
		}
		if err := c.RemoveVolume(t.Context(), "db"); !strings.Contains(fmt.Sprint(err), "has no volumes") {
			t.Errorf("%s: RemoveVolume = %v, want no volumes", name, err)
		}
	}
}
