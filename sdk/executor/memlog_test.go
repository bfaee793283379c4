package executor

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestMemLog(t *testing.T) {
	var l MemLog
	l.Append(LogEntry{Line: []byte("a")}, LogEntry{Line: []byte("b")}, LogEntry{Line: []byte("c")})
	collect := func(opts LogOptions) ([]string, error) {
		var got []string
		err := l.Send(t.Context(), opts, func(e LogEntry) error {
			got = append(got, string(e.Line))
			if len(got) == 4 {
				l.End()
			}
			return nil
		})
		return got, err
	}
	for _, tt := range []struct {
		tail int
		want []string
	}{{-1, []string{"a", "b", "c"}}, {0, nil}, {2, []string{"b", "c"}}, {9, []string{"a", "b", "c"}}} {
		if got, err := collect(LogOptions{Tail: tt.tail}); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Send(Tail %d) = %q, %v, want %q", tt.tail, got, err, tt.want)
		}
	}

	// Following: the lines appended later come, and End ends it.
	done := make(chan []string)
	go func() {
		got, _ := collect(LogOptions{Tail: -1, Follow: true})
		done <- got
	}()
	l.Append(LogEntry{Line: []byte("d")})
	if got := <-done; !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Send(Follow) = %q, want a b c d", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var open MemLog
	if err := open.Send(ctx, LogOptions{Follow: true}, func(LogEntry) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Send(Follow, ended ctx) = %v, want context.Canceled", err)
	}
}
