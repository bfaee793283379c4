package ps

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

func TestListFindsChild(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("start sleep: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var got []Process
	for _, p := range List() {
		if p.PPID == os.Getpid() {
			got = append(got, p)
		}
	}
	if len(got) != 1 {
		t.Fatalf("List() has %d children of this process, want 1 (sleep): %+v", len(got), got)
	}
	p := got[0]
	if p.PID != cmd.Process.Pid || p.Comm != "sleep" || p.Zombie() || p.Start == 0 || !bytes.Equal(p.Cmdline, []byte("sleep\x0060\x00")) {
		t.Errorf("List() child = %+v, want pid %d, comm sleep, not a zombie, a start time, cmdline sleep 60", p, cmd.Process.Pid)
	}
}

func TestReadNone(t *testing.T) {
	if p, ok := Read(-1); ok {
		t.Errorf("Read(-1) = %+v, true, want false", p)
	}
}
