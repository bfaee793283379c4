//go:build !linux

package pluginhost

import "syscall"

// sysProcAttr is empty off Linux, which has no parent-death signal: a plugin
// outlives an agent that is killed.
func sysProcAttr() *syscall.SysProcAttr { return nil }
