package clustertest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// BenchmarkReadLatency measures what a linearizable read costs: GetService
// on a 3-manager cluster, 2,000 calls per way of asking, one at a time and
// then 8 at a time, through the leader's and a follower's socket, read
// linearizably (the default) and from the manager's own replica
// (shoal-read-local, what the leader answered before reads were made
// linearizable). It reports p50 and p99 in microseconds per way.
func BenchmarkReadLatency(b *testing.B) {
	const calls = 2000
	for b.Loop() {
		c := Start(b, 3, Options{})
		leader := c.Leader(b, 30*time.Second)
		var follower *Manager
		for _, m := range c.Managers {
			if m != leader {
				follower = m
				break
			}
		}
		lc := leader.Client(b)
		if _, err := lc.CreateService(context.Background(), &controlv1.CreateServiceRequest{Spec: serviceSpec("read-bench")}); err != nil {
			b.Fatal(err)
		}
		for _, way := range []struct {
			name  string
			m     *Manager
			local bool
		}{
			{"leader-linearizable", leader, false},
			{"leader-local", leader, true},
			{"follower-linearizable", follower, false},
			{"follower-local", follower, true},
		} {
			cl := way.m.Client(b)
			for _, par := range []int{1, 8} {
				lat := make([]time.Duration, 0, calls)
				var mu sync.Mutex
				var wg sync.WaitGroup
				for w := range par {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < calls; i += par {
							ctx := context.Background()
							if way.local {
								ctx = LocalRead(ctx)
							}
							t0 := time.Now()
							_, err := cl.GetService(ctx, &controlv1.GetServiceRequest{Ref: "read-bench"})
							d := time.Since(t0)
							if err != nil {
								b.Error(err)
								return
							}
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				slices.Sort(lat)
				p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
				b.Logf("%s, %d at a time: p50 %v, p99 %v", way.name, par, p50, p99)
				suffix := "-x1"
				if par > 1 {
					suffix = "-x8"
				}
				b.ReportMetric(float64(p50.Microseconds()), way.name+suffix+"-p50-us")
				b.ReportMetric(float64(p99.Microseconds()), way.name+suffix+"-p99-us")
			}
		}
		c.Stop()
	}
}
