package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger adapts slog for hashicorp/raft and raft-wal, which only speak
// hclog. They log JSON lines into a writer that re-emits each line through
// slog at the same level, keeping the fields.
func newHCLogger(logger *slog.Logger, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Info,
		JSONFormat: true,
		Output:     &slogWriter{logger: logger},
	})
}

type slogWriter struct {
	logger *slog.Logger

	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			// Keep the partial line for the next Write.
			w.buf.Write(line)
			break
		}
		w.emit(line)
	}
	return len(p), nil
}

func (w *slogWriter) emit(line []byte) {
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		w.logger.Info(strings.TrimSpace(string(line)))
		return
	}
	level := slog.LevelInfo
	switch fields["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := fields["@message"].(string)
	attrs := make([]slog.Attr, 0, len(fields))
	for k, v := range fields {
		if strings.HasPrefix(k, "@") {
			if k == "@module" {
				attrs = append(attrs, slog.Any("module", v))
			}
			continue
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	w.logger.LogAttrs(context.Background(), level, msg, attrs...)
}
