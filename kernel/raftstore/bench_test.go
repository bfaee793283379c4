package raftstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// BenchmarkProposer commits 100,000 small updates from 1,000 concurrent
// writers on a 3-manager cluster (raft-wal with fsync, mutual TLS on
// 127.0.0.1), and reports objects committed per second, the entries used
// and the commit latency percentiles each writer saw.
func BenchmarkProposer(b *testing.B) {
	const (
		updates = 100_000
		writers = 1_000
	)
	c := newTestCluster(b, 3)
	leader := c.waitLeader()
	ctx := context.Background()
	// One task per writer, updated over and over.
	err := leader.Update(ctx, func(tx *state.Tx) error {
		for w := range writers {
			if err := tx.CreateTask(benchTask(w)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var (
		totalDur   time.Duration
		latencies  []time.Duration
		entries    uint64
		iterations int
	)
	for b.Loop() {
		start := leader.Stats()
		var next atomic.Int64
		lat := make([][]time.Duration, writers)
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= updates {
					s := time.Now()
					err := leader.Update(ctx, func(tx *state.Tx) error {
						t := tx.Task(fmt.Sprintf("task-%d", w))
						n := benchTask(w)
						n.Meta = t.GetMeta()
						n.Status.Message = s.String()
						return tx.UpdateTask(n)
					})
					if err != nil {
						b.Error(err)
						return
					}
					lat[w] = append(lat[w], time.Since(s))
				}
			}()
		}
		wg.Wait()
		totalDur += time.Since(t0)
		for _, l := range lat {
			latencies = append(latencies, l...)
		}
		entries += leader.Stats().Entries - start.Entries
		iterations++
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(updates*iterations)/totalDur.Seconds(), "objects/s")
	b.ReportMetric(float64(entries)/float64(iterations), "entries/op")
	b.ReportMetric(float64(latencies[len(latencies)*50/100].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkCreate10kTasks creates 10,000 tasks in one write on a 3-manager
// cluster and reports the Raft entries it took.
func BenchmarkCreate10kTasks(b *testing.B) {
	c := newTestCluster(b, 3)
	leader := c.waitLeader()
	ctx := context.Background()
	var entries uint64
	round := 0
	for b.Loop() {
		start := leader.Stats().Entries
		err := leader.Update(ctx, func(tx *state.Tx) error {
			for i := range 10_000 {
				t := benchTask(i)
				t.Id = fmt.Sprintf("r%d-task-%d", round, i)
				if err := tx.CreateTask(t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		entries += leader.Stats().Entries - start
		round++
	}
	b.ReportMetric(float64(entries)/float64(round), "entries/op")
}

func benchTask(i int) *objectv1.Task {
	return &objectv1.Task{
		Id:           fmt.Sprintf("task-%d", i),
		ServiceId:    "svc-bench",
		Slot:         uint64(i + 1),
		DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
		Spec:         &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "example.local/app:1"}},
		Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_PENDING},
	}
}
