// Package secrets seals the data of cluster secrets.
//
// # Key hierarchy
//
// A cluster has one secrets key: 32 random bytes, made by the manager that
// bootstraps the cluster. Every manager keeps it in a file of its own
// (data_dir/secrets.key, mode 0600), outside Raft; a manager that joins, or
// lacks it, gets it from the leader in its Membership Join answer, over
// mutual TLS and only with a manager certificate. Workers never hold it.
//
// From the key, HKDF-SHA256 derives two keys, each for one use:
//
//   - the sealing key: AES-256-GCM over each secret's data, with a random
//     96-bit nonce per seal and the secret's ID as additional data (a sealed
//     blob moved to another secret does not open);
//   - the digest key: HMAC-SHA256 of the data, so that two secrets with the
//     same data have the same digest (a stack redeploy tells an unchanged
//     secret) while the digest says nothing of the data to whoever lacks the
//     key.
//
// The Raft log and snapshots carry only sealed data. What an attacker gets:
//
//   - with a copy of the Raft log or snapshots alone (a backup, a copied
//     raft directory): the secrets' names, sizes and labels, not their data;
//   - with one manager's whole data directory: the key file too, hence every
//     secret. This is swarm's position without autolock; keeping the data
//     directory on an encrypted disk is what protects against it;
//   - with a worker's disk: nothing (workers keep secrets in memory and the
//     executor on tmpfs);
//   - with a worker's memory while it runs a task using a secret: that
//     secret, not the others.
//
// The key's ID ("sk1-" and 16 hex digits of a hash of the key) is written
// beside every sealed blob so that a key rotation (not built yet) can tell
// which key sealed what.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/shoalhq/shoal/kernel/atomicfile"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// KeySize is the length of a secrets key in bytes.
const KeySize = 32

// MaxDataBytes bounds a secret's or a config's data: 500 KiB, as swarm.
const MaxDataBytes = 500 * 1024

// Keyring seals and opens secret data with one cluster key. It is safe for
// concurrent use.
type Keyring struct {
	raw    []byte
	id     string
	aead   cipher.AEAD
	digest []byte
}

// New returns the keyring of key, which must be KeySize bytes.
func New(key []byte) (*Keyring, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secrets key: %d bytes, want %d: %w", len(key), KeySize, sdk.ErrInvalidArgument)
	}
	sealKey, err := hkdf.Key(sha256.New, key, nil, "shoal secrets: seal", 32)
	if err != nil {
		return nil, err
	}
	digestKey, err := hkdf.Key(sha256.New, key, nil, "shoal secrets: digest", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	idKey, err := hkdf.Key(sha256.New, key, nil, "shoal secrets: key id", 8)
	if err != nil {
		return nil, err
	}
	return &Keyring{raw: append([]byte(nil), key...), id: "sk1-" + hex.EncodeToString(idKey), aead: aead, digest: digestKey}, nil
}

// Generate makes a new random key.
func Generate() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

// ID names the key in sealed blobs.
func (k *Keyring) ID() string { return k.id }

// Key returns a copy of the raw key, for handing it to a joining manager.
func (k *Keyring) Key() []byte { return append([]byte(nil), k.raw...) }

// Seal encrypts data for the secret objectID.
func (k *Keyring) Seal(objectID string, data []byte) (*objectv1.SealedData, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &objectv1.SealedData{KeyId: k.id, Nonce: nonce, Ciphertext: k.aead.Seal(nil, nonce, data, []byte(objectID))}, nil
}

// ErrWrongKey: the blob was sealed with another key than this keyring's.
var ErrWrongKey = errors.New("sealed with another secrets key")

// Open decrypts what Seal made for objectID.
func (k *Keyring) Open(objectID string, s *objectv1.SealedData) ([]byte, error) {
	if s.GetKeyId() != k.id {
		return nil, fmt.Errorf("secret %s: key %q, this manager holds %q: %w", objectID, s.GetKeyId(), k.id, ErrWrongKey)
	}
	if len(s.GetNonce()) != k.aead.NonceSize() {
		return nil, fmt.Errorf("secret %s: nonce of %d bytes: %w", objectID, len(s.GetNonce()), sdk.ErrInvalidArgument)
	}
	data, err := k.aead.Open(nil, s.GetNonce(), s.GetCiphertext(), []byte(objectID))
	if err != nil {
		return nil, fmt.Errorf("secret %s: open: %w", objectID, err)
	}
	return data, nil
}

// Digest is "sha256:<hex>" of the data's HMAC under the digest key.
func (k *Keyring) Digest(data []byte) string {
	m := hmac.New(sha256.New, k.digest)
	m.Write(data)
	return "sha256:" + hex.EncodeToString(m.Sum(nil))
}

// Load reads a key file; it returns sdk.ErrNotFound when there is none.
func Load(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, sdk.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if len(data) != KeySize {
		return nil, fmt.Errorf("%s: %d bytes, want %d", path, len(data), KeySize)
	}
	return data, nil
}

// Save writes a key file readable by its owner only, atomically.
func Save(path string, key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("secrets key: %d bytes, want %d: %w", len(key), KeySize, sdk.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, key, 0o600)
}

// Holder holds a manager's keyring, which a manager that joins learns after
// it started. The zero Holder holds none. It is safe for concurrent use.
type Holder struct {
	p atomic.Pointer[Keyring]
}

// Get returns the keyring, nil while the manager holds no key.
func (h *Holder) Get() *Keyring { return h.p.Load() }

// Set installs k unless a keyring is held already; it reports whether k
// is the one held now.
func (h *Holder) Set(k *Keyring) bool {
	if h.p.CompareAndSwap(nil, k) {
		return true
	}
	return h.p.Load().id == k.id
}

// ErrNoKey: this manager does not hold the cluster's secrets key (yet).
var ErrNoKey = fmt.Errorf("this manager does not hold the cluster's secrets key yet (it gets it from the leader when it joins): %w", sdk.ErrUnavailable)

// Keyring returns the held keyring or ErrNoKey.
func (h *Holder) Keyring() (*Keyring, error) {
	if k := h.Get(); k != nil {
		return k, nil
	}
	return nil, ErrNoKey
}
