package controlapi

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A service's rollback config (spec.rollback) paces a rollback as its
// update config paces an update; unset, the orchestrator uses the update
// config. Its failure action is PAUSE or CONTINUE: a rollback is not
// rolled back in turn, as Docker allows only pause|continue for
// --rollback-failure-action.

// validateRollback checks spec.rollback as validateUpdate checks
// spec.update, and refuses the failure action ROLLBACK.
func validateRollback(fe *sdk.FieldErrors, field string, r *objectv1.UpdateConfig) {
	if r == nil {
		return
	}
	validateUpdate(fe, field, r)
	if r.GetFailureAction() == objectv1.FailureAction_FAILURE_ACTION_ROLLBACK {
		fe.Add(field+".failure_action", "must be one of FAILURE_ACTION_PAUSE, FAILURE_ACTION_CONTINUE: a rollback is not rolled back, got %s", r.GetFailureAction())
	}
}

// applyRollbackDefaults fills the unset fields of a rollback config that
// was sent as ApplyServiceDefaults does an update config's. An unset
// rollback config stays unset: it means "as the update config".
func applyRollbackDefaults(r *objectv1.UpdateConfig) {
	if r == nil {
		return
	}
	if r.FailureAction == objectv1.FailureAction_FAILURE_ACTION_UNSPECIFIED {
		r.FailureAction = objectv1.FailureAction_FAILURE_ACTION_PAUSE
	}
	setDuration(&r.Monitor, DefaultUpdateMonitor)
	if r.Order == objectv1.UpdateOrder_UPDATE_ORDER_UNSPECIFIED {
		r.Order = objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST
	}
}

// markRollback marks next, the service UpdateService is about to write, as
// rolling back when its new spec is cur's previous spec (what `service
// rollback` sends): the orchestrator then paces it with spec.rollback, as
// it does an automatic rollback. next.spec_version must be the new one.
func markRollback(cur, next *objectv1.Service, now time.Time) {
	if cur.GetPreviousSpec() == nil || next.GetSpecVersion() == cur.GetSpecVersion() ||
		!proto.Equal(next.GetSpec(), cur.GetPreviousSpec()) {
		return
	}
	next.UpdateStatus = &objectv1.UpdateStatus{
		State:       objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED,
		StartedAt:   timestamppb.New(now),
		Message:     "manually requested rollback",
		SpecVersion: next.GetSpecVersion(),
	}
}
