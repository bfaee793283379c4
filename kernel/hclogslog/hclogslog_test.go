package hclogslog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// recorder is a slog.Handler that keeps what it is given, rendered as
// "LEVEL msg k=v k=v" (attributes in the order logged).
type recorder struct {
	min slog.Level

	mu    sync.Mutex
	lines []string
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.min }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *recorder) WithGroup(string) slog.Handler                { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value.Any())
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, b.String())
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		min  slog.Level
		log  func(l hclog.Logger)
		want []string
	}{
		{
			name: "levels and fields",
			min:  slog.LevelDebug,
			log: func(l hclog.Logger) {
				l.Trace("dropped")
				l.Debug("dbg", "n", 1)
				l.Info("info", "b", "x", "a", true)
				l.Warn("careful")
				l.Error("broken", "error", "boom")
			},
			want: []string{
				"DEBUG dbg module=raft n=1",
				"INFO info a=true b=x module=raft",
				"WARN careful module=raft",
				"ERROR broken error=boom module=raft",
			},
		},
		{
			name: "info logger drops debug",
			min:  slog.LevelInfo,
			log: func(l hclog.Logger) {
				l.Debug("dbg")
				l.Info("kept")
			},
			want: []string{"INFO kept module=raft"},
		},
		{
			name: "error logger keeps only errors",
			min:  slog.LevelError,
			log: func(l hclog.Logger) {
				l.Warn("dropped")
				l.Error("kept")
			},
			want: []string{"ERROR kept module=raft"},
		},
		{
			name: "named and with",
			min:  slog.LevelInfo,
			log: func(l hclog.Logger) {
				l.Named("net").With("peer", "m2").Info("dial")
			},
			want: []string{"INFO dial module=raft.net peer=m2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{min: tt.min}
			tt.log(New(slog.New(rec), "raft"))
			got := rec.got()
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("logged\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestSlogWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{
			name:   "partial line waits for its end",
			writes: []string{`{"@level":"warn","@mess`, `age":"split","k":"v"}` + "\n"},
			want:   []string{"WARN split k=v"},
		},
		{
			name:   "two lines in one write",
			writes: []string{`{"@level":"info","@message":"a"}` + "\n" + `{"@level":"error","@message":"b"}` + "\n"},
			want:   []string{"INFO a", "ERROR b"},
		},
		{
			name:   "plain text at info",
			writes: []string{"not json at all\n"},
			want:   []string{"INFO not json at all"},
		},
		{
			name:   "unterminated line is held",
			writes: []string{`{"@level":"info","@message":"a"}`},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{min: slog.LevelDebug}
			w := newSlogWriter(slog.New(rec))
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v, want %d, nil", s, n, err, len(s))
				}
			}
			got := rec.got()
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}
