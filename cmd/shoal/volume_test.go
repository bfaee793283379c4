package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// volumeControl is fakeControl with the nodes' volumes: by node ID, the
// names each holds; a volume named "used" is refused removal.
type volumeControl struct {
	*fakeControl
	vols     map[string][]string
	silent   []string // nodes listed as not answering
	lsReqs   []*controlv1.ListVolumesRequest
	removals []string
}

func (f *volumeControl) serve(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lis, err := net.Listen("unix", filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	controlv1.RegisterControlServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return "unix://" + lis.Addr().String()
}

func (f *volumeControl) ListVolumes(_ context.Context, req *controlv1.ListVolumesRequest) (*controlv1.ListVolumesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lsReqs = append(f.lsReqs, req)
	resp := &controlv1.ListVolumesResponse{}
	for _, id := range []string{"node1aaaaaaaaaaaaaaaaaaaaa", "node2bbbbbbbbbbbbbbbbbbbbb"} {
		if req.GetNode() != "" && !strings.HasPrefix(id, req.GetNode()) && nodeHostname(f.nodes[id]) != req.GetNode() {
			continue
		}
		for _, v := range f.vols[id] {
			resp.Volumes = append(resp.Volumes, &objectv1.VolumeInfo{Name: v, NodeId: id, InUseBy: []string{"t1"}})
		}
	}
	if req.GetNode() == "" {
		for _, id := range f.silent {
			resp.Errors = append(resp.Errors, &controlv1.VolumeNodeError{NodeId: id, Hostname: "gamma", Error: "did not answer within 5s"})
		}
	}
	return resp, nil
}

func (f *volumeControl) RemoveVolume(_ context.Context, req *controlv1.RemoveVolumeRequest) (*controlv1.RemoveVolumeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := resolve("node", req.GetNode(), f.nodes, nodeHostname)
	if err != nil {
		return nil, err
	}
	if req.GetName() == "used" {
		return nil, sdk.ToGRPC(fmt.Errorf("node %s: volume used is in use by task t1: %w", n.Id, sdk.ErrFailedPrecondition))
	}
	f.removals = append(f.removals, n.Id+"/"+req.GetName())
	return &controlv1.RemoveVolumeResponse{NodeId: n.Id, Name: req.GetName()}, nil
}

func newVolumeControl() *volumeControl {
	f := &volumeControl{fakeControl: newFakeControl(), vols: map[string][]string{
		"node1aaaaaaaaaaaaaaaaaaaaa": {"data"},
		"node2bbbbbbbbbbbbbbbbbbbbb": {"cache", "db"},
	}}
	f.addNode(&objectv1.Node{Id: "node1aaaaaaaaaaaaaaaaaaaaa", Description: &objectv1.NodeDescription{Hostname: "alpha"}})
	f.addNode(&objectv1.Node{Id: "node2bbbbbbbbbbbbbbbbbbbbb", Description: &objectv1.NodeDescription{Hostname: "beta"}})
	return f
}

func TestVolumeLs(t *testing.T) {
	f := newVolumeControl()
	f.silent = []string{"node3ccccccccccccccccccccc"}
	host := f.serve(t)

	r := runCLI(host, "volume", "ls")
	if r.code != 0 {
		t.Fatalf("volume ls: %+v", r)
	}
	want := "NODE      NAME      TASKS\n" +
		"alpha     data      1\n" +
		"beta      cache     1\n" +
		"beta      db        1\n"
	if r.stdout != want {
		t.Errorf("volume ls:\n%s\nwant:\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "warning: node gamma: did not answer") {
		t.Errorf("stderr = %q, want the silent node named", r.stderr)
	}

	r = runCLI(host, "volume", "ls", "--node", "beta", "--format", "json")
	if r.code != 0 {
		t.Fatalf("volume ls --node beta --format json: %+v", r)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if len(got) != 2 || got[0]["name"] != "cache" || got[1]["name"] != "db" {
		t.Errorf("json = %v, want beta's cache and db", got)
	}
	if last := f.lsReqs[len(f.lsReqs)-1]; last.GetNode() != "beta" {
		t.Errorf("request node = %q, want beta", last.GetNode())
	}

	r = runCLI(host, "volume", "ls", "-q")
	if r.stdout != "data\ncache\ndb\n" {
		t.Errorf("volume ls -q = %q", r.stdout)
	}
}

func TestVolumeRm(t *testing.T) {
	f := newVolumeControl()
	host := f.serve(t)

	r := runCLI(host, "volume", "rm", "data")
	if r.code == 0 || !strings.Contains(r.stderr, "--node is required") {
		t.Errorf("rm without --node: %+v", r)
	}

	r = runCLI(host, "volume", "rm", "--node", "alpha", "data", "used", "other")
	if r.code == 0 {
		t.Errorf("rm of a used volume succeeded: %+v", r)
	}
	if r.stdout != "data\nother\n" {
		t.Errorf("stdout = %q, want the removed names", r.stdout)
	}
	if !strings.Contains(r.stderr, "in use by task t1") {
		t.Errorf("stderr = %q, want the refusal naming the task", r.stderr)
	}
	if strings.Join(f.removals, " ") != "node1aaaaaaaaaaaaaaaaaaaaa/data node1aaaaaaaaaaaaaaaaaaaaa/other" {
		t.Errorf("removals = %v", f.removals)
	}

	r = runCLI(host, "volume", "rm", "--node", "beta", "--format", "json", "db")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "db"`) && !strings.Contains(r.stdout, `"name":"db"`) {
		t.Errorf("rm --format json: %+v", r)
	}
}
