package ca

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
)

func TestIssueNodeCertificateRefuses(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	other := newFakeRegistrar(t, "cluster-2", time.Hour)
	srv := NewServer(reg, testLogger(t))
	keyPEM, _ := NewKey()
	csrPEM, _ := NewCSR(keyPEM)
	good := &cav1.IssueNodeCertificateRequest{Token: reg.root.GetJoinTokens().GetWorker(), Csr: csrPEM, Hostname: "host-a", Platform: "linux/arm64"}
	with := func(edit func(r *cav1.IssueNodeCertificateRequest)) *cav1.IssueNodeCertificateRequest {
		r := &cav1.IssueNodeCertificateRequest{Token: good.Token, Csr: good.Csr, Hostname: good.Hostname, Platform: good.Platform}
		edit(r)
		return r
	}
	tests := []struct {
		name     string
		req      *cav1.IssueNodeCertificateRequest
		wantCode codes.Code
		wantMsg  string // substring
	}{
		{"token of another CA", with(func(r *cav1.IssueNodeCertificateRequest) { r.Token = other.root.GetJoinTokens().GetWorker() }),
			codes.PermissionDenied, "join token pins root CA " + other.root.GetDigest() + ", this cluster's root CA is " + reg.root.GetDigest()},
		{"manager token of another CA", with(func(r *cav1.IssueNodeCertificateRequest) { r.Token = other.root.GetJoinTokens().GetManager() }),
			codes.PermissionDenied, "join token pins root CA " + other.root.GetDigest()},
		{"malformed token", with(func(r *cav1.IssueNodeCertificateRequest) { r.Token = "SHL1-abc" }),
			codes.InvalidArgument, "token: token has 2 dash-separated parts"},
		{"no csr", with(func(r *cav1.IssueNodeCertificateRequest) { r.Csr = nil }), codes.InvalidArgument, "csr: no PEM block"},
		{"no hostname", with(func(r *cav1.IssueNodeCertificateRequest) { r.Hostname = "" }), codes.InvalidArgument, "hostname: is empty"},
		{"hostname with space", with(func(r *cav1.IssueNodeCertificateRequest) { r.Hostname = "host a" }), codes.InvalidArgument, "hostname: has white space"},
		{"long hostname", with(func(r *cav1.IssueNodeCertificateRequest) { r.Hostname = strings.Repeat("a", 254) }), codes.InvalidArgument, "hostname: is 254 bytes, want at most 253"},
		{"bad platform", with(func(r *cav1.IssueNodeCertificateRequest) { r.Platform = "linux" }), codes.InvalidArgument, `platform: is "linux", want os/arch`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := srv.IssueNodeCertificate(context.Background(), tt.req)
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Errorf("IssueNodeCertificate() = %v %q, want %v containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if n := reg.count(); n != 0 {
				t.Errorf("IssueNodeCertificate() refused but registered %d nodes", n)
			}
		})
	}
	if _, err := srv.IssueNodeCertificate(context.Background(), good); err != nil {
		t.Errorf("IssueNodeCertificate(good) error = %v", err)
	}
}

func TestNewNodeID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id, err := newNodeID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != nodeIDLen || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyz") != "" || seen[id] {
			t.Fatalf("newNodeID() = %q, want %d new base-36 characters", id, nodeIDLen)
		}
		seen[id] = true
	}
}

// TestRenewNodeCertificate renews over real gRPC and mTLS: the role follows
// the cluster's record, a removed node is refused, and so is a caller
// without a certificate.
func TestRenewNodeCertificate(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	ca := startCA(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := Join(ctx, []string{ca.addr}, reg.root.GetJoinTokens().GetWorker(), "host-a", "linux/amd64", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	client := cav1.NewNodeCAClient(dial(t, ca.addr, id.ClientTLS()))
	renew := func() (*cav1.RenewNodeCertificateResponse, []byte, error) {
		keyPEM, _ := NewKey()
		csrPEM, _ := NewCSR(keyPEM)
		resp, err := client.RenewNodeCertificate(ctx, &cav1.RenewNodeCertificateRequest{Csr: csrPEM})
		return resp, keyPEM, err
	}

	resp, keyPEM, err := renew()
	if err != nil || resp.GetRole() != worker {
		t.Fatalf("RenewNodeCertificate() = %v, %v, want role %v", resp.GetRole(), err, worker)
	}

	reg.setDesiredRole(id.NodeID(), manager)
	resp, keyPEM, err = renew()
	if err != nil || resp.GetRole() != manager {
		t.Fatalf("RenewNodeCertificate() after promotion = %v, %v, want role %v", resp.GetRole(), err, manager)
	}
	if err := id.Renewed(keyPEM, resp.GetCertificatePem()); err != nil {
		t.Fatalf("Renewed(promoted certificate) error = %v", err)
	}
	if id.Role() != manager || len(id.current().Leaf.DNSNames) != 1 {
		t.Errorf("after promotion: role %v, DNS names %v, want a manager certificate", id.Role(), id.current().Leaf.DNSNames)
	}

	reg.remove(id.NodeID())
	_, _, err = renew()
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.HasPrefix(st.Message(), "node removed") {
		t.Errorf("RenewNodeCertificate() after removal = %v %q, want PermissionDenied \"node removed...\"", st.Code(), st.Message())
	}

	anonymous := cav1.NewNodeCAClient(dial(t, ca.addr, noCertClient(id)))
	csrPEM, _ := NewCSR(keyPEM)
	_, err = anonymous.RenewNodeCertificate(ctx, &cav1.RenewNodeCertificateRequest{Csr: csrPEM})
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrPermissionDenied) || !strings.Contains(err.Error(), "needs a client certificate") {
		t.Errorf("RenewNodeCertificate(no certificate) error = %v, want permission denied: needs a client certificate", err)
	}
}
