// Package ps lists this machine's processes from /proc, for tests that look
// for the processes they started (a plugin to kill, a containerd to find
// again) or that were left behind. Linux only: elsewhere List finds none.
package ps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Process is one process as /proc/PID/stat and /proc/PID/cmdline show it.
type Process struct {
	PID, PPID int
	// Comm is the command name, cut by the kernel at 15 bytes.
	Comm string
	// State is the state letter of stat: 'R', 'S', 'D', 'Z' (a zombie, not
	// yet reaped by its parent) and so on.
	State byte
	// Start is the start time in clock ticks since boot: with PID, it names
	// one process even when PIDs are reused.
	Start uint64
	// Cmdline is the arguments as /proc has them, each ended by a NUL byte;
	// empty for a zombie.
	Cmdline []byte
}

// Zombie reports whether the process has ended and waits to be reaped.
func (p Process) Zombie() bool { return p.State == 'Z' }

// List returns the processes that run now; one that ends while List reads
// /proc is left out.
func List() []Process {
	entries, _ := os.ReadDir("/proc")
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := Read(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

// Read returns the process pid; ok is false when there is none.
func Read(pid int) (p Process, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Process{}, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Process{}, false
	}
	f := strings.Fields(s[end+1:]) // f[0] is field 3, the state
	if len(f) < 20 || len(f[0]) != 1 {
		return Process{}, false
	}
	p = Process{PID: pid, Comm: s[open+1 : end], State: f[0][0]}
	p.PPID, _ = strconv.Atoi(f[1])
	p.Start, _ = strconv.ParseUint(f[19], 10, 64)
	p.Cmdline, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return p, true
}
