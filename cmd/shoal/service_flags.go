package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// serviceFlags are the flags of service create and service update that set
// parts of a ServiceSpec. apply changes only the parts whose flag was given:
// for create the server fills in every default, and an update keeps what the
// user did not mention.
type serviceFlags struct {
	// create only
	name        string
	mode        string
	env         []string
	labels      []string
	publish     []*objectv1.PortConfig
	constraints []string
	prefs       []string
	networks    []string
	mounts      []*objectv1.Mount
	files       fileRefFlags // --secret, --config and their -add, -rm
	rollback    rollbackFlags

	// update only
	image         string
	args          []string
	envAdd        []string
	envRm         []string
	labelAdd      []string
	labelRm       []string
	constraintAdd []string
	constraintRm  []string
	publishAdd    []*objectv1.PortConfig
	publishRm     []*objectv1.PortConfig
	prefAdd       []string
	prefRm        []string
	mountAdd      []*objectv1.Mount
	mountRm       []string

	// both
	replicas            int64
	maxConcurrent       uint64
	limitCPU            int64
	limitMemory         int64
	reserveCPU          int64
	reserveMemory       int64
	restartCondition    objectv1.RestartCondition
	restartDelay        time.Duration
	restartMaxAttempts  uint64
	restartWindow       time.Duration
	updateParallelism   uint64
	updateDelay         time.Duration
	updateFailureAction objectv1.FailureAction
	updateMonitor       time.Duration
	updateMaxFailure    float32
	updateOrder         objectv1.UpdateOrder
	workdir             string
	endpointMode        objectv1.EndpointMode
	user                string
	stopSignal          string
	stopGracePeriod     time.Duration
	maxReplicasPerNode  uint64
	detach              bool
	health              healthFlags
}

func (f *serviceFlags) addCommon(fs *pflag.FlagSet) {
	fs.Int64Var(&f.replicas, "replicas", 0, "number of tasks of a replicated service; total completions of a replicated job")
	fs.Uint64Var(&f.maxConcurrent, "max-concurrent", 0, "tasks of a replicated job run at once (default: --replicas)")
	fs.Var(newEnumValue(&f.endpointMode, "ENDPOINT_MODE_", objectv1.EndpointMode_name),
		"endpoint-mode", "what the service's name resolves to: vip (its virtual IP, the default) or dnsrr (its tasks' addresses)")
	fs.Var(cpuValue{&f.limitCPU}, "limit-cpu", "CPU limit, in cores (e.g. 0.5)")
	fs.Var(memoryValue{&f.limitMemory}, "limit-memory", "memory limit (e.g. 256MiB, 1G)")
	fs.Var(cpuValue{&f.reserveCPU}, "reserve-cpu", "CPU to reserve, in cores")
	fs.Var(memoryValue{&f.reserveMemory}, "reserve-memory", "memory to reserve")
	fs.Var(newEnumValue(&f.restartCondition, "RESTART_CONDITION_", objectv1.RestartCondition_name),
		"restart-condition", "when to restart a task that ended")
	fs.DurationVar(&f.restartDelay, "restart-delay", 0, "delay between restart attempts")
	fs.Uint64Var(&f.restartMaxAttempts, "restart-max-attempts", 0, "maximum restarts within the restart window (0: no bound)")
	fs.DurationVar(&f.restartWindow, "restart-window", 0, "window over which restarts count (0: forever)")
	fs.Uint64Var(&f.updateParallelism, "update-parallelism", 1, "tasks replaced at once by an update (0: all)")
	fs.DurationVar(&f.updateDelay, "update-delay", 0, "delay between update batches")
	fs.Var(newEnumValue(&f.updateFailureAction, "FAILURE_ACTION_", objectv1.FailureAction_name),
		"update-failure-action", "what an update does when tasks fail")
	fs.DurationVar(&f.updateMonitor, "update-monitor", 0, "how long each new task is watched for failure (default 5s)")
	fs.Float32Var(&f.updateMaxFailure, "update-max-failure-ratio", 0, "fraction of new tasks that may fail before the failure action applies, 0 to 1")
	fs.Var(newEnumValue(&f.updateOrder, "UPDATE_ORDER_", objectv1.UpdateOrder_name),
		"update-order", "stop the old task before or after its replacement starts")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fs.StringVarP(&f.user, "user", "u", "", "user: uid[:gid] or a name known to the image")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops the container (e.g. SIGTERM)")
	fs.DurationVar(&f.stopGracePeriod, "stop-grace-period", 0, "time to wait before killing the container")
	fs.Uint64Var(&f.maxReplicasPerNode, "max-replicas-per-node", 0, "maximum tasks of the service on one node (0: no bound)")
	fs.BoolVarP(&f.detach, "detach", "d", false, "exit at once instead of waiting for the service to converge")
	f.health.add(fs)
	f.rollback.add(fs)
}

func (f *serviceFlags) addCreate(fs *pflag.FlagSet) {
	f.addCommon(fs)
	fs.StringVar(&f.name, "name", "", "service name")
	fs.Var(newChoiceValue(&f.mode, "replicated", "global", "replicated-job", "global-job"), "mode", "service mode (default replicated)")
	fs.VarP(&kvValue{target: &f.env}, "env", "e", "environment variable")
	fs.VarP(&kvValue{target: &f.labels, optionalValue: true}, "label", "l", "service label")
	fs.VarP(portsValue{target: &f.publish}, "publish", "p", "publish a port: [PUBLISHED:]TARGET[/PROTOCOL]")
	fs.StringArrayVar(&f.constraints, "constraint", nil, "placement constraint `EXPR`, e.g. node.labels.zone==a")
	fs.Var(prefsValue{&f.prefs}, "placement-pref", "placement preference, e.g. spread=node.labels.rack")
	fs.StringArrayVar(&f.networks, "network", nil, "join the network `NAME` (or ID), or name=NAME,alias=ALIAS,...; repeat for several")
	f.files.addCreate(fs)
	fs.Var(mountsValue{&f.mounts}, "mount", "mount type=bind,source=/PATH,target=/PATH | type=volume,source=NAME,target=/PATH | type=tmpfs,target=/PATH[,tmpfs-size=64m]; [,readonly]; repeat for several")
}

func (f *serviceFlags) addUpdate(fs *pflag.FlagSet) {
	f.addCommon(fs)
	fs.StringVar(&f.image, "image", "", "image of the service's tasks")
	fs.Var(argsValue{&f.args}, "args", `arguments of the command, split like a shell would ("" clears them)`)
	fs.Var(&kvValue{target: &f.envAdd}, "env-add", "add or replace an environment variable")
	fs.StringArrayVar(&f.envRm, "env-rm", nil, "remove an environment variable by `NAME`")
	fs.Var(&kvValue{target: &f.labelAdd, optionalValue: true}, "label-add", "add or replace a service label")
	fs.StringArrayVar(&f.labelRm, "label-rm", nil, "remove a service label by `KEY`")
	fs.StringArrayVar(&f.constraintAdd, "constraint-add", nil, "add a placement constraint `EXPR`")
	fs.StringArrayVar(&f.constraintRm, "constraint-rm", nil, "remove a placement constraint `EXPR`")
	fs.Var(portsValue{target: &f.publishAdd}, "publish-add", "add or replace a published port")
	fs.Var(portsValue{target: &f.publishRm, published: true}, "publish-rm", "remove a published port: PUBLISHED[/PROTOCOL]")
	fs.Var(prefsValue{&f.prefAdd}, "placement-pref-add", "add a placement preference")
	fs.Var(prefsValue{&f.prefRm}, "placement-pref-rm", "remove a placement preference")
	fs.Var(mountsValue{&f.mountAdd}, "mount-add", "add a mount (as --mount of service create), replacing one at its target")
	fs.StringArrayVar(&f.mountRm, "mount-rm", nil, "remove the mount at the container path `TARGET`")
	f.files.addUpdate(fs)
}

// apply sets in spec what the given flags say, and nothing else.
func (f *serviceFlags) apply(fs *pflag.FlagSet, spec *objectv1.ServiceSpec) error {
	set := fs.Changed
	if err := f.applyMode(set, spec); err != nil {
		return err
	}
	if set("name") {
		annotationsOf(spec).Name = f.name
	}
	if set("label") || set("label-rm") || set("label-add") {
		a := annotationsOf(spec)
		a.Labels = applyLabels(a.Labels, f.labelRm, slices.Concat(f.labels, f.labelAdd))
	}
	f.applyContainer(set, spec)
	f.applyMounts(set, spec)
	f.files.apply(set, spec)
	if err := f.health.apply(set, spec); err != nil {
		return err
	}
	f.applyResources(set, spec)
	f.applyRestart(set, spec)
	f.applyPlacement(set, spec)
	f.applyUpdate(set, spec)
	f.rollback.apply(set, spec)
	f.applyPorts(set, spec)
	if set("endpoint-mode") {
		endpointOf(spec).Mode = f.endpointMode
	}
	if set("network") {
		t := taskOf(spec)
		t.Networks = nil
		for _, n := range f.networks {
			a, err := parseNetwork(n)
			if err != nil {
				return err
			}
			t.Networks = append(t.Networks, a)
		}
	}
	return nil
}

// parseNetwork parses a --network value: a network's name (or ID), or
// docker's long form "name=NAME,alias=A,alias=B" (the service's names on
// that network besides its own).
func parseNetwork(v string) (*objectv1.NetworkAttachmentConfig, error) {
	if !strings.Contains(v, "=") {
		return &objectv1.NetworkAttachmentConfig{Target: v}, nil
	}
	a := &objectv1.NetworkAttachmentConfig{}
	for _, field := range strings.Split(v, ",") {
		key, val, _ := strings.Cut(field, "=")
		switch strings.TrimSpace(key) {
		case "name", "target":
			a.Target = val
		case "alias":
			a.Aliases = append(a.Aliases, val)
		default:
			return nil, fmt.Errorf("--network %q: unknown field %q (want name=NETWORK,alias=NAME,...)", v, key)
		}
	}
	if a.Target == "" {
		return nil, fmt.Errorf("--network %q: name=NETWORK is required", v)
	}
	return a, nil
}

// applyMode sets the mode. --mode replicated alone means one replica, as in
// docker: a replicated mode must carry a count, and zero would mean "run
// nothing", which nobody asking for a replicated service means.
func (f *serviceFlags) applyMode(set func(string) bool, spec *objectv1.ServiceSpec) error {
	if handled, err := f.applyJobMode(set, spec); handled || err != nil {
		return err // job_flags.go
	}
	switch {
	case set("mode") && f.mode == "global":
		if set("replicas") {
			return fmt.Errorf("--replicas: only for --mode replicated")
		}
		spec.Mode = &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}}
	case set("replicas"):
		if spec.GetGlobal() != nil {
			return fmt.Errorf("--replicas: service %s is global", spec.GetAnnotations().GetName())
		}
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: f.replicas}}
	case set("mode"):
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}}
	}
	return nil
}

func (f *serviceFlags) applyContainer(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("image") {
		containerOf(spec).Image = f.image
	}
	if set("args") {
		containerOf(spec).Args = f.args
	}
	if set("env") || set("env-rm") || set("env-add") {
		c := containerOf(spec)
		c.Env = applyEnv(append(c.Env, f.env...), f.envRm, f.envAdd)
	}
	if set("workdir") {
		containerOf(spec).Dir = f.workdir
	}
	if set("user") {
		containerOf(spec).User = f.user
	}
	if set("stop-signal") {
		containerOf(spec).StopSignal = f.stopSignal
	}
	if set("stop-grace-period") {
		containerOf(spec).StopGracePeriod = durationpb.New(f.stopGracePeriod)
	}
}

func (f *serviceFlags) applyResources(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("limit-cpu") {
		limitsOf(spec).NanoCpus = f.limitCPU
	}
	if set("limit-memory") {
		limitsOf(spec).MemoryBytes = f.limitMemory
	}
	if set("reserve-cpu") {
		reservationsOf(spec).NanoCpus = f.reserveCPU
	}
	if set("reserve-memory") {
		reservationsOf(spec).MemoryBytes = f.reserveMemory
	}
}

func (f *serviceFlags) applyRestart(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("restart-condition") {
		restartOf(spec).Condition = f.restartCondition
	}
	if set("restart-delay") {
		restartOf(spec).Delay = durationpb.New(f.restartDelay)
	}
	if set("restart-max-attempts") {
		restartOf(spec).MaxAttempts = f.restartMaxAttempts
	}
	if set("restart-window") {
		restartOf(spec).Window = durationpb.New(f.restartWindow)
	}
}

func (f *serviceFlags) applyPlacement(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("constraint") || set("constraint-rm") || set("constraint-add") {
		p := placementOf(spec)
		p.Constraints = slices.DeleteFunc(p.Constraints, func(c string) bool { return slices.Contains(f.constraintRm, c) })
		for _, c := range slices.Concat(f.constraints, f.constraintAdd) {
			if !slices.Contains(p.Constraints, c) {
				p.Constraints = append(p.Constraints, c)
			}
		}
	}
	if set("placement-pref") || set("placement-pref-rm") || set("placement-pref-add") {
		p := placementOf(spec)
		p.Preferences = slices.DeleteFunc(p.Preferences, func(pp *objectv1.PlacementPreference) bool {
			return slices.Contains(f.prefRm, pp.GetSpread())
		})
		for _, attr := range slices.Concat(f.prefs, f.prefAdd) {
			p.Preferences = append(p.Preferences, &objectv1.PlacementPreference{Spread: attr})
		}
	}
	if set("max-replicas-per-node") {
		placementOf(spec).MaxReplicasPerNode = f.maxReplicasPerNode
	}
}

func (f *serviceFlags) applyUpdate(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("update-parallelism") {
		updateOf(spec).Parallelism = f.updateParallelism
	}
	if set("update-delay") {
		updateOf(spec).Delay = durationpb.New(f.updateDelay)
	}
	if set("update-failure-action") {
		updateOf(spec).FailureAction = f.updateFailureAction
	}
	if set("update-monitor") {
		updateOf(spec).Monitor = durationpb.New(f.updateMonitor)
	}
	if set("update-max-failure-ratio") {
		updateOf(spec).MaxFailureRatio = f.updateMaxFailure
	}
	if set("update-order") {
		updateOf(spec).Order = f.updateOrder
	}
}

// applyPorts publishes ports. A port added with the published port and
// protocol of an existing one replaces it; --publish-rm removes by published
// port, the one users see and the one that is unique on a node.
func (f *serviceFlags) applyPorts(set func(string) bool, spec *objectv1.ServiceSpec) {
	if !set("publish") && !set("publish-rm") && !set("publish-add") {
		return
	}
	e := endpointOf(spec)
	for _, p := range f.publishRm {
		e.Ports = slices.DeleteFunc(e.Ports, func(q *objectv1.PortConfig) bool { return samePublished(p, q) })
	}
	e.Ports = append(e.Ports, f.publish...)
	for _, p := range f.publishAdd {
		if p.PublishedPort != 0 {
			e.Ports = slices.DeleteFunc(e.Ports, func(q *objectv1.PortConfig) bool { return samePublished(p, q) })
		}
		e.Ports = append(e.Ports, p)
	}
}

func samePublished(a, b *objectv1.PortConfig) bool {
	return a.GetPublishedPort() == b.GetPublishedPort() && protocolOf(a) == protocolOf(b)
}

// protocolOf is the port's protocol, "tcp" when unset as the server defaults.
func protocolOf(p *objectv1.PortConfig) string {
	if p.GetProtocol() == "" {
		return "tcp"
	}
	return p.GetProtocol()
}

// applyEnv removes the variables named in rm, then sets those in add, each
// replacing any earlier one of the same name.
func applyEnv(env, rm, add []string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _ := splitKV(kv)
		return slices.Contains(rm, k)
	})
	for _, kv := range add {
		k, _ := splitKV(kv)
		out = slices.DeleteFunc(out, func(old string) bool {
			ok, _ := splitKV(old)
			return ok == k
		})
		out = append(out, kv)
	}
	return out
}

// applyLabels removes the keys in rm, then sets those in add.
func applyLabels(labels map[string]string, rm, add []string) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range rm {
		delete(out, k)
	}
	for _, kv := range add {
		k, v := splitKV(kv)
		out[k] = v
	}
	return out
}

// The ...Of functions return a part of spec, creating it and its parents
// when missing.

func annotationsOf(s *objectv1.ServiceSpec) *objectv1.Annotations {
	if s.Annotations == nil {
		s.Annotations = &objectv1.Annotations{}
	}
	return s.Annotations
}

func taskOf(s *objectv1.ServiceSpec) *objectv1.TaskSpec {
	if s.Task == nil {
		s.Task = &objectv1.TaskSpec{}
	}
	return s.Task
}

func containerOf(s *objectv1.ServiceSpec) *objectv1.ContainerSpec {
	t := taskOf(s)
	if t.Container == nil {
		t.Container = &objectv1.ContainerSpec{}
	}
	return t.Container
}

func resourcesOf(s *objectv1.ServiceSpec) *objectv1.ResourceRequirements {
	t := taskOf(s)
	if t.Resources == nil {
		t.Resources = &objectv1.ResourceRequirements{}
	}
	return t.Resources
}

func limitsOf(s *objectv1.ServiceSpec) *objectv1.Resources {
	r := resourcesOf(s)
	if r.Limits == nil {
		r.Limits = &objectv1.Resources{}
	}
	return r.Limits
}

func reservationsOf(s *objectv1.ServiceSpec) *objectv1.Resources {
	r := resourcesOf(s)
	if r.Reservations == nil {
		r.Reservations = &objectv1.Resources{}
	}
	return r.Reservations
}

func restartOf(s *objectv1.ServiceSpec) *objectv1.RestartPolicy {
	t := taskOf(s)
	if t.Restart == nil {
		t.Restart = &objectv1.RestartPolicy{}
	}
	return t.Restart
}

func placementOf(s *objectv1.ServiceSpec) *objectv1.Placement {
	t := taskOf(s)
	if t.Placement == nil {
		t.Placement = &objectv1.Placement{}
	}
	return t.Placement
}

// updateOf returns s's update config, making one when s has none. A new
// one replaces one task at a time, as the server's default would: 0 in a
// config that was sent means all at once, so a create with only
// --update-delay must not send 0.
func updateOf(s *objectv1.ServiceSpec) *objectv1.UpdateConfig {
	if s.Update == nil {
		s.Update = &objectv1.UpdateConfig{Parallelism: 1}
	}
	return s.Update
}

func endpointOf(s *objectv1.ServiceSpec) *objectv1.EndpointSpec {
	if s.Endpoint == nil {
		s.Endpoint = &objectv1.EndpointSpec{}
	}
	return s.Endpoint
}
