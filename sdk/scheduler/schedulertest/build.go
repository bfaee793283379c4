package schedulertest

import (
	"fmt"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// Units for the views and tasks the checks build.
const (
	cpu = int64(1e9)
	mib = int64(1 << 20)
	gib = int64(1 << 30)
)

// newNode returns a linux/amd64 worker named host-<id> with cpus CPUs and
// mem bytes of memory (0 leaves that total unset), and labels given as
// key, value, key, value...
func newNode(id string, cpus, mem int64, labels ...string) *schedulerv1.NodeInfo {
	n := &schedulerv1.NodeInfo{
		Id:       id,
		Hostname: "host-" + id,
		Role:     objectv1.NodeRole_NODE_ROLE_WORKER,
		Platform: "linux/amd64",
		Total:    &objectv1.Resources{NanoCpus: cpus * cpu, MemoryBytes: mem},
		Reserved: &objectv1.Resources{},
	}
	if len(labels) > 0 {
		n.Labels = make(map[string]string, len(labels)/2)
		for i := 0; i+1 < len(labels); i += 2 {
			n.Labels[labels[i]] = labels[i+1]
		}
	}
	return n
}

// newTasks returns n tasks of service, named <prefix>-0, <prefix>-1...,
// each with placement p (may be nil) and reservations of nanoCPUs and
// memory bytes.
func newTasks(prefix, service string, n int, p *objectv1.Placement, nanoCPUs, memory int64) []*schedulerv1.TaskInfo {
	tasks := make([]*schedulerv1.TaskInfo, n)
	for i := range tasks {
		tasks[i] = &schedulerv1.TaskInfo{
			Id:        fmt.Sprintf("%s-%d", prefix, i),
			ServiceId: service,
			Placement: p,
		}
		if nanoCPUs != 0 || memory != 0 {
			tasks[i].Reservations = &objectv1.Resources{NanoCpus: nanoCPUs, MemoryBytes: memory}
		}
	}
	return tasks
}

// constrained returns a placement with constraints.
func constrained(exprs ...string) *objectv1.Placement {
	return &objectv1.Placement{Constraints: exprs}
}

// concat joins task lists.
func concat(lists ...[]*schedulerv1.TaskInfo) []*schedulerv1.TaskInfo {
	var all []*schedulerv1.TaskInfo
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}
