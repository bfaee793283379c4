package controlapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// rollbackSpec is a valid service spec with a rollback config.
func rollbackSpec() *objectv1.ServiceSpec {
	spec := validServiceSpec()
	spec.Rollback = &objectv1.UpdateConfig{
		Parallelism:     0,
		Delay:           durationpb.New(time.Second),
		FailureAction:   objectv1.FailureAction_FAILURE_ACTION_CONTINUE,
		Monitor:         durationpb.New(10 * time.Second),
		MaxFailureRatio: 0.5,
		Order:           objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST,
	}
	return spec
}

func TestValidateRollback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*objectv1.ServiceSpec)
		want   []string
	}{
		{"valid", func(*objectv1.ServiceSpec) {}, nil},
		{"unset", func(s *objectv1.ServiceSpec) { s.Rollback = nil }, nil},
		{"pause", func(s *objectv1.ServiceSpec) { s.Rollback.FailureAction = objectv1.FailureAction_FAILURE_ACTION_PAUSE }, nil},
		{"delay negative", func(s *objectv1.ServiceSpec) { s.Rollback.Delay = dur(-1) }, []string{"spec.rollback.delay"}},
		{"monitor negative", func(s *objectv1.ServiceSpec) { s.Rollback.Monitor = dur(-1) }, []string{"spec.rollback.monitor"}},
		{"failure ratio above 1", func(s *objectv1.ServiceSpec) { s.Rollback.MaxFailureRatio = 1.5 }, []string{"spec.rollback.max_failure_ratio"}},
		{"failure action rollback", func(s *objectv1.ServiceSpec) {
			s.Rollback.FailureAction = objectv1.FailureAction_FAILURE_ACTION_ROLLBACK
		}, []string{"spec.rollback.failure_action"}},
		{"failure action unknown", func(s *objectv1.ServiceSpec) { s.Rollback.FailureAction = 9 }, []string{"spec.rollback.failure_action"}},
		{"order unknown", func(s *objectv1.ServiceSpec) { s.Rollback.Order = -1 }, []string{"spec.rollback.order"}},
	} {
		spec := rollbackSpec()
		tc.change(spec)
		if got := fields(t, ValidateServiceSpec(spec)); !slices.Equal(got, tc.want) {
			t.Errorf("ValidateServiceSpec(%s) fields = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRollbackRefused: a create or update with a bad rollback config is
// refused naming the field, and writes nothing.
func TestRollbackRefused(t *testing.T) {
	bad := rollbackSpec()
	bad.Rollback.FailureAction = objectv1.FailureAction_FAILURE_ACTION_ROLLBACK
	for _, tc := range []struct {
		name string
		call func(t *testing.T, s *Server) error
	}{
		{"create", func(t *testing.T, s *Server) error {
			_, err := s.CreateService(t.Context(), &controlv1.CreateServiceRequest{Spec: bad})
			return err
		}},
		{"update", func(t *testing.T, s *Server) error {
			if _, err := s.CreateService(t.Context(), &controlv1.CreateServiceRequest{Spec: validServiceSpec()}); err != nil {
				t.Fatal(err)
			}
			return updateSpec(t.Context(), s, "web", bad)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newTestServer(t)
			err := sdk.FromGRPC(tc.call(t, s))
			if got := fields(t, err); !slices.Equal(got, []string{"spec.rollback.failure_action"}) {
				t.Fatalf("got %v, want InvalidArgument naming spec.rollback.failure_action", err)
			}
			if !strings.Contains(err.Error(), "FAILURE_ACTION_PAUSE, FAILURE_ACTION_CONTINUE") {
				t.Errorf("got %q, want it to give the allowed values", err)
			}
			for _, svc := range services(r) {
				if svc.GetSpec().GetRollback() != nil {
					t.Errorf("stored a refused rollback config: %v", svc)
				}
			}
			if tc.name == "create" && len(services(r)) != 0 {
				t.Errorf("stored services after a refused create: %v", services(r))
			}
		})
	}
}

func TestRollbackDefaults(t *testing.T) {
	spec := validServiceSpec()
	ApplyServiceDefaults(spec)
	if spec.Rollback != nil {
		t.Errorf("ApplyServiceDefaults filled an unset rollback config: %v; want it unset (as the update config)", spec.Rollback)
	}
	spec.Rollback = &objectv1.UpdateConfig{Parallelism: 3}
	ApplyServiceDefaults(spec)
	want := &objectv1.UpdateConfig{
		Parallelism:   3,
		FailureAction: objectv1.FailureAction_FAILURE_ACTION_PAUSE,
		Monitor:       durationpb.New(DefaultUpdateMonitor),
		Order:         objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST,
	}
	if !proto.Equal(spec.Rollback, want) {
		t.Errorf("ApplyServiceDefaults(rollback parallelism 3) = %v, want %v", spec.Rollback, want)
	}
}

func TestMarkRollback(t *testing.T) {
	v1, v2 := validServiceSpec(), validServiceSpec()
	v2.Task.Container.Image = "registry.local:5000/team/web:2"
	cur := &objectv1.Service{Id: "s", Spec: v2, PreviousSpec: v1, SpecVersion: 2}
	now := time.Unix(100, 0)

	back := &objectv1.Service{Id: "s", Spec: v1, PreviousSpec: v2, SpecVersion: 3}
	markRollback(cur, back, now)
	if st := back.GetUpdateStatus(); st.GetState() != objectv1.UpdateState_UPDATE_STATE_ROLLBACK_STARTED || st.GetSpecVersion() != 3 || !st.GetStartedAt().AsTime().Equal(now) {
		t.Errorf("markRollback(back to previous_spec) status = %v, want ROLLBACK_STARTED for spec_version 3", st)
	}

	other := proto.Clone(back).(*objectv1.Service)
	other.UpdateStatus = nil
	other.Spec.Task.Container.Image = "registry.local:5000/team/web:3"
	markRollback(cur, other, now)
	if other.GetUpdateStatus() != nil {
		t.Errorf("markRollback(a new spec) status = %v, want none: an update", other.GetUpdateStatus())
	}
}
