package raftstore

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// testNode is one member of an in-process cluster.
type testNode struct {
	n      *Node
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

// testCluster runs Raft nodes in one process with raft-wal on disk and the
// real mutual-TLS transport on 127.0.0.1.
type testCluster struct {
	tb    testing.TB
	root  *objectv1.RootCA
	nodes []*testNode
}

func newTestCluster(tb testing.TB, size int) *testCluster {
	tb.Helper()
	root, err := ca.NewRootCA(time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	c := &testCluster{tb: tb, root: root}
	base := tb.TempDir()
	for i := range size {
		id := fmt.Sprintf("node-%d", i)
		server, client := c.tlsFor(id, filepath.Join(base, id, "certs"))
		addr := freeAddr(tb)
		cfg := Config{
			NodeID:        id,
			Dir:           filepath.Join(base, id, "raft"),
			BindAddr:      addr,
			AdvertiseAddr: addr,
			ServerTLS:     server,
			ClientTLS:     client,
			Bootstrap:     i == 0,
			Logger:        slog.New(slog.DiscardHandler),
		}
		c.nodes = append(c.nodes, c.start(cfg))
	}
	tb.Cleanup(c.stop)
	leader := c.waitLeader()
	for _, tn := range c.nodes[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := leader.AddVoter(ctx, tn.cfg.NodeID, tn.cfg.AdvertiseAddr); err != nil {
			tb.Fatal(err)
		}
		cancel()
	}
	return c
}

func (c *testCluster) tlsFor(nodeID, dir string) (server, client *tls.Config) {
	c.tb.Helper()
	signer, err := ca.NewSigner(c.root)
	if err != nil {
		c.tb.Fatal(err)
	}
	key, err := ca.NewKey()
	if err != nil {
		c.tb.Fatal(err)
	}
	csr, err := ca.NewCSR(key)
	if err != nil {
		c.tb.Fatal(err)
	}
	cert, err := signer.Sign(csr, nodeID, objectv1.NodeRole_NODE_ROLE_MANAGER, "test-cluster", time.Now(), time.Hour)
	if err != nil {
		c.tb.Fatal(err)
	}
	id, err := ca.NewIdentity(dir, key, cert, c.root.CertPem)
	if err != nil {
		c.tb.Fatal(err)
	}
	s, cl := id.MutualTLS()
	return s, cl
}

func (c *testCluster) start(cfg Config) *testNode {
	c.tb.Helper()
	n, err := New(cfg, state.New())
	if err != nil {
		c.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{n: n, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	return tn
}

func (c *testCluster) stopNode(tn *testNode) error {
	if tn.cancel == nil {
		return nil
	}
	tn.cancel()
	tn.cancel = nil
	return <-tn.done
}

func (c *testCluster) stop() {
	var wg sync.WaitGroup
	for _, tn := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.stopNode(tn) }()
	}
	wg.Wait()
}

func (c *testCluster) waitLeader() *Node {
	c.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, tn := range c.nodes {
			if tn.cancel != nil && tn.n.raft.State() == raft.Leader {
				return tn.n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.tb.Fatal("no leader within 20s")
	return nil
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitApplied waits until every running node has applied index.
func (c *testCluster) waitApplied(index uint64) {
	c.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		all := true
		for _, tn := range c.nodes {
			if tn.cancel != nil && tn.n.appliedIndex() < index {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.tb.Fatalf("index %d not applied everywhere within 20s", index)
}
