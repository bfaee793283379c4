package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalhq/shoal/sdk"
)

func newRing(t *testing.T) *Keyring {
	t.Helper()
	key, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := newRing(t)
	data := []byte("hunter2")
	s, err := k.Seal("sec1", data)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(s.GetCiphertext(), data) {
		t.Fatal("the ciphertext holds the data in clear")
	}
	got, err := k.Open("sec1", s)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Bound to its object: moved to another secret, it does not open.
	if _, err := k.Open("sec2", s); err == nil {
		t.Error("a blob sealed for sec1 opened as sec2")
	}
	// Two seals of the same data differ (fresh nonces).
	s2, _ := k.Seal("sec1", data)
	if bytes.Equal(s.GetCiphertext(), s2.GetCiphertext()) {
		t.Error("two seals gave the same ciphertext")
	}
	// Another key refuses it, naming the key IDs.
	other := newRing(t)
	if _, err := other.Open("sec1", s); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another key's Open = %v, want ErrWrongKey", err)
	}
	// A tampered blob does not open.
	s.Ciphertext[0] ^= 1
	if _, err := k.Open("sec1", s); err == nil {
		t.Error("a tampered blob opened")
	}
}

func TestDigest(t *testing.T) {
	k := newRing(t)
	if k.Digest([]byte("a")) != k.Digest([]byte("a")) {
		t.Error("equal data, different digests")
	}
	if k.Digest([]byte("a")) == k.Digest([]byte("b")) {
		t.Error("different data, equal digests")
	}
	if newRing(t).Digest([]byte("a")) == k.Digest([]byte("a")) {
		t.Error("the digest does not depend on the key")
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "secrets.key")
	if _, err := Load(path); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Load of no file = %v, want ErrNotFound", err)
	}
	key, _ := Generate()
	if err := Save(path, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	got, err := Load(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Load = %x, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Error("a 5-byte key file loaded")
	}
	if _, err := New(make([]byte, 16)); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("New of 16 bytes = %v", err)
	}
}
