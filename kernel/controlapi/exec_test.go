package controlapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// TestValidExecStart: an exec's start is bounded as a service's command
// is, and every bad field is named.
func TestValidExecStart(t *testing.T) {
	ok := func() *controlv1.TaskExecStart {
		return &controlv1.TaskExecStart{Task: "web.1", Cmd: []string{"sh", "-c", "echo hi"}, Env: []string{"A=1"}}
	}
	if err := validExecStart(ok()); err != nil {
		t.Fatalf("valid start: %v", err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*controlv1.TaskExecStart)
	}{
		{"start.task", func(s *controlv1.TaskExecStart) { s.Task = "" }},
		{"start.task", func(s *controlv1.TaskExecStart) { s.Task = strings.Repeat("x", maxRefLen+1) }},
		{"start.cmd", func(s *controlv1.TaskExecStart) { s.Cmd = nil }},
		{"start.cmd", func(s *controlv1.TaskExecStart) { s.Cmd = make([]string, maxArgs+1) }},
		{"start.cmd[0]", func(s *controlv1.TaskExecStart) { s.Cmd = []string{""} }},
		{"start.cmd[1]", func(s *controlv1.TaskExecStart) { s.Cmd[1] = strings.Repeat("x", maxArgLen+1) }},
		{"start.env", func(s *controlv1.TaskExecStart) { s.Env = make([]string, maxEnv+1) }},
		{"start.env[0]", func(s *controlv1.TaskExecStart) { s.Env = []string{"=x"} }},
		{"start.working_dir", func(s *controlv1.TaskExecStart) { s.WorkingDir = strings.Repeat("x", maxPathLen+1) }},
		{"start.user", func(s *controlv1.TaskExecStart) { s.User = strings.Repeat("x", 100) }},
		{"start.size", func(s *controlv1.TaskExecStart) {
			s.Size = &controlv1.TerminalSize{Width: maxTerminalSide + 1, Height: 1}
		}},
	} {
		st := ok()
		tc.edit(st)
		err := validExecStart(st)
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("start with a bad %s: %v, want an invalid argument naming it", tc.field, err)
		}
	}
}
