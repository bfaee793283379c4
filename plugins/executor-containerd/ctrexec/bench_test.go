package ctrexec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netattach"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// BenchmarkCreateToRunning measures one real container from Prepare (its
// image on the node) until Start has returned with its process running,
// and reports the p50 and p99 over at least 20 runs, in milliseconds.
// Removing each container is not timed. Its log driver is the plugin's
// binary, as in production. "host" shares the node's network (a task
// without networks); "network" gets a network namespace on a bridge from
// sdk/netattach.
func BenchmarkCreateToRunning(b *testing.B) {
	address := startContainerd(b)
	driver := filepath.Join(b.TempDir(), "executor-containerd")
	build := exec.Command("go", "build", "-o", driver, "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the plugin: %v\n%s", err, out)
	}
	b.Run("host", func(b *testing.B) { benchCreate(b, address, Options{LogDriver: driver}, nil) })
	b.Run("network", func(b *testing.B) {
		if _, err := os.Stat(netattach.DefaultCNIBinDir + "/bridge"); err != nil {
			b.Skipf("the CNI plugins are not installed (%v)", err)
		}
		opts := Options{LogDriver: driver, NewNetwork: func(dir string) (Network, error) {
			return netattach.New(netattach.Config{StateDir: dir})
		}}
		benchCreate(b, address, opts, func(i int) []*objectv1.NetworkAttachment {
			return []*objectv1.NetworkAttachment{{
				NetworkId: fmt.Sprintf("bench%d", os.Getpid()), NetworkName: "bench",
				Addr: fmt.Sprintf("10.232.%d.%d/16", i/200, 2+i%200), Subnet: "10.232.0.0/16",
				NodeSubnet: "10.232.0.0/16", Gateway: "10.232.255.254",
			}}
		})
	})
}

func benchCreate(b *testing.B, address string, opts Options, nets func(i int) []*objectv1.NetworkAttachment) {
	e := New(opts)
	defer e.Close()
	ctx := context.Background()
	if err := e.Configure(ctx, executor.NodeInfo{StateDir: b.TempDir(), ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
		b.Fatal(err)
	}
	var samples []time.Duration
	one := func() {
		task := newTask(b, "sleep:inf")
		if nets != nil {
			task.Networks = nets(len(samples))
		}
		start := time.Now()
		if err := e.Prepare(ctx, task, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := e.Start(ctx, task.Id); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(start))
		b.StopTimer()
		if err := e.Remove(ctx, task.Id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for b.Loop() {
		one()
	}
	for len(samples) < 20 {
		one()
	}
	slices.Sort(samples)
	pct := func(p float64) float64 {
		return float64(samples[int(p*float64(len(samples)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(samples)), "runs")
}
