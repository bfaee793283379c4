package ca

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
)

// TestRenewer runs the renewal loop on synctest's fake clock, against the
// real Server called in process.
func TestRenewer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 24 * time.Hour
		reg := newFakeRegistrar(t, "cluster-1", ttl)
		srv := NewServer(reg, testLogger(t))
		keyPEM, _ := NewKey()
		csrPEM, _ := NewCSR(keyPEM)
		resp, err := srv.IssueNodeCertificate(context.Background(), &cav1.IssueNodeCertificateRequest{
			Token: reg.root.GetJoinTokens().GetWorker(), Csr: csrPEM, Hostname: "host-a",
		})
		if err != nil {
			t.Fatal(err)
		}
		id, err := NewIdentity(t.TempDir(), keyPEM, resp.GetCertificatePem(), resp.GetRootCaPem())
		if err != nil {
			t.Fatal(err)
		}
		// The first two calls fail, as when no manager is reachable.
		var calls atomic.Int32
		client := func(context.Context) (cav1.NodeCAClient, error) {
			if calls.Add(1) <= 2 {
				return nil, errors.New("no manager reachable")
			}
			return inprocCA{srv: srv, id: id}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- NewRenewer(id, client, testLogger(t)).Run(ctx) }()

		// Each renewal comes when half to three quarters of the validity
		// has passed (plus retries), and long before expiry.
		for i, wantRole := range []string{"worker", "manager"} {
			issued, notAfter := time.Now(), id.NotAfter()
			if i == 1 {
				reg.setDesiredRole(id.NodeID(), manager) // promoted: the next certificate says so
			}
			<-id.Changed()
			elapsed := time.Since(issued)
			if elapsed < ttl/2 || elapsed > ttl*3/4+10*time.Second || !time.Now().Before(notAfter) {
				t.Errorf("renewal %d came %v after issue, want between %v and %v (plus retries), before expiry", i, elapsed, ttl/2, ttl*3/4)
			}
			if got := roleName(id.Role()); got != wantRole {
				t.Errorf("renewal %d: role %s, want %s", i, got, wantRole)
			}
			if !id.NotAfter().After(notAfter) {
				t.Errorf("renewal %d: NotAfter %v, want after %v", i, id.NotAfter(), notAfter)
			}
		}
		if n := calls.Load(); n != 4 {
			t.Errorf("client called %d times, want 4 (2 failures, 2 renewals)", n)
		}

		// A removed node cannot renew: Run gives up with the reason.
		reg.remove(id.NodeID())
		err = <-done
		if !errors.Is(err, sdk.ErrPermissionDenied) || !strings.Contains(err.Error(), "node removed") {
			t.Errorf("Run() after removal = %v, want permission denied: node removed", err)
		}
	})
}

func TestRenewerStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := newFakeRegistrar(t, "cluster-1", time.Hour)
		id := newTestIdentity(t, reg.root, "cluster-1", "node-1", worker, time.Hour)
		client := func(context.Context) (cav1.NodeCAClient, error) { return nil, errors.New("unreachable") }
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- NewRenewer(id, client, testLogger(t)).Run(ctx) }()
		time.Sleep(50 * time.Minute) // past the renewal point: retrying by now
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() after cancel = %v, want nil", err)
		}
	})
}

func TestRenewerGivesUpAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := newFakeRegistrar(t, "cluster-1", time.Hour)
		id := newTestIdentity(t, reg.root, "cluster-1", "node-1", worker, time.Hour)
		client := func(context.Context) (cav1.NodeCAClient, error) { return nil, errors.New("unreachable") }
		err := NewRenewer(id, client, testLogger(t)).Run(context.Background())
		if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "expired") {
			t.Errorf("Run() with managers unreachable past expiry = %v, want failed precondition: expired", err)
		}
	})
}

// TestRenewerOverGRPC renews a short-lived certificate through a real
// NodeCA server over mTLS.
func TestRenewerOverGRPC(t *testing.T) {
	const ttl = 3 * time.Second
	reg := newFakeRegistrar(t, "cluster-1", ttl)
	ca := startCA(t, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id, err := Join(ctx, []string{ca.addr}, reg.root.GetJoinTokens().GetWorker(), "host-a", "linux/amd64", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conn := dial(t, ca.addr, id.ClientTLS())
	client := func(context.Context) (cav1.NodeCAClient, error) { return cav1.NewNodeCAClient(conn), nil }
	changed, notAfter := id.Changed(), id.NotAfter()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- NewRenewer(id, client, testLogger(t)).Run(runCtx) }()
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no renewal before the deadline")
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil after cancel", err)
	}
	if !id.NotAfter().After(notAfter) {
		t.Errorf("NotAfter after renewal = %v, want after %v", id.NotAfter(), notAfter)
	}
	loaded, err := LoadIdentity(id.dir)
	if err != nil || !loaded.NotAfter().Equal(id.NotAfter()) {
		t.Errorf("LoadIdentity() after renewal = %v, %v, want the renewed certificate", loaded, err)
	}
}
