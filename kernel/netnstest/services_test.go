package netnstest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestServicesFindEachOther: on the lab's two workers, a service's tasks
// are found by name through each node's DNS (the service's VIP,
// tasks.SERVICE, a task's name, a network alias; a name on another network
// is not), connections to the VIP reach every backend on both nodes (the
// client's own node included: the hairpin case), and a port published
// through the routing mesh answers on a node that runs no task of the
// service, on its LAN address and on its 127.0.0.1.
func TestServicesFindEachOther(t *testing.T) {
	c := startCluster(t, 2)
	l, client := c.lab, c.client
	ctx := context.Background()
	echo, solo, starting := createDiscoveryServices(ctx, t, c)

	echoes := runningTasks(t, l, client, echo, 2)
	startingTask := runningTasks(t, l, client, starting, 1)[0]
	if h := startingTask.GetStatus().GetHealth(); h != objectv1.TaskHealth_TASK_HEALTH_STARTING {
		t.Errorf("the starting task's health is %s, want starting", h)
	}
	soloTask := runningTasks(t, l, client, solo, 1)[0]
	if soloTask.GetNodeId() != c.nodeIDs["w1"] {
		t.Fatalf("solo runs on %s, want w1 (%s)", soloTask.GetNodeId(), c.nodeIDs["w1"])
	}
	if p := soloTask.GetEndpoint().GetPorts(); len(p) != 1 || p[0].GetMode() != objectv1.PublishMode_PUBLISH_MODE_INGRESS {
		t.Errorf("solo's port %v, want it published in mode ingress (the default on a network)", p)
	}
	vip, taskAddrs, slot1 := echoAddrs(ctx, t, client, echo, echoes)

	checkClientFindsServices(t, c, vip, taskAddrs, slot1)
	checkExecOnW2(t, c, echoes, slot1)
	checkMeshAnswers(t, c)
	checkKilledBackendLeaves(t, c, echoes)
}

// createDiscoveryServices creates the networks app and other, and on them
// the services of TestServicesFindEachOther; it returns the IDs of echo,
// solo and starting.
func createDiscoveryServices(ctx context.Context, t *testing.T, c *cluster) (echo, solo, starting string) {
	t.Helper()
	l, client := c.lab, c.client
	for _, n := range []*objectv1.NetworkSpec{
		{Annotations: &objectv1.Annotations{Name: "app"}, Subnet: "10.252.0.0/16", NodePrefixLen: 24},
		{Annotations: &objectv1.Annotations{Name: "other"}, Subnet: "10.253.0.0/16", NodePrefixLen: 24},
	} {
		if _, err := client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: n}); err != nil {
			t.Fatal(err)
		}
	}
	listen := []string{fmt.Sprintf("listen:0.0.0.0:%d", echoPort), "sleep:inf"}
	echo = createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "echo"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: listen},
			Placement: &objectv1.Placement{MaxReplicasPerNode: 1},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: "app", Aliases: []string{"backend"}}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}},
	})
	// One task, on w1 only, published through the mesh: w2 runs none.
	solo = createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "solo"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: listen},
			Placement: &objectv1.Placement{Constraints: []string{"node.hostname==w1"}},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: "app"}},
		},
		Mode:     &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
		Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{TargetPort: echoPort, PublishedPort: 9191}}},
	})
	// A task whose health check has not passed (it fails, within a long
	// start period) runs but is not a backend: out of tasks.SERVICE and of
	// its VIP, whose connections are refused.
	starting = createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "starting"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: listen, Healthcheck: &objectv1.HealthConfig{
				Test: []string{"CMD", "/prog", "exit:1"}, Interval: durationpb.New(time.Second), StartPeriod: durationpb.New(time.Hour),
			}},
			Networks: []*objectv1.NetworkAttachmentConfig{{Target: "app"}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
	})
	// On another network: its name must not resolve on app.
	createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "hidden"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: []string{"sleep:inf"}},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: "other"}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
	})
	return echo, solo, starting
}

// echoAddrs returns echo's VIP, its tasks' addresses (sorted) and slot 1's,
// and checks that each task records the VIP.
func echoAddrs(ctx context.Context, t *testing.T, client controlv1.ControlClient, echo string, echoes []*objectv1.Task) (vip string, taskAddrs []string, slot1 string) {
	t.Helper()
	svc, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: echo})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range svc.GetService().GetVirtualIps() {
		vip = netip.MustParsePrefix(v.GetAddr()).Addr().String()
	}
	if vip == "" {
		t.Fatalf("echo has no VIP: %v", svc.GetService().GetVirtualIps())
	}
	for _, tk := range echoes {
		a := netip.MustParsePrefix(tk.GetNetworks()[0].GetAddr()).Addr().String()
		taskAddrs = append(taskAddrs, a)
		if tk.GetSlot() == 1 {
			slot1 = a
		}
		if svc := tk.GetNetworks()[0].GetServiceVip(); netip.MustParsePrefix(svc).Addr().String() != vip {
			t.Errorf("task %s records service_vip %q, want %s", tk.GetId(), svc, vip)
		}
	}
	slices.Sort(taskAddrs)
	return vip, taskAddrs, slot1
}

// checkClientFindsServices runs a client on w1, where one echo task runs
// too, and checks what it resolves and that its connections to echo's VIP
// reach both backends.
func checkClientFindsServices(t *testing.T, c *cluster, vip string, taskAddrs []string, slot1 string) {
	t.Helper()
	l, client := c.lab, c.client
	const conns = 40
	hostnames := map[string]bool{}
	out := runOnce(t, l, client, "client", "w1", "app",
		"lookup:echo", "lookup:tasks.echo", "lookup:backend", "lookup:echo.1", "lookup:hidden", "lookup:tasks.hidden",
		"lookup:tasks.starting", fmt.Sprintf("connectn:1:starting:%d", echoPort),
		fmt.Sprintf("connectn:%d:echo:%d", conns, echoPort))
	t.Logf("client output:\n%s", out)
	for name, want := range map[string]string{
		"echo":         vip,
		"backend":      vip,
		"tasks.echo":   strings.Join(taskAddrs, " "),
		"echo.1":       slot1,
		"hidden":       "error",
		"tasks.hidden": "error",
		// Not healthy yet: no backend.
		"tasks.starting": "error",
	} {
		line := fmt.Sprintf("lookup %s: %s", name, want)
		if !strings.Contains(out, line) {
			t.Errorf("the client resolved %s wrong: want %q in its output", name, line)
		}
	}
	if !strings.Contains(out, "connect error:") || !strings.Contains(out, "connection refused") {
		t.Errorf("a connection to the VIP of a service with no healthy task: want it refused (connect error: ... connection refused)")
	}
	for _, line := range strings.Split(out, "\n") {
		if h, ok := strings.CutPrefix(line, "hello from "); ok {
			hostnames[h] = true
		}
	}
	if len(hostnames) != 2 || strings.Count(out, "hello from ") != conns {
		t.Errorf("%d connections to the VIP %s:%d: %d answered, by %d backends (%v); want all answered, by both",
			conns, vip, echoPort, strings.Count(out, "hello from "), len(hostnames), hostnames)
	}
}

// checkExecOnW2 runs shoal task exec, through the manager, in echo's task
// on another node (w2): its output, and its exit status as the CLI's.
func checkExecOnW2(t *testing.T, c *cluster, echoes []*objectv1.Task, slot1 string) {
	t.Helper()
	l := c.lab
	for _, tk := range echoes {
		if tk.GetNodeId() != c.nodeIDs["w2"] {
			continue
		}
		out, err := exec.Command(l.bin, "--host", "unix://"+c.socket, "task", "exec", tk.GetId(), "--", "/prog", "lookup:echo.1").CombinedOutput()
		if want := "lookup echo.1: " + slot1; err != nil || !strings.Contains(string(out), want) {
			t.Errorf("task exec %s (on w2) -- /prog lookup:echo.1: %v, %q; want %q", tk.GetId(), err, out, want)
		}
		err = exec.Command(l.bin, "--host", "unix://"+c.socket, "task", "exec", tk.GetId(), "--", "/prog", "exit:3").Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("task exec %s (on w2) -- /prog exit:3: %v, want exit status 3", tk.GetId(), err)
		}
	}
}

// checkMeshAnswers checks solo's port on w2 (no task of solo there), on its
// LAN address from the manager's namespace and on its own 127.0.0.1.
func checkMeshAnswers(t *testing.T, c *cluster) {
	t.Helper()
	l := c.lab
	w2 := c.workers[1]
	for _, probe := range []struct{ ns, addr string }{
		{c.mns, w2.addr},
		{w2.ns, "127.0.0.1"},
		{c.mns, c.workers[0].addr},
	} {
		l.waitHello(fmt.Sprintf("%s:9191 answers from %s", probe.addr, probe.ns), probe.ns, probe.addr, 9191)
	}
}

// checkKilledBackendLeaves kills the echo task on w2: its address leaves
// every node's VIP backends (and, in the same step before it, their DNS
// index: see kernel/node/services.go), measured from the kill to its
// absence.
func checkKilledBackendLeaves(t *testing.T, c *cluster, echoes []*objectv1.Task) {
	t.Helper()
	l, client := c.lab, c.client
	var victim *objectv1.Task
	for _, tk := range echoes {
		if tk.GetNodeId() == c.nodeIDs["w2"] {
			victim = tk
		}
	}
	if victim == nil || victim.GetStatus().GetPid() == 0 {
		t.Fatalf("no echo task with a PID on w2: %v", victim)
	}
	dead := netip.MustParsePrefix(victim.GetNetworks()[0].GetAddr()).Addr().String()
	for _, w := range c.workers {
		if out := nftTable(t, w.ns); !strings.Contains(out, dead) {
			t.Fatalf("%s's table does not hold the backend %s before the kill:\n%s", w.name, dead, out)
		}
	}
	killed := time.Now()
	if err := syscall.Kill(int(victim.GetStatus().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone := waitGone(c.workers, dead, killed, 10*time.Millisecond)
	for i, w := range c.workers {
		if gone[i] == 0 {
			t.Errorf("%s still balances to the killed task's %s 30s after the kill", w.name, dead)
			continue
		}
		t.Logf("%s: the killed task's %s left the VIP backends %s after the kill (polled every 10 ms)", w.name, dead, gone[i].Round(time.Millisecond))
	}
	out := runOnce(t, l, client, "client2", "w1", "app", "lookup:tasks.echo")
	if strings.Contains(out, dead) {
		t.Errorf("after the kill, tasks.echo still gives the dead task's %s: %s", dead, out)
	}
}

// waitGone polls each worker's balancer table every interval until addr
// is no longer in it, at most 30 s after since, and returns how long after
// since each saw it gone (0: never).
func waitGone(workers []*worker, addr string, since time.Time, interval time.Duration) []time.Duration {
	gone := make([]time.Duration, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() {
			for time.Since(since) < 30*time.Second {
				out, err := exec.Command("ip", "netns", "exec", w.ns, "nft", "list", "table", "ip", "shoal").CombinedOutput()
				if err == nil && !strings.Contains(string(out), addr) {
					gone[i] = time.Since(since)
					return
				}
				time.Sleep(interval)
			}
		})
	}
	wg.Wait()
	return gone
}

// nftTable lists the balancer's table in namespace ns.
func nftTable(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "shoal").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table ip shoal in %s: %v: %s", ns, err, out)
	}
	return string(out)
}

// runningTasks waits until service id has n running tasks and returns them.
func runningTasks(t *testing.T, l *lab, client controlv1.ControlClient, id string, n int) []*objectv1.Task {
	t.Helper()
	var running []*objectv1.Task
	l.eventually(120*time.Second, fmt.Sprintf("%d running tasks of %s", n, id), func(ctx context.Context) error {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
		if err != nil {
			return err
		}
		running = running[:0]
		var states []string
		for _, tk := range resp.GetTasks() {
			states = append(states, fmt.Sprintf("%s: %s %s", tk.GetId(), tk.GetStatus().GetState(), tk.GetStatus().GetErr()))
			if tk.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
				running = append(running, tk)
			}
		}
		if len(running) != n {
			return fmt.Errorf("tasks: %v", states)
		}
		return nil
	})
	return running
}

// runOnce runs a one-shot task of the test image on node with args, on
// network, and returns its output once it completed.
func runOnce(t *testing.T, l *lab, client controlv1.ControlClient, name, node, network string, args ...string) string {
	t.Helper()
	id := createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: name},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: args},
			Restart:   &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_NONE},
			Placement: &objectv1.Placement{Constraints: []string{"node.hostname==" + node}},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: network}},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
	})
	var taskID string
	l.eventually(120*time.Second, name+" completes", func(ctx context.Context) error {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{id}})
		if err != nil {
			return err
		}
		for _, tk := range resp.GetTasks() {
			st := tk.GetStatus()
			switch st.GetState() {
			case objectv1.TaskState_TASK_STATE_COMPLETE:
				taskID = tk.GetId()
				return nil
			case objectv1.TaskState_TASK_STATE_FAILED, objectv1.TaskState_TASK_STATE_REJECTED:
				t.Errorf("%s ended %s, exit code %d: %s", name, st.GetState(), st.GetExitCode(), st.GetErr())
				taskID = tk.GetId()
				return nil
			}
			return fmt.Errorf("task %s is %s", tk.GetId(), st.GetState())
		}
		return errors.New("no task yet")
	})
	return taskLogs(t, client, taskID)
}

// waitHello waits up to 30s until addr:port, dialed from network namespace
// ns, answers "hello from ..."; what describes the wait.
func (l *lab) waitHello(what, ns, addr string, port int) {
	l.eventually(30*time.Second, what, func(ctx context.Context) error {
		got, err := dialFrom(ctx, ns, addr, port)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got, "hello from ") {
			return fmt.Errorf("answered %q", got)
		}
		return nil
	})
}

// dialFrom connects to addr:port from network namespace ns and returns the
// first line it answers.
func dialFrom(ctx context.Context, ns, addr string, port int) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "timeout", "5", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && head -n1 <&3", addr, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("connect from %s to %s:%d: %v: %s", ns, addr, port, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
