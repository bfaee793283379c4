package e2etest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk/netattach"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// pollOne and pollMany are how often the benchmarks read the tasks while
// they wait, for one task and for hundreds: the measurements are this
// coarse. Listing 300 tasks every 5 ms took about 4 % of the machine's CPU
// from the node it measured, so the many-task benchmarks look 20 times a
// second (1 % of their 5 s target).
const (
	pollOne  = 5 * time.Millisecond
	pollMany = 50 * time.Millisecond
)

// serviceSpec is a replicated service of the test image that runs until
// stopped, on networks.
func serviceSpec(name string, replicas int64, networks ...string) *objectv1.ServiceSpec {
	spec := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: name},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: testImage, Args: []string{"sleep:inf"}},
			Restart:   &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_NONE},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}},
	}
	for _, nw := range networks {
		spec.Task.Networks = append(spec.Task.Networks, &objectv1.NetworkAttachmentConfig{Target: nw})
	}
	return spec
}

// progress is when all of a service's tasks first reached a state.
type progress struct {
	assigned, prepared, running time.Duration
	// third and twoThirds are when a third and two thirds of the tasks
	// ran: a rate that falls as the node fills shows in their spacing.
	third, twoThirds time.Duration
}

// waitAll polls the service's tasks from start until want of them run,
// noting when all were first assigned to the node and prepared (image and
// container ready, networks attached).
func waitAll(b *testing.B, n *node, serviceID string, want int, start time.Time, timeout time.Duration) progress {
	b.Helper()
	pollEvery := pollOne
	if want > 1 {
		pollEvery = pollMany
	}
	var p progress
	deadline := start.Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		tasks, err := n.tasks(ctx, serviceID)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		if len(tasks) >= want {
			assigned, prepared, running := 0, 0, 0
			for _, t := range tasks {
				st := t.GetStatus().GetState()
				if st >= objectv1.TaskState_TASK_STATE_COMPLETE {
					b.Fatalf("task %s ended: %s", t.GetId(), summary([]*objectv1.Task{t}))
				}
				if st >= objectv1.TaskState_TASK_STATE_ASSIGNED {
					assigned++
				}
				if st >= objectv1.TaskState_TASK_STATE_READY {
					prepared++
				}
				if st == objectv1.TaskState_TASK_STATE_RUNNING {
					running++
				}
			}
			if p.assigned == 0 && assigned >= want {
				p.assigned = elapsed
			}
			if p.prepared == 0 && prepared >= want {
				p.prepared = elapsed
			}
			if p.third == 0 && running >= want/3 {
				p.third = elapsed
			}
			if p.twoThirds == 0 && running >= 2*want/3 {
				p.twoThirds = elapsed
			}
			if running >= want {
				p.running = elapsed
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("not all %d tasks run within %v: %s", want, timeout, summary(tasks))
		}
		time.Sleep(pollEvery)
	}
}

// BenchmarkCreateToRunning measures one real container through the whole
// system: from the CreateService call of a one-replica service until the
// control API reports its task RUNNING (controlapi, Raft, orchestrator,
// allocator, scheduler plugin, dispatcher, agent, executor plugin,
// containerd, runc). It reports p50 and p99 over at least 20 services
// created one after another; removing each is not timed.
func BenchmarkCreateToRunning(b *testing.B) {
	n := startNode(b)
	var samples, assigned, prepared []time.Duration
	one := func() {
		name := fmt.Sprintf("lat%d", len(samples))
		start := time.Now()
		resp, err := n.client.CreateService(context.Background(), &controlv1.CreateServiceRequest{Spec: serviceSpec(name, 1)})
		if err != nil {
			b.Fatal(err)
		}
		p := waitAll(b, n, resp.GetService().GetId(), 1, start, 60*time.Second)
		samples = append(samples, p.running)
		assigned = append(assigned, p.assigned)
		prepared = append(prepared, p.prepared)
		b.StopTimer()
		if err := n.removeAllServices(60 * time.Second); err != nil {
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
	pct := func(ds []time.Duration, p float64) float64 {
		ds = slices.Sorted(slices.Values(ds))
		return float64(ds[int(p*float64(len(ds)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(samples, 0.50), "p50-ms")
	b.ReportMetric(pct(samples, 0.99), "p99-ms")
	// Where the time goes: until the task is placed on the node, and until
	// the node reports it prepared (p50s; each includes the one before).
	b.ReportMetric(pct(assigned, 0.50), "assigned-p50-ms")
	b.ReportMetric(pct(prepared, 0.50), "prepared-p50-ms")
	b.ReportMetric(float64(len(samples)), "runs")
}

// BenchmarkReplicasWithNetwork measures the time from the CreateService
// call until every replica of a service on a `shoal network create`
// network runs on the one node, each container in its own network
// namespace with its IPAM address. It also reports when every task was
// first assigned to the node (orchestrator, allocator, scheduler) and
// prepared (image, container and network namespace ready).
func BenchmarkReplicasWithNetwork(b *testing.B) {
	if _, err := os.Stat(netattach.DefaultCNIBinDir + "/bridge"); err != nil {
		b.Skipf("the CNI plugins are not installed (%v): run scripts/deps.sh", err)
	}
	n := startNode(b)
	// A /22 per node: 300 tasks fit one node's slice.
	netID := strings.TrimSpace(n.mustRun("network", "create", "--subnet", "10.213.0.0/16", "--node-prefix-len", "22", "benchnet"))
	// Before the node stops (cleanups run last first): the node takes the
	// network's bridge and firewall rules down after its last task left;
	// stopping it before then would leave them on the machine.
	b.Cleanup(func() {
		eventually(b, 30*time.Second, func(ctx context.Context) error {
			for _, table := range []string{"filter", "nat"} {
				out, err := exec.CommandContext(ctx, "iptables", "-w", "-t", table, "-S").Output()
				if err != nil {
					return nil // no iptables: no rules
				}
				if strings.Contains(string(out), "shoal network "+netID) {
					return fmt.Errorf("the node still has firewall rules of network %s in table %s", netID, table)
				}
			}
			return nil
		})
		if _, err := n.run("network", "rm", "benchnet"); err != nil {
			b.Error(err)
		}
	})
	for _, replicas := range []int{100, 300} {
		b.Run(fmt.Sprint(replicas), func(b *testing.B) {
			var sum progress
			runs := 0
			for b.Loop() {
				start := time.Now()
				resp, err := n.client.CreateService(context.Background(), &controlv1.CreateServiceRequest{
					Spec: serviceSpec(fmt.Sprintf("net%d-%d", replicas, runs), int64(replicas), "benchnet")})
				if err != nil {
					b.Fatal(err)
				}
				p := waitAll(b, n, resp.GetService().GetId(), replicas, start, 5*time.Minute)
				sum.assigned += p.assigned
				sum.prepared += p.prepared
				sum.running += p.running
				sum.third += p.third
				sum.twoThirds += p.twoThirds
				runs++
				b.StopTimer()
				if err := n.removeAllServices(5 * time.Minute); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			avg := func(d time.Duration) float64 { return d.Seconds() / float64(runs) }
			b.ReportMetric(avg(sum.assigned), "s-all-assigned")
			b.ReportMetric(avg(sum.prepared), "s-all-prepared")
			b.ReportMetric(avg(sum.third), "s-third-running")
			b.ReportMetric(avg(sum.twoThirds), "s-two-thirds-running")
			b.ReportMetric(avg(sum.running), "s-all-running")
		})
	}
}
