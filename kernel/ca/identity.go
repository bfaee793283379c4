package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/atomicfile"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The files of an identity directory.
const (
	keyFile  = "node.key"
	certFile = "node.crt"
	rootFile = "root.crt"
	// nextKeyFile holds a new key until the certificate for it is in place:
	// node.key and node.crt are two files, and a crash between their renames
	// must not leave a key that does not match the certificate. LoadIdentity
	// finishes or discards a half-done swap.
	nextKeyFile = "node.key.next"
)

// Identity is a node's key, certificate and root CA, kept in a directory.
// It is safe for concurrent use; Renewed swaps the certificate while TLS
// configurations from it are in use, and new handshakes present the new one.
type Identity struct {
	dir       string
	rootPEM   []byte
	root      *x509.Certificate
	roots     *x509.CertPool
	nodeID    string // fixed: a renewal keeps the node's ID and cluster
	clusterID string

	renewMu sync.Mutex // serializes Renewed, so files and memory agree

	mu      sync.RWMutex
	keyPEM  []byte
	cert    *tls.Certificate // the node certificate, then the root; Leaf set
	role    objectv1.NodeRole
	changed chan struct{} // closed and replaced on every swap
}

// LoadIdentity reads the identity in dir: node.key, node.crt and root.crt.
// It returns an error of kind sdk.ErrNotFound when the node has none yet
// (it must join), and of kind sdk.ErrFailedPrecondition when its
// certificate has expired (it must join again).
func LoadIdentity(dir string) (*Identity, error) {
	if err := recoverKeySwap(dir); err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	var files [3][]byte
	for i, name := range []string{keyFile, certFile, rootFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load identity: %s: %w", filepath.Join(dir, name), sdk.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("load identity: %w", err)
		}
		files[i] = b
	}
	id, err := newIdentity(dir, files[0], files[1], files[2], time.Now())
	if err != nil {
		return nil, fmt.Errorf("load identity: %s: %w", dir, err)
	}
	return id, nil
}

// NewIdentity checks that the key matches the certificate, that the
// certificate names a node and chains to the root, and writes all three to
// dir (created 0700; the key 0600), each file atomically.
func NewIdentity(dir string, keyPEM, certPEM, rootPEM []byte) (*Identity, error) {
	id, err := newIdentity(dir, keyPEM, certPEM, rootPEM, time.Now())
	if err != nil {
		return nil, fmt.Errorf("new identity: %w", err)
	}
	if err := id.save(); err != nil {
		return nil, fmt.Errorf("new identity: %w", err)
	}
	return id, nil
}

// save writes the identity to its directory: root.crt first and node.crt
// last, since node.crt is what makes the directory hold an identity.
func (id *Identity) save() error {
	if err := os.MkdirAll(id.dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(id.dir, rootFile), id.rootPEM, 0o644); err != nil {
		return err
	}
	id.mu.RLock()
	keyPEM, certPEM := id.keyPEM, pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: id.cert.Leaf.Raw})
	id.mu.RUnlock()
	return writeCert(id.dir, keyPEM, certPEM)
}

func newIdentity(dir string, keyPEM, certPEM, rootPEM []byte, now time.Time) (*Identity, error) {
	root, err := parseCert(rootPEM)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	if !root.IsCA {
		return nil, errors.New("root: certificate is not a CA")
	}
	id := &Identity{
		dir:     dir,
		rootPEM: bytes.Clone(rootPEM),
		root:    root,
		roots:   x509.NewCertPool(),
		changed: make(chan struct{}),
	}
	id.roots.AddCert(root)
	cert, names, err := id.check(keyPEM, certPEM, now)
	if err != nil {
		return nil, err
	}
	id.nodeID, id.clusterID = names.nodeID, names.clusterID
	id.keyPEM, id.cert, id.role = bytes.Clone(keyPEM), cert, names.role
	return id, nil
}

// check verifies a key and node certificate against the identity's root.
func (id *Identity) check(keyPEM, certPEM []byte, now time.Time) (*tls.Certificate, nodeNames, error) {
	leaf, err := parseCert(certPEM)
	if err != nil {
		return nil, nodeNames{}, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nodeNames{}, err
	}
	if !samePublicKey(key, leaf.PublicKey) {
		return nil, nodeNames{}, errors.New("key does not match the certificate")
	}
	if now.After(leaf.NotAfter) {
		return nil, nodeNames{}, fmt.Errorf("node certificate expired at %s, join the cluster again: %w",
			leaf.NotAfter.Format(time.RFC3339), sdk.ErrFailedPrecondition)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       id.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, nodeNames{}, fmt.Errorf("node certificate: %w", err)
	}
	names, err := namesOf(leaf)
	if err != nil {
		return nil, nodeNames{}, err
	}
	return &tls.Certificate{
		Certificate: [][]byte{leaf.Raw, id.root.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, names, nil
}

// NodeID is the node's ID, the subject of its certificate.
func (id *Identity) NodeID() string { return id.nodeID }

// ClusterID is the ID of the cluster the node belongs to.
func (id *Identity) ClusterID() string { return id.clusterID }

// Role is the role in the current certificate.
func (id *Identity) Role() objectv1.NodeRole {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.role
}

// NotAfter is when the current certificate expires.
func (id *Identity) NotAfter() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert.Leaf.NotAfter
}

// RootPEM is the root CA certificate, PEM encoded.
func (id *Identity) RootPEM() []byte { return bytes.Clone(id.rootPEM) }

// Changed returns a channel that is closed the next time the certificate is
// swapped, so that a node can react to a new role after a renewal. Call it
// again after it fires.
func (id *Identity) Changed() <-chan struct{} {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.changed
}

// Renewed swaps in a renewed certificate, and a new key when keyPEM is not
// nil (otherwise the certificate must be for the current key). The
// certificate must chain to the same root and name the same node and
// cluster; the role may differ. It is written to disk before it is used.
func (id *Identity) Renewed(keyPEM, certPEM []byte) error {
	id.renewMu.Lock()
	defer id.renewMu.Unlock()
	if keyPEM == nil {
		id.mu.RLock()
		keyPEM = id.keyPEM
		id.mu.RUnlock()
	}
	cert, names, err := id.check(keyPEM, certPEM, time.Now())
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if names.nodeID != id.nodeID || names.clusterID != id.clusterID {
		return fmt.Errorf("renewed certificate: names node %s of cluster %s, want node %s of cluster %s",
			names.nodeID, names.clusterID, id.nodeID, id.clusterID)
	}
	if err := writeCert(id.dir, keyPEM, certPEM); err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	id.keyPEM, id.cert, id.role = bytes.Clone(keyPEM), cert, names.role
	close(id.changed)
	id.changed = make(chan struct{})
	return nil
}

// current is the certificate to present now.
func (id *Identity) current() *tls.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert
}

// writeCert replaces node.key and node.crt so that a crash at any point
// leaves a matching pair: the key goes to node.key.next, then the
// certificate replaces node.crt, then the key replaces node.key.
func writeCert(dir string, keyPEM, certPEM []byte) error {
	next := filepath.Join(dir, nextKeyFile)
	if err := atomicfile.Write(next, keyPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, certFile), certPEM, 0o644); err != nil {
		return err
	}
	if err := os.Rename(next, filepath.Join(dir, keyFile)); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	return atomicfile.SyncDir(dir)
}

// recoverKeySwap finishes or discards a writeCert a crash interrupted: a
// staged key that matches node.crt was meant to replace node.key; one that
// does not never got its certificate.
func recoverKeySwap(dir string) error {
	next := filepath.Join(dir, nextKeyFile)
	keyPEM, err := os.ReadFile(next)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	matches := false
	if certPEM, err := os.ReadFile(filepath.Join(dir, certFile)); err == nil {
		cert, cerr := parseCert(certPEM)
		key, kerr := parseKey(keyPEM)
		matches = cerr == nil && kerr == nil && samePublicKey(key, cert.PublicKey)
	}
	if matches {
		err = os.Rename(next, filepath.Join(dir, keyFile))
	} else {
		err = os.Remove(next)
	}
	if err != nil {
		return fmt.Errorf("recover key swap: %w", err)
	}
	return atomicfile.SyncDir(dir)
}
