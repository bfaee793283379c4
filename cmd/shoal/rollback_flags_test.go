package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestServiceCreateRollbackFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *objectv1.UpdateConfig
	}{
		{"none", nil, nil},
		{
			name: "every flag",
			args: []string{
				"--rollback-parallelism", "0", "--rollback-delay", "10s", "--rollback-failure-action", "continue",
				"--rollback-monitor", "30s", "--rollback-max-failure-ratio", "0.25", "--rollback-order", "start-first",
			},
			want: &objectv1.UpdateConfig{
				Parallelism:     0,
				Delay:           durationpb.New(10 * time.Second),
				FailureAction:   objectv1.FailureAction_FAILURE_ACTION_CONTINUE,
				Monitor:         durationpb.New(30 * time.Second),
				MaxFailureRatio: 0.25,
				Order:           objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST,
			},
		},
		{
			// 0 sent means all at once: a rollback config made for another
			// flag keeps the default of one at a time.
			name: "rollback delay alone keeps one task at a time",
			args: []string{"--rollback-delay", "10s"},
			want: &objectv1.UpdateConfig{Parallelism: 1, Delay: durationpb.New(10 * time.Second)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			host := f.serve(t)
			args := append(append([]string{"service", "create", "--detach"}, tt.args...), "img")
			res := runCLI(host, args...)
			if res.code != 0 || len(f.creates) != 1 {
				t.Fatalf("%v: exit %d, %d CreateService calls, stderr %q; want exit 0, 1 call", args, res.code, len(f.creates), res.stderr)
			}
			spec := f.creates[0].Spec
			if got := spec.GetRollback(); !proto.Equal(got, tt.want) {
				t.Errorf("%v: rollback = %v, want %v", args, got, tt.want)
			}
			if spec.GetUpdate() != nil {
				t.Errorf("%v: update = %v, want none: --rollback-* set the rollback config only", args, spec.GetUpdate())
			}
		})
	}
}

// TestServiceUpdateRollbackFlags: on update, only the flags given change
// the rollback config.
func TestServiceUpdateRollbackFlags(t *testing.T) {
	tests := []struct {
		name   string
		before *objectv1.UpdateConfig
		args   []string
		want   *objectv1.UpdateConfig
	}{
		{
			name: "a new rollback config",
			args: []string{"--rollback-order", "start-first"},
			want: &objectv1.UpdateConfig{Parallelism: 1, Order: objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST},
		},
		{
			name:   "the rest is kept",
			before: &objectv1.UpdateConfig{Parallelism: 4, Monitor: durationpb.New(time.Minute), FailureAction: objectv1.FailureAction_FAILURE_ACTION_PAUSE},
			args:   []string{"--rollback-parallelism", "0", "--rollback-failure-action", "continue"},
			want:   &objectv1.UpdateConfig{Parallelism: 0, Monitor: durationpb.New(time.Minute), FailureAction: objectv1.FailureAction_FAILURE_ACTION_CONTINUE},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeControl()
			seed(f)
			f.services[webID].Spec.Rollback = tt.before
			want := proto.CloneOf(f.services[webID].Spec)
			want.Rollback = tt.want
			host := f.serve(t)
			args := append(append([]string{"service", "update", "--detach"}, tt.args...), "web")
			res := runCLI(host, args...)
			if res.code != 0 || len(f.updates) != 1 {
				t.Fatalf("%v: exit %d, %d UpdateService calls, stderr %q; want exit 0, 1 call", args, res.code, len(f.updates), res.stderr)
			}
			if got := f.updates[0].Spec; !proto.Equal(got, want) {
				t.Errorf("%v: spec = %v, want %v", args, got, want)
			}
		})
	}
}

func TestServiceRollbackBadFlag(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--rollback-failure-action", "rollback"}, `"--rollback-failure-action" flag: want one of pause, continue`},
		{[]string{"--rollback-order", "random"}, `"--rollback-order" flag`},
		{[]string{"--rollback-monitor", "5"}, `"--rollback-monitor" flag`},
		{[]string{"--rollback-max-failure-ratio", "a tenth"}, `"--rollback-max-failure-ratio" flag`},
		{[]string{"--rollback-parallelism", "-1"}, `"--rollback-parallelism" flag`},
	}
	for _, tt := range tests {
		f := newFakeControl()
		host := f.serve(t)
		args := append(append([]string{"service", "create", "--name", "web"}, tt.args...), "nginx")
		res := runCLI(host, args...)
		if res.code != 1 || !strings.Contains(res.stderr, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want exit 1, an error with %q", tt.args, res.code, res.stderr, tt.wantErr)
		}
		if len(f.calls) != 0 {
			t.Errorf("%v: server got %v, want nothing", tt.args, f.calls)
		}
	}
}

func TestPrettyRollbackConfig(t *testing.T) {
	svc := &objectv1.Service{Id: "s1", Spec: &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "p1"},
		Rollback: &objectv1.UpdateConfig{
			Parallelism:   0,
			Delay:         durationpb.New(time.Second),
			FailureAction: objectv1.FailureAction_FAILURE_ACTION_CONTINUE,
			Monitor:       durationpb.New(5 * time.Second),
			Order:         objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST,
		},
	}}
	var b strings.Builder
	if err := writeRollbackPretty(&b, svc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{"Rollback config:", "Parallelism: 0", "Delay: 1s", "Failure action: continue", "Order: start-first", "Monitor: 5s", "Max failure ratio: 0"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rollback config printed\n%s\nwant\n%s", b.String(), strings.Join(want, "\n"))
	}
	b.Reset()
	svc.Spec.Rollback = nil
	if err := writeRollbackPretty(&b, svc); err != nil || b.Len() != 0 {
		t.Errorf("no rollback config printed %q, %v; want nothing", b.String(), err)
	}
}
