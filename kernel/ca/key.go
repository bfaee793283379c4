package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemPrivateKey  = "PRIVATE KEY" // PKCS #8
	pemECKey       = "EC PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
)

// minRSABits is the smallest RSA key a CSR may carry. shoal itself only makes
// ECDSA P-256 keys; RSA is accepted for nodes whose keys come from elsewhere.
const minRSABits = 2048

// NewKey returns a new ECDSA P-256 private key, PEM encoded (PKCS #8).
func NewKey() (keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	return encodeKey(key)
}

// NewCSR returns a PEM certificate signing request for the key. Its subject is
// empty: the CA chooses the node's names.
func NewCSR(keyPEM []byte) (csrPEM []byte, err error) {
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("new csr: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{}}, key)
	if err != nil {
		return nil, fmt.Errorf("new csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// parseKey reads a PEM private key, PKCS #8 or SEC 1 ("EC PRIVATE KEY").
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("parse key: no PEM block")
	}
	switch block.Type {
	case pemPrivateKey:
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse key: %T cannot sign", key)
		}
		return signer, nil
	case pemECKey:
		key, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse key: %w", err)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("parse key: PEM block is %q, want %q", block.Type, pemPrivateKey)
	}
}

// parseCert reads the first certificate of a PEM bundle.
func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("parse certificate: no PEM block")
	}
	if block.Type != pemCertificate {
		return nil, fmt.Errorf("parse certificate: PEM block is %q, want %q", block.Type, pemCertificate)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// parseCSR reads a PEM certificate request, checks its signature (proof that
// the requester holds the key) and that its key is strong enough.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != pemCSR {
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		// x509 only parses the NIST curves P-224 to P-521; P-224 is too weak.
		if pub.Curve == elliptic.P224() {
			return nil, errors.New("ECDSA key on P-224, want P-256 or stronger")
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits, want at least %d", pub.N.BitLen(), minRSABits)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("unsupported key type %T", pub)
	}
	return csr, nil
}

// samePublicKey reports whether the key's public half is pub.
func samePublicKey(key crypto.Signer, pub crypto.PublicKey) bool {
	k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}
