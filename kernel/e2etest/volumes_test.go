package e2etest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestVolumePersists gives a service a named volume at /data: a file a
// task writes there is read back by the task that replaces it (a spec
// change, a new task on the same node), and is on the node under the
// executor's volumes directory, NAME/_data.
func TestVolumePersists(t *testing.T) {
	n := startNode(t)
	n.ok(t, "service", "create", "--name", "store", "--replicas", "1",
		"--mount", "type=volume,source=e2evol,target=/data", testImage, "sleep:inf")
	first := waitTasks(t, n, "store", 1, testImage)[0]

	const text = "kept across tasks"
	if r := n.cli("task", "exec", first.GetId(), "--", "/prog", "write:/data/note="+text); r.code != 0 {
		t.Fatalf("task exec write:/data/note: %+v", r)
	}
	onNode := filepath.Join(n.dir, "data", "plugins", "executor", "volumes", "e2evol", "_data", "note")
	if b, err := os.ReadFile(onNode); err != nil || string(b) != text {
		t.Errorf("on the node, %s: %q, %v; want %q", onNode, b, err, text)
	}

	// A spec change replaces the task.
	n.ok(t, "service", "update", "--env-add", "GENERATION=2", "store")
	var second = first
	eventually(t, 90*time.Second, func(context.Context) error {
		second = waitTasks(t, n, "store", 1, testImage)[0]
		if second.GetId() == first.GetId() {
			return fmt.Errorf("task %s still runs after the update", first.GetId())
		}
		return nil
	})
	if second.GetNodeId() != first.GetNodeId() {
		t.Errorf("the new task %s runs on node %s, the first on %s: want the same node", second.GetId(), second.GetNodeId(), first.GetNodeId())
	}
	if env := n.ok(t, "task", "exec", second.GetId(), "--", "/prog", "env:GENERATION"); env != "GENERATION=2\n" {
		t.Errorf("the new task's GENERATION: %q; want the updated spec's 2", env)
	}
	r := n.cli("task", "exec", second.GetId(), "--", "/prog", "cat:/data/note")
	if r.code != 0 || r.stdout != text {
		t.Errorf("the new task %s: cat /data/note = %+v; want %q, written by task %s", second.GetId(), r, text, first.GetId())
	}

	// volume ls and rm, through the managers to the node's executor: the
	// volume is listed with the tasks that mount it, and refused removal
	// while a container of one exists.
	if out := n.ok(t, "volume", "ls", "--format", "{{.name}} {{len .in_use_by}}"); !strings.Contains(out, "e2evol ") {
		t.Errorf("volume ls = %q, want e2evol listed", out)
	}
	node := second.GetNodeId()
	if r := n.cli("volume", "rm", "--node", node, "e2evol"); r.code == 0 || !strings.Contains(r.stderr, "in use") {
		t.Errorf("volume rm while used = %+v, want it refused as in use", r)
	}
	n.ok(t, "service", "rm", "store")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r := n.cli("volume", "rm", "--node", node, "e2evol")
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume rm after the service's removal: %+v", r)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out := n.ok(t, "volume", "ls", "--format", "{{.name}}"); strings.Contains(out, "e2evol") {
		t.Errorf("volume ls after rm = %q, want e2evol gone", out)
	}
}
