//go:build !linux

package plugintest

import "syscall"

// sysProcAttr is empty off Linux, which has no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr { return nil }
