package ctrexec

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/plugins/executor-containerd/logdriver"
	"github.com/shoalhq/shoal/sdk/executor"
)

// logLines is lines "line from" ... "line to-1" as the driver writes them.
func logLines(from, to int) string {
	var b strings.Builder
	t0 := time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC)
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s line %d\n", t0.Add(time.Duration(i)*time.Millisecond).Format(logdriver.TimeLayout), i)
	}
	return b.String()
}

// want is "line from" ... "line to-1".
func want(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "line "+strconv.Itoa(i))
	}
	return out
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.WriteString(f, text); err != nil {
		t.Fatal(err)
	}
}

// rotatedDir writes lines 0 to 40 over stdout.log.3 ... stdout.log, ten a
// file, and a stray stdout.log.x that is not one of them.
func rotatedDir(t *testing.T) string {
	dir := t.TempDir()
	for i, name := range []string{"stdout.log.3", "stdout.log.2", "stdout.log.1", "stdout.log"} {
		appendFile(t, filepath.Join(dir, name), logLines(10*i, 10*i+10))
	}
	appendFile(t, filepath.Join(dir, "stdout.log.x"), logLines(100, 101))
	return dir
}

func texts(entries []executor.LogEntry) []string {
	out := []string{}
	for _, en := range entries {
		out = append(out, string(en.Line))
	}
	return out
}

// readAll reads what r has, failing the test on an error.
func readAll(t *testing.T, r *streamReader) []string {
	t.Helper()
	entries, err := r.read()
	if err != nil {
		t.Fatalf("read = %v", err)
	}
	return texts(entries)
}

func TestStreamReaderRotatedFiles(t *testing.T) {
	dir := rotatedDir(t)
	// A partial last line is not a line yet.
	appendFile(t, filepath.Join(dir, "stdout.log"), "2026-11-23T01:00:00.000000000Z part")
	r := &streamReader{dir: dir, name: logdriver.StdoutFile, stream: executor.Stdout}
	defer r.close()
	if got := readAll(t, r); !slices.Equal(got, want(0, 40)) {
		t.Errorf("full read = %q, want lines 0 to 39, oldest file first", got)
	}

	for _, n := range []int{0, 1, 10, 11, 25, 40, 50} {
		r := &streamReader{dir: dir, name: logdriver.StdoutFile, stream: executor.Stdout}
		if err := r.seekTail(n); err != nil {
			t.Fatal(err)
		}
		got := readAll(t, r)
		r.close()
		if w := want(max(0, 40-n), 40); !slices.Equal(got, w) {
			t.Errorf("tail %d = %q, want %q", n, got, w)
		}
	}

	// No files yet: nothing, and no error.
	r = &streamReader{dir: filepath.Join(dir, "none"), name: logdriver.StdoutFile, stream: executor.Stdout}
	if err := r.seekTail(5); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); len(got) != 0 {
		t.Errorf("read of a stream without files = %q", got)
	}
}

// rotateByHand does what the driver does at rotation, keeping keep
// rotated files.
func rotateByHand(t *testing.T, dir string, keep int) {
	t.Helper()
	path := filepath.Join(dir, logdriver.StdoutFile)
	for k := 10; k >= 1; k-- {
		name := path + "." + strconv.Itoa(k)
		if _, err := os.Stat(name); err != nil {
			continue
		}
		if k >= keep {
			os.Remove(name)
		} else if err := os.Rename(name, path+"."+strconv.Itoa(k+1)); err != nil {
			t.Fatal(err)
		}
	}
	if keep == 0 {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
}

func TestStreamReaderFollowsRotation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		keep      int // rotated files kept: max_files - 1
		rotations int // between two reads
		lost      bool
	}{
		{"one rotation", 2, 1, false},
		{"as many rotations as files kept", 2, 2, false},
		{"max_files rotations", 2, 3, false},
		{"max_files 1", 0, 1, false},
		{"more rotations than max_files", 2, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, logdriver.StdoutFile)
			appendFile(t, path, logLines(0, 5))
			r := &streamReader{dir: dir, name: logdriver.StdoutFile, stream: executor.Stdout}
			defer r.close()
			if err := r.seekTail(2); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, r); !slices.Equal(got, want(3, 5)) {
				t.Fatalf("tail 2 = %q, want lines 3 and 4", got)
			}
			// The file is written to after the read, then rotated:
			// those lines come first, then the new files' from their
			// start.
			n := 5
			for range tc.rotations {
				appendFile(t, path, logLines(n, n+3))
				rotateByHand(t, dir, tc.keep)
				n += 3
			}
			appendFile(t, path, logLines(n, n+3))
			n += 3
			got := readAll(t, r)
			if !tc.lost && !slices.Equal(got, want(5, n)) {
				t.Errorf("read after %d rotations = %q, want lines 5 to %d", tc.rotations, got, n-1)
			}
			if tc.lost {
				// Every kept file, after the lines of the file held.
				w := append(want(5, 8), want(n-3*(tc.keep+1), n)...)
				if !slices.Equal(got, w) {
					t.Errorf("read after %d rotations = %q, want %q", tc.rotations, got, w)
				}
			}
			// And on from the new current file.
			appendFile(t, path, logLines(n, n+2))
			if got := readAll(t, r); !slices.Equal(got, want(n, n+2)) {
				t.Errorf("read after the rotations = %q, want lines %d and %d", got, n, n+1)
			}
		})
	}
}

func TestStreamReaderBetweenRenameAndCreate(t *testing.T) {
	// The driver renamed the current file and has not created the new
	// one: the reader finishes the old one and waits for the new.
	dir := t.TempDir()
	path := filepath.Join(dir, logdriver.StdoutFile)
	appendFile(t, path, logLines(0, 3))
	r := &streamReader{dir: dir, name: logdriver.StdoutFile, stream: executor.Stdout}
	defer r.close()
	readAll(t, r)
	appendFile(t, path, logLines(3, 5))
	rotateByHand(t, dir, 2)
	if got := readAll(t, r); !slices.Equal(got, want(3, 5)) {
		t.Errorf("read while the current file is missing = %q, want lines 3 and 4", got)
	}
	appendFile(t, path, logLines(5, 7))
	if got := readAll(t, r); !slices.Equal(got, want(5, 7)) {
		t.Errorf("read once it exists = %q, want lines 5 and 6", got)
	}
}

func TestStreamReaderFollowsDriver(t *testing.T) {
	// The real driver rotating while a reader polls, as Logs with Follow
	// does: every line, in order, once.
	dir := t.TempDir()
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	errW.Close()
	done := make(chan error, 1)
	go func() {
		done <- logdriver.Drive(dir, logdriver.Limits{MaxSize: logdriver.MinSize, MaxFiles: 3}, outR, errR, func() error { return nil })
	}()
	r := &streamReader{dir: dir, name: logdriver.StdoutFile, stream: executor.Stdout}
	defer r.close()
	var got []string
	const batches, perBatch = 60, 40 // about 1.6 KiB a batch: 23 rotations
	for b := range batches {
		var sb strings.Builder
		for i := b * perBatch; i < (b+1)*perBatch; i++ {
			fmt.Fprintf(&sb, "line %d\n", i)
		}
		io.WriteString(outW, sb.String())
		// Read until the batch is in, as Logs polls.
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < (b+1)*perBatch {
			if time.Now().After(deadline) {
				t.Fatalf("batch %d: read %d lines in 10s, want %d", b, len(got), (b+1)*perBatch)
			}
			got = append(got, readAll(t, r)...)
			time.Sleep(time.Millisecond)
		}
	}
	outW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got = append(got, readAll(t, r)...)
	if w := want(0, batches*perBatch); !slices.Equal(got, w) {
		t.Errorf("followed %d lines, want %d: first difference at %d", len(got), len(w), firstDiff(got, w))
	}
	files, _ := logdriver.Files(dir, logdriver.StdoutFile)
	if len(files) != 3 {
		t.Errorf("driver left %q, want 3 files", files)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestConfigLogLimits(t *testing.T) {
	for _, tc := range []struct {
		size  string
		files int
		want  logdriver.Limits
	}{
		{"", 3, logdriver.Limits{MaxSize: 10 << 20, MaxFiles: 3}},
		{"0", 1, logdriver.Limits{MaxSize: 10 << 20, MaxFiles: 1}},
		{"4096", 100, logdriver.Limits{MaxSize: 4096, MaxFiles: 100}},
		{"4096B", 2, logdriver.Limits{MaxSize: 4096, MaxFiles: 2}},
		{"512KiB", 3, logdriver.Limits{MaxSize: 512 << 10, MaxFiles: 3}},
		{"10MiB", 3, logdriver.Limits{MaxSize: 10 << 20, MaxFiles: 3}},
		{"2GiB", 3, logdriver.Limits{MaxSize: 2 << 30, MaxFiles: 3}},
		{"5KB", 3, logdriver.Limits{MaxSize: 5000, MaxFiles: 3}},
		{"1MB", 3, logdriver.Limits{MaxSize: 1e6, MaxFiles: 3}},
		{"1GB", 3, logdriver.Limits{MaxSize: 1e9, MaxFiles: 3}},
	} {
		c := DefaultConfig()
		c.LogMaxSize, c.LogMaxFiles = tc.size, tc.files
		if err := c.validate(); err != nil {
			t.Errorf("log_max_size %q, log_max_files %d: %v", tc.size, tc.files, err)
			continue
		}
		if got := c.logLimits(); got != tc.want {
			t.Errorf("log_max_size %q, log_max_files %d: limits %+v, want %+v", tc.size, tc.files, got, tc.want)
		}
	}
	if got := DefaultConfig().logLimits(); got != (logdriver.Limits{MaxSize: 10 << 20, MaxFiles: 3}) {
		t.Errorf("default limits = %+v, want 10MiB and 3 files", got)
	}
	for _, tc := range []struct {
		size  string
		files int
		field string
		msg   string
	}{
		{"10mb", 3, "config.log_max_size", `such as "10MiB", got "10mb"`},
		{"10 MiB", 3, "config.log_max_size", "got"},
		{"1.5GiB", 3, "config.log_max_size", "whole number"},
		{"MiB", 3, "config.log_max_size", "whole number"},
		{"-1", 3, "config.log_max_size", "whole number"},
		{"4095", 3, "config.log_max_size", "at least 4KiB"},
		{"4KB", 3, "config.log_max_size", "at least 4KiB"},
		{"99999999999GiB", 3, "config.log_max_size", "at most"},
		{"99999999999999999999", 3, "config.log_max_size", "whole number"},
		{"10MiB", 0, "config.log_max_files", "must be 1 to 100, got 0"},
		{"10MiB", -2, "config.log_max_files", "must be 1 to 100"},
		{"10MiB", 101, "config.log_max_files", "must be 1 to 100"},
	} {
		c := DefaultConfig()
		c.LogMaxSize, c.LogMaxFiles = tc.size, tc.files
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("log_max_size %q, log_max_files %d: %v, want an error naming %s saying %q", tc.size, tc.files, err, tc.field, tc.msg)
		}
	}
}

func TestLogsRotate(t *testing.T) {
	// Two bursts of 12 KiB of stdout, with 4 KiB files, 5 kept: Follow,
	// reading between the bursts, gets every line; the files keep the last
	// 20 KiB, and Logs afterwards returns just those.
	e := newExecutor(t, "", "log_max_size = \"4KiB\"\nlog_max_files = 5\n")
	task := newTask(t, "outn:300", "errn:20", "sleep:1s", "outn:300", "exit:0")
	if err := e.Prepare(ctxT(t), task, nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Remove(context.Background(), task.Id) })
	followed := make(chan []string, 1)
	go func() {
		var lines []string
		err := e.Logs(ctxT(t), task.Id, executor.LogOptions{Tail: -1, Follow: true}, func(en executor.LogEntry) error {
			lines = append(lines, en.Stream.String()+": "+string(en.Line))
			return nil
		})
		if err != nil {
			lines = append(lines, "error: "+err.Error())
		}
		followed <- lines
	}()
	if err := e.Start(ctxT(t), task.Id); err != nil {
		t.Fatal(err)
	}
	var outn []string
	for i := 1; i <= 300; i++ {
		outn = append(outn, fmt.Sprintf("out %d", i))
	}
	all := append(slices.Clone(outn), outn...)
	select {
	case lines := <-followed:
		if got := streamLines(lines, "stdout"); !slices.Equal(got, all) {
			t.Errorf("followed %d stdout lines, want all %d (first difference at %d)", len(got), len(all), firstDiff(got, all))
		}
		if got := streamLines(lines, "stderr"); len(got) != 20 {
			t.Errorf("followed %d stderr lines, want 20", len(got))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Logs with Follow did not return within 20s of the task's exit")
	}
	if st := wait(t, e, task.Id); st.ExitCode != 0 {
		t.Fatalf("exit = %d", st.ExitCode)
	}

	e.mu.RLock()
	dir := e.taskLogDir(task.Id)
	e.mu.RUnlock()
	files, err := logdriver.Files(dir, logdriver.StdoutFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 {
		t.Errorf("stdout files = %q, want 5", files)
	}
	var kept int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 4<<10 {
			t.Errorf("%s is %d bytes, past log_max_size", filepath.Base(f), st.Size())
		}
		kept += st.Size()
	}
	got := logs(t, e, task.Id, executor.LogOptions{Tail: -1})
	out := streamLines(got, "stdout")
	if len(out) < 400 || !slices.Equal(out, all[len(all)-len(out):]) {
		t.Errorf("Logs = %d stdout lines (of %d bytes), want the last ones, at least 400", len(out), kept)
	}
	if errs := streamLines(got, "stderr"); len(errs) != 20 {
		t.Errorf("Logs = %d stderr lines, want 20: stderr rotates on its own", len(errs))
	}
	if tail := logs(t, e, task.Id, executor.LogOptions{Tail: 150}); !slices.Equal(tail, got[len(got)-150:]) {
		t.Errorf("Tail 150 = %d lines, want the last 150 of Logs", len(tail))
	}
}

func TestLogDriverBeside(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "executor-containerd")
	if got := logDriverBeside(exe); got != exe {
		t.Errorf("without the driver beside it: %q, want the plugin itself %q", got, exe)
	}
	sibling := filepath.Join(dir, LogDriverName)
	if err := os.WriteFile(sibling, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := logDriverBeside(exe); got != exe {
		t.Errorf("with a driver that is not executable: %q, want %q", got, exe)
	}
	if err := os.Chmod(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := logDriverBeside(exe); got != sibling {
		t.Errorf("with the driver beside it: %q, want %q", got, sibling)
	}
}
