package logdriver

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCopyLines(t *testing.T) {
	now := time.Date(2026, 11, 23, 1, 2, 3, 4, time.UTC)
	stamp := now.Format(TimeLayout) + " "
	long := strings.Repeat("x", MaxLine+10)
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"lines", "a\nbb\n\nccc\n", []string{"a", "bb", "", "ccc"}},
		{"last line without newline", "a\nb", []string{"a", "b"}},
		{"nothing", "", nil},
		{"long line split", long + "\n", []string{long[:MaxLine], long[MaxLine:]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := CopyLines(&out, strings.NewReader(tc.in), func() time.Time { return now }); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range strings.SplitAfter(out.String(), "\n") {
				if l == "" {
					continue
				}
				if !strings.HasPrefix(l, stamp) || !strings.HasSuffix(l, "\n") {
					t.Fatalf("line %q lacks its stamp %q or newline", l, stamp)
				}
				at, text := ParseLine([]byte(strings.TrimSuffix(l, "\n")))
				if !at.Equal(now) {
					t.Errorf("ParseLine time = %v, want %v", at, now)
				}
				got = append(got, string(text))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("CopyLines(%.20q) = %d lines %.60q, want %d lines %.60q", tc.in, len(got), got, len(tc.want), tc.want)
			}
		})
	}
}

func TestParseLineWithoutStamp(t *testing.T) {
	at, text := ParseLine([]byte("no stamp here"))
	if !at.IsZero() || string(text) != "no stamp here" {
		t.Errorf("ParseLine = %v, %q; want a zero time and the whole line", at, text)
	}
}

func TestDrive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "task")
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	done := make(chan error, 1)
	readied := false
	go func() { done <- Drive(dir, Limits{}, outR, errR, func() error { readied = true; return nil }) }()
	io.WriteString(outW, "o1\no2\n")
	io.WriteString(errW, "e1\n")
	outW.Close()
	if _, err := os.Stat(filepath.Join(dir, DoneFile)); err == nil {
		t.Error("done marker before both streams ended")
	}
	errW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !readied {
		t.Error("ready was not called")
	}
	for file, want := range map[string][]string{StdoutFile: {"o1", "o2"}, StderrFile: {"e1"}} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			_, text := ParseLine([]byte(l))
			got = append(got, string(text))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, DoneFile)); err != nil {
		t.Errorf("done marker: %v", err)
	}
}
