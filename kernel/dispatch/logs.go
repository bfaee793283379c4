package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/ids"
	"github.com/shoalhq/shoal/sdk"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// Task logs travel from the workers to the leader over the workers' own
// sessions (through a follower's relay when that is where a worker is
// connected): the leader sends each involved worker a LogSubscription, and
// the worker answers with LogBatch messages. The session also carries the
// worker's heartbeats, so logs are flow-controlled by credit: a worker may
// have at most logCredit batches on their way, and the leader gives credit
// back as batches reach the client. A slow client therefore holds back its
// workers' readers, never the sessions, and the leader buffers at most
// logCredit batches per worker and subscription.

const (
	// logCredit is how many batches a worker may send for one subscription
	// before the leader gives credit back: enough to keep a worker busy
	// across a round trip (a batch is at most ~32 KiB, so 8 keep ~256 KiB
	// moving), few enough that a stalled client costs the leader little.
	logCredit = 8
	// logAnswerTimeout bounds the wait for a worker's first batch, which it
	// sends as soon as it gets the subscription: a worker that stays silent
	// (an agent too old to know logs, a wedged one) is named in an error
	// instead of holding the call forever.
	logAnswerTimeout = 15 * time.Second
	// maxLogBatchLines, maxLogLineBytes and maxLogBatchBytes bound what the
	// leader accepts in one batch; the agent's batches stay far below.
	maxLogBatchLines = 1000
	maxLogLineBytes  = 64 << 10
	maxLogBatchBytes = 1 << 20
	// maxLogErrorText bounds a task error's text.
	maxLogErrorText = 4096
	// logMergeWindow is how long batches wait for those of the
	// subscription's other nodes, so that lines written at about the same
	// time on different nodes go out merged by time: at most this long,
	// and not at all once every node that still sends has a batch waiting
	// (or one of them is out of credit).
	logMergeWindow = 100 * time.Millisecond
)

// LogQuery selects the logs a subscription reads.
type LogQuery struct {
	// Tasks are the IDs of the tasks to read, by the ID of the node that
	// holds them.
	Tasks map[string][]string
	// Follow keeps reading new lines until every task's process exited.
	Follow bool
	// Tail is how many of each task's last lines to start with; < 0: all.
	Tail int64
	// More, when set, brings tasks to add while the subscription runs (a
	// followed service's new tasks), by node ID; their logs are read from
	// their start. The subscription then ends only once More is closed
	// and every part ended (or with ctx).
	More <-chan map[string][]string
}

// LogEvent is one step of a subscription: lines, merged by time, task
// errors of one node, or the end of that node's part with Err.
type LogEvent struct {
	// NodeID is the node of TaskErrors and Err; events of lines alone may
	// hold several nodes' lines and then have none.
	NodeID string
	// Lines are in time order across tasks, and in the order each task
	// wrote them; an event holds at most maxLogBatchLines lines and
	// maxLogBatchBytes bytes of them.
	Lines      []*workerv1.LogLine
	TaskErrors []*workerv1.TaskLogError
	// Err says the node's logs end here, incomplete: it is down, its
	// session ended, or it broke the protocol.
	Err error
}

// Logs reads the logs q selects on the workers holding them and passes
// them to emit as they come (within logMergeWindow), in order within each
// task and stream and merged by time across tasks, until every node has
// sent all (or failed) or ctx ends. Only the leader serves it.
func (s *Service) Logs(ctx context.Context, q LogQuery, emit func(LogEvent) error) error {
	d := s.dispatcher()
	if d == nil {
		return fmt.Errorf("task logs: not the leader: %w", sdk.ErrUnavailable)
	}
	return d.Logs(ctx, q, emit)
}

// logSubs are the dispatcher's open log subscriptions, by the ID of each
// of their parts.
type logSubs struct {
	mu    sync.Mutex
	parts map[string]*logSub
	// mergeWindow replaces logMergeWindow when set (tests).
	mergeWindow time.Duration
}

// logSub is one subscription, served by the goroutine of the Logs call. It
// has a part per node it reads from, and one more for each node that was
// added tasks later (workers take a subscription's tasks once).
type logSub struct {
	id   string
	wake chan struct{}

	mu     sync.Mutex
	parts  map[string]*logNode // by part ID
	next   int                 // numbers part IDs
	events []logEvent
}

// logNode is a subscription's part on one node.
type logNode struct {
	id       string // the part's ID, the subscription ID the worker knows
	nodeID   string
	sess     *session
	tasks    map[string]bool
	credit   int       // batches the worker may still send
	deadline time.Time // for the first batch
	answered bool      // its first batch arrived
	done     bool      // its part ended: no more events
}

// logEvent is a LogEvent, the part it came from, and, for a batch whose
// credit goes back to the worker once emitted, that part again.
type logEvent struct {
	LogEvent
	from   *logNode
	credit *logNode
}

// Logs is Service.Logs on this dispatcher.
func (d *Dispatcher) Logs(ctx context.Context, q LogQuery, emit func(LogEvent) error) error {
	sub := &logSub{id: ids.New(), wake: make(chan struct{}, 1), parts: map[string]*logNode{}}
	defer d.closeLogSub(sub)
	d.addLogParts(sub, q.Tasks, q.Follow, q.Tail)
	d.log.Debug("log subscription", "subscription_id", sub.id, "nodes", len(q.Tasks), "follow", q.Follow)

	more := q.More
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	window := cmp.Or(d.logs.mergeWindow, logMergeWindow)
	merge := time.NewTimer(window)
	defer merge.Stop()
	var (
		held      []logEvent // waiting for the other nodes' batches
		heldSince time.Time
	)
	for {
		d.logs.mu.Lock()
		sub.mu.Lock()
		if len(sub.events) > 0 {
			if len(held) == 0 {
				heldSince = time.Now()
			}
			held = append(held, sub.events...)
			sub.events = nil
		}
		for id, n := range sub.parts {
			if n.done {
				// Forget it: a follow that runs for days sees many tasks.
				delete(sub.parts, id)
				delete(d.logs.parts, id)
			}
		}
		open := len(sub.parts)
		ready := len(held) > 0 && (time.Since(heldSince) >= window || sub.mergeReadyLocked(held))
		sub.mu.Unlock()
		d.logs.mu.Unlock()
		if ready {
			if err := emitMerged(held, emit); err != nil {
				return err
			}
			sub.returnCredit(held)
			held = nil
			continue // more may have come while emitting
		}
		if len(held) == 0 && open == 0 && more == nil {
			return nil
		}
		var due <-chan time.Time
		if len(held) > 0 {
			merge.Reset(window - time.Since(heldSince))
			due = merge.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.done:
			return fmt.Errorf("task logs: this manager is no longer the leader: %w", sdk.ErrUnavailable)
		case <-sub.wake:
		case <-due:
		case tasks, ok := <-more:
			if !ok {
				more = nil
				continue
			}
			// New tasks: read from their start.
			d.addLogParts(sub, tasks, q.Follow, -1)
		case now := <-tick.C:
			sub.failSilent(now)
		}
	}
}

// closeLogSub ends sub's parts: the readers of the nodes that still send
// are told to stop, and the dispatcher forgets the parts.
func (d *Dispatcher) closeLogSub(sub *logSub) {
	d.logs.mu.Lock()
	defer d.logs.mu.Unlock()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for id, n := range sub.parts {
		delete(d.logs.parts, id)
		if !n.done {
			n.done = true
			n.sess.peer.send(logControl(n.id, 0, true))
		}
	}
}

// returnCredit gives each part back the credit of its batches among
// emitted: they reached the client, so its worker may send more.
func (sub *logSub) returnCredit(emitted []logEvent) {
	credits := map[*logNode]uint32{}
	for _, ev := range emitted {
		if n := ev.credit; n != nil {
			credits[n]++
		}
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for n, c := range credits {
		if !n.done {
			n.credit += int(c)
			n.sess.peer.send(logControl(n.id, c, false))
		}
	}
}

// failSilent fails the parts whose node has not answered the request by
// their deadline.
func (sub *logSub) failSilent(now time.Time) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, n := range sub.parts {
		if !n.done && !n.answered && now.After(n.deadline) {
			sub.failLocked(n, fmt.Errorf("node %s did not answer the log request within %s: %w", n.nodeID, logAnswerTimeout, sdk.ErrUnavailable))
		}
	}
}

// mergeReadyLocked reports whether the held events can go without waiting
// for more: every part that still sends has an event among them (none
// will come sooner than its next batch), or one is out of credit (it
// sends nothing more until they went). sub.mu is held.
func (sub *logSub) mergeReadyLocked(held []logEvent) bool {
	has := make(map[*logNode]bool, len(sub.parts))
	for _, ev := range held {
		if ev.from != nil {
			has[ev.from] = true
		}
	}
	all := true
	for _, n := range sub.parts {
		if n.done {
			continue
		}
		if n.credit <= 0 {
			return true
		}
		all = all && has[n]
	}
	return all
}

// emitMerged passes the lines of events to emit merged by time, in events
// of bounded size, then their task errors and node errors in the order
// they came: a node's end follows every line it sent.
func emitMerged(events []logEvent, emit func(LogEvent) error) error {
	lines := mergeLines(events)
	node, mixed := "", false
	for _, ev := range events {
		if len(ev.Lines) > 0 {
			mixed = mixed || (node != "" && ev.NodeID != node)
			node = ev.NodeID
		}
	}
	if mixed {
		node = ""
	}
	for len(lines) > 0 {
		n, size := 0, 0
		for n < len(lines) && n < maxLogBatchLines && (n == 0 || size+len(lines[n].GetData()) <= maxLogBatchBytes) {
			size += len(lines[n].GetData())
			n++
		}
		if err := emit(LogEvent{NodeID: node, Lines: lines[:n:n]}); err != nil {
			return err
		}
		lines = lines[n:]
	}
	for _, ev := range events {
		if len(ev.TaskErrors) > 0 || ev.Err != nil {
			if err := emit(LogEvent{NodeID: ev.NodeID, TaskErrors: ev.TaskErrors, Err: ev.Err}); err != nil {
				return err
			}
		}
	}
	return nil
}

// mergeLines returns the lines of events sorted by time, each task's
// lines in the order they came: a line stamped before its task's line
// before (the node's clock stepped back) sorts as if stamped with that
// line's time. Lines without a time count as their task's line before.
func mergeLines(events []logEvent) []*workerv1.LogLine {
	type keyed struct {
		at   time.Time
		line *workerv1.LogLine
	}
	var all []keyed
	last := map[string]time.Time{}
	sorted := true
	for _, ev := range events {
		for _, l := range ev.Lines {
			at := last[l.GetTaskId()]
			if ts := l.GetTime(); ts != nil {
				if t := ts.AsTime(); t.After(at) {
					at = t
				}
			}
			last[l.GetTaskId()] = at
			if len(all) > 0 && at.Before(all[len(all)-1].at) {
				sorted = false
			}
			all = append(all, keyed{at, l})
		}
	}
	if !sorted {
		slices.SortStableFunc(all, func(a, b keyed) int { return a.at.Compare(b.at) })
	}
	out := make([]*workerv1.LogLine, len(all))
	for i, k := range all {
		out[i] = k.line
	}
	return out
}

// addLogParts asks each node for its tasks' logs, in a new part of sub.
func (d *Dispatcher) addLogParts(sub *logSub, tasks map[string][]string, follow bool, tail int64) {
	nodeIDs := make([]string, 0, len(tasks))
	for id := range tasks {
		nodeIDs = append(nodeIDs, id)
	}
	sort.Strings(nodeIDs)
	d.logs.mu.Lock()
	defer d.logs.mu.Unlock()
	if d.logs.parts == nil {
		d.logs.parts = map[string]*logSub{}
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, nodeID := range nodeIDs {
		sub.next++
		n := &logNode{id: fmt.Sprintf("%s.%d", sub.id, sub.next), nodeID: nodeID, tasks: map[string]bool{},
			credit: logCredit, deadline: time.Now().Add(logAnswerTimeout)}
		ids := make([]string, 0, len(tasks[nodeID]))
		for _, t := range tasks[nodeID] {
			if !n.tasks[t] {
				n.tasks[t] = true
				ids = append(ids, t)
			}
		}
		sort.Strings(ids)
		sub.parts[n.id] = n
		d.logs.parts[n.id] = sub
		if n.sess = d.session(nodeID); n.sess == nil {
			n.done = true
			sub.events = append(sub.events, logEvent{LogEvent: LogEvent{NodeID: nodeID,
				Err: fmt.Errorf("node %s is not connected (down or reconnecting): %w", nodeID, sdk.ErrUnavailable)}, from: n})
			continue
		}
		ok := n.sess.peer.send(&workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_LogSubscription{LogSubscription: &workerv1.LogSubscription{
			Id: n.id, TaskIds: ids, Follow: follow, Tail: tail, Credit: logCredit,
		}}})
		if !ok {
			sub.failLocked(n, fmt.Errorf("node %s: its session is closing: %w", nodeID, sdk.ErrUnavailable))
		}
	}
	sub.notify()
}

func logControl(id string, credit uint32, cancel bool) *workerv1.ManagerMessage {
	return &workerv1.ManagerMessage{Msg: &workerv1.ManagerMessage_LogControl{LogControl: &workerv1.LogControl{
		SubscriptionId: id, Credit: credit, Cancel: cancel,
	}}}
}

func (sub *logSub) notify() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// fail ends n's part with err and cancels it on the worker.
func (sub *logSub) fail(n *logNode, err error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.failLocked(n, err)
}

func (sub *logSub) failLocked(n *logNode, err error) {
	if n.done {
		return
	}
	n.done = true
	if n.sess != nil {
		n.sess.peer.send(logControl(n.id, 0, true))
	}
	sub.events = append(sub.events, logEvent{LogEvent: LogEvent{NodeID: n.nodeID, Err: err}, from: n})
	sub.notify()
}

// validLogBatch checks a worker's batch before anything of it is used.
func validLogBatch(b *workerv1.LogBatch) error {
	var fe sdk.FieldErrors
	if b.GetSubscriptionId() == "" {
		fe.Add("subscription_id", "is required")
	}
	if len(b.GetLines()) > maxLogBatchLines {
		fe.Add("lines", "must be at most %d, got %d", maxLogBatchLines, len(b.GetLines()))
	}
	size := 0
	for i, l := range b.GetLines() {
		if l.GetTaskId() == "" {
			fe.Add(fmt.Sprintf("lines[%d].task_id", i), "is required")
		}
		if s := l.GetStream(); s != workerv1.LogStream_LOG_STREAM_STDOUT && s != workerv1.LogStream_LOG_STREAM_STDERR {
			fe.Add(fmt.Sprintf("lines[%d].stream", i), "must be stdout or stderr, got %d", s)
		}
		if len(l.GetData()) > maxLogLineBytes {
			fe.Add(fmt.Sprintf("lines[%d].data", i), "must be at most %d bytes, got %d", maxLogLineBytes, len(l.GetData()))
		}
		size += len(l.GetData())
	}
	if size > maxLogBatchBytes {
		fe.Add("lines", "must hold at most %d bytes, got %d", maxLogBatchBytes, size)
	}
	if len(b.GetErrors()) > maxLogBatchLines {
		fe.Add("errors", "must be at most %d, got %d", maxLogBatchLines, len(b.GetErrors()))
	}
	for i, e := range b.GetErrors() {
		if e.GetTaskId() == "" {
			fe.Add(fmt.Sprintf("errors[%d].task_id", i), "is required")
		}
		if len(e.GetError()) > maxLogErrorText {
			fe.Add(fmt.Sprintf("errors[%d].error", i), "must be at most %d bytes", maxLogErrorText)
		}
	}
	return fe.Err()
}

// deliverLogs takes a batch that s's worker sent. A batch for a
// subscription that ended is dropped (a cancel crosses batches on the
// way); one that names a subscription or a task this node was never asked
// about, exceeds its credit or is malformed ends the node's part with an
// error. Logs never end the session: it carries the node's heartbeats.
func (d *Dispatcher) deliverLogs(s *session, b *workerv1.LogBatch) {
	d.logs.mu.Lock()
	sub := d.logs.parts[b.GetSubscriptionId()]
	d.logs.mu.Unlock()
	if sub == nil {
		return
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	n := sub.parts[b.GetSubscriptionId()]
	if n == nil || n.nodeID != s.nodeID || n.sess != s {
		d.log.Warn("worker sent logs for a subscription it was not sent", "node_id", s.nodeID, "subscription_id", b.GetSubscriptionId())
		return
	}
	if n.done {
		return
	}
	if err := validLogBatch(b); err != nil {
		sub.failLocked(n, fmt.Errorf("node %s sent a bad log batch: %w", n.nodeID, err))
		return
	}
	for i, l := range b.GetLines() {
		if !n.tasks[l.GetTaskId()] {
			sub.failLocked(n, fmt.Errorf("node %s sent logs of task %s, which it was not asked for (lines[%d].task_id): %w", n.nodeID, l.GetTaskId(), i, sdk.ErrPermissionDenied))
			return
		}
	}
	for i, e := range b.GetErrors() {
		if !n.tasks[e.GetTaskId()] {
			sub.failLocked(n, fmt.Errorf("node %s sent an error of task %s, which it was not asked for (errors[%d].task_id): %w", n.nodeID, e.GetTaskId(), i, sdk.ErrPermissionDenied))
			return
		}
	}
	if n.credit--; n.credit < 0 {
		sub.failLocked(n, fmt.Errorf("node %s sent more log batches than its credit of %d: %w", n.nodeID, logCredit, sdk.ErrResourceExhausted))
		return
	}
	n.answered = true
	if b.GetDone() {
		n.done = true
	}
	switch {
	case len(b.GetLines()) > 0 || len(b.GetErrors()) > 0:
		ev := logEvent{LogEvent: LogEvent{NodeID: n.nodeID, Lines: b.GetLines(), TaskErrors: b.GetErrors()}, from: n}
		if !n.done {
			ev.credit = n
		}
		sub.events = append(sub.events, ev)
	case !n.done:
		// An empty batch (the first answer) has nothing to wait for: its
		// credit goes back at once.
		n.credit++
		n.sess.peer.send(logControl(n.id, 1, false))
	}
	sub.notify()
}

// logSessionEnded ends the parts of every subscription that were read
// through s: the worker's readers stopped with its session.
func (d *Dispatcher) logSessionEnded(s *session) {
	d.logs.mu.Lock()
	subs := map[*logSub]bool{}
	for _, sub := range d.logs.parts {
		subs[sub] = true
	}
	d.logs.mu.Unlock()
	for sub := range subs {
		sub.mu.Lock()
		for _, n := range sub.parts {
			if n.sess == s && !n.done {
				n.done = true
				sub.events = append(sub.events, logEvent{LogEvent: LogEvent{NodeID: n.nodeID,
					Err: fmt.Errorf("node %s: its session ended before all its logs were sent: %w", n.nodeID, sdk.ErrUnavailable)}, from: n})
				sub.notify()
			}
		}
		sub.mu.Unlock()
	}
}
