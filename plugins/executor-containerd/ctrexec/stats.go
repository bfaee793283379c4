package ctrexec

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// noLimit is at least what cgroup v1 reports as the memory limit of a
// cgroup without one (the largest page-aligned int64).
const noLimit = 1 << 62

// Stats returns the task's CPU time and memory from its cgroup, v1 or v2.
func (e *Executor) Stats(ctx context.Context, taskID string) (executor.Stats, error) {
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return executor.Stats{}, err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return executor.Stats{}, err
	}
	s, err := stateOf(nctx, ctr)
	if err != nil {
		return executor.Stats{}, fmt.Errorf("task %s: %w", taskID, err)
	}
	if s.exited {
		return executor.Stats{}, fmt.Errorf("task %s: its process has exited: %w", taskID, sdk.ErrFailedPrecondition)
	}
	if s.tk == nil {
		return executor.Stats{}, fmt.Errorf("task %s: not started: %w", taskID, sdk.ErrNotFound)
	}
	tk := s.tk
	m, err := tk.Metrics(nctx)
	if err != nil {
		return executor.Stats{}, fmt.Errorf("task %s: metrics: %w", taskID, kind(err))
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return executor.Stats{}, fmt.Errorf("task %s: metrics: %w", taskID, err)
	}
	st := executor.Stats{Time: time.Now()}
	if ts := m.Timestamp; ts != nil {
		st.Time = ts.AsTime()
	}
	switch d := data.(type) {
	case *v1.Metrics:
		st.CPUNanos = d.GetCPU().GetUsage().GetTotal()
		mem := d.GetMemory()
		// Like Docker: usage without the page cache, which the kernel
		// reclaims before it counts against the limit.
		st.MemoryBytes = mem.GetUsage().GetUsage() - min(mem.GetTotalInactiveFile(), mem.GetUsage().GetUsage())
		if l := mem.GetUsage().GetLimit(); l < noLimit {
			st.MemoryLimitBytes = l
		}
	case *v2.Metrics:
		st.CPUNanos = d.GetCPU().GetUsageUsec() * 1000
		mem := d.GetMemory()
		st.MemoryBytes = mem.GetUsage() - min(mem.GetInactiveFile(), mem.GetUsage())
		if l := mem.GetUsageLimit(); l < noLimit {
			st.MemoryLimitBytes = l
		}
	default:
		return executor.Stats{}, fmt.Errorf("task %s: metrics of unknown type %T", taskID, data)
	}
	return st, nil
}

// oomKilled reports whether the kernel's OOM killer killed a process of the
// task's cgroup, read from the cgroup's counters (v1 memory.oom_control,
// v2 memory.events). It is called once the process exited and before the
// task is deleted, while the cgroup still exists; any failure reads as
// false.
func oomKilled(ctx context.Context, tk client.Task) bool {
	spec, err := tk.Spec(ctx)
	if err != nil || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return false
	}
	path := spec.Linux.CgroupsPath
	candidates := []string{
		filepath.Join("/sys/fs/cgroup/memory", path, "memory.oom_control"), // v1
		filepath.Join("/sys/fs/cgroup", path, "memory.events"),             // v2
	}
	for _, f := range candidates {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := bytes.Cut(sc.Bytes(), []byte(" "))
			if ok && string(k) == "oom_kill" {
				n, _ := strconv.ParseUint(string(v), 10, 64)
				return n > 0
			}
		}
	}
	return false
}
