package clustertest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The linearizability check: clients create, read, update (with the
// version they read) and remove a few services through all three managers
// while the leader is SIGKILLed, SIGSTOPped and cut off from the others in
// turn. Every answer goes into a history that porcupine checks against a
// register per service. An answer the client did not get (a timeout, an
// unavailable manager) may or may not have taken effect; every other answer
// must say what happened.

// linInput is one call.
type linInput struct {
	op     string // get, create, update, remove
	key    string // the service's name
	value  string // create, update: the value written (unique)
	expect string // update: the value the client read at the version it sends
}

// linOutput is its answer.
type linOutput struct {
	known  bool       // false: no answer, the call may or may not have applied
	code   codes.Code // the answer's code when known
	exists bool       // get
	value  string     // get
}

// linState is one service as the model sees it.
type linState struct {
	exists bool
	value  string
}

func linStep(state, input, output any) []any {
	s, in, out := state.(linState), input.(linInput), output.(linOutput)
	var (
		applies bool     // the call would change s...
		next    linState // ...into next
	)
	switch in.op {
	case "get":
		if out.known && out.code == codes.OK && out.exists == s.exists && (!s.exists || out.value == s.value) {
			return []any{s}
		}
		return nil
	case "create":
		applies, next = !s.exists, linState{exists: true, value: in.value}
		if out.known && out.code == codes.AlreadyExists && s.exists {
			return []any{s}
		}
	case "update":
		applies, next = s.exists && s.value == in.expect, linState{exists: true, value: in.value}
		if out.known && ((out.code == codes.FailedPrecondition && s.exists && !applies) || (out.code == codes.NotFound && !s.exists)) {
			return []any{s}
		}
	case "remove":
		applies, next = s.exists, linState{}
		if out.known && out.code == codes.NotFound && !s.exists {
			return []any{s}
		}
	}
	switch {
	case !out.known && applies:
		return []any{s, next}
	case !out.known:
		return []any{s}
	case out.code == codes.OK && applies:
		return []any{next}
	}
	return nil
}

var linModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(linInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = by[k]
		}
		return out
	},
	Init: func() []any { return []any{linState{}} },
	Step: linStep,
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		res := "?"
		if out.known {
			res = out.code.String()
			if in.op == "get" && out.exists {
				res = out.value
			}
		}
		switch in.op {
		case "update":
			return fmt.Sprintf("update(%s: %s -> %s) = %s", in.key, in.expect, in.value, res)
		case "create":
			return fmt.Sprintf("create(%s = %s) = %s", in.key, in.value, res)
		}
		return fmt.Sprintf("%s(%s) = %s", in.op, in.key, res)
	},
	DescribeState: func(state any) string {
		if s := state.(linState); s.exists {
			return s.value
		}
		return "(none)"
	},
}

// linHistory collects the operations of all clients.
type linHistory struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// acked counts the writes answered OK; unknown the calls left without
	// an answer.
	acked, unknown int
}

func (h *linHistory) now() int64 { return int64(time.Since(h.start)) }

func (h *linHistory) add(client int, in linInput, out linOutput, call, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !out.known {
		h.unknown++
		if in.op == "get" {
			return // a read nobody saw tells nothing
		}
		// It may take effect at any time from its call on.
		ret = math.MaxInt64
	} else if in.op != "get" && out.code == codes.OK {
		h.acked++
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// linClient is one client's view: the last value and version it read or
// wrote of each service.
type linClient struct {
	id     int
	api    controlv1.ControlClient
	seen   map[string]linState
	vers   map[string]uint64
	seq    int
	broken bool // the last call got no answer: start a new client ID
}

// linTimeout bounds a call. It is short so that the clients of a paused
// manager send new calls while it is paused: the calls a deposed leader finds
// when it resumes are where stale answers hide.
const linTimeout = 1500 * time.Millisecond

func labelled(name, value string) *objectv1.ServiceSpec {
	spec := serviceSpec(name)
	spec.Annotations.Labels = map[string]string{"v": value}
	return spec
}

// do makes one call and records it.
func (c *linClient) do(h *linHistory, in linInput, definite ...codes.Code) {
	ctx, cancel := context.WithTimeout(context.Background(), linTimeout)
	defer cancel()
	call := h.now()
	var (
		svc *objectv1.Service
		err error
	)
	switch in.op {
	case "get":
		var r *controlv1.GetServiceResponse
		r, err = c.api.GetService(ctx, &controlv1.GetServiceRequest{Ref: in.key})
		svc = r.GetService()
	case "create":
		var r *controlv1.CreateServiceResponse
		r, err = c.api.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: labelled(in.key, in.value)})
		svc = r.GetService()
	case "update":
		var r *controlv1.UpdateServiceResponse
		r, err = c.api.UpdateService(ctx, &controlv1.UpdateServiceRequest{Ref: in.key, Version: c.vers[in.key], Spec: labelled(in.key, in.value)})
		svc = r.GetService()
	case "remove":
		_, err = c.api.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: in.key})
	}
	ret := h.now()
	code := status.Code(err)
	if code == codes.Unavailable && strings.Contains(err.Error(), "while dialing") {
		// The manager is down: gRPC sent nothing, the call did not happen.
		time.Sleep(100 * time.Millisecond)
		return
	}
	out := linOutput{code: code}
	for _, d := range append(definite, codes.OK) {
		out.known = out.known || code == d
	}
	if code == codes.OK && in.op != "remove" {
		if svc == nil {
			// An OK with nothing in it says nothing: the history shows it.
			out.known = false
		} else {
			out.exists, out.value = true, svc.GetSpec().GetAnnotations().GetLabels()["v"]
			c.seen[in.key], c.vers[in.key] = linState{exists: true, value: out.value}, svc.GetMeta().GetVersion()
		}
	}
	if in.op == "get" && code == codes.NotFound {
		out.code, out.exists = codes.OK, false
		c.seen[in.key] = linState{}
	}
	if in.op == "remove" && code == codes.OK {
		c.seen[in.key] = linState{}
	}
	h.add(c.id, in, out, call, ret)
	if !out.known {
		c.broken = true
		time.Sleep(100 * time.Millisecond)
	}
}

// step makes a random call on one of keys.
func (c *linClient) step(h *linHistory, keys []string) {
	key := keys[rand.IntN(len(keys))]
	c.seq++
	value := fmt.Sprintf("c%d.%d", c.id, c.seq)
	seen, ok := c.seen[key]
	switch r := rand.IntN(100); {
	case r < 35 || !ok:
		c.do(h, linInput{op: "get", key: key}, codes.NotFound)
	case r < 50 && !seen.exists:
		c.do(h, linInput{op: "create", key: key, value: value}, codes.AlreadyExists)
	case r < 85 && seen.exists:
		c.do(h, linInput{op: "update", key: key, value: value, expect: seen.value}, codes.FailedPrecondition, codes.NotFound)
	case r < 93:
		c.do(h, linInput{op: "remove", key: key}, codes.NotFound)
	default:
		c.do(h, linInput{op: "create", key: key, value: value}, codes.AlreadyExists)
	}
}

// faults is what the fault loop did.
type faults struct{ kills, pauses, partitions int }

func (f faults) String() string {
	return fmt.Sprintf("%d kills, %d pauses, %d partitions", f.kills, f.pauses, f.partitions)
}

// firewall cuts managers off from each other with iptables rules on their
// own loopback addresses.
type firewall struct {
	tb    testing.TB
	mu    sync.Mutex
	rules [][]string
}

func newFirewall(tb testing.TB) *firewall {
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	f := &firewall{tb: tb}
	f.removeLeftovers()
	tb.Cleanup(f.healAll)
	return f
}

// removeLeftovers deletes the rules a killed test process left behind
// (they carry its comment): they would cut this run's managers off.
func (f *firewall) removeLeftovers() {
	out, err := exec.Command("iptables", "-w", "-S", "INPUT").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "shoal-clustertest") || !strings.HasPrefix(line, "-A ") {
			continue
		}
		args := append([]string{"-w", "-D"}, strings.Fields(strings.TrimPrefix(line, "-A "))...)
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			f.tb.Logf("iptables: removing a leftover rule %q: %v: %s", line, err, out)
		}
	}
}

// cutOff drops every packet to and from m's address.
func (f *firewall) cutOff(m *Manager) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, dir := range []string{"-s", "-d"} {
		rule := []string{"INPUT", dir, m.Host, "-m", "comment", "--comment", "shoal-clustertest", "-j", "DROP"}
		if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables: %v: %s", err, out)
		}
		f.rules = append(f.rules, rule)
	}
	return nil
}

func (f *firewall) healAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rule := range f.rules {
		if out, err := exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			f.tb.Errorf("iptables -D: %v: %s", err, out)
		}
	}
	f.rules = nil
}

// leaderOf finds the manager that leads, asking each running one for its
// own view, within timeout.
func leaderOf(c *Cluster, clients map[*Manager]controlv1.ControlClient, timeout time.Duration) *Manager {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, m := range c.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			cl, err := clients[m].GetCluster(LocalRead(ctx), &controlv1.GetClusterRequest{})
			var nodes *controlv1.ListNodesResponse
			if err == nil && cl.GetLeaderId() != "" {
				nodes, err = clients[m].ListNodes(LocalRead(ctx), &controlv1.ListNodesRequest{})
			}
			cancel()
			if err != nil || nodes == nil {
				continue
			}
			for _, n := range nodes.GetNodes() {
				if n.Id != cl.GetLeaderId() {
					continue
				}
				for _, cand := range c.Running() {
					if cand.APIAddr == n.GetManagerStatus().GetApiAddr() {
						return cand
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// linearizabilityRun runs the workload for d with a fault every few
// seconds, then checks the history and the replicas.
func linearizabilityRun(t testing.TB, d time.Duration) (faults, *linHistory) {
	c := Start(t, 3, Options{OwnAddresses: true})
	fw := newFirewall(t)
	if fw == nil {
		t.Logf("not root or no iptables: the leader is killed and paused, not cut off")
	}
	clients := map[*Manager]controlv1.ControlClient{}
	for _, m := range c.Managers {
		clients[m] = m.Client(t)
	}
	keys := []string{"lin-a", "lin-b", "lin-c", "lin-d", "lin-e", "lin-f"}
	h := &linHistory{start: time.Now()}
	end := time.Now().Add(d)

	var (
		wg      sync.WaitGroup
		nextID  atomic.Int64
		workers = 2 * len(c.Managers)
	)
	for w := range workers {
		m := c.Managers[w%len(c.Managers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &linClient{id: int(nextID.Add(1)), api: clients[m], seen: map[string]linState{}, vers: map[string]uint64{}}
			for time.Now().Before(end) {
				cl.step(h, keys)
				if cl.broken {
					// A client that got no answer goes on as another: its
					// pending call stays open in the history.
					cl.id, cl.broken = int(nextID.Add(1)), false
				}
			}
		}()
	}

	done := injectFaults(t, c, clients, fw, end)
	wg.Wait()

	// Every manager answers each key the same, linearizably, and holds the
	// same on its own replica once it caught up.
	if leaderOf(c, clients, 30*time.Second) == nil {
		t.Fatal("no leader after the faults")
	}
	for i, m := range c.Managers {
		cl := &linClient{id: int(nextID.Add(1)), api: clients[m], seen: map[string]linState{}, vers: map[string]uint64{}}
		for _, k := range keys {
			for attempt := 0; ; attempt++ {
				cl.do(h, linInput{op: "get", key: k}, codes.NotFound)
				if !cl.broken {
					break
				}
				if attempt == 10 {
					t.Fatalf("manager %d: no answer to a read of %s after the faults", i, k)
				}
				cl.broken = false
				time.Sleep(time.Second)
			}
		}
	}
	checkReplicas(t, c, clients, keys)

	res, info := porcupine.CheckOperationsVerbose(linModel.ToModel(), h.ops, 2*time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("shoal-linearizability-%d.html", time.Now().Unix()))
		if err := porcupine.VisualizePath(linModel.ToModel(), info, path); err == nil {
			t.Logf("history visualized in %s", path)
		}
		t.Fatalf("history of %d operations (%d writes acknowledged, %d calls unanswered; %s): porcupine says %s",
			len(h.ops), h.acked, h.unknown, done, res)
	}
	return done, h
}

// injectFaults kills, pauses or cuts off (with fw, when there is one) the
// leader in turn, every 1.5s until 8s before end, and counts what it did.
func injectFaults(t testing.TB, c *Cluster, clients map[*Manager]controlv1.ControlClient, fw *firewall, end time.Time) faults {
	t.Helper()
	var done faults
	kinds := []string{"kill", "pause", "kill", "partition"}
	for i := 0; time.Now().Add(8 * time.Second).Before(end); i++ {
		time.Sleep(1500 * time.Millisecond)
		leader := leaderOf(c, clients, 30*time.Second)
		if leader == nil {
			t.Fatal("no leader within 30s")
		}
		switch kind := kinds[i%len(kinds)]; {
		case kind == "kill":
			leader.Kill()
			time.Sleep(time.Second)
			if err := leader.Start(); err != nil {
				t.Fatal(err)
			}
			done.kills++
		case kind == "pause":
			// Long enough for the others to elect a leader and acknowledge
			// writes that the paused one has not seen, and for its own
			// clients to give up on their calls (linTimeout) and send new
			// ones, which it finds waiting when it resumes.
			leader.Pause()
			time.Sleep(4 * time.Second)
			leader.Resume()
			done.pauses++
		case kind == "partition" && fw != nil:
			if err := fw.cutOff(leader); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			fw.healAll()
			done.partitions++
		}
	}
	return done
}

// checkReplicas waits until each manager's own replica holds, for every
// key, what the leader answers.
func checkReplicas(t testing.TB, c *Cluster, clients map[*Manager]controlv1.ControlClient, keys []string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var diff []string
		for _, k := range keys {
			var want string
			for i, m := range c.Managers {
				ctx, cancel := context.WithTimeout(context.Background(), linTimeout)
				lin, lerr := clients[m].GetService(ctx, &controlv1.GetServiceRequest{Ref: k})
				loc, err := clients[m].GetService(LocalRead(ctx), &controlv1.GetServiceRequest{Ref: k})
				cancel()
				got := fmt.Sprintf("%s/%s", status.Code(err), loc.GetService().GetSpec().GetAnnotations().GetLabels()["v"])
				if i == 0 {
					want = fmt.Sprintf("%s/%s", status.Code(lerr), lin.GetService().GetSpec().GetAnnotations().GetLabels()["v"])
				}
				if got != want {
					diff = append(diff, fmt.Sprintf("%s on %s: %s, the leader answers %s", k, m.Name, got, want))
				}
			}
		}
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas differ 30s after the faults:\n%s", strings.Join(diff, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLinearizable is the check, bounded to about a minute; BENCHMARKS.md
// records a longer run (SHOAL_LIN_DURATION=4m, make bench).
func TestLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d := 40 * time.Second
	if v := os.Getenv("SHOAL_LIN_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SHOAL_LIN_DURATION: %v", err)
		}
	}
	done, h := linearizabilityRun(t, d)
	t.Logf("linearizable: %d operations (%d writes acknowledged, %d calls unanswered) through 3 managers in %s with %s",
		len(h.ops), h.acked, h.unknown, d, done)
}
