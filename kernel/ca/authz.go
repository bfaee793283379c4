package ca

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Peer is the node on the other end of a gRPC call, as its verified
// certificate names it.
type Peer struct {
	NodeID    string
	Role      objectv1.NodeRole
	ClusterID string
}

// PeerFromContext returns the caller of a gRPC call from its verified TLS
// client certificate. It returns an error of kind sdk.ErrPermissionDenied
// when the caller presented none (or the call is not over TLS).
func PeerFromContext(ctx context.Context) (Peer, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, fmt.Errorf("peer: no peer in context: %w", sdk.ErrPermissionDenied)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Peer{}, fmt.Errorf("peer: caller presented no client certificate: %w", sdk.ErrPermissionDenied)
	}
	names, err := namesOf(info.State.VerifiedChains[0][0])
	if err != nil {
		return Peer{}, fmt.Errorf("peer: %w: %w", err, sdk.ErrPermissionDenied)
	}
	return Peer{NodeID: names.nodeID, Role: names.role, ClusterID: names.clusterID}, nil
}

// IsLocal reports whether the call came over a unix socket. The kernel
// serves its local socket 0600, owned by root, so such a caller is the
// machine's administrator and is trusted like a manager.
func IsLocal(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	_, ok = p.Addr.(*net.UnixAddr)
	return ok
}

// Policy maps each full gRPC method name ("/pkg.Service/Method") to the
// roles whose certificates may call it. It is secure by default:
//   - a method missing from the map is denied to everyone;
//   - a method mapped to nil admits every caller, with or without a
//     certificate (IssueNodeCertificate, which joining nodes call);
//   - an empty, non-nil list admits no remote caller;
//   - a local caller (IsLocal) is admitted to every method in the map.
type Policy map[string][]objectv1.NodeRole

// UnaryInterceptor enforces the policy on unary calls.
func (p Policy) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := p.authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor enforces the policy on streams.
func (p Policy) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := p.authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// authorize returns nil or a PermissionDenied status saying what is missing.
func (p Policy) authorize(ctx context.Context, method string) error {
	roles, ok := p[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "permission denied: %s is not open to any caller", method)
	}
	if roles == nil || IsLocal(ctx) {
		return nil
	}
	caller, err := PeerFromContext(ctx)
	if err != nil {
		return status.Errorf(codes.PermissionDenied, "permission denied: %s needs a client certificate", method)
	}
	if slices.Contains(roles, caller.Role) {
		return nil
	}
	if len(roles) == 0 {
		return status.Errorf(codes.PermissionDenied, "permission denied: %s is open to local callers only", method)
	}
	return status.Errorf(codes.PermissionDenied, "permission denied: %s needs a %s certificate, caller %s is a %s",
		method, rolesText(roles), caller.NodeID, roleName(caller.Role))
}

// rolesText is "manager", "manager or worker".
func rolesText(roles []objectv1.NodeRole) string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = roleName(r)
	}
	return strings.Join(names, " or ")
}
