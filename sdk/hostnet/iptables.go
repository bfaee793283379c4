package hostnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Iptables runs the node's iptables binary. Its zero value, and one
// FindIptables returns on a node without iptables, has Bin empty: callers
// then keep no rules (tasks still reach each other, but not the outside).
// It keeps no state: callers serialize their own check-then-change steps.
type Iptables struct {
	// Bin is the path of the iptables binary; empty for none.
	Bin string
}

// FindIptables finds iptables in PATH or the usual sbin directories.
func FindIptables() Iptables {
	if p, err := exec.LookPath("iptables"); err == nil {
		return Iptables{Bin: p}
	}
	for _, p := range []string{"/usr/sbin/iptables", "/sbin/iptables"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return Iptables{Bin: p}
		}
	}
	return Iptables{}
}

// Rule is one iptables rule: a table, a chain and a rule specification.
type Rule struct {
	Table, Chain string
	Spec         []string
}

// EnsureChain makes chain in table, if it is missing, and the jump to it
// first in the built-in chain from, if that is missing.
func (ipt Iptables) EnsureChain(ctx context.Context, table, chain, from string) error {
	if _, err := ipt.Run(ctx, "-t", table, "-N", chain); err != nil && !strings.Contains(err.Error(), "exists") {
		return err
	}
	jump := Rule{table, from, []string{"-j", chain}}
	if ok, err := ipt.Exists(ctx, jump); err != nil || ok {
		return err
	}
	_, err := ipt.Run(ctx, append([]string{"-t", table, "-I", from, "1"}, jump.Spec...)...)
	return err
}

// Exists reports whether a rule is there (iptables -C exits 1 when not, and
// also when the chain is missing).
func (ipt Iptables) Exists(ctx context.Context, r Rule) (bool, error) {
	_, err := ipt.Run(ctx, append([]string{"-t", r.Table, "-C", r.Chain}, r.Spec...)...)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, err
}

// Run runs iptables with args, waiting up to 5 s for its lock, and returns
// its output. A failure is an *IptablesError.
func (ipt Iptables) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, ipt.Bin, append([]string{"-w", "5"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &IptablesError{Args: args, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return string(out), nil
}

// IptablesError names the command and keeps iptables' own message. Err is
// an *exec.ExitError when iptables ran and failed.
type IptablesError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *IptablesError) Error() string {
	return fmt.Sprintf("iptables %s: %v: %s", strings.Join(e.Args, " "), e.Err, e.Stderr)
}

func (e *IptablesError) Unwrap() error { return e.Err }
