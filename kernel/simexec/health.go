package simexec

import (
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// simHealth is a simulated task's health check. A task with a health check
// in its spec (any test but NONE) is STARTING from its start; HEALTHY once
// SHOAL_SIM_HEALTHY_AFTER has passed (at once when unset); UNHEALTHY once
// SHOAL_SIM_UNHEALTHY_AFTER has passed, if set, whatever it was before.
// Only the spec's check is simulated: a simulated image has none.
type simHealth struct {
	checked        bool
	healthyAfter   time.Duration
	unhealthyAfter time.Duration
	startedAt      time.Time
}

// hasHealthcheck reports whether a spec's health check runs a command.
func hasHealthcheck(h *objectv1.HealthConfig) bool {
	test := h.GetTest()
	return len(test) > 0 && test[0] != "NONE"
}

// now returns the health of a running task with its last check's output.
func (h simHealth) now() (objectv1.TaskHealth, string) {
	if !h.checked {
		return objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED, ""
	}
	ran := time.Since(h.startedAt)
	switch {
	case h.unhealthyAfter > 0 && ran >= h.unhealthyAfter:
		return objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY, "simulated health check failed: exit code 1"
	case ran >= h.healthyAfter:
		return objectv1.TaskHealth_TASK_HEALTH_HEALTHY, "simulated health check passed"
	}
	return objectv1.TaskHealth_TASK_HEALTH_STARTING, ""
}
