package e2etest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestHealthChecks runs health checks in real containers on a real node: a
// passing check makes the task healthy (and `service ps` says so); a
// failing one (--health-cmd needs /bin/sh, which the test image lacks, as
// an image without a shell would in docker) gets the task failed with the
// check's output and replaced; a rolling update to a failing check pauses.
func TestHealthChecks(t *testing.T) {
	n := startNode(t)
	ms := func(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

	// A passing check, in docker's CMD form (through the API: the CLI's
	// --health-cmd is CMD-SHELL).
	spec := serviceSpec("hc-ok", 1)
	spec.Task.Container.Args = []string{"write:/tmp/ready=yes", "sleep:inf"}
	spec.Task.Container.Healthcheck = &objectv1.HealthConfig{
		Test: []string{"CMD", "/prog", "cat:/tmp/ready"}, Interval: ms(200 * time.Millisecond), Retries: 2,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := n.client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatalf("CreateService(hc-ok) = %v", err)
	}
	eventually(t, 60*time.Second, func(context.Context) error {
		ps, err := n.ps("hc-ok")
		if err != nil {
			return err
		}
		for _, task := range ps {
			if st := task.GetStatus(); st.GetState() == objectv1.TaskState_TASK_STATE_RUNNING && st.GetHealth() == objectv1.TaskHealth_TASK_HEALTH_HEALTHY {
				return nil
			}
		}
		return fmt.Errorf("want a running healthy task: %s", summary(ps))
	})
	if table := n.mustRun("service", "ps", "hc-ok"); !strings.Contains(table, "running (healthy)") {
		t.Errorf("service ps hc-ok does not show the health:\n%s", table)
	}

	// A failing check, from the CLI: the task is failed naming the check's
	// output, and replaced.
	n.mustRun("service", "create", "--name", "hc-bad", "--detach", "--restart-delay", "200ms",
		"--health-cmd", "exit 0", "--health-interval", "200ms", "--health-retries", "2", testImage, "sleep:inf")
	eventually(t, 90*time.Second, func(context.Context) error {
		ps, err := n.ps("hc-bad")
		if err != nil {
			return err
		}
		failed := 0
		for _, task := range ps {
			st := task.GetStatus()
			if st.GetState() == objectv1.TaskState_TASK_STATE_FAILED && strings.Contains(st.GetErr(), "unhealthy container") &&
				strings.Contains(st.GetErr(), "/bin/sh") && st.GetHealth() == objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY {
				failed++
			}
		}
		if failed < 2 {
			return fmt.Errorf("want at least 2 tasks failed as unhealthy (replaced once): %s", summary(ps))
		}
		return nil
	})
	if table := n.mustRun("service", "ps", "hc-bad"); !strings.Contains(table, "unhealthy container") {
		t.Errorf("service ps hc-bad does not show why its tasks failed:\n%s", table)
	}

	// A rolling update to a check that fails pauses, and the CLI says why.
	out, err := n.run("service", "update", "--timeout", "90s", "--update-monitor", "1s", "--health-cmd", "exit 0", "hc-ok")
	if err == nil || !strings.Contains(err.Error(), "update paused") || !strings.Contains(err.Error(), "unhealthy") {
		t.Errorf("service update to a failing check = %q, %v; want it to fail saying the update paused on an unhealthy task", out, err)
	}
	svc, err := n.client.GetService(ctx, &controlv1.GetServiceRequest{Ref: "hc-ok"})
	if err != nil {
		t.Fatal(err)
	}
	if st := svc.GetService().GetUpdateStatus(); st.GetState() != objectv1.UpdateState_UPDATE_STATE_PAUSED {
		t.Errorf("update status = %v, want PAUSED", st)
	}
}
