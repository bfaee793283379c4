package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/clustertest"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

type running struct {
	m      *Manager
	cfg    config.Config
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t testing.TB, dir string) config.Config {
	t.Helper()
	ports := clustertest.FreePorts(t, 2)
	cfg := config.Default()
	cfg.Node.Hostname = filepath.Base(dir)
	cfg.Node.DataDir = filepath.Join(dir, "data")
	cfg.Manager.ListenAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg.Manager.RaftListenAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfg.Manager.ControlSocket = filepath.Join(dir, "control.sock")
	cfg.Metrics.ListenAddr = ""
	// The bundled scheduler and IPAM plugins, built next to the shoal binary.
	bin := filepath.Dir(clustertest.Binary(t))
	cfg.Plugins = map[string]config.Plugin{
		"scheduler": {Path: filepath.Join(bin, "scheduler-spread")},
		"ipam":      {Path: filepath.Join(bin, "ipam")},
	}
	return cfg
}

func start(t testing.TB, cfg config.Config) *running {
	t.Helper()
	return startWith(t, cfg, slog.New(slog.DiscardHandler))
}

// startWith runs a manager that logs to logger until the test ends, and
// waits until it serves and its node is Ready.
func startWith(t testing.TB, cfg config.Config, logger *slog.Logger) *running {
	t.Helper()
	m, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	r := &running{m: m, cfg: cfg, cancel: rcancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(rctx) }()
	t.Cleanup(r.stop)
	select {
	case <-m.Ready():
	case err := <-r.done:
		rcancel()
		r.cancel = nil
		t.Fatalf("manager stopped before it served: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("manager not serving within 30s")
	}
	r.waitReady(t)
	return r
}

func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	<-r.done
}

func (r *running) client(t testing.TB) controlv1.ControlClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+r.cfg.Manager.ControlSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return controlv1.NewControlClient(conn)
}

// waitReady waits until the cluster object exists and this node is Ready.
func (r *running) waitReady(t testing.TB) {
	t.Helper()
	c := r.client(t)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := c.GetNode(ctx, &controlv1.GetNodeRequest{Ref: r.m.NodeID()})
		cancel()
		if err == nil && resp.GetNode().GetStatus().GetState() == objectv1.NodeState_NODE_STATE_READY {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("manager not ready within 30s")
}

func spec(name, image string, replicas int64) *objectv1.ServiceSpec {
	return &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: name},
		Task:        &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: image}},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}},
	}
}

func TestJoinAndCallerChecks(t *testing.T) {
	dir := t.TempDir()
	m1 := start(t, testConfig(t, filepath.Join(dir, "m1")))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := m1.client(t).GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := cl.GetCluster().GetRootCa().GetJoinTokens()
	if len(cl.GetCluster().GetRootCa().GetKeyPem()) != 0 {
		t.Fatal("GetCluster returned the CA key")
	}
	addrs := []string{m1.cfg.Manager.ListenAddr}

	t.Run("wrong token", func(t *testing.T) {
		tok, err := ca.ParseJoinToken(tokens.GetWorker())
		if err != nil {
			t.Fatal(err)
		}
		forged := strings.TrimSuffix(tokens.GetWorker(), tok.Secret) + strings.Repeat("a", len(tok.Secret))
		_, err = ca.Join(ctx, addrs, forged, "intruder", "linux/amd64", filepath.Join(dir, "forged"))
		if err == nil || !strings.Contains(err.Error(), "invalid join token") {
			t.Fatalf("Join(forged token) = %v, want an invalid join token error", err)
		}
	})

	// A second, unrelated cluster.
	m2 := start(t, testConfig(t, filepath.Join(dir, "m2")))
	cl2, err := m2.client(t).GetCluster(ctx, &controlv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("token of another cluster", func(t *testing.T) {
		_, err := ca.Join(ctx, addrs, cl2.GetCluster().GetRootCa().GetJoinTokens().GetManager(), "stranger", "linux/amd64", filepath.Join(dir, "stranger"))
		if !errors.Is(err, ca.ErrRootMismatch) {
			t.Fatalf("Join(other cluster's token) = %v, want ErrRootMismatch", err)
		}
	})

	t.Run("certificate of another CA", func(t *testing.T) {
		_, err := tlsClient(t, m1.cfg.Manager.ListenAddr, m2.m.Identity()).ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err == nil {
			t.Fatal("ListNodes with another cluster's manager certificate succeeded")
		}
		t.Logf("refused: %v", err)
	})

	t.Run("worker certificate on the control API", func(t *testing.T) {
		worker, err := ca.Join(ctx, addrs, tokens.GetWorker(), "w1", "linux/amd64", filepath.Join(dir, "w1"))
		if err != nil {
			t.Fatal(err)
		}
		if worker.Role() != objectv1.NodeRole_NODE_ROLE_WORKER {
			t.Fatalf("joined with the worker token as %v", worker.Role())
		}
		_, err = tlsClient(t, m1.cfg.Manager.ListenAddr, worker).ListNodes(ctx, &controlv1.ListNodesRequest{})
		if !errors.Is(sdk.FromGRPC(err), sdk.ErrPermissionDenied) {
			t.Fatalf("ListNodes with a worker certificate = %v, want PermissionDenied", err)
		}
	})

	t.Run("manager certificate on the control API", func(t *testing.T) {
		resp, err := tlsClient(t, m1.cfg.Manager.ListenAddr, m1.m.Identity()).ListNodes(ctx, &controlv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetNodes()) < 2 || resp.GetLeaderId() != m1.m.NodeID() {
			t.Fatalf("ListNodes = %v, want m1 (leader) and the worker", resp)
		}
	})
}

func tlsClient(t *testing.T, addr string, id *ca.Identity) controlv1.ControlClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(id.ClientTLS())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return controlv1.NewControlClient(conn)
}

func TestBadInputChangesNothing(t *testing.T) {
	m := start(t, testConfig(t, t.TempDir()))
	c := m.client(t)
	ctx := context.Background()
	if _, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("web", "example.local/web:1", 2)}); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, c, 2)
	before := m.m.Raft().Stats().AppliedIndex
	web, err := c.GetService(ctx, &controlv1.GetServiceRequest{Ref: "web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"negative replicas", func() error {
			_, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("api", "example.local/api:1", -1)})
			return err
		}, "spec.mode.replicated.replicas"},
		{"empty image", func() error {
			_, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec("api", "", 1)})
			return err
		}, "spec.task.container.image"},
		{"scale to negative", func() error {
			_, err := c.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: "web", Version: web.GetService().GetMeta().GetVersion(), Spec: spec("web", "example.local/web:1", -5)})
			return err
		}, "spec.mode.replicated.replicas"},
		{"update without version", func() error {
			_, err := c.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: "web", Spec: spec("web", "example.local/web:2", 1)})
			return err
		}, "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sdk.FromGRPC(tc.call())
			var fe sdk.FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("error = %v, want FieldErrors", err)
			}
			found := false
			for _, f := range fe {
				found = found || f.Field == tc.field
			}
			if !found {
				t.Errorf("error %v does not name %s", err, tc.field)
			}
		})
	}
	if after := m.m.Raft().Stats().AppliedIndex; after != before {
		t.Errorf("applied index moved from %d to %d: bad input wrote something", before, after)
	}
	got, err := c.GetService(ctx, &controlv1.GetServiceRequest{Ref: "web"})
	if err != nil || !proto.Equal(got.GetService(), web.GetService()) {
		t.Errorf("service web changed by rejected calls: %v, %v", got, err)
	}
}

func waitTasks(t testing.TB, c controlv1.ControlClient, n int) []*objectv1.Task {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got []*objectv1.Task
	for time.Now().Before(deadline) {
		resp, err := c.ListTasks(context.Background(), &controlv1.ListTasksRequest{DesiredStates: []objectv1.TaskState{objectv1.TaskState_TASK_STATE_RUNNING}})
		if err == nil && len(resp.GetTasks()) == n {
			return resp.GetTasks()
		}
		if err == nil {
			got = resp.GetTasks()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%d desired tasks, want %d", len(got), n)
	return nil
}

func TestRestartKeepsState(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Raft.SnapshotThreshold = 16
	m := start(t, cfg)
	c := m.client(t)
	ctx := context.Background()
	for i := range 30 {
		if _, err := c.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec(fmt.Sprintf("svc-%d", i), "example.local/app:1", 1)}); err != nil {
			t.Fatal(err)
		}
		if i == 19 {
			if err := m.m.Raft().Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitSettled(t, c, 30)
	before := m.m.Store().Snapshot()
	m.stop()

	m = start(t, cfg)
	if err := m.m.Raft().Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	after := m.m.Store().Snapshot()
	before.Index, after.Index = 0, 0
	if len(after.GetServices()) != 30 || len(after.GetTasks()) != 30 {
		t.Fatalf("after restart: %d services, %d tasks; want 30 and 30", len(after.GetServices()), len(after.GetTasks()))
	}
	// The restarted manager re-registers itself (same addresses): its node
	// record may be rewritten, everything else must be identical.
	before.Nodes, after.Nodes = nil, nil
	if !proto.Equal(before, after) {
		t.Error("state after restart differs from the state before")
	}
}

// waitSettled waits for n desired tasks and for placement to be done with
// them: with no worker, every task ends up refused, and the leader's stages
// write nothing more.
func waitSettled(t testing.TB, c controlv1.ControlClient, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for settled := false; !settled; {
		if time.Now().After(deadline) {
			t.Fatal("placement did not settle within 20s")
		}
		settled = true
		for _, tk := range waitTasks(t, c, n) {
			if !strings.HasPrefix(tk.GetStatus().GetMessage(), "no suitable node") {
				settled = false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunReleasesWhatItAcquired: New binds and writes nothing; a Run that
// fails once it holds its listeners (the Raft port is taken) gives them
// back before it returns.
func TestRunReleasesWhatItAcquired(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	m, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Node.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("New touched the data directory: %v", err)
	}
	assertFree(t, cfg.Manager.ListenAddr)

	taken, err := net.Listen("tcp", cfg.Manager.RaftListenAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if err := m.Run(t.Context()); err == nil || !strings.Contains(err.Error(), cfg.Manager.RaftListenAddr) {
		t.Fatalf("Run with the Raft port taken = %v, want an error naming it", err)
	}
	select {
	case <-m.Ready():
		t.Fatal("Ready is closed, yet Run failed before it served")
	default:
	}
	assertFree(t, cfg.Manager.ListenAddr)
	if _, err := os.Stat(cfg.Manager.ControlSocket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket is left behind: %v", err)
	}
}

func assertFree(t *testing.T, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("%s is still bound: %v", addr, err)
	}
	lis.Close()
}
