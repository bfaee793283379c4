package pluginhost

import "syscall"

// sysProcAttr makes the kernel SIGKILL the plugin when the agent dies, even
// by SIGKILL: go-plugin would leave the process orphaned, still holding its
// sockets and, for an executor, its view of the tasks.
//
// Linux sends the signal when the thread that started the child exits, not
// the process. The Go runtime ends a thread only when a goroutine locked to
// it exits; the host never locks its goroutines, so in practice this is the
// agent's death.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
