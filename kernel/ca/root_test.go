package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestNewRootCA(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	root, err := NewRootCA(now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(root.GetCertPem())
	if err != nil {
		t.Fatal(err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("root IsCA = %v, KeyUsage = %b, want a CA that signs certificates", cert.IsCA, cert.KeyUsage)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", cert.PublicKey)
	}
	if want := now.AddDate(20, 0, 0); !cert.NotAfter.Equal(want) {
		t.Errorf("root NotAfter = %v, want %v", cert.NotAfter, want)
	}
	if want := now.Add(-Backdate); !cert.NotBefore.Equal(want) {
		t.Errorf("root NotBefore = %v, want %v", cert.NotBefore, want)
	}
	if got, want := root.GetDigest(), Digest(cert.Raw); got != want {
		t.Errorf("root digest = %q, want %q", got, want)
	}
	if _, err := NewSigner(root); err != nil {
		t.Errorf("NewSigner(root) error = %v, want the key to match", err)
	}
	w, m := root.GetJoinTokens().GetWorker(), root.GetJoinTokens().GetManager()
	if w == m {
		t.Errorf("worker and manager tokens are equal: %q", w)
	}
	for _, tok := range []string{w, m} {
		jt, err := ParseJoinToken(tok)
		if err != nil || jt.Digest != root.GetDigest() {
			t.Errorf("ParseJoinToken(%q) = %+v, %v, want digest %s", tok, jt, err, root.GetDigest())
		}
	}
}

func TestDigest(t *testing.T) {
	// sha256("abc"), from FIPS 180-2.
	want := "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Digest([]byte("abc")); got != want {
		t.Errorf("Digest(abc) = %q, want %q", got, want)
	}
}

func TestSign(t *testing.T) {
	root, err := NewRootCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := parseCert(root.GetCertPem())
	roots := x509.NewCertPool()
	roots.AddCert(rootCert)
	now := time.Now().Truncate(time.Second)
	tests := []struct {
		role     objectv1.NodeRole
		wantOU   string
		wantDNS  []string
		serverOK bool // verifies as ManagerServerName
	}{
		{manager, "shoal-manager", []string{ManagerServerName}, true},
		{worker, "shoal-worker", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.role.String(), func(t *testing.T) {
			_, certPEM := signTest(t, root, "cluster-1", "node-1", tt.role, now, time.Hour)
			cert, err := parseCert(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != "node-1" || !slices.Equal(cert.Subject.OrganizationalUnit, []string{tt.wantOU}) ||
				!slices.Equal(cert.Subject.Organization, []string{"cluster-1"}) {
				t.Errorf("Sign(%v) subject = %v, want CN=node-1, OU=%s, O=cluster-1", tt.role, cert.Subject, tt.wantOU)
			}
			if !slices.Equal(cert.DNSNames, tt.wantDNS) {
				t.Errorf("Sign(%v) DNS names = %v, want %v", tt.role, cert.DNSNames, tt.wantDNS)
			}
			wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
			if !slices.Equal(cert.ExtKeyUsage, wantEKU) || cert.IsCA {
				t.Errorf("Sign(%v) ExtKeyUsage = %v, IsCA = %v, want %v, false", tt.role, cert.ExtKeyUsage, cert.IsCA, wantEKU)
			}
			if want := now.Add(-time.Minute); !cert.NotBefore.Equal(want) {
				t.Errorf("Sign(%v) NotBefore = %v, want %v", tt.role, cert.NotBefore, want)
			}
			if want := now.Add(time.Hour); !cert.NotAfter.Equal(want) {
				t.Errorf("Sign(%v) NotAfter = %v, want %v", tt.role, cert.NotAfter, want)
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: ManagerServerName})
			if (err == nil) != tt.serverOK {
				t.Errorf("Sign(%v): Verify as %s error = %v, want ok = %v", tt.role, ManagerServerName, err, tt.serverOK)
			}
			names, err := namesOf(cert)
			if err != nil || names != (nodeNames{"node-1", tt.role, "cluster-1"}) {
				t.Errorf("namesOf(Sign(%v)) = %+v, %v", tt.role, names, err)
			}
		})
	}
}

func TestSignNeverOutlivesRoot(t *testing.T) {
	now := time.Now()
	root, err := NewRootCA(now)
	if err != nil {
		t.Fatal(err)
	}
	_, certPEM := signTest(t, root, "c", "n", worker, now, 30*365*24*time.Hour)
	cert, _ := parseCert(certPEM)
	rootCert, _ := parseCert(root.GetCertPem())
	if !cert.NotAfter.Equal(rootCert.NotAfter) {
		t.Errorf("NotAfter = %v, want the root's %v", cert.NotAfter, rootCert.NotAfter)
	}
}

func TestSignRefuses(t *testing.T) {
	root, err := NewRootCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner(root)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := NewKey()
	csrPEM, _ := NewCSR(keyPEM)
	// A CSR whose signature does not match: flip a bit of the signature,
	// which is the last bytes of the DER.
	block, _ := pem.Decode(csrPEM)
	block.Bytes[len(block.Bytes)-3] ^= 1
	forged := pem.EncodeToMemory(block)

	tests := []struct {
		name      string
		csr       []byte
		nodeID    string
		role      objectv1.NodeRole
		clusterID string
		ttl       time.Duration
		wantField string
	}{
		{"forged csr", forged, "n", worker, "c", time.Hour, "csr: signature"},
		{"not a csr", root.GetCertPem(), "n", worker, "c", time.Hour, `csr: PEM block is "CERTIFICATE"`},
		{"no node id", csrPEM, "", worker, "c", time.Hour, "node_id: is empty"},
		{"no role", csrPEM, "n", objectv1.NodeRole_NODE_ROLE_UNSPECIFIED, "c", time.Hour, "role: is NODE_ROLE_UNSPECIFIED"},
		{"no cluster", csrPEM, "n", worker, "", time.Hour, "cluster_id: is empty"},
		{"no ttl", csrPEM, "n", worker, "c", 0, "ttl: is 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := signer.Sign(tt.csr, tt.nodeID, tt.role, tt.clusterID, time.Now(), tt.ttl)
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantField) {
				t.Errorf("Sign() error = %v, want invalid argument containing %q", err, tt.wantField)
			}
		})
	}
}

func TestNewSignerRefusesMismatchedKey(t *testing.T) {
	a, _ := NewRootCA(time.Now())
	b, _ := NewRootCA(time.Now())
	mixed := &objectv1.RootCA{CertPem: a.GetCertPem(), KeyPem: b.GetKeyPem()}
	if _, err := NewSigner(mixed); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("NewSigner(cert of a, key of b) error = %v, want a key mismatch", err)
	}
	noKey := &objectv1.RootCA{CertPem: a.GetCertPem()}
	if _, err := NewSigner(noKey); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("NewSigner(no key) error = %v, want sdk.ErrFailedPrecondition", err)
	}
}
