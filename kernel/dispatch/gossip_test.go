package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/kernel/state/statetest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// gossipEnv is a store with a cluster object (without a gossip key) and
// nodes n1..n5, and a running dispatcher.
func gossipEnv(t *testing.T) (*env, func() *Dispatcher) {
	st := state.New()
	e := &env{t: t, st: st, raft: statetest.NewRaft(st)}
	e.write(func(tx *state.Tx) error {
		if err := tx.CreateCluster(&objectv1.Cluster{Id: "c1", Spec: &objectv1.ClusterSpec{}}); err != nil {
			return err
		}
		for i := 1; i <= 5; i++ {
			if err := tx.CreateNode(&objectv1.Node{Id: fmt.Sprintf("n%d", i), Role: objectv1.NodeRole_NODE_ROLE_WORKER,
				Spec:   &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE},
				Status: &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_UNKNOWN}}); err != nil {
				return err
			}
		}
		return nil
	})
	start := func() *Dispatcher {
		e.pres = newFakePresence()
		d := New(e.raft, st, e.pres, Config{Grace: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v", err)
			}
		})
		<-e.pres.ready
		e.d = d
		return d
	}
	start()
	return e, start
}

func (e *env) openGossip(node, gossipAddr string) (*session, *workerv1.SessionInfo) {
	e.t.Helper()
	p := &fakePeer{}
	s, err := e.d.Open(context.Background(), node, &workerv1.Hello{Description: &objectv1.NodeDescription{
		Hostname: node, Executor: "containerd", GossipAddr: gossipAddr}}, p)
	if err != nil {
		e.t.Fatal(err)
	}
	return s, p.messages()[0].GetSession()
}

func (e *env) gossipKey() []byte {
	var k []byte
	e.st.View(func(tx *state.ReadTx) { k = tx.Cluster().GetGossipKey() })
	return k
}

// TestGossipIntroductions: the first leader makes the cluster's gossip key
// and keeps it; a session of a gossiping node gets the key and the gossip
// addresses of other nodes with a session, never its own, and only while
// they have one; a node that does not gossip gets neither.
func TestGossipIntroductions(t *testing.T) {
	e, restart := gossipEnv(t)
	key := e.gossipKey()
	if len(key) != GossipKeyLen {
		t.Fatalf("gossip key after the dispatcher started = %x, want %d bytes", key, GossipKeyLen)
	}

	_, info1 := e.openGossip("n1", "192.168.1.1:7946")
	if len(info1.GetGossipPeers()) != 0 || !bytes.Equal(info1.GetGossipKey(), key) {
		t.Errorf("first session: peers %v, key %x; want no peers and the cluster's key", info1.GetGossipPeers(), info1.GetGossipKey())
	}
	s2, info2 := e.openGossip("n2", "192.168.1.2:7946")
	if want := []string{"192.168.1.1:7946"}; !slices.Equal(info2.GetGossipPeers(), want) || !bytes.Equal(info2.GetGossipKey(), key) {
		t.Errorf("second session: peers %v, key %x; want %v and the cluster's key", info2.GetGossipPeers(), info2.GetGossipKey(), want)
	}
	_, info3 := e.openGossip("n3", "")
	if len(info3.GetGossipPeers()) != 0 || len(info3.GetGossipKey()) != 0 {
		t.Errorf("session of a node that does not gossip: peers %v, key %x; want neither", info3.GetGossipPeers(), info3.GetGossipKey())
	}
	// n1 reconnects: not told about itself.
	_, info1 = e.openGossip("n1", "192.168.1.1:7946")
	if want := []string{"192.168.1.2:7946"}; !slices.Equal(info1.GetGossipPeers(), want) {
		t.Errorf("n1 again: peers %v, want %v", info1.GetGossipPeers(), want)
	}
	e.d.Close(s2)
	_, info4 := e.openGossip("n4", "192.168.1.4:7946")
	if want := []string{"192.168.1.1:7946"}; !slices.Equal(info4.GetGossipPeers(), want) {
		t.Errorf("after n2's session closed: peers %v, want %v", info4.GetGossipPeers(), want)
	}
	eventually(t, "n4's gossip address recorded", func() bool {
		var addr string
		e.st.View(func(tx *state.ReadTx) { addr = tx.Node("n4").GetDescription().GetGossipAddr() })
		return addr == "192.168.1.4:7946"
	})

	// A new leader finds the key and keeps it.
	restart()
	if got := e.gossipKey(); !bytes.Equal(got, key) {
		t.Errorf("gossip key after another dispatcher started = %x, want the first one %x", got, key)
	}
	_, info5 := e.openGossip("n5", "192.168.1.5:7946")
	if len(info5.GetGossipPeers()) != 0 || !bytes.Equal(info5.GetGossipKey(), key) {
		t.Errorf("first session on the new dispatcher: peers %v, key %x; want none (no other session yet) and the key", info5.GetGossipPeers(), info5.GetGossipKey())
	}
}

func TestGossipPoolPick(t *testing.T) {
	var p gossipPool
	for i := range 8 {
		p.set(fmt.Sprintf("n%d", i), fmt.Sprintf("10.0.0.%d:7946", i))
	}
	p.set("n3", "")               // gone
	p.set("n5", "10.0.0.55:7946") // moved
	if len(p.addrs) != 7 {
		t.Fatalf("pool holds %d nodes, want 7", len(p.addrs))
	}
	seen := map[string]int{}
	for range 2000 {
		got := p.pick("n0", 5, randN)
		if len(got) != 5 {
			t.Fatalf("pick(n0, 5) = %v, want 5 addresses", got)
		}
		sorted := slices.Sorted(slices.Values(got))
		if len(slices.Compact(sorted)) != 5 {
			t.Fatalf("pick(n0, 5) = %v, want distinct addresses", got)
		}
		for _, a := range got {
			seen[a]++
		}
	}
	for _, a := range []string{"10.0.0.0:7946", "10.0.0.3:7946", "10.0.0.5:7946"} {
		if seen[a] > 0 {
			t.Errorf("pick returned %s %d times, want never (itself, gone, or moved)", a, seen[a])
		}
	}
	// 6 candidates, 5 picked each time: each in about 5/6 of the picks.
	for _, a := range []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.4:7946", "10.0.0.55:7946", "10.0.0.6:7946", "10.0.0.7:7946"} {
		if n := seen[a]; n < 1500 || n > 1850 {
			t.Errorf("pick returned %s %d times in 2000, want about 1667", a, n)
		}
	}
	if got := p.pick("n9", 10, randN); len(got) != 7 {
		t.Errorf("pick(n9, 10) of 7 = %v, want all 7", got)
	}
	if got := (&gossipPool{}).pick("n1", 5, randN); got != nil {
		t.Errorf("pick on an empty pool = %v, want nil", got)
	}
}

func TestHelloGossipAddr(t *testing.T) {
	for _, tt := range []struct {
		addr, wantErr string
	}{
		{"", ""},
		{"192.168.1.1:7946", ""},
		{"[fd00::1]:7946", ""},
		{"192.168.1.1", "description.gossip_addr: must be ip:port"},
		{"node1:7946", "description.gossip_addr: host must be an IP address"},
		{"0.0.0.0:7946", "description.gossip_addr: host must be an IP address"},
		{"192.168.1.1:0", "description.gossip_addr: port must be between 1 and 65535"},
		{"192.168.1.1:99999", "description.gossip_addr: port must be between 1 and 65535"},
	} {
		err := validHello(&workerv1.Hello{Description: &objectv1.NodeDescription{GossipAddr: tt.addr}})
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("validHello(gossip_addr %q) = %v, want %q", tt.addr, err, tt.wantErr)
		}
	}
}
