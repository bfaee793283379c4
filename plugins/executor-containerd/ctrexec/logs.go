package ctrexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

const (
	// followPoll is how often Logs with Follow looks for new lines.
	followPoll = 100 * time.Millisecond
	// orphanQuiet is how long the files of a task whose process has exited
	// must stay unchanged, with no driver marker, before Follow ends: the
	// driver died (the node rebooted) and will never write the marker.
	orphanQuiet = 2 * time.Second
	// logSettle bounds how long Wait and Logs wait for the log driver of
	// an exited process to write its last lines; it takes milliseconds
	// unless the driver died.
	logSettle = 2 * time.Second
)

// parseLine is one line of a log file as a LogEntry.
func parseLine(b []byte, stream executor.LogStream) executor.LogEntry {
	t, line := logdriver.ParseLine(b)
	return executor.LogEntry{Stream: stream, Time: t, Line: bytes.Clone(line)}
}

// streamReader reads one log file from where it last stopped, keeping a
// partial last line until its newline arrives.
type streamReader struct {
	path    string
	stream  executor.LogStream
	f       *os.File
	partial []byte
}

// read returns the complete lines added since the last call.
func (s *streamReader) read() ([]executor.LogEntry, error) {
	if s.f == nil {
		f, err := os.Open(s.path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		s.f = f
	}
	var out []executor.LogEntry
	buf := make([]byte, 64<<10)
	for {
		n, err := s.f.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				s.partial = append(s.partial, data...)
				break
			}
			line := data[:i]
			if len(s.partial) > 0 {
				line = append(s.partial, line...)
				s.partial = nil
			}
			out = append(out, parseLine(line, s.stream))
			data = data[i+1:]
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// seekTail opens the file and places it at the start of its last n
// complete lines (all when n < 0), reading backwards from its end.
func (s *streamReader) seekTail(n int) error {
	f, err := os.Open(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.f = f
	if n < 0 {
		return nil
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	// The offset after the (n+1)th newline from the end: every complete
	// line after it is one of the last n.
	buf := make([]byte, 64<<10)
	newlines := 0
	for pos := end; pos > 0; {
		size := min(int64(len(buf)), pos)
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil {
			return err
		}
		for i := size - 1; i >= 0; i-- {
			if buf[i] != '\n' {
				continue
			}
			if newlines++; newlines == n+1 {
				_, err := f.Seek(pos+i+1, io.SeekStart)
				return err
			}
		}
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

func (s *streamReader) close() {
	if s.f != nil {
		s.f.Close()
	}
}

// merge interleaves two streams' entries by time, keeping each stream's
// order.
func merge(a, b []executor.LogEntry) []executor.LogEntry {
	out := make([]executor.LogEntry, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].Time.Before(a[0].Time) {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return append(append(out, a...), b...)
}

// Logs sends the task's lines, both streams interleaved by time, each in
// its order; with Follow, then new lines until the task's process has
// exited and every line is sent.
func (e *Executor) Logs(ctx context.Context, taskID string, opts executor.LogOptions, emit func(executor.LogEntry) error) (err error) {
	defer ctxFirst(ctx, &err)
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return err
	}
	e.mu.RLock()
	dir := e.taskLogDir(taskID)
	e.mu.RUnlock()
	out := &streamReader{path: filepath.Join(dir, logdriver.StdoutFile), stream: executor.Stdout}
	errR := &streamReader{path: filepath.Join(dir, logdriver.StderrFile), stream: executor.Stderr}
	defer out.close()
	defer errR.close()

	send := func(entries []executor.LogEntry) error {
		for _, en := range entries {
			if err := emit(en); err != nil {
				return err
			}
		}
		return nil
	}
	if !opts.Follow {
		// A process that exited has all its lines once its task is
		// finalized (see finalize).
		if s, err := stateOf(nctx, ctr); err == nil && s.exited {
			e.settle(nctx, ctr, s)
		}
	}
	// The last Tail lines of both streams are among the last Tail of each:
	// start each file there rather than reading it whole.
	for _, r := range []*streamReader{out, errR} {
		if err := r.seekTail(opts.Tail); err != nil {
			return fmt.Errorf("task %s: logs: %w", taskID, err)
		}
	}
	first, err := readBoth(out, errR)
	if err != nil {
		return fmt.Errorf("task %s: logs: %w", taskID, err)
	}
	if opts.Tail >= 0 && len(first) > opts.Tail {
		first = first[len(first)-opts.Tail:]
	}
	if err := send(first); err != nil {
		return err
	}
	if !opts.Follow {
		return nil
	}

	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	var quietSince time.Time
	for {
		done := fileExists(filepath.Join(dir, logdriver.DoneFile))
		more, err := readBoth(out, errR)
		if err != nil {
			return fmt.Errorf("task %s: logs: %w", taskID, err)
		}
		if err := send(more); err != nil {
			return err
		}
		if done {
			return nil // every line was on disk before the marker
		}
		if len(more) > 0 {
			quietSince = time.Time{}
			continue // read on before looking at the process
		}
		s, err := stateOf(nctx, ctr)
		if errors.Is(err, sdk.ErrNotFound) {
			return nil // removed while we followed
		}
		if err == nil && s.exited {
			if s.tk != nil {
				e.settle(nctx, ctr, s) // the marker follows
				continue
			}
			// Finalized and no marker: its driver died (the node
			// rebooted), and the files are all there is.
			if quietSince.IsZero() {
				quietSince = time.Now()
			} else if time.Since(quietSince) >= orphanQuiet {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// settle finalizes the exited task of s, so its log driver writes its last
// lines, and waits for them. A failure is left to Wait to report: Logs
// still sends what is on disk.
func (e *Executor) settle(ctx context.Context, ctr client.Container, s state) {
	if s.tk != nil {
		if _, err := e.finalize(ctx, ctr, s.tk); err != nil {
			e.log.Debug("finalize for logs", "task_id", ctr.ID(), "err", err)
			return
		}
	}
	e.awaitLogs(ctx, ctr.ID())
}

// awaitLogs waits, for at most logSettle, until the log driver of a task
// whose process exited has written every line (its marker file exists).
// A task never started has no driver; one whose driver died (the node
// rebooted) costs one logSettle.
func (e *Executor) awaitLogs(ctx context.Context, taskID string) {
	e.mu.RLock()
	dir := e.taskLogDir(taskID)
	e.mu.RUnlock()
	if !fileExists(filepath.Join(dir, logdriver.StdoutFile)) {
		return
	}
	deadline := time.Now().Add(logSettle)
	for !fileExists(filepath.Join(dir, logdriver.DoneFile)) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// readBoth reads both streams' new lines, merged by time.
func readBoth(out, errR *streamReader) ([]executor.LogEntry, error) {
	a, err := out.read()
	if err != nil {
		return nil, err
	}
	b, err := errR.read()
	if err != nil {
		return nil, err
	}
	return merge(a, b), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
