package main

import (
	"context"
	"errors"
	"fmt"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Jobs (issue 13), as docker's:
//
//   - --mode replicated-job: --replicas is the total of completions wanted,
//     --max-concurrent how many tasks run at once. Without --max-concurrent
//     it is --replicas (docker's CLI default: all at once); with neither,
//     the server's defaults make it 1 of 1.
//   - --mode global-job: one task to completion per node; --replicas and
//     --max-concurrent do not apply.
//   - service update --replicas on a replicated job changes its total and
//     lowers max_concurrent to it if it was above (rather than refusing);
//     --max-concurrent changes max_concurrent. Any change runs the job again.
//   - create and update of a job do not wait for it (as if --detach): a job
//     converges by ending, which `service ps` and `service ls` show.

// isJob reports whether a spec is in a job mode.
func isJob(spec *objectv1.ServiceSpec) bool {
	return spec.GetReplicatedJob() != nil || spec.GetGlobalJob() != nil
}

// applyJobMode sets or changes a job mode; handled reports whether it did
// (or refused to), so that applyMode leaves the spec alone.
func (f *serviceFlags) applyJobMode(set func(string) bool, spec *objectv1.ServiceSpec) (handled bool, err error) {
	total := func() (uint64, error) {
		if f.replicas < 1 {
			return 0, fmt.Errorf("--replicas: a replicated job needs at least 1 completion, got %d", f.replicas)
		}
		return uint64(f.replicas), nil
	}
	switch {
	case set("mode") && f.mode == "global-job":
		if set("replicas") || set("max-concurrent") {
			return true, errors.New("--replicas and --max-concurrent: not for --mode global-job")
		}
		spec.Mode = &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}
		return true, nil
	case set("mode") && f.mode == "replicated-job":
		j := &objectv1.ReplicatedJob{}
		if set("replicas") {
			n, err := total()
			if err != nil {
				return true, err
			}
			j.TotalCompletions, j.MaxConcurrent = n, n
		}
		if set("max-concurrent") {
			j.MaxConcurrent = f.maxConcurrent
		}
		spec.Mode = &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: j}
		return true, nil
	case set("mode"):
		if set("max-concurrent") {
			return true, errors.New("--max-concurrent: only for --mode replicated-job")
		}
		return false, nil
	}
	switch {
	case spec.GetReplicatedJob() != nil:
		j := &objectv1.ReplicatedJob{
			MaxConcurrent:    spec.GetReplicatedJob().GetMaxConcurrent(),
			TotalCompletions: spec.GetReplicatedJob().GetTotalCompletions(),
		}
		if set("replicas") {
			n, err := total()
			if err != nil {
				return true, err
			}
			j.TotalCompletions, j.MaxConcurrent = n, min(j.MaxConcurrent, n)
		}
		if set("max-concurrent") {
			j.MaxConcurrent = f.maxConcurrent
		}
		spec.Mode = &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: j}
		return true, nil
	case spec.GetGlobalJob() != nil:
		if set("replicas") || set("max-concurrent") {
			return true, fmt.Errorf("--replicas and --max-concurrent: service %s is a global job", spec.GetAnnotations().GetName())
		}
		return true, nil
	case set("max-concurrent"):
		return true, errors.New("--max-concurrent: only for replicated jobs")
	}
	return false, nil
}

// jobReplicas is the REPLICAS column of a job, as docker's: a replicated
// job's tasks running out of those it may run now (max_concurrent, or
// fewer when fewer completions are left), then its completions of the
// current spec out of the total; a global job's tasks running out of those
// desired running, then its completions.
func jobReplicas(spec *objectv1.ServiceSpec, running, desired, completed int64) string {
	if j := spec.GetReplicatedJob(); j != nil {
		total := int64(j.GetTotalCompletions())
		now := max(min(int64(j.GetMaxConcurrent()), total-completed), 0)
		return fmt.Sprintf("%d/%d (%d/%d completed)", running, now, completed, total)
	}
	return fmt.Sprintf("%d/%d (%d completed)", running, desired, completed)
}

// modeName is the MODE column.
func modeName(spec *objectv1.ServiceSpec) string {
	switch {
	case spec.GetGlobal() != nil:
		return "global"
	case spec.GetReplicatedJob() != nil:
		return "replicated job"
	case spec.GetGlobalJob() != nil:
		return "global job"
	}
	return "replicated"
}

// jobCompletions counts, per job of svcs, its tasks of the current spec
// that completed: one more call, made only when there are jobs.
func jobCompletions(ctx context.Context, client controlv1.ControlClient, svcs []*objectv1.Service) (map[string]int64, error) {
	var ids []string
	version := map[string]uint64{}
	for _, s := range svcs {
		if isJob(s.GetSpec()) {
			ids = append(ids, s.GetId())
			version[s.GetId()] = s.GetSpecVersion()
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	resp, err := client.ListTasks(ctx, &controlv1.ListTasksRequest{
		ServiceIds:    ids,
		DesiredStates: []objectv1.TaskState{objectv1.TaskState_TASK_STATE_COMPLETE},
	})
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, t := range resp.GetTasks() {
		if t.GetStatus().GetState() == objectv1.TaskState_TASK_STATE_COMPLETE && t.GetSpecVersion() == version[t.GetServiceId()] {
			out[t.GetServiceId()]++
		}
	}
	return out, nil
}
