package state

import (
	"sync"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// watchChanBuffer is the capacity of a watcher's channel. The queue behind
// it is unbounded up to watchLimit; the buffer saves a goroutine switch per
// event when the watcher reads in bursts, and lets a watcher that drains
// what has arrived without blocking (the placement stage, before each batch
// of 1,000) see a whole batch's worth: with 64, it often saw 65 events and
// sent the plugin a batch of 65.
const watchChanBuffer = 1024

// Event is one applied change. Exactly one of Cluster, Node, Service, Task,
// Network, Secret and Config is set: the object after the change, or for a DELETE, the
// object as it was. For an UPDATE, the matching Old field holds the object before it.
// The objects are the stored ones: never modify them.
type Event struct {
	// Index is the Raft index of the command that made the change; the
	// events of one command are consecutive and share it.
	Index uint64
	// Kind is ACTION_KIND_CREATE, ACTION_KIND_UPDATE or ACTION_KIND_DELETE.
	Kind raftv1.ActionKind

	Cluster *objectv1.Cluster
	Node    *objectv1.Node
	Service *objectv1.Service
	Task    *objectv1.Task
	Network *objectv1.Network
	Secret  *objectv1.Secret
	Config  *objectv1.Config

	OldCluster *objectv1.Cluster
	OldNode    *objectv1.Node
	OldService *objectv1.Service
	OldTask    *objectv1.Task
	OldNetwork *objectv1.Network
	OldSecret  *objectv1.Secret
	OldConfig  *objectv1.Config
}

// ViewAndWatch runs fn on a consistent view of the state and subscribes to
// every change applied after that view, in one step: no change is missed or
// seen twice (every event has an Index above the view's tx.Index()).
//
// Events arrive in apply order. The channel closes when cancel is called,
// when the watcher falls watchQueueLimit events behind, or when the state is
// replaced by Restore; in the last two cases the watcher's picture is stale
// and it must start over with a new ViewAndWatch. Apply never waits for a
// watcher. cancel is idempotent, frees the watch, and returns once its
// goroutine has exited; the watcher should call it in every case.
//
// fn may be nil. Like View's, it must be quick and must not call Store
// methods.
func (s *Store) ViewAndWatch(fn func(tx *ReadTx)) (events <-chan Event, cancel func()) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if fn != nil {
		fn(&ReadTx{t: s.t})
	}
	return s.watch()
}

// Watch subscribes to every change applied from now on, as ViewAndWatch
// does without the view.
func (s *Store) Watch() (events <-chan Event, cancel func()) {
	return s.watch()
}

func (s *Store) watch() (<-chan Event, func()) {
	w := &watcher{
		out:    make(chan Event, watchChanBuffer),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	s.watchMu.Lock()
	s.watchers[w] = struct{}{}
	s.watchMu.Unlock()
	go w.run()
	cancel := func() {
		s.watchMu.Lock()
		delete(s.watchers, w)
		s.watchMu.Unlock()
		w.close()
		<-w.exited
	}
	return w.out, cancel
}

// SetWatchLimit sets how many undelivered events a watcher may fall behind
// before its watch is closed (watchQueueLimit unless set), for the watches
// open now and those to come. It exists for tests, which lower it to make
// the leader's stages meet the overflow they must recover from; a limit
// below 1 is taken as 1.
func (s *Store) SetWatchLimit(n int) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.watchLimit = max(n, 1)
}

// publish hands the events of one command to every watcher. It runs under
// s.mu, so that ViewAndWatch sees each command either in its view or as
// events, and never blocks: a watcher too far behind is closed instead.
func (s *Store) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		if !w.push(events, s.watchLimit) {
			delete(s.watchers, w)
			w.close()
		}
	}
}

// closeWatchers closes every watch, as after Restore.
func (s *Store) closeWatchers() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		delete(s.watchers, w)
		w.close()
	}
}

// watcher is one watch: a queue that Apply appends to and a goroutine (run)
// that moves it to the channel at the watcher's pace.
type watcher struct {
	out    chan Event
	wake   chan struct{} // capacity 1: "the queue grew"
	stop   chan struct{} // closed by close
	exited chan struct{} // closed when run returns
	once   sync.Once

	// mu guards queue.
	mu    sync.Mutex
	queue []Event
}

// push queues events, or reports false if that would put more than limit
// events in the queue, dropping the queue.
func (w *watcher) push(events []Event, limit int) bool {
	w.mu.Lock()
	if len(w.queue)+len(events) > limit {
		w.queue = nil
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, events...)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return true
}

func (w *watcher) close() {
	w.once.Do(func() { close(w.stop) })
}

// maxSpareQueue is the largest drained queue kept for reuse; a bigger one,
// left by a burst, goes back to the garbage collector.
const maxSpareQueue = 4096

func (w *watcher) run() {
	defer close(w.exited)
	defer close(w.out)
	var batch []Event
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		w.mu.Lock()
		if cap(batch) > maxSpareQueue {
			batch = nil
		}
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		for i := range batch {
			select {
			case w.out <- batch[i]:
				batch[i] = Event{}
			case <-w.stop:
				return
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
	}
}
