package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// LeaderDialer returns a connection to the current leader's API, waiting
// (within ctx) while an election is in progress.
type LeaderDialer interface {
	LeaderConn(ctx context.Context) (*grpc.ClientConn, error)
}

// maxRelayBatch bounds the messages of one RelayUp or RelayDown, and
// maxRelayBatchBytes their size: log batches (logs.go) are up to tens of
// KiB each, and a RelayUp must stay well below gRPC's 4 MiB message limit.
// A single larger message still goes, alone.
const (
	maxRelayBatch      = 1000
	maxRelayBatchBytes = 1 << 20
)

// ---------------------------------------------------------------- leader side

// Relay serves a follower's relay stream on the leader.
func (s *Service) Relay(stream workerv1.Relay_RelayServer) error {
	p, err := ca.PeerFromContext(stream.Context())
	if err != nil {
		return sdk.ToGRPC(err)
	}
	if p.Role != objectv1.NodeRole_NODE_ROLE_MANAGER {
		return sdk.ToGRPC(fmt.Errorf("relay needs a manager certificate: %w", sdk.ErrPermissionDenied))
	}
	d := s.dispatcher()
	if d == nil {
		return sdk.ToGRPC(fmt.Errorf("not the leader: %w", sdk.ErrUnavailable))
	}
	return sdk.ToGRPC(serveRelay(stream.Context(), d, stream))
}

type relayPeer struct {
	out *queue[*workerv1.RelayedManagerMessage]
	id  uint64

	once sync.Once
}

func (p *relayPeer) send(msg *workerv1.ManagerMessage) bool {
	return p.out.push(&workerv1.RelayedManagerMessage{StreamId: p.id, Message: msg}) == nil
}

func (p *relayPeer) close(err error) {
	p.once.Do(func() {
		m := &workerv1.RelayedManagerMessage{StreamId: p.id, Closed: true}
		if err != nil {
			m.Error = err.Error()
		}
		p.out.push(m)
	})
}

func serveRelay(ctx context.Context, d *Dispatcher, stream workerv1.Relay_RelayServer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := newQueue[*workerv1.RelayedManagerMessage]()
	sendDone := make(chan error, 1)
	go func() {
		sendDone <- sendBatches(ctx, out, func(batch []*workerv1.RelayedManagerMessage) error {
			return stream.Send(&workerv1.RelayDown{Messages: batch})
		})
	}()
	sessions := map[uint64]*session{}
	defer func() {
		for _, s := range sessions {
			d.Close(s)
		}
		out.close()
		cancel()
		<-sendDone
	}()
	recvErr := make(chan error, 1)
	ups := make(chan *workerv1.RelayUp)
	go func() {
		for {
			up, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case ups <- up:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		var up *workerv1.RelayUp
		select {
		case <-ctx.Done():
			return nil
		case <-d.done:
			return fmt.Errorf("this manager is no longer the leader: %w", sdk.ErrUnavailable)
		case err := <-recvErr:
			return err
		case err := <-sendDone:
			return err
		case up = <-ups:
		}
		for _, m := range up.GetMessages() {
			id := m.GetStreamId()
			if m.GetClosed() {
				if s := sessions[id]; s != nil {
					d.Close(s)
					delete(sessions, id)
				}
				continue
			}
			if hello := m.GetMessage().GetHello(); hello != nil {
				if old := sessions[id]; old != nil {
					d.Close(old)
				}
				p := &relayPeer{out: out, id: id}
				if err := validHello(hello); err != nil {
					p.close(err)
					continue
				}
				s, err := d.Open(ctx, m.GetNodeId(), hello, p)
				if err != nil {
					p.close(err)
					continue
				}
				sessions[id] = s
				continue
			}
			s := sessions[id]
			if s == nil {
				(&relayPeer{out: out, id: id}).close(fmt.Errorf("no session for relayed stream %d: %w", id, sdk.ErrFailedPrecondition))
				continue
			}
			if err := s.Handle(m.GetMessage()); err != nil {
				d.drop(s, err)
				delete(sessions, id)
			}
		}
	}
}

// sendBatches drains q in batches of up to maxRelayBatch messages and
// maxRelayBatchBytes into send.
func sendBatches[T proto.Message](ctx context.Context, q *queue[T], send func([]T) error) error {
	for {
		items, open := q.drain()
		for len(items) > 0 {
			n, size := 0, 0
			for n < len(items) && n < maxRelayBatch {
				size += proto.Size(items[n])
				if n > 0 && size > maxRelayBatchBytes {
					break
				}
				n++
			}
			if err := send(items[:n]); err != nil {
				return err
			}
			items = items[n:]
		}
		if !open {
			return nil
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// ---------------------------------------------------------------- follower side

// relayedWorker is a worker whose stream this follower relays.
type relayedWorker struct {
	id     uint64
	nodeID string
	hello  *workerv1.Hello
	out    *queue[*workerv1.ManagerMessage]
	cancel context.CancelCauseFunc

	// statuses holds the latest report per task, replayed to a new leader
	// so that reports in flight when the old one died are not lost.
	statuses map[string]*workerv1.TaskStatusUpdate
}

// relayClient multiplexes this follower's workers to the leader over one
// stream and re-opens them all on a new leader.
type relayClient struct {
	leader LeaderDialer
	log    *slog.Logger
	kick   chan struct{}

	mu        sync.Mutex
	workers   map[uint64]*relayedWorker
	nextID    uint64
	up        *queue[*workerv1.RelayedWorkerMessage] // nil while disconnected
	connected bool
}

func newRelayClient(leader LeaderDialer, logger *slog.Logger) *relayClient {
	return &relayClient{leader: leader, log: logger, kick: make(chan struct{}, 1), workers: map[uint64]*relayedWorker{}}
}

// push sends m up if the relay is connected; while it is not, status
// reports are kept for replay and everything else is dropped (the hello
// and a heartbeat are replayed on reconnect).
func (c *relayClient) push(w *relayedWorker, m *workerv1.WorkerMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := m.GetStatus(); st != nil {
		for _, u := range st.GetUpdates() {
			if cur, ok := w.statuses[u.GetTaskId()]; !ok || cur.GetStatus().GetState() <= u.GetStatus().GetState() {
				w.statuses[u.GetTaskId()] = u
			}
		}
	}
	if !c.connected {
		return
	}
	if err := c.up.push(&workerv1.RelayedWorkerMessage{StreamId: w.id, NodeId: w.nodeID, Message: m}); err != nil {
		c.log.Warn("relay queue full; dropping a worker message", "node_id", w.nodeID)
	}
}

// serve relays one worker's stream until it ends or the leader ends it.
func (c *relayClient) serve(ctx context.Context, nodeID string, hello *workerv1.Hello, stream workerv1.Dispatcher_ConnectServer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &relayedWorker{nodeID: nodeID, hello: hello, out: newQueue[*workerv1.ManagerMessage](), cancel: cancel, statuses: map[string]*workerv1.TaskStatusUpdate{}}
	c.mu.Lock()
	c.nextID++
	w.id = c.nextID
	c.workers[w.id] = w
	if c.connected {
		c.up.push(&workerv1.RelayedWorkerMessage{StreamId: w.id, NodeId: nodeID, Message: &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Hello{Hello: hello}}})
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	defer func() {
		c.mu.Lock()
		delete(c.workers, w.id)
		if c.connected {
			c.up.push(&workerv1.RelayedWorkerMessage{StreamId: w.id, Closed: true})
		}
		c.mu.Unlock()
		w.out.close()
	}()

	sendDone := make(chan error, 1)
	go func() { sendDone <- sendLoop(ctx, w.out, stream.Send) }()
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if m.GetHello() != nil {
				recvErr <- fmt.Errorf("hello sent twice: %w", sdk.ErrInvalidArgument)
				return
			}
			c.push(w, m)
		}
	}()
	var err error
	select {
	case err = <-recvErr:
	case <-ctx.Done():
		err = context.Cause(ctx)
	case err = <-sendDone:
	}
	cancel(err)
	w.out.close()
	if errors.Is(err, errClosed) {
		return nil
	}
	return err
}

// closeAll ends every relayed worker's stream with err.
func (c *relayClient) closeAll(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		w.cancel(err)
	}
}

// run keeps a relay stream to the leader while there are workers to relay.
func (c *relayClient) run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		c.mu.Lock()
		n := len(c.workers)
		c.mu.Unlock()
		if n == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-c.kick:
				continue
			}
		}
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			backoff = 50 * time.Millisecond
		}
		c.log.Debug("relay to leader ended; reconnecting", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		// One connection per follower: retrying often is cheap, and a
		// relay that is down silences all the follower's workers.
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// session runs one relay stream: replay every worker's hello, a heartbeat
// and its latest statuses, then pump both ways until the stream breaks.
func (c *relayClient) session(ctx context.Context) error {
	conn, err := c.leader.LeaderConn(ctx)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Not WaitForReady: until a follower's own heartbeat timeout ends, it
	// may still name a leader that died, whose connection never becomes
	// ready. Failing fast and retrying (run's short backoff) finds the new
	// leader as soon as one is known.
	stream, err := workerv1.NewRelayClient(conn).Relay(sctx)
	if err != nil {
		return err
	}
	up := newQueue[*workerv1.RelayedWorkerMessage]()
	var first []*workerv1.RelayedWorkerMessage
	c.mu.Lock()
	for _, w := range c.workers {
		first = append(first,
			&workerv1.RelayedWorkerMessage{StreamId: w.id, NodeId: w.nodeID, Message: &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Hello{Hello: w.hello}}},
			&workerv1.RelayedWorkerMessage{StreamId: w.id, NodeId: w.nodeID, Message: &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Heartbeat{Heartbeat: &workerv1.Heartbeat{}}}},
		)
		if len(w.statuses) > 0 {
			report := &workerv1.StatusReport{}
			for _, u := range w.statuses {
				report.Updates = append(report.Updates, u)
			}
			first = append(first, &workerv1.RelayedWorkerMessage{StreamId: w.id, NodeId: w.nodeID, Message: &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Status{Status: report}}})
		}
	}
	c.up, c.connected = up, true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.up, c.connected = nil, false
		c.mu.Unlock()
		up.close()
	}()
	for len(first) > 0 {
		n := min(len(first), maxRelayBatch)
		if err := stream.Send(&workerv1.RelayUp{Messages: first[:n]}); err != nil {
			return err
		}
		first = first[n:]
	}
	sendDone := make(chan error, 1)
	go func() {
		sendDone <- sendBatches(sctx, up, func(batch []*workerv1.RelayedWorkerMessage) error {
			return stream.Send(&workerv1.RelayUp{Messages: batch})
		})
	}()
	defer func() { cancel(); <-sendDone }()
	for {
		down, err := stream.Recv()
		if err != nil {
			return err
		}
		c.mu.Lock()
		for _, m := range down.GetMessages() {
			w := c.workers[m.GetStreamId()]
			if w == nil {
				continue
			}
			if m.GetClosed() {
				w.cancel(closedByLeader(m.GetError()))
				continue
			}
			if err := w.out.push(m.GetMessage()); err != nil {
				w.cancel(err)
			}
		}
		c.mu.Unlock()
	}
}

func closedByLeader(msg string) error {
	if msg == "" {
		return errClosed
	}
	return fmt.Errorf("session ended by the leader: %s: %w", msg, sdk.ErrUnavailable)
}
