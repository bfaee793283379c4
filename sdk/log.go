package sdk

import (
	"io"
	"log/slog"
	"os"
)

// Logger returns the logger a plugin writes its own lines with: JSON lines
// on stderr in hclog's format (@level, @message, @timestamp), which the
// kernel reads from the plugin process and carries into the node's log at
// each line's level, tagged with the plugin's kind. Every level from Debug
// up is written; the node's log level decides what is kept.
//
// A plugin that logs otherwise (slog's default logger, fmt on stderr) still
// has its lines in the node's log, but all at one level: the kernel cannot
// tell its errors from its chatter.
func Logger() *slog.Logger {
	return slog.New(LogHandler(os.Stderr))
}

// LogHandler is the handler behind Logger, writing to w: for a plugin that
// wraps it in handlers of its own, or tests that read what it writes.
func LogHandler(w io.Writer) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: hclogKeys})
}

// hclogTime is the time format go-plugin parses in hclog's JSON lines.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// hclogKeys renames slog's JSON keys to hclog's, which go-plugin reads on
// the plugin's stderr to re-level each line into the kernel's log. Levels
// between slog's named ones go to the named one below (hclog has no others),
// and those below Info to debug: hclog's trace is what the kernel drops.
func hclogKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.LevelKey:
		level, _ := a.Value.Any().(slog.Level)
		name := "info"
		switch {
		case level < slog.LevelInfo:
			name = "debug"
		case level >= slog.LevelError:
			name = "error"
		case level >= slog.LevelWarn:
			name = "warn"
		}
		return slog.String("@level", name)
	case slog.MessageKey:
		return slog.String("@message", a.Value.String())
	case slog.TimeKey:
		return slog.String("@timestamp", a.Value.Time().Format(hclogTime))
	}
	return a
}
