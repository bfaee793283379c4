package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testNow is the clock of table tests, so that "N seconds ago" is stable.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeControl is an in-memory control API that keeps objects in maps and
// records the requests it gets. It implements what the CLI calls, with the
// server's contract: refs are IDs, unique ID prefixes or names; updates carry
// the version they read.
type fakeControl struct {
	controlv1.UnimplementedControlServer

	mu       sync.Mutex
	version  uint64
	cluster  *objectv1.Cluster
	leaderID string
	nodes    map[string]*objectv1.Node
	services map[string]*objectv1.Service
	tasks    map[string]*objectv1.Task
	networks map[string]*objectv1.Network
	// afterUpdate, when set, changes a service after each update, as the
	// orchestrator would.
	afterUpdate func(*objectv1.Service)

	// conflicts makes that many updates fail as if another writer had
	// changed the object since it was read (the fake bumps its version).
	conflicts int
	// createErr, if set, fails CreateService.
	createErr error
	// onCreate returns the tasks of a new service (none if nil).
	onCreate func(svc *objectv1.Service) []*objectv1.Task
	// onListTasks, if set, runs before each ListTasks answer with the
	// number of the call, from 1; it may change f's tasks.
	onListTasks func(f *fakeControl, call int)

	calls          []string
	creates        []*controlv1.CreateServiceRequest
	updates        []*controlv1.UpdateServiceRequest
	nodeUpdates    []*controlv1.UpdateNodeRequest
	clusterUpdates []*controlv1.UpdateClusterRequest
	listTasks      []*controlv1.ListTasksRequest
}

func newFakeControl() *fakeControl {
	return &fakeControl{
		cluster: &objectv1.Cluster{
			Id:   "cluster1",
			Meta: &objectv1.Meta{Version: 1},
			Spec: &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{Name: "default"}},
			RootCa: &objectv1.RootCA{
				CertPem:    []byte("-----BEGIN CERTIFICATE-----\n"),
				Digest:     "sha256:abcd",
				JoinTokens: &objectv1.JoinTokens{Worker: "SHOAL-1-worker-secret", Manager: "SHOAL-1-manager-secret"},
			},
		},
		version:  10,
		nodes:    map[string]*objectv1.Node{},
		services: map[string]*objectv1.Service{},
		tasks:    map[string]*objectv1.Task{},
		networks: map[string]*objectv1.Network{},
	}
}

// serve starts f on a unix socket and returns its --host.
func (f *fakeControl) serve(t *testing.T) string {
	t.Helper()
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "shoal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "control.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	controlv1.RegisterControlServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return "unix://" + path
}

func (f *fakeControl) record(method string) {
	f.calls = append(f.calls, method)
}

func (f *fakeControl) nextVersion() uint64 {
	f.version++
	return f.version
}

func (f *fakeControl) addService(svc *objectv1.Service) {
	f.services[svc.Id] = svc
}

func (f *fakeControl) addTask(t *objectv1.Task) {
	f.tasks[t.Id] = t
}

func (f *fakeControl) addNode(n *objectv1.Node) {
	f.nodes[n.Id] = n
}

// resolve finds a ref among objects by ID, name or unique ID prefix.
func resolve[T any](kind, ref string, objs map[string]T, name func(T) string) (T, error) {
	var zero T
	if o, ok := objs[ref]; ok {
		return o, nil
	}
	var found []T
	for id, o := range objs {
		if name(o) == ref || strings.HasPrefix(id, ref) {
			found = append(found, o)
		}
	}
	switch len(found) {
	case 0:
		return zero, sdk.ToGRPC(fmt.Errorf("%s %q: %w", kind, ref, sdk.ErrNotFound))
	case 1:
		return found[0], nil
	}
	return zero, sdk.ToGRPC(fmt.Errorf("%s %q is ambiguous: %w", kind, ref, sdk.ErrInvalidArgument))
}

func serviceName(s *objectv1.Service) string { return s.GetSpec().GetAnnotations().GetName() }
func nodeHostname(n *objectv1.Node) string   { return n.GetDescription().GetHostname() }

// conflict reports whether an update that read version must fail.
func (f *fakeControl) conflict(meta *objectv1.Meta, version uint64) error {
	if f.conflicts > 0 {
		f.conflicts--
		meta.Version = f.nextVersion() // another writer got in first
	}
	if meta.GetVersion() != version {
		return sdk.ToGRPC(fmt.Errorf("version conflict: it is at version %d, the request read version %d: %w",
			meta.GetVersion(), version, sdk.ErrFailedPrecondition))
	}
	return nil
}

func (f *fakeControl) GetCluster(context.Context, *controlv1.GetClusterRequest) (*controlv1.GetClusterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetCluster")
	return &controlv1.GetClusterResponse{Cluster: proto.CloneOf(f.cluster), LeaderId: f.leaderID}, nil
}

func (f *fakeControl) UpdateCluster(_ context.Context, req *controlv1.UpdateClusterRequest) (*controlv1.UpdateClusterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("UpdateCluster")
	f.clusterUpdates = append(f.clusterUpdates, req)
	if err := f.conflict(f.cluster.Meta, req.GetVersion()); err != nil {
		return nil, err
	}
	if req.Spec != nil {
		f.cluster.Spec = req.Spec
	}
	if req.RotateWorkerToken {
		f.cluster.RootCa.JoinTokens.Worker += "-rotated"
	}
	if req.RotateManagerToken {
		f.cluster.RootCa.JoinTokens.Manager += "-rotated"
	}
	f.cluster.Meta.Version = f.nextVersion()
	return &controlv1.UpdateClusterResponse{Cluster: proto.CloneOf(f.cluster)}, nil
}

func (f *fakeControl) GetNode(_ context.Context, req *controlv1.GetNodeRequest) (*controlv1.GetNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetNode")
	n, err := resolve("node", req.GetRef(), f.nodes, nodeHostname)
	if err != nil {
		return nil, err
	}
	return &controlv1.GetNodeResponse{Node: proto.CloneOf(n), Leader: n.Id == f.leaderID}, nil
}

func (f *fakeControl) ListNodes(_ context.Context, req *controlv1.ListNodesRequest) (*controlv1.ListNodesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListNodes")
	resp := &controlv1.ListNodesResponse{LeaderId: f.leaderID}
	for _, n := range f.nodes {
		if len(req.Roles) > 0 && !slices.Contains(req.Roles, n.GetRole()) {
			continue
		}
		resp.Nodes = append(resp.Nodes, proto.CloneOf(n))
	}
	slices.SortFunc(resp.Nodes, func(a, b *objectv1.Node) int { return strings.Compare(nodeHostname(a), nodeHostname(b)) })
	return resp, nil
}

func (f *fakeControl) UpdateNode(_ context.Context, req *controlv1.UpdateNodeRequest) (*controlv1.UpdateNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("UpdateNode")
	f.nodeUpdates = append(f.nodeUpdates, req)
	n, err := resolve("node", req.GetRef(), f.nodes, nodeHostname)
	if err != nil {
		return nil, err
	}
	if err := f.conflict(n.Meta, req.GetVersion()); err != nil {
		return nil, err
	}
	n.Spec = req.Spec
	n.Meta.Version = f.nextVersion()
	return &controlv1.UpdateNodeResponse{Node: proto.CloneOf(n)}, nil
}

func (f *fakeControl) RemoveNode(_ context.Context, req *controlv1.RemoveNodeRequest) (*controlv1.RemoveNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveNode")
	n, err := resolve("node", req.GetRef(), f.nodes, nodeHostname)
	if err != nil {
		return nil, err
	}
	if n.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_DOWN && !req.Force {
		return nil, sdk.ToGRPC(fmt.Errorf("node %s is not down; use --force: %w", req.Ref, sdk.ErrFailedPrecondition))
	}
	delete(f.nodes, n.Id)
	return &controlv1.RemoveNodeResponse{}, nil
}

func (f *fakeControl) CreateService(_ context.Context, req *controlv1.CreateServiceRequest) (*controlv1.CreateServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateService")
	f.creates = append(f.creates, req)
	if f.createErr != nil {
		return nil, sdk.ToGRPC(f.createErr)
	}
	svc := &objectv1.Service{
		Id:          fmt.Sprintf("svc%022d", len(f.services)+1),
		Meta:        &objectv1.Meta{Version: f.nextVersion()},
		Spec:        req.Spec,
		SpecVersion: 1,
	}
	f.addService(svc)
	if f.onCreate != nil {
		for _, t := range f.onCreate(svc) {
			f.addTask(t)
		}
	}
	return &controlv1.CreateServiceResponse{Service: proto.CloneOf(svc)}, nil
}

func (f *fakeControl) GetService(_ context.Context, req *controlv1.GetServiceRequest) (*controlv1.GetServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetService")
	s, err := resolve("service", req.GetRef(), f.services, serviceName)
	if err != nil {
		return nil, err
	}
	return &controlv1.GetServiceResponse{Service: proto.CloneOf(s)}, nil
}

func (f *fakeControl) ListServices(context.Context, *controlv1.ListServicesRequest) (*controlv1.ListServicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListServices")
	resp := &controlv1.ListServicesResponse{Running: map[string]int64{}, Desired: map[string]int64{}}
	for _, s := range f.services {
		resp.Services = append(resp.Services, proto.CloneOf(s))
	}
	slices.SortFunc(resp.Services, func(a, b *objectv1.Service) int { return strings.Compare(serviceName(a), serviceName(b)) })
	for _, t := range f.tasks {
		if t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_RUNNING {
			resp.Running[t.ServiceId]++
		}
		if t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING {
			resp.Desired[t.ServiceId]++
		}
	}
	return resp, nil
}

func (f *fakeControl) UpdateService(_ context.Context, req *controlv1.UpdateServiceRequest) (*controlv1.UpdateServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("UpdateService")
	f.updates = append(f.updates, req)
	s, err := resolve("service", req.GetRef(), f.services, serviceName)
	if err != nil {
		return nil, err
	}
	if err := f.conflict(s.Meta, req.GetVersion()); err != nil {
		return nil, err
	}
	if !proto.Equal(s.Spec, req.Spec) {
		s.PreviousSpec = s.Spec
	}
	s.Spec = req.Spec
	s.SpecVersion++
	s.Meta.Version = f.nextVersion()
	if f.afterUpdate != nil {
		f.afterUpdate(s)
	}
	return &controlv1.UpdateServiceResponse{Service: proto.CloneOf(s)}, nil
}

func (f *fakeControl) RemoveService(_ context.Context, req *controlv1.RemoveServiceRequest) (*controlv1.RemoveServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveService")
	s, err := resolve("service", req.GetRef(), f.services, serviceName)
	if err != nil {
		return nil, err
	}
	delete(f.services, s.Id)
	return &controlv1.RemoveServiceResponse{}, nil
}

func (f *fakeControl) ListTasks(_ context.Context, req *controlv1.ListTasksRequest) (*controlv1.ListTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListTasks")
	f.listTasks = append(f.listTasks, req)
	if f.onListTasks != nil {
		f.onListTasks(f, len(f.listTasks))
	}
	resp := &controlv1.ListTasksResponse{}
	for _, t := range f.tasks {
		if len(req.ServiceIds) > 0 && !slices.Contains(req.ServiceIds, t.ServiceId) ||
			len(req.NodeIds) > 0 && !slices.Contains(req.NodeIds, t.NodeId) ||
			len(req.DesiredStates) > 0 && !slices.Contains(req.DesiredStates, t.DesiredState) {
			continue
		}
		resp.Tasks = append(resp.Tasks, proto.CloneOf(t))
	}
	slices.SortFunc(resp.Tasks, func(a, b *objectv1.Task) int { return strings.Compare(a.Id, b.Id) })
	return resp, nil
}

func (f *fakeControl) GetTask(_ context.Context, req *controlv1.GetTaskRequest) (*controlv1.GetTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetTask")
	t, err := resolve("task", req.GetRef(), f.tasks, func(*objectv1.Task) string { return "" })
	if err != nil {
		return nil, err
	}
	return &controlv1.GetTaskResponse{Task: proto.CloneOf(t)}, nil
}

func networkName(n *objectv1.Network) string { return n.GetSpec().GetAnnotations().GetName() }

func (f *fakeControl) CreateNetwork(_ context.Context, req *controlv1.CreateNetworkRequest) (*controlv1.CreateNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("CreateNetwork")
	n := &objectv1.Network{
		Id:   fmt.Sprintf("net%022d", len(f.networks)+1),
		Meta: &objectv1.Meta{Version: f.nextVersion()},
		Spec: req.GetSpec(),
	}
	f.networks[n.Id] = n
	return &controlv1.CreateNetworkResponse{Network: proto.CloneOf(n)}, nil
}

func (f *fakeControl) GetNetwork(_ context.Context, req *controlv1.GetNetworkRequest) (*controlv1.GetNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("GetNetwork")
	n, err := resolve("network", req.GetRef(), f.networks, networkName)
	if err != nil {
		return nil, err
	}
	return &controlv1.GetNetworkResponse{Network: proto.CloneOf(n)}, nil
}

func (f *fakeControl) ListNetworks(context.Context, *controlv1.ListNetworksRequest) (*controlv1.ListNetworksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("ListNetworks")
	resp := &controlv1.ListNetworksResponse{}
	for _, n := range f.networks {
		resp.Networks = append(resp.Networks, proto.CloneOf(n))
	}
	slices.SortFunc(resp.Networks, func(a, b *objectv1.Network) int { return strings.Compare(networkName(a), networkName(b)) })
	return resp, nil
}

func (f *fakeControl) RemoveNetwork(_ context.Context, req *controlv1.RemoveNetworkRequest) (*controlv1.RemoveNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveNetwork")
	n, err := resolve("network", req.GetRef(), f.networks, networkName)
	if err != nil {
		return nil, err
	}
	delete(f.networks, n.Id)
	return &controlv1.RemoveNetworkResponse{}, nil
}

// callsOf returns how many calls of method f got.
func (f *fakeControl) callsOf(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == method {
			n++
		}
	}
	return n
}

// result is what one run of the CLI printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// newTestCLI returns a CLI that prints into buffers, reads no environment,
// and polls fast. Its clock is testNow; progress tests set now to time.Now.
func newTestCLI() *cli {
	return &cli{
		now:    func() time.Time { return testNow },
		getenv: func(string) string { return "" },
		poll:   5 * time.Millisecond,
		settle: 100 * time.Millisecond,
	}
}

// run runs the CLI with args against host.
func (c *cli) run(host string, args ...string) result {
	var out, errOut bytes.Buffer
	c.out, c.errOut = &out, &errOut
	code := c.execute(context.Background(), append([]string{"--host", host}, args...))
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// runCLI runs a test CLI with args against host.
func runCLI(host string, args ...string) result {
	return newTestCLI().run(host, args...)
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func ts(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(testNow.Add(-ago)) }
