package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// fakeNetworks is a control API that serves the network calls only.
type fakeNetworks struct {
	controlv1.UnimplementedControlServer

	mu      sync.Mutex
	nets    []*objectv1.Network
	creates []*controlv1.CreateNetworkRequest
	removed []string
}

func (f *fakeNetworks) serve(t *testing.T) string {
	t.Helper()
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

func (f *fakeNetworks) CreateNetwork(_ context.Context, req *controlv1.CreateNetworkRequest) (*controlv1.CreateNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, req)
	n := &objectv1.Network{Id: fmt.Sprintf("net%022d", len(f.creates)), Spec: req.GetSpec()}
	f.nets = append(f.nets, n)
	return &controlv1.CreateNetworkResponse{Network: n}, nil
}

func (f *fakeNetworks) ListNetworks(context.Context, *controlv1.ListNetworksRequest) (*controlv1.ListNetworksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &controlv1.ListNetworksResponse{Networks: f.nets}, nil
}

func (f *fakeNetworks) RemoveNetwork(_ context.Context, req *controlv1.RemoveNetworkRequest) (*controlv1.RemoveNetworkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetRef() == "busy" {
		return nil, sdk.ToGRPC(fmt.Errorf("network busy is joined by 1 services (web): %w", sdk.ErrFailedPrecondition))
	}
	f.removed = append(f.removed, req.GetRef())
	return &controlv1.RemoveNetworkResponse{}, nil
}

func TestNetworkCreateLsRm(t *testing.T) {
	f := &fakeNetworks{}
	host := f.serve(t)
	res := runCLI(host, "network", "create", "--subnet", "10.50.0.0/16", "--node-prefix-len", "26", "-l", "team=a", "front")
	if res.code != 0 {
		t.Fatalf("network create: exit %d, stderr %q", res.code, res.stderr)
	}
	want := &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: "front", Labels: map[string]string{"team": "a"}}, Subnet: "10.50.0.0/16", NodePrefixLen: 26}
	if len(f.creates) != 1 || !proto.Equal(f.creates[0].GetSpec(), want) {
		t.Fatalf("CreateNetwork requests = %v, want one with %v", f.creates, want)
	}
	if res.stdout != "net0000000000000000000001\n" {
		t.Errorf("network create stdout = %q, want the ID", res.stdout)
	}
	if res := runCLI(host, "network", "create", "back"); res.code != 0 || f.creates[1].GetSpec().GetSubnet() != "" {
		t.Fatalf("network create back: exit %d, stderr %q, request %v", res.code, res.stderr, f.creates[1])
	}

	f.nets[0].Subnet, f.nets[0].NodePrefixLen = "10.50.0.0/16", 26
	f.nets[0].NodeSubnets = map[string]string{"n1": "10.50.0.64/26"}
	res = runCLI(host, "network", "ls")
	wantLs := "ID           NAME   SUBNET         NODE SLICES   NODES\n" +
		"net000000000 front  10.50.0.0/16   /26           1\n" +
		"net000000000 back   pending        -             0\n"
	if res.code != 0 || strings.Join(strings.Fields(res.stdout), " ") != strings.Join(strings.Fields(wantLs), " ") {
		t.Errorf("network ls = exit %d\n%s\nwant\n%s", res.code, res.stdout, wantLs)
	}

	res = runCLI(host, "network", "rm", "front", "busy")
	if res.code == 0 || !strings.Contains(res.stderr, "joined by 1 services") || res.stdout != "front\n" {
		t.Errorf("network rm front busy = exit %d, stdout %q, stderr %q; want front removed and busy's refusal shown", res.code, res.stdout, res.stderr)
	}
}

func TestServiceCreateNetworkFlag(t *testing.T) {
	f := newFakeControl()
	host := f.serve(t)
	res := runCLI(host, "service", "create", "--detach", "--name", "web", "--network", "front", "--network", "back", "nginx")
	if res.code != 0 {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	want := []*objectv1.NetworkAttachmentConfig{{Target: "front"}, {Target: "back"}}
	got := f.creates[0].GetSpec().GetTask().GetNetworks()
	if len(got) != len(want) || !proto.Equal(got[0], want[0]) || !proto.Equal(got[1], want[1]) {
		t.Errorf("networks = %v, want %v", got, want)
	}
}
