package netnstest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestDiscoveryFigures measures what BENCHMARKS.md records for issue 12 on
// three workers in namespaces: DNS answer latency in a task (Go's
// resolver, A and AAAA per lookup), and the time from a backend task's
// death (SIGKILL) to its removal from every node's VIP backends. It runs
// only in `make bench` (SHOAL_BENCH_DISCOVERY=KILLS): the figures are
// logged, not asserted; what it asserts is that every removal happens.
func TestDiscoveryFigures(t *testing.T) {
	kills, _ := strconv.Atoi(os.Getenv("SHOAL_BENCH_DISCOVERY"))
	if kills <= 0 {
		t.Skip("a measurement for make bench: SHOAL_BENCH_DISCOVERY=KILLS")
	}
	c := startCluster(t, 3)
	l, client := c.lab, c.client
	ctx := context.Background()
	if _, err := client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{
		Annotations: &objectv1.Annotations{Name: "app"}, Subnet: "10.252.0.0/16", NodePrefixLen: 24,
	}}); err != nil {
		t.Fatal(err)
	}
	echo := createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "echo"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: []string{fmt.Sprintf("listen:0.0.0.0:%d", echoPort), "sleep:inf"}},
			Placement: &objectv1.Placement{MaxReplicasPerNode: 1},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: "app"}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}},
	})
	runningTasks(t, l, client, echo, 3)
	out := runOnce(t, l, client, "client", "w1", "app", "lookupbench:1000:echo", "lookupbench:1000:tasks.echo", "lookupbench:1000:echo.1")
	t.Logf("DNS in a task on w1:\n%s", out)

	var removal []time.Duration
	for round := range kills {
		tasks := runningTasks(t, l, client, echo, 3)
		for _, tk := range tasks {
			a := netip.MustParsePrefix(tk.GetNetworks()[0].GetAddr()).Addr().String()
			for _, w := range c.workers {
				l.eventually(30*time.Second, fmt.Sprintf("%s balances to %s", w.name, a), func(ctx context.Context) error {
					if !strings.Contains(nftTable(t, w.ns), a) {
						return fmt.Errorf("not yet")
					}
					return nil
				})
			}
		}
		slices.SortFunc(tasks, func(a, b *objectv1.Task) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
		victim := tasks[round%len(tasks)]
		dead := netip.MustParsePrefix(victim.GetNetworks()[0].GetAddr()).Addr().String()
		killed := time.Now()
		if err := syscall.Kill(int(victim.GetStatus().GetPid()), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		gone := waitGone(c.workers, dead, killed, 5*time.Millisecond)
		for i, g := range gone {
			if g == 0 {
				t.Fatalf("round %d: %s still balances to the killed %s after 30s", round, c.workers[i].name, dead)
			}
			removal = append(removal, g)
		}
		t.Logf("round %d: killed %s on %s: gone from w1..w%d after %v", round, dead, victim.GetNodeId(), len(gone), gone)
	}
	slices.Sort(removal)
	at := func(q float64) time.Duration { return removal[min(len(removal)-1, int(q*float64(len(removal))))] }
	t.Logf("death to removal from a node's VIP backends, %d kills x %d nodes: p50 %s, p99 %s, max %s",
		kills, len(c.workers), at(0.5).Round(time.Millisecond), at(0.99).Round(time.Millisecond), removal[len(removal)-1].Round(time.Millisecond))
}
