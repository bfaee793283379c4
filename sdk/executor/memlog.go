package executor

import (
	"context"
	"sync"
)

// MemLog is a task's output kept in memory, for an executor that holds it
// itself (a simulated executor, a test's): Append adds lines as the task
// writes them, End says that no more will come (the process exited, or the
// task was removed), and Send serves Executor.Logs from it. It is safe for
// concurrent use, and Send emits without holding its lock. The zero value
// is an empty log.
type MemLog struct {
	// mu guards the fields below.
	mu sync.Mutex
	// lines are never modified once appended.
	lines []LogEntry
	ended bool
	// wake is closed and replaced when lines grow or the log ends.
	wake chan struct{}
}

// Append adds lines at the end of the log.
func (l *MemLog) Append(lines ...LogEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, lines...)
	l.wakeLocked()
}

// End says no more lines will come: a following Send returns once it sent
// what the log holds.
func (l *MemLog) End() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended = true
	l.wakeLocked()
}

func (l *MemLog) wakeLocked() {
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// Send emits the log's lines as Executor.Logs does: the last opts.Tail
// (all when Tail < 0), then, with opts.Follow, each new line until End or
// the end of ctx (when it returns ctx.Err()). An error from emit ends it.
func (l *MemLog) Send(ctx context.Context, opts LogOptions, emit func(LogEntry) error) error {
	l.mu.Lock()
	next := 0
	if opts.Tail >= 0 {
		next = max(len(l.lines)-opts.Tail, 0)
	}
	l.mu.Unlock()
	for {
		l.mu.Lock()
		lines := l.lines[next:]
		next = len(l.lines)
		var wake chan struct{}
		if opts.Follow && !l.ended {
			if l.wake == nil {
				l.wake = make(chan struct{})
			}
			wake = l.wake
		}
		l.mu.Unlock()
		for _, e := range lines {
			if err := emit(e); err != nil {
				return err
			}
		}
		if wake == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}
