package streams

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

func TestFirst(t *testing.T) {
	m, err := First(t.Context(), time.Second, "hello", func() (string, error) { return "hi", nil })
	if m != "hi" || err != nil {
		t.Errorf("First(answering stream) = %q, %v, want \"hi\", nil", m, err)
	}
	boom := errors.New("boom")
	if _, err := First(t.Context(), time.Second, "hello", func() (string, error) { return "", boom }); err != boom {
		t.Errorf("First(failing stream) = %v, want %v", err, boom)
	}
}

func TestFirstSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stream, end := context.WithCancel(t.Context())
		defer end()
		silent := func() (string, error) {
			<-stream.Done()
			return "", stream.Err()
		}
		_, err := First(t.Context(), 10*time.Second, "hello", silent)
		if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "no hello within 10s") {
			t.Errorf("First(silent stream) = %v, want InvalidArgument: no hello within 10s", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := First(ctx, 10*time.Second, "hello", silent); !errors.Is(err, context.Canceled) {
			t.Errorf("First(silent stream, ended ctx) = %v, want context.Canceled", err)
		}
	})
}
