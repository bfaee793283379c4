package netnstest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// vxlanDevice is kernel/tasknet's VXLAN device.
const vxlanDevice = "shoal.vx"

// TestOverlayAcrossSubnets: the manager m1 and workers w1 and w2 on the
// lab's LAN, worker w3 on a second LAN behind a router namespace. A
// service with one task per worker on one network: w1 and w2 route each
// other's slices plainly (they share the LAN), and everyone routes w3's
// (and w3 theirs) through the VXLAN device, its peers' VTEP MACs learnt
// through gossip. Tasks connect across both kinds of route by address;
// the service's name and VIP, answered by w3's DNS and balanced by w3 over
// all three nodes, ride the same routes; and the service's published port
// answers on w3 through the routing mesh from the first LAN.
func TestOverlayAcrossSubnets(t *testing.T) {
	c := startCluster(t, 2)
	l := c.lab

	// The second LAN, its router, and routes to it from the first LAN's
	// nodes (the manager too: w3 joins it).
	lan2 := l.routedLAN()
	for _, ns := range []string{c.mns, c.workers[0].ns, c.workers[1].ns} {
		l.defaultRoute(ns, labPrefix)
	}
	w3 := addWorker(t, c, "w3", lan2, lab2Prefix, 4)
	w1, w2 := c.workers[0], c.workers[1]
	workers := []*worker{w1, w2, w3}
	slice, addr, taskOn := createOverlayEchoes(t, c, workers)
	checkOverlayRoutes(t, l, workers, w3, slice)
	checkOverlayProbes(t, c, w1, w2, w3, addr, taskOn)

	// The routing mesh on w3, from the manager on the first LAN: w3
	// balances over the three nodes' tasks, two of them through the
	// overlay, masqueraded from its own address on the network.
	for i := range 6 {
		l.waitHello(fmt.Sprintf("w3's published port answers the manager (%d)", i), c.mns, w3.addr, 9393)
	}
}

// createOverlayEchoes creates the network ovl and the service echo on it,
// one task on each worker, and returns by worker its slice of ovl (slice)
// and its echo task's address (addr), and by echo task ID (its hostname)
// the worker it runs on (taskOn).
func createOverlayEchoes(t *testing.T, c *cluster, workers []*worker) (slice, addr, taskOn map[string]string) {
	t.Helper()
	l, client := c.lab, c.client
	ctx := context.Background()

	if _, err := client.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{
		Annotations: &objectv1.Annotations{Name: "ovl"}, Subnet: "10.254.0.0/16", NodePrefixLen: 24,
	}}); err != nil {
		t.Fatal(err)
	}
	echo := createService(t, l, client, &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "echo"},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{Image: imageName, Args: []string{fmt.Sprintf("listen:0.0.0.0:%d", echoPort), "sleep:inf"}},
			Placement: &objectv1.Placement{MaxReplicasPerNode: 1},
			Networks:  []*objectv1.NetworkAttachmentConfig{{Target: "ovl"}},
		},
		Mode:     &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}},
		Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{{TargetPort: echoPort, PublishedPort: 9393}}},
	})
	echoes := runningTasks(t, l, client, echo, 3)
	slice = map[string]string{}
	addr = map[string]string{}
	taskOn = map[string]string{}
	for _, tk := range echoes {
		for _, w := range workers {
			if tk.GetNodeId() == c.nodeIDs[w.name] {
				slice[w.name] = tk.GetNetworks()[0].GetNodeSubnet()
				addr[w.name] = netip.MustParsePrefix(tk.GetNetworks()[0].GetAddr()).Addr().String()
				taskOn[tk.GetId()] = w.name
			}
		}
	}
	if len(slice) != 3 {
		t.Fatalf("echo tasks on %v, want one on each of w1, w2, w3", slice)
	}
	return slice, addr, taskOn
}

// checkOverlayRoutes checks the routes: plain between w1 and w2, through
// the VXLAN device to and from w3; and each worker's VXLAN device.
func checkOverlayRoutes(t *testing.T, l *lab, workers []*worker, w3 *worker, slice map[string]string) {
	t.Helper()
	type want struct{ from, to, route string }
	var wants []want
	for _, from := range workers {
		for _, to := range workers {
			if from == to {
				continue
			}
			r := slice[to.name] + " via " + to.addr + " dev eth0"
			if from == w3 || to == w3 {
				hop := netip.MustParsePrefix(slice[to.name]).Addr().String()
				r = slice[to.name] + " via " + hop + " dev " + vxlanDevice + " onlink"
			}
			wants = append(wants, want{from.name, to.name, r})
		}
	}
	for _, x := range wants {
		var from *worker
		for _, w := range workers {
			if w.name == x.from {
				from = w
			}
		}
		l.eventually(60*time.Second, fmt.Sprintf("%s routes %s's slice: %s", x.from, x.to, x.route), func(ctx context.Context) error {
			out, err := exec.CommandContext(ctx, "ip", "-n", from.ns, "-4", "route", "show", "proto", routeProtocol).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ip route: %v: %s", err, out)
			}
			for line := range strings.Lines(string(out)) {
				if strings.HasPrefix(strings.TrimSpace(line), x.route) {
					return nil
				}
			}
			return fmt.Errorf("routes of %s:\n%s", x.from, out)
		})
	}
	for _, w := range workers {
		out, err := exec.Command("ip", "-n", w.ns, "-d", "link", "show", vxlanDevice).CombinedOutput()
		if err != nil {
			t.Errorf("%s has no %s: %v: %s", w.name, vxlanDevice, err, out)
			continue
		}
		for _, s := range []string{"vxlan id 4000", "local " + w.addr, "dstport 4789", "nolearning", "mtu 1450"} {
			if !strings.Contains(string(out), s) {
				t.Errorf("%s's %s lacks %q:\n%s", w.name, vxlanDevice, s, out)
			}
		}
		t.Logf("%s:\n%s", w.name, ipOut(t, w.ns, "-4", "route", "show", "proto", routeProtocol)+ipOut(t, w.ns, "neigh", "show", "dev", vxlanDevice))
	}
}

// checkOverlayProbes checks that tasks connect by address: w1 to w2
// (plain) and w3 (VXLAN), w3 to w1 and w2 (VXLAN); then, from w3, by the
// service's name, through its VIP, to backends on every node.
func checkOverlayProbes(t *testing.T, c *cluster, w1, w2, w3 *worker, addr, taskOn map[string]string) {
	t.Helper()
	l, client := c.lab, c.client
	const conns = 12
	for _, p := range []struct {
		from *worker
		to   []*worker
	}{{w1, []*worker{w2, w3}}, {w3, []*worker{w1, w2}}} {
		var args []string
		for _, to := range p.to {
			args = append(args, fmt.Sprintf("connectn:1:%s:%d", addr[to.name], echoPort))
		}
		if p.from == w3 {
			args = append(args, "lookup:echo", fmt.Sprintf("connectn:%d:echo:%d", conns, echoPort))
		}
		out := runOnce(t, l, client, "probe-"+p.from.name, p.from.name, "ovl", args...)
		t.Logf("probe on %s:\n%s", p.from.name, out)
		wantHellos := len(p.to)
		if p.from == w3 {
			wantHellos += conns
			if !strings.Contains(out, "lookup echo: 10.254.") {
				t.Errorf("on w3, echo did not resolve to its VIP: %s", out)
			}
		}
		if n := strings.Count(out, "hello from "); n != wantHellos || strings.Contains(out, "connect error") {
			t.Errorf("the probe on %s got %d answers, want %d, none failed:\n%s", p.from.name, n, wantHellos, out)
		}
		// Each answer names its task: the direct connections reached the
		// task asked for, and the VIP's each reached one of echo's tasks
		// (the direct probes above show the overlay carries them; which
		// node the VIP picks is random, so it is logged, not asserted).
		var from []string
		for line := range strings.Lines(out) {
			if id, ok := strings.CutPrefix(strings.TrimSpace(line), "hello from "); ok {
				from = append(from, taskOn[id])
			}
		}
		for i, to := range p.to {
			if i >= len(from) || from[i] != to.name {
				t.Errorf("the probe on %s: answers from %v, want %s's task's at %d", p.from.name, from, to.name, i)
			}
		}
		if p.from == w3 && len(from) > len(p.to) {
			if slices.Contains(from[len(p.to):], "") {
				t.Errorf("on w3, a connection to the VIP was answered by none of echo's tasks: %v", from)
			}
			t.Logf("on w3, the VIP's %d connections were answered by the tasks on %v", conns, from[len(p.to):])
		}
	}
}

// addWorker starts one more worker of cluster c, in a new namespace on
// the LAN whose namespace is lan (prefix+host), routed to the other LAN
// through the router, and waits until it is ready and has the test image.
func addWorker(t *testing.T, c *cluster, name, lan, prefix string, host int) *worker {
	t.Helper()
	l := c.lab
	w := &worker{name: name, addr: fmt.Sprintf("%s%d", prefix, host)}
	w.ns = l.nodeOn(lan, prefix, name, host)
	l.defaultRoute(w.ns, prefix)
	var token string
	l.eventually(30*time.Second, "the worker token", func(ctx context.Context) error {
		resp, err := c.client.GetCluster(ctx, &controlv1.GetClusterRequest{})
		if err != nil {
			return err
		}
		if token = resp.GetCluster().GetRootCa().GetJoinTokens().GetWorker(); token == "" {
			return errors.New("no worker token")
		}
		return nil
	})
	w.agent = l.start(name, w.ns, fmt.Sprintf(`version = 1
[node]
hostname = %[1]q
data_dir = %[2]q
role = "worker"
[join]
addrs = ["%[3]s1:4242"]
token = %[4]q
[metrics]
listen_addr = ""
[log]
level = "debug"
`, name, filepath.Join(l.dir, name, "data"), labPrefix, token))
	l.eventually(90*time.Second, name+" ready, gossiping from "+w.addr, func(ctx context.Context) error {
		resp, err := c.client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range resp.GetNodes() {
			if n.GetDescription().GetHostname() != name {
				continue
			}
			if n.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY {
				return fmt.Errorf("%s is %s", name, n.GetStatus().GetState())
			}
			if want := w.addr + ":7946"; n.GetDescription().GetGossipAddr() != want {
				return fmt.Errorf("%s gossips at %q, want %s", name, n.GetDescription().GetGossipAddr(), want)
			}
			c.nodeIDs[name] = n.GetId()
			return nil
		}
		return fmt.Errorf("no node %s yet", name)
	})
	l.eventually(60*time.Second, "import the image on "+name, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, l.bin, "image", "import", "--config", w.agent.config, filepath.Join(l.dir, "image.tar")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("shoal image import: %v: %s", err, out)
		}
		return nil
	})
	c.workers = append(c.workers, w)
	return w
}

// ipOut runs ip(8) in namespace ns, for the log.
func ipOut(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
