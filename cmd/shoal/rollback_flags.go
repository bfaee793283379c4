package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// rollbackFlags are the --rollback-* flags of service create and update:
// the spec's rollback config, as the --update-* flags set its update
// config. A spec without one rolls back as it updates.
type rollbackFlags struct {
	parallelism   uint64
	delay         time.Duration
	failureAction objectv1.FailureAction
	monitor       time.Duration
	maxFailure    float32
	order         objectv1.UpdateOrder
}

// rollbackFailureActions are the failure actions a rollback takes: it is
// not rolled back in turn (docker allows only pause|continue too).
var rollbackFailureActions = map[int32]string{
	int32(objectv1.FailureAction_FAILURE_ACTION_PAUSE):    objectv1.FailureAction_FAILURE_ACTION_PAUSE.String(),
	int32(objectv1.FailureAction_FAILURE_ACTION_CONTINUE): objectv1.FailureAction_FAILURE_ACTION_CONTINUE.String(),
}

func (f *rollbackFlags) add(fs *pflag.FlagSet) {
	fs.Uint64Var(&f.parallelism, "rollback-parallelism", 1, "tasks replaced at once by a rollback (0: all)")
	fs.DurationVar(&f.delay, "rollback-delay", 0, "delay between rollback batches")
	fs.Var(newEnumValue(&f.failureAction, "FAILURE_ACTION_", rollbackFailureActions),
		"rollback-failure-action", "what a rollback does when tasks fail")
	fs.DurationVar(&f.monitor, "rollback-monitor", 0, "how long each task of a rollback is watched for failure (default 5s)")
	fs.Float32Var(&f.maxFailure, "rollback-max-failure-ratio", 0, "fraction of a rollback's tasks that may fail before its failure action applies, 0 to 1")
	fs.Var(newEnumValue(&f.order, "UPDATE_ORDER_", objectv1.UpdateOrder_name),
		"rollback-order", "stop the old task before or after its replacement starts, in a rollback")
}

// apply sets in spec the rollback settings the given flags say, and
// nothing else.
func (f *rollbackFlags) apply(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("rollback-parallelism") {
		rollbackOf(spec).Parallelism = f.parallelism
	}
	if set("rollback-delay") {
		rollbackOf(spec).Delay = durationpb.New(f.delay)
	}
	if set("rollback-failure-action") {
		rollbackOf(spec).FailureAction = f.failureAction
	}
	if set("rollback-monitor") {
		rollbackOf(spec).Monitor = durationpb.New(f.monitor)
	}
	if set("rollback-max-failure-ratio") {
		rollbackOf(spec).MaxFailureRatio = f.maxFailure
	}
	if set("rollback-order") {
		rollbackOf(spec).Order = f.order
	}
}

// rollbackOf returns s's rollback config, making one when s has none. A
// new one replaces one task at a time, docker's default: 0 in a config
// that was sent means all at once, so a create with only --rollback-delay
// must not send 0.
func rollbackOf(s *objectv1.ServiceSpec) *objectv1.UpdateConfig {
	if s.Rollback == nil {
		s.Rollback = &objectv1.UpdateConfig{Parallelism: 1}
	}
	return s.Rollback
}

// writeRollbackPretty prints a service's rollback config for people, after
// the rest of service inspect --pretty; nothing when it has none (it rolls
// back as it updates).
func writeRollbackPretty(w io.Writer, svc *objectv1.Service) error {
	r := svc.GetSpec().GetRollback()
	if r == nil {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "Rollback config:")
	field := func(name, value string) { fmt.Fprintf(tw, " %s:\t%s\n", name, value) }
	field("Parallelism", fmt.Sprint(r.GetParallelism()))
	if r.GetDelay() != nil {
		field("Delay", r.GetDelay().AsDuration().String())
	}
	field("Failure action", enumName(r.GetFailureAction().String(), "FAILURE_ACTION_"))
	field("Order", enumName(r.GetOrder().String(), "UPDATE_ORDER_"))
	if m := r.GetMonitor(); m != nil {
		field("Monitor", m.AsDuration().String())
	}
	field("Max failure ratio", fmt.Sprint(r.GetMaxFailureRatio()))
	return tw.Flush()
}
