package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestEventsThroughFollower: a follower streams what the cluster does, in
// the order it happened: a service created, then scaled, a task failing
// with its exit code, a node going down. Afterwards `shoal events --since`
// on the follower replays the same events (same index and position), the
// leader gives the same ones, and --filter narrows the replay.
func TestEventsThroughFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := Start(t, 3, Options{})
	ws := StartWorkers(t, c, 2, WorkerOptions{})
	c.WaitReady(t, ws, 60*time.Second)
	leader := c.Leader(t, 30*time.Second)
	var follower *Manager
	for _, m := range c.Managers {
		if m != leader {
			follower = m
			break
		}
	}
	client := leader.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Since a moment ago: the replay covers what happens between the call
	// and the handler's subscription.
	since := time.Now().Add(-time.Second)
	stream, err := eventsClient(t, follower).Events(ctx, &controlv1.EventsRequest{Since: timestamppb.New(since)})
	if err != nil {
		t.Fatal(err)
	}
	es := &eventStream{stream: stream}
	create, scale, failed, down := provokeEvents(ctx, t, c, client, ws, es)

	milestones := []*controlv1.Event{create, scale, failed, down}
	checkEventOrder(t, es.got, milestones)

	// shoal events --since ... --until now replays the same events, on the
	// follower and on the leader.
	until := time.Now()
	args := []string{"events", "--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano), "--format", "json"}
	checkEventReplay(t, follower, leader, args, until, es.got, milestones)
	checkEventFilters(t, follower, args, create, scale, failed)
}

// eventStream is an events stream and the events read from it so far.
type eventStream struct {
	stream controlv1.Events_EventsClient
	got    []*controlv1.Event
}

// await reads the stream until an event matches, and returns it.
func (es *eventStream) await(t *testing.T, what string, match func(*controlv1.Event) bool) *controlv1.Event {
	t.Helper()
	for _, ev := range es.got {
		if match(ev) {
			return ev
		}
	}
	for {
		resp, err := es.stream.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v (got %s)", what, err, summarize(es.got))
		}
		es.got = append(es.got, resp.GetEvents()...)
		for _, ev := range resp.GetEvents() {
			if match(ev) {
				return ev
			}
		}
	}
}

// eventIs matches the events of that type and action about the object name.
func eventIs(typ, action, name string) func(*controlv1.Event) bool {
	return func(ev *controlv1.Event) bool {
		return ev.GetType() == typ && ev.GetAction() == action && ev.GetName() == name
	}
}

// eventKey names an event by its place in the stream: index and position.
func eventKey(ev *controlv1.Event) string {
	return fmt.Sprintf("%d.%d", ev.GetIndex(), ev.GetPosition())
}

// provokeEvents creates the service web and scales it, creates a service
// whose task fails, stops the second worker, and awaits each one's event
// on es.
func provokeEvents(ctx context.Context, t *testing.T, c *Cluster, client controlv1.ControlClient, ws []*Worker, es *eventStream) (create, scale, failed, down *controlv1.Event) {
	t.Helper()
	spec := serviceSpec("web")
	spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}}
	created, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	create = es.await(t, "web created", eventIs("service", "create", "web"))
	if create.GetId() != created.GetService().GetId() || create.GetAttributes()["replicas"] != "1" {
		t.Errorf("create event %v, want service %s with replicas=1", create, created.GetService().GetId())
	}

	c.eventually(t, 30*time.Second, func(ctx context.Context) error {
		cur, err := client.GetService(ctx, &controlv1.GetServiceRequest{Ref: "web"})
		if err != nil {
			return err
		}
		spec := cur.GetService().GetSpec()
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}}
		_, err = client.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: "web", Version: cur.GetService().GetMeta().GetVersion(), Spec: spec})
		return err
	})
	scale = es.await(t, "web scaled", eventIs("service", "scale", "web"))
	if a := scale.GetAttributes(); a["replicas"] != "3" || a["old_replicas"] != "1" {
		t.Errorf("scale event attributes %v, want replicas=3, old_replicas=1", a)
	}

	crash := serviceSpec("crash")
	crash.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}}
	crash.Task.Container.Env = []string{"SHOAL_SIM_EXIT_AFTER=500ms", "SHOAL_SIM_EXIT_CODE=3"}
	crash.Task.Restart = &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_NONE}
	if _, err := client.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: crash}); err != nil {
		t.Fatal(err)
	}
	failed = es.await(t, "crash.1 failed", eventIs("task", "failed", "crash.1"))
	if a := failed.GetAttributes(); a["exit_code"] != "3" || a["service"] != "crash" || a["old_state"] != "running" {
		t.Errorf("failure event attributes %v, want exit_code=3, service=crash, old_state=running", a)
	}

	gone := ws[1]
	gone.Stop()
	down = es.await(t, gone.Name+" down", eventIs("node", "down", gone.Name))
	if down.GetId() != gone.NodeID || down.GetAttributes()["old_state"] != "ready" {
		t.Errorf("down event %v, want node %s, old_state=ready", down, gone.NodeID)
	}
	return create, scale, failed, down
}

// checkEventOrder checks that the events came in order, each once, and the
// milestones in the order they happened.
func checkEventOrder(t *testing.T, got, milestones []*controlv1.Event) {
	t.Helper()
	// In order, each once.
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if b.GetIndex() < a.GetIndex() || (b.GetIndex() == a.GetIndex() && b.GetPosition() <= a.GetPosition()) {
			t.Errorf("event %s came after %s: out of order or repeated", eventKey(b), eventKey(a))
		}
	}
	pos := func(ev *controlv1.Event) int {
		return slices.IndexFunc(got, func(e *controlv1.Event) bool { return proto.Equal(e, ev) })
	}
	for i := 1; i < len(milestones); i++ {
		if pos(milestones[i-1]) >= pos(milestones[i]) {
			t.Errorf("%s %s (%s) came before %s %s (%s)", milestones[i].GetType(), milestones[i].GetAction(), eventKey(milestones[i]),
				milestones[i-1].GetType(), milestones[i-1].GetAction(), eventKey(milestones[i-1]))
		}
	}
}

// checkEventReplay checks that shoal events ... --until replays the
// milestones on the follower and on the leader, and on the follower every
// event streamed until then, first.
func checkEventReplay(t *testing.T, follower, leader *Manager, args []string, until time.Time, got, milestones []*controlv1.Event) {
	t.Helper()
	for _, m := range []*Manager{follower, leader} {
		replay := shoalEvents(t, m, args...)
		for _, want := range milestones {
			i := slices.IndexFunc(replay, func(e *controlv1.Event) bool { return eventKey(e) == eventKey(want) })
			if i < 0 || !proto.Equal(replay[i], want) {
				t.Errorf("%s: replay has no %s %s %s equal to the stream's %v", m.Name, want.GetType(), want.GetAction(), want.GetName(), want)
			}
		}
		if m == follower {
			var streamed []*controlv1.Event
			for _, ev := range got {
				if !ev.GetTime().AsTime().After(until) {
					streamed = append(streamed, ev)
				}
			}
			if len(replay) < len(streamed) || !slices.EqualFunc(replay[:len(streamed)], streamed, func(a, b *controlv1.Event) bool { return proto.Equal(a, b) }) {
				t.Errorf("follower's replay %s, want the streamed %s first", summarize(replay), summarize(streamed))
			}
		}
	}
}

// checkEventFilters checks that --filter narrows the replay: the service web
// alone, then the tasks alone.
func checkEventFilters(t *testing.T, follower *Manager, args []string, create, scale, failed *controlv1.Event) {
	t.Helper()
	// --filter narrows it: the service web alone, then the tasks alone.
	web := shoalEvents(t, follower, append(args, "--filter", "type=service", "--filter", "name=web")...)
	if len(web) < 2 || !proto.Equal(web[0], create) || !slices.ContainsFunc(web, func(e *controlv1.Event) bool { return proto.Equal(e, scale) }) {
		t.Errorf("--filter type=service,name=web = %s, want web's create first, and its scale", summarize(web))
	}
	for _, ev := range web {
		if ev.GetType() != "service" || ev.GetName() != "web" {
			t.Errorf("--filter type=service,name=web gave %s %s %s", ev.GetType(), ev.GetAction(), ev.GetName())
		}
	}
	tasks := shoalEvents(t, follower, append(args, "--filter", "type=task,name=crash")...)
	if !slices.ContainsFunc(tasks, func(e *controlv1.Event) bool { return proto.Equal(e, failed) }) {
		t.Errorf("--filter type=task,name=crash = %s, want crash.1's failure", summarize(tasks))
	}
	for _, ev := range tasks {
		if ev.GetType() != "task" || ev.GetAttributes()["service"] != "crash" {
			t.Errorf("--filter type=task,name=crash gave %s %s %s", ev.GetType(), ev.GetAction(), ev.GetName())
		}
	}
}

// eventsClient returns an Events client over m's control socket.
func eventsClient(tb testing.TB, m *Manager) controlv1.EventsClient {
	tb.Helper()
	conn, err := grpc.NewClient("unix://"+m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return controlv1.NewEventsClient(conn)
}

// shoalEvents runs `shoal events ARGS` (with --format json) against m and
// returns the events it printed.
func shoalEvents(t *testing.T, m *Manager, args ...string) []*controlv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), append([]string{"--host", "unix://" + m.Socket}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shoal %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var evs []*controlv1.Event
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ev := &controlv1.Event{}
		if err := protojson.Unmarshal(sc.Bytes(), ev); err != nil {
			t.Fatalf("shoal %s printed %q: %v", strings.Join(args, " "), sc.Text(), err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func summarize(evs []*controlv1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n  %d.%d %s %s %s", ev.GetIndex(), ev.GetPosition(), ev.GetType(), ev.GetAction(), ev.GetName())
	}
	return b.String()
}
