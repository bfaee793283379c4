package dashboard

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/events"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// wait bounds what a test waits for a stream; generous, never asserted.
const wait = 30 * time.Second

// testToken is the admin token of the tests' dashboards.
const testToken = "0123456789abcdef0123456789abcdef"

// The secret material of the fixture: none of it may be served.
var secretMaterial = []string{"hunter2", "ROOT-KEY-PEM", "SWMTKN-worker-secret", "SWMTKN-manager-secret", "GOSSIP-KEY-123", "SEALED-CIPHERTEXT", "sha256:secretdigest"}

// fixture is a store with a cluster, two nodes, a service of three tasks,
// a network and a secret, and its next Raft index.
type fixture struct {
	st    *state.Store
	index uint64
}

func (f *fixture) write(t testing.TB, fn func(tx *state.Tx) error) {
	t.Helper()
	f.index++
	txn, err := f.st.Prepare(time.Now(), fn)
	if err != nil {
		t.Fatal(err)
	}
	if errs := f.st.Apply(f.index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
}

func newFixture(t testing.TB, tasks int) *fixture {
	f := &fixture{st: state.New()}
	f.write(t, func(tx *state.Tx) error {
		if err := tx.CreateCluster(&objectv1.Cluster{Id: "cluster1", Spec: &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{Name: "default"}},
			RootCa: &objectv1.RootCA{CertPem: []byte("CERT"), KeyPem: []byte("ROOT-KEY-PEM"), Digest: "sha256:ca",
				JoinTokens: &objectv1.JoinTokens{Worker: "SWMTKN-worker-secret", Manager: "SWMTKN-manager-secret"}},
			GossipKey: []byte("GOSSIP-KEY-123")}); err != nil {
			return err
		}
		for _, n := range []*objectv1.Node{
			{Id: "node1", Role: objectv1.NodeRole_NODE_ROLE_MANAGER, Description: &objectv1.NodeDescription{Hostname: "m1", Resources: &objectv1.Resources{NanoCpus: 2e9, MemoryBytes: 4 << 30}},
				Spec:   &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, Annotations: &objectv1.Annotations{Labels: map[string]string{"zone": "a"}}},
				Status: &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_READY, Addr: "10.0.0.1"}},
			{Id: "node2", Role: objectv1.NodeRole_NODE_ROLE_WORKER, Description: &objectv1.NodeDescription{Hostname: "w1"},
				Status: &objectv1.NodeStatus{State: objectv1.NodeState_NODE_STATE_DOWN}},
		} {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		if err := tx.CreateService(&objectv1.Service{Id: "svc1", Spec: &objectv1.ServiceSpec{
			Annotations: &objectv1.Annotations{Name: "web"},
			Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: int64(tasks)}},
			Task: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx:1", Env: []string{"PASSWORD=hunter2"},
				Secrets: []*objectv1.FileReference{{Name: "db"}}}},
		}}); err != nil {
			return err
		}
		if err := tx.CreateNetwork(&objectv1.Network{Id: "net1", Spec: &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: "front"}}, Subnet: "10.1.0.0/16"}); err != nil {
			return err
		}
		return tx.CreateSecret(&objectv1.Secret{Id: "sec1", Spec: &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: "db"}},
			Sealed: &objectv1.SealedData{KeyId: "k", Ciphertext: []byte("SEALED-CIPHERTEXT")}, Digest: "sha256:secretdigest", Size: 7})
	})
	f.write(t, func(tx *state.Tx) error {
		for i := range tasks {
			if err := tx.CreateTask(newTask(i)); err != nil {
				return err
			}
		}
		return nil
	})
	return f
}

func newTask(i int) *objectv1.Task {
	return &objectv1.Task{Id: taskID(i), ServiceId: "svc1", Slot: uint64(i + 1), NodeId: "node1",
		ServiceAnnotations: &objectv1.Annotations{Name: "web"},
		Spec:               &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "nginx:1", Env: []string{"PASSWORD=hunter2"}}},
		DesiredState:       objectv1.TaskState_TASK_STATE_RUNNING,
		Status:             &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING, Pid: 42},
		Networks:           []*objectv1.NetworkAttachment{{NetworkId: "net1", NetworkName: "front", Addr: "10.1.0.5/16"}}}
}

func taskID(i int) string { return "task" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i) }

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// startHub runs a hub over st until the test ends, and waits until it
// watches the store (a change seen by a subscriber).
func (f *fixture) startHub(t testing.TB) *events.Hub {
	t.Helper()
	h := events.New(events.Config{}, f.st, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	sub := h.Subscribe(events.Filter{})
	defer sub.Close()
	deadline := time.After(wait)
	for {
		f.write(t, func(tx *state.Tx) error {
			n := proto.CloneOf(tx.Network("net1"))
			return tx.UpdateNetwork(n)
		})
		select {
		case <-sub.Events():
			return h
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("the hub does not watch the store")
		}
	}
}

// fakeControl is the control API the write actions and logs go through.
type fakeControl struct {
	controlv1.ControlClient
	f *fixture

	mu      sync.Mutex
	updates []proto.Message
	logs    []*controlv1.TaskLogsResponse
}

func (c *fakeControl) GetService(_ context.Context, req *controlv1.GetServiceRequest, _ ...grpc.CallOption) (*controlv1.GetServiceResponse, error) {
	var s *objectv1.Service
	c.f.st.View(func(tx *state.ReadTx) { s, _ = tx.LookupService(req.GetRef()) })
	if s == nil {
		return nil, status.Errorf(codes.NotFound, "service %s not found", req.GetRef())
	}
	return &controlv1.GetServiceResponse{Service: s}, nil
}

func (c *fakeControl) UpdateService(_ context.Context, req *controlv1.UpdateServiceRequest, _ ...grpc.CallOption) (*controlv1.UpdateServiceResponse, error) {
	c.mu.Lock()
	c.updates = append(c.updates, req)
	c.mu.Unlock()
	return &controlv1.UpdateServiceResponse{Service: &objectv1.Service{Id: req.GetRef(), Spec: req.GetSpec()}}, nil
}

func (c *fakeControl) GetNode(_ context.Context, req *controlv1.GetNodeRequest, _ ...grpc.CallOption) (*controlv1.GetNodeResponse, error) {
	var n *objectv1.Node
	c.f.st.View(func(tx *state.ReadTx) { n, _ = tx.LookupNode(req.GetRef()) })
	if n == nil {
		return nil, status.Errorf(codes.NotFound, "node %s not found", req.GetRef())
	}
	return &controlv1.GetNodeResponse{Node: n}, nil
}

func (c *fakeControl) UpdateNode(_ context.Context, req *controlv1.UpdateNodeRequest, _ ...grpc.CallOption) (*controlv1.UpdateNodeResponse, error) {
	c.mu.Lock()
	c.updates = append(c.updates, req)
	c.mu.Unlock()
	return &controlv1.UpdateNodeResponse{Node: &objectv1.Node{Id: req.GetRef(), Spec: req.GetSpec()}}, nil
}

func (c *fakeControl) TaskLogs(ctx context.Context, req *controlv1.TaskLogsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[controlv1.TaskLogsResponse], error) {
	if req.GetService() != "web" {
		return &fakeLogs{err: status.Errorf(codes.NotFound, "service %s not found", req.GetService())}, nil
	}
	return &fakeLogs{ctx: ctx, resps: c.logs}, nil
}

// fakeLogs plays its responses, then blocks until the caller leaves (a
// followed stream), or fails with err.
type fakeLogs struct {
	grpc.ClientStream
	ctx   context.Context
	resps []*controlv1.TaskLogsResponse
	err   error
}

func (l *fakeLogs) Recv() (*controlv1.TaskLogsResponse, error) {
	if l.err != nil {
		return nil, l.err
	}
	if len(l.resps) > 0 {
		r := l.resps[0]
		l.resps = l.resps[1:]
		return r, nil
	}
	<-l.ctx.Done()
	return nil, status.FromContextError(l.ctx.Err()).Err()
}

func newHandler(t testing.TB, f *fixture, token string) (*Handler, *fakeControl) {
	t.Helper()
	ctl := &fakeControl{f: f}
	h, err := New(Config{Token: token}, Deps{Store: f.st, Hub: f.startHub(t), Control: ctl, Leader: func() string { return "node1" }, Self: "node1"},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return h, ctl
}

// do serves one request from remote with the given headers.
func do(h http.Handler, method, target, remote, body string, header map[string]string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	req.RemoteAddr = remote
	if strings.HasPrefix(remote, "127.") || strings.HasPrefix(remote, "[::1]") {
		req.Host = "127.0.0.1:9242"
	} else {
		req.Host = "10.0.0.1:9242"
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

const (
	local  = "127.0.0.1:40000"
	remote = "192.0.2.7:40000"
)

func TestState(t *testing.T) {
	f := newFixture(t, 3)
	h, _ := newHandler(t, f, "")
	w := do(h, "GET", "/api/state", local, "", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /api/state = %d %s, want 200", w.Code, w.Body)
	}
	var s struct {
		Index                                     uint64
		Leader, Self                              string
		Admin                                     bool
		Cluster                                   json.RawMessage
		Nodes, Services, Tasks, Networks, Secrets []map[string]any
	}
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Index != f.index || s.Leader != "node1" || s.Admin {
		t.Errorf("index, leader, admin = %d, %q, %v, want %d, node1, false", s.Index, s.Leader, s.Admin, f.index)
	}
	if len(s.Nodes) != 2 || len(s.Services) != 1 || len(s.Tasks) != 3 || len(s.Networks) != 1 || len(s.Secrets) != 1 {
		t.Errorf("nodes, services, tasks, networks, secrets = %d, %d, %d, %d, %d, want 2, 1, 3, 1, 1",
			len(s.Nodes), len(s.Services), len(s.Tasks), len(s.Networks), len(s.Secrets))
	}
	for _, want := range []string{`"image":"nginx:1"`, `"state":"TASK_STATE_RUNNING"`, `"addr":"10.1.0.5/16"`, `"hostname":"m1"`, `"zone":"a"`, `"size":"7"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET /api/state lacks %s", want)
		}
	}
	checkNoSecrets(t, "GET /api/state", w.Body.String())
}

// checkNoSecrets fails t if body holds any of the fixture's secret
// material, as is or base64 encoded (protojson's bytes).
func checkNoSecrets(t *testing.T, what, body string) {
	t.Helper()
	for _, s := range secretMaterial {
		if strings.Contains(body, s) || strings.Contains(body, base64.StdEncoding.EncodeToString([]byte(s))) {
			t.Errorf("%s serves secret material %q", what, s)
		}
	}
	if strings.Contains(body, "PASSWORD") {
		t.Errorf("%s serves a task's environment", what)
	}
}

// sse reads server-sent events from body.
type sse struct{ r *bufio.Reader }

// next returns the next event's name and data.
func (s sse) next() (string, string, error) {
	var name, data string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && name != "":
			return name, data, nil
		case strings.HasPrefix(line, "event: "):
			name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
}

// stream opens path on srv and returns its events, closed with the test.
func stream(t *testing.T, srv *httptest.Server, path string) sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %d %s %s, want 200 text/event-stream", path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return sse{bufio.NewReader(resp.Body)}
}

// TestEvents: the stream starts with the snapshot, then carries each
// change with the changed object's current view, or its removal.
func TestEvents(t *testing.T) {
	f := newFixture(t, 3)
	h, _ := newHandler(t, f, "")
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s := stream(t, srv, "/api/events")
	name, data, err := s.next()
	if err != nil || name != "snapshot" {
		t.Fatalf("first event = %q, %v, want snapshot", name, err)
	}
	checkNoSecrets(t, "the snapshot", data)

	f.write(t, func(tx *state.Tx) error {
		task := proto.CloneOf(tx.Task(taskID(1)))
		task.Status = &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_FAILED, ExitCode: 3, Err: "exit status 3"}
		if err := tx.UpdateTask(task); err != nil {
			return err
		}
		if err := tx.DeleteTask(taskID(2)); err != nil {
			return err
		}
		sec := proto.CloneOf(tx.Secret("sec1"))
		sec.Spec.Annotations.Labels = map[string]string{"x": "y"}
		return tx.UpdateSecret(sec)
	})
	want := map[string]string{"task/" + taskID(1): `"exit_code":3`, "task/" + taskID(2): "removed", "secret/sec1": `"name":"db"`}
	deadline := time.Now().Add(wait)
	for len(want) > 0 && time.Now().Before(deadline) {
		name, data, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if name != "change" {
			continue
		}
		checkNoSecrets(t, "a change", data)
		var c change
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		if c.Index == 0 || c.Leader != "node1" {
			t.Errorf("change index, leader = %d, %q, want >0, node1", c.Index, c.Leader)
		}
		for _, o := range c.Objects {
			k := o.Type + "/" + o.ID
			w, ok := want[k]
			if !ok {
				continue
			}
			got := string(o.Object)
			if o.Removed {
				got = "removed"
			}
			if !strings.Contains(got, w) {
				t.Errorf("change of %s = %s, want %s", k, got, w)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		t.Errorf("no change for %v", want)
	}
}

// TestAccess: loopback reads without credentials; anything else needs the
// token, and a refused request gets no data.
func TestAccess(t *testing.T) {
	f := newFixture(t, 1)
	withToken, _ := newHandler(t, f, testToken)
	noToken, _ := newHandler(t, f, "")
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	for _, tc := range []struct {
		name   string
		h      http.Handler
		path   string
		remote string
		header map[string]string
		want   int
	}{
		{"loopback reads", noToken, "/api/state", local, nil, 200},
		{"loopback v6 reads", noToken, "/api/state", "[::1]:5000", nil, 200},
		{"loopback page", noToken, "/", local, nil, 200},
		{"remote without token configured", noToken, "/api/state", remote, nil, 403},
		{"remote without credentials", withToken, "/api/state", remote, nil, 401},
		{"remote events without credentials", withToken, "/api/events", remote, nil, 401},
		{"remote logs without credentials", withToken, "/api/services/web/logs", remote, nil, 401},
		{"remote page without credentials", withToken, "/", remote, nil, 401},
		{"remote wrong token", withToken, "/api/state", remote, map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 32)}, 401},
		{"remote basic auth", withToken, "/api/state", remote, map[string]string{"Authorization": "Basic YTpi"}, 401},
		{"remote wrong cookie", withToken, "/api/state", remote, map[string]string{"Cookie": cookieName + "=forged"}, 401},
		{"remote token", withToken, "/api/state", remote, bearer, 200},
		{"loopback wrong token", withToken, "/api/state", local, map[string]string{"Authorization": "Bearer nope"}, 401},
		{"proxied to loopback", withToken, "/api/state", local, map[string]string{"X-Forwarded-For": "192.0.2.7"}, 401},
		{"proxied to loopback, Forwarded", noToken, "/api/state", local, map[string]string{"Forwarded": "for=192.0.2.7"}, 403},
		{"rebound host name", noToken, "/api/state", local, map[string]string{"Host": "evil.example:9242"}, 403},
		{"localhost name", noToken, "/api/state", local, map[string]string{"Host": "localhost:9242"}, 200},
		{"assets are public", withToken, "/app.js", remote, nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(tc.h, "GET", tc.path, tc.remote, "", tc.header)
			if w.Code != tc.want {
				t.Fatalf("GET %s from %s = %d %s, want %d", tc.path, tc.remote, w.Code, w.Body, tc.want)
			}
			if w.Code != 200 && (strings.Contains(w.Body.String(), "svc1") || strings.Contains(w.Body.String(), "node1")) {
				t.Errorf("refused GET %s serves data: %s", tc.path, w.Body)
			}
			if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
}

// TestLogin: the token buys a cookie that reads from anywhere.
func TestLogin(t *testing.T) {
	f := newFixture(t, 1)
	h, _ := newHandler(t, f, testToken)
	json := map[string]string{"Content-Type": "application/json"}
	if w := do(h, "POST", "/api/login", remote, `{"token":"wrong"}`, json); w.Code != 401 {
		t.Errorf("login with a wrong token = %d, want 401", w.Code)
	}
	w := do(h, "POST", "/api/login", remote, `{"token":"`+testToken+`"}`, json)
	if w.Code != http.StatusNoContent {
		t.Fatalf("login = %d %s, want 204", w.Code, w.Body)
	}
	c := w.Result().Cookies()
	if len(c) != 1 || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || strings.Contains(c[0].Value, testToken) {
		t.Fatalf("login cookie = %+v, want one HttpOnly SameSite=Strict cookie without the token", c)
	}
	w = do(h, "GET", "/api/state", remote, "", map[string]string{"Cookie": c[0].Name + "=" + c[0].Value})
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"admin":true`) {
		t.Errorf("GET /api/state with the cookie = %d %.100s, want 200 and admin", w.Code, w.Body)
	}
	noToken, _ := newHandler(t, f, "")
	if w := do(noToken, "POST", "/api/login", local, `{"token":"`+testToken+`"}`, json); w.Code != 403 {
		t.Errorf("login without a configured token = %d, want 403", w.Code)
	}
}

// TestWrite: write actions need the token and valid input; what passes is
// written with the version read.
func TestWrite(t *testing.T) {
	f := newFixture(t, 1)
	h, ctl := newHandler(t, f, testToken)
	noToken, _ := newHandler(t, f, "")
	admin := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range admin {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		h      http.Handler
		path   string
		remote string
		body   string
		header map[string]string
		want   int
		msg    string
	}{
		{"loopback without token", noToken, "/api/services/web/scale", local, `{"replicas":2}`, map[string]string{"Content-Type": "application/json"}, 403, "need the dashboard token"},
		{"loopback, token configured, none sent", h, "/api/services/web/scale", local, `{"replicas":2}`, map[string]string{"Content-Type": "application/json"}, 401, "need the dashboard token"},
		{"remote without token", h, "/api/services/web/scale", remote, `{"replicas":2}`, map[string]string{"Content-Type": "application/json"}, 401, ""},
		{"not JSON", h, "/api/services/web/scale", remote, `replicas=2`, with(map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), 415, "application/json"},
		{"cross origin", h, "/api/services/web/scale", remote, `{"replicas":2}`, with(map[string]string{"Origin": "http://evil.example"}), 403, "cross-origin"},
		{"bad name", h, "/api/services/-web/scale", remote, `{"replicas":2}`, admin, 400, "ref: must be a name or ID"},
		{"long name", h, "/api/services/" + strings.Repeat("a", 64) + "/scale", remote, `{"replicas":2}`, admin, 400, "at most 63"},
		{"unknown field", h, "/api/services/web/scale", remote, `{"replicas":2,"force":true}`, admin, 400, "unknown field"},
		{"missing replicas", h, "/api/services/web/scale", remote, `{}`, admin, 400, "replicas: is required"},
		{"negative replicas", h, "/api/services/web/scale", remote, `{"replicas":-1}`, admin, 400, "must be between 0 and 100000, got -1"},
		{"too many replicas", h, "/api/services/web/scale", remote, `{"replicas":1000000}`, admin, 400, "must be between 0 and 100000"},
		{"fractional replicas", h, "/api/services/web/scale", remote, `{"replicas":1.5}`, admin, 400, "cannot unmarshal"},
		{"two objects", h, "/api/services/web/scale", remote, `{"replicas":1}{"replicas":2}`, admin, 400, "one JSON object"},
		{"too big", h, "/api/services/web/image", remote, `{"image":"` + strings.Repeat("a", 5000) + `"}`, admin, 413, "at most"},
		{"no such service", h, "/api/services/nope/scale", remote, `{"replicas":2}`, admin, 404, "not found"},
		{"bad image", h, "/api/services/web/image", remote, `{"image":"Not An Image"}`, admin, 400, "white space"},
		{"empty image", h, "/api/services/web/image", remote, `{"image":""}`, admin, 400, "is required"},
		{"bad availability", h, "/api/nodes/node1/availability", remote, `{"availability":"off"}`, admin, 400, "must be active, pause or drain"},
		{"no such node", h, "/api/nodes/nope/availability", remote, `{"availability":"drain"}`, admin, 404, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := do(tc.h, "POST", tc.path, tc.remote, tc.body, tc.header)
			if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.msg) {
				t.Errorf("POST %s %s = %d %s, want %d %q", tc.path, tc.body, w.Code, w.Body, tc.want, tc.msg)
			}
		})
	}
	ctl.mu.Lock()
	n := len(ctl.updates)
	ctl.mu.Unlock()
	if n != 0 {
		t.Fatalf("refused requests wrote %d updates", n)
	}

	for _, tc := range []struct{ path, body string }{
		{"/api/services/web/scale", `{"replicas":5}`},
		{"/api/services/svc1/image", `{"image":"registry.example:5000/team/web:2"}`},
		{"/api/nodes/m1/availability", `{"availability":"drain"}`},
	} {
		if w := do(h, "POST", tc.path, remote, tc.body, with(map[string]string{"Origin": "http://10.0.0.1:9242"})); w.Code != 200 {
			t.Errorf("POST %s %s = %d %s, want 200", tc.path, tc.body, w.Code, w.Body)
		}
	}
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	if len(ctl.updates) != 3 {
		t.Fatalf("updates = %d, want 3", len(ctl.updates))
	}
	if u := ctl.updates[0].(*controlv1.UpdateServiceRequest); u.GetRef() != "svc1" || u.GetVersion() == 0 || u.GetSpec().GetReplicated().GetReplicas() != 5 ||
		u.GetSpec().GetTask().GetContainer().GetEnv()[0] != "PASSWORD=hunter2" {
		t.Errorf("scale wrote %v, want svc1 at its version with 5 replicas and the rest of its spec", u)
	}
	if u := ctl.updates[1].(*controlv1.UpdateServiceRequest); u.GetSpec().GetTask().GetContainer().GetImage() != "registry.example:5000/team/web:2" {
		t.Errorf("image update wrote %v", u)
	}
	if u := ctl.updates[2].(*controlv1.UpdateNodeRequest); u.GetRef() != "node1" || u.GetSpec().GetAvailability() != objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN ||
		u.GetSpec().GetAnnotations().GetLabels()["zone"] != "a" {
		t.Errorf("drain wrote %v, want node1 drained, its labels kept", u)
	}
}

// TestLogs: a service's logs are streamed as they come; a bad or unknown
// service is refused before the stream starts.
func TestLogs(t *testing.T) {
	f := newFixture(t, 1)
	h, ctl := newHandler(t, f, "")
	ctl.logs = []*controlv1.TaskLogsResponse{
		{Tasks: []*controlv1.LogTask{{TaskId: taskID(0), ServiceName: "web", Slot: 1, NodeName: "m1"}},
			Lines: []*controlv1.LogLine{{TaskId: taskID(0), Stream: controlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte("hello")}}},
		{Lines: []*controlv1.LogLine{{TaskId: taskID(0), Stream: controlv1.LogStream_LOG_STREAM_STDERR, Data: []byte("oops\xff")}}},
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s := stream(t, srv, "/api/services/web/logs?tail=10")
	var got []string
	for len(got) < 2 {
		name, data, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		var b logBatch
		if err := json.Unmarshal([]byte(data), &b); err != nil || name != "logs" {
			t.Fatalf("event %s %s: %v", name, data, err)
		}
		for _, l := range b.Lines {
			got = append(got, l.Stream+" "+l.Text)
		}
		if b.Tasks != nil && b.Tasks[taskID(0)] != "web.1@m1" {
			t.Errorf("tasks = %v, want web.1@m1", b.Tasks)
		}
	}
	if want := []string{"stdout hello", "stderr oops\uFFFD"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
	for path, want := range map[string]int{"/api/services/nope/logs": 404, "/api/services/web/logs?tail=-1": 400, "/api/services/web/logs?tail=x": 400, "/api/services/.x/logs": 400} {
		if w := do(h, "GET", path, local, "", nil); w.Code != want {
			t.Errorf("GET %s = %d %s, want %d", path, w.Code, w.Body, want)
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode uint32) string {
		p := dir + "/" + name
		if err := writeFile(p, content, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := LoadToken(write("ok", testToken+"\n", 0o600)); err != nil || tok != testToken {
		t.Errorf("LoadToken(ok) = %q, %v, want the token", tok, err)
	}
	for name, tc := range map[string]struct {
		content string
		mode    uint32
		want    string
	}{
		"short":    {"abc", 0o600, "at least 32 characters"},
		"readable": {testToken, 0o644, "chmod 600"},
	} {
		if _, err := LoadToken(write(name, tc.content, tc.mode)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadToken(%s) = %v, want %q", name, err, tc.want)
		}
	}
	if _, err := LoadToken(dir + "/missing"); err == nil {
		t.Error("LoadToken(missing) = nil error")
	}
}

func writeFile(p, content string, mode uint32) error {
	if err := os.WriteFile(p, []byte(content), os.FileMode(mode)); err != nil {
		return err
	}
	return os.Chmod(p, os.FileMode(mode))
}
