package executor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shoalhq/shoal/sdk"
)

// signals are the Linux signal numbers by name, as a task spec's
// stop_signal names them. Executors run Linux processes whatever the
// kernel's own platform, so the table is fixed rather than taken from the
// syscall package.
var signals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7,
	"FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13,
	"ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19,
	"TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25,
	"VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "PWR": 30, "SYS": 31,
}

// Signal numbers an executor needs by name.
const (
	SIGKILL = 9
	SIGTERM = 15
)

// maxSignal is the highest Linux signal number (SIGRTMAX).
const maxSignal = 64

// ParseSignal returns the Linux number of a signal named as a task spec's
// stop_signal may name it: "SIGTERM", "TERM", "sigterm" or "15". An empty
// name is SIGTERM. Any other name is an error of kind sdk.ErrInvalidArgument.
func ParseSignal(name string) (int, error) {
	if name == "" {
		return SIGTERM, nil
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 1 || n > maxSignal {
			return 0, fmt.Errorf("signal %q: must be 1 to %d: %w", name, maxSignal, sdk.ErrInvalidArgument)
		}
		return n, nil
	}
	n, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
	if !ok {
		return 0, fmt.Errorf("signal %q: unknown signal name: %w", name, sdk.ErrInvalidArgument)
	}
	return n, nil
}
