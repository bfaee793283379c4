package dispatch

import (
	"errors"
	"sync"

	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

// peer is the way to one worker: a direct stream or a relayed one.
type peer interface {
	// send queues msg for the worker; it never blocks. It returns false
	// when the peer is closed or hopelessly behind (then it closes itself).
	send(msg *workerv1.ManagerMessage) bool
	// close ends the worker's session with err (nil: a normal end).
	close(err error)
}

// maxQueued bounds a worker's outbound queue. A worker this far behind is
// stuck or gone; it is disconnected and resyncs on reconnect.
const maxQueued = 10_000

// queue is an unbounded-up-to-maxQueued FIFO with a wake-up channel, so
// senders never block and one goroutine drains it.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	wake   chan struct{}
}

func newQueue[T any]() *queue[T] { return &queue[T]{wake: make(chan struct{}, 1)} }

var errQueueFull = errors.New("worker too slow: outbound queue full")

func (q *queue[T]) push(v T) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errClosed
	}
	if len(q.items) >= maxQueued {
		q.mu.Unlock()
		return errQueueFull
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// drain returns everything queued, or nil once closed and empty.
func (q *queue[T]) drain() ([]T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items, !(q.closed && len(items) == 0)
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

var errClosed = errors.New("session closed")
