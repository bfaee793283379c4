package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/internal/logbuf"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// fakeEvents is an Events server that records the requests, sends events,
// and then ends the stream, or with follow, waits for the caller to go.
type fakeEvents struct {
	controlv1.UnimplementedEventsServer
	events []*controlv1.Event
	follow bool

	mu   sync.Mutex
	reqs []*controlv1.EventsRequest
}

func (f *fakeEvents) Events(req *controlv1.EventsRequest, stream controlv1.Events_EventsServer) error {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if len(f.events) > 0 {
		if err := stream.Send(&controlv1.EventsResponse{Events: f.events}); err != nil {
			return err
		}
	}
	if f.follow {
		<-stream.Context().Done()
	}
	return nil
}

func (f *fakeEvents) requests() []*controlv1.EventsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*controlv1.EventsRequest(nil), f.reqs...)
}

func (f *fakeEvents) serve(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "control.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	controlv1.RegisterEventsServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return "unix://" + path
}

var testEvents = []*controlv1.Event{
	{Time: timestamppb.New(testNow.Add(123456789)), Index: 7, Type: "service", Action: "scale", Id: "s1abc", Name: "web",
		Attributes: map[string]string{"replicas": "5", "old_replicas": "3", "image": "hello:1"}},
	{Time: timestamppb.New(testNow.Add(time.Second)), Index: 9, Position: 1, Type: "task", Action: "failed", Id: "t1abc", Name: "web.2",
		Attributes: map[string]string{"exit_code": "3", "error": ""}},
}

// TestEventsOutput: one docker-like line per event, a JSON object per line,
// or the template per event.
func TestEventsOutput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "2026-03-01T12:00:00.123456789Z service scale s1abc (name=web, image=hello:1, old_replicas=3, replicas=5)\n" +
			"2026-03-01T12:00:01.000000000Z task failed t1abc (name=web.2, exit_code=3)\n"},
		{[]string{"--format", "{{.type}} {{.action}} {{.name}} {{.id}}"}, "service scale web s1abc\ntask failed web.2 t1abc\n"},
	}
	for _, tt := range tests {
		f := &fakeEvents{events: testEvents}
		res := runCLI(f.serve(t), append([]string{"events", "--until", "1s"}, tt.args...)...)
		if res.code != 0 || res.stdout != tt.want {
			t.Errorf("shoal events %v = exit %d, stdout %q, stderr %q; want exit 0, stdout %q", tt.args, res.code, res.stdout, res.stderr, tt.want)
		}
	}

	f := &fakeEvents{events: testEvents}
	res := runCLI(f.serve(t), "events", "--until", "1s", "--format", "json")
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if res.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], `{"time":"2026-03-01T12:00:00.123456789Z"`) || !strings.Contains(lines[1], `"action":"failed"`) {
		t.Errorf("shoal events --format json = exit %d, stdout %q, stderr %q; want two JSON lines", res.code, res.stdout, res.stderr)
	}
}

// TestEventsRequest: --since and --until take RFC 3339, Unix seconds and
// durations ago; --until alone replays the past; --filter fills types and
// names; bad values fail before any call.
func TestEventsRequest(t *testing.T) {
	ts := func(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
	tests := []struct {
		args []string
		want *controlv1.EventsRequest
	}{
		{[]string{"--since", "10m", "--until", "1m"}, &controlv1.EventsRequest{Since: ts(testNow.Add(-10 * time.Minute)), Until: ts(testNow.Add(-time.Minute))}},
		{[]string{"--since", "2026-03-01T11:00:00Z", "--until", "1772366400.5"},
			&controlv1.EventsRequest{Since: ts(time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)), Until: ts(time.Unix(1772366400, 5e8))}},
		{[]string{"--until", "0s"}, &controlv1.EventsRequest{Since: ts(time.Unix(0, 0)), Until: ts(testNow)}},
		{[]string{"--until", "0s", "--filter", "type=task,name=web", "-f", "name=db", "--filter", "type=task"},
			&controlv1.EventsRequest{Since: ts(time.Unix(0, 0)), Until: ts(testNow), Types: []string{"task"}, Names: []string{"web", "db"}}},
	}
	for _, tt := range tests {
		f := &fakeEvents{}
		res := runCLI(f.serve(t), append([]string{"events"}, tt.args...)...)
		reqs := f.requests()
		if res.code != 0 || len(reqs) != 1 || !proto.Equal(reqs[0], tt.want) {
			t.Errorf("shoal events %v = exit %d, stderr %q, requests %v; want exit 0, request %v", tt.args, res.code, res.stderr, reqs, tt.want)
		}
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--since", "yesterday"}, "--since: want an RFC 3339 time"},
		{[]string{"--until", "-5m"}, "--until: want an RFC 3339 time"},
		{[]string{"--filter", "type=container"}, "--filter type: want one of service, node, task"},
		{[]string{"--filter", "label=x"}, `--filter: unknown key "label"`},
		{[]string{"--filter", "name"}, `--filter: want type=TYPE or name=NAME, got "name"`},
	}
	for _, tt := range bad {
		f := &fakeEvents{}
		res := runCLI(f.serve(t), append([]string{"events"}, tt.args...)...)
		if res.code == 0 || !strings.Contains(res.stderr, tt.want) || len(f.requests()) != 0 {
			t.Errorf("shoal events %v = exit %d, stderr %q, %d calls; want failure with %q and no call", tt.args, res.code, res.stderr, len(f.requests()), tt.want)
		}
	}
}

// TestEventsFollowInterrupted: without --until the stream goes on until
// interrupted, which exits 0 after what came was printed.
func TestEventsFollowInterrupted(t *testing.T) {
	f := &fakeEvents{events: testEvents[:1], follow: true}
	host := f.serve(t)
	c := newTestCLI()
	out := &logbuf.Buffer{}
	c.out, c.errOut = out, &bytes.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- c.execute(ctx, []string{"--host", host, "events"}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "service scale") {
		if time.Now().After(deadline) {
			t.Fatalf("no event printed; stdout %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("interrupted shoal events exited %d, want 0", code)
	}
	if reqs := f.requests(); len(reqs) != 1 || reqs[0].Until != nil || reqs[0].Since != nil {
		t.Errorf("requests = %v, want one with neither since nor until", reqs)
	}
}
