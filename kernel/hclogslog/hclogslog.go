// Package hclogslog carries the logs of the hashicorp libraries the kernel
// uses (raft, raft-wal, go-plugin), which speak only hclog, into log/slog.
//
// The adapter makes hclog write JSON lines into a writer that re-emits each
// line through slog at the same level, with the line's fields as attributes.
// Going through hclog's own JSON output keeps every hclog feature (Named,
// With, implied arguments) working without reimplementing its interface.
// LineWriter, the line splitter under it, serves any other line-oriented
// output the kernel logs (a plugin's stdout and stderr).
package hclogslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// New returns an hclog.Logger named name whose lines go to logger. hclog's
// levels map to slog's (Trace and Debug to Debug), its name (and the names
// of loggers derived with Named) becomes the "module" attribute, and its
// key/value pairs become attributes.
//
// The hclog level is the lowest one logger has enabled when New is called,
// so that lines slog would drop are never formatted. Trace is never
// emitted: the libraries log per-message detail there that drowns the rest.
func New(logger *slog.Logger, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      levelOf(logger),
		JSONFormat: true,
		Output:     newSlogWriter(logger),
	})
}

// levelOf is the hclog level matching the lowest level logger has enabled.
func levelOf(logger *slog.Logger) hclog.Level {
	ctx := context.Background()
	for _, l := range []struct {
		slog  slog.Level
		hclog hclog.Level
	}{
		{slog.LevelDebug, hclog.Debug},
		{slog.LevelInfo, hclog.Info},
		{slog.LevelWarn, hclog.Warn},
		{slog.LevelError, hclog.Error},
	} {
		if logger.Enabled(ctx, l.slog) {
			return l.hclog
		}
	}
	return hclog.Off
}

// LineWriter hands each line written to it to emit, without its line end
// ("\n" or "\r\n"), and skips empty lines. A line may come in pieces over
// several Writes: a partial line waits for the rest, up to MaxLine bytes,
// and is then handed on as it is, so that output without line ends cannot
// hold memory without bound. The kernel uses it for every line-oriented
// output it logs: hclog's JSON lines here, a plugin's stdout and stderr in
// kernel/pluginhost.
type LineWriter struct {
	emit func(line []byte)

	// mu guards buf, the partial line.
	mu  sync.Mutex
	buf bytes.Buffer
}

// MaxLine bounds a partial line held while waiting for its end.
const MaxLine = 64 << 10

// NewLineWriter returns a LineWriter that hands lines to emit, one at a
// time, in order. emit must not keep line: its bytes are reused.
func NewLineWriter(emit func(line []byte)) *LineWriter {
	return &LineWriter{emit: emit}
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			// Keep a partial line for the next Write, up to MaxLine.
			if len(line) >= MaxLine {
				w.emit(line)
			} else {
				w.buf.Write(line)
			}
			return len(p), nil
		}
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			w.emit(line)
		}
	}
}

// newSlogWriter returns the writer that re-emits the JSON lines hclog
// writes as records of logger. hclog writes whole lines, but the writer
// does not rely on it (see LineWriter).
func newSlogWriter(logger *slog.Logger) *LineWriter {
	return NewLineWriter(func(line []byte) { emit(logger, line) })
}

// emit logs one line: a JSON hclog line at its level with its fields, any
// other line verbatim at Info.
func emit(logger *slog.Logger, line []byte) {
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		logger.Info(strings.TrimSpace(string(line)))
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
	// Map iteration order is random; sort so that the same line always
	// logs the same way.
	slices.SortFunc(attrs, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	logger.LogAttrs(context.Background(), level, msg, attrs...)
}
