package clustertest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// BenchmarkFailover SIGKILLs the leader of a 3-manager cluster N times
// (SHOAL_BENCH_FAILOVER, default 5) and measures, each time, how long from
// the kill until a write through a surviving manager is acknowledged. The
// killed manager is restarted and rejoins before the next round.
func BenchmarkFailover(b *testing.B) {
	rounds := 5
	if v, err := strconv.Atoi(os.Getenv("SHOAL_BENCH_FAILOVER")); err == nil && v > 0 {
		rounds = v
	}
	for b.Loop() {
		c := Start(b, 3, Options{})
		var times []time.Duration
		for r := range rounds {
			leader := c.Leader(b, 30*time.Second)
			var survivor *Manager
			for _, m := range c.Running() {
				if m != leader {
					survivor = m
					break
				}
			}
			client := survivor.Client(b)
			t0 := time.Now()
			leader.Kill()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: serviceSpec(fmt.Sprintf("failover-%d", r))})
				cancel()
				if err == nil {
					break
				}
				if time.Since(t0) > 30*time.Second {
					b.Fatalf("round %d: no write acknowledged within 30s: %v", r, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			times = append(times, time.Since(t0))
			if err := leader.Start(); err != nil {
				b.Fatal(err)
			}
			c.WaitManagers(b, 3, 60*time.Second)
			time.Sleep(time.Second) // let the restarted manager catch up fully
		}
		slices.Sort(times)
		b.Logf("failover times over %d kills: %v", rounds, times)
		b.ReportMetric(times[len(times)/2].Seconds(), "p50-s")
		b.ReportMetric(times[len(times)*9/10].Seconds(), "p90-s")
		b.ReportMetric(times[len(times)-1].Seconds(), "max-s")
		c.Stop()
	}
}
