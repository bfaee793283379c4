// Package logdriver is the logging binary of the containerd executor: the
// containerd shim starts it beside each task (containerd's "binary://"
// stdio) with the task's stdout and stderr as pipes, and it writes them to
// the task's log directory. It is a child of the shim, not of the plugin,
// so a task's logs keep flowing while the plugin is down or restarting.
//
// The plugin's own executable doubles as the driver: its main calls Main
// when IsDriver(os.Args). The plugin starts it with Args, which the shim
// turns into key and value pairs in any order ("log-driver DIR max-size
// BYTES max-files N"). This package imports little, so that it starts fast
// for every task.
//
// A log directory holds the files of each stream (StdoutFile, StderrFile),
// each line written as "TIMESTAMP LINE\n" with a fixed-width UTC timestamp
// (TimeLayout) of when the driver read it, and the marker DoneFile, created
// once both streams have ended and every line is on disk.
//
// With Limits, a stream's file is rotated before a line would take it past
// MaxSize: stdout.log becomes stdout.log.1, stdout.log.1 becomes
// stdout.log.2 and so on, the files past MaxFiles are deleted, and a new
// stdout.log is created. The lines of a stream are thus, oldest first, in
// stdout.log.N ... stdout.log.1 then stdout.log (Files lists them); a line
// is never split across files. Without Limits (a driver started by an older
// plugin with only "log-driver DIR") the files grow without bound.
package logdriver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/runtime/v2/logging"
)

// The log directory's layout and format.
const (
	// Arg is the key of the driver's argument naming the task's log
	// directory; every driver has it.
	Arg = "log-driver"
	// ArgMaxSize and ArgMaxFiles are the keys of Limits in the driver's
	// arguments, as decimal integers.
	ArgMaxSize  = "max-size"
	ArgMaxFiles = "max-files"
	StdoutFile  = "stdout.log"
	StderrFile  = "stderr.log"
	DoneFile    = "done"
	TimeLayout  = "2006-01-02T15:04:05.000000000Z"
	// MaxLine is the longest line kept whole; longer ones are split, as
	// Docker splits at 16 KiB, so that one endless line cannot exhaust
	// memory in the driver or in a reader.
	MaxLine = 64 << 10
	// MinSize is the smallest Limits.MaxSize: below it a chatty task would
	// rotate on nearly every line.
	MinSize = 4 << 10
)

// flushSize is how much CopyLines buffers at most before writing, when its
// input keeps coming.
const flushSize = 64 << 10

// Limits bound the files of each stream. The zero Limits rotates nothing.
type Limits struct {
	// MaxSize is the size in bytes a stream's file does not grow past,
	// unless by a single line longer than MaxSize, which gets a file of its
	// own. At least MinSize.
	MaxSize int64
	// MaxFiles is how many files of a stream are kept, the current one
	// included: at most MaxFiles-1 rotated ones. With 1, a full file is
	// deleted and a new one started. At least 1.
	MaxFiles int
}

// validate says why l cannot be used.
func (l Limits) validate() error {
	if l.MaxSize < MinSize {
		return fmt.Errorf("%s must be at least %d, got %d", ArgMaxSize, MinSize, l.MaxSize)
	}
	if l.MaxFiles < 1 {
		return fmt.Errorf("%s must be at least 1, got %d", ArgMaxFiles, l.MaxFiles)
	}
	return nil
}

// Args are the arguments the driver of a task logging into dir is started
// with, for containerd's cio.BinaryIO. Limits l apply when MaxSize > 0.
func Args(dir string, l Limits) map[string]string {
	args := map[string]string{Arg: dir}
	if l.MaxSize > 0 {
		args[ArgMaxSize] = strconv.FormatInt(l.MaxSize, 10)
		args[ArgMaxFiles] = strconv.Itoa(l.MaxFiles)
	}
	return args
}

// invocation is what the driver's arguments ask for.
type invocation struct {
	dir string
	lim Limits
	// notes say which arguments were ignored, and why.
	notes []string
}

// parseArgs reads args (os.Args) as the driver's: key and value pairs
// after the program name, in any order (the shim ranges over a map), one of
// them Arg. ok is false when args are not a driver's. Bad limits are noted
// and dropped: a driver that rotates nothing loses no lines, one that
// refused to start would lose them all.
func parseArgs(args []string) (inv invocation, ok bool) {
	if len(args) < 3 || len(args)%2 == 0 {
		return inv, false
	}
	kv := make(map[string]string, len(args)/2)
	for i := 1; i < len(args); i += 2 {
		kv[args[i]] = args[i+1]
	}
	inv.dir, ok = kv[Arg]
	if !ok || inv.dir == "" {
		return invocation{}, false
	}
	for k := range kv {
		if k != Arg && k != ArgMaxSize && k != ArgMaxFiles {
			// A newer plugin's argument: better logs without it than none.
			inv.notes = append(inv.notes, fmt.Sprintf("ignoring the unknown argument %q", k))
		}
	}
	size, hasSize := kv[ArgMaxSize]
	files, hasFiles := kv[ArgMaxFiles]
	if !hasSize && !hasFiles {
		return inv, true
	}
	var err error
	if !hasSize || !hasFiles {
		err = fmt.Errorf("%s and %s go together", ArgMaxSize, ArgMaxFiles)
	} else {
		var l Limits
		var serr, ferr error
		l.MaxSize, serr = strconv.ParseInt(size, 10, 64)
		l.MaxFiles, ferr = strconv.Atoi(files)
		switch {
		case serr != nil:
			err = fmt.Errorf("%s must be a number of bytes, got %q", ArgMaxSize, size)
		case ferr != nil:
			err = fmt.Errorf("%s must be a number of files, got %q", ArgMaxFiles, files)
		default:
			err = l.validate()
		}
		if err == nil {
			inv.lim = l
		}
	}
	if err != nil {
		inv.notes = append(inv.notes, fmt.Sprintf("%v: logs are not rotated", err))
	}
	return inv, true
}

// IsDriver reports whether args (os.Args) start this process as a task's
// logging binary: "log-driver DIR" as written by older plugins, or any
// order of the pairs of Args.
func IsDriver(args []string) bool {
	_, ok := parseArgs(args)
	return ok
}

// Main runs this process as a task's logging binary, with the directory
// and limits of its arguments (see IsDriver). It does not return: it exits
// once both streams have ended.
func Main() {
	inv, ok := parseArgs(os.Args)
	if !ok {
		fmt.Fprintln(os.Stderr, "usage: log-driver DIR [max-size BYTES max-files N] (started by the containerd shim)")
		os.Exit(2)
	}
	for _, n := range inv.notes {
		fmt.Fprintln(os.Stderr, "log driver:", n)
	}
	logging.Run(func(_ context.Context, cfg *logging.Config, ready func() error) error {
		return Drive(inv.dir, inv.lim, cfg.Stdout, cfg.Stderr, ready)
	})
}

// Drive copies both streams into their files in dir until each ends, then
// creates DoneFile. Each stream's files are rotated by l on their own.
// ready is called once the files are open. The shim sends SIGTERM when it
// closes the task's IO; by then the streams are ending, so the driver keeps
// copying until EOF rather than losing lines.
func Drive(dir string, l Limits, stdout, stderr io.Reader, ready func() error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if l != (Limits{}) {
		if err := l.validate(); err != nil {
			return err
		}
	}
	outF, err := openFile(filepath.Join(dir, StdoutFile), l)
	if err != nil {
		return err
	}
	defer outF.Close()
	errF, err := openFile(filepath.Join(dir, StderrFile), l)
	if err != nil {
		return err
	}
	defer errF.Close()
	if err := ready(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []struct {
		r io.Reader
		w io.Writer
	}{{stdout, outF}, {stderr, errF}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = CopyLines(s.w, s.r, time.Now)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, DoneFile), nil, 0o600)
}

// CopyLines writes each line of r to w with its time stamp, writing
// whenever r has nothing more buffered so lines reach the file promptly.
// Every Write to w holds whole lines, so that w may start a new file
// between any two. A last line without a newline is written as a line.
func CopyLines(w io.Writer, r io.Reader, now func() time.Time) error {
	br := bufio.NewReaderSize(r, MaxLine)
	buf := make([]byte, 0, flushSize+len(TimeLayout)+MaxLine+2)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			buf = now().UTC().AppendFormat(buf, TimeLayout)
			buf = append(buf, ' ')
			buf = append(buf, line...)
			buf = append(buf, '\n')
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		}
		if len(buf) > 0 && (err != nil || br.Buffered() == 0 || len(buf) >= flushSize) {
			if _, werr := w.Write(buf); werr != nil {
				return werr
			}
			buf = buf[:0]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// file is a stream's current file, rotated by its Limits. Each Write must
// hold whole lines (CopyLines writes so): file rotates between lines only.
type file struct {
	path string
	lim  Limits
	f    *os.File
	size int64 // of f
}

func openFile(path string, l Limits) (*file, error) {
	f := &file{path: path, lim: l}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// open opens (or creates) the file at f.path for appending.
func (f *file) open() error {
	fd, err := os.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return err
	}
	f.f, f.size = fd, st.Size()
	return nil
}

func (f *file) Close() error { return f.f.Close() }

func (f *file) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := len(p)
		if f.lim.MaxSize > 0 {
			n = fitLines(p, f.lim.MaxSize-f.size)
			if n == 0 && f.size > 0 {
				f.rotate()
				continue
			}
			if n == 0 {
				// A line longer than MaxSize: alone in a new file.
				n = len(p)
				if i := bytes.IndexByte(p, '\n'); i >= 0 {
					n = i + 1
				}
			}
		}
		m, err := f.f.Write(p[:n])
		written += m
		f.size += int64(m)
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// fitLines is the length of the longest run of whole lines at the start of
// p that fits in room bytes.
func fitLines(p []byte, room int64) int {
	if int64(len(p)) <= room {
		return len(p)
	}
	if room <= 0 {
		return 0
	}
	return bytes.LastIndexByte(p[:room], '\n') + 1
}

// rotate starts a new file, shifting the rotated ones. The old file is
// renamed while still open and closed only once the new one exists, so a
// failure leaves the stream writing to a file; it then stops rotating (and
// says so) rather than fail every write after.
func (f *file) rotate() {
	if err := shift(f.path, f.lim.MaxFiles-1); err != nil {
		f.stopRotating(err)
		return
	}
	old := f.f
	if err := f.open(); err != nil {
		f.stopRotating(err)
		return
	}
	old.Close()
}

func (f *file) stopRotating(err error) {
	fmt.Fprintf(os.Stderr, "log driver: rotate %s: %v: logs are no longer rotated\n", f.path, err)
	f.lim = Limits{}
}

// shift moves path to path.1 and each path.k to path.k+1, deleting what
// would be past keep rotated files; with keep 0 it deletes path. Oldest
// first, so that no rename overwrites a file still to be moved.
func shift(path string, keep int) error {
	nums, err := rotated(filepath.Dir(path), filepath.Base(path))
	if err != nil {
		return err
	}
	for _, k := range slices.Backward(nums) {
		name := rotatedName(path, k)
		if k >= keep {
			err = os.Remove(name)
		} else {
			err = os.Rename(name, rotatedName(path, k+1))
		}
		if err != nil {
			return err
		}
	}
	if keep == 0 {
		return os.Remove(path)
	}
	return os.Rename(path, rotatedName(path, 1))
}

// rotatedName is the name of the kth newest rotated file of path.
func rotatedName(path string, k int) string { return path + "." + strconv.Itoa(k) }

// rotated returns the numbers of name's rotated files in dir, ascending
// (newest first). A directory not yet made has none.
func rotated(dir, name string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), name+".")
		if !ok {
			continue
		}
		// Only the names rotatedName makes: no sign, no leading zero.
		if k, err := strconv.Atoi(s); err == nil && k > 0 && strconv.Itoa(k) == s {
			nums = append(nums, k)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// Files returns the paths of the files of stream name (StdoutFile,
// StderrFile) in dir, oldest first: its rotated files, then the current
// one if it exists. The driver may rotate meanwhile.
func Files(dir, name string) ([]string, error) {
	nums, err := rotated(dir, name)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	var out []string
	for _, k := range slices.Backward(nums) {
		out = append(out, rotatedName(path, k))
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return out, nil
}

// ParseLine splits a log file line (without its newline) into its time and
// text. A line without a valid stamp is returned whole, with a zero time.
func ParseLine(b []byte) (time.Time, []byte) {
	if len(b) > len(TimeLayout) && b[len(TimeLayout)] == ' ' {
		if t, err := time.Parse(TimeLayout, string(b[:len(TimeLayout)])); err == nil {
			return t, b[len(TimeLayout)+1:]
		}
	}
	return time.Time{}, b
}
