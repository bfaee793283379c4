package controlapi

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Defaults of the object model, as object.proto documents them.
const (
	// DefaultReplicas is the size of a service that names no mode.
	DefaultReplicas = 1
	// DefaultRestartDelay spaces restarts so a crash-looping task does not
	// keep a node and the scheduler busy.
	DefaultRestartDelay = 5 * time.Second
	// DefaultUpdateParallelism replaces one task at a time: the safest
	// rolling update.
	DefaultUpdateParallelism = 1
	// DefaultUpdateMonitor is how long a new task must stay up before an
	// update counts it as healthy.
	DefaultUpdateMonitor = 5 * time.Second
	// DefaultStopGracePeriod is Docker's: enough for most servers to drain.
	DefaultStopGracePeriod = 10 * time.Second
	// DefaultProtocol is the protocol of a published port.
	DefaultProtocol = "tcp"
	// DefaultHeartbeatPeriod balances failure detection (a few periods) with
	// the leader's load from thousands of workers.
	DefaultHeartbeatPeriod = 5 * time.Second
	// DefaultNodeCertExpiry is 90 days, renewed at about half-life.
	DefaultNodeCertExpiry = 2160 * time.Hour
	// DefaultTaskHistoryRetention keeps enough dead tasks per slot for
	// `service ps` to show why a task keeps failing.
	DefaultTaskHistoryRetention = 5
)

// ApplyServiceDefaults fills the unset fields of spec with their defaults, so
// that the stored spec says what runs. It is idempotent and leaves set fields
// alone, valid or not: validation comes after it. A nil spec is left nil.
//
// "Unset" means a nil message or duration, an UNSPECIFIED enum or an empty
// protocol. Proto3 cannot tell an unset number from zero, so numbers are
// defaulted only with the message that holds them:
//   - no mode at all becomes replicated with DefaultReplicas; an explicit
//     replicated mode keeps its replicas, 0 included (a stopped service).
//   - a replicated job's max_concurrent 0 becomes 1 and its
//     total_completions 0 becomes max_concurrent; a job's unset restart
//     condition becomes on-failure (any for services).
//   - no update config at all becomes parallelism DefaultUpdateParallelism;
//     in an update config that was sent, parallelism 0 means "all at once",
//     as the proto documents, and is kept.
//
// Durations set to 0s are kept (an immediate restart is a valid choice). The
// stop signal stays empty: the executor then uses the image's STOPSIGNAL, or
// SIGTERM.
func ApplyServiceDefaults(spec *objectv1.ServiceSpec) {
	if spec == nil {
		return
	}
	switch m := spec.Mode.(type) {
	case nil:
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: DefaultReplicas}}
	case *objectv1.ServiceSpec_Replicated:
		if m.Replicated == nil {
			m.Replicated = &objectv1.ReplicatedService{Replicas: DefaultReplicas}
		}
	case *objectv1.ServiceSpec_Global:
		if m.Global == nil {
			m.Global = &objectv1.GlobalService{}
		}
	case *objectv1.ServiceSpec_ReplicatedJob:
		// As Docker's API: max_concurrent defaults to 1 and
		// total_completions to max_concurrent. (The CLI sends
		// max_concurrent = --replicas when --max-concurrent is not given,
		// as docker's does.)
		if m.ReplicatedJob == nil {
			m.ReplicatedJob = &objectv1.ReplicatedJob{}
		}
		if m.ReplicatedJob.MaxConcurrent == 0 {
			m.ReplicatedJob.MaxConcurrent = 1
		}
		if m.ReplicatedJob.TotalCompletions == 0 {
			m.ReplicatedJob.TotalCompletions = m.ReplicatedJob.MaxConcurrent
		}
	case *objectv1.ServiceSpec_GlobalJob:
		if m.GlobalJob == nil {
			m.GlobalJob = &objectv1.GlobalJob{}
		}
	}

	if spec.Task == nil {
		spec.Task = &objectv1.TaskSpec{}
	}
	if spec.Task.Container == nil {
		spec.Task.Container = &objectv1.ContainerSpec{}
	}
	setDuration(&spec.Task.Container.StopGracePeriod, DefaultStopGracePeriod)

	if spec.Task.Restart == nil {
		spec.Task.Restart = &objectv1.RestartPolicy{}
	}
	r := spec.Task.Restart
	if r.Condition == objectv1.RestartCondition_RESTART_CONDITION_UNSPECIFIED {
		r.Condition = objectv1.RestartCondition_RESTART_CONDITION_ANY
		if spec.GetReplicatedJob() != nil || spec.GetGlobalJob() != nil {
			// A job's task that succeeds is never run again whatever the
			// condition; a failed one is retried, as in Docker.
			r.Condition = objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE
		}
	}
	setDuration(&r.Delay, DefaultRestartDelay)

	if spec.Update == nil {
		spec.Update = &objectv1.UpdateConfig{Parallelism: DefaultUpdateParallelism}
	}
	u := spec.Update
	if u.FailureAction == objectv1.FailureAction_FAILURE_ACTION_UNSPECIFIED {
		u.FailureAction = objectv1.FailureAction_FAILURE_ACTION_PAUSE
	}
	setDuration(&u.Monitor, DefaultUpdateMonitor)
	if u.Order == objectv1.UpdateOrder_UPDATE_ORDER_UNSPECIFIED {
		u.Order = objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST
	}
	applyRollbackDefaults(spec.Rollback) // only if sent: unset means "as update"

	for _, p := range spec.GetEndpoint().GetPorts() {
		if p == nil {
			continue
		}
		if p.Protocol == "" {
			p.Protocol = DefaultProtocol
		}
		if p.Mode == objectv1.PublishMode_PUBLISH_MODE_UNSPECIFIED {
			// The routing mesh, as in swarm mode, for a service on a
			// network (the mesh reaches tasks by their network
			// addresses); a service sharing its nodes' network binds the
			// port on the node that runs it.
			p.Mode = objectv1.PublishMode_PUBLISH_MODE_HOST
			if len(spec.GetTask().GetNetworks()) > 0 {
				p.Mode = objectv1.PublishMode_PUBLISH_MODE_INGRESS
			}
		}
	}
}

// ApplyClusterDefaults fills the unset fields of spec with their defaults. It
// is idempotent and leaves set fields alone. As with services, the task
// history retention is defaulted only when the orchestration config is
// absent: in one that was sent, 0 means "keep no dead tasks".
func ApplyClusterDefaults(spec *objectv1.ClusterSpec) {
	if spec == nil {
		return
	}
	if spec.Dispatcher == nil {
		spec.Dispatcher = &objectv1.DispatcherConfig{}
	}
	setDuration(&spec.Dispatcher.HeartbeatPeriod, DefaultHeartbeatPeriod)
	if spec.Ca == nil {
		spec.Ca = &objectv1.CAConfig{}
	}
	setDuration(&spec.Ca.NodeCertExpiry, DefaultNodeCertExpiry)
	if spec.Orchestration == nil {
		spec.Orchestration = &objectv1.OrchestrationConfig{TaskHistoryRetention: DefaultTaskHistoryRetention}
	}
}

// setDuration sets *d to def if it is unset.
func setDuration(d **durationpb.Duration, def time.Duration) {
	if *d == nil {
		*d = durationpb.New(def)
	}
}
