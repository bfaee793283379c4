package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/atomicfile"
	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Paths under the node's data directory.
func certDir(cfg config.Config) string { return filepath.Join(cfg.Node.DataDir, "certificates") }
func raftDir(cfg config.Config) string { return filepath.Join(cfg.Node.DataDir, "raft") }
func bootstrapFile(cfg config.Config) string {
	return filepath.Join(cfg.Node.DataDir, "bootstrap-cluster.pb")
}

// identity is how this node starts: its certificate and, on the very first
// start of a cluster, the cluster object to commit once it leads.
type identity struct {
	id *ca.Identity
	// bootstrap is the cluster to create, with its root CA key. It lives in
	// a file only until the first leader commits it to Raft.
	bootstrap *objectv1.Cluster
	// joined is true when the node got its certificate from another manager
	// on this start: it must ask the leader to add it to the Raft group.
	joined bool
}

// loadIdentity finds the node's certificate in its data directory, or
// creates a new cluster (no join address configured), or joins one with the
// configured token.
func loadIdentity(ctx context.Context, cfg config.Config, now time.Time) (*identity, error) {
	if err := os.MkdirAll(cfg.Node.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	id, err := ca.LoadIdentity(certDir(cfg))
	if err == nil {
		out := &identity{id: id}
		if data, err := os.ReadFile(bootstrapFile(cfg)); err == nil {
			c := &objectv1.Cluster{}
			if err := proto.Unmarshal(data, c); err != nil {
				return nil, fmt.Errorf("read %s: %w", bootstrapFile(cfg), err)
			}
			out.bootstrap = c
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return out, nil
	}
	if !errors.Is(err, sdk.ErrNotFound) {
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	hostname, err := cfg.Node.Name()
	if err != nil {
		return nil, err
	}
	if len(cfg.Join.Addrs) > 0 {
		id, err := ca.Join(ctx, cfg.Join.Addrs, cfg.Join.Token, hostname, platform(), certDir(cfg))
		if err != nil {
			return nil, err
		}
		if id.Role() != objectv1.NodeRole_NODE_ROLE_MANAGER {
			return nil, fmt.Errorf("joined as %s: this node runs a manager and needs a manager join token (shoal join-token manager)", id.Role())
		}
		return &identity{id: id, joined: true}, nil
	}
	return bootstrapIdentity(cfg, hostname, now)
}

// bootstrapIdentity creates a new cluster: its root CA, its ID, and this
// node's manager certificate.
func bootstrapIdentity(cfg config.Config, hostname string, now time.Time) (*identity, error) {
	root, err := ca.NewRootCA(now)
	if err != nil {
		return nil, err
	}
	cluster := &objectv1.Cluster{
		Id: ids.New(),
		Spec: &objectv1.ClusterSpec{
			Annotations:    &objectv1.Annotations{Name: "default"},
			Dispatcher:     &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(cfg.Cluster.HeartbeatPeriod.Duration)},
			Ca:             &objectv1.CAConfig{NodeCertExpiry: durationpb.New(cfg.Cluster.NodeCertExpiry.Duration)},
			Orchestration:  &objectv1.OrchestrationConfig{TaskHistoryRetention: int64(cfg.Cluster.TaskHistoryRetention)},
			BindMountRoots: cfg.Cluster.BindMountRoots,
		},
		RootCa: root,
	}
	data, err := proto.Marshal(cluster)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(bootstrapFile(cfg), data, 0o600); err != nil {
		return nil, err
	}
	signer, err := ca.NewSigner(root)
	if err != nil {
		return nil, err
	}
	keyPEM, err := ca.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := ca.NewCSR(keyPEM)
	if err != nil {
		return nil, err
	}
	nodeID := ids.New()
	cert, err := signer.Sign(csr, nodeID, objectv1.NodeRole_NODE_ROLE_MANAGER, cluster.Id, now, cfg.Cluster.NodeCertExpiry.Duration)
	if err != nil {
		return nil, err
	}
	id, err := ca.NewIdentity(certDir(cfg), keyPEM, cert, root.CertPem)
	if err != nil {
		return nil, err
	}
	return &identity{id: id, bootstrap: cluster}, nil
}

func platform() string { return runtime.GOOS + "/" + runtime.GOARCH }
