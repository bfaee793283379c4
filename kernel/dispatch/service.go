package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/ca"
	"github.com/shoalhq/shoal/kernel/streams"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// helloTimeout bounds how long a new stream may stay silent before its
// hello: a connection that never says who it is holds resources for nothing.
const helloTimeout = 10 * time.Second

// Service is the gRPC face of the worker protocol on every manager. While
// this manager leads and its Dispatcher runs, sessions are served here;
// otherwise they are relayed to the leader.
type Service struct {
	workerv1.UnimplementedDispatcherServer
	workerv1.UnimplementedRelayServer

	relay *relayClient
	log   *slog.Logger

	mu     sync.Mutex
	active *Dispatcher
}

var (
	_ workerv1.DispatcherServer = (*Service)(nil)
	_ workerv1.RelayServer      = (*Service)(nil)
)

// NewService returns the service; leader finds the current leader for
// relaying.
func NewService(leader LeaderDialer, logger *slog.Logger) *Service {
	return &Service{relay: newRelayClient(leader, logger), log: logger}
}

// Serve makes d the dispatcher for sessions until ctx ends (the leader
// stage runs it alongside d.Run). Workers relayed through this manager are
// disconnected first: they reconnect and are served directly.
func (s *Service) Serve(ctx context.Context, d *Dispatcher) {
	s.mu.Lock()
	s.active = d
	s.mu.Unlock()
	s.relay.closeAll(fmt.Errorf("this manager became the leader: %w", sdk.ErrUnavailable))
	<-ctx.Done()
	s.mu.Lock()
	if s.active == d {
		s.active = nil
	}
	s.mu.Unlock()
}

func (s *Service) dispatcher() *Dispatcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Sessions returns the number of sessions this manager dispatches now.
func (s *Service) Sessions() int {
	if d := s.dispatcher(); d != nil {
		return d.Sessions()
	}
	return 0
}

// RunRelay maintains the relay to the leader while this manager follows.
func (s *Service) RunRelay(ctx context.Context) error { return s.relay.run(ctx) }

// workerIdentity returns the calling node's ID from its certificate.
func workerIdentity(ctx context.Context) (string, error) {
	p, err := ca.PeerFromContext(ctx)
	if err != nil {
		return "", err
	}
	if p.Role != objectv1.NodeRole_NODE_ROLE_WORKER && p.Role != objectv1.NodeRole_NODE_ROLE_MANAGER {
		return "", fmt.Errorf("a node certificate is required: %w", sdk.ErrPermissionDenied)
	}
	return p.NodeID, nil
}

// Connect serves one worker's stream.
func (s *Service) Connect(stream workerv1.Dispatcher_ConnectServer) error {
	ctx := stream.Context()
	nodeID, err := workerIdentity(ctx)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	hello, err := recvHello(stream)
	if err != nil {
		return sdk.ToGRPC(err)
	}
	if d := s.dispatcher(); d != nil {
		return sdk.ToGRPC(serveDirect(ctx, d, nodeID, hello, stream))
	}
	return sdk.ToGRPC(s.relay.serve(ctx, nodeID, hello, stream))
}

func recvHello(stream workerv1.Dispatcher_ConnectServer) (*workerv1.Hello, error) {
	m, err := streams.First(stream.Context(), helloTimeout, "hello", stream.Recv)
	if err != nil {
		return nil, err
	}
	h := m.GetHello()
	if h == nil {
		return nil, fmt.Errorf("the first message must be hello: %w", sdk.ErrInvalidArgument)
	}
	if err := validHello(h); err != nil {
		return nil, err
	}
	return h, nil
}

func validHello(h *workerv1.Hello) error {
	var fe sdk.FieldErrors
	d := h.GetDescription()
	if len(d.GetHostname()) > 253 {
		fe.Add("description.hostname", "must be at most 253 bytes")
	}
	if r := d.GetResources(); r.GetNanoCpus() < 0 || r.GetMemoryBytes() < 0 {
		fe.Add("description.resources", "must not be negative")
	}
	validGossipAddr(&fe, "description.gossip_addr", d.GetGossipAddr())
	return fe.Err()
}

// directPeer is a worker's own stream to this manager.
type directPeer struct {
	q      *queue[*workerv1.ManagerMessage]
	cancel context.CancelCauseFunc
}

func (p *directPeer) send(msg *workerv1.ManagerMessage) bool {
	if err := p.q.push(msg); err != nil {
		p.close(err)
		return false
	}
	return true
}

func (p *directPeer) close(err error) {
	if err == nil {
		err = errClosed
	}
	p.cancel(err)
	p.q.close()
}

// serveDirect runs a session whose worker is connected to this (leading)
// manager.
func serveDirect(ctx context.Context, d *Dispatcher, nodeID string, hello *workerv1.Hello, stream workerv1.Dispatcher_ConnectServer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &directPeer{q: newQueue[*workerv1.ManagerMessage](), cancel: cancel}
	sendDone := make(chan error, 1)
	go func() { sendDone <- sendLoop(ctx, p.q, stream.Send) }()
	sess, err := d.Open(ctx, nodeID, hello, p)
	if err != nil {
		p.close(err)
		<-sendDone
		return err
	}
	defer d.Close(sess)
	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if err := sess.Handle(msg); err != nil {
				recvErr <- err
				return
			}
		}
	}()
	select {
	case err = <-recvErr:
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	p.close(err)
	<-sendDone
	if errors.Is(err, errClosed) {
		return nil
	}
	return err
}

// sendLoop drains q into send until q is closed or send fails.
func sendLoop(ctx context.Context, q *queue[*workerv1.ManagerMessage], send func(*workerv1.ManagerMessage) error) error {
	for {
		items, open := q.drain()
		for _, m := range items {
			if err := send(m); err != nil {
				return err
			}
		}
		if !open {
			return nil
		}
		if len(items) > 0 {
			continue
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			// Flush what is queued (a close error may follow), then stop.
			items, _ := q.drain()
			for _, m := range items {
				if err := send(m); err != nil {
					return err
				}
			}
			return nil
		}
	}
}
