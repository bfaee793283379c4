package controlapi

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestValidLogsRequest(t *testing.T) {
	many := make([]string, maxLogTaskRefs+1)
	for i := range many {
		many[i] = "t"
	}
	for _, tc := range []struct {
		name   string
		req    *controlv1.TaskLogsRequest
		fields []string // none when valid
	}{
		{"service", &controlv1.TaskLogsRequest{Service: "web", Follow: true}, nil},
		{"tasks, tail 0", &controlv1.TaskLogsRequest{TaskRefs: []string{"a", "b"}, Tail: proto.Int64(0)}, nil},
		{"nothing", &controlv1.TaskLogsRequest{}, []string{"service"}},
		{"both", &controlv1.TaskLogsRequest{Service: "web", TaskRefs: []string{"a"}}, []string{"task_refs"}},
		{"empty ref", &controlv1.TaskLogsRequest{TaskRefs: []string{"a", ""}}, []string{"task_refs[1]"}},
		{"too many", &controlv1.TaskLogsRequest{TaskRefs: many}, []string{"task_refs"}},
		{"negative tail", &controlv1.TaskLogsRequest{Service: "web", Tail: proto.Int64(-1)}, []string{"tail"}},
	} {
		err := validLogsRequest(tc.req)
		if len(tc.fields) == 0 {
			if err != nil {
				t.Errorf("%s: validLogsRequest = %v, want nil", tc.name, err)
			}
			continue
		}
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("%s: validLogsRequest = %v, want field errors", tc.name, err)
			continue
		}
		for i, f := range tc.fields {
			if i >= len(fe) || fe[i].Field != f {
				t.Errorf("%s: errors %v, want fields %v", tc.name, fe, tc.fields)
				break
			}
		}
	}
}

func TestLogTask(t *testing.T) {
	const (
		running  = objectv1.TaskState_TASK_STATE_RUNNING
		shutdown = objectv1.TaskState_TASK_STATE_SHUTDOWN
	)
	for _, tc := range []struct {
		node     string
		desired  objectv1.TaskState
		observed objectv1.TaskState
		want     bool
	}{
		{"n1", running, running, true},
		{"n1", running, objectv1.TaskState_TASK_STATE_STARTING, true},
		{"n1", running, objectv1.TaskState_TASK_STATE_FAILED, true},     // restarting: still on its node
		{"n1", shutdown, running, true},                                 // being stopped
		{"n1", shutdown, objectv1.TaskState_TASK_STATE_COMPLETE, false}, // dropped from its node
		{"n1", running, objectv1.TaskState_TASK_STATE_PREPARING, false}, // wrote nothing yet
		{"", running, objectv1.TaskState_TASK_STATE_PENDING, false},
	} {
		tk := &objectv1.Task{Id: "t", NodeId: tc.node, DesiredState: tc.desired, Status: &objectv1.TaskStatus{State: tc.observed}}
		if got := logTask(tk); got != tc.want {
			t.Errorf("logTask(node %q, desired %v, observed %v) = %v, want %v", tc.node, tc.desired, tc.observed, got, tc.want)
		}
	}
}
