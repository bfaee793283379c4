package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/kernel/atomicfile"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// backupInfo is what `cluster backup --format json` prints.
type backupInfo struct {
	File         string    `json:"file"`
	Bytes        int       `json:"bytes"`
	ClusterID    string    `json:"cluster_id"`
	RaftIndex    uint64    `json:"raft_index"`
	RaftTerm     uint64    `json:"raft_term"`
	Created      time.Time `json:"created"`
	ShoalVersion string    `json:"shoal_version"`
	Secrets      int       `json:"secrets"`
	SecretsKeyID string    `json:"secrets_key_id,omitempty"`
}

func (c *cli) newClusterBackupCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Save a consistent backup of the cluster state to FILE",
		Long: `Save a backup of the cluster state to FILE (mode 0600), from any manager while
the cluster runs: the leader's state once every write acknowledged before
the call is applied. The file is checked (magic, checksum) before it
replaces FILE.

Secrets stay sealed in it. The key that opens them is not in the backup: it
is data_dir/secrets.key of every manager, and it never changes. Keep a copy
of it with your backups: 'shoal agent --restore FILE --secrets-key KEYFILE'
needs it when the cluster has secrets.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout)
			defer cancel()
			b, size, err := c.saveBackup(ctx, args[0])
			if err != nil {
				return err
			}
			h := b.Header
			if format.structured() {
				return writeOne(c.out, &format, backupInfo{
					File: args[0], Bytes: size, ClusterID: h.GetClusterId(), RaftIndex: h.GetRaftIndex(), RaftTerm: h.GetRaftTerm(),
					Created: h.GetCreated().AsTime(), ShoalVersion: h.GetShoalVersion(), Secrets: len(b.Snapshot.GetSecrets()), SecretsKeyID: h.GetSecretsKeyId(),
				})
			}
			fmt.Fprintf(c.out, "Backup of cluster %s at raft index %d written to %s (%d bytes).\n", h.GetClusterId(), h.GetRaftIndex(), args[0], size)
			if id := h.GetSecretsKeyId(); id != "" {
				fmt.Fprintf(c.out, "Secrets (%d) are sealed with key %s, which is not in the backup: keep a copy of a manager's data_dir/secrets.key with it.\n", len(b.Snapshot.GetSecrets()), id)
			}
			return nil
		},
	}
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

// saveBackup streams a backup from --host into a temporary file beside
// path, checks it, and renames it to path.
func (c *cli) saveBackup(ctx context.Context, path string) (*raftstore.Backup, int, error) {
	target, creds, err := c.transport()
	if err != nil {
		return nil, 0, err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, 0, fmt.Errorf("--host %s: %w", c.host, err)
	}
	defer conn.Close()
	stream, err := controlv1.NewBackupClient(conn).Save(ctx, &controlv1.SaveBackupRequest{})
	if err != nil {
		return nil, 0, c.backupError(ctx, err)
	}
	var data []byte
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, c.backupError(ctx, err)
		}
		data = append(data, msg.GetChunk()...)
	}
	b, err := raftstore.DecodeBackup(data)
	if err != nil {
		return nil, 0, fmt.Errorf("the backup received from %s: %w", c.host, err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return nil, 0, err
	}
	return b, len(data), nil
}

func (c *cli) backupError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("no backup from %s within --timeout: %w", c.host, ctx.Err())
	}
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("backup from %s: the manager runs a shoal without backups (%s): upgrade it first", c.host, status.Convert(err).Message())
	}
	return fmt.Errorf("backup from %s: %w", c.host, sdk.FromGRPC(err))
}
