package manager

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// backupChunk is the size of each message of a backup stream: well under
// gRPC's default 4 MiB message limit.
const backupChunk = 1 << 20

// backupForwardedKey marks a Save call a follower forwarded to the
// leader: a manager that is not leader does not forward it again (no loops
// during an election), it answers Unavailable.
const backupForwardedKey = "shoal-backup-forwarded"

// backupServer serves controlv1.Backup: `shoal cluster backup`.
type backupServer struct {
	controlv1.UnimplementedBackupServer

	raft   *raftstore.Node
	leader *leaderDialer
	log    *slog.Logger
}

var _ controlv1.BackupServer = (*backupServer)(nil)

// Save takes the backup on the leader (after a barrier, so it holds every
// acknowledged write) and streams it; a follower relays the leader's.
func (s *backupServer) Save(req *controlv1.SaveBackupRequest, stream controlv1.Backup_SaveServer) error {
	ctx := stream.Context()
	if !s.raft.IsLeader() {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(backupForwardedKey)) > 0 {
			return sdk.ToGRPC(fmt.Errorf("backup: this manager no longer leads: %w", raftstore.ErrNotLeader))
		}
		return s.relay(req, stream)
	}
	data, h, err := s.raft.Backup(ctx, time.Now(), Version)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	for len(data) > 0 {
		n := min(len(data), backupChunk)
		if err := stream.Send(&controlv1.SaveBackupResponse{Chunk: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	s.log.Info("backup taken", "raft_index", h.GetRaftIndex(), "bytes", h.GetPayloadSize())
	return nil
}

// relay makes the call on the leader and passes its chunks on.
func (s *backupServer) relay(req *controlv1.SaveBackupRequest, stream controlv1.Backup_SaveServer) error {
	ctx := stream.Context()
	conn, err := s.leader.LeaderConn(ctx)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	out := metadata.AppendToOutgoingContext(ctx, backupForwardedKey, "1")
	from, err := controlv1.NewBackupClient(conn).Save(out, req)
	if err != nil {
		return err
	}
	for {
		msg, err := from.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}
