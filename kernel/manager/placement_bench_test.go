package manager

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const nodeCount = 10000

// BenchmarkKernelPlacement10k measures the kernel's whole path from
// CreateService to every task committed as assigned, on one manager with
// 5,000 nodes recorded as ready (no workers: this isolates orchestrator,
// placement with the out-of-process scheduler plugin, and Raft).
func BenchmarkKernelPlacement10k(b *testing.B) {
	dir := b.TempDir()
	cfg := testConfig(b, filepath.Join(dir, "m"))
	m := start(b, cfg)
	ctx := context.Background()
	err := m.m.Raft().Update(ctx, func(tx *state.Tx) error {
		for i := range nodeCount {
			if err := tx.CreateNode(&objectv1.Node{Id: ids.New(), Role: objectv1.NodeRole_NODE_ROLE_WORKER,
				Spec:        &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
				Description: &objectv1.NodeDescription{Hostname: fmt.Sprintf("n%d", i), Executor: "simulated", Resources: &objectv1.Resources{NanoCpus: 8e9, MemoryBytes: 32 << 30}},
				Status:      &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	round := 0
	_ = nodeCount
	for b.Loop() {
		round++
		start := time.Now()
		svc, err := m.client(b).CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec(fmt.Sprintf("s%d", round), "example.local/app:1", 10000)})
		if err != nil {
			b.Fatal(err)
		}
		for {
			n := 0
			m.m.Store().View(func(tx *state.ReadTx) {
				for _, tk := range tx.TasksByService(svc.GetService().GetId()) {
					if tk.GetStatus().GetState() >= objectv1.TaskState_TASK_STATE_ASSIGNED {
						n++
					}
				}
			})
			if n == 10000 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.ReportMetric(time.Since(start).Seconds(), "assigned-s")
	}
}
