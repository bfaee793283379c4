package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/simexec"
	"github.com/shoalhq/shoal/kernel/tasknet"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// fakeRouter records the last routes asked for.
type fakeRouter struct {
	mu     sync.Mutex
	locals []tasknet.Local
	peers  []tasknet.Peer
	calls  int
}

func (r *fakeRouter) Set(locals []tasknet.Local, peers []tasknet.Peer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.locals, r.peers = slices.Clone(locals), slices.Clone(peers)
	r.calls++
	return nil
}

func (r *fakeRouter) get() ([]tasknet.Local, []tasknet.Peer, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.locals, r.peers, r.calls
}

// netNode is a netSync under test with a simulated executor.
type netNode struct {
	ns     *netSync
	router *fakeRouter
	exec   *netExecutor
	sim    *simexec.Executor
	stop   func()
}

func startNetNode(t *testing.T, nodeID, dir string, sim *simexec.Executor) *netNode {
	t.Helper()
	r := &fakeRouter{}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", nodeID)
	ns, err := newNetSync(config.Gossip{ListenAddr: "127.0.0.1:0"}, nodeID, dir, r, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.run(ctx, sim) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("netSync.run = %v, want nil once ctx ended", err)
			}
		})
	}
	t.Cleanup(stop)
	return &netNode{ns: ns, router: r, exec: &netExecutor{Executor: sim, ns: ns}, sim: sim, stop: stop}
}

func netTaskFor(id, svc, addr, nodeSubnet string) *objectv1.Task {
	return &objectv1.Task{
		Id: id, ServiceId: svc + "-id", ServiceAnnotations: &objectv1.Annotations{Name: svc},
		Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "sim"}},
		Networks: []*objectv1.NetworkAttachment{{
			NetworkId: "net1", NetworkName: "front", Addr: addr + "/16", Subnet: "10.200.0.0/16",
			NodeSubnet: nodeSubnet, Aliases: []string{svc + "-alias"},
		}},
	}
}

func waitNet(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within 20s: %s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// peerSlices reads a router's peers as "node:addr:network:slice".
func peerSlices(r *fakeRouter) []string {
	_, peers, _ := r.get()
	var out []string
	for _, p := range peers {
		out = append(out, fmt.Sprintf("%s:%s:%s:%s", p.NodeID, p.NodeAddr, p.NetworkID, p.NodeSubnet))
	}
	return out
}

// TestNetSync: two workers' netSyncs, introduced as the managers would (a
// session with the key; the second with the first as its peer), route to
// each other's slices once each prepared a task on the network; a removed
// task withdraws its slice; a restarted node republishes, from its state
// file, the tasks its executor still holds, and forgets those it does not.
func TestNetSync(t *testing.T) {
	ctx := t.Context()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	simA, simB := simexec.New(simexec.Config{}), simexec.New(simexec.Config{})
	a := startNetNode(t, "node-a", dirA, simA)
	b := startNetNode(t, "node-b", dirB, simB)
	if !strings.HasPrefix(a.ns.Addr(), "127.0.0.1:") || strings.HasSuffix(a.ns.Addr(), ":0") {
		t.Fatalf("Addr() = %q, want 127.0.0.1 with the port picked", a.ns.Addr())
	}
	a.ns.onSession(&workerv1.SessionInfo{NodeId: "node-a", GossipKey: key})
	b.ns.onSession(&workerv1.SessionInfo{NodeId: "node-b", GossipKey: key, GossipPeers: []string{a.ns.Addr()}})

	if err := a.exec.Prepare(ctx, netTaskFor("ta", "web", "10.200.1.5", "10.200.1.0/24"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.exec.Prepare(ctx, netTaskFor("tb", "web", "10.200.2.5", "10.200.2.0/24"), nil, nil); err != nil {
		t.Fatal(err)
	}
	// A task without networks is none of the gossip's business.
	if err := b.exec.Prepare(ctx, &objectv1.Task{Id: "plain", Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "sim"}}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitNet(t, "each routes to the other's slice", func() error {
		pa, pb := peerSlices(a.router), peerSlices(b.router)
		wantA, wantB := []string{"node-b:127.0.0.1:net1:10.200.2.0/24"}, []string{"node-a:127.0.0.1:net1:10.200.1.0/24"}
		if !slices.Equal(pa, wantA) || !slices.Equal(pb, wantB) {
			return fmt.Errorf("peers of a %v, of b %v; want %v and %v", pa, pb, wantA, wantB)
		}
		return nil
	})
	locals, _, _ := b.router.get()
	if want := []tasknet.Local{{NetworkID: "net1", Subnet: "10.200.0.0/16", NodeSubnet: "10.200.2.0/24"}}; !slices.Equal(locals, want) {
		t.Errorf("b's locals = %v, want %v", locals, want)
	}
	a.ns.mu.Lock()
	g := a.ns.g
	a.ns.mu.Unlock()
	eps := g.Lookup("web", "net1")
	var got []string
	for _, ep := range eps {
		got = append(got, fmt.Sprintf("%s@%s:%s/%s", ep.TaskID, ep.NodeID, ep.Addr, strings.Join(ep.Aliases, ",")))
	}
	if want := []string{"ta@node-a:10.200.1.5/web-alias", "tb@node-b:10.200.2.5/web-alias"}; !slices.Equal(got, want) {
		t.Errorf("a's Lookup(web) = %v, want %v", got, want)
	}

	// b removes its task: a no longer routes to b's slice.
	if err := b.exec.Remove(ctx, "tb"); err != nil {
		t.Fatal(err)
	}
	waitNet(t, "a's route to b's slice withdrawn", func() error {
		if p := peerSlices(a.router); len(p) != 0 {
			return fmt.Errorf("peers of a %v, want none", p)
		}
		return nil
	})

	// a restarts (its tasks keep running in the executor), with one more
	// recorded task the executor lost meanwhile.
	if err := a.exec.Prepare(ctx, netTaskFor("gone", "db", "10.200.1.6", "10.200.1.0/24"), nil, nil); err != nil {
		t.Fatal(err)
	}
	a.stop()
	if err := simA.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := b.exec.Prepare(ctx, netTaskFor("tb2", "web", "10.200.2.6", "10.200.2.0/24"), nil, nil); err != nil {
		t.Fatal(err)
	}
	a2 := startNetNode(t, "node-a", dirA, simA)
	a2.ns.onSession(&workerv1.SessionInfo{NodeId: "node-a", GossipKey: key, GossipPeers: []string{b.ns.Addr()}})
	waitNet(t, "b routes to the restarted a, which routes to b", func() error {
		pa, pb := peerSlices(a2.router), peerSlices(b.router)
		wantA, wantB := []string{"node-b:127.0.0.1:net1:10.200.2.0/24"}, []string{"node-a:127.0.0.1:net1:10.200.1.0/24"}
		if !slices.Equal(pa, wantA) || !slices.Equal(pb, wantB) {
			return fmt.Errorf("peers of a %v, of b %v; want %v and %v", pa, pb, wantA, wantB)
		}
		b.ns.mu.Lock()
		g := b.ns.g
		b.ns.mu.Unlock()
		var got []string
		for _, ep := range g.Endpoints() {
			if ep.NodeID == "node-a" {
				got = append(got, ep.TaskID)
			}
		}
		if want := []string{"ta"}; !slices.Equal(got, want) {
			return fmt.Errorf("b sees a's endpoints %v, want %v (republished, without the lost one)", got, want)
		}
		return nil
	})
}

// TestNetSyncWaitsForKey: without a session that brings the key, nothing
// gossips and no route is touched: a restarted agent must not delete the
// routes its running tasks use before it knows its peers.
func TestNetSyncWaitsForKey(t *testing.T) {
	sim := simexec.New(simexec.Config{})
	n := startNetNode(t, "node-a", t.TempDir(), sim)
	if err := n.exec.Prepare(t.Context(), netTaskFor("ta", "web", "10.200.1.5", "10.200.1.0/24"), nil, nil); err != nil {
		t.Fatal(err)
	}
	n.ns.onSession(&workerv1.SessionInfo{NodeId: "node-a"}) // an older manager: no key
	time.Sleep(200 * time.Millisecond)                      // nothing must happen; no event to wait for
	n.ns.mu.Lock()
	started := n.ns.g != nil
	n.ns.mu.Unlock()
	if _, _, calls := n.router.get(); started || calls != 0 {
		t.Errorf("without a key: gossip started %v, routes set %d times; want neither", started, calls)
	}
}

// TestNetSyncPortTaken: a gossip port another process holds is an error
// that says what to check, and leaves the node running without gossip.
func TestNetSyncPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ns, err := newNetSync(config.Gossip{ListenAddr: l.Addr().String()}, "node-a", t.TempDir(), &fakeRouter{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ns.onSession(&workerv1.SessionInfo{NodeId: "node-a", GossipKey: make([]byte, 32)})
	err = ns.sync()
	if err == nil || !strings.Contains(err.Error(), "is gossip.listen_addr's port taken?") {
		t.Errorf("sync() with the port taken = %v, want an error naming gossip.listen_addr", err)
	}
	if ns.g != nil {
		t.Error("gossip started on a taken port")
	}
}
