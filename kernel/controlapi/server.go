package controlapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/secrets"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Raft is the part of the replicated store the control API writes through.
type Raft interface {
	// IsLeader reports whether this manager leads now.
	IsLeader() bool
	// Leader returns the leader's node ID, empty when there is none.
	Leader() (id, addr string)
	// ReadBarrier returns once the local state reflects every write
	// acknowledged before the call (a linearizable read may follow); it
	// fails with a sdk.ErrUnavailable error on a manager that does not lead.
	ReadBarrier(ctx context.Context) error
	// UpdateRequest reads linearizably, prepares fn against the local state
	// and commits it; leader only. A non-empty requestID makes the write
	// take effect at most once: a retry returns the first attempt's result,
	// marked Replayed.
	UpdateRequest(ctx context.Context, requestID string, fn func(tx *state.Tx) error) (raftstore.Write, error)
	// RemoveMember removes a manager from the Raft group; leader only.
	RemoveMember(ctx context.Context, nodeID string) error
}

// LeaderDialer returns a connection to the current leader's API, for
// forwarding. It waits (within ctx) while an election is in progress.
type LeaderDialer interface {
	LeaderConn(ctx context.Context) (*grpc.ClientConn, error)
}

// Server implements controlv1.ControlServer. On the leader it validates and
// serves each call; on a follower it forwards each call to the leader
// unchanged, so a client may talk to any manager.
type Server struct {
	controlv1.UnimplementedControlServer

	raft   Raft
	st     *state.Store
	leader LeaderDialer
	log    *slog.Logger
	now    func() time.Time
	logs   Logs  // nil: TaskLogs is unavailable (logs.go)
	execs  Execs // nil: TaskExec is unavailable (exec.go)
	// volumes is nil: ListVolumes and RemoveVolume are unavailable (volume.go).
	volumes Volumes
	// secrets holds the key CreateSecret seals with (secret.go).
	secrets *secrets.Holder
}

var _ controlv1.ControlServer = (*Server)(nil)

// NewServer returns a control API server over st, writing through r.
func NewServer(r Raft, st *state.Store, leader LeaderDialer, logger *slog.Logger, opts ...Option) *Server {
	s := &Server{raft: r, st: st, leader: leader, log: logger, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// forwardedKey marks a call a follower forwarded, so that a manager that is
// not leader either never forwards it again (no loops during an election):
// it answers Unavailable and the client retries.
const forwardedKey = "shoal-forwarded"

// ReadLocalKey is the metadata key that makes a manager answer a read (Get
// and List calls) from its own replica instead of the leader's: stale by
// up to the replication lag, but served even without a leader. Tests use
// it to compare replicas; operators to look at a cluster that lost quorum.
const ReadLocalKey = "shoal-read-local"

// leaderPoll is how often a forwarded call checks whether the leader it
// waits on was replaced: a small fraction of an election.
const leaderPoll = 10 * time.Millisecond

// errNoLeader is returned when no leader is known or reachable.
var errNoLeader = fmt.Errorf("no raft leader: the cluster is electing one or has lost quorum: %w", sdk.ErrUnavailable)

// forwarded reports whether the call must go to the leader and, if so,
// makes it there: resp receives the leader's reply.
func (s *Server) forward(ctx context.Context, method string, req, resp any) (bool, error) {
	if s.raft.IsLeader() {
		return false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(ReadLocalKey)) > 0 && isRead(method) {
		return false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		return true, sdk.ToGRPC(errNoLeader)
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, "1", RequestIDKey, requestID(ctx))
	for {
		leaderID, _ := s.raft.Leader()
		conn, err := s.leader.LeaderConn(ctx)
		if err != nil {
			return true, sdk.ToGRPC(err)
		}
		// WaitForReady: a just-elected leader's connection may still be
		// coming up. But a leader that died keeps its ID here until the
		// election ends, so the attempt is abandoned as soon as the leader
		// changes, and the call goes to the new one. A call abandoned that
		// way got no answer: like a client retrying, it may run twice;
		// every write is guarded by names or versions.
		attempt, cancel := context.WithCancel(out)
		changed := make(chan bool, 1)
		go func() {
			tick := time.NewTicker(leaderPoll)
			defer tick.Stop()
			for {
				select {
				case <-attempt.Done():
					changed <- false
					return
				case <-tick.C:
					if id, _ := s.raft.Leader(); id != leaderID && id != "" {
						cancel()
						changed <- true
						return
					}
				}
			}
		}()
		err = conn.Invoke(attempt, method, req, resp, grpc.WaitForReady(true))
		cancel()
		if !<-changed || ctx.Err() != nil {
			if status.Code(err) == codes.Unavailable {
				// The leader lost its leadership while serving the call:
				// the call goes again, with its request ID, to the next.
				markRetry(ctx)
			}
			return true, err
		}
		if s.raft.IsLeader() {
			return false, nil
		}
	}
}

func isRead(method string) bool {
	i := strings.LastIndexByte(method, '/')
	name := method[i+1:]
	// ListVolumes asks the workers, whose sessions only the leader holds.
	return (strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List")) && name != "ListVolumes"
}

// view runs fn on this manager's state as it is, with no read barrier: for
// reading back what a call just wrote on the leader, and for finding where
// a task's logs are.
func (s *Server) view(fn func(tx *state.ReadTx)) { s.st.View(fn) }

// read runs fn on a linearizable view of the state: one that reflects
// every write acknowledged before the call. A call that asked for a local
// read (ReadLocalKey) gets this manager's state as it is.
func (s *Server) read(ctx context.Context, fn func(tx *state.ReadTx)) error {
	if !readLocal(ctx) {
		if err := s.raft.ReadBarrier(ctx); err != nil {
			noteRetry(ctx, err)
			return err
		}
	}
	s.st.View(fn)
	return nil
}

// update commits fn's writes as the call's request (see RequestIDKey).
func (s *Server) update(ctx context.Context, fn func(tx *state.Tx) error) (raftstore.Write, error) {
	w, err := s.raft.UpdateRequest(ctx, requestID(ctx), fn)
	if err != nil {
		noteRetry(ctx, err)
	}
	return w, err
}

// committed is obj as a write committed it at index: the reply to a write
// says what the write did, even if a later one already changed or removed
// the object. Every object has a meta field (objectv1.Meta).
func committed[T proto.Message](obj T, index uint64) T {
	out := proto.Clone(obj).(T)
	m := out.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("meta")
	meta := &objectv1.Meta{}
	if m.Has(fd) {
		meta = proto.Clone(m.Get(fd).Message().Interface()).(*objectv1.Meta)
	}
	meta.Version = index
	m.Set(fd, protoreflect.ValueOfMessage(meta.ProtoReflect()))
	return out
}

// newID returns a fresh object ID.
func newID() string { return ids.New() }

// grpcErr converts an error for the wire, adding context to conflicts.
func grpcErr(err error) error {
	if err == nil {
		return nil
	}
	return sdk.ToGRPC(err)
}

func versionConflict(kind, ref string, have, want uint64) error {
	return fmt.Errorf("%s %s: version conflict: it is at version %d, the request read version %d; read it again and retry: %w",
		kind, ref, have, want, sdk.ErrFailedPrecondition)
}

var errNoState = errors.New("cluster not initialized yet")
