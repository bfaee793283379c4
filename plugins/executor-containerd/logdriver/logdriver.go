// Package logdriver is the logging binary of the containerd executor: the
// containerd shim starts it beside each task (containerd's "binary://"
// stdio) with the task's stdout and stderr as pipes, and it writes them to
// the task's log directory. It is a child of the shim, not of the plugin,
// so a task's logs keep flowing while the plugin is down or restarting.
//
// The plugin's own executable doubles as the driver: its main calls Main
// when IsDriver(os.Args). This package imports little, so that it starts
// fast for every task.
//
// A log directory holds one file per stream (StdoutFile, StderrFile), each
// line written as "TIMESTAMP LINE\n" with a fixed-width UTC timestamp
// (TimeLayout) of when the driver read it, and the marker DoneFile, created
// once both streams have ended and every line is on disk.
package logdriver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/runtime/v2/logging"
)

// The log directory's layout and format.
const (
	// Arg is the first argument the driver is started with; the second is
	// the task's log directory.
	Arg        = "log-driver"
	StdoutFile = "stdout.log"
	StderrFile = "stderr.log"
	DoneFile   = "done"
	TimeLayout = "2006-01-02T15:04:05.000000000Z"
	// MaxLine is the longest line kept whole; longer ones are split, as
	// Docker splits at 16 KiB, so that one endless line cannot exhaust
	// memory in the driver or in a reader.
	MaxLine = 64 << 10
)

// IsDriver reports whether args (os.Args) start this process as a task's
// logging binary.
func IsDriver(args []string) bool { return len(args) == 3 && args[1] == Arg }

// Main runs this process as a task's logging binary, writing to the
// directory named by os.Args[2]. It does not return: it exits once both
// streams have ended.
func Main() {
	dir := os.Args[2]
	logging.Run(func(_ context.Context, cfg *logging.Config, ready func() error) error {
		return Drive(dir, cfg.Stdout, cfg.Stderr, ready)
	})
}

// Drive copies both streams into their files in dir until each ends, then
// creates DoneFile. ready is called once the files are open. The shim
// sends SIGTERM when it closes the task's IO; by then the streams are
// ending, so the driver keeps copying until EOF rather than losing lines.
func Drive(dir string, stdout, stderr io.Reader, ready func() error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	outF, err := os.OpenFile(filepath.Join(dir, StdoutFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer outF.Close()
	errF, err := os.OpenFile(filepath.Join(dir, StderrFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
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

// CopyLines writes each line of r to w with its time stamp, flushing
// whenever r has nothing more buffered so lines reach the file promptly.
// A last line without a newline is written as a line.
func CopyLines(w io.Writer, r io.Reader, now func() time.Time) error {
	br := bufio.NewReaderSize(r, MaxLine)
	bw := bufio.NewWriterSize(w, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			bw.WriteString(now().UTC().Format(TimeLayout))
			bw.WriteByte(' ')
			bw.Write(line)
			bw.WriteByte('\n')
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		}
		if err != nil || br.Buffered() == 0 {
			if ferr := bw.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
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
