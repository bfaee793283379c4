package e2etest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestJobs runs a replicated job of 20 completions, at most 5 at once, with
// real containers that sleep 300ms and exit 0: the job ends with 20
// COMPLETE tasks, no sample of its tasks ever shows more than 5 under way,
// none is restarted, and `service ls` shows it done. A spec change runs it
// again.
func TestJobs(t *testing.T) {
	n := startNode(t)
	// A job is not waited for: create returns at once.
	n.mustRun("service", "create", "--name", "batch", "--mode", "replicated-job", "--replicas", "20", "--max-concurrent", "5",
		testImage, "out:work", "sleep:300ms")
	id := n.serviceID("batch")
	maxUnderWay := 0
	wait := func(version uint64) []*objectv1.Task {
		var tasks []*objectv1.Task
		eventually(t, 120*time.Second, func(ctx context.Context) error {
			var err error
			if tasks, err = n.tasks(ctx, id); err != nil {
				return err
			}
			underWay, completed := 0, 0
			for _, task := range tasks {
				st := task.GetStatus().GetState()
				if task.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING && st < objectv1.TaskState_TASK_STATE_COMPLETE {
					underWay++
				}
				if task.GetSpecVersion() == version && st == objectv1.TaskState_TASK_STATE_COMPLETE {
					completed++
				}
			}
			maxUnderWay = max(maxUnderWay, underWay)
			if maxUnderWay > 5 {
				t.Fatalf("%d tasks under way at once, want at most 5: %s", underWay, summary(tasks))
			}
			if completed != 20 || underWay != 0 {
				return fmt.Errorf("%d of 20 completed, %d under way: %s", completed, underWay, summary(tasks))
			}
			return nil
		})
		return tasks
	}
	tasks := wait(1)
	if len(tasks) != 20 {
		t.Errorf("%d tasks, want 20 (none restarted): %s", len(tasks), summary(tasks))
	}
	if maxUnderWay == 0 {
		t.Errorf("no sample saw a task under way")
	}
	t.Logf("at most %d tasks seen under way at once", maxUnderWay)
	ls := n.mustRun("service", "ls")
	if !strings.Contains(ls, "(20/20 completed)") || !strings.Contains(ls, "replicated job") {
		t.Errorf("service ls:\n%s\nwant the job shown with (20/20 completed)", ls)
	}
	if ps := n.mustRun("service", "ps", "batch"); !strings.Contains(strings.ToLower(ps), "complete") {
		t.Errorf("service ps:\n%s\nwant COMPLETE tasks", ps)
	}

	// A spec change runs the job again.
	n.mustRun("service", "update", "--env-add", "RUN=2", "batch")
	maxUnderWay = 0
	wait(2)
}
