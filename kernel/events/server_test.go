package events

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// TestValidRequest: every bad field is named, with its bounds.
func TestValidRequest(t *testing.T) {
	many := make([]string, maxNames+1)
	for i := range many {
		many[i] = "x"
	}
	tests := []struct {
		req  *controlv1.EventsRequest
		want []string // the fields named; none: valid
	}{
		{&controlv1.EventsRequest{}, nil},
		{&controlv1.EventsRequest{Since: timestamppb.New(t0), Until: timestamppb.New(t1), Types: []string{"task", "node"}, Names: []string{"web"}}, nil},
		{&controlv1.EventsRequest{Since: timestamppb.New(t1), Until: timestamppb.New(t0)}, []string{"until"}},
		{&controlv1.EventsRequest{Since: &timestamppb.Timestamp{Nanos: -1}}, []string{"since"}},
		{&controlv1.EventsRequest{Types: []string{"task", "container"}}, []string{"types[1]"}},
		{&controlv1.EventsRequest{Names: []string{"", strings.Repeat("n", maxNameLen+1)}}, []string{"names[0]", "names[1]"}},
		{&controlv1.EventsRequest{Names: many}, []string{"names"}},
	}
	for _, tt := range tests {
		err := ValidRequest(tt.req)
		var fe sdk.FieldErrors
		errors.As(err, &fe)
		var got []string
		for _, f := range fe {
			got = append(got, f.Field)
		}
		if !slices.Equal(got, tt.want) || (err != nil) != (tt.want != nil) {
			t.Errorf("ValidRequest(%v) = %v, want fields %v", tt.req, err, tt.want)
		}
	}
}

// TestServer: over gRPC, a request with until in the past gets the
// replay in order and then the end of the stream; a bad one
// InvalidArgument; a following one the live events.
func TestServer(t *testing.T) {
	st := state.New()
	h := startHub(t, st, Config{})
	srv := grpc.NewServer()
	controlv1.RegisterEventsServer(srv, NewServer(h, h.log))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := controlv1.NewEventsClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	live, err := client.Events(ctx, &controlv1.EventsRequest{Types: []string{"service"}})
	if err != nil {
		t.Fatal(err)
	}
	// The stream's handler subscribes after the call returns.
	for n := 0; n == 0; {
		h.mu.Lock()
		n = len(h.subs)
		h.mu.Unlock()
		runtime.Gosched()
	}
	all := h.Subscribe(Filter{})
	defer all.Close()
	write(t, st, 1, t0, func(tx *state.Tx) error { return tx.CreateService(newService("s1", "web", 1)) })
	write(t, st, 2, t1, scale("s1", 2))
	next(t, all, 2)

	past, err := client.Events(ctx, &controlv1.EventsRequest{Since: timestamppb.New(t0), Until: timestamppb.New(t1)})
	if err != nil {
		t.Fatal(err)
	}
	var got []*controlv1.Event
	for {
		resp, err := past.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetEvents()...)
	}
	checkSummary(t, "replay until t1", got, "1.0 service create web", "2.0 service scale web")

	got = nil
	for len(got) < 2 {
		resp, err := live.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.GetEvents()...)
	}
	checkSummary(t, "live", got, "1.0 service create web", "2.0 service scale web")

	bad, err := client.Events(ctx, &controlv1.EventsRequest{Types: []string{"container"}})
	if err == nil {
		_, err = bad.Recv()
	}
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "types[0]") {
		t.Errorf("Events(types: container) = %v, want InvalidArgument naming types[0]", err)
	}
}
