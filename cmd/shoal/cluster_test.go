package main

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestClusterInspectHidesSecrets(t *testing.T) {
	f := newFakeControl()
	f.cluster.RootCa.KeyPem = []byte("-----BEGIN PRIVATE KEY-----")
	host := f.serve(t)
	res := runCLI(host, "cluster", "inspect")
	if res.code != 0 {
		t.Fatalf("cluster inspect: exit %d, stderr %q", res.code, res.stderr)
	}
	var got objectv1.Cluster
	if err := protojson.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("cluster inspect printed invalid protojson: %v\n%s", err, res.stdout)
	}
	want := proto.CloneOf(f.cluster)
	want.RootCa.KeyPem, want.RootCa.JoinTokens = nil, nil
	if !proto.Equal(&got, want) {
		t.Errorf("cluster inspect = %v, want %v", &got, want)
	}
	for _, secret := range []string{"secret", "PRIVATE KEY"} {
		if strings.Contains(res.stdout, secret) {
			t.Errorf("cluster inspect shows %q:\n%s", secret, res.stdout)
		}
	}
}

func TestClusterUpdate(t *testing.T) {
	f := newFakeControl()
	f.conflicts = 1
	host := f.serve(t)
	res := runCLI(host, "cluster", "update", "--heartbeat-period", "10s", "--task-history-limit", "2")
	if res.code != 0 || res.stdout != "Cluster updated.\n" {
		t.Fatalf("cluster update = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	want := &objectv1.ClusterSpec{
		Annotations:   &objectv1.Annotations{Name: "default"},
		Dispatcher:    &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(10 * time.Second)},
		Orchestration: &objectv1.OrchestrationConfig{TaskHistoryRetention: 2},
	}
	if len(f.clusterUpdates) != 2 {
		t.Fatalf("cluster update: %d UpdateCluster calls, want 2 (one conflict, one retry)", len(f.clusterUpdates))
	}
	if got := f.clusterUpdates[1]; !proto.Equal(got.Spec, want) || got.RotateWorkerToken || got.RotateManagerToken {
		t.Errorf("cluster update sent %v, want spec %v and no rotation", got, want)
	}

	res = runCLI(host, "cluster", "update")
	if res.code != 1 || !strings.Contains(res.stderr, "nothing to update") {
		t.Errorf("cluster update without flags = exit %d, stderr %q; want exit 1, nothing to update", res.code, res.stderr)
	}
}

func TestJoinToken(t *testing.T) {
	f := newFakeControl()
	seed(f)
	host := f.serve(t)

	res := runCLI(host, "join-token", "worker")
	want := "To add a worker to this cluster, use this config on the new node:\n\n" +
		"[join]\n" +
		`addrs = ["10.0.0.1:4243", "10.0.0.2:4243", "10.0.0.3:4243"]` + "\n" +
		`token = "SHOAL-1-worker-secret"` + "\n\n"
	if res.code != 0 || res.stdout != want {
		t.Errorf("join-token worker = exit %d, stdout %q, stderr %q; want %q", res.code, res.stdout, res.stderr, want)
	}
	// What it prints is TOML a node's config can hold.
	snippet := strings.SplitN(res.stdout, "\n\n", 2)[1]
	var cfg struct {
		Join struct {
			Addrs []string
			Token string
		}
	}
	if _, err := toml.Decode(snippet, &cfg); err != nil || cfg.Join.Token != "SHOAL-1-worker-secret" || len(cfg.Join.Addrs) != 3 {
		t.Errorf("join-token snippet decodes to %+v, %v; want the token and 3 addresses", cfg, err)
	}

	res = runCLI(host, "join-token", "-q", "manager")
	if res.code != 0 || res.stdout != "SHOAL-1-manager-secret\n" {
		t.Errorf("join-token -q manager = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if len(f.clusterUpdates) != 0 {
		t.Errorf("join-token without --rotate sent %d updates", len(f.clusterUpdates))
	}

	res = runCLI(host, "join-token", "--rotate", "-q", "worker")
	if res.code != 0 || res.stdout != "SHOAL-1-worker-secret-rotated\n" {
		t.Errorf("join-token --rotate -q worker = exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	if len(f.clusterUpdates) != 1 || !f.clusterUpdates[0].RotateWorkerToken || f.clusterUpdates[0].RotateManagerToken || f.clusterUpdates[0].Spec != nil {
		t.Errorf("join-token --rotate worker sent %v, want one rotation of the worker token only", f.clusterUpdates)
	}

	res = runCLI(host, "join-token", "admin")
	if res.code != 1 || len(f.clusterUpdates) != 1 {
		t.Errorf("join-token admin = exit %d, stderr %q; want exit 1", res.code, res.stderr)
	}
}

func TestTOMLString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.1:4243", `"10.0.0.1:4243"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"tab\there", `"tab\u0009here"`},
	}
	for _, tt := range tests {
		got := tomlString(tt.in)
		if got != tt.want {
			t.Errorf("tomlString(%q) = %s, want %s", tt.in, got, tt.want)
		}
		var v struct{ S string }
		if _, err := toml.Decode("s = "+got, &v); err != nil || v.S != tt.in {
			t.Errorf("tomlString(%q) decodes to %q, %v", tt.in, v.S, err)
		}
	}
}
