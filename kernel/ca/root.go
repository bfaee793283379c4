package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	// rootValidityYears is the root CA's lifetime. Rotation is not supported
	// yet, so it is long enough to outlive any cluster's hardware.
	rootValidityYears = 20
	// rootCommonName names the root CA in its subject.
	rootCommonName = "shoal root CA"
	// digestPrefix starts every digest: the hash may change one day, and a
	// digest must say which one it is.
	digestPrefix = "sha256:"
)

// NewRootCA creates a cluster's certificate authority: an ECDSA P-256 key, a
// self-signed certificate valid for 20 years from now (backdated by
// Backdate), its digest and a worker and a manager join token.
func NewRootCA(now time.Time) (*objectv1.RootCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: rootCommonName},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.AddDate(rootValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The root signs node certificates only, never another CA.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	digest := Digest(der)
	worker, err := NewJoinToken(digest)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	manager, err := NewJoinToken(digest)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	return &objectv1.RootCA{
		CertPem:    pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}),
		KeyPem:     keyPEM,
		Digest:     digest,
		JoinTokens: &objectv1.JoinTokens{Worker: worker, Manager: manager},
	}, nil
}

// Digest is "sha256:<hex>" of a certificate's DER bytes: what join tokens pin.
func Digest(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return digestPrefix + hex.EncodeToString(sum[:])
}

// newSerial returns a random positive 127-bit certificate serial number, as
// the CA/Browser baseline asks (at least 64 random bits).
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
