package simexec

import (
	"strconv"
	"strings"
	"testing"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// simTask is the conformance kit's task for the simulated executor: the
// behaviour goes in the environment.
func simTask(id string, b executortest.Behaviour) *objectv1.Task {
	var env []string
	if len(b.Stdout) > 0 {
		env = append(env, EnvStdout+"="+strings.Join(b.Stdout, "\n"))
	}
	if len(b.Stderr) > 0 {
		env = append(env, EnvStderr+"="+strings.Join(b.Stderr, "\n"))
	}
	if b.Sleep < executortest.Forever {
		env = append(env, EnvExitAfter+"="+max(b.Sleep, 1).String())
	}
	env = append(env, EnvExitCode+"="+strconv.Itoa(b.ExitCode))
	if b.IgnoreTerm {
		env = append(env, EnvIgnoreStop+"=1")
	}
	return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: "sim", Env: env}}}
}

func TestConformance(t *testing.T) {
	// The simulated executor's state is its memory: the Executor value is
	// what a restarted agent or plugin finds again.
	e := New(Config{})
	executortest.Run(t, executortest.Config{
		New:   func(*testing.T) executor.Executor { return e },
		Task:  simTask,
		Files: true,
		Unpreparable: func(id string) *objectv1.Task {
			return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
				Image: "registry.invalid/missing:1",
				Env:   []string{EnvFailPrepare + "=pull registry.invalid/missing:1: not found"},
			}}}
		},
	})
}
