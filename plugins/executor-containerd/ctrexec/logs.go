package ctrexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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

// streamReader reads one stream's files (see package logdriver): its
// rotated files oldest first, then its current file, which it follows
// across rotations. With Follow, lines are lost only if the stream rotated
// more than max_files times between two reads (followPoll): the file read
// last and every file written since were deleted then.
type streamReader struct {
	dir    string
	name   string // logdriver.StdoutFile or StderrFile
	stream executor.LogStream
	// f is the file read last, up to its offset: the current file, or one
	// rotated since. Nil until a read finds the stream's files.
	f *os.File
	// next are the files newer than f, oldest first, not yet read: the
	// rest of the set f was opened with.
	next    []*os.File
	partial []byte // f's last line, still without its newline
}

// path is the stream's current file.
func (s *streamReader) path() string { return filepath.Join(s.dir, s.name) }

// read returns the complete lines added since the last call: the rest of
// f, then the files that followed it, switching to each once the writer
// is done with the one before.
func (s *streamReader) read() ([]executor.LogEntry, error) {
	if s.f == nil {
		if err := s.seekTail(-1); err != nil || s.f == nil {
			return nil, err
		}
	}
	var out []executor.LogEntry
	for {
		var err error
		if len(s.next) == 0 {
			if s.next, err = s.newer(); err != nil {
				return out, err
			}
		}
		// Files are rotated after their last write: had f been rotated
		// when newer looked, this drain reads it to its end.
		if out, err = s.drain(out); err != nil {
			return out, err
		}
		if len(s.next) == 0 {
			return out, nil
		}
		if len(s.partial) > 0 {
			// A rotated file ends with a whole line, unless its driver
			// died mid-line.
			out = append(out, parseLine(s.partial, s.stream))
			s.partial = nil
		}
		s.f.Close()
		s.f, s.next = s.next[0], s.next[1:]
	}
}

// drain appends the complete lines of f up to its end to out.
func (s *streamReader) drain(out []executor.LogEntry) ([]executor.LogEntry, error) {
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

// newer opens the files written after f, oldest first: none while f is
// still the current file.
func (s *streamReader) newer() ([]*os.File, error) {
	cur, err := s.f.Stat()
	if err != nil {
		return nil, err
	}
	// The common case, one stat: f is still the current file.
	if st, err := os.Stat(s.path()); err == nil && os.SameFile(st, cur) {
		return nil, nil
	}
	files, err := openStream(s.dir, s.name)
	if err != nil {
		return nil, err
	}
	// f, if still kept, is among files; if it was deleted, so were the
	// files before it, and every file kept is newer.
	from := 0
	for i, f := range files {
		if st, err := f.Stat(); err == nil && os.SameFile(st, cur) {
			from = i + 1
			break
		}
	}
	closeFiles(files[:from])
	return files[from:], nil
}

// seekTail opens the stream's files and places the reader at the start of
// their last n complete lines (all when n < 0), reading backwards from the
// end of the newest file.
func (s *streamReader) seekTail(n int) error {
	files, err := openStream(s.dir, s.name)
	if err != nil || len(files) == 0 {
		return err
	}
	from, offset := 0, int64(0)
	if n >= 0 {
		from, offset, err = tailStart(files, n)
		if err != nil {
			closeFiles(files)
			return err
		}
	}
	if _, err := files[from].Seek(offset, io.SeekStart); err != nil {
		closeFiles(files)
		return err
	}
	closeFiles(files[:from])
	s.f, s.next = files[from], files[from+1:]
	return nil
}

// tailStart finds where the last n complete lines of files begin: the
// offset after the (n+1)th newline from the end, since every complete line
// after it is one of the last n.
func tailStart(files []*os.File, n int) (int, int64, error) {
	buf := make([]byte, 64<<10)
	newlines := 0
	for j := len(files) - 1; j >= 0; j-- {
		st, err := files[j].Stat()
		if err != nil {
			return 0, 0, err
		}
		for pos := st.Size(); pos > 0; {
			size := min(int64(len(buf)), pos)
			pos -= size
			if _, err := files[j].ReadAt(buf[:size], pos); err != nil {
				return 0, 0, err
			}
			for i := size - 1; i >= 0; i-- {
				if buf[i] != '\n' {
					continue
				}
				if newlines++; newlines == n+1 {
					return j, pos + i + 1, nil
				}
			}
		}
	}
	return 0, 0, nil
}

// openStreamAttempts bounds how often openStream lists a stream's files
// again; only a stream rotating faster than its files open needs more.
const openStreamAttempts = 10

// openStream opens the files of stream name in dir, oldest first. The
// driver may rotate meanwhile, so the set is taken again until listing the
// directory once more finds the same files. Should it keep changing, the
// last set is used: opened oldest name first, its files are still in the
// order written, with perhaps a gap.
func openStream(dir, name string) ([]*os.File, error) {
	for attempt := 1; ; attempt++ {
		paths, err := logdriver.Files(dir, name)
		if err != nil {
			return nil, err
		}
		files := make([]*os.File, 0, len(paths))
		complete := true
		for _, p := range paths {
			f, err := os.Open(p)
			if errors.Is(err, os.ErrNotExist) {
				complete = false // rotated away since the listing
				continue
			}
			if err != nil {
				closeFiles(files)
				return nil, err
			}
			files = append(files, f)
		}
		if complete {
			if complete, err = sameFiles(dir, name, paths, files); err != nil {
				closeFiles(files)
				return nil, err
			}
		}
		if complete || attempt == openStreamAttempts {
			return files, nil
		}
		closeFiles(files)
	}
}

// sameFiles reports whether the stream's files are still paths, each the
// file of files opened at it.
func sameFiles(dir, name string, paths []string, files []*os.File) (bool, error) {
	again, err := logdriver.Files(dir, name)
	if err != nil || !slices.Equal(again, paths) {
		return false, err
	}
	for i, p := range paths {
		a, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		b, err := files[i].Stat()
		if err != nil {
			return false, err
		}
		if !os.SameFile(a, b) {
			return false, nil
		}
	}
	return true, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func (s *streamReader) close() {
	if s.f != nil {
		s.f.Close()
	}
	closeFiles(s.next)
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
// its order, from the files its log driver kept (rotated ones first); with
// Follow, then new lines until the task's process has exited and every
// line is sent.
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
	out := &streamReader{dir: dir, name: logdriver.StdoutFile, stream: executor.Stdout}
	errR := &streamReader{dir: dir, name: logdriver.StderrFile, stream: executor.Stderr}
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
	// start each stream there rather than reading its files whole.
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
