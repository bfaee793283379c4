// Package schedulertest is the conformance kit for scheduler plugins. A
// plugin's whole conformance test is one call:
//
//	func TestConformance(t *testing.T) {
//		schedulertest.Run(t, func() scheduler.Scheduler { return &myScheduler{} })
//	}
//
// Run plays the kernel's placement stage against fresh instances of the
// scheduler, twice: calling it directly (subtests under "InProcess") and
// through the plugin's real gRPC glue, scheduler.Plugin on one end and
// scheduler.Client on the other (subtests under "GRPC"), so that a plugin
// also learns what survives the wire. RunBinary runs the same checks
// against a plugin binary, in any language, started as the kernel starts it.
// Each check is a subtest whose name says
// which part of the contract it covers; every reply of every check is also
// held to the rules any reply must keep (one decision per task, nodes of the
// view only, a reason with each refusal, constraints met, max_replicas_per_node
// kept, no reservations beyond a node's total).
//
// The checks:
//
//   - Configure: an empty config is accepted; an unknown key is an
//     InvalidArgument naming it (decode with sdk.DecodeConfig).
//   - OneDecisionPerTask, OnlyViewNodes, RefusalsHaveReasons: the shape of
//     every reply, on mixed batches, empty batches and an empty view.
//   - PlacesTasksThatFit: a task some node can take is placed.
//   - Deterministic: two fresh instances given the same requests give
//     identical replies (proto.Equal), over a view full of equal nodes.
//   - NoOvercommit, NoOvercommitAcrossBatches: reservations stay within
//     each total that is set, within a batch and from one batch to the next,
//     where the kernel's node upserts carry the new reservations (and the
//     scheduler must not count its own earlier placements again).
//   - MaxReplicasPerNode: the cap counts a service's tasks already on a node
//     and those the batch places.
//   - ViewVersioning, ViewOnlyRequests, NodeRemovals: the view is kept
//     between calls and changed by deltas, also by requests without tasks;
//     a delta on another version fails with sdk.ErrFailedPrecondition; a
//     full view (view_base 0) replaces it.
//   - Constraints: ==/!= on node.id, node.hostname, node.role,
//     node.platform.os/arch and node.labels.<label>, alone and combined, in
//     the language of scheduler.ParseConstraint: host names compare without
//     regard to ASCII case, every other value exactly (match with
//     scheduler.Constraint, or keep that rule).
//   - Cancellation: a cancelled ctx makes Schedule return ctx.Err().
//
// The kit checks the contract, not a policy: where several nodes fit, any of
// them will do. It does expect a scheduler to place what plainly fits: a
// task without reservations whose constraints some node meets and, when all
// tasks have one size, as many tasks as the free resources or
// max_replicas_per_node allow.
package schedulertest

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/plugintest"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

// Run checks that the schedulers factory makes keep the scheduler contract.
// factory must return a new, independent instance on every call, as a
// freshly started plugin process would be; Run calls Configure (when the
// instance is a scheduler.Configurer) with an empty config before the first
// Schedule, as the kernel does.
func Run(t *testing.T, factory func() scheduler.Scheduler) {
	t.Helper()
	plugintest.BothWays(t, func(t *testing.T, overGRPC bool) {
		plugintest.RunChecks(t, checks, &harness{Source: plugintest.Source[scheduler.Scheduler]{Factory: factory, OverGRPC: overGRPC}})
	})
}

// RunBinary checks that the scheduler plugin binary at path keeps the
// scheduler contract, whatever language it is written in: each check starts
// the binary afresh, as the kernel starts a plugin (go-plugin's handshake,
// gRPC with mutual TLS, sdk.ProtocolVersion), and plays the kernel's
// placement stage against it. The plugin's stderr goes to the test log.
//
// A plugin not written in Go runs it without a line of Go:
//
//	SHOAL_SCHEDULER_PLUGIN=/path/to/plugin go test github.com/shoalhq/shoal/sdk/scheduler/schedulertest -run TestPluginBinary
func RunBinary(t *testing.T, path string) {
	t.Helper()
	plugintest.RunChecks(t, checks, &harness{Source: plugintest.Source[scheduler.Scheduler]{Binary: path}})
}

// checks are the parts of the contract, one subtest each.
var checks = []plugintest.Check[*harness]{
	{Name: "Configure", Run: checkConfigure},
	{Name: "OneDecisionPerTask", Run: checkOneDecisionPerTask},
	{Name: "OnlyViewNodes", Run: checkOnlyViewNodes},
	{Name: "RefusalsHaveReasons", Run: checkRefusalsHaveReasons},
	{Name: "PlacesTasksThatFit", Run: checkPlacesTasksThatFit},
	{Name: "Deterministic", Run: checkDeterministic},
	{Name: "NoOvercommit", Run: checkNoOvercommit},
	{Name: "NoOvercommitAcrossBatches", Run: checkNoOvercommitAcrossBatches},
	{Name: "MaxReplicasPerNode", Run: checkMaxReplicasPerNode},
	{Name: "ViewVersioning", Run: checkViewVersioning},
	{Name: "ViewOnlyRequests", Run: checkViewOnlyRequests},
	{Name: "NodeRemovals", Run: checkNodeRemovals},
	{Name: "Constraints", Run: checkConstraints},
	{Name: "Cancellation", Run: checkCancellation},
}

// harness opens schedulers for the checks: in process or over gRPC (from
// factory), or in a process of the plugin binary.
type harness struct {
	plugintest.Source[scheduler.Scheduler]
}

// instance is one fresh scheduler as a check sees it.
type instance struct {
	scheduler.Scheduler
	// configurer is how to configure it: the implementation itself, or the
	// gRPC client (which is always one); nil when neither.
	configurer scheduler.Configurer
	// implConfigurable is whether the implementation is a Configurer.
	implConfigurable bool
}

// fresh returns a new, unconfigured scheduler.
func (h *harness) fresh(t *testing.T) instance {
	t.Helper()
	in := plugintest.Fresh[scheduler.Scheduler, scheduler.Configurer](t, h.Source, sdk.KindScheduler, func(impl scheduler.Scheduler) plugin.Plugin { return &scheduler.Plugin{Impl: impl} })
	return instance{Scheduler: in.Plugin, configurer: in.Configurer, implConfigurable: in.ImplConfigurable}
}

// open returns a new scheduler configured with an empty config, ready for
// Schedule, as the kernel has it after starting the plugin.
func (h *harness) open(t *testing.T) instance {
	t.Helper()
	in := h.fresh(t)
	if in.configurer != nil {
		if err := in.configurer.Configure(t.Context(), nil); err != nil {
			t.Fatalf("Configure(empty config) = %v, want nil: a scheduler must start with defaults when [plugins.scheduler.config] is unset", err)
		}
	}
	return in
}

// schedule sends req, requires decisions, checks them against the
// contract (reporting with what, a description of the batch for people),
// and commits them into c as the kernel would.
func schedule(t *testing.T, s scheduler.Scheduler, c *cluster, req *schedulerv1.ScheduleRequest, what string) *schedulerv1.ScheduleResponse {
	t.Helper()
	resp, err := s.Schedule(t.Context(), req)
	if err != nil {
		t.Fatalf("%s: Schedule(view_base %d, %d upserts, %d removals, %d tasks) = %v, want decisions",
			what, req.GetViewBase(), len(req.GetUpsertNodes()), len(req.GetRemovedNodes()), len(req.GetTasks()), err)
	}
	for _, p := range c.verify(req, resp) {
		t.Errorf("%s: %s", what, p)
	}
	c.commit(req, resp)
	return resp
}

// scheduleErr sends req with ctx and returns the error, failing the test
// with want (what was expected, for people) when there is none.
func scheduleErr(ctx context.Context, t *testing.T, s scheduler.Scheduler, req *schedulerv1.ScheduleRequest, want string) error {
	t.Helper()
	resp, err := s.Schedule(ctx, req)
	if err == nil {
		t.Errorf("Schedule(view_base %d, view_version %d, %d tasks) = %d decisions and no error, want %s",
			req.GetViewBase(), req.GetViewVersion(), len(req.GetTasks()), len(resp.GetDecisions()), want)
	}
	return err
}

// expectEach reports, in one message, the decisions of resp that ok
// rejects: want says what every decision should be, for people.
func expectEach(t *testing.T, resp *schedulerv1.ScheduleResponse, what, want string, ok func(*schedulerv1.Decision) bool) {
	t.Helper()
	var bad []*schedulerv1.Decision
	for _, d := range resp.GetDecisions() {
		if !ok(d) {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: %d of %d tasks are not %s; first, task %s %s",
			what, len(bad), len(resp.GetDecisions()), want, bad[0].GetTaskId(), decisionString(bad[0]))
	}
}

// decisionOf returns the decision for a task, or nil.
func decisionOf(resp *schedulerv1.ScheduleResponse, taskID string) *schedulerv1.Decision {
	for _, d := range resp.GetDecisions() {
		if d.GetTaskId() == taskID {
			return d
		}
	}
	return nil
}

// placedCount counts the tasks resp placed.
func placedCount(resp *schedulerv1.ScheduleResponse) int {
	n := 0
	for _, d := range resp.GetDecisions() {
		if d.GetNodeId() != "" {
			n++
		}
	}
	return n
}

// decisionString is a decision for messages.
func decisionString(d *schedulerv1.Decision) string {
	if d == nil {
		return "no decision"
	}
	if d.GetNodeId() != "" {
		return "placed on " + d.GetNodeId()
	}
	return fmt.Sprintf("refused (%q)", d.GetRefusal())
}
