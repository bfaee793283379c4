package controlapi

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/kernel/config"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	"github.com/shoalhq/shoal/sdk/scheduler"
)

var (
	// nameRE is a DNS label, relaxed to allow '_' and '.' as Docker does.
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	// volumeNameRE is a named volume's name: a directory of the node's
	// executor, so never "." or "..".
	volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	// userNameRE is a POSIX-portable user or group name; one starting with a
	// digit would be ambiguous with a numeric ID.
	userNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.-]*$`)
	// registryRE is a host name or IPv4 address with an optional port.
	// IPv6 literals are not accepted.
	registryRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$`)
	// repoComponentRE is one path component of a repository name.
	repoComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// tagRE is an image tag.
	tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$`)
	// digestRE is the only digest algorithm registries use in practice.
	digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// stopSignals are the signals a container may be stopped with, without
// "SIG". TERM, INT and QUIT are what servers handle as "shut down"; HUP and
// USR1/USR2 are used by some daemons for a graceful stop; WINCH is Apache
// httpd's graceful stop (its official image's STOPSIGNAL); KILL skips the
// grace period. STOP and the like cannot end a process and are refused.
var stopSignals = []string{"TERM", "INT", "QUIT", "KILL", "HUP", "USR1", "USR2", "WINCH"}

// ValidateServiceSpec checks a service spec, after ApplyServiceDefaults. It
// returns nil or sdk.FieldErrors naming every bad field, with paths rooted at
// "spec.", e.g. "spec.task.container.image". Enum fields left UNSPECIFIED are
// accepted as "the default"; ApplyServiceDefaults makes them explicit.
func ValidateServiceSpec(spec *objectv1.ServiceSpec) error {
	var fe sdk.FieldErrors
	if spec == nil {
		fe.Add("spec", "is required")
		return fe.Err()
	}
	validateSpecSize(&fe, spec)
	validateAnnotations(&fe, "spec.annotations", spec.GetAnnotations(), true)
	validateMode(&fe, spec)
	validateTask(&fe, "spec.task", spec.GetTask())
	validateUpdate(&fe, "spec.update", spec.GetUpdate())
	validateRollback(&fe, "spec.rollback", spec.GetRollback())
	validateEndpoint(&fe, "spec.endpoint", spec.GetEndpoint(), len(spec.GetTask().GetNetworks()) > 0)
	return capped(fe).Err()
}

// ValidateNodeSpec checks a node spec as an operator sends it in UpdateNode.
// The name is optional (it defaults to the host name) and availability must
// be set: an update that left it unset would be ambiguous.
func ValidateNodeSpec(spec *objectv1.NodeSpec) error {
	var fe sdk.FieldErrors
	if spec == nil {
		fe.Add("spec", "is required")
		return fe.Err()
	}
	validateSpecSize(&fe, spec)
	validateAnnotations(&fe, "spec.annotations", spec.GetAnnotations(), false)
	validateEnum(&fe, "spec.desired_role", spec.GetDesiredRole(), true)
	validateEnum(&fe, "spec.availability", spec.GetAvailability(), false)
	return capped(fe).Err()
}

// ValidateClusterSpec checks a cluster spec, after ApplyClusterDefaults. An
// unset duration counts as zero, which is out of bounds.
func ValidateClusterSpec(spec *objectv1.ClusterSpec) error {
	var fe sdk.FieldErrors
	if spec == nil {
		fe.Add("spec", "is required")
		return fe.Err()
	}
	validateSpecSize(&fe, spec)
	validateAnnotations(&fe, "spec.annotations", spec.GetAnnotations(), false)
	validateDurationRange(&fe, "spec.dispatcher.heartbeat_period",
		spec.GetDispatcher().GetHeartbeatPeriod(), minHeartbeatPeriod, maxHeartbeatPeriod)
	validateDurationRange(&fe, "spec.ca.node_cert_expiry",
		spec.GetCa().GetNodeCertExpiry(), minNodeCertExpiry, maxNodeCertExpiry)
	if r := spec.GetOrchestration().GetTaskHistoryRetention(); r < 0 || r > maxTaskHistoryRetention {
		fe.Add("spec.orchestration.task_history_retention", "must be between 0 and %d, got %d", maxTaskHistoryRetention, r)
	}
	validateBindMountRoots(&fe, spec.GetBindMountRoots())
	return capped(fe).Err()
}

// validateSpecSize refuses a spec larger than maxSpecBytes once serialized.
// It comes first, so that a reply capped at maxFieldErrors still says it.
func validateSpecSize(fe *sdk.FieldErrors, spec proto.Message) {
	if n := proto.Size(spec); n > maxSpecBytes {
		fe.Add("spec", "must be at most %d bytes serialized, got %d", maxSpecBytes, n)
	}
}

// validateCount refuses a list of more than limit entries. The entries are
// checked all the same, so that every bad one is named.
func validateCount(fe *sdk.FieldErrors, field string, n, limit int) {
	if n > limit {
		fe.Add(field, "must have at most %d entries, got %d", limit, n)
	}
}

// capped keeps the first maxFieldErrors errors and says how many were left
// out, so that a pathological spec cannot produce an unbounded reply.
func capped(fe sdk.FieldErrors) sdk.FieldErrors {
	if len(fe) <= maxFieldErrors {
		return fe
	}
	more := len(fe) - maxFieldErrors
	fe = fe[:maxFieldErrors:maxFieldErrors]
	fe.Add("spec", "%d more invalid fields not shown", more)
	return fe
}

func validateAnnotations(fe *sdk.FieldErrors, field string, a *objectv1.Annotations, nameRequired bool) {
	name := a.GetName()
	switch {
	case name == "":
		if nameRequired {
			fe.Add(field+".name", "is required")
		}
	case len(name) > maxNameLen:
		fe.Add(field+".name", "must be at most %d characters, got %d", maxNameLen, len(name))
	case !nameRE.MatchString(name):
		fe.Add(field+".name", "must start with a letter or digit and contain only letters, digits, '_', '.' and '-', got %s", quote(name))
	}
	validateLabels(fe, field+".labels", a.GetLabels())
}

// validateLabels checks keys in sorted order, so that the errors come out in
// the same order every time.
func validateLabels(fe *sdk.FieldErrors, field string, labels map[string]string) {
	validateCount(fe, field, len(labels), maxLabels)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		f := fmt.Sprintf("%s[%s]", field, quote(k))
		switch {
		case k == "":
			fe.Add(f, "key must not be empty")
		case len(k) > maxLabelKeyLen:
			fe.Add(f, "key must be at most %d characters, got %d", maxLabelKeyLen, len(k))
		case strings.ContainsFunc(k, func(r rune) bool { return r == '=' || unicode.IsSpace(r) || unicode.IsControl(r) }):
			// Such a key could be neither set with `--label key=value` nor
			// matched by a constraint.
			fe.Add(f, "key must not contain '=', white space or control characters")
		}
		if v := labels[k]; len(v) > maxLabelValueLen {
			fe.Add(f, "value must be at most %d characters, got %d", maxLabelValueLen, len(v))
		}
	}
}

func validateMode(fe *sdk.FieldErrors, spec *objectv1.ServiceSpec) {
	switch m := spec.GetMode().(type) {
	case *objectv1.ServiceSpec_Replicated:
		if m.Replicated == nil {
			fe.Add("spec.mode.replicated", "is required when the mode is replicated")
			return
		}
		if r := m.Replicated.GetReplicas(); r < 0 || r > maxReplicas {
			fe.Add("spec.mode.replicated.replicas", "must be between 0 and %d, got %d", maxReplicas, r)
		}
	case *objectv1.ServiceSpec_Global:
		if m.Global == nil {
			fe.Add("spec.mode.global", "is required when the mode is global")
		}
	case *objectv1.ServiceSpec_ReplicatedJob:
		if m.ReplicatedJob == nil {
			fe.Add("spec.mode.replicated_job", "is required when the mode is replicated-job")
			return
		}
		// 0 stands for the defaults (ApplyServiceDefaults fills them in):
		// max_concurrent 1, total_completions max_concurrent.
		maxConc, total := max(m.ReplicatedJob.GetMaxConcurrent(), 1), m.ReplicatedJob.GetTotalCompletions()
		if total == 0 {
			total = maxConc
		}
		if total > maxReplicas {
			fe.Add("spec.mode.replicated_job.total_completions", "must be between 1 and %d, got %d", maxReplicas, total)
		}
		if maxConc > total {
			fe.Add("spec.mode.replicated_job.max_concurrent", "must be at most total_completions (%d), got %d", total, maxConc)
		}
	case *objectv1.ServiceSpec_GlobalJob:
		if m.GlobalJob == nil {
			fe.Add("spec.mode.global_job", "is required when the mode is global-job")
		}
	default:
		fe.Add("spec.mode", "must be replicated, global, replicated-job or global-job")
	}
}

// serviceModeName names a spec's mode as the CLI's --mode does.
func serviceModeName(spec *objectv1.ServiceSpec) string {
	switch spec.GetMode().(type) {
	case *objectv1.ServiceSpec_Replicated:
		return "replicated"
	case *objectv1.ServiceSpec_Global:
		return "global"
	case *objectv1.ServiceSpec_ReplicatedJob:
		return "replicated-job"
	case *objectv1.ServiceSpec_GlobalJob:
		return "global-job"
	}
	return "none"
}

func validateTask(fe *sdk.FieldErrors, field string, t *objectv1.TaskSpec) {
	validateContainer(fe, field+".container", t.GetContainer())
	validateResources(fe, field+".resources", t.GetResources())
	validateRestart(fe, field+".restart", t.GetRestart())
	validatePlacement(fe, field+".placement", t.GetPlacement())
	validateNetworks(fe, field+".networks", t.GetNetworks())
	validateNetworkTargets(fe, field+".networks", t.GetNetworks())
}

// validateNetworkTargets bounds the network names of a task, which
// validateNetworks only requires: a target is a name or an ID (shorter than
// a name), so anything longer can be neither. Beyond maxNetworksPerTask
// validateNetworks has named the list already.
func validateNetworkTargets(fe *sdk.FieldErrors, field string, nets []*objectv1.NetworkAttachmentConfig) {
	if len(nets) > maxNetworksPerTask {
		return
	}
	for i, n := range nets {
		if t := n.GetTarget(); len(t) > maxNameLen {
			fe.Add(fmt.Sprintf("%s[%d].target", field, i), "must be at most %d characters (a network name or ID), got %d", maxNameLen, len(t))
		}
	}
}

func validateContainer(fe *sdk.FieldErrors, field string, c *objectv1.ContainerSpec) {
	if reason := checkImage(c.GetImage()); reason != "" {
		fe.Add(field+".image", "%s", reason)
	}
	validateStrings(fe, field+".command", c.GetCommand(), maxArgs)
	validateStrings(fe, field+".args", c.GetArgs(), maxArgs)
	validateFileRefs(fe, field+".secrets", c.GetSecrets(), true)
	validateFileRefs(fe, field+".configs", c.GetConfigs(), false)
	validateCount(fe, field+".env", len(c.GetEnv()), maxEnv)
	for i, e := range c.GetEnv() {
		f := fmt.Sprintf("%s.env[%d]", field, i)
		k, _, ok := strings.Cut(e, "=")
		switch {
		case len(e) > maxArgLen:
			fe.Add(f, "must be at most %d bytes, got %d", maxArgLen, len(e))
		case !ok || k == "":
			fe.Add(f, "must be KEY=value with a non-empty KEY, got %s", quote(e))
		case strings.ContainsRune(e, 0):
			fe.Add(f, "must not contain NUL bytes")
		}
	}
	switch d := c.GetDir(); {
	case len(d) > maxPathLen:
		fe.Add(field+".dir", "must be at most %d bytes, got %d", maxPathLen, len(d))
	case d != "" && !path.IsAbs(d):
		fe.Add(field+".dir", "must be an absolute path, got %s", quote(d))
	case strings.ContainsRune(d, 0):
		fe.Add(field+".dir", "must not contain NUL bytes")
	}
	if u := c.GetUser(); u != "" {
		if reason := checkUser(u); reason != "" {
			fe.Add(field+".user", "%s, got %s", reason, quote(u))
		}
	}
	validateMounts(fe, field+".mounts", c.GetMounts())
	if s := c.GetStopSignal(); s != "" && !slices.Contains(stopSignals, strings.TrimPrefix(s, "SIG")) {
		fe.Add(field+".stop_signal", "must be one of SIG%s (with or without SIG), got %s",
			strings.Join(stopSignals, ", SIG"), quote(s))
	}
	validateDuration(fe, field+".stop_grace_period", c.GetStopGracePeriod())
	validateHealth(fe, field+".healthcheck", c.GetHealthcheck())
}

// validateHealth checks a health check as docker's API does: test is CMD
// with a command, CMD-SHELL with one non-empty command line, NONE alone, or
// empty (the image's); durations are at least 1ms when set (docker's
// minimum: a shorter interval would run the check back to back); retries
// is not negative.
func validateHealth(fe *sdk.FieldErrors, field string, h *objectv1.HealthConfig) {
	if h == nil {
		return
	}
	test := h.GetTest()
	validateStrings(fe, field+".test", test, maxHealthTestWords)
	if n := sumLen(test); n > maxHealthTestLen {
		fe.Add(field+".test", "must be at most %d bytes in all, got %d", maxHealthTestLen, n)
	}
	if len(test) > 0 {
		switch test[0] {
		case "NONE":
			if len(test) > 1 {
				fe.Add(field+".test", "NONE (--no-healthcheck) must come alone, got a command too")
			}
		case "CMD":
			if len(test) < 2 || test[1] == "" {
				fe.Add(field+".test", "CMD needs a command")
			}
		case "CMD-SHELL":
			if len(test) != 2 || strings.TrimSpace(test[1]) == "" {
				fe.Add(field+".test", "CMD-SHELL needs exactly one non-empty command line, got %d words", len(test)-1)
			}
		default:
			fe.Add(field+".test[0]", "must be CMD, CMD-SHELL or NONE, got %s", quote(test[0]))
		}
	}
	for _, d := range []struct {
		name string
		v    *durationpb.Duration
	}{{"interval", h.GetInterval()}, {"timeout", h.GetTimeout()}, {"start_period", h.GetStartPeriod()}} {
		if d.v == nil || d.v.CheckValid() != nil || d.v.AsDuration() <= 0 {
			validateDuration(fe, field+"."+d.name, d.v)
			continue
		}
		validateDurationRange(fe, field+"."+d.name, d.v, minHealthDuration, maxHealthDuration)
	}
	if r := h.GetRetries(); r < 0 || r > maxHealthRetries {
		fe.Add(field+".retries", "must be between 0 and %d, got %d", maxHealthRetries, r)
	}
}

func sumLen(ss []string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	return n
}

// validateStrings checks the words of a command line: at most limit of
// them, each short enough for execve and without NUL bytes, which cannot
// pass through it.
func validateStrings(fe *sdk.FieldErrors, field string, ss []string, limit int) {
	validateCount(fe, field, len(ss), limit)
	for i, s := range ss {
		switch {
		case len(s) > maxArgLen:
			fe.Add(fmt.Sprintf("%s[%d]", field, i), "must be at most %d bytes, got %d", maxArgLen, len(s))
		case strings.ContainsRune(s, 0):
			fe.Add(fmt.Sprintf("%s[%d]", field, i), "must not contain NUL bytes")
		}
	}
}

func validateMounts(fe *sdk.FieldErrors, field string, mounts []*objectv1.Mount) {
	validateCount(fe, field, len(mounts), maxMounts)
	targets := make(map[string]int, min(len(mounts), maxMounts))
	for i, m := range mounts {
		f := fmt.Sprintf("%s[%d]", field, i)
		typ := m.GetType()
		if typ != objectv1.MountType_MOUNT_TYPE_TMPFS && m.GetTmpfsSizeBytes() != 0 {
			fe.Add(f+".tmpfs_size_bytes", "is for tmpfs mounts only")
		}
		switch s := m.GetSource(); typ {
		case objectv1.MountType_MOUNT_TYPE_UNSPECIFIED, objectv1.MountType_MOUNT_TYPE_BIND:
			switch {
			case len(s) > maxPathLen:
				fe.Add(f+".source", "must be at most %d bytes, got %d", maxPathLen, len(s))
			case !path.IsAbs(s) || strings.ContainsRune(s, 0):
				fe.Add(f+".source", "must be an absolute path on the node, got %s", quote(s))
			}
		case objectv1.MountType_MOUNT_TYPE_VOLUME:
			switch {
			case len(s) > maxVolumeNameLen:
				fe.Add(f+".source", "must be a volume name of at most %d characters, got %d", maxVolumeNameLen, len(s))
			case !volumeNameRE.MatchString(s):
				fe.Add(f+".source", "must be a volume name: letters, digits and _ . - starting with a letter or digit, got %s", quote(s))
			}
		case objectv1.MountType_MOUNT_TYPE_TMPFS:
			if s != "" {
				fe.Add(f+".source", "must be empty for a tmpfs mount, got %s", quote(s))
			}
			if n := m.GetTmpfsSizeBytes(); n < 0 || n > maxTmpfsSize {
				fe.Add(f+".tmpfs_size_bytes", "must be between 0 (the node's default, half its memory) and %d (1 TiB), got %d", int64(maxTmpfsSize), n)
			}
		default:
			fe.Add(f+".type", "must be bind, volume or tmpfs, got %s", typ)
		}
		t := m.GetTarget()
		if len(t) > maxPathLen {
			fe.Add(f+".target", "must be at most %d bytes, got %d", maxPathLen, len(t))
			continue
		}
		if !path.IsAbs(t) || strings.ContainsRune(t, 0) {
			fe.Add(f+".target", "must be an absolute path in the container, got %s", quote(t))
			continue
		}
		clean := path.Clean(t)
		if clean == "/" {
			fe.Add(f+".target", "must not be the container's root directory")
			continue
		}
		// "/data" and "/data/" are the same mount point.
		if j, dup := targets[clean]; dup {
			fe.Add(f+".target", "duplicates %s[%d].target %s", field, j, quote(clean))
			continue
		}
		targets[clean] = i
	}
}

func validateResources(fe *sdk.FieldErrors, field string, r *objectv1.ResourceRequirements) {
	lim, res := r.GetLimits(), r.GetReservations()
	for _, x := range []struct {
		name string
		v    *objectv1.Resources
	}{{"limits", lim}, {"reservations", res}} {
		if c := x.v.GetNanoCpus(); c < 0 {
			fe.Add(field+"."+x.name+".nano_cpus", "must be at least 0, got %d", c)
		}
		if m := x.v.GetMemoryBytes(); m < 0 {
			fe.Add(field+"."+x.name+".memory_bytes", "must be at least 0, got %d", m)
		}
	}
	if m := lim.GetMemoryBytes(); m > 0 && m < minMemoryLimit {
		fe.Add(field+".limits.memory_bytes", "must be 0 (no limit) or at least %d (4 MiB), got %d", minMemoryLimit, m)
	}
	// Zero means "not set" for both; a reservation above its limit could
	// never be used, and the scheduler would set aside what cannot run.
	if l, r := lim.GetNanoCpus(), res.GetNanoCpus(); l > 0 && r > l {
		fe.Add(field+".reservations.nano_cpus", "must be at most limits.nano_cpus (%d), got %d", l, r)
	}
	if l, r := lim.GetMemoryBytes(), res.GetMemoryBytes(); l > 0 && r > l {
		fe.Add(field+".reservations.memory_bytes", "must be at most limits.memory_bytes (%d), got %d", l, r)
	}
}

func validateRestart(fe *sdk.FieldErrors, field string, r *objectv1.RestartPolicy) {
	validateEnum(fe, field+".condition", r.GetCondition(), true)
	validateDuration(fe, field+".delay", r.GetDelay())
	validateDuration(fe, field+".window", r.GetWindow())
}

func validatePlacement(fe *sdk.FieldErrors, field string, p *objectv1.Placement) {
	cs := p.GetConstraints()
	validateCount(fe, field+".constraints", len(cs), maxConstraints)
	for i, c := range cs {
		f := fmt.Sprintf("%s.constraints[%d]", field, i)
		if len(c) > maxConstraintLen {
			fe.Add(f, "must be at most %d bytes, got %d", maxConstraintLen, len(c))
		} else if reason := checkConstraint(c); reason != "" {
			fe.Add(f, "%s, got %s", reason, quote(c))
		}
	}
	ps := p.GetPreferences()
	validateCount(fe, field+".preferences", len(ps), maxPreferences)
	for i, pref := range ps {
		s := pref.GetSpread()
		if reason := checkAttribute(s); reason != "" {
			fe.Add(fmt.Sprintf("%s.preferences[%d].spread", field, i), "%s, got %s", reason, quote(s))
		}
	}
}

func validateUpdate(fe *sdk.FieldErrors, field string, u *objectv1.UpdateConfig) {
	// parallelism is unsigned: every value is valid, 0 meaning "all at once".
	validateDuration(fe, field+".delay", u.GetDelay())
	validateEnum(fe, field+".failure_action", u.GetFailureAction(), true)
	validateDuration(fe, field+".monitor", u.GetMonitor())
	// Written so that NaN fails too.
	if r := u.GetMaxFailureRatio(); !(r >= 0 && r <= 1) {
		fe.Add(field+".max_failure_ratio", "must be between 0 and 1, got %v", r)
	}
	validateEnum(fe, field+".order", u.GetOrder(), true)
}

func validateEndpoint(fe *sdk.FieldErrors, field string, e *objectv1.EndpointSpec, networked bool) {
	type published struct {
		port  uint32
		proto string
	}
	validateCount(fe, field+".ports", len(e.GetPorts()), maxPorts)
	validateEnum(fe, field+".mode", e.GetMode(), true)
	ingress := 0
	seen := make(map[published]int)
	for i, p := range e.GetPorts() {
		f := fmt.Sprintf("%s.ports[%d]", field, i)
		proto := p.GetProtocol()
		if proto != "tcp" && proto != "udp" {
			fe.Add(f+".protocol", "must be tcp or udp, got %s", quote(proto))
		}
		if t := p.GetTargetPort(); t < 1 || t > maxPort {
			fe.Add(f+".target_port", "must be between 1 and %d, got %d", maxPort, t)
		}
		pub := p.GetPublishedPort()
		if pub < 1 || pub > maxPort {
			fe.Add(f+".published_port", "must be between 1 and %d, got %d", maxPort, pub)
		} else if j, dup := seen[published{pub, proto}]; dup {
			fe.Add(f+".published_port", "%d/%s is already published by %s.ports[%d]", pub, proto, field, j)
		} else {
			seen[published{pub, proto}] = i
		}
		validateEnum(fe, f+".mode", p.GetMode(), true)
		if p.GetMode() == objectv1.PublishMode_PUBLISH_MODE_INGRESS {
			if ingress++; ingress == maxIngressPorts+1 {
				fe.Add(f+".mode", "at most %d ports are published in mode ingress (they travel with every task's gossip); publish the others in mode host", maxIngressPorts)
			}
			if !networked {
				fe.Add(f+".mode", "ingress (the routing mesh) reaches tasks by their network addresses: put the service on a network (--network), or publish in mode host")
			}
		}
	}
}

// validateEnum rejects values outside the enum's declared set, which
// protobuf lets through as plain integers, and UNSPECIFIED (0) unless
// allowUnspecified.
func validateEnum(fe *sdk.FieldErrors, field string, v protoreflect.Enum, allowUnspecified bool) {
	n := v.Number()
	if v.Descriptor().Values().ByNumber(n) != nil && (n != 0 || allowUnspecified) {
		return
	}
	values := v.Descriptor().Values()
	names := make([]string, 0, values.Len())
	for i := range values.Len() {
		if values.Get(i).Number() != 0 || allowUnspecified {
			names = append(names, string(values.Get(i).Name()))
		}
	}
	got := strconv.Itoa(int(n))
	if d := values.ByNumber(n); d != nil {
		got = string(d.Name())
	}
	fe.Add(field, "must be one of %s, got %s", strings.Join(names, ", "), got)
}

// validateDuration checks a duration that must not be negative. Unset is
// zero, which is valid.
func validateDuration(fe *sdk.FieldErrors, field string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		fe.Add(field, "must be a valid duration: %v", err)
		return
	}
	if v := d.AsDuration(); v < 0 {
		fe.Add(field, "must be at least 0s, got %s", config.FormatDuration(v))
	}
}

// validateDurationRange checks that a duration is within [lo, hi]. Unset is
// zero.
func validateDurationRange(fe *sdk.FieldErrors, field string, d *durationpb.Duration, lo, hi time.Duration) {
	if d != nil {
		if err := d.CheckValid(); err != nil {
			fe.Add(field, "must be a valid duration: %v", err)
			return
		}
	}
	// AsDuration saturates a duration beyond ±292 years, which stays out of
	// range; nil is zero.
	if v := d.AsDuration(); v < lo || v > hi {
		fe.Add(field, "must be between %s and %s, got %s", config.FormatDuration(lo), config.FormatDuration(hi), config.FormatDuration(v))
	}
}

// quote quotes s for a message, shortened to maxQuoted bytes so that a huge
// bad value does not make a huge error.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// checkImage checks an image reference of the form
// [registry[:port]/]path[:tag][@sha256:digest], the grammar of
// distribution/reference without IPv6 registries and with sha256 digests
// only. It returns why ref is invalid, or "".
func checkImage(ref string) string {
	const form = "must be an image reference [registry[:port]/]path[:tag][@sha256:digest]"
	switch {
	case ref == "":
		return "is required"
	case len(ref) > maxImageLen:
		return fmt.Sprintf("must be at most %d characters, got %d", maxImageLen, len(ref))
	case strings.ContainsFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Sprintf("must not contain white space or control characters, got %s", quote(ref))
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !digestRE.MatchString(digest) {
		return fmt.Sprintf("%s: the digest must be sha256: and 64 lowercase hex digits, got %s", form, quote(ref))
	}
	// A ':' after the last '/' starts the tag; one before it is a port.
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag := name[i+1:]
		name = name[:i]
		if !tagRE.MatchString(tag) {
			return fmt.Sprintf("%s: the tag must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-', got %s", form, quote(ref))
		}
	}
	if name == "" {
		return fmt.Sprintf("%s: the repository path is missing, got %s", form, quote(ref))
	}
	if len(name) > maxImageNameLen {
		return fmt.Sprintf("%s: the repository name must be at most %d characters, got %d", form, maxImageNameLen, len(name))
	}
	components := strings.Split(name, "/")
	// As in Docker, the first component is a registry if it looks like a
	// host (has a '.' or a port, is localhost, or has upper case letters,
	// which repository paths cannot) and something follows it.
	if first := components[0]; len(components) > 1 &&
		(strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first) {
		if reason := checkRegistry(first); reason != "" {
			return fmt.Sprintf("%s: %s, got %s", form, reason, quote(ref))
		}
		components = components[1:]
	}
	for _, c := range components {
		if !repoComponentRE.MatchString(c) {
			return fmt.Sprintf("%s: each path component must be lowercase letters and digits separated by '.', '_', '__' or '-', got %s", form, quote(ref))
		}
	}
	return ""
}

func checkRegistry(host string) string {
	if !registryRE.MatchString(host) {
		return "the registry must be a host name or IPv4 address with an optional port"
	}
	if _, port, ok := strings.Cut(host, ":"); ok {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > maxPort {
			return fmt.Sprintf("the registry port must be between 1 and %d", maxPort)
		}
	}
	return ""
}

// checkUser checks "user[:group]" where each is a name or a numeric ID. It
// returns why u is invalid, or "".
func checkUser(u string) string {
	user, group, hasGroup := strings.Cut(u, ":")
	if !validUserOrGroup(user) || (hasGroup && !validUserOrGroup(group)) {
		return fmt.Sprintf("must be name|uid[:group|gid], with names of at most %d characters "+
			"([a-zA-Z_][a-zA-Z0-9_.-]*) and IDs between 0 and %d", maxUserNameLen, uint32(maxID))
	}
	return ""
}

func validUserOrGroup(s string) bool {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		id, err := strconv.ParseUint(s, 10, 32)
		return err == nil && id <= maxID
	}
	return len(s) <= maxUserNameLen && userNameRE.MatchString(s)
}

// ValidateConstraint checks that expr is a constraint in the language of
// scheduler.ParseConstraint, within the control API's bounds. Errors are of
// kind sdk.ErrInvalidArgument.
func ValidateConstraint(expr string) error {
	if reason := checkConstraint(expr); reason != "" {
		return fmt.Errorf("constraint %s: %s: %w", quote(expr), reason, sdk.ErrInvalidArgument)
	}
	return nil
}

// checkConstraint checks expr with the SDK's constraint language, which
// every scheduler matches with, and the bounds on its length and its
// label's. It returns why expr is invalid, or "".
func checkConstraint(expr string) string {
	if len(expr) > maxConstraintLen {
		return fmt.Sprintf("must be at most %d bytes, got %d", maxConstraintLen, len(expr))
	}
	c, err := scheduler.ParseConstraint(expr)
	if err != nil {
		return syntaxReason(err)
	}
	if label, ok := c.Attribute().Label(); ok && len(label) > maxLabelKeyLen {
		return fmt.Sprintf("the key must name a label of at most %d characters, got %d", maxLabelKeyLen, len(label))
	}
	if len(c.Value()) > maxLabelValueLen {
		return fmt.Sprintf("the value must be at most %d characters, got %d", maxLabelValueLen, len(c.Value()))
	}
	return ""
}

// checkAttribute checks the node attribute a placement preference names.
// It returns why key is invalid, or "".
func checkAttribute(key string) string {
	a, err := scheduler.ParseAttribute(key)
	if err != nil {
		return syntaxReason(err)
	}
	if label, ok := a.Label(); ok && len(label) > maxLabelKeyLen {
		return fmt.Sprintf("must name a label of at most %d characters, got %d", maxLabelKeyLen, len(label))
	}
	return ""
}

// syntaxReason is the reason of a scheduler.SyntaxError, without the
// expression, which field errors quote themselves.
func syntaxReason(err error) string {
	if se, ok := errors.AsType[*scheduler.SyntaxError](err); ok {
		return se.Reason
	}
	return err.Error()
}
