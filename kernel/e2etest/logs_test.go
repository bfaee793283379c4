package e2etest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// logsCmd is a `shoal service logs` (or task logs) process whose output
// lines are read as they come.
type logsCmd struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan error

	mu     sync.Mutex
	stdout []string
	stderr []string
	seen   chan struct{} // closed and replaced on every line
}

// startLogs starts the shoal CLI against the node with args.
func (n *node) startLogs(t *testing.T, args ...string) *logsCmd {
	t.Helper()
	l := &logsCmd{t: t, done: make(chan error, 1), seen: make(chan struct{})}
	l.cmd = exec.Command(n.bin, append([]string{"--host", "unix://" + n.socket}, args...)...)
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := l.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		t.Fatalf("shoal %s: %v", strings.Join(args, " "), err)
	}
	var readers sync.WaitGroup
	for _, s := range []struct {
		r    io.Reader
		into *[]string
	}{{stdout, &l.stdout}, {stderr, &l.stderr}} {
		readers.Go(func() {
			sc := bufio.NewScanner(s.r)
			for sc.Scan() {
				l.mu.Lock()
				*s.into = append(*s.into, sc.Text())
				close(l.seen)
				l.seen = make(chan struct{})
				l.mu.Unlock()
			}
		})
	}
	go func() {
		readers.Wait() // before Wait, which closes the pipes
		l.done <- l.cmd.Wait()
	}()
	t.Cleanup(func() { l.cmd.Process.Kill() }) // an error once it exited

	return l
}

// waitLine waits until a line of the stream (stdout, else stderr) ends
// with suffix and returns it, failing after timeout or if the command
// exits first.
func (l *logsCmd) waitLine(stdout bool, suffix string, timeout time.Duration) string {
	l.t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		lines := l.stderr
		if stdout {
			lines = l.stdout
		}
		for _, line := range lines {
			if strings.HasSuffix(line, suffix) {
				l.mu.Unlock()
				return line
			}
		}
		seen := l.seen
		l.mu.Unlock()
		select {
		case <-seen:
		case err := <-l.done:
			l.done <- err
			l.t.Fatalf("shoal logs exited (%v) before printing a line ending with %q; it printed\n%s", err, suffix, l.output())
		case <-deadline:
			l.t.Fatalf("shoal logs printed no line ending with %q within %s; it printed\n%s", suffix, timeout, l.output())
		}
	}
}

func (l *logsCmd) output() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return "stdout:\n" + strings.Join(l.stdout, "\n") + "\nstderr:\n" + strings.Join(l.stderr, "\n")
}

// stillRunning fails unless the command runs on for d.
func (l *logsCmd) stillRunning(d time.Duration) {
	l.t.Helper()
	select {
	case err := <-l.done:
		l.done <- err
		l.t.Fatalf("shoal logs exited (%v) while following; it printed\n%s", err, l.output())
	case <-time.After(d):
	}
}

// interrupt sends the command SIGINT, as Ctrl-C does, and checks that it
// exits 0 within a generous bound.
func (l *logsCmd) interrupt() {
	l.t.Helper()
	if err := l.cmd.Process.Signal(syscall.SIGINT); err != nil {
		l.t.Fatal(err)
	}
	select {
	case err := <-l.done:
		if err != nil {
			l.t.Errorf("shoal logs after SIGINT: %v, want exit status 0; it printed\n%s", err, l.output())
		}
	case <-time.After(30 * time.Second):
		l.t.Fatalf("shoal logs still running 30s after SIGINT; it printed\n%s", l.output())
	}
}

// TestServiceLogs runs real containers and reads their logs through the
// CLI, as a user would: `service logs -f` prints the tail lines, then a
// line a container wrote after the follow started, and exits 0 on
// Ctrl-C; the logs of a service whose task ended are printed, and
// following it goes on after them.
func TestServiceLogs(t *testing.T) {
	n := startNode(t)

	t.Run("follow", func(t *testing.T) {
		// Each replica writes its lines, then ignores SIGTERM, which it
		// says on stderr: the test makes a replica write a line when it
		// wants.
		n.mustRun("service", "create", "--name", "talk", "--replicas", "2", "--stop-grace-period", "1s",
			testImage, "out:hello", "ignore-term", "out:ready", "sleep:inf")
		id := n.serviceID("talk")
		tasks := n.waitRunning(id, 2, 90*time.Second)
		// Both tasks' lines are on disk before the follow starts.
		eventually(t, 60*time.Second, func(context.Context) error {
			out, err := n.run("service", "logs", "talk")
			if err != nil {
				return err
			}
			if c := strings.Count(out, "| ready\n"); c != 2 {
				return fmt.Errorf("service logs talk printed %d ready lines, want 2:\n%s", c, out)
			}
			return nil
		})

		l := n.startLogs(t, "service", "logs", "-f", "--tail", "1", "talk")
		prefix := func(task *objectv1.Task) string {
			return fmt.Sprintf("talk.%d.%s@e2e", task.GetSlot(), task.GetId()[:12])
		}
		for _, task := range tasks {
			l.waitLine(true, prefix(task)+" | ready", 60*time.Second)
		}
		l.stillRunning(500 * time.Millisecond)

		// Now a replica writes a line: it comes while the follow runs.
		written := time.Now()
		if err := syscall.Kill(int(tasks[0].GetStatus().GetPid()), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		line := l.waitLine(false, "| ignored SIGTERM", 60*time.Second)
		t.Logf("a line written after the follow started came %s later: %q", time.Since(written).Round(time.Millisecond), line)
		if !strings.HasPrefix(line, prefix(tasks[0])+" | ") {
			t.Errorf("the new line %q is not prefixed with its task", line)
		}
		l.interrupt()
		if _, err := n.run("service", "rm", "talk"); err != nil {
			t.Error(err)
		}
	})

	t.Run("ended tasks", func(t *testing.T) {
		n.mustRun("service", "create", "--name", "once", testImage, "out:first", "err:second", "out:third", "sleep:inf")
		id := n.serviceID("once")
		task := n.waitRunning(id, 1, 90*time.Second)[0]
		eventually(t, 60*time.Second, func(context.Context) error {
			out, err := n.run("service", "logs", "once")
			if !strings.Contains(out, "| third\n") {
				return fmt.Errorf("service logs once printed %q (%v), want its third line", out, err)
			}
			return nil
		})
		// Scaled to 0, its task is shut down (its process ends on the
		// SIGTERM, saying so on stderr) and stays in the history.
		n.mustRun("service", "scale", "once=0")
		eventually(t, 90*time.Second, func(context.Context) error {
			ps, err := n.ps("once")
			if err != nil {
				return err
			}
			if len(ps) != 1 || ps[0].GetStatus().GetState() != objectv1.TaskState_TASK_STATE_SHUTDOWN {
				return fmt.Errorf("want its one task shut down: %s", summary(ps))
			}
			return nil
		})

		cmd := exec.Command(n.bin, "--host", "unix://"+n.socket, "service", "logs", "once")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("service logs once: %v\n%s", err, stderr.String())
		}
		prefix := fmt.Sprintf("once.1.%s@e2e | ", task.GetId()[:12])
		wantOut := prefix + "first\n" + prefix + "third\n"
		wantErr := prefix + "second\n" + prefix + "got terminated\n"
		if stdout.String() != wantOut || stderr.String() != wantErr {
			t.Errorf("service logs of a service whose task ended printed\n%s\nstderr\n%s\nwant\n%s\nstderr\n%s", stdout.String(), stderr.String(), wantOut, wantErr)
		}

		// Following it prints what there is, then waits for the tasks the
		// service may get, until interrupted.
		l := n.startLogs(t, "service", "logs", "-f", "once")
		l.waitLine(true, prefix+"third", 60*time.Second)
		l.waitLine(false, prefix+"got terminated", 60*time.Second)
		l.stillRunning(time.Second)
		l.interrupt()
	})
}
