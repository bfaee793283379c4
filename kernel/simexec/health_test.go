package simexec

import (
	"testing"
	"testing/synctest"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestSimulatedHealth: a task with a health check is STARTING, then HEALTHY
// and UNHEALTHY as its environment says; one without has no health.
func TestSimulatedHealth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := New(Config{})
		mk := func(id string, check bool, env ...string) {
			c := &objectv1.ContainerSpec{Image: "img", Env: env}
			if check {
				c.Healthcheck = &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "true"}}
			}
			if err := e.Prepare(t.Context(), &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: c}}, nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := e.Start(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		}
		mk("plain", false)
		mk("checked", true, EnvHealthyAfter+"=2s", EnvUnhealthyAfter+"=5s")
		check := func(id string, want objectv1.TaskHealth) {
			t.Helper()
			ti, err := e.Inspect(t.Context(), id)
			if err != nil || ti.Health != want {
				t.Errorf("%s at %v: health %v (%v), want %v", id, time.Now(), ti.Health, err, want)
			}
		}
		check("plain", objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED)
		check("checked", objectv1.TaskHealth_TASK_HEALTH_STARTING)
		time.Sleep(2 * time.Second)
		check("checked", objectv1.TaskHealth_TASK_HEALTH_HEALTHY)
		time.Sleep(3 * time.Second)
		check("checked", objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY)
	})
}
