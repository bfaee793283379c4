package ctrexec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk/executor"
	"github.com/shoalhq/shoal/sdk/executor/executortest"
)

// progExec is the conformance kit's exec for the test image: its program,
// run again beside the task's.
func progExec(b executortest.ExecBehaviour) []string {
	cmd := []string{"/prog"}
	if b.Stdout != "" {
		cmd = append(cmd, "out:"+b.Stdout)
	}
	if b.Stderr != "" {
		cmd = append(cmd, "err:"+b.Stderr)
	}
	if b.Cat {
		cmd = append(cmd, "cat:/dev/stdin")
	}
	return append(cmd, fmt.Sprintf("exit:%d", b.ExitCode))
}

// TestExecInContainer: the command runs inside the task's container (its
// environment, its working directory, its files), with the request's
// additions; with a terminal its output comes as stdout; a command that
// does not exist exits 127 as docker exec's does.
func TestExecInContainer(t *testing.T) {
	e := newExecutor(t, "", "")
	task := newTask(t, "write:/tmp/mark=in the task", "sleep:inf")
	task.Spec.Container.Env = []string{"FROM_TASK=yes"}
	run(t, e, task)
	waitFor := func(cond func() bool) {
		for range 100 {
			if cond() {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var out, errOut bytes.Buffer
	waitFor(func() bool {
		out.Reset()
		code, err := e.Exec(ctxT(t), task.Id, executor.ExecSpec{Cmd: []string{"/prog", "cat:/tmp/mark"}}, executor.ExecIO{Stdout: &out})
		return err == nil && code == 0
	})
	if out.String() != "in the task" {
		t.Fatalf("exec cat /tmp/mark: stdout %q, want the file the task wrote", out.String())
	}

	out.Reset()
	code, err := e.Exec(ctxT(t), task.Id, executor.ExecSpec{
		Cmd: []string{"/prog", "env:FROM_TASK", "env:ADDED", "pwd"}, Env: []string{"ADDED=1"}, WorkingDir: "/tmp",
	}, executor.ExecIO{Stdout: &out, Stderr: &errOut})
	if want := "FROM_TASK=yes\nADDED=1\n/tmp\n"; err != nil || code != 0 || out.String() != want {
		t.Errorf("exec env, pwd = %d, %v, stdout %q (stderr %q); want 0, stdout %q", code, err, out.String(), errOut.String(), want)
	}

	out.Reset()
	code, err = e.Exec(ctxT(t), task.Id, executor.ExecSpec{Cmd: []string{"/prog", "id"}, User: "1000:1000"}, executor.ExecIO{Stdout: &out})
	if err != nil || code != 0 || out.String() != "uid=1000 gid=1000\n" {
		t.Errorf("exec id as 1000:1000 = %d, %v, stdout %q", code, err, out.String())
	}

	out.Reset()
	resize := make(chan executor.TerminalSize, 1)
	resize <- executor.TerminalSize{Width: 100, Height: 30}
	code, err = e.Exec(ctxT(t), task.Id, executor.ExecSpec{Cmd: []string{"/prog", "out:on a tty", "err:also", "exit:4"}, Tty: true},
		executor.ExecIO{Stdout: &out, Stderr: &errOut, Resize: resize})
	if err != nil || code != 4 || !strings.Contains(out.String(), "on a tty\r\n") || !strings.Contains(out.String(), "also\r\n") {
		t.Errorf("exec on a tty = %d, %v, stdout %q; want 4, both lines on stdout with the terminal's CRLF", code, err, out.String())
	}

	errOut.Reset()
	code, err = e.Exec(ctxT(t), task.Id, executor.ExecSpec{Cmd: []string{"/no/such/program"}}, executor.ExecIO{Stderr: &errOut})
	if err != nil || code != 127 || !strings.Contains(errOut.String(), "/no/such/program") {
		t.Errorf("exec of a missing program = %d, %v, stderr %q; want 127 and the reason", code, err, errOut.String())
	}
}
