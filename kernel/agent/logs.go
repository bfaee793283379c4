package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk/executor"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Task logs go to the manager over the session, as LogBatch messages
// answering a LogSubscription (see sdk/proto/shoal/worker/v1). The session
// also carries the heartbeats, so a subscription sends only while it holds
// credit, and its batches are small: a slow reader on the manager's side
// pauses the executor's readers here, never the session.

const (
	// maxLogPiece is the longest line piece sent: a longer line goes in
	// pieces of this size (docker cuts lines at 16 KiB too).
	maxLogPiece = 16 << 10
	// logBatchBytes and logBatchLines close a batch; a batch that is not
	// full goes once its first line has waited logBatchInterval.
	logBatchBytes    = 32 << 10
	logBatchLines    = 500
	logBatchErrors   = 100
	logBatchInterval = 100 * time.Millisecond
	// logPendingBytes bounds the lines read but not yet sent: past it, the
	// executor's readers wait for batches to go.
	logPendingBytes = 4 * logBatchBytes
	// maxLogSubs bounds the subscriptions a session serves at once.
	maxLogSubs = 64
	// maxLogErrText bounds a task error's text (the manager takes 4 KiB).
	maxLogErrText = 1024
)

// logSessions are the log subscriptions of one session. They end with it.
type logSessions struct {
	exec   executor.Executor
	owns   func(taskID string) bool
	send   func(*workerv1.WorkerMessage) error
	log    *slog.Logger
	wg     sync.WaitGroup
	cancel context.CancelFunc // ends every subscription

	mu   sync.Mutex
	subs map[string]*logReader
}

// newLogSessions serves subscriptions until ctx ends or stop is called.
func newLogSessions(ctx context.Context, exec executor.Executor, owns func(string) bool, send func(*workerv1.WorkerMessage) error, logger *slog.Logger) (*logSessions, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	return &logSessions{exec: exec, owns: owns, send: send, log: logger, cancel: cancel, subs: map[string]*logReader{}}, ctx
}

// stop ends every subscription and waits for their goroutines.
func (ls *logSessions) stop() {
	ls.cancel()
	ls.wg.Wait()
}

// subscribe starts reading the logs a subscription asks for.
func (ls *logSessions) subscribe(ctx context.Context, m *workerv1.LogSubscription) {
	if m.GetId() == "" {
		ls.log.Warn("log subscription without an id; ignored")
		return
	}
	r := &logReader{id: m.GetId(), credit: int(m.GetCredit()), wake: make(chan struct{}, 1), space: make(chan struct{})}
	ctx, r.cancel = context.WithCancel(ctx)
	ls.mu.Lock()
	switch {
	case ls.subs[r.id] != nil:
		ls.mu.Unlock()
		r.cancel()
		ls.log.Warn("log subscription sent twice; ignored", "subscription_id", r.id)
		return
	case len(ls.subs) >= maxLogSubs:
		ls.mu.Unlock()
		r.cancel()
		// Refused: answer at once that nothing will come.
		errs := make([]*workerv1.TaskLogError, 0, len(m.GetTaskIds()))
		for _, id := range m.GetTaskIds() {
			errs = append(errs, &workerv1.TaskLogError{TaskId: id, Error: fmt.Sprintf("node serves %d log requests already; try again later", maxLogSubs)})
		}
		ls.sendBatch(&workerv1.LogBatch{SubscriptionId: r.id, Errors: errs, Done: true})
		return
	}
	ls.subs[r.id] = r
	ls.mu.Unlock()

	opts := executor.LogOptions{Follow: m.GetFollow(), Tail: -1}
	if t := m.GetTail(); t >= 0 {
		opts.Tail = int(min(t, int64(1<<31-1)))
	}
	var readers sync.WaitGroup
	seen := map[string]bool{}
	for _, id := range m.GetTaskIds() {
		if seen[id] {
			continue
		}
		seen[id] = true
		if !ls.owns(id) {
			// The manager only asks about the node's own tasks; one it
			// names that this node does not hold is not read.
			r.fail(id, errors.New("task is not assigned to this node"))
			continue
		}
		readers.Add(1)
		ls.wg.Go(func() {
			defer readers.Done()
			err := ls.exec.Logs(ctx, id, opts, func(e executor.LogEntry) error { return r.add(ctx, id, e) })
			if err != nil && ctx.Err() == nil {
				r.fail(id, err)
			}
		})
	}
	ls.wg.Go(func() {
		readers.Wait()
		r.mu.Lock()
		r.ended = true
		r.mu.Unlock()
		r.notify()
	})
	ls.wg.Go(func() {
		defer func() {
			ls.mu.Lock()
			delete(ls.subs, r.id)
			ls.mu.Unlock()
			r.cancel()
		}()
		if err := r.run(ctx, ls.sendBatch); err != nil && ctx.Err() == nil {
			ls.log.Debug("log subscription ended", "subscription_id", r.id, "error", err)
		}
	})
}

// control gives a subscription credit, or cancels it.
func (ls *logSessions) control(m *workerv1.LogControl) {
	ls.mu.Lock()
	r := ls.subs[m.GetSubscriptionId()]
	ls.mu.Unlock()
	if r == nil {
		return // ended already
	}
	if m.GetCancel() {
		r.cancel()
		return
	}
	r.mu.Lock()
	r.credit += int(m.GetCredit())
	r.mu.Unlock()
	r.notify()
}

func (ls *logSessions) sendBatch(b *workerv1.LogBatch) error {
	return ls.send(&workerv1.WorkerMessage{Msg: &workerv1.WorkerMessage_Logs{Logs: b}})
}

// logReader is one subscription: the executor's readers add lines, and
// run sends them in batches while it holds credit.
type logReader struct {
	id     string
	cancel context.CancelFunc
	wake   chan struct{} // size 1: something changed for run

	mu     sync.Mutex
	credit int
	lines  []*workerv1.LogLine
	bytes  int
	since  time.Time // when the oldest pending line came
	errs   []*workerv1.TaskLogError
	ended  bool          // every reader returned
	space  chan struct{} // closed when pending lines were taken
}

func (r *logReader) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// add queues one entry, in pieces if it is long, waiting while too much
// is pending.
func (r *logReader) add(ctx context.Context, taskID string, e executor.LogEntry) error {
	stream := workerv1.LogStream_LOG_STREAM_STDOUT
	if e.Stream == executor.Stderr {
		stream = workerv1.LogStream_LOG_STREAM_STDERR
	}
	ts := timestamppb.New(e.Time)
	data := e.Line
	for first := true; first || len(data) > 0; first = false {
		piece := data[:min(len(data), maxLogPiece)]
		data = data[len(piece):]
		for {
			r.mu.Lock()
			if r.bytes < logPendingBytes {
				// The first pending line starts the batch's clock, which
				// run must learn of: asleep until woken, it would
				// otherwise hold a follow's lines until a batch filled
				// up or the readers ended, which a quiet task never does.
				first := len(r.lines) == 0
				if first {
					r.since = time.Now()
				}
				r.lines = append(r.lines, &workerv1.LogLine{TaskId: taskID, Stream: stream, Time: ts, Data: append([]byte(nil), piece...)})
				r.bytes += len(piece)
				full := len(r.lines) >= logBatchLines || r.bytes >= logBatchBytes
				r.mu.Unlock()
				if first || full {
					r.notify()
				}
				break
			}
			space := r.space
			r.mu.Unlock()
			r.notify()
			select {
			case <-space:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// fail records that a task's logs ended with err.
func (r *logReader) fail(taskID string, err error) {
	msg := err.Error()
	if len(msg) > maxLogErrText {
		msg = msg[:maxLogErrText]
	}
	r.mu.Lock()
	r.errs = append(r.errs, &workerv1.TaskLogError{TaskId: taskID, Error: msg})
	r.mu.Unlock()
	r.notify()
}

// run sends batches until the last one (done) is sent or ctx ends. The
// first batch goes at once, empty if nothing was read yet: it tells the
// manager the subscription is being served.
func (r *logReader) run(ctx context.Context, send func(*workerv1.LogBatch) error) error {
	timer := time.NewTimer(logBatchInterval)
	defer timer.Stop()
	first := true
	for {
		b, wait := r.take(first)
		if b != nil {
			if err := send(b); err != nil {
				return err
			}
			if b.Done {
				return nil
			}
			first = false
			continue
		}
		var due <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			due = timer.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.wake:
		case <-due:
		}
	}
}

// take returns the next batch to send, or nil and how long to wait for
// the pending lines to be due (0: until woken).
func (r *logReader) take(first bool) (*workerv1.LogBatch, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.credit <= 0 {
		return nil, 0
	}
	full := len(r.lines) >= logBatchLines || r.bytes >= logBatchBytes
	due := len(r.lines) > 0 && time.Since(r.since) >= logBatchInterval
	last := r.ended && len(r.lines) <= logBatchLines && r.bytes <= logBatchBytes
	if !first && !full && !due && !last && len(r.errs) == 0 {
		if len(r.lines) > 0 {
			return nil, logBatchInterval - time.Since(r.since)
		}
		return nil, 0
	}
	b := &workerv1.LogBatch{SubscriptionId: r.id, Done: last}
	ne := min(len(r.errs), logBatchErrors)
	b.Errors = r.errs[:ne:ne]
	r.errs = r.errs[ne:]
	n, size := 0, 0
	for n < len(r.lines) && n < logBatchLines && size < logBatchBytes {
		size += len(r.lines[n].Data)
		n++
	}
	b.Lines = r.lines[:n:n]
	r.lines = r.lines[n:]
	r.bytes -= size
	if len(r.lines) > 0 {
		r.since = time.Now()
	} else {
		r.lines = nil
	}
	if b.Done && (len(r.lines) > 0 || len(r.errs) > 0) {
		b.Done = false
	}
	r.credit--
	close(r.space)
	r.space = make(chan struct{})
	return b, 0
}

// holds reports whether the task is in the node's assignment set.
func (s *taskSet) holds(taskID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.workers[taskID]
	return w != nil && !w.removed
}
