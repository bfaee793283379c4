package e2etest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/kernel/clustertest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestPullFromRegistry: a service whose image is only in a registry (a real
// docker-registry on 127.0.0.1) is pulled and runs; an unknown image in
// that registry, and an image on a registry that does not answer (a closed
// port), end their tasks with an error naming the image, in `service ps`.
func TestPullFromRegistry(t *testing.T) {
	requireRealContainers(t)
	registry := testimage.Registry(t)
	im, err := testimage.New("e2e/pulled:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := im.Push(ctx, registry, "e2e/pulled", "1"); err != nil {
		t.Fatal(err)
	}
	n := startNode(t)

	pulled := registry + "/e2e/pulled:1"
	n.mustRun("service", "create", "--name", "pulled", "--replicas", "2", pulled, "out:pulled", "sleep:inf")
	for _, task := range n.waitRunning(n.serviceID("pulled"), 2, 60*time.Second) {
		if got := task.GetSpec().GetContainer().GetImage(); got != pulled {
			t.Errorf("task %s runs image %q, want %q", task.GetId(), got, pulled)
		}
	}

	closed := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePorts(t, 1)[0])
	for _, tt := range []struct{ name, image string }{
		{"unknown", registry + "/e2e/no-such-image:1"},
		{"unreachable", closed + "/e2e/pulled:1"},
	} {
		// --detach: the service never converges.
		n.mustRun("service", "create", "--name", tt.name, "--detach", "--restart-delay", "500ms", tt.image, "sleep:inf")
		var errText string
		eventually(t, 60*time.Second, func(context.Context) error {
			ps, err := n.ps(tt.name)
			if err != nil {
				return err
			}
			for _, task := range ps {
				st := task.GetStatus()
				if st.GetState() >= objectv1.TaskState_TASK_STATE_COMPLETE && st.GetState() != objectv1.TaskState_TASK_STATE_COMPLETE &&
					strings.Contains(st.GetErr(), tt.image) {
					t.Logf("%s: task %s is %s: %s", tt.name, task.GetId(), st.GetState(), st.GetErr())
					errText = st.GetErr()
					return nil
				}
			}
			return fmt.Errorf("no task of %s ended with an error naming %s: %s", tt.name, tt.image, summary(ps))
		})
		if table := n.mustRun("service", "ps", "--no-trunc", tt.name); !strings.Contains(table, errText) {
			t.Errorf("service ps --no-trunc %s does not show the error %q:\n%s", tt.name, errText, table)
		}
	}
}
