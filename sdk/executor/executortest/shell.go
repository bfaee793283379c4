package executortest

import (
	"fmt"
	"strconv"
	"strings"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// ShellTask returns a Config.Task for executors that run image with a
// POSIX shell at /bin/sh (busybox will do): the task's command is a
// script doing what the Behaviour says.
func ShellTask(image string) func(id string, b Behaviour) *objectv1.Task {
	return func(id string, b Behaviour) *objectv1.Task {
		return &objectv1.Task{Id: id, Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{
			Image:   image,
			Command: []string{"/bin/sh", "-c", Script(b)},
		}}}
	}
}

// Script is a POSIX shell script that behaves as b says. The shell waits
// for its sleep in the background, so that it handles SIGTERM at once even
// as a container's first process (which has no default signal actions).
func Script(b Behaviour) string {
	var s strings.Builder
	if b.IgnoreTerm {
		s.WriteString("trap '' TERM\n")
	} else {
		s.WriteString("trap 'exit 143' TERM\n")
	}
	for _, out := range []struct {
		lines []string
		redir string
	}{{b.Stdout, ""}, {b.Stderr, " >&2"}} {
		if len(out.lines) == 0 {
			continue
		}
		s.WriteString("printf '%s\\n'")
		for _, l := range out.lines {
			s.WriteString(" " + quote(l))
		}
		s.WriteString(out.redir + "\n")
	}
	if b.Sleep > 0 {
		fmt.Fprintf(&s, "sleep %s &\nwait $!\n", strconv.FormatFloat(b.Sleep.Seconds(), 'f', -1, 64))
	}
	fmt.Fprintf(&s, "exit %d\n", b.ExitCode)
	return s.String()
}

// quote quotes s for a POSIX shell.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
