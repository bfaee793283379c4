package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/internal/ps"
	"github.com/shoalhq/shoal/internal/testbin"
	"github.com/shoalhq/shoal/kernel/pluginhost"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/state/statetest"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/ipam"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// pluginBin is plugins/ipam, built by TestMain: the tests run the real
// plugin process, as the manager does.
var pluginBin string

func TestMain(m *testing.M) {
	testbin.Main(m, "../../plugins/ipam", func(path string) { pluginBin = path })
}

// waitLimit bounds every wait; reaching it is a failure.
const waitLimit = 60 * time.Second

// startPlugin runs the IPAM plugin under a pluginhost.Host until the test
// ends.
func startPlugin(t testing.TB) *pluginhost.Host[ipam.IPAM] {
	t.Helper()
	// A short directory: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "alloc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h, err := pluginhost.New[ipam.IPAM](pluginhost.Config{
		Kind: sdk.KindIPAM, Path: pluginBin, SocketDir: dir,
		Plugins: plugin.PluginSet{sdk.KindIPAM: &ipam.Plugin{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, h.Run)
	return h
}

// run runs fn until the test ends, and fails the test if it fails.
func run(t testing.TB, fn func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func startAllocator(t *testing.T, r *statetest.Raft, p Plugin) (stop func()) {
	t.Helper()
	return run(t, New(r, r.Store, p, slog.New(slog.DiscardHandler)).Run)
}

func node(id string) *objectv1.Node {
	return &objectv1.Node{Id: id, Status: &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY}}
}

func network(id, name, subnet string, nodeBits uint32) *objectv1.Network {
	return &objectv1.Network{Id: id, Spec: &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: name}, Subnet: subnet, NodePrefixLen: nodeBits}}
}

func service(id string, nets ...string) *objectv1.Service {
	spec := &objectv1.TaskSpec{}
	for _, n := range nets {
		spec.Networks = append(spec.Networks, &objectv1.NetworkAttachmentConfig{Target: n, Aliases: []string{id + "-alias"}})
	}
	return &objectv1.Service{Id: id, Spec: &objectv1.ServiceSpec{Annotations: &objectv1.Annotations{Name: id}, Task: spec}}
}

// placed is a task of svc placed on node, wanted running.
func placed(id string, svc *objectv1.Service, node string) *objectv1.Task {
	return &objectv1.Task{
		Id: id, ServiceId: svc.Id, NodeId: node, Spec: svc.GetSpec().GetTask(),
		DesiredState: objectv1.TaskState_TASK_STATE_RUNNING,
		Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_ASSIGNED},
	}
}

// eventually polls cond on the store until it returns "" or waitLimit
// passes.
func eventually(t *testing.T, st *state.Store, cond func(tx *state.ReadTx) string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		var why string
		st.View(func(tx *state.ReadTx) { why = cond(tx) })
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", waitLimit, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allAllocated is a condition: every task wanted running has its
// addresses, and every service its virtual IPs.
func allAllocated(tx *state.ReadTx) string {
	n := 0
	for _, t := range tx.TasksByDesiredState(objectv1.TaskState_TASK_STATE_RUNNING) {
		if !Allocated(t) {
			n++
		}
	}
	if n > 0 {
		return fmt.Sprintf("%d tasks without all their addresses", n)
	}
	for _, s := range tx.Services() {
		want := 0
		for _, n := range s.GetSpec().GetTask().GetNetworks() {
			if wantsVIP(s, n.GetTarget()) {
				want++
			}
		}
		if len(s.GetVirtualIps()) != want {
			return fmt.Sprintf("service %s has %d virtual IPs, want %d", s.Id, len(s.GetVirtualIps()), want)
		}
	}
	return ""
}

// checkRecord checks everything the store records: per network, no address
// held twice by tasks that hold theirs or by services; each task address in
// its node's recorded slice, with that slice's gateway; virtual IPs
// outside every node's slice.
func checkRecord(t *testing.T, st *state.Store) {
	t.Helper()
	st.View(func(tx *state.ReadTx) {
		holders := map[string]map[netip.Addr]string{}
		take := func(network, owner, addr string) netip.Addr {
			p, err := netip.ParsePrefix(addr)
			if err != nil {
				t.Errorf("%s on %s: address %q: %v", owner, network, addr, err)
				return netip.Addr{}
			}
			if holders[network] == nil {
				holders[network] = map[netip.Addr]string{}
			}
			if other, ok := holders[network][p.Addr()]; ok {
				t.Errorf("network %s: %s recorded for %s and %s", network, p.Addr(), other, owner)
			}
			holders[network][p.Addr()] = owner
			return p.Addr()
		}
		for _, s := range tx.Services() {
			for _, v := range s.GetVirtualIps() {
				a := take(v.GetNetworkId(), s.Id, v.GetAddr())
				for node, slice := range tx.Network(v.GetNetworkId()).GetNodeSubnets() {
					if netip.MustParsePrefix(slice).Contains(a) {
						t.Errorf("service %s's virtual IP %s is in node %s's slice %s", s.Id, a, node, slice)
					}
				}
			}
		}
		for _, tk := range tx.Tasks() {
			if !Holds(tk) {
				continue
			}
			for _, at := range tk.GetNetworks() {
				if at.GetAddr() == "" {
					continue
				}
				a := take(at.GetNetworkId(), tk.Id, at.GetAddr())
				net := tx.Network(at.GetNetworkId())
				slice := net.GetNodeSubnets()[tk.GetNodeId()]
				if slice == "" || slice != at.GetNodeSubnet() || !netip.MustParsePrefix(slice).Contains(a) {
					t.Errorf("task %s: %s, node_subnet %q, but node %s's slice is %q", tk.Id, a, at.GetNodeSubnet(), tk.GetNodeId(), slice)
					continue
				}
				if gw := netip.MustParsePrefix(slice).Addr().Next().String(); at.GetGateway() != gw || a.String() == gw {
					t.Errorf("task %s: gateway %q, address %s; want the gateway %s, not the address", tk.Id, at.GetGateway(), a, gw)
				}
				if want := vipOf(tx.Service(tk.GetServiceId()), at.GetNetworkId()); at.GetServiceVip() != want {
					t.Errorf("task %s on %s: service_vip %q, want its service's %q", tk.Id, at.GetNetworkId(), at.GetServiceVip(), want)
				}
				if at.GetSubnet() != net.GetSubnet() || at.GetNetworkName() != net.GetSpec().GetAnnotations().GetName() {
					t.Errorf("task %s: subnet %q, network_name %q; want %q and %q", tk.Id, at.GetSubnet(), at.GetNetworkName(), net.GetSubnet(), net.GetSpec().GetAnnotations().GetName())
				}
			}
		}
	})
}

func TestAllocatesNetworksVIPsAndTasks(t *testing.T) {
	r := statetest.NewRaft(state.New())
	web := service("web", "net-front", "net-back")
	db := service("db", "net-back")
	r.Write(t, func(tx *state.Tx) error {
		for _, err := range []error{
			tx.CreateNode(node("n1")), tx.CreateNode(node("n2")),
			tx.CreateNetwork(network("net-front", "front", "", 0)),
			tx.CreateNetwork(network("net-back", "back", "172.28.0.0/16", 26)),
			tx.CreateService(web), tx.CreateService(db),
		} {
			if err != nil {
				return err
			}
		}
		for i := range 20 {
			if err := tx.CreateTask(placed(fmt.Sprintf("web-%d", i), web, fmt.Sprintf("n%d", 1+i%2))); err != nil {
				return err
			}
		}
		// Not placed yet: no address.
		unplaced := placed("db-1", db, "")
		unplaced.Status.State = objectv1.TaskState_TASK_STATE_PENDING
		return tx.CreateTask(unplaced)
	})
	startAllocator(t, r, startPlugin(t))
	eventually(t, r.Store, func(tx *state.ReadTx) string {
		for _, tk := range tx.TasksByService("web") {
			if !Allocated(tk) {
				return "web tasks without addresses"
			}
		}
		if len(tx.Service("web").GetVirtualIps()) != 2 || len(tx.Service("db").GetVirtualIps()) != 1 {
			return "virtual IPs missing"
		}
		return ""
	})
	checkRecord(t, r.Store)
	r.Store.View(func(tx *state.ReadTx) {
		back := tx.Network("net-back")
		if back.GetSubnet() != "172.28.0.0/16" || back.GetNodePrefixLen() != 26 || len(back.GetNodeSubnets()) != 2 {
			t.Errorf("network back = subnet %q /%d slices %v; want 172.28.0.0/16 in /26 slices, one per node", back.GetSubnet(), back.GetNodePrefixLen(), back.GetNodeSubnets())
		}
		front := tx.Network("net-front")
		if p, err := netip.ParsePrefix(front.GetSubnet()); err != nil || front.GetNodePrefixLen() != 24 {
			t.Errorf("network front = subnet %q (%v) /%d slices; want one from the default pool in /24 slices", front.GetSubnet(), err, front.GetNodePrefixLen())
		} else if p.Overlaps(netip.MustParsePrefix(back.GetSubnet())) {
			t.Errorf("network front's %s overlaps back's %s", p, back.GetSubnet())
		}
		tk := tx.Task("web-0")
		if len(tk.GetNetworks()) != 2 || tk.GetNetworks()[0].GetAliases()[0] != "web-alias" {
			t.Errorf("task web-0 networks = %v, want two attachments carrying the spec's aliases", tk.GetNetworks())
		}
		if got := tx.Task("db-1").GetNetworks(); len(got) != 0 {
			t.Errorf("unplaced task db-1 got addresses %v", got)
		}
	})
}

func TestReleasesEndedTasksAndNodes(t *testing.T) {
	r := statetest.NewRaft(state.New())
	// A /29 in /30 slices: each node's slice holds one task address.
	svc := service("web", "net-tiny")
	r.Write(t, func(tx *state.Tx) error {
		return errors.Join(tx.CreateNode(node("n1")), tx.CreateNode(node("n2")),
			tx.CreateNetwork(network("net-tiny", "tiny", "10.77.0.0/29", 30)), tx.CreateService(svc),
			tx.CreateTask(placed("t1", svc, "n1")))
	})
	startAllocator(t, r, startPlugin(t))
	eventually(t, r.Store, allAllocated)
	var first string
	r.Store.View(func(tx *state.ReadTx) { first = tx.Task("t1").GetNetworks()[0].GetAddr() })

	// A second task on n1 finds its slice full: it waits, and says why.
	r.Write(t, func(tx *state.Tx) error { return tx.CreateTask(placed("t2", svc, "n1")) })
	eventually(t, r.Store, func(tx *state.ReadTx) string {
		if msg := tx.Task("t2").GetStatus().GetMessage(); !strings.Contains(msg, "waiting for an address on network tiny") {
			return fmt.Sprintf("t2's status message is %q, want it to say it waits for an address", msg)
		}
		return ""
	})
	// t1 is asked to stop but still runs: its address is kept.
	r.Write(t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t1")).(*objectv1.Task)
		next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
		next.Status.State = objectv1.TaskState_TASK_STATE_RUNNING
		return tx.UpdateTask(next)
	})
	time.Sleep(200 * time.Millisecond)
	r.Store.View(func(tx *state.ReadTx) {
		if Allocated(tx.Task("t2")) {
			t.Fatalf("t2 got %v while t1, which holds the only address, still runs", tx.Task("t2").GetNetworks())
		}
	})
	// t1 has ended: t2 gets the address.
	r.Write(t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t1")).(*objectv1.Task)
		next.Status.State = objectv1.TaskState_TASK_STATE_SHUTDOWN
		return tx.UpdateTask(next)
	})
	eventually(t, r.Store, allAllocated)
	r.Store.View(func(tx *state.ReadTx) {
		if got := tx.Task("t2").GetNetworks()[0].GetAddr(); got != first {
			t.Errorf("t2's address = %s, want %s, the one t1 released", got, first)
		}
	})
	checkRecord(t, r.Store)

	// n1 leaves once its tasks ended; its slice goes to n2.
	r.Write(t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t2")).(*objectv1.Task)
		next.DesiredState = objectv1.TaskState_TASK_STATE_SHUTDOWN
		next.Status.State = objectv1.TaskState_TASK_STATE_FAILED
		return errors.Join(tx.UpdateTask(next), tx.DeleteNode("n1"))
	})
	eventually(t, r.Store, func(tx *state.ReadTx) string {
		if s, ok := tx.Network("net-tiny").GetNodeSubnets()["n1"]; ok {
			return "removed node n1 still holds slice " + s
		}
		return ""
	})
	r.Write(t, func(tx *state.Tx) error { return tx.CreateTask(placed("t3", svc, "n2")) })
	eventually(t, r.Store, allAllocated)
	checkRecord(t, r.Store)

	// A service leaving the network gives its virtual IP back.
	r.Write(t, func(tx *state.Tx) error {
		next := proto.Clone(tx.Service("web")).(*objectv1.Service)
		next.Spec.Task.Networks = nil
		return tx.UpdateService(next)
	})
	eventually(t, r.Store, func(tx *state.ReadTx) string {
		if v := tx.Service("web").GetVirtualIps(); len(v) > 0 {
			return fmt.Sprintf("service web left its network but holds %v", v)
		}
		return ""
	})
}

// TestNewLeaderRestores runs a second allocator, with a fresh plugin
// process, on the store the first one filled, as a new leader would.
func TestNewLeaderRestores(t *testing.T) {
	r := statetest.NewRaft(state.New())
	svc := service("web", "net-a")
	addTasks := func(from, n int) {
		r.Write(t, func(tx *state.Tx) error {
			for i := from; i < from+n; i++ {
				if err := tx.CreateTask(placed(fmt.Sprintf("t%04d", i), svc, fmt.Sprintf("n%d", i%3))); err != nil {
					return err
				}
			}
			return nil
		})
	}
	r.Write(t, func(tx *state.Tx) error {
		return errors.Join(tx.CreateNode(node("n0")), tx.CreateNode(node("n1")), tx.CreateNode(node("n2")),
			tx.CreateNetwork(network("net-a", "a", "", 0)), tx.CreateService(svc))
	})
	addTasks(0, 300)
	stop := startAllocator(t, r, startPlugin(t))
	eventually(t, r.Store, allAllocated)
	stop()

	addTasks(300, 300)
	startAllocator(t, r, startPlugin(t))
	eventually(t, r.Store, allAllocated)
	checkRecord(t, r.Store)
}

// TestPluginCrashNeverHandsOutAnAddressTwice SIGKILLs the plugin process
// while a large batch allocates, several times: allocations the plugin made
// that were never committed are forgotten, and every recorded address is
// unique.
func TestPluginCrashNeverHandsOutAnAddressTwice(t *testing.T) {
	const tasks, nodes, kills = 6000, 30, 3
	r := statetest.NewRaft(state.New())
	svc := service("web", "net-a", "net-b")
	r.Write(t, func(tx *state.Tx) error {
		errs := []error{tx.CreateNetwork(network("net-a", "a", "", 0)), tx.CreateNetwork(network("net-b", "b", "172.29.0.0/16", 24)), tx.CreateService(svc)}
		for i := range nodes {
			errs = append(errs, tx.CreateNode(node(fmt.Sprintf("n%02d", i))))
		}
		return errors.Join(errs...)
	})
	host := startPlugin(t)
	startAllocator(t, r, host)
	r.Write(t, func(tx *state.Tx) error {
		for i := range tasks {
			if err := tx.CreateTask(placed(fmt.Sprintf("t%05d", i), svc, fmt.Sprintf("n%02d", i%nodes))); err != nil {
				return err
			}
		}
		return nil
	})
	count := func() int {
		n := 0
		r.Store.View(func(tx *state.ReadTx) {
			for _, tk := range tx.Tasks() {
				if Allocated(tk) {
					n++
				}
			}
		})
		return n
	}
	killed := 0
	last := 0
	deadline := time.Now().Add(waitLimit)
	for killed < kills && time.Now().Before(deadline) {
		// Kill as soon as a new batch was committed: the next one is
		// then being allocated.
		if n := count(); n > last && n < tasks {
			pid := childPid("ipam")
			if pid != 0 && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
				last = n
				t.Logf("SIGKILLed the plugin (pid %d) with %d of %d tasks allocated", pid, n, tasks)
			}
		}
		time.Sleep(time.Millisecond)
	}
	if killed == 0 {
		t.Fatal("allocation finished before the plugin could be killed")
	}
	eventually(t, r.Store, allAllocated)
	checkRecord(t, r.Store)
	if host.Restarts() == 0 {
		t.Error("the plugin was killed but never restarted")
	}
}

// childPid returns the PID of this process's child named name, or 0.
func childPid(name string) int {
	for _, p := range ps.List() {
		// A killed child stays a zombie until reaped: skip those.
		if p.PPID == os.Getpid() && p.Comm == name && !p.Zombie() {
			return p.PID
		}
	}
	return 0
}

// A service in endpoint mode dnsrr has no virtual IP; switching a service
// to dnsrr releases its VIPs and clears them from its tasks.
func TestDNSRRHasNoVIP(t *testing.T) {
	r := statetest.NewRaft(state.New())
	web := service("web", "net-back")
	rr := service("rr", "net-back")
	rr.Spec.Endpoint = &objectv1.EndpointSpec{Mode: objectv1.EndpointMode_ENDPOINT_MODE_DNSRR}
	r.Write(t, func(tx *state.Tx) error {
		for _, err := range []error{
			tx.CreateNode(node("n1")),
			tx.CreateNetwork(network("net-back", "back", "172.28.0.0/16", 24)),
			tx.CreateService(web), tx.CreateService(rr),
			tx.CreateTask(placed("web-1", web, "n1")), tx.CreateTask(placed("rr-1", rr, "n1")),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	startAllocator(t, r, startPlugin(t))
	eventually(t, r.Store, allAllocated)
	checkRecord(t, r.Store)
	r.Store.View(func(tx *state.ReadTx) {
		if v := tx.Service("rr").GetVirtualIps(); len(v) != 0 {
			t.Errorf("dnsrr service has virtual IPs %v", v)
		}
		if v := tx.Task("web-1").GetNetworks()[0].GetServiceVip(); v == "" {
			t.Error("task web-1 has no service_vip")
		}
	})
	r.Write(t, func(tx *state.Tx) error {
		s := proto.Clone(tx.Service("web")).(*objectv1.Service)
		s.Spec.Endpoint = &objectv1.EndpointSpec{Mode: objectv1.EndpointMode_ENDPOINT_MODE_DNSRR}
		return tx.UpdateService(s)
	})
	eventually(t, r.Store, func(tx *state.ReadTx) string {
		if v := tx.Service("web").GetVirtualIps(); len(v) != 0 {
			return fmt.Sprintf("web switched to dnsrr still has virtual IPs %v", v)
		}
		if v := tx.Task("web-1").GetNetworks()[0].GetServiceVip(); v != "" {
			return fmt.Sprintf("web-1 still has service_vip %s", v)
		}
		return ""
	})
	checkRecord(t, r.Store)
}
