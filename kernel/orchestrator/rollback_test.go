package orchestrator

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// rollbackMonitor differs from the update's testMonitor, so a test can
// tell which one watches a batch.
const rollbackMonitor = 3 * testMonitor

// rollingBackService updates one task at a time, stop-first, and rolls
// back on failure; its rollback replaces all tasks at once, start-first,
// watched for rollbackMonitor.
func rollingBackService() *objectv1.Service {
	svc := updatingService(4, 1, stopFirst, onRollback)
	svc.Spec.Rollback = &objectv1.UpdateConfig{
		Parallelism:   0,
		Monitor:       durationpb.New(rollbackMonitor),
		FailureAction: onPause,
		Order:         startFirst,
	}
	return svc
}

// TestRollbackUsesRollbackConfig: a rollback is paced by spec.rollback, not
// spec.update: both slots still running the failed image are replaced in
// one batch (parallelism 0) start-first, and the rollback completes only
// once they ran for the rollback's monitor.
func TestRollbackUsesRollbackConfig(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(rollingBackService())
		e.setImage("web", image2)
		e.drive("web", 2)
		e.waitFor("slot 3 replaced", func(tx *state.ReadTx) bool { return len(e.withImage("web", image2)) == 3 })
		e.idle()
		e.runAll("web")
		e.idle()
		e.report(e.withImage("web", image2)[3].GetId(), "", stateFailed)
		e.waitUpdateState("web", rollbackStarted)
		e.idle()

		// Slots 1 and 2 run image 2: both get their image 1 task at once,
		// beside the old one. The update's config would replace slot 1
		// alone, stopping its task first.
		images := e.images("web")
		for _, slot := range []uint64{1, 2} {
			got := slices.Sorted(slices.Values(images[slot]))
			if want := []string{image1, image2}; !slices.Equal(got, want) {
				t.Errorf("slot %d in the rollback's first batch = %q, want %q (start-first)", slot, got, want)
			}
		}
		if st := e.service("web").GetUpdateStatus(); st.GetUpdated() != 2 {
			t.Errorf("rollback's tasks replaced in its first batch = %d, want 2 (parallelism 0)", st.GetUpdated())
		}

		// The new tasks run; their old ones go.
		e.runAll("web")
		e.idle()
		e.stopRetired("web")
		e.idle()
		for slot, imgs := range e.images("web") {
			if len(imgs) != 1 || imgs[0] != image1 {
				t.Errorf("slot %d once the rollback's tasks run = %q, want only %s", slot, imgs, image1)
			}
		}
		// Past the update's monitor, the rollback's still watches them.
		time.Sleep(testMonitor + time.Second)
		e.idle()
		if got := e.service("web").GetUpdateStatus().GetState(); got != rollbackStarted {
			t.Errorf("state after the update's monitor = %v, want %v: the rollback's monitor is longer", got, rollbackStarted)
		}
		time.Sleep(rollbackMonitor)
		e.runAll("web")
		e.waitUpdateState("web", rollbackCompleted)
	})
}

// TestManualRollbackUsesRollbackConfig: a rollback the control API marked
// ROLLBACK_STARTED (`service rollback`) is paced by spec.rollback too.
func TestManualRollbackUsesRollbackConfig(t *testing.T) {
	bubble(t, func(e *env) {
		e.startUpdating(rollingBackService())
		e.setImage("web", image2)
		e.drive("web", 4)
		e.waitUpdateState("web", updateCompleted)

		// What the control API writes for `service rollback`.
		e.updateService("web", func(s *objectv1.Service) {
			s.Spec, s.PreviousSpec = s.GetPreviousSpec(), s.GetSpec()
			s.UpdateStatus = &objectv1.UpdateStatus{
				State:       rollbackStarted,
				StartedAt:   timestamppb.New(time.Now()),
				Message:     "manually requested rollback",
				SpecVersion: s.SpecVersion + 1, // updateService bumps it
			}
		})
		e.waitFor("the rollback's batch", func(tx *state.ReadTx) bool { return len(e.withImage("web", image1)) == 4 })
		e.idle()
		for slot, imgs := range e.images("web") {
			if got := slices.Sorted(slices.Values(imgs)); !slices.Equal(got, []string{image1, image2}) {
				t.Errorf("slot %d in the rollback's first batch = %q, want %q beside the old one", slot, got, image1)
			}
		}
		if st := e.service("web").GetUpdateStatus(); st.GetState() != rollbackStarted || st.GetUpdated() != 4 {
			t.Errorf("status in the rollback = %v, want ROLLBACK_STARTED with 4 replaced", st)
		}
	})
}

func TestPacing(t *testing.T) {
	update := &objectv1.UpdateConfig{Parallelism: 2, Order: stopFirst}
	rollback := &objectv1.UpdateConfig{Parallelism: 0, Order: startFirst}
	updating := &objectv1.UpdateStatus{State: updating}
	rollingBack := &objectv1.UpdateStatus{State: rollbackStarted}
	tests := []struct {
		name string
		spec *objectv1.ServiceSpec
		st   *objectv1.UpdateStatus
		want *objectv1.UpdateConfig
	}{
		{"update", &objectv1.ServiceSpec{Update: update, Rollback: rollback}, updating, update},
		{"new update", &objectv1.ServiceSpec{Update: update, Rollback: rollback}, nil, update},
		{"rollback", &objectv1.ServiceSpec{Update: update, Rollback: rollback}, rollingBack, rollback},
		{"rollback without its config", &objectv1.ServiceSpec{Update: update}, rollingBack, update},
		{"rollback without either", &objectv1.ServiceSpec{}, rollingBack, defaultRollback},
	}
	for _, tt := range tests {
		if got := pacing(tt.spec, tt.st); !proto.Equal(got, tt.want) {
			t.Errorf("pacing(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
