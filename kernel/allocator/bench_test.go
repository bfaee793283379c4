package allocator

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/state/statetest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// BenchmarkAllocate10000Tasks measures the stage from 10,000 placed tasks
// on one network (100 nodes) being written to all of them having their
// address recorded, through the real plugin process and a store that
// commits at once.
func BenchmarkAllocate10000Tasks(b *testing.B) {
	const tasks, nodes = 10000, 100
	host := startPlugin(b)
	for b.Loop() {
		r := statetest.NewRaft(state.New())
		svc := service("web", "net-a")
		if err := r.Update(context.Background(), func(tx *state.Tx) error {
			if err := tx.CreateNetwork(network("net-a", "a", "10.200.0.0/16", 24)); err != nil {
				return err
			}
			for i := range nodes {
				if err := tx.CreateNode(node(fmt.Sprintf("n%03d", i))); err != nil {
					return err
				}
			}
			return tx.CreateService(svc)
		}); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- New(r, r.Store, host, slog.New(slog.DiscardHandler)).Run(ctx) }()
		if err := r.Update(context.Background(), func(tx *state.Tx) error {
			for i := range tasks {
				if err := tx.CreateTask(placed(fmt.Sprintf("t%05d", i), svc, fmt.Sprintf("n%03d", i%nodes))); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		for {
			var left int
			r.Store.View(func(tx *state.ReadTx) {
				for _, tk := range tx.TasksByDesiredState(objectv1.TaskState_TASK_STATE_RUNNING) {
					if !Allocated(tk) {
						left++
					}
				}
			})
			if left == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
