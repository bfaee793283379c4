package pluginhost

import (
	"context"
	"io"
	"log/slog"

	"github.com/shoalhq/shoal/kernel/hclogslog"
)

var _ slog.Handler = goPluginHandler{}

// goPluginHandler adjusts the records go-plugin logs for the host's logger:
// it renames go-plugin's "plugin" key (the binary's path) to "binary", since
// "plugin" is the kind in every shoal log line and a duplicate key confuses
// log pipelines, and drops "timestamp", the plugin's copy of the time the
// record already has.
type goPluginHandler struct {
	slog.Handler
}

func (h goPluginHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "plugin":
			a.Key = "binary"
		case "timestamp":
			return true
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h goPluginHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return goPluginHandler{h.Handler.WithAttrs(as)}
}

func (h goPluginHandler) WithGroup(name string) slog.Handler {
	return goPluginHandler{h.Handler.WithGroup(name)}
}

// lineLogger logs each line written to it at Info.
func lineLogger(logger *slog.Logger) io.Writer {
	return hclogslog.NewLineWriter(func(line []byte) { logger.Info(string(line)) })
}
