package netnstest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoalhq/shoal/internal/testimage"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// worker is a worker node of a lab cluster.
type worker struct {
	name, ns, addr string
	agent          *agentProc
}

// cluster is a lab with one manager (m1, executor none, at labPrefix+1)
// and n workers (w1, w2, ... at labPrefix+2, +3, ...), each a `shoal agent`
// in its own namespace, the workers with their own containerd and the
// test image imported.
type cluster struct {
	lab     *lab
	client  controlv1.ControlClient
	workers []*worker
	nodeIDs map[string]string // hostname: node ID
	mns     string            // the manager's namespace
	socket  string            // the manager's control socket, for the CLI
}

func startCluster(t *testing.T, n int) *cluster {
	l := newLab(t)
	tarPath := writeTestImage(t, l)
	mns, socket, client, token := startLabManager(l)
	workers := startLabWorkers(l, n, token)
	nodeIDs := waitWorkersReady(l, client, workers)
	for _, w := range workers {
		// The node's containerd (embedded) answers once the agent started it.
		l.importImage(w, "the image", tarPath)
	}

	return &cluster{lab: l, client: client, workers: workers, nodeIDs: nodeIDs, mns: mns, socket: socket}
}

// writeTestImage writes the test image as an OCI archive into the lab's
// directory and returns its path.
func writeTestImage(t *testing.T, l *lab) string {
	t.Helper()
	im, err := testimage.New(imageName)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(l.dir, "image.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.WriteOCI(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return tarPath
}

// startLabManager starts the manager m1 (executor none) in its namespace
// and waits until it gives a worker token.
func startLabManager(l *lab) (mns, socket string, client controlv1.ControlClient, token string) {
	mns = l.node("m1", 1)
	mdir := filepath.Join(l.dir, "m1")
	socket = filepath.Join(mdir, "control.sock")
	plugins := filepath.Dir(l.bin)
	l.start("m1", mns, fmt.Sprintf(`version = 1
[node]
hostname = "m1"
data_dir = %q
role = "manager"
[manager]
listen_addr = "%[2]s1:4242"
raft_listen_addr = "%[2]s1:4243"
control_socket = %[3]q
[metrics]
listen_addr = ""
[plugins.scheduler]
path = %[4]q
[plugins.ipam]
path = %[5]q
[plugins.executor]
path = "none"
`, filepath.Join(mdir, "data"), labPrefix, socket, filepath.Join(plugins, "scheduler-spread"), filepath.Join(plugins, "ipam")))
	client = l.client(socket)
	l.eventually(60*time.Second, "the manager gives a worker token", func(ctx context.Context) error {
		resp, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
		if err != nil {
			return err
		}
		if token = resp.GetCluster().GetRootCa().GetJoinTokens().GetWorker(); token == "" {
			return errors.New("no worker token yet")
		}
		return nil
	})
	return mns, socket, client, token
}

// startLabWorkers starts n workers (w1, w2, ...) in their namespaces,
// joining with token.
func startLabWorkers(l *lab, n int, token string) []*worker {
	var workers []*worker
	for i := range n {
		workers = append(workers, &worker{name: fmt.Sprintf("w%d", i+1)})
	}
	for i, w := range workers {
		w.ns = l.node(w.name, 2+i)
		w.addr = fmt.Sprintf("%s%d", labPrefix, 2+i)
		// [gossip] keeps its defaults: 0.0.0.0:7946, advertising the
		// namespace's only address.
		w.agent = l.start(w.name, w.ns, fmt.Sprintf(`version = 1
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
`, w.name, filepath.Join(l.dir, w.name, "data"), labPrefix, token))
	}
	return workers
}

// waitWorkersReady waits until every worker is ready, gossiping from its
// LAN address, and returns their node IDs by hostname.
func waitWorkersReady(l *lab, client controlv1.ControlClient, workers []*worker) map[string]string {
	nodeIDs := map[string]string{} // hostname: node ID
	l.eventually(90*time.Second, "every worker ready, gossiping from their LAN address", func(ctx context.Context) error {
		resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range resp.GetNodes() {
			h := n.GetDescription().GetHostname()
			for _, w := range workers {
				if h != w.name {
					continue
				}
				if n.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY {
					return fmt.Errorf("%s is %s", h, n.GetStatus().GetState())
				}
				if want := w.addr + ":7946"; n.GetDescription().GetGossipAddr() != want {
					return fmt.Errorf("%s gossips at %q, want %s", h, n.GetDescription().GetGossipAddr(), want)
				}
				nodeIDs[h] = n.GetId()
			}
		}
		if len(nodeIDs) != len(workers) {
			return fmt.Errorf("ready workers: %v", nodeIDs)
		}
		return nil
	})
	return nodeIDs
}

// importImage imports the image archive tar on w, once its containerd
// answers; what names the image in the wait's description.
func (l *lab) importImage(w *worker, what, tar string) {
	l.eventually(60*time.Second, "import "+what+" on "+w.name, func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, l.bin, "image", "import", "--config", w.agent.config, tar).CombinedOutput()
		if err != nil {
			return fmt.Errorf("shoal image import: %v: %s", err, out)
		}
		return nil
	})
}
