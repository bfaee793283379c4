package ca

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

func TestIdentityPersistsAndReloads(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	keyPEM, certPEM := signTest(t, reg.root, "cluster-1", "node-1", worker, time.Now(), time.Hour)
	dir := filepath.Join(t.TempDir(), "identity") // NewIdentity creates it
	id, err := NewIdentity(dir, keyPEM, certPEM, reg.root.GetCertPem())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"node.key": 0o600, "node.crt": 0o644, "root.crt": 0o644, ".": 0o700 | os.ModeDir} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %s = %v, want %v", name, fi.Mode(), want)
		}
	}
	loaded, err := LoadIdentity(dir)
	if err != nil {
		t.Fatalf("LoadIdentity() error = %v", err)
	}
	if loaded.NodeID() != "node-1" || loaded.Role() != worker || loaded.ClusterID() != "cluster-1" ||
		!loaded.NotAfter().Equal(id.NotAfter()) || !bytes.Equal(loaded.RootPEM(), reg.root.GetCertPem()) {
		t.Errorf("LoadIdentity() = %s %v %s %v, want node-1 worker cluster-1 %v and the root",
			loaded.NodeID(), loaded.Role(), loaded.ClusterID(), loaded.NotAfter(), id.NotAfter())
	}
}

func TestLoadIdentityNotFound(t *testing.T) {
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if _, err := LoadIdentity(dir); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("LoadIdentity(%s) error = %v, want sdk.ErrNotFound", dir, err)
		}
	}
}

func TestLoadIdentityExpired(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	keyPEM, certPEM := signTest(t, reg.root, "cluster-1", "node-1", worker, time.Now().Add(-2*time.Hour), time.Hour)
	dir := t.TempDir()
	for name, b := range map[string][]byte{"node.key": keyPEM, "node.crt": certPEM, "root.crt": reg.root.GetCertPem()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadIdentity(dir)
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("LoadIdentity(expired) error = %v, want sdk.ErrFailedPrecondition saying it expired", err)
	}
}

func TestNewIdentityRefuses(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	other := newFakeRegistrar(t, "cluster-2", time.Hour)
	keyPEM, certPEM := signTest(t, reg.root, "cluster-1", "node-1", worker, time.Now(), time.Hour)
	otherKey, otherCert := signTest(t, other.root, "cluster-2", "node-2", worker, time.Now(), time.Hour)
	tests := []struct {
		name                   string
		keyPEM, certPEM, rootP []byte
		want                   string
	}{
		{"cert of another CA", otherKey, otherCert, reg.root.GetCertPem(), "certificate signed by unknown authority"},
		{"key of another cert", otherKey, certPEM, reg.root.GetCertPem(), "key does not match"},
		{"root is not a CA", keyPEM, certPEM, certPEM, "not a CA"},
		{"no key", nil, certPEM, reg.root.GetCertPem(), "no PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := NewIdentity(dir, tt.keyPEM, tt.certPEM, tt.rootP)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewIdentity() error = %v, want one containing %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("NewIdentity() refused but wrote %d files", len(entries))
			}
		})
	}
}

func TestRenewed(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	id := newTestIdentity(t, reg.root, "cluster-1", "node-1", worker, time.Hour)
	changed := id.Changed()

	// Another node's certificate is refused and changes nothing.
	strangerKey, strangerCert := signTest(t, reg.root, "cluster-1", "node-2", manager, time.Now(), time.Hour)
	if err := id.Renewed(strangerKey, strangerCert); err == nil || !strings.Contains(err.Error(), "names node node-2") {
		t.Errorf("Renewed(node-2's certificate) error = %v, want a refusal naming node-2", err)
	}
	// So is a certificate for a key other than the current one, without its key.
	if err := id.Renewed(nil, strangerCert); err == nil {
		t.Error("Renewed(nil key, certificate for another key) error = nil, want a key mismatch")
	}
	select {
	case <-changed:
		t.Fatal("Changed fired after refused renewals")
	default:
	}

	keyPEM, certPEM := signTest(t, reg.root, "cluster-1", "node-1", manager, time.Now(), 2*time.Hour)
	if err := id.Renewed(keyPEM, certPEM); err != nil {
		t.Fatalf("Renewed() error = %v", err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed did not fire after Renewed")
	}
	if id.Role() != manager {
		t.Errorf("Role() after renewal = %v, want %v", id.Role(), manager)
	}
	loaded, err := LoadIdentity(id.dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Role() != manager || !loaded.NotAfter().Equal(id.NotAfter()) {
		t.Errorf("LoadIdentity() after renewal = %v until %v, want %v until %v", loaded.Role(), loaded.NotAfter(), manager, id.NotAfter())
	}
	if got, _ := os.ReadFile(filepath.Join(id.dir, keyFile)); !bytes.Equal(got, keyPEM) {
		t.Error("node.key after renewal is not the new key")
	}
}

// TestLoadIdentityFinishesKeySwap simulates a crash in the middle of a
// renewal's writes: LoadIdentity must find a matching key and certificate.
func TestLoadIdentityFinishesKeySwap(t *testing.T) {
	reg := newFakeRegistrar(t, "cluster-1", time.Hour)
	oldKey, oldCert := signTest(t, reg.root, "cluster-1", "node-1", worker, time.Now(), time.Hour)
	newKey, newCert := signTest(t, reg.root, "cluster-1", "node-1", manager, time.Now(), time.Hour)
	tests := []struct {
		name     string
		crt      []byte // node.crt at the crash; node.key is the old key, node.key.next the new one
		wantRole string
	}{
		{"crash before the certificate", oldCert, "worker"},
		{"crash after the certificate", newCert, "manager"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string][]byte{keyFile: oldKey, nextKeyFile: newKey, certFile: tt.crt, rootFile: reg.root.GetCertPem()}
			for name, b := range files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			id, err := LoadIdentity(dir)
			if err != nil {
				t.Fatalf("LoadIdentity() error = %v", err)
			}
			if got := roleName(id.Role()); got != tt.wantRole {
				t.Errorf("LoadIdentity().Role() = %s, want %s", got, tt.wantRole)
			}
			if _, err := os.Stat(filepath.Join(dir, nextKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node.key.next still there after LoadIdentity (stat error %v)", err)
			}
		})
	}
}
