package schedulertest_test

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
	"github.com/shoalhq/shoal/sdk/scheduler/schedulertest"
)

// TestRun: a scheduler that keeps the contract passes the kit.
func TestRun(t *testing.T) {
	schedulertest.Run(t, func() scheduler.Scheduler { return newFirstFit() })
}

// flawEnv names the flaw TestFlawedScheduler runs the kit against, in a
// child process of TestRunCatchesFlaws.
const flawEnv = "SCHEDULERTEST_FLAW"

// flaws are schedulers that break one rule each: firstFit with a wrapper.
var flaws = map[string]func() scheduler.Scheduler{
	"drops-decision": wrap(func(resp *schedulerv1.ScheduleResponse) {
		if n := len(resp.Decisions); n > 0 {
			resp.Decisions = resp.Decisions[:n-1]
		}
	}),
	"ghost-node": wrap(func(resp *schedulerv1.ScheduleResponse) {
		for _, d := range resp.Decisions {
			if d.NodeId != "" {
				d.NodeId = "ghost"
				return
			}
		}
	}),
	"empty-refusal": wrap(func(resp *schedulerv1.ScheduleResponse) {
		for _, d := range resp.Decisions {
			d.Refusal = ""
		}
	}),
	"refuses-all": wrap(func(resp *schedulerv1.ScheduleResponse) {
		for _, d := range resp.Decisions {
			d.NodeId, d.Refusal = "", "busy"
		}
	}),
	"ignores-constraints": rewrite(func(req *schedulerv1.ScheduleRequest) {
		for _, t := range req.Tasks {
			if t.Placement != nil {
				t.Placement.Constraints = nil
			}
		}
	}),
	"ignores-reservations": rewrite(func(req *schedulerv1.ScheduleRequest) {
		for _, t := range req.Tasks {
			t.Reservations = nil
		}
	}),
	"ignores-caps": rewrite(func(req *schedulerv1.ScheduleRequest) {
		for _, t := range req.Tasks {
			if t.Placement != nil {
				t.Placement.MaxReplicasPerNode = 0
			}
		}
	}),
	// Compares host names exactly: hex-encoding the host names and the
	// values compared with them keeps equal only what is byte for byte.
	"exact-hostnames": rewrite(func(req *schedulerv1.ScheduleRequest) {
		for _, n := range req.UpsertNodes {
			n.Hostname = hex.EncodeToString([]byte(n.Hostname))
		}
		for _, t := range req.Tasks {
			for i, expr := range t.GetPlacement().GetConstraints() {
				if c, err := scheduler.ParseConstraint(expr); err == nil && c.Attribute().String() == scheduler.KeyHostname {
					t.Placement.Constraints[i] = scheduler.KeyHostname + c.Op() + hex.EncodeToString([]byte(c.Value()))
				}
			}
		}
	}),
	"ignores-view-base": rewrite(func(req *schedulerv1.ScheduleRequest) { req.ViewBase = 0 }),
	"ignores-removals":  rewrite(func(req *schedulerv1.ScheduleRequest) { req.RemovedNodes = nil }),
	"random-order":      func() scheduler.Scheduler { return shuffled{newFirstFit()} },
	"ignores-cancel": func() scheduler.Scheduler {
		ff := newFirstFit()
		return scheduler.Func(func(_ context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
			return ff.Schedule(context.Background(), req)
		})
	},
	"double-counts":      func() scheduler.Scheduler { return &doubleCounting{inner: newFirstFit()} },
	"accepts-any-config": func() scheduler.Scheduler { return lax{newFirstFit()} },
}

// TestRunCatchesFlaws runs the kit, in a child process, against schedulers
// that each break a rule, and checks that the kit fails them in the right
// check with a message that says what is wrong.
func TestRunCatchesFlaws(t *testing.T) {
	cases := []struct {
		flaw   string
		checks []string // subtests that must fail
		msg    string   // in the output
	}{
		{"drops-decision", []string{"InProcess/OneDecisionPerTask", "GRPC/OneDecisionPerTask"}, "has no decision, want exactly one decision per task"},
		{"ghost-node", []string{"InProcess/OnlyViewNodes", "GRPC/OnlyViewNodes"}, `is placed on node "ghost", which is not in the view`},
		{"empty-refusal", []string{"InProcess/RefusalsHaveReasons", "GRPC/RefusalsHaveReasons"}, "with an empty refusal"},
		{"refuses-all", []string{"InProcess/PlacesTasksThatFit", "GRPC/PlacesTasksThatFit"}, `tasks are not placed (some node of the view can take each); first, task plain-0 refused ("busy")`},
		{"ignores-constraints", []string{"InProcess/Constraints", "GRPC/Constraints"}, "which does not meet its constraint"},
		{"ignores-reservations", []string{"InProcess/NoOvercommit", "GRPC/NoOvercommitAcrossBatches"}, "CPU over-committed"},
		{"ignores-caps", []string{"InProcess/MaxReplicasPerNode", "GRPC/MaxReplicasPerNode"}, "over its max_replicas_per_node 2"},
		{"exact-hostnames", []string{"InProcess/Constraints", "GRPC/Constraints"}, `which does not meet its constraint "node.hostname!=Host-N1": node.hostname is "host-n1", which is "Host-N1" ignoring case`},
		{"ignores-view-base", []string{"InProcess/ViewVersioning", "GRPC/ViewVersioning"}, "want an error: the scheduler holds no view yet"},
		{"ignores-removals", []string{"InProcess/NodeRemovals", "GRPC/NodeRemovals"}, "which is not in the view (never sent, or removed)"},
		{"random-order", []string{"InProcess/Deterministic", "GRPC/Deterministic"}, "two fresh instances given the same requests differ"},
		// Over gRPC a cancelled call never reaches the plugin.
		{"ignores-cancel", []string{"InProcess/Cancellation"}, "want an error wrapping context.Canceled"},
		{"double-counts", []string{"InProcess/NoOvercommitAcrossBatches", "GRPC/NoOvercommitAcrossBatches"}, "counted on top of the reserved totals"},
		{"accepts-any-config", []string{"InProcess/Configure", "GRPC/Configure"}, "want an error of kind sdk.ErrInvalidArgument"},
	}
	if len(cases) != len(flaws) {
		t.Fatalf("%d cases for %d flaws, want one case per flaw", len(cases), len(flaws))
	}
	for _, tc := range cases {
		t.Run(tc.flaw, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestFlawedScheduler$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), flawEnv+"="+tc.flaw)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed a scheduler that %s, want it to fail:\n%s", tc.flaw, out)
			}
			for _, c := range tc.checks {
				if !strings.Contains(string(out), "--- FAIL: TestFlawedScheduler/"+c+" ") {
					t.Errorf("the kit did not fail check %s for a scheduler that %s:\n%s", c, tc.flaw, out)
				}
			}
			if !strings.Contains(string(out), tc.msg) {
				t.Errorf("the kit's output for a scheduler that %s lacks %q:\n%s", tc.flaw, tc.msg, out)
			}
		})
	}
}

// TestFlawedScheduler is the child process of TestRunCatchesFlaws.
func TestFlawedScheduler(t *testing.T) {
	name := os.Getenv(flawEnv)
	if name == "" {
		t.Skip("run by TestRunCatchesFlaws")
	}
	schedulertest.Run(t, flaws[name])
}

// wrap returns firstFit with its responses altered by f.
func wrap(f func(*schedulerv1.ScheduleResponse)) func() scheduler.Scheduler {
	return func() scheduler.Scheduler {
		ff := newFirstFit()
		return scheduler.Func(func(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
			resp, err := ff.Schedule(ctx, req)
			if err == nil {
				f(resp)
			}
			return resp, err
		})
	}
}

// rewrite returns firstFit given a copy of each request altered by f.
func rewrite(f func(*schedulerv1.ScheduleRequest)) func() scheduler.Scheduler {
	return func() scheduler.Scheduler {
		ff := newFirstFit()
		return scheduler.Func(func(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
			req = proto.CloneOf(req)
			f(req)
			return ff.Schedule(ctx, req)
		})
	}
}

// shuffled decides tasks in a random order (answering in the request's).
type shuffled struct{ inner *firstFit }

func (s shuffled) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	req = proto.CloneOf(req)
	order := req.Tasks
	req.Tasks = append([]*schedulerv1.TaskInfo(nil), order...)
	rand.Shuffle(len(req.Tasks), func(i, j int) { req.Tasks[i], req.Tasks[j] = req.Tasks[j], req.Tasks[i] })
	resp, err := s.inner.Schedule(ctx, req)
	if err != nil {
		return nil, err
	}
	byTask := make(map[string]*schedulerv1.Decision)
	for _, d := range resp.Decisions {
		byTask[d.TaskId] = d
	}
	resp.Decisions = resp.Decisions[:0]
	for _, t := range order {
		resp.Decisions = append(resp.Decisions, byTask[t.Id])
	}
	return resp, nil
}

// doubleCounting remembers its own placements and adds them to the
// reservations the kernel sends, which already include them.
type doubleCounting struct {
	inner *firstFit
	extra map[string]*objectv1.Resources
}

func (d *doubleCounting) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	req = proto.CloneOf(req)
	if req.ViewBase == 0 || d.extra == nil {
		d.extra = make(map[string]*objectv1.Resources)
	}
	for _, n := range req.UpsertNodes {
		if e := d.extra[n.Id]; e != nil {
			n.Reserved = &objectv1.Resources{NanoCpus: n.GetReserved().GetNanoCpus() + e.NanoCpus, MemoryBytes: n.GetReserved().GetMemoryBytes() + e.MemoryBytes}
		}
	}
	resp, err := d.inner.Schedule(ctx, req)
	if err != nil {
		return nil, err
	}
	for i, dec := range resp.Decisions {
		if dec.NodeId == "" {
			continue
		}
		e := d.extra[dec.NodeId]
		if e == nil {
			e = &objectv1.Resources{}
			d.extra[dec.NodeId] = e
		}
		e.NanoCpus += req.Tasks[i].GetReservations().GetNanoCpus()
		e.MemoryBytes += req.Tasks[i].GetReservations().GetMemoryBytes()
	}
	return resp, nil
}

// lax accepts any config, unknown keys included.
type lax struct{ *firstFit }

func (lax) Configure(context.Context, []byte) error { return nil }

// pluginEnv names a scheduler plugin binary TestPluginBinary runs the kit
// against: how a plugin written in another language uses the kit.
const pluginEnv = "SHOAL_SCHEDULER_PLUGIN"

// TestPluginBinary runs the kit against the plugin binary named by
// $SHOAL_SCHEDULER_PLUGIN. The bundled plugins' own tests call RunBinary.
func TestPluginBinary(t *testing.T) {
	path := os.Getenv(pluginEnv)
	if path == "" {
		t.Skip("set " + pluginEnv + " to a scheduler plugin binary to check it")
	}
	schedulertest.RunBinary(t, path)
}
