package events

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// Bounds of an EventsRequest.
const (
	maxNames   = 100
	maxNameLen = 256
	// maxBatch bounds the events of one response: a replay of the whole
	// ring goes out in messages of some 100 KB rather than one of megabytes.
	maxBatch = 256
)

// Server serves the Events gRPC service from a Hub. Any manager serves it:
// the hub reads the manager's own store.
type Server struct {
	controlv1.UnimplementedEventsServer
	h   *Hub
	log *slog.Logger
	now func() time.Time
}

var _ controlv1.EventsServer = (*Server)(nil)

// NewServer returns a server of h's events.
func NewServer(h *Hub, logger *slog.Logger) *Server {
	return &Server{h: h, log: logger, now: time.Now}
}

// ValidRequest checks req, naming every bad field.
func ValidRequest(req *controlv1.EventsRequest) error {
	var fe sdk.FieldErrors
	if req.Since != nil {
		if err := req.GetSince().CheckValid(); err != nil {
			fe.Add("since", "%v", err)
		}
	}
	if req.Until != nil {
		if err := req.GetUntil().CheckValid(); err != nil {
			fe.Add("until", "%v", err)
		}
	}
	if req.Since != nil && req.Until != nil && req.GetUntil().AsTime().Before(req.GetSince().AsTime()) {
		fe.Add("until", "must not be before since (%s), got %s", req.GetSince().AsTime().Format(time.RFC3339Nano), req.GetUntil().AsTime().Format(time.RFC3339Nano))
	}
	if n := len(req.GetTypes()); n > len(Types) {
		fe.Add("types", "must name at most %d types, got %d", len(Types), n)
	}
	for i, t := range req.GetTypes() {
		if !slices.Contains(Types, t) {
			fe.Add(fmt.Sprintf("types[%d]", i), "must be one of %v, got %q", Types, t)
		}
	}
	if n := len(req.GetNames()); n > maxNames {
		fe.Add("names", "must name at most %d objects, got %d", maxNames, n)
	}
	for i, n := range req.GetNames() {
		switch {
		case n == "":
			fe.Add(fmt.Sprintf("names[%d]", i), "must not be empty")
		case len(n) > maxNameLen:
			fe.Add(fmt.Sprintf("names[%d]", i), "must be at most %d bytes, got %d", maxNameLen, len(n))
		}
	}
	return fe.Err()
}

// Events sends the replay, then the live events, until the request's
// until, the caller's cancellation, or the end of the subscription.
func (s *Server) Events(req *controlv1.EventsRequest, stream controlv1.Events_EventsServer) error {
	if err := ValidRequest(req); err != nil {
		return sdk.ToGRPC(err)
	}
	ctx := stream.Context()
	f := Filter{Types: req.GetTypes(), Names: req.GetNames()}
	if req.Since != nil {
		f.Since = req.GetSince().AsTime()
	}
	var until time.Time
	if req.Until != nil {
		until = req.GetUntil().AsTime()
	}
	sub := s.h.Subscribe(f)
	defer sub.Close()

	replay := sub.Replay()
	if !until.IsZero() {
		replay = slices.DeleteFunc(slices.Clone(replay), func(ev *controlv1.Event) bool { return ev.GetTime().AsTime().After(until) })
	}
	for len(replay) > 0 {
		n := min(len(replay), maxBatch)
		if err := stream.Send(&controlv1.EventsResponse{Events: replay[:n]}); err != nil {
			return err
		}
		replay = replay[n:]
	}

	var deadline <-chan time.Time
	if !until.IsZero() {
		wait := until.Sub(s.now())
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	live := sub.Events()
	for {
		var batch []*controlv1.Event
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case ev, ok := <-live:
			if !ok {
				return sdk.ToGRPC(sub.Err())
			}
			batch = append(batch, ev)
		}
		// Take what else has arrived, so that a burst goes out in few
		// messages.
	drain:
		for len(batch) < maxBatch {
			select {
			case ev, ok := <-live:
				if !ok {
					break drain
				}
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		if !until.IsZero() {
			// The leader's clock may run ahead of this manager's.
			batch = slices.DeleteFunc(batch, func(ev *controlv1.Event) bool { return ev.GetTime().AsTime().After(until) })
		}
		if len(batch) == 0 {
			continue
		}
		if err := stream.Send(&controlv1.EventsResponse{Events: batch}); err != nil {
			return err
		}
	}
}
