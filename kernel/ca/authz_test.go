package ca

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
)

// testPolicy guards the health service: Check needs a manager, Watch any
// node, List is open to all; nothing else is listed.
var testPolicy = Policy{
	healthpb.Health_Check_FullMethodName: {manager},
	healthpb.Health_Watch_FullMethodName: {worker, manager},
	healthpb.Health_List_FullMethodName:  nil,
}

func newHealthServer(creds credentials.TransportCredentials) *grpc.Server {
	srv := grpc.NewServer(grpc.Creds(creds),
		grpc.UnaryInterceptor(testPolicy.UnaryInterceptor()),
		grpc.StreamInterceptor(testPolicy.StreamInterceptor()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	return srv
}

// call makes one call of the method and returns its error.
func call(ctx context.Context, conn *grpc.ClientConn, method string) error {
	client := healthpb.NewHealthClient(conn)
	switch method {
	case healthpb.Health_Check_FullMethodName:
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	case healthpb.Health_List_FullMethodName:
		_, err := client.List(ctx, &healthpb.HealthListRequest{})
		return err
	case healthpb.Health_Watch_FullMethodName:
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	panic("unknown method " + method)
}

func TestPolicy(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	mgr := newTestIdentity(t, reg.root, "cluster-1", "manager-1", manager, time.Hour)
	mgr2 := newTestIdentity(t, reg.root, "cluster-1", "manager-2", manager, time.Hour)
	wrk := newTestIdentity(t, reg.root, "cluster-1", "worker-1", worker, time.Hour)
	addr := serve(t, newHealthServer(credentials.NewTLS(mgr.ServerTLS())))
	clients := map[string]*grpc.ClientConn{
		"manager": dial(t, addr, mgr2.ClientTLS()),
		"worker":  dial(t, addr, wrk.ClientTLS()),
		"no cert": dial(t, addr, noCertClient(mgr)),
	}
	check, watch, list := healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName, healthpb.Health_List_FullMethodName
	tests := []struct {
		client, method string
		want           string // the PermissionDenied message; "" for admitted
	}{
		{"manager", check, ""},
		{"worker", check, "permission denied: /grpc.health.v1.Health/Check needs a manager certificate, caller worker-1 is a worker"},
		{"no cert", check, "permission denied: /grpc.health.v1.Health/Check needs a client certificate"},
		{"worker", watch, ""},
		{"no cert", watch, "permission denied: /grpc.health.v1.Health/Watch needs a client certificate"},
		{"no cert", list, ""},
		{"worker", list, ""},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range tests {
		err := call(ctx, clients[tt.client], tt.method)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s calls %s: error %v, want admitted", tt.client, tt.method, err)
			}
			continue
		}
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != tt.want {
			t.Errorf("%s calls %s: %v %q, want PermissionDenied %q", tt.client, tt.method, st.Code(), st.Message(), tt.want)
		}
	}
}

func TestPolicyDeniesUnlistedMethods(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	mgr := newTestIdentity(t, reg.root, "cluster-1", "manager-1", manager, time.Hour)
	empty := Policy{healthpb.Health_Check_FullMethodName: {}}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(mgr.ServerTLS())),
		grpc.UnaryInterceptor(empty.UnaryInterceptor()), grpc.StreamInterceptor(empty.StreamInterceptor()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	conn := dial(t, serve(t, srv), mgr.ClientTLS())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for method, want := range map[string]string{
		healthpb.Health_List_FullMethodName:  "permission denied: /grpc.health.v1.Health/List is not open to any caller",
		healthpb.Health_Watch_FullMethodName: "permission denied: /grpc.health.v1.Health/Watch is not open to any caller",
		healthpb.Health_Check_FullMethodName: "permission denied: /grpc.health.v1.Health/Check is open to local callers only",
	} {
		err := call(ctx, conn, method)
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != want {
			t.Errorf("manager calls %s: %v %q, want PermissionDenied %q", method, st.Code(), st.Message(), want)
		}
	}
}

func TestPolicyTrustsLocalSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := newHealthServer(insecure.NewCredentials())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, method := range []string{healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName} {
		if err := call(ctx, conn, method); err != nil {
			t.Errorf("local caller calls %s: error %v, want admitted", method, err)
		}
	}
}

func TestPeerFromContext(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	wrk := newTestIdentity(t, reg.root, "cluster-1", "worker-1", worker, time.Hour)
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	tests := []struct {
		name    string
		ctx     context.Context
		want    Peer
		wantErr bool
	}{
		{"verified certificate", peerContext(context.Background(), wrk.current().Leaf), Peer{"worker-1", worker, "cluster-1"}, false},
		{"no peer", context.Background(), Peer{}, true},
		{"tls without certificate", peer.NewContext(context.Background(), &peer.Peer{Addr: tcp, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{}}}), Peer{}, true},
		{"insecure", peer.NewContext(context.Background(), &peer.Peer{Addr: tcp}), Peer{}, true},
	}
	for _, tt := range tests {
		got, err := PeerFromContext(tt.ctx)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("PeerFromContext(%s) = %+v, %v, want %+v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, sdk.ErrPermissionDenied) {
			t.Errorf("PeerFromContext(%s) error %v is not sdk.ErrPermissionDenied", tt.name, err)
		}
	}
}

func TestIsLocal(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want bool
	}{
		{&net.UnixAddr{Name: "/run/shoal.sock", Net: "unix"}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, false},
	}
	for _, tt := range tests {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: tt.addr})
		if got := IsLocal(ctx); got != tt.want {
			t.Errorf("IsLocal(%v) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if IsLocal(context.Background()) {
		t.Error("IsLocal(no peer) = true, want false")
	}
}
