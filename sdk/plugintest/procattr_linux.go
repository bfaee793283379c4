package plugintest

import "syscall"

// sysProcAttr kills the plugin with the test process (SIGKILL on its
// death), as the kernel's plugin host does: a test binary killed by its
// timeout leaves no plugin behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
