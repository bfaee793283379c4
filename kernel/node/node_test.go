package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/internal/testbin"
	"github.com/shoalhq/shoal/kernel/clustertest"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/sdk/executor"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// simPlugin is testdata/simplugin, an executor plugin of simulated tasks,
// built by TestMain.
var simPlugin string

func TestMain(m *testing.M) {
	testbin.Main(m, "./testdata/simplugin", func(path string) { simPlugin = path })
}

// managerConfig is a manager node's config in dir, with the bundled
// scheduler and IPAM plugins and the given executor path.
func managerConfig(t *testing.T, dir, executorPath string) config.Config {
	t.Helper()
	ports := clustertest.FreePorts(t, 2)
	cfg := config.Default()
	cfg.Node.Hostname = "m1"
	cfg.Node.DataDir = filepath.Join(dir, "data")
	cfg.Manager.ListenAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg.Manager.RaftListenAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg.Manager.ControlSocket = filepath.Join(dir, "control.sock")
	cfg.Metrics.ListenAddr = ""
	cfg.Gossip.ListenAddr = "127.0.0.1:0" // tests share the host
	ownTable(t, &cfg)
	bin := filepath.Dir(clustertest.Binary(t))
	cfg.Plugins = map[string]config.Plugin{
		"scheduler": {Path: filepath.Join(bin, "scheduler-spread")},
		"ipam":      {Path: filepath.Join(bin, "ipam")},
	}
	if executorPath != "" {
		cfg.Plugins["executor"] = config.Plugin{Path: executorPath}
	}
	return cfg
}

// ownTable gives cfg's node an nftables table of its own: the tests' nodes
// share the host's network namespace, perhaps with a `make run` node,
// whose table "shoal" they would replace. It is deleted when the test ends
// (a stopped node keeps it).
func ownTable(t *testing.T, cfg *config.Config) {
	tableSeq++
	cfg.Services.NftablesTable = fmt.Sprintf("shoal-nodetest-%d-%d", os.Getpid(), tableSeq)
	name := cfg.Services.NftablesTable
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "ip", name).Run() })
}

// tableSeq numbers the tables of ownTable; the tests run one at a time.
var tableSeq int

// runNode runs the node of cfg until the test ends, and checks that it
// stops cleanly then.
func runNode(t *testing.T, cfg config.Config) controlv1.ControlClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	go func() { done <- Run(ctx, cfg, logger) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node.Run = %v, want nil once ctx ended", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("node.Run did not return within 30s of its ctx ending")
		}
	})
	conn, err := grpc.NewClient("unix://"+cfg.Manager.ControlSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return controlv1.NewControlClient(conn)
}

// eventually retries fn until it returns nil, failing the test after 45s.
func eventually(t *testing.T, fn func(ctx context.Context) error) {
	t.Helper()
	if err := retry.Until(45*time.Second, 5*time.Second, fn); err != nil {
		t.Fatalf("not within 45s: %v", err)
	}
}

// TestManagerRunsItsOwnWorker: a manager node runs a worker beside its
// manager, with the executor its config names, so that a one-node cluster
// runs tasks: the node says which executor it has, and a service's tasks
// run on it.
func TestManagerRunsItsOwnWorker(t *testing.T) {
	for _, tt := range []struct {
		name, path, executor string
	}{
		{name: "simulated", path: config.SimulatedExecutor, executor: "simulated"},
		{name: "plugin", path: simPlugin, executor: "simplugin"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := managerConfig(t, t.TempDir(), tt.path)
			client := runNode(t, cfg)
			var nodeID string
			eventually(t, func(ctx context.Context) error {
				resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
				if err != nil {
					return err
				}
				if len(resp.GetNodes()) != 1 {
					return fmt.Errorf("nodes: %v", resp.GetNodes())
				}
				n := resp.GetNodes()[0]
				if got := n.GetDescription().GetExecutor(); got != tt.executor || n.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY {
					return fmt.Errorf("node is %s with executor %q, want ready with %q", n.GetStatus().GetState(), got, tt.executor)
				}
				// Real tasks gossip (kernel/node/netsync.go); simulated ones have no network.
				if gossips := n.GetDescription().GetGossipAddr() != ""; gossips != (tt.executor != "simulated") {
					return fmt.Errorf("node reports gossip address %q with executor %q", n.GetDescription().GetGossipAddr(), tt.executor)
				}
				nodeID = n.GetId()
				return nil
			})
			svc, err := client.CreateService(t.Context(), &controlv1.CreateServiceRequest{Spec: &objectv1.ServiceSpec{
				Annotations: &objectv1.Annotations{Name: "web"},
				Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "sim"}},
				Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, func(ctx context.Context) error {
				resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{svc.GetService().GetId()}})
				if err != nil {
					return err
				}
				running := 0
				for _, task := range resp.GetTasks() {
					if task.GetNodeId() == nodeID && task.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
						running++
					}
				}
				if running != 2 {
					return fmt.Errorf("%d of 2 tasks run on the manager's node: %v", running, resp.GetTasks())
				}
				return nil
			})
			if tt.name == "plugin" {
				got, err := os.ReadFile(filepath.Join(cfg.PluginDir("executor"), "configured"))
				if err != nil || string(got) != nodeID {
					t.Errorf("the plugin was configured for node %q (%v), want %q", got, err, nodeID)
				}
			}
		})
	}
}

// TestManagerWithoutExecutor: a manager whose config names no executor,
// where the bundled one is not installed (next to this test binary it
// never is), still serves, taking no tasks; a worker refuses to start.
func TestManagerWithoutExecutor(t *testing.T) {
	cfg := managerConfig(t, t.TempDir(), "")
	client := runNode(t, cfg)
	eventually(t, func(ctx context.Context) error {
		resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		if len(resp.GetNodes()) != 1 || resp.GetNodes()[0].GetStatus().GetState() != objectv1.NodeState_NODE_STATE_READY {
			return fmt.Errorf("nodes: %v", resp.GetNodes())
		}
		if e := resp.GetNodes()[0].GetDescription().GetExecutor(); e != "" {
			return fmt.Errorf("node has executor %q, want none", e)
		}
		return nil
	})

	w := config.Default()
	w.Node.Role = config.RoleWorker
	w.Node.DataDir = t.TempDir()
	_, err := newExecutor(w, executor.NodeInfo{NodeID: "n1"}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, errNoBundledExecutor) || !strings.Contains(err.Error(), "plugins.executor.path: not set, and the bundled executor-containerd is not next to") {
		t.Errorf("newExecutor without a path or a bundled executor = %v, want an error naming plugins.executor.path", err)
	}
}

// TestWorkerJoinsAndRunsTasks: a worker node joins a manager with the
// worker token and runs tasks on its executor plugin, beside the manager's
// own worker.
func TestWorkerJoinsAndRunsTasks(t *testing.T) {
	dir := t.TempDir()
	mcfg := managerConfig(t, filepath.Join(dir, "m1"), config.SimulatedExecutor)
	client := runNode(t, mcfg)
	var token string
	eventually(t, func(ctx context.Context) error {
		resp, err := client.GetCluster(ctx, &controlv1.GetClusterRequest{})
		token = resp.GetCluster().GetRootCa().GetJoinTokens().GetWorker()
		if err == nil && token == "" {
			err = errors.New("no worker token yet")
		}
		return err
	})

	wcfg := config.Default()
	wcfg.Node.Role = config.RoleWorker
	wcfg.Node.Hostname = "w1"
	wcfg.Node.DataDir = filepath.Join(dir, "w1")
	wcfg.Join.Addrs = []string{mcfg.Manager.ListenAddr}
	wcfg.Join.Token = token
	wcfg.Plugins = map[string]config.Plugin{"executor": {Path: simPlugin}}
	wcfg.Gossip.ListenAddr = "127.0.0.1:0"
	ownTable(t, &wcfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, wcfg, slog.New(slog.NewTextHandler(t.Output(), nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker node.Run = %v, want nil once ctx ended", err)
		}
	}()

	executors := map[string]string{} // node ID: executor
	eventually(t, func(ctx context.Context) error {
		resp, err := client.ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		clear(executors)
		for _, n := range resp.GetNodes() {
			if n.GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY {
				executors[n.GetId()] = n.GetDescription().GetExecutor()
			}
		}
		if len(executors) != 2 {
			return fmt.Errorf("ready nodes: %v, want the manager and the worker", executors)
		}
		return nil
	})
	svc, err := client.CreateService(t.Context(), &controlv1.CreateServiceRequest{Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "web"},
		Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "sim"}},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 4}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func(ctx context.Context) error {
		resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{ServiceIds: []string{svc.GetService().GetId()}})
		if err != nil {
			return err
		}
		byExecutor := map[string]int{}
		for _, task := range resp.GetTasks() {
			if task.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
				byExecutor[executors[task.GetNodeId()]]++
			}
		}
		if byExecutor["simplugin"] == 0 || byExecutor["simplugin"]+byExecutor["simulated"] != 4 {
			return fmt.Errorf("running tasks by executor: %v, want 4, some on the worker", byExecutor)
		}
		return nil
	})
	// The worker gossips, so the cluster has its gossip key by now; it
	// goes to workers over their sessions, never out of the control API.
	cl, err := client.GetCluster(t.Context(), &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if k := cl.GetCluster().GetGossipKey(); len(k) != 0 {
		t.Errorf("GetCluster returned the gossip key (%d bytes), want it stripped", len(k))
	}
}
