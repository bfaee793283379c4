package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestJoin(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	ca := startCA(t, reg)
	tests := []struct {
		token   string
		want    objectv1.NodeRole
		wantDNS []string
	}{
		{reg.root.GetJoinTokens().GetWorker(), worker, nil},
		{reg.root.GetJoinTokens().GetManager(), manager, []string{ManagerServerName}},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			dir := t.TempDir()
			id, err := Join(ctx, []string{ca.addr}, tt.token, "host-a", "linux/amd64", dir)
			if err != nil {
				t.Fatalf("Join() error = %v", err)
			}
			if id.Role() != tt.want || id.ClusterID() != "cluster-1" || len(id.NodeID()) != nodeIDLen {
				t.Errorf("Join() = node %q, %v, cluster %q; want a %d-character ID, %v, cluster-1",
					id.NodeID(), id.Role(), id.ClusterID(), nodeIDLen, tt.want)
			}
			leaf := id.current().Leaf
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(reg.root.GetCertPem())
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("joined certificate does not chain to the root: %v", err)
			}
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("joined certificate DNS names = %v, want %v", leaf.DNSNames, tt.wantDNS)
			}
			node := reg.node(id.NodeID())
			if node == nil {
				t.Fatalf("node %s not registered", id.NodeID())
			}
			if node.GetRole() != tt.want || node.GetSpec().GetDesiredRole() != tt.want ||
				node.GetSpec().GetAvailability() != objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE ||
				node.GetStatus().GetState() != objectv1.NodeState_NODE_STATE_UNKNOWN ||
				node.GetStatus().GetAddr() != "127.0.0.1" ||
				node.GetDescription().GetHostname() != "host-a" || node.GetDescription().GetPlatform() != "linux/amd64" {
				t.Errorf("registered node = %v", node)
			}
			loaded, err := LoadIdentity(dir)
			if err != nil || loaded.NodeID() != id.NodeID() {
				t.Errorf("LoadIdentity(join dir) = %v, %v, want node %s", loaded, err, id.NodeID())
			}
		})
	}
}

func TestJoinWrongSecret(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	ca := startCA(t, reg)
	token, err := NewJoinToken(reg.root.GetDigest()) // the right CA, a secret nobody stored
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Join(ctx, []string{ca.addr}, token, "host-a", "linux/amd64", t.TempDir())
	if !errors.Is(err, sdk.ErrPermissionDenied) || !strings.Contains(err.Error(), "invalid join token") {
		t.Errorf("Join(wrong secret) error = %v, want permission denied: invalid join token", err)
	}
	if n := reg.count(); n != 0 {
		t.Errorf("Join(wrong secret) registered %d nodes, want 0", n)
	}
}

// TestJoinRefusesOtherCA: a token for another cluster's root makes the node
// refuse the server in the TLS handshake, so the secret is never sent.
func TestJoinRefusesOtherCA(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	ca := startCA(t, reg)
	other := newFakeRegistrar(t, "cluster-2", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Join(ctx, []string{ca.addr}, other.root.GetJoinTokens().GetWorker(), "host-a", "linux/amd64", t.TempDir())
	want := "join: " + ca.addr + ": root CA digest mismatch: token pins " + other.root.GetDigest() + ", server has " + reg.root.GetDigest()
	if !errors.Is(err, ErrRootMismatch) || err.Error() != want {
		t.Errorf("Join(other CA's token) error = %v, want %q", err, want)
	}
	if n := ca.calls.Load(); n != 0 {
		t.Errorf("the server received %d calls, want 0: the token must not leave the node", n)
	}
}

func TestJoinTriesNextManager(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	ca := startCA(t, reg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := Join(ctx, []string{down, ca.addr}, reg.root.GetJoinTokens().GetWorker(), "host-a", "", t.TempDir())
	if err != nil {
		t.Fatalf("Join(down, up) error = %v", err)
	}
	if id.Role() != worker {
		t.Errorf("Join(down, up).Role() = %v, want %v", id.Role(), worker)
	}
}

func TestJoinRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	if _, err := Join(ctx, []string{"127.0.0.1:1"}, "not-a-token", "h", "", t.TempDir()); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Join(malformed token) error = %v, want sdk.ErrInvalidArgument", err)
	}
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	if _, err := Join(ctx, nil, reg.root.GetJoinTokens().GetWorker(), "h", "", t.TempDir()); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Join(no address) error = %v, want sdk.ErrInvalidArgument", err)
	}
}
