package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// taskSet is the node's assignment set and the workers that reconcile each
// task against the executor.
//
// A task has one worker (taskWorker) for as long as the agent knows it, and
// the worker has a goroutine only while it has something to do: it runs
// transitions, blocks in Executor.Wait while the task runs, and exits when
// the task is settled (ended, or never to run), to be started again by the
// next change. So calls for one task never overlap, and an idle task costs
// no goroutine.
type taskSet struct {
	nodeID string
	exec   executor.Executor
	rep    *reporter
	log    *slog.Logger
	wake   chan struct{} // size 1: queue has workers to start

	mu      sync.Mutex
	workers map[string]*taskWorker
	// orphans are the tasks the executor held when the agent started and
	// that no assignment named yet. A task the set names is adopted (its
	// worker starts from what the executor says); those still unnamed
	// after the first complete set are stopped and removed. nil once that
	// set arrived.
	orphans map[string]executor.TaskInfo
	queue   []*taskWorker // workers to start a goroutine for
}

func newTaskSet(nodeID string, exec executor.Executor, rep *reporter, logger *slog.Logger) *taskSet {
	return &taskSet{
		nodeID:  nodeID,
		exec:    exec,
		rep:     rep,
		log:     logger,
		wake:    make(chan struct{}, 1),
		workers: map[string]*taskWorker{},
	}
}

// adopt records what the executor holds at start, before any assignment.
func (s *taskSet) adopt(held []executor.TaskInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.orphans = make(map[string]executor.TaskInfo, len(held))
	for _, et := range held {
		if et.TaskID != "" {
			s.orphans[et.TaskID] = et
		}
	}
}

// run starts the workers' goroutines until ctx ends, then waits for them
// to return. Tasks keep running in the executor.
func (s *taskSet) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		queue := s.queue
		s.queue = nil
		s.mu.Unlock()
		for _, w := range queue {
			wg.Go(func() { s.work(ctx, w) })
		}
	}
}

// apply changes the set by one batch of assignments.
func (s *taskSet) apply(a *workerv1.Assignments) error {
	var complete bool
	switch a.GetType() {
	case workerv1.AssignmentsType_ASSIGNMENTS_TYPE_COMPLETE:
		complete = true
	case workerv1.AssignmentsType_ASSIGNMENTS_TYPE_INCREMENTAL:
	default:
		return fmt.Errorf("assignments of unknown type %d", a.GetType())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var named map[string]bool
	if complete {
		named = make(map[string]bool, len(a.GetChanges()))
	}
	var errs []error
	for i, ch := range a.GetChanges() {
		t := ch.GetTask()
		switch {
		case t.GetId() == "":
			errs = append(errs, fmt.Errorf("change %d: no task id", i))
		case ch.GetAction() == workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_UPDATE:
			if t.GetNodeId() != "" && t.GetNodeId() != s.nodeID {
				errs = append(errs, fmt.Errorf("change %d: task %s is assigned to node %s, not this one", i, t.GetId(), t.GetNodeId()))
				continue
			}
			if named != nil {
				named[t.GetId()] = true
			}
			s.upsert(t, ch.GetFiles())
		case ch.GetAction() == workerv1.AssignmentChangeAction_ASSIGNMENT_CHANGE_ACTION_REMOVE:
			s.remove(t.GetId())
		default:
			errs = append(errs, fmt.Errorf("change %d: task %s: unknown action %d", i, t.GetId(), ch.GetAction()))
		}
	}
	if complete {
		for id, w := range s.workers {
			if !named[id] && !w.removed {
				s.remove(id)
			}
		}
		for id := range s.orphans {
			s.remove(id)
		}
		s.orphans = nil
	}
	if len(errs) > 0 {
		return fmt.Errorf("skipped invalid changes: %w", errors.Join(errs...))
	}
	return nil
}

// upsert adds a task to the set or updates it, with the data of its
// secrets and configs when the change carries them (the leader sends them
// while the task is to run; a change without them keeps those held). s.mu
// is held.
func (s *taskSet) upsert(t *objectv1.Task, files []*objectv1.TaskFile) {
	w := s.workers[t.GetId()]
	if w == nil {
		w = &taskWorker{id: t.GetId(), set: s}
		if et, ok := s.orphans[t.GetId()]; ok {
			w.adopt(et)
			delete(s.orphans, t.GetId())
		}
		s.workers[t.GetId()] = w
	}
	w.task, w.removed = t, false
	if len(files) > 0 {
		w.files = files
	}
	s.touch(w)
}

// remove drops a task from the set: its worker stops it if it runs,
// removes it from the executor, and forgets it. s.mu is held.
func (s *taskSet) remove(id string) {
	w := s.workers[id]
	if w == nil {
		et, ok := s.orphans[id]
		if !ok {
			return // unknown: nothing to do
		}
		delete(s.orphans, id)
		w = &taskWorker{id: id, set: s}
		w.adopt(et)
		s.workers[id] = w
	}
	if w.removed {
		return
	}
	w.removed = true
	s.touch(w)
}

// touch tells w's worker that its task changed, starting a goroutine for it
// if it has none. A change that means the task must not run interrupts what
// the worker waits for (the process's exit, a preparation). s.mu is held.
func (s *taskSet) touch(w *taskWorker) {
	w.gen++
	if w.interrupt != nil && w.mustNotRun() {
		w.interrupt()
	}
	if w.active {
		return
	}
	w.active = true
	s.queue = append(s.queue, w)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// work runs w's transitions until its task is settled, ctx ends or it is
// forgotten.
func (s *taskSet) work(ctx context.Context, w *taskWorker) {
	for {
		s.mu.Lock()
		t, removed, gen := w.task, w.removed, w.gen
		w.stepFiles = w.files
		ictx, interrupt := context.WithCancel(ctx)
		w.interrupt = interrupt
		s.mu.Unlock()

		res := w.step(ctx, ictx, t, removed)
		interrupt()

		s.mu.Lock()
		w.interrupt = nil
		switch {
		case ctx.Err() != nil:
			w.active = false
			s.mu.Unlock()
			return
		case res == stepForget && w.gen == gen:
			delete(s.workers, w.id)
			s.rep.forget(w.id)
			s.mu.Unlock()
			return
		case res != stepMore && w.gen == gen:
			w.active = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// len is the number of tasks in the assignment set.
func (s *taskSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, w := range s.workers {
		if !w.removed {
			n++
		}
	}
	return n
}
