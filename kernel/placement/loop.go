package placement

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// maxCommits bounds the batches whose commit is under way while the next
// is scheduled: enough to hide a commit's latency behind the plugin's
// work, few enough that a failed commit sends back little.
const maxCommits = 4

// loop is one pass of run, from a read of the store to the end of its
// watch. Everything in it belongs to run's goroutine; only results is
// sent on by the commits' goroutines.
//
// Commits run beside the next batch's scheduling: a batch's decisions
// count in the node view (Placer.inflight) until its commit is applied,
// so the plugin never sees capacity that is already promised.
type loop struct {
	p        *Placer
	events   <-chan state.Event
	queue    map[string]bool // tasks to offer
	refused  map[string]bool // tasks no node fits, until nodes change
	deciding map[string]bool // tasks whose decision is being committed
	results  chan result
	wg       sync.WaitGroup // the commits under way
	backoff  time.Duration  // before asking an unavailable plugin again
}

// result is how a batch's commit ended.
type result struct {
	b        *batch
	done, no []string
	err      error
}

// step is what the loop does after one of its parts.
type step int

const (
	stepWait   step = iota // wait for work
	stepAgain              // go round again at once
	stepGather             // gather the burst an event starts
	stepStop               // ctx ended or the watch closed: run returns nil
)

func (p *Placer) run(ctx context.Context) error {
	l := &loop{
		p:        p,
		queue:    map[string]bool{},
		refused:  map[string]bool{},
		deciding: map[string]bool{},
		results:  make(chan result, maxCommits),
		backoff:  100 * time.Millisecond,
	}
	p.born = map[string]int64{}
	events, cancel := p.st.ViewAndWatch(func(tx *state.ReadTx) {
		for _, t := range tx.TasksByState(objectv1.TaskState_TASK_STATE_PENDING) {
			if waiting(t) {
				l.queue[t.Id] = true
				p.born[t.Id] = createdNs(t)
			}
		}
	})
	defer cancel()
	l.events = events
	p.viewValid = false
	p.inflight = map[*batch]bool{}
	defer l.wg.Wait()

	retry := time.NewTicker(retryRefused)
	defer retry.Stop()
	refresh := time.NewTicker(viewRefresh)
	defer refresh.Stop()
	for {
		if !l.drain() {
			return nil
		}
		if l.ready() {
			s, err := l.offer(ctx)
			if err != nil {
				return err
			}
			switch s {
			case stepStop:
				return nil
			case stepAgain:
				continue
			}
		}
		switch l.wait(ctx, retry.C, refresh.C) {
		case stepStop:
			return nil
		case stepAgain:
			continue
		}
		if !l.gather(ctx) {
			return nil
		}
	}
}

// ready reports whether a batch can be offered now: tasks wait and a
// commit may start.
func (l *loop) ready() bool {
	return len(l.queue) > 0 && len(l.p.inflight) < maxCommits
}

// drain adds the events that have already arrived to a batch about to be
// offered: a commit finishing mid-burst must not send the plugin a batch
// of the few events read so far. It reports false if the watch closed.
func (l *loop) drain() bool {
	if !l.ready() {
		return true
	}
	for len(l.queue) < batchSize {
		select {
		case ev, ok := <-l.events:
			if !ok {
				return false
			}
			l.mark(ev)
		default:
			return true
		}
	}
	return true
}

// offer hands the oldest waiting tasks to the plugin and starts the commit
// of its decisions. It returns stepAgain while more can be offered at
// once, stepWait when the loop should wait for work, and an error that
// ends run.
func (l *loop) offer(ctx context.Context) (step, error) {
	p := l.p
	b, gone, err := p.decide(ctx, l.oldestFirst())
	switch {
	case err == nil:
		l.backoff = 100 * time.Millisecond
		for _, id := range gone {
			delete(l.queue, id)
		}
		l.startCommit(ctx, b)
	case errors.Is(err, sdk.ErrFailedPrecondition) && p.viewValid:
		// The plugin lost its copy of the view (it restarted): send the
		// whole view at once.
		p.viewValid = false
		return stepAgain, nil
	case errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, sdk.ErrFailedPrecondition) || errors.Is(err, context.DeadlineExceeded):
		// The plugin is restarting or lost its view: resend it whole once
		// it is back.
		p.viewValid = false
		p.log.Warn("scheduler unavailable; retrying", "tasks", len(l.queue), "error", err, "backoff", l.backoff)
		select {
		case <-ctx.Done():
			return stepStop, nil
		case <-time.After(l.backoff):
		}
		l.backoff = min(2*l.backoff, 5*time.Second)
		return stepAgain, nil
	default:
		return stepStop, err
	}
	if l.ready() {
		return stepAgain, nil // the rest of a big backlog, at once
	}
	return stepWait, nil
}

// oldestFirst returns the queue's tasks oldest first, so a backlog drains
// in creation order; it reads no store (see Placer.born), so it runs
// outside the store's lock, which the Raft applies take.
func (l *loop) oldestFirst() []string {
	ids := make([]string, 0, len(l.queue))
	for id := range l.queue {
		ids = append(ids, id)
	}
	born := l.p.born
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(born[a], born[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return ids
}

// startCommit takes b's tasks out of the queue and commits b in a
// goroutine of its own, whose result arrives on l.results.
func (l *loop) startCommit(ctx context.Context, b batch) {
	p := l.p
	for _, d := range b.decisions {
		delete(l.queue, d.GetTaskId())
		l.deciding[d.GetTaskId()] = true
		// The next request carries these nodes with this batch's
		// placements counted (see viewChanges).
		if d.GetNodeId() != "" {
			p.markDirty(d.GetNodeId())
		}
	}
	if len(b.decisions) == 0 {
		return
	}
	bp := &b
	p.inflight[bp] = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		done, no, err := p.commit(ctx, bp.decisions)
		l.results <- result{b: bp, done: done, no: no, err: err}
	}()
}

// finish takes in the end of a batch's commit: its tasks leave deciding,
// and are queued again if the commit failed.
func (l *loop) finish(ctx context.Context, r result) {
	p := l.p
	delete(p.inflight, r.b)
	for _, d := range r.b.decisions {
		delete(l.deciding, d.GetTaskId())
		if d.GetNodeId() != "" {
			p.markDirty(d.GetNodeId())
		}
	}
	if r.err != nil {
		if ctx.Err() == nil {
			p.log.Warn("committing placements; offering the tasks again", "tasks", len(r.b.decisions), "error", r.err)
		}
		for _, d := range r.b.decisions {
			l.queue[d.GetTaskId()] = true
		}
		return
	}
	for _, id := range r.no {
		l.refused[id] = true
	}
}

// wait blocks for work: an event (stepGather), a commit done, the retry
// or refresh tick (stepAgain), or the end (stepStop).
func (l *loop) wait(ctx context.Context, retry, refresh <-chan time.Time) step {
	p := l.p
	select {
	case <-ctx.Done():
		return stepStop
	case r := <-l.results:
		l.finish(ctx, r)
		return stepAgain
	case <-retry:
		requeue(l.queue, l.refused)
		return stepAgain
	case <-refresh:
		if len(l.queue) == 0 && len(p.inflight) == 0 && (!p.viewValid || len(p.dirty) > 0) {
			p.refreshView(ctx)
		}
		return stepAgain
	case ev, ok := <-l.events:
		if !ok {
			return stepStop
		}
		l.mark(ev)
		return stepGather
	}
}

// gather collects events for settle after the first, so a burst becomes
// full batches. It reports false when run should return.
func (l *loop) gather(ctx context.Context) bool {
	timer := time.NewTimer(settle)
	defer timer.Stop()
	for len(l.queue) < batchSize {
		select {
		case <-ctx.Done():
			return false
		case r := <-l.results:
			l.finish(ctx, r)
		case ev, ok := <-l.events:
			if !ok {
				return false
			}
			l.mark(ev)
		case <-timer.C:
			return true
		}
	}
	return true
}

func (l *loop) mark(ev state.Event) { l.p.mark(ev, l.queue, l.refused, l.deciding) }

// mark takes in a change of the store: the nodes whose entry of the view
// it changes, and the task it queues or drops.
func (p *Placer) mark(ev state.Event, queue, refused, deciding map[string]bool) {
	if p.dirty == nil {
		p.dirty = map[string]bool{}
	}
	if p.born == nil {
		p.born = map[string]int64{}
	}
	p.markView(ev)
	switch {
	case ev.Task != nil:
		id := ev.Task.Id
		if ev.Kind != deleteKind && waiting(ev.Task) {
			p.born[id] = createdNs(ev.Task)
			if !refused[id] && !deciding[id] {
				queue[id] = true
			}
			return
		}
		delete(queue, id)
		delete(refused, id)
		delete(p.born, id)
	case ev.Node != nil:
		// Nodes changed: what did not fit may fit now.
		requeue(queue, refused)
	}
}

// markView marks dirty the nodes whose entry of the view ev may change.
// Most task changes are status reports that leave the task's weight on its
// node as it was: only a change of that weight makes the node's entry
// worth recomputing.
func (p *Placer) markView(ev state.Event) {
	switch {
	case ev.Task != nil:
		before, after := ev.OldTask, ev.Task
		switch ev.Kind {
		case deleteKind:
			if before == nil {
				before = ev.Task
			}
			after = nil
		case raftv1.ActionKind_ACTION_KIND_CREATE:
			before = nil
		}
		if !sameWeight(before, after) {
			if n := before.GetNodeId(); n != "" {
				p.dirty[n] = true
			}
			if n := after.GetNodeId(); n != "" {
				p.dirty[n] = true
			}
		}
	case ev.Node != nil:
		p.dirty[ev.Node.Id] = true
	}
}

// requeue moves the refused tasks back to the queue.
func requeue(queue, refused map[string]bool) {
	for id := range refused {
		queue[id] = true
	}
	clear(refused)
}
