package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// ManagerServerName is the DNS name in every manager certificate; clients
// verify servers against it, so only managers can serve the cluster's APIs.
const ManagerServerName = "shoal-manager"

// The organizational units that carry a node's role in its certificate.
const (
	ouManager = "shoal-manager"
	ouWorker  = "shoal-worker"
)

// Backdate is how far before its issue time a certificate becomes valid, so
// that a node whose clock runs a little behind the CA's accepts it at once.
const Backdate = time.Minute

// Signer signs node certificates with a root CA's key. It is safe for
// concurrent use.
type Signer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// NewSigner returns a Signer for the root; the root must carry its key.
func NewSigner(root *objectv1.RootCA) (*Signer, error) {
	cert, err := parseCert(root.GetCertPem())
	if err != nil {
		return nil, fmt.Errorf("new signer: root: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("new signer: root certificate is not a CA")
	}
	if len(root.GetKeyPem()) == 0 {
		return nil, fmt.Errorf("new signer: root CA has no key: %w", sdk.ErrFailedPrecondition)
	}
	key, err := parseKey(root.GetKeyPem())
	if err != nil {
		return nil, fmt.Errorf("new signer: root: %w", err)
	}
	if !samePublicKey(key, cert.PublicKey) {
		return nil, errors.New("new signer: root key does not match the root certificate")
	}
	return &Signer{cert: cert, key: key}, nil
}

// Sign issues a certificate for the key in the CSR, naming the node: subject
// CN=nodeID, OU=the role ("shoal-manager" or "shoal-worker"), O=clusterID.
// It is good for client and server authentication; a manager's also names
// ManagerServerName. It is valid from now-Backdate for ttl, but never past
// the root's own expiry. Everything in the CSR but its key is ignored, and
// its signature must prove possession of that key. The result is PEM.
func (s *Signer) Sign(csrPEM []byte, nodeID string, role objectv1.NodeRole, clusterID string, now time.Time, ttl time.Duration) ([]byte, error) {
	var fe sdk.FieldErrors
	csr, err := parseCSR(csrPEM)
	if err != nil {
		fe.Add("csr", "%v", err)
	}
	if nodeID == "" {
		fe.Add("node_id", "is empty")
	}
	ou, ok := roleOU(role)
	if !ok {
		fe.Add("role", "is %v, want manager or worker", role)
	}
	if clusterID == "" {
		fe.Add("cluster_id", "is empty")
	}
	if ttl <= 0 {
		fe.Add("ttl", "is %v, want more than 0", ttl)
	}
	if err := fe.Err(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(s.cert.NotAfter) {
		notAfter = s.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         nodeID,
			OrganizationalUnit: []string{ou},
			Organization:       []string{clusterID},
		},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		// RSA key exchange (TLS 1.2) encrypts with the key; EC keys only sign.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if role == objectv1.NodeRole_NODE_ROLE_MANAGER {
		tmpl.DNSNames = []string{ManagerServerName}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.cert, csr.PublicKey, s.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), nil
}

// nodeNames are the names a node certificate carries.
type nodeNames struct {
	nodeID    string
	role      objectv1.NodeRole
	clusterID string
}

// namesOf reads the node ID, role and cluster ID from a node certificate.
func namesOf(cert *x509.Certificate) (nodeNames, error) {
	n := nodeNames{nodeID: cert.Subject.CommonName}
	if n.nodeID == "" {
		return nodeNames{}, errors.New("node certificate has no common name (node ID)")
	}
	if len(cert.Subject.OrganizationalUnit) != 1 {
		return nodeNames{}, fmt.Errorf("node certificate has %d organizational units, want 1 (the role)", len(cert.Subject.OrganizationalUnit))
	}
	switch ou := cert.Subject.OrganizationalUnit[0]; ou {
	case ouManager:
		n.role = objectv1.NodeRole_NODE_ROLE_MANAGER
	case ouWorker:
		n.role = objectv1.NodeRole_NODE_ROLE_WORKER
	default:
		return nodeNames{}, fmt.Errorf("node certificate has role %q, want %q or %q", ou, ouManager, ouWorker)
	}
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] == "" {
		return nodeNames{}, errors.New("node certificate has no single organization (cluster ID)")
	}
	n.clusterID = cert.Subject.Organization[0]
	return n, nil
}

func roleOU(role objectv1.NodeRole) (string, bool) {
	switch role {
	case objectv1.NodeRole_NODE_ROLE_MANAGER:
		return ouManager, true
	case objectv1.NodeRole_NODE_ROLE_WORKER:
		return ouWorker, true
	}
	return "", false
}

// roleName is the role as people say it, for messages.
func roleName(role objectv1.NodeRole) string {
	switch role {
	case objectv1.NodeRole_NODE_ROLE_MANAGER:
		return "manager"
	case objectv1.NodeRole_NODE_ROLE_WORKER:
		return "worker"
	}
	return role.String()
}
