package main

import (
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// The benchmark cluster: 5,000 nodes of 8 CPUs and 32 GiB in 50 racks of
// 100 (label rack=r0..r49); racks r0..r24 are half a, the others half b.
// One service's 10,000 tasks arrive in 10 batches of 1,000, as the
// orchestrator would write them after `service create --replicas 10000`.
const (
	benchNodes     = 5000
	benchRacks     = 50
	benchTasks     = 10000
	benchBatchSize = 1000
)

// BenchmarkPlace10kOn5kConstraint places 10,000 tasks constrained to half
// of the racks (node.labels.half==a), out of process.
func BenchmarkPlace10kOn5kConstraint(b *testing.B) {
	benchPlace(b, startPlugin(b), &objectv1.Placement{Constraints: []string{"node.labels.half==a"}})
}

// BenchmarkPlace10kOn5kSpread places 10,000 tasks spread over the racks
// (placement preference node.labels.rack), out of process.
func BenchmarkPlace10kOn5kSpread(b *testing.B) {
	benchPlace(b, startPlugin(b), &objectv1.Placement{Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}}})
}

// BenchmarkPlace10kOn5kConstraintInProcess is the same work without gRPC:
// the plugin's own share of the time.
func BenchmarkPlace10kOn5kConstraintInProcess(b *testing.B) {
	benchPlace(b, New(), &objectv1.Placement{Constraints: []string{"node.labels.half==a"}})
}

// BenchmarkPlace10kOn5kSpreadInProcess is the spread work without gRPC.
func BenchmarkPlace10kOn5kSpreadInProcess(b *testing.B) {
	benchPlace(b, New(), &objectv1.Placement{Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}}})
}

// startPlugin builds the plugin binary and starts it as the kernel does,
// through go-plugin.
func startPlugin(b *testing.B) scheduler.Scheduler {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "scheduler-spread")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {sdk.KindScheduler: &scheduler.Plugin{}}},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Cmd:              exec.Command(bin),
		Logger:           hclog.NewNullLogger(),
	})
	b.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		b.Fatalf("start plugin: %v", err)
	}
	raw, err := rpc.Dispense(sdk.KindScheduler)
	if err != nil {
		b.Fatalf("dispense: %v", err)
	}
	s := raw.(*scheduler.Client)
	if err := s.Configure(b.Context(), nil); err != nil {
		b.Fatalf("configure: %v", err)
	}
	return s
}

// benchPlace sends, per iteration, the whole view and then 10 batches of
// 1,000 tasks, each batch carrying the nodes the previous one changed, and
// reports the tasks placed per second.
func benchPlace(b *testing.B, s scheduler.Scheduler, p *objectv1.Placement) {
	iterations := 0
	for b.Loop() {
		c := newBenchCluster()
		for batch := range benchTasks / benchBatchSize {
			tasks := make([]*schedulerv1.TaskInfo, benchBatchSize)
			for i := range tasks {
				tasks[i] = &schedulerv1.TaskInfo{
					Id:           fmt.Sprintf("t%d-%d-%d", iterations, batch, i),
					ServiceId:    "web",
					Placement:    p,
					Reservations: &objectv1.Resources{NanoCpus: 1e8, MemoryBytes: 128 << 20},
				}
			}
			resp, err := s.Schedule(b.Context(), c.request(tasks))
			if err != nil {
				b.Fatalf("batch %d: %v", batch, err)
			}
			if placed := c.commit(tasks, resp); placed != len(tasks) {
				b.Fatalf("batch %d: placed %d of %d tasks", batch, placed, len(tasks))
			}
		}
		iterations++
	}
	b.ReportMetric(float64(iterations*benchTasks)/b.Elapsed().Seconds(), "tasks/s")
}

// benchCluster plays the kernel: it sends the whole view first, then the
// nodes each batch changed.
type benchCluster struct {
	version uint64
	nodes   []*schedulerv1.NodeInfo
	index   map[string]int
	changed map[int]bool
}

func newBenchCluster() *benchCluster {
	c := &benchCluster{index: make(map[string]int, benchNodes), changed: make(map[int]bool)}
	for i := range benchNodes {
		rack := i / (benchNodes / benchRacks)
		half := "a"
		if rack >= benchRacks/2 {
			half = "b"
		}
		n := &schedulerv1.NodeInfo{
			Id:       fmt.Sprintf("node-%04d", i),
			Hostname: fmt.Sprintf("host-%04d", i),
			Role:     objectv1.NodeRole_NODE_ROLE_WORKER,
			Platform: "linux/amd64",
			Labels:   map[string]string{"rack": fmt.Sprintf("r%d", rack), "half": half},
			Total:    &objectv1.Resources{NanoCpus: 8e9, MemoryBytes: 32 << 30},
			Reserved: &objectv1.Resources{},
		}
		c.index[n.Id] = i
		c.nodes = append(c.nodes, n)
	}
	return c
}

func (c *benchCluster) request(tasks []*schedulerv1.TaskInfo) *schedulerv1.ScheduleRequest {
	req := &schedulerv1.ScheduleRequest{ViewBase: c.version, ViewVersion: c.version + 1, Tasks: tasks}
	if c.version == 0 {
		req.UpsertNodes = c.nodes
	} else {
		for _, i := range slices.Sorted(maps.Keys(c.changed)) {
			req.UpsertNodes = append(req.UpsertNodes, c.nodes[i])
		}
	}
	c.version++
	clear(c.changed)
	return req
}

// commit records the placements as the kernel would, in new node values
// (an in-process scheduler may hold the old ones), and returns how many
// tasks were placed.
func (c *benchCluster) commit(tasks []*schedulerv1.TaskInfo, resp *schedulerv1.ScheduleResponse) int {
	placed := 0
	for i, d := range resp.GetDecisions() {
		if d.GetNodeId() == "" {
			continue
		}
		placed++
		j := c.index[d.GetNodeId()]
		old, t := c.nodes[j], tasks[i]
		n := &schedulerv1.NodeInfo{
			Id: old.Id, Hostname: old.Hostname, Role: old.Role, Platform: old.Platform, Labels: old.Labels, Total: old.Total,
			Reserved: &objectv1.Resources{
				NanoCpus:    old.Reserved.NanoCpus + t.Reservations.NanoCpus,
				MemoryBytes: old.Reserved.MemoryBytes + t.Reservations.MemoryBytes,
			},
			ServiceTasks: maps.Clone(old.ServiceTasks),
		}
		if n.ServiceTasks == nil {
			n.ServiceTasks = make(map[string]uint32)
		}
		n.ServiceTasks[t.ServiceId]++
		c.nodes[j] = n
		c.changed[j] = true
	}
	return placed
}

// BenchmarkPlaceManyServicesInProcess decides one batch of 1,000 tasks of
// 1,000 different services on 5,000 nodes, as after a node failure: every
// task is a class of its own.
func BenchmarkPlaceManyServicesInProcess(b *testing.B) {
	s := New()
	p := &objectv1.Placement{Constraints: []string{"node.labels.half==a"}}
	iterations := 0
	for b.Loop() {
		c := newBenchCluster()
		tasks := make([]*schedulerv1.TaskInfo, benchBatchSize)
		for i := range tasks {
			tasks[i] = &schedulerv1.TaskInfo{
				Id:           fmt.Sprintf("t%d", i),
				ServiceId:    fmt.Sprintf("svc%d", i),
				Placement:    p,
				Reservations: &objectv1.Resources{NanoCpus: 1e8, MemoryBytes: 128 << 20},
			}
		}
		resp, err := s.Schedule(b.Context(), c.request(tasks))
		if err != nil {
			b.Fatal(err)
		}
		if placed := c.commit(tasks, resp); placed != len(tasks) {
			b.Fatalf("placed %d of %d tasks", placed, len(tasks))
		}
		iterations++
	}
	b.ReportMetric(float64(iterations*benchBatchSize)/b.Elapsed().Seconds(), "tasks/s")
}
