package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestNodeUpdate(t *testing.T) {
	tests := []struct {
		args   []string
		change func(*objectv1.NodeSpec)
	}{
		{
			args:   []string{"--availability", "drain"},
			change: func(s *objectv1.NodeSpec) { s.Availability = objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN },
		},
		{
			args: []string{"--label-add", "zone=a", "--label-add", "ssd", "--role", "manager"},
			change: func(s *objectv1.NodeSpec) {
				s.Annotations.Labels = map[string]string{"zone": "a", "ssd": ""}
				s.DesiredRole = objectv1.NodeRole_NODE_ROLE_MANAGER
			},
		},
	}
	for _, tt := range tests {
		f := newFakeControl()
		seed(f)
		f.conflicts = 1
		want := proto.CloneOf(f.nodes[node4].Spec)
		tt.change(want)
		host := f.serve(t)
		args := append(append([]string{"node", "update"}, tt.args...), "node-4")
		res := runCLI(host, args...)
		if res.code != 0 || res.stdout != "node-4\n" {
			t.Errorf("%v = exit %d, stdout %q, stderr %q; want exit 0, %q", args, res.code, res.stdout, res.stderr, "node-4\n")
			continue
		}
		if len(f.nodeUpdates) != 2 {
			t.Fatalf("%v: %d UpdateNode calls, want 2 (one conflict, one retry)", args, len(f.nodeUpdates))
		}
		if got := f.nodeUpdates[1]; got.Ref != node4 || !proto.Equal(got.Spec, want) {
			t.Errorf("%v: UpdateNode(%q, %v), want (%q, %v)", args, got.Ref, got.Spec, node4, want)
		}
	}
}

func TestNodeUpdateRefused(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"node-1"}, "nothing to update"},
		{[]string{"--availability", "maintenance", "node-1"}, `"--availability" flag: want one of active, pause, drain`},
		{[]string{"--role", "boss", "node-1"}, `"--role" flag`},
		{[]string{"--label-add", "=v", "node-1"}, `"--label-add" flag`},
	}
	for _, tt := range tests {
		f := newFakeControl()
		seed(f)
		host := f.serve(t)
		res := runCLI(host, append([]string{"node", "update"}, tt.args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, tt.wantErr) || len(f.calls) != 0 {
			t.Errorf("node update %v = exit %d, stderr %q, calls %v; want exit 1, %q, no call", tt.args, res.code, res.stderr, f.calls, tt.wantErr)
		}
	}
}

func TestNodePromoteDemote(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)

	res := runCLI(host, "node", "promote", "node-4", "node-1", "nope")
	wantOut := "Node node-4 promoted to a manager in the cluster.\nNode node-1 is already a manager.\n"
	if res.code != 1 || res.stdout != wantOut || res.stderr != "Error: node \"nope\": not found\n" {
		t.Errorf("promote = exit %d, stdout %q, stderr %q; want 1, %q and the missing node", res.code, res.stdout, res.stderr, wantOut)
	}
	if len(f.nodeUpdates) != 1 || f.nodeUpdates[0].Spec.DesiredRole != objectv1.NodeRole_NODE_ROLE_MANAGER {
		t.Fatalf("promote sent %v, want one update to desired role manager", f.nodeUpdates)
	}

	res = runCLI(host, "node", "demote", "node-2")
	if res.code != 0 || res.stdout != "Node node-2 demoted to a worker in the cluster.\n" {
		t.Errorf("demote = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if got := f.nodes[node2].Spec.DesiredRole; got != objectv1.NodeRole_NODE_ROLE_WORKER {
		t.Errorf("after demote, desired role = %v, want worker", got)
	}
}

func TestNodeRm(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)
	res := runCLI(host, "node", "rm", "node-3", "node-4")
	if res.code != 1 || res.stdout != "node-3\n" || !strings.Contains(res.stderr, "not down") {
		t.Errorf("rm node-3 node-4 = exit %d, stdout %q, stderr %q; want node-3 removed, node-4 refused", res.code, res.stdout, res.stderr)
	}
	res = runCLI(host, "node", "rm", "--force", "node-4")
	if res.code != 0 || res.stdout != "node-4\n" {
		t.Errorf("rm --force node-4 = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if len(f.nodes) != 2 {
		t.Errorf("after rm, %d nodes, want 2", len(f.nodes))
	}
}
