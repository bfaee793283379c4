package ctrexec

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/netattach"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The two benchmarks below split the time a node takes to start many
// networked replicas at once (kernel/e2etest's BenchmarkReplicasWithNetwork)
// into layers, with N containers of the test image started at once:
//
//   - BenchmarkRuntimeFloor: containerd, its shims and runc alone, through
//     the containerd client with no shoal code at all: a snapshot, a
//     container and a task per replica, each process in a new network
//     namespace of its own (runc creates it; nothing is attached) and with
//     no output kept. No node can start N networked containers faster on
//     this runtime than this.
//   - BenchmarkExecutorMany: the same N through this executor, as the agent
//     drives it: Prepare (namespace, bridge and address through the CNI
//     plugins, snapshot, container) then Start (task with its log driver),
//     all N at once.
//
// The e2e figure adds the cluster: create, placement, dispatch, the
// agent's reports. SHOAL_BENCH_FLOOR_N sets N (default 100).

func floorN() int {
	if n, err := strconv.Atoi(os.Getenv("SHOAL_BENCH_FLOOR_N")); err == nil && n > 0 {
		return n
	}
	return 100
}

func BenchmarkRuntimeFloor(b *testing.B) {
	address := startContainerd(b)
	n := floorN()
	c, err := client.New(address)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := namespaces.WithNamespace(context.Background(), testNamespace)
	img, err := c.GetImage(ctx, testImage)
	if err != nil {
		b.Fatal(err)
	}
	imgSpec, err := img.Spec(ctx)
	if err != nil {
		b.Fatal(err)
	}
	args := append(append([]string(nil), imgSpec.Config.Entrypoint...), "sleep:inf")
	for b.Loop() {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("floor%d-%d", os.Getpid(), i)
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, id := range ids {
			wg.Go(func() {
				ctr, err := c.NewContainer(ctx, id,
					client.WithImage(img),
					client.WithNewSnapshot(id, img),
					client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...), oci.WithHostname(id),
						oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace})),
				)
				if err != nil {
					errs <- fmt.Errorf("container %s: %w", id, err)
					return
				}
				tk, err := ctr.NewTask(ctx, cio.NullIO)
				if err != nil {
					errs <- fmt.Errorf("task %s: %w", id, err)
					return
				}
				if _, err := tk.Wait(ctx); err != nil {
					errs <- fmt.Errorf("wait %s: %w", id, err)
					return
				}
				if err := tk.Start(ctx); err != nil {
					errs <- fmt.Errorf("start %s: %w", id, err)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(errs)
		b.StopTimer()
		for _, id := range ids {
			removeFloor(ctx, c, id)
		}
		b.StartTimer()
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(elapsed.Seconds(), "all-running-s")
		b.ReportMetric(float64(elapsed.Milliseconds())/float64(n), "ms/container")
	}
}

// removeFloor kills and deletes one of BenchmarkRuntimeFloor's containers.
func removeFloor(ctx context.Context, c *client.Client, id string) {
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		return
	}
	if tk, err := ctr.Task(ctx, nil); err == nil {
		_, _ = tk.Delete(ctx, client.WithProcessKill)
	}
	_ = ctr.Delete(ctx, client.WithSnapshotCleanup)
}

func BenchmarkExecutorMany(b *testing.B) {
	address := startContainerd(b)
	if _, err := os.Stat(netattach.DefaultCNIBinDir + "/bridge"); err != nil {
		b.Skipf("the CNI plugins are not installed (%v)", err)
	}
	n := floorN()
	e := New(Options{LogDriver: env.driver, NewNetwork: func(dir string) (Network, error) {
		return netattach.New(netattach.Config{StateDir: dir})
	}})
	defer e.Close()
	ctx := context.Background()
	if err := e.Configure(ctx, executor.NodeInfo{StateDir: b.TempDir(), ContainerdAddress: address}, []byte(`namespace = "`+testNamespace+`"`)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		tasks := make([]*objectv1.Task, n)
		for i := range tasks {
			tasks[i] = newTask(b, "sleep:inf")
			tasks[i].Networks = []*objectv1.NetworkAttachment{{
				NetworkId: fmt.Sprintf("many%d", os.Getpid()), NetworkName: "many",
				Addr: fmt.Sprintf("10.233.%d.%d/16", i/200, 2+i%200), Subnet: "10.233.0.0/16",
				NodeSubnet: "10.233.0.0/16", Gateway: "10.233.255.254",
			}}
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, t := range tasks {
			wg.Go(func() {
				if err := e.Prepare(ctx, t, nil, nil); err != nil {
					errs <- err
					return
				}
				if err := e.Start(ctx, t.Id); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		close(errs)
		b.StopTimer()
		for _, t := range tasks {
			_ = e.Remove(ctx, t.Id)
		}
		b.StartTimer()
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(elapsed.Seconds(), "all-running-s")
		b.ReportMetric(float64(elapsed.Milliseconds())/float64(n), "ms/container")
	}
}
