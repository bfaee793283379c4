package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/shoalhq/shoal/internal/retry"
	"github.com/shoalhq/shoal/sdk"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

const (
	// healthySession is how long a session must last for the connection
	// backoff to start over: a manager that accepts sessions and drops them
	// at once must not be hammered at the base delay forever.
	healthySession = 10 * time.Second
	// defaultHeartbeatPeriod is assumed until the first reply dictates the
	// period: it is the cluster's default.
	defaultHeartbeatPeriod = 5 * time.Second
	// minHeartbeatPeriod guards against a broken manager dictating a busy
	// loop; it is far below the 1s a cluster accepts, so only tests and
	// simulations come near it.
	minHeartbeatPeriod = 10 * time.Millisecond
	// heartbeatTimeoutPeriods is how many periods the agent waits for the
	// reply to a heartbeat before it gives up on the manager, and never
	// less than Config.MinHeartbeatTimeout (15s). A broken connection is
	// seen at once (the stream fails); this timeout only catches a manager
	// that holds the stream but no longer answers. Replies legitimately
	// stall while the managers elect a new leader: a follower holds its
	// workers' streams and relays them to the new leader once there is one
	// (kernel/dispatch), and the new leader gives every node a grace period
	// of 3 periods to show up. A worker that dropped its session during the
	// election would start over elsewhere, and with every worker doing the
	// same at once, miss that grace and be declared down: it must wait an
	// election out. 3 periods is the leader's own patience (presence
	// Grace = 3); the 15s floor covers an election at short periods. (With
	// 2 periods and a 2s floor, kernel/clustertest's leader-kill test saw
	// healthy workers declared down.)
	heartbeatTimeoutPeriods = 3
)

// connectLoop holds a session with one manager or another until ctx ends.
// After a failed or lost session it waits (exponential backoff with full
// jitter) and tries another manager, chosen by weight.
func (a *Agent) connectLoop(ctx context.Context) error {
	bo := backoff{base: a.cfg.BackoffBase, max: a.cfg.BackoffMax, randN: rand.Int64N}
	var failed string
	for ctx.Err() == nil {
		addr, ok := a.managers.pick(failed)
		if !ok {
			// newManagerList and update keep a manager of positive
			// weight in the list, so this does not happen.
			return errors.New("no manager of positive weight to connect to")
		}
		lived, err := a.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if lived >= healthySession {
			bo.reset()
		}
		failed = addr
		wait := bo.next()
		if lived > 0 {
			a.log.Info("session with manager lost", "manager", addr, "lived", lived.Round(time.Millisecond), "error", err, "retry_in", wait)
		} else {
			a.log.Warn("cannot open a session with manager", "manager", addr, "error", err, "retry_in", wait)
		}
		if !retry.Sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// clientStream is the worker's side of a Connect stream.
type clientStream = grpc.BidiStreamingClient[workerv1.WorkerMessage, workerv1.ManagerMessage]

// session runs one session with the manager at addr until it breaks or ctx
// ends. It returns how long the session lasted (0 if the manager never
// confirmed it) and why it ended.
func (a *Agent) session(ctx context.Context, addr string) (time.Duration, error) {
	conn, err := a.conns.get(addr)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := workerv1.NewDispatcherClient(conn).Connect(ctx)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", sdk.FromGRPC(err))
	}
	s := &sender{stream: stream, beatSent: &a.beatSent}
	hello := &workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Hello{Hello: &workerv1.Hello{Description: a.cfg.Description}}}
	if err := s.send(hello); err != nil {
		return 0, fmt.Errorf("send hello: %w", err)
	}
	// The first heartbeat goes right after Hello, before any status
	// report, so that the manager learns the node is up at once.
	if err := s.heartbeat(); err != nil {
		return 0, err
	}

	var established time.Time // set by receive; read after wg.Wait
	replies := make(chan time.Duration, 1)
	errc := make(chan error, 3)
	logs, logCtx := newLogSessions(ctx, a.cfg.Executor, a.tasks.holds, s.send, a.log)
	defer logs.stop()
	execs := newExecRunner(ctx, a.cfg.Executor, a.tasks.holds, conn, a.log)
	defer execs.stop() // after cancel below: the execs end with the session
	vols := newVolumeRunner(ctx, a.cfg.Executor, s.send, a.log)
	defer vols.stop()
	var wg sync.WaitGroup
	wg.Go(func() { errc <- a.receive(logCtx, stream, addr, replies, &established, logs, execs, vols) })
	wg.Go(func() { errc <- heartbeat(ctx, s.heartbeat, replies, a.cfg.MinHeartbeatTimeout) })
	wg.Go(func() { errc <- a.rep.run(ctx, s.report) })
	err = <-errc
	cancel()
	wg.Wait()
	a.sessionDown()
	if established.IsZero() {
		return 0, err
	}
	return max(time.Since(established), time.Nanosecond), err
}

// receive handles the manager's messages until the stream ends.
func (a *Agent) receive(logCtx context.Context, stream clientStream, addr string, replies chan<- time.Duration, established *time.Time, logs *logSessions, execs *execRunner, vols *volumeRunner) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("manager closed the session")
		}
		if err != nil {
			return fmt.Errorf("receive: %w", sdk.FromGRPC(err))
		}
		switch m := msg.GetMsg().(type) {
		case *workerv1.ManagerMessage_Session:
			if established.IsZero() {
				*established = time.Now()
			}
			a.sessionUp(addr, m.Session)
		case *workerv1.ManagerMessage_Heartbeat:
			if obs := a.cfg.HeartbeatObserver; obs != nil {
				obs(time.Duration(time.Now().UnixNano() - a.beatSent.Load()))
			}
			select {
			case replies <- m.Heartbeat.GetPeriod().AsDuration():
			default: // one reply is pending already; the heartbeat loop is behind
			}
		case *workerv1.ManagerMessage_Assignments:
			if err := a.tasks.apply(m.Assignments); err != nil {
				a.log.Warn("assignments refused", "manager", addr, "error", err)
			}
		case *workerv1.ManagerMessage_LogSubscription:
			logs.subscribe(logCtx, m.LogSubscription)
		case *workerv1.ManagerMessage_LogControl:
			logs.control(m.LogControl)
		case *workerv1.ManagerMessage_ExecStart:
			execs.start(m.ExecStart)
		case *workerv1.ManagerMessage_VolumeRequest:
			vols.serve(m.VolumeRequest)
		default:
			// A message kind newer than this agent: ignore it, the
			// protocol only ever adds optional ones.
		}
	}
}

// heartbeat sends a heartbeat each time the period of the previous reply has
// passed, and fails when a reply does not come in time. The first heartbeat
// is sent by the caller.
func heartbeat(ctx context.Context, send func() error, replies <-chan time.Duration, minTimeout time.Duration) error {
	timeout := heartbeatTimeout(defaultHeartbeatPeriod, minTimeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			return fmt.Errorf("no heartbeat reply within %s: %w", timeout, sdk.ErrUnavailable)
		case p := <-replies:
			period := p
			if period <= 0 {
				period = defaultHeartbeatPeriod
			}
			period = max(period, minHeartbeatPeriod)
			timer.Reset(period)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
			if err := send(); err != nil {
				return err
			}
			timeout = heartbeatTimeout(period, minTimeout)
			timer.Reset(timeout)
		}
	}
}

// heartbeatTimeout is how long to wait for the reply to a heartbeat sent
// with the given period.
func heartbeatTimeout(period, minTimeout time.Duration) time.Duration {
	return max(heartbeatTimeoutPeriods*period, minTimeout)
}

// sender serializes a session's sends: gRPC allows one sender at a time.
type sender struct {
	mu       sync.Mutex
	stream   clientStream
	beatSent *atomic.Int64
}

func (s *sender) send(msg *workerv1.WorkerMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stream.Send(msg); err != nil {
		return sdk.FromGRPC(err)
	}
	return nil
}

func (s *sender) heartbeat() error {
	s.beatSent.Store(time.Now().UnixNano())
	err := s.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Heartbeat{Heartbeat: &workerv1.Heartbeat{}}})
	if err != nil {
		return fmt.Errorf("send heartbeat: %w", err)
	}
	return nil
}

func (s *sender) report(r *workerv1.StatusReport) error {
	err := s.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Status{Status: r}})
	if err != nil {
		return fmt.Errorf("send status report: %w", err)
	}
	return nil
}
