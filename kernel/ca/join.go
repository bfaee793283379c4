package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/shoalhq/shoal/sdk"
	cav1 "github.com/shoalhq/shoal/sdk/proto/shoal/ca/v1"
)

// joinAttemptTimeout bounds one manager's answer to a join, so that a
// manager that accepts connections and then hangs does not stall the join:
// the next address is tried. Registering a node is one Raft write.
const joinAttemptTimeout = 30 * time.Second

// ErrRootMismatch is returned by Join when a server's root CA is not the one
// the join token pins: the token is for another cluster, or someone is in
// the middle.
var ErrRootMismatch = errors.New("root CA digest mismatch")

// Join admits this node to a cluster: it asks the managers at addrs, in turn,
// to issue a certificate for a new key, with the join token, and stores the
// resulting identity in dir (replacing any there: call LoadIdentity first).
//
// Before it sends anything, Join verifies that the server's certificate
// chains to a root whose digest the token pins, and names a manager; system
// roots play no part. A refusal from a verified manager (wrong token, bad
// request) ends the join; other failures move on to the next address.
func Join(ctx context.Context, addrs []string, token, hostname, platform, dir string) (*Identity, error) {
	tok, err := ParseJoinToken(token)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("join: no manager address: %w", sdk.ErrInvalidArgument)
	}
	keyPEM, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	csrPEM, err := NewCSR(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	req := &cav1.IssueNodeCertificateRequest{Token: tok.String(), Csr: csrPEM, Hostname: hostname, Platform: platform}
	var errs []error
	for _, addr := range addrs {
		resp, err := issue(ctx, addr, tok.Digest, req)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if ctx.Err() != nil || errors.Is(err, sdk.ErrPermissionDenied) || errors.Is(err, sdk.ErrInvalidArgument) {
				break
			}
			continue
		}
		id, err := identityFrom(dir, tok.Digest, keyPEM, resp)
		if err != nil {
			return nil, fmt.Errorf("join: %s: %w", addr, err)
		}
		return id, nil
	}
	return nil, fmt.Errorf("join: %w", errors.Join(errs...))
}

// issue calls IssueNodeCertificate on one manager, over TLS pinned to the
// root digest and without a client certificate.
func issue(ctx context.Context, addr, digest string, req *cav1.IssueNodeCertificateRequest) (*cav1.IssueNodeCertificateResponse, error) {
	pin := &pinner{digest: digest}
	cfg := &tls.Config{
		MinVersion: minTLSVersion,
		ServerName: ManagerServerName,
		// The node has no roots yet, only a digest: pin.verify does the
		// whole verification, against the root the digest names.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: pin.verify,
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, joinAttemptTimeout)
	defer cancel()
	resp, err := cav1.NewNodeCAClient(conn).IssueNodeCertificate(ctx, req)
	if err != nil {
		// gRPC reports a failed handshake as "unavailable"; say why.
		if perr := pin.failure(); perr != nil {
			return nil, perr
		}
		return nil, sdk.FromGRPC(err)
	}
	return resp, nil
}

// pinner verifies a server against a pinned root digest and remembers why
// it refused one.
type pinner struct {
	digest string

	mu  sync.Mutex
	err error
}

// verify accepts the chain if one of its certificates is a CA whose digest
// is the pinned one and the first (the server's) chains to it and is a
// manager's. Managers send their root after their own certificate.
func (p *pinner) verify(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	err := p.check(rawCerts)
	if err != nil {
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
	}
	return err
}

func (p *pinner) check(rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		return errors.New("server presented no certificate")
	}
	var root *x509.Certificate
	for _, raw := range rawCerts {
		if Digest(raw) == p.digest {
			cert, err := x509.ParseCertificate(raw)
			if err != nil {
				return fmt.Errorf("server root CA: %w", err)
			}
			root = cert
			break
		}
	}
	if root == nil || !root.IsCA {
		return fmt.Errorf("%w: token pins %s, server has %s", ErrRootMismatch, p.digest, Digest(rawCerts[len(rawCerts)-1]))
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:     roots,
		DNSName:   ManagerServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	return nil
}

func (p *pinner) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// identityFrom checks a manager's answer against the pin and the request
// and stores it as the node's identity.
func identityFrom(dir, digest string, keyPEM []byte, resp *cav1.IssueNodeCertificateResponse) (*Identity, error) {
	root, err := parseCert(resp.GetRootCaPem())
	if err != nil {
		return nil, fmt.Errorf("root CA in reply: %w", err)
	}
	if got := Digest(root.Raw); got != digest {
		return nil, fmt.Errorf("%w: token pins %s, server replied with %s", ErrRootMismatch, digest, got)
	}
	id, err := newIdentity(dir, keyPEM, resp.GetCertificatePem(), resp.GetRootCaPem(), time.Now())
	if err != nil {
		return nil, fmt.Errorf("certificate in reply: %w", err)
	}
	if id.NodeID() != resp.GetNodeId() || id.Role() != resp.GetRole() || id.ClusterID() != resp.GetClusterId() {
		return nil, fmt.Errorf("certificate in reply names node %s (%s) of cluster %s, reply says node %s (%s) of cluster %s",
			id.NodeID(), roleName(id.Role()), id.ClusterID(), resp.GetNodeId(), roleName(resp.GetRole()), resp.GetClusterId())
	}
	if err := id.save(); err != nil {
		return nil, fmt.Errorf("store identity: %w", err)
	}
	return id, nil
}
