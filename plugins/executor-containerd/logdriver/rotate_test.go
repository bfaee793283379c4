package logdriver

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	dir := "/var/lib/shoal/logs/t1"
	lim := Limits{MaxSize: 10 << 20, MaxFiles: 3}
	args := Args(dir, lim)
	if want := map[string]string{Arg: dir, ArgMaxSize: "10485760", ArgMaxFiles: "3"}; !maps.Equal(args, want) {
		t.Fatalf("Args = %v, want %v", args, want)
	}
	if got := Args(dir, Limits{}); !maps.Equal(got, map[string]string{Arg: dir}) {
		t.Errorf("Args without limits = %v, want only %s", got, Arg)
	}
	// The shim ranges over a map: every order of the pairs is the same
	// invocation.
	keys := slices.Sorted(maps.Keys(args))
	for range 20 {
		rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		argv := []string{"/usr/bin/executor-containerd"}
		for _, k := range keys {
			argv = append(argv, k, args[k])
		}
		inv, ok := parseArgs(argv)
		if !ok || !IsDriver(argv) || inv.dir != dir || inv.lim != lim || len(inv.notes) > 0 {
			t.Fatalf("parseArgs(%q) = %+v, %v; want dir %s, limits %+v, no notes", argv, inv, ok, dir, lim)
		}
	}
	// The form older plugins start drivers with: no rotation.
	old := []string{"executor-containerd", Arg, dir}
	if inv, ok := parseArgs(old); !ok || !IsDriver(old) || inv.dir != dir || inv.lim != (Limits{}) || len(inv.notes) > 0 {
		t.Errorf("parseArgs(%q) = %+v, %v; want dir %s without limits", old, inv, ok, dir)
	}
	for _, argv := range [][]string{
		{"executor-containerd"},
		{"executor-containerd", Arg},
		{"executor-containerd", Arg, ""},
		{"executor-containerd", "x", Arg, dir},
		{"executor-containerd", ArgMaxSize, "4096", ArgMaxFiles, "3"},
		{"executor-containerd.test", "-test.run", "TestX", "-test.v"},
	} {
		if IsDriver(argv) {
			t.Errorf("IsDriver(%q) = true, want false", argv)
		}
	}
	// Bad limits: the driver logs without rotating, and says why.
	for _, tc := range []struct {
		pairs []string
		note  string
	}{
		{[]string{ArgMaxSize, "4096"}, "go together"},
		{[]string{ArgMaxFiles, "3"}, "go together"},
		{[]string{ArgMaxSize, "10MiB", ArgMaxFiles, "3"}, "max-size must be a number of bytes"},
		{[]string{ArgMaxSize, "100", ArgMaxFiles, "3"}, "max-size must be at least 4096"},
		{[]string{ArgMaxSize, "4096", ArgMaxFiles, "0"}, "max-files must be at least 1"},
		{[]string{ArgMaxSize, "4096", ArgMaxFiles, "many"}, "max-files must be a number"},
	} {
		argv := append([]string{"executor-containerd", Arg, dir}, tc.pairs...)
		inv, ok := parseArgs(argv)
		if !ok || inv.dir != dir || inv.lim != (Limits{}) || len(inv.notes) != 1 || !strings.Contains(inv.notes[0], tc.note) || !strings.Contains(inv.notes[0], "not rotated") {
			t.Errorf("parseArgs(%q) = %+v, %v; want dir %s, no limits, a note saying %q and that logs are not rotated", argv, inv, ok, dir, tc.note)
		}
	}
	argv := []string{"executor-containerd", "color", "blue", Arg, dir}
	if inv, ok := parseArgs(argv); !ok || inv.dir != dir || len(inv.notes) != 1 || !strings.Contains(inv.notes[0], `"color"`) {
		t.Errorf("parseArgs(%q) = %+v, %v; want the driver, with a note on the unknown argument", argv, inv, ok)
	}
}

// driveLines runs Drive with lim, writing text to stdout in one go (so
// that CopyLines writes chunks of many lines) and errText to stderr.
func driveLines(t *testing.T, dir string, lim Limits, text, errText string) {
	t.Helper()
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Drive(dir, lim, outR, errR, func() error { return nil }) }()
	go func() { io.WriteString(errW, errText); errW.Close() }()
	io.WriteString(outW, text)
	outW.Close()
	if err := <-done; err != nil {
		t.Fatalf("Drive = %v", err)
	}
}

// numbered is n lines "line 1" ... "line n".
func numbered(from, n int) (string, []string) {
	var b strings.Builder
	var lines []string
	for i := from; i < from+n; i++ {
		l := fmt.Sprintf("line %d", i)
		lines = append(lines, l)
		b.WriteString(l + "\n")
	}
	return b.String(), lines
}

// streamFiles reads the files of a stream, oldest first, checking that
// each holds whole stamped lines.
func streamFiles(t *testing.T, dir, name string) (names []string, contents [][]string, sizes []int64) {
	t.Helper()
	paths, err := Files(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s does not end with a whole line: %q", p, b[max(0, len(b)-40):])
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l == "" && len(b) == 0 {
				continue
			}
			at, text := ParseLine([]byte(l))
			if at.IsZero() {
				t.Errorf("%s holds a line without its stamp (split across files?): %.60q", p, l)
			}
			lines = append(lines, string(text))
		}
		names = append(names, filepath.Base(p))
		contents = append(contents, lines)
		sizes = append(sizes, int64(len(b)))
	}
	return names, contents, sizes
}

func TestRotate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "task")
	lim := Limits{MaxSize: MinSize, MaxFiles: 3}
	// 80 KiB of stdout, more than one CopyLines chunk, 20 files' worth;
	// stderr stays under MaxSize.
	text, lines := numbered(1, 2000)
	errText, errLines := numbered(1, 10)
	driveLines(t, dir, lim, text, errText)

	names, contents, sizes := streamFiles(t, dir, StdoutFile)
	if want := []string{"stdout.log.2", "stdout.log.1", "stdout.log"}; !slices.Equal(names, want) {
		t.Fatalf("stdout files = %q, want %q", names, want)
	}
	lineLen := func(l string) int64 { return int64(len(TimeLayout) + 1 + len(l) + 1) }
	var kept []string
	for i, c := range contents {
		if sizes[i] > lim.MaxSize {
			t.Errorf("%s is %d bytes, past MaxSize %d", names[i], sizes[i], lim.MaxSize)
		}
		// A file was rotated only when the next line did not fit.
		if i < len(contents)-1 && sizes[i]+lineLen(contents[i+1][0]) <= lim.MaxSize {
			t.Errorf("%s (%d bytes) was rotated though its next line (%d bytes) fits", names[i], sizes[i], lineLen(contents[i+1][0]))
		}
		kept = append(kept, c...)
	}
	// The kept lines are the last ones written, in order, none lost
	// between files.
	if want := lines[len(lines)-len(kept):]; !slices.Equal(kept, want) {
		t.Errorf("stdout files hold %d lines %.80q..., want the last %d written", len(kept), kept, len(want))
	}
	if len(kept) < 2*int(lim.MaxSize)/int(lineLen(lines[len(lines)-1])) {
		t.Errorf("stdout files hold only %d lines", len(kept))
	}
	// Each stream rotates on its own.
	names, contents, _ = streamFiles(t, dir, StderrFile)
	if !slices.Equal(names, []string{StderrFile}) || !slices.Equal(contents[0], errLines) {
		t.Errorf("stderr files = %q holding %q, want only %s holding %q", names, contents, StderrFile, errLines)
	}
	if _, err := os.Stat(filepath.Join(dir, DoneFile)); err != nil {
		t.Errorf("done marker: %v", err)
	}
}

func TestRotateOneFile(t *testing.T) {
	dir := t.TempDir()
	text, lines := numbered(1, 1000)
	driveLines(t, dir, Limits{MaxSize: MinSize, MaxFiles: 1}, text, "")
	names, contents, sizes := streamFiles(t, dir, StdoutFile)
	if !slices.Equal(names, []string{StdoutFile}) {
		t.Fatalf("stdout files = %q, want only %s", names, StdoutFile)
	}
	if sizes[0] > MinSize || len(contents[0]) == 0 || !slices.Equal(contents[0], lines[len(lines)-len(contents[0]):]) {
		t.Errorf("%s = %d bytes, %d lines; want at most %d bytes of the last lines", StdoutFile, sizes[0], len(contents[0]), MinSize)
	}
}

func TestRotateLongLine(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", MinSize+100)
	driveLines(t, dir, Limits{MaxSize: MinSize, MaxFiles: 5}, "a\n"+long+"\nb\n", "")
	names, contents, _ := streamFiles(t, dir, StdoutFile)
	want := [][]string{{"a"}, {long}, {"b"}}
	if len(contents) != len(want) || !slices.Equal(contents[0], want[0]) || !slices.Equal(contents[1], want[1]) || !slices.Equal(contents[2], want[2]) {
		t.Errorf("stdout files %q hold %.40q, want a line longer than MaxSize alone in its file", names, contents)
	}
}

func TestRotateDropsStaleFiles(t *testing.T) {
	// Rotated files past MaxFiles (left by a driver with a larger limit)
	// go at the first rotation.
	dir := t.TempDir()
	for _, n := range []string{"stdout.log.1", "stdout.log.2", "stdout.log.7", "stdout.log.07", "stdout.log.x"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("2026-11-23T01:02:03.000000000Z old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text, _ := numbered(1, 300)
	driveLines(t, dir, Limits{MaxSize: MinSize, MaxFiles: 2}, text, "")
	var got []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), StdoutFile) {
			got = append(got, e.Name())
		}
	}
	// Names rotation never makes are left alone.
	if want := []string{"stdout.log", "stdout.log.07", "stdout.log.1", "stdout.log.x"}; !slices.Equal(got, want) {
		t.Errorf("stdout files = %q, want %q", got, want)
	}
}

func TestFileWriteSplitsAtLines(t *testing.T) {
	// One Write of many lines spreads over files at line boundaries.
	dir := t.TempDir()
	f, err := openFile(filepath.Join(dir, StdoutFile), Limits{MaxSize: MinSize, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("y", 999) + "\n" // 1000 bytes: 4 to a file
	p := []byte(strings.Repeat(line, 10))
	if n, err := f.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
	}
	f.Close()
	var sizes []int
	paths, _ := Files(dir, StdoutFile)
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		if !bytes.HasSuffix(b, []byte("\n")) || len(b)%len(line) != 0 {
			t.Errorf("%s splits a line", p)
		}
		sizes = append(sizes, len(b))
	}
	if want := []int{4000, 4000, 2000}; !slices.Equal(sizes, want) {
		t.Errorf("file sizes oldest first = %v, want %v", sizes, want)
	}
}
