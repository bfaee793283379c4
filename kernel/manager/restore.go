package manager

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// Restored says what Restore did.
type Restored struct {
	ClusterID string
	RaftIndex uint64
	// NodeID is this manager's node ID; KeptNodeID is true when it is the
	// ID of the backup's manager at this node's address.
	NodeID     string
	KeptNodeID bool
	// Demoted are the backup's other managers, now down workers.
	Demoted []string
	// SecretsKeyID names the secrets key installed; empty when none was
	// given and the backup holds no secret (the leader makes one).
	SecretsKeyID string
}

// Restore prepares the empty data directory of the manager cfg describes
// to start a one-manager cluster from the backup file at path: this
// node's manager certificate, issued with the backup's root CA; the
// secrets key (keyPath, or data_dir/secrets.key already in place); and a
// Raft directory holding the backup as a snapshot whose configuration is
// this node alone. The node keeps the node ID of the backup's manager at
// its advertise address, if there is one; every other manager of the
// backup is demoted to a down worker, so workers are not sent to it and it
// cannot rejoin with its old certificate.
//
// Everything is checked before anything is written: the file (magic,
// version, checksum, the state), the key (it must open the backup's
// sealed secrets), an empty data directory. If a check fails the data
// directory is left as it was. The manager then starts as usual (New).
func Restore(cfg config.Config, path, keyPath string, now time.Time, logger *slog.Logger) (*Restored, error) {
	if !cfg.IsManager() {
		return nil, fmt.Errorf("restore: node.role must be manager: %w", sdk.ErrInvalidArgument)
	}
	if err := checkEmptyDataDir(cfg.Node.DataDir); err != nil {
		return nil, err
	}
	b, err := raftstore.ReadBackupFile(path)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	key, writeKey, err := restoreKey(cfg, keyPath)
	if err != nil {
		return nil, err
	}
	keyID, err := checkSecretsKey(b.Snapshot, key, keyPath)
	if err != nil {
		return nil, err
	}
	apiAddr, err := cfg.Manager.AdvertiseAPI()
	if err != nil {
		return nil, fmt.Errorf("manager.advertise_addr: %w", err)
	}
	raftAddr, err := cfg.Manager.AdvertiseRaft()
	if err != nil {
		return nil, fmt.Errorf("manager.raft_advertise_addr: %w", err)
	}
	snap := b.Snapshot
	cluster := snap.GetClusters()[0]
	out := &Restored{ClusterID: cluster.GetId(), RaftIndex: snap.GetIndex(), SecretsKeyID: keyID}
	for _, n := range snap.GetNodes() {
		ms := n.GetManagerStatus()
		if ms != nil && (ms.GetApiAddr() == apiAddr || ms.GetRaftAddr() == raftAddr) {
			out.NodeID, out.KeptNodeID = n.GetId(), true
			break
		}
	}
	if out.NodeID == "" {
		out.NodeID = ids.New()
	}
	out.Demoted = demoteManagers(snap, out.NodeID, fmt.Sprintf("manager lost: the cluster was restored from a backup on manager %s", out.NodeID))

	expiry := cluster.GetSpec().GetCa().GetNodeCertExpiry().AsDuration()
	if expiry <= 0 {
		expiry = cfg.Cluster.NodeCertExpiry.Duration
	}
	cert, keyPEM, err := issueManagerCert(cluster, out.NodeID, now, expiry)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}

	// From here on the data directory changes; a failure undoes it.
	undo := []string{certDir(cfg), raftDir(cfg)}
	if err := os.MkdirAll(cfg.Node.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	fail := func(err error) (*Restored, error) {
		for _, p := range undo {
			os.RemoveAll(p)
		}
		return nil, fmt.Errorf("restore: %w", err)
	}
	if _, err := ca.NewIdentity(certDir(cfg), keyPEM, cert, cluster.GetRootCa().GetCertPem()); err != nil {
		return fail(err)
	}
	if writeKey {
		undo = append(undo, secretsKeyFile(cfg))
		if err := secrets.Save(secretsKeyFile(cfg), key); err != nil {
			return fail(err)
		}
	}
	err = raftstore.Seed(raftstore.Config{NodeID: out.NodeID, Dir: raftDir(cfg), AdvertiseAddr: raftAddr, Logger: logger}, snap, b.Header.GetRaftTerm())
	if err != nil {
		return fail(err)
	}
	return out, nil
}

// checkEmptyDataDir refuses a data directory that holds anything but a
// secrets key: a restore never overwrites a node's state.
func checkEmptyDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	var found []string
	for _, e := range entries {
		if e.Name() != secretsKeyFileName {
			found = append(found, e.Name())
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("restore: node.data_dir %s is not empty (it holds %v): a restore starts a node from nothing; "+
			"use an empty data directory, or start without --restore to keep this node's state: %w", dir, found, sdk.ErrFailedPrecondition)
	}
	return nil
}

// secretsKeyFileName is the key file's name in the data directory.
const secretsKeyFileName = "secrets.key"

// restoreKey returns the secrets key to restore with: the file keyPath
// names, or the one in place in the data directory; write is true when it
// must be written there. Both given and different is an error.
func restoreKey(cfg config.Config, keyPath string) (key []byte, write bool, err error) {
	inPlace, err := secrets.Load(secretsKeyFile(cfg))
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return nil, false, fmt.Errorf("restore: secrets key: %w", err)
	}
	if keyPath == "" {
		return inPlace, false, nil
	}
	given, err := secrets.Load(keyPath)
	if err != nil {
		return nil, false, fmt.Errorf("restore: --secrets-key: %w", err)
	}
	if inPlace != nil && !bytes.Equal(inPlace, given) {
		return nil, false, fmt.Errorf("restore: --secrets-key %s differs from the key already in %s: remove one: %w", keyPath, secretsKeyFile(cfg), sdk.ErrInvalidArgument)
	}
	return given, inPlace == nil, nil
}

// checkSecretsKey checks that key opens every sealed secret of snap, and
// returns its ID. A backup without secrets needs no key.
func checkSecretsKey(snap *raftv1.Snapshot, key []byte, keyPath string) (string, error) {
	var sealed []*objectv1.Secret
	for _, s := range snap.GetSecrets() {
		if s.GetSealed() != nil {
			sealed = append(sealed, s)
		}
	}
	var k *secrets.Keyring
	if key != nil {
		var err error
		if k, err = secrets.New(key); err != nil {
			return "", fmt.Errorf("restore: secrets key: %w", err)
		}
	}
	if len(sealed) == 0 {
		if k == nil {
			return "", nil
		}
		return k.ID(), nil
	}
	if k == nil {
		return "", fmt.Errorf("restore: the backup holds %d secrets sealed with key %s and no secrets key was given: "+
			"pass --secrets-key FILE, a copy of data_dir/secrets.key of any of the cluster's managers: %w",
			len(sealed), sealed[0].GetSealed().GetKeyId(), sdk.ErrInvalidArgument)
	}
	src := keyPath
	if src == "" {
		src = "the data directory's secrets.key"
	}
	for _, s := range sealed {
		if id := s.GetSealed().GetKeyId(); id != k.ID() {
			return "", fmt.Errorf("restore: %s is key %s, but the backup's secrets are sealed with key %s: "+
				"it is not this cluster's secrets key: %w", src, k.ID(), id, sdk.ErrInvalidArgument)
		}
		if _, err := k.Open(s.GetId(), s.GetSealed()); err != nil {
			return "", fmt.Errorf("restore: %s does not open secret %q of the backup: %w", src, s.GetSpec().GetAnnotations().GetName(), sdk.ErrInvalidArgument)
		}
	}
	return k.ID(), nil
}

// issueManagerCert signs a manager certificate for nodeID with the
// cluster's root CA.
func issueManagerCert(cluster *objectv1.Cluster, nodeID string, now time.Time, ttl time.Duration) (cert, keyPEM []byte, err error) {
	signer, err := ca.NewSigner(cluster.GetRootCa())
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = ca.NewKey(); err != nil {
		return nil, nil, err
	}
	csr, err := ca.NewCSR(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	cert, err = signer.Sign(csr, nodeID, objectv1.NodeRole_NODE_ROLE_MANAGER, cluster.GetId(), now, ttl)
	return cert, keyPEM, err
}

// demoteManagers makes every manager of snap but keep a down worker
// without a manager status, and returns their IDs: they are not in the new
// Raft group, workers must not be sent to them, and their old certificates
// no longer let them rejoin (Join wants a manager record). They come back
// as new managers, with an empty data directory and a manager token.
func demoteManagers(snap *raftv1.Snapshot, keep, why string) []string {
	var out []string
	for i, n := range snap.GetNodes() {
		if n.GetId() == keep || (n.GetRole() != objectv1.NodeRole_NODE_ROLE_MANAGER && n.GetManagerStatus() == nil &&
			n.GetSpec().GetDesiredRole() != objectv1.NodeRole_NODE_ROLE_MANAGER) {
			continue
		}
		// Stored objects are shared: change a copy.
		d := proto.CloneOf(n)
		d.Role = objectv1.NodeRole_NODE_ROLE_WORKER
		if d.Spec == nil {
			d.Spec = &objectv1.NodeSpec{}
		}
		d.Spec.DesiredRole = objectv1.NodeRole_NODE_ROLE_WORKER
		d.ManagerStatus = nil
		d.Status = &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_DOWN, Message: why, Addr: n.GetStatus().GetAddr()}
		snap.Nodes[i] = d
		out = append(out, n.GetId())
	}
	slices.Sort(out)
	return out
}

// ForceNewCluster rewrites the Raft configuration of the manager cfg
// describes to hold this manager alone, keeping its data directory and
// state: the recovery of a manager whose peers are lost for good (quorum
// cannot come back). The other managers are demoted to down workers, as
// by Restore. The manager then starts as usual (New) and leads.
func ForceNewCluster(cfg config.Config, logger *slog.Logger) ([]string, error) {
	if !cfg.IsManager() {
		return nil, fmt.Errorf("force new cluster: node.role must be manager: %w", sdk.ErrInvalidArgument)
	}
	id, err := ca.LoadIdentity(certDir(cfg))
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, fmt.Errorf("force new cluster: %s holds no node certificate: it keeps a manager's existing data directory "+
			"(to start from a backup, use --restore): %w", cfg.Node.DataDir, sdk.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, fmt.Errorf("force new cluster: %w", err)
	}
	if id.Role() != objectv1.NodeRole_NODE_ROLE_MANAGER {
		return nil, fmt.Errorf("force new cluster: this node's certificate is a %s's: %w", id.Role(), sdk.ErrFailedPrecondition)
	}
	raftAddr, err := cfg.Manager.AdvertiseRaft()
	if err != nil {
		return nil, fmt.Errorf("manager.raft_advertise_addr: %w", err)
	}
	var demoted []string
	err = raftstore.ForceNewCluster(raftstore.Config{NodeID: id.NodeID(), Dir: raftDir(cfg), AdvertiseAddr: raftAddr, Logger: logger},
		func(snap *raftv1.Snapshot) {
			demoted = demoteManagers(snap, id.NodeID(), fmt.Sprintf("manager lost: manager %s was restarted with --force-new-cluster", id.NodeID()))
		})
	if err != nil {
		return nil, err
	}
	// The saved list names the lost managers.
	if err := os.Remove(filepath.Join(cfg.Node.DataDir, peersFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return demoted, nil
}
