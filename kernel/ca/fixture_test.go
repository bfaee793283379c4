package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	worker  = objectv1.NodeRole_NODE_ROLE_WORKER
	manager = objectv1.NodeRole_NODE_ROLE_MANAGER
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fakeRegistrar is an in-memory Registrar.
type fakeRegistrar struct {
	root      *objectv1.RootCA
	clusterID string
	ttl       time.Duration

	mu    sync.Mutex
	nodes map[string]*objectv1.Node
}

func newFakeRegistrar(t *testing.T, clusterID string, ttl time.Duration) *fakeRegistrar {
	t.Helper()
	root, err := NewRootCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &fakeRegistrar{root: root, clusterID: clusterID, ttl: ttl, nodes: map[string]*objectv1.Node{}}
}

func (f *fakeRegistrar) Root() (*objectv1.RootCA, string, time.Duration, error) {
	return f.root, f.clusterID, f.ttl, nil
}

func (f *fakeRegistrar) RegisterNode(_ context.Context, node *objectv1.Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[node.GetId()] = proto.Clone(node).(*objectv1.Node)
	return nil
}

func (f *fakeRegistrar) NodeRole(nodeID string) (objectv1.NodeRole, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[nodeID]
	if !ok {
		return 0, sdk.ErrNotFound
	}
	return n.GetSpec().GetDesiredRole(), nil
}

func (f *fakeRegistrar) node(nodeID string) *objectv1.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[nodeID]
}

func (f *fakeRegistrar) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nodes)
}

func (f *fakeRegistrar) setDesiredRole(nodeID string, role objectv1.NodeRole) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[nodeID].Spec.DesiredRole = role
}

func (f *fakeRegistrar) remove(nodeID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, nodeID)
}

// newTestIdentity signs a certificate for a node of the root and stores it
// in a new directory.
func newTestIdentity(t *testing.T, root *objectv1.RootCA, clusterID, nodeID string, role objectv1.NodeRole, ttl time.Duration) *Identity {
	t.Helper()
	keyPEM, certPEM := signTest(t, root, clusterID, nodeID, role, time.Now(), ttl)
	id, err := NewIdentity(t.TempDir(), keyPEM, certPEM, root.GetCertPem())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// signTest makes a key and a certificate for it.
func signTest(t *testing.T, root *objectv1.RootCA, clusterID, nodeID string, role objectv1.NodeRole, now time.Time, ttl time.Duration) (keyPEM, certPEM []byte) {
	t.Helper()
	keyPEM, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := NewCSR(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner(root)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = signer.Sign(csrPEM, nodeID, role, clusterID, now, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return keyPEM, certPEM
}

// caServer is a NodeCA service on 127.0.0.1 behind a manager's ServerTLS
// and NodeCAPolicy, counting the calls that reach it.
type caServer struct {
	addr    string
	manager *Identity
	calls   atomic.Int32
}

func startCA(t *testing.T, reg *fakeRegistrar) *caServer {
	t.Helper()
	cs := &caServer{manager: newTestIdentity(t, reg.root, reg.clusterID, "manager-1", manager, time.Hour)}
	count := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		cs.calls.Add(1)
		return handler(ctx, req)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(cs.manager.ServerTLS())),
		grpc.ChainUnaryInterceptor(count, NodeCAPolicy().UnaryInterceptor()),
	)
	cav1.RegisterNodeCAServer(srv, NewServer(reg, testLogger(t)))
	cs.addr = serve(t, srv)
	return cs
}

// serve runs srv on a 127.0.0.1 port until the test ends.
func serve(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// dial connects to addr with the TLS configuration, until the test ends.
func dial(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// inprocCA calls a Server in process as the identity would over mTLS.
type inprocCA struct {
	srv *Server
	id  *Identity
}

func (c inprocCA) IssueNodeCertificate(ctx context.Context, in *cav1.IssueNodeCertificateRequest, _ ...grpc.CallOption) (*cav1.IssueNodeCertificateResponse, error) {
	return c.srv.IssueNodeCertificate(ctx, in)
}

func (c inprocCA) RenewNodeCertificate(ctx context.Context, in *cav1.RenewNodeCertificateRequest, _ ...grpc.CallOption) (*cav1.RenewNodeCertificateResponse, error) {
	return c.srv.RenewNodeCertificate(peerContext(ctx, c.id.current().Leaf), in)
}

// peerContext is a server context whose caller presented leaf.
func peerContext(ctx context.Context, leaf *x509.Certificate) context.Context {
	return peer.NewContext(ctx, &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}},
	})
}
