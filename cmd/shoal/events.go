package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// eventTypes are the values of --filter type=, the server's.
var eventTypes = []string{"service", "node", "task", "network", "secret", "config", "cluster"}

func (c *cli) newEventsCmd() *cobra.Command {
	var (
		since, until string
		filters      []string
		format       outputFormat
	)
	cmd := &cobra.Command{
		Use:   "events [flags]",
		Short: "Stream what changes in the cluster",
		Long: `Print the cluster's events as they happen, like docker events: services
created, scaled, updated and removed; tasks changing state ("running",
"failed", "complete", "shutdown", ...); nodes going "down" or "ready";
networks, secrets and configs created and removed.

--since replays the recent events a manager keeps (the last 10,000) from that
time on. Without --until the stream goes on until interrupted; with it, it
ends at that time. T is an RFC 3339 time (2026-12-06T21:30:00Z), a Unix time
in seconds (1796592600), or a duration meaning that long ago (10m, 2h).

Every manager serves the same events, followers too.`,
		Example: `  shoal events --since 10m
  shoal events --filter type=task --filter name=web
  shoal events --since 1h --until 30m --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			now := c.now()
			req := &controlv1.EventsRequest{}
			if since != "" {
				t, err := parseEventTime(since, now)
				if err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				req.Since = timestamppb.New(t)
			}
			if until != "" {
				t, err := parseEventTime(until, now)
				if err != nil {
					return fmt.Errorf("--until: %w", err)
				}
				req.Until = timestamppb.New(t)
				if req.Since == nil {
					// As docker: --until alone shows the past up to then.
					req.Since = timestamppb.New(time.Unix(0, 0))
				}
			}
			if err := parseEventFilters(filters, req); err != nil {
				return err
			}
			return c.printEvents(cmd.Context(), req, &format)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&since, "since", "", "replay the kept events from this time on: RFC 3339, Unix seconds, or a duration ago (10m)")
	fs.StringVar(&until, "until", "", "stop at this time (same forms as --since); unset: stream until interrupted")
	fs.StringArrayVarP(&filters, "filter", "f", nil, `keep only matching events: type=`+strings.Join(eventTypes, "|")+`, name=NAME or ID (a task matches its service's too); repeat or separate with commas`)
	addOutputFlag(fs, &format, "")
	return cmd
}

// parseEventTime reads --since and --until: RFC 3339 (with or without
// fractional seconds), Unix seconds (with an optional fraction), or a Go
// duration meaning that long before now.
func parseEventTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 time (2006-01-02T15:04:05Z), Unix seconds, or a duration ago (10m), got %q", s)
}

// parseEventFilters adds the --filter values to req.
func parseEventFilters(filters []string, req *controlv1.EventsRequest) error {
	for _, f := range filters {
		for kv := range strings.SplitSeq(f, ",") {
			k, v, ok := strings.Cut(kv, "=")
			switch {
			case !ok || v == "":
				return fmt.Errorf("--filter: want type=TYPE or name=NAME, got %q", kv)
			case k == "type":
				if !slices.Contains(eventTypes, v) {
					return fmt.Errorf("--filter type: want one of %s, got %q", strings.Join(eventTypes, ", "), v)
				}
				if !slices.Contains(req.Types, v) {
					req.Types = append(req.Types, v)
				}
			case k == "name":
				req.Names = append(req.Names, v)
			default:
				return fmt.Errorf("--filter: unknown key %q: want type or name", k)
			}
		}
	}
	return nil
}

// printEvents streams the events req selects to stdout, each as it comes.
// --timeout does not bound it, and an interrupt ends it with no error, as
// docker events.
func (c *cli) printEvents(ctx context.Context, req *controlv1.EventsRequest, format *outputFormat) error {
	conn, err := c.dialConn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := controlv1.NewEventsClient(conn).Events(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.streamErr(err)
	}
	w := bufio.NewWriter(c.out)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return w.Flush()
		}
		if err != nil {
			w.Flush()
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return c.streamErr(err)
		}
		for _, ev := range resp.GetEvents() {
			if err := writeEvent(w, format, ev); err != nil {
				return err
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// eventTimeLayout is docker events' time: RFC 3339 with every nanosecond
// digit, so that the columns line up.
const eventTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// writeEvent prints one event: as docker events, by default
//
//	2026-12-06T21:30:01.123456789Z service scale ID (name=web, old_replicas=3, replicas=5)
//
// or one line of compact JSON, or the template.
func writeEvent(w io.Writer, format *outputFormat, ev *controlv1.Event) error {
	switch {
	case format.tmpl != nil:
		return format.execute(w, ev)
	case format.is("json"):
		b, err := marshalJSON(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	attrs := make([]string, 0, len(ev.GetAttributes())+1)
	if ev.GetName() != "" {
		attrs = append(attrs, "name="+ev.GetName())
	}
	for _, k := range slices.Sorted(maps.Keys(ev.GetAttributes())) {
		if v := ev.GetAttributes()[k]; v != "" {
			attrs = append(attrs, k+"="+v)
		}
	}
	_, err := fmt.Fprintf(w, "%s %s %s %s (%s)\n", ev.GetTime().AsTime().UTC().Format(eventTimeLayout),
		ev.GetType(), ev.GetAction(), ev.GetId(), strings.Join(attrs, ", "))
	return err
}
