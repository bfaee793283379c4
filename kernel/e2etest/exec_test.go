package e2etest

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// cliIn runs the shoal CLI against the node with stdin.
func (n *node) cliIn(stdin string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--host", "unix://" + n.socket}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		r.code = -1
		r.stderr += err.Error()
	}
	return r
}

// TestTaskExec runs commands in a real container through the CLI, as a
// user would: the command's output and exit status, stdin with -i, a
// terminal with -t, a task named by its service and slot, and the errors
// of a command that does not exist and of a task that does not.
// The test image has no shell: its program (/prog) is the command.
func TestTaskExec(t *testing.T) {
	n := startNode(t)
	n.mustRun("service", "create", "--name", "web", "--replicas", "1", testImage, "write:/tmp/mark=made by the task", "sleep:inf")
	tasks := n.waitRunning(n.serviceID("web"), 1, 60*time.Second)
	id := tasks[0].GetId()

	r := n.cli("task", "exec", id, "--", "/prog", "out:hi", "err:oops", "exit:3")
	if r.code != 3 || r.stdout != "hi\n" || r.stderr != "oops\n" {
		t.Errorf("task exec out:hi err:oops exit:3 = %+v; want hi on stdout, oops on stderr, exit status 3", r)
	}

	// In the task's own container: it sees the file the task wrote.
	eventually(t, 10*time.Second, func(context.Context) error {
		r = n.cli("task", "exec", "web.1", "--", "/prog", "cat:/tmp/mark")
		if r.code != 0 || r.stdout != "made by the task" {
			return errors.New(r.stdout + r.stderr)
		}
		return nil
	})

	r = n.cliIn("line one\nline two\n", "task", "exec", "-i", id[:12], "--", "/prog", "cat:/dev/stdin", "exit:0")
	if r.code != 0 || r.stdout != "line one\nline two\n" {
		t.Errorf("task exec -i cat:/dev/stdin = %+v; want stdin back", r)
	}
	// Without -i, the command's stdin is empty.
	r = n.cliIn("not passed\n", "task", "exec", id, "--", "/prog", "cat:/dev/stdin")
	if r.code != 0 || r.stdout != "" {
		t.Errorf("task exec cat:/dev/stdin without -i = %+v; want no output", r)
	}

	r = n.cli("task", "exec", "-t", id, "--", "/prog", "out:on a terminal", "err:also")
	if r.code != 0 || r.stdout != "on a terminal\r\nalso\r\n" || r.stderr != "" {
		t.Errorf("task exec -t = %+v; want both lines on stdout, through the terminal", r)
	}

	r = n.cli("task", "exec", "-e", "GREETING=hello", "-w", "/tmp", "-u", "1000:1000", id, "--", "/prog", "env:GREETING", "pwd", "id")
	if want := "GREETING=hello\n/tmp\nuid=1000 gid=1000\n"; r.code != 0 || r.stdout != want {
		t.Errorf("task exec -e -w -u = %+v; want %q", r, want)
	}

	r = n.cli("task", "exec", id, "--", "/no/such/program")
	if r.code != 127 || !strings.Contains(r.stderr, "/no/such/program") {
		t.Errorf("task exec of a missing program = %+v; want exit status 127 and why", r)
	}
	r = n.cli("task", "exec", "nosuchtask", "--", "/prog")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("task exec in a missing task = %+v; want exit status 1, not found", r)
	}
}
