package ca

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// DefaultCertTTL is the lifetime of node certificates when the cluster sets
// none: 90 days, renewed at about half of it, so a node may be off for weeks
// and still come back.
const DefaultCertTTL = 90 * 24 * time.Hour

const (
	// nodeIDLen is the length of a node ID: 128 random bits in base 36.
	nodeIDLen = 25
	// maxHostnameLen is the longest DNS name.
	maxHostnameLen = 253
)

// Registrar is the cluster state the NodeCA service reads and writes; the
// kernel implements it over the replicated store. Its methods are called
// concurrently, from gRPC handlers.
type Registrar interface {
	// Root returns the current root CA, with its key and join tokens, the
	// cluster ID and the node certificate lifetime (0 for DefaultCertTTL).
	Root() (root *objectv1.RootCA, clusterID string, certTTL time.Duration, err error)
	// RegisterNode stores a new node. It returns once the node is committed:
	// a certificate is handed out only for a node the cluster knows.
	RegisterNode(ctx context.Context, node *objectv1.Node) error
	// NodeRole returns the role the cluster now wants for the node
	// (spec.desired_role), or an error of kind sdk.ErrNotFound if the node
	// was removed.
	NodeRole(nodeID string) (objectv1.NodeRole, error)
}

// Server is the NodeCA gRPC service: it admits nodes that present a join
// token and renews the certificates of nodes the cluster still has.
type Server struct {
	cav1.UnimplementedNodeCAServer
	reg    Registrar
	logger *slog.Logger
}

var _ cav1.NodeCAServer = (*Server)(nil)

// NewServer returns the NodeCA service over the registrar.
func NewServer(reg Registrar, logger *slog.Logger) *Server {
	return &Server{reg: reg, logger: logger}
}

// NodeCAPolicy is the policy for the NodeCA methods, for a manager to merge
// into its own: anyone may present a join token; renewing needs a node
// certificate.
func NodeCAPolicy() Policy {
	return Policy{
		cav1.NodeCA_IssueNodeCertificate_FullMethodName: nil,
		cav1.NodeCA_RenewNodeCertificate_FullMethodName: {objectv1.NodeRole_NODE_ROLE_WORKER, objectv1.NodeRole_NODE_ROLE_MANAGER},
	}
}

// IssueNodeCertificate admits a node with the role of the join token it
// presents, registers it under a new ID and signs its CSR.
func (s *Server) IssueNodeCertificate(ctx context.Context, req *cav1.IssueNodeCertificateRequest) (*cav1.IssueNodeCertificateResponse, error) {
	addr := peerAddr(ctx)
	tok, err := ParseJoinToken(req.GetToken())
	if err != nil {
		var te tokenError
		errors.As(err, &te)
		return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "token", Message: string(te)}})
	}
	root, clusterID, ttl, err := s.reg.Root()
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("issue node certificate: %w", err))
	}
	if tok.Digest != root.GetDigest() {
		s.logger.Warn("join refused: token for another root CA", "addr", addr, "token_digest", tok.Digest)
		return nil, status.Errorf(codes.PermissionDenied, "join token pins root CA %s, this cluster's root CA is %s", tok.Digest, root.GetDigest())
	}
	role, ok := tokenRole(tok, root.GetJoinTokens())
	if !ok {
		s.logger.Warn("join refused: invalid join token", "addr", addr)
		return nil, status.Error(codes.PermissionDenied, "invalid join token")
	}
	if err := validateJoin(req); err != nil {
		return nil, sdk.ToGRPC(err)
	}
	signer, err := NewSigner(root)
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("issue node certificate: %w", err))
	}
	nodeID, err := newNodeID()
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("issue node certificate: %w", err))
	}
	// Sign before registering: signing has no side effect, and a node is
	// registered only if it gets its certificate.
	certPEM, err := signer.Sign(req.GetCsr(), nodeID, role, clusterID, time.Now(), certTTL(ttl))
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("issue node certificate: %w", err))
	}
	node := &objectv1.Node{
		Id:   nodeID,
		Role: role,
		Spec: &objectv1.NodeSpec{
			DesiredRole:  role,
			Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
		},
		Description: &objectv1.NodeDescription{Hostname: req.GetHostname(), Platform: req.GetPlatform()},
		Status:      &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_UNKNOWN, Addr: addr},
	}
	if err := s.reg.RegisterNode(ctx, node); err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("issue node certificate: register node: %w", err))
	}
	s.logger.Info("node joined", "node_id", nodeID, "role", roleName(role), "hostname", req.GetHostname(), "addr", addr)
	return &cav1.IssueNodeCertificateResponse{
		NodeId:         nodeID,
		Role:           role,
		CertificatePem: certPEM,
		RootCaPem:      root.GetCertPem(),
		ClusterId:      clusterID,
	}, nil
}

// RenewNodeCertificate signs a new certificate for the calling node, with
// the role the cluster records for it now: a promotion or demotion takes
// effect at the node's next renewal.
func (s *Server) RenewNodeCertificate(ctx context.Context, req *cav1.RenewNodeCertificateRequest) (*cav1.RenewNodeCertificateResponse, error) {
	caller, err := PeerFromContext(ctx)
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("renew node certificate: %w", err))
	}
	root, clusterID, ttl, err := s.reg.Root()
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("renew node certificate: %w", err))
	}
	if caller.ClusterID != clusterID {
		return nil, status.Errorf(codes.PermissionDenied, "node %s belongs to cluster %s, this is %s", caller.NodeID, caller.ClusterID, clusterID)
	}
	role, err := s.reg.NodeRole(caller.NodeID)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		s.logger.Warn("renewal refused: node removed", "node_id", caller.NodeID)
		return nil, status.Errorf(codes.PermissionDenied, "node removed: node %s is no longer in the cluster, join it again with a join token", caller.NodeID)
	case err != nil:
		return nil, sdk.ToGRPC(fmt.Errorf("renew node certificate: %w", err))
	case role != objectv1.NodeRole_NODE_ROLE_WORKER && role != objectv1.NodeRole_NODE_ROLE_MANAGER:
		return nil, status.Errorf(codes.FailedPrecondition, "renew node certificate: node %s has desired role %v", caller.NodeID, role)
	}
	if _, err := parseCSR(req.GetCsr()); err != nil {
		return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "csr", Message: err.Error()}})
	}
	signer, err := NewSigner(root)
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("renew node certificate: %w", err))
	}
	certPEM, err := signer.Sign(req.GetCsr(), caller.NodeID, role, clusterID, time.Now(), certTTL(ttl))
	if err != nil {
		return nil, sdk.ToGRPC(fmt.Errorf("renew node certificate: %w", err))
	}
	if role != caller.Role {
		s.logger.Info("node role changed", "node_id", caller.NodeID, "from", roleName(caller.Role), "to", roleName(role))
	}
	s.logger.Debug("node certificate renewed", "node_id", caller.NodeID, "role", roleName(role))
	return &cav1.RenewNodeCertificateResponse{CertificatePem: certPEM, Role: role}, nil
}

// tokenRole compares the token with both of the cluster's tokens in
// constant time, and both always, so timing tells nothing about either.
func tokenRole(tok JoinToken, tokens *objectv1.JoinTokens) (objectv1.NodeRole, bool) {
	given := []byte(tok.String())
	worker := subtle.ConstantTimeCompare(given, []byte(tokens.GetWorker()))
	manager := subtle.ConstantTimeCompare(given, []byte(tokens.GetManager()))
	switch {
	case manager == 1:
		return objectv1.NodeRole_NODE_ROLE_MANAGER, true
	case worker == 1:
		return objectv1.NodeRole_NODE_ROLE_WORKER, true
	}
	return objectv1.NodeRole_NODE_ROLE_UNSPECIFIED, false
}

// validateJoin checks the parts of a join request other than the token.
func validateJoin(req *cav1.IssueNodeCertificateRequest) error {
	var fe sdk.FieldErrors
	if _, err := parseCSR(req.GetCsr()); err != nil {
		fe.Add("csr", "%v", err)
	}
	if h := req.GetHostname(); h == "" {
		fe.Add("hostname", "is empty")
	} else if len(h) > maxHostnameLen {
		fe.Add("hostname", "is %d bytes, want at most %d", len(h), maxHostnameLen)
	} else if !printable(h) {
		fe.Add("hostname", "has white space, control characters or invalid UTF-8")
	}
	// Platform is optional: the node reports it again when it connects.
	// Accept "os/arch" and "os/arch/variant" (linux/arm/v7).
	if p := req.GetPlatform(); p != "" {
		parts := strings.Split(p, "/")
		if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") || !printable(p) {
			fe.Add("platform", "is %q, want os/arch such as linux/amd64", p)
		}
	}
	return fe.Err()
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func certTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return DefaultCertTTL
	}
	return ttl
}

// newNodeID returns 128 random bits in base 36, zero-padded to 25
// characters: short enough to type, too many to guess or collide.
func newNodeID() (string, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return "", fmt.Errorf("new node ID: %w", err)
	}
	s := n.Text(36)
	return strings.Repeat("0", nodeIDLen-len(s)) + s, nil
}

// peerAddr is the caller's IP address, for logs and the node's status.
func peerAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}
