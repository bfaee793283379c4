package stack

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// converter translates one loaded project.
type converter struct {
	stack   string
	wd      string
	project *types.Project
	files   []types.ConfigFile
	names   []string // the files as the user named them, for messages
	plan    Plan
	// usedNetworks are the keys of the networks services join.
	usedNetworks map[string]bool
}

func (c *converter) warnf(format string, args ...any) {
	c.plan.Warnings = append(c.plan.Warnings, fmt.Sprintf(format, args...))
}

// fieldError is a wrong value: `service "db": deploy.replicas: must be >= 0`.
func fieldError(service, field, format string, args ...any) error {
	return fmt.Errorf("service %q: %s: %s", service, field, fmt.Sprintf(format, args...))
}

func (c *converter) labels(user map[string]string) map[string]string {
	l := make(map[string]string, len(user)+1)
	for k, v := range user {
		l[k] = v
	}
	l[LabelNamespace] = c.stack
	return l
}

func (c *converter) convert() (*Plan, error) {
	p := c.project
	c.plan.Name = c.stack
	c.usedNetworks = map[string]bool{}
	for _, name := range sortedKeys(p.Services) {
		spec, err := c.convertService(p.Services[name])
		if err != nil {
			return nil, err
		}
		c.plan.Services = append(c.plan.Services, spec)
	}
	if err := c.convertNetworks(); err != nil {
		return nil, err
	}
	for _, key := range sortedKeys(p.Secrets) {
		s := p.Secrets[key]
		if s.External {
			c.plan.ExternalSecrets = append(c.plan.ExternalSecrets, s.Name)
			continue
		}
		data, source, err := c.readData("secret", key, types.FileObjectConfig(s))
		if err != nil {
			return nil, c.dataErr("secrets", key, err)
		}
		c.plan.Secrets = append(c.plan.Secrets, Secret{
			Spec: &objectv1.SecretSpec{
				Annotations: &objectv1.Annotations{Name: s.Name, Labels: c.labels(s.Labels)},
				Data:        data,
			},
			Source: source,
		})
	}
	for _, key := range sortedKeys(p.Configs) {
		s := p.Configs[key]
		if s.External {
			c.plan.ExternalConfigs = append(c.plan.ExternalConfigs, s.Name)
			continue
		}
		data, source, err := c.readData("config", key, types.FileObjectConfig(s))
		if err != nil {
			return nil, c.dataErr("configs", key, err)
		}
		c.plan.Configs = append(c.plan.Configs, Config{
			Spec: &objectv1.ConfigSpec{
				Annotations: &objectv1.Annotations{Name: s.Name, Labels: c.labels(s.Labels)},
				Data:        data,
			},
			Source: source,
		})
	}
	for _, key := range sortedKeys(p.Volumes) {
		v := p.Volumes[key]
		if v.External {
			continue
		}
		c.plan.Volumes = append(c.plan.Volumes, v.Name)
		if v.Driver != "" && v.Driver != "local" {
			c.warnf("volume %q: driver %q is not supported (volumes are local to each node), ignored", key, v.Driver)
		}
	}
	sortByName(c.plan.Secrets, func(s Secret) string { return s.Spec.GetAnnotations().GetName() })
	sortByName(c.plan.Configs, func(s Config) string { return s.Spec.GetAnnotations().GetName() })
	sort.Strings(c.plan.Volumes)
	sort.Strings(c.plan.ExternalSecrets)
	sort.Strings(c.plan.ExternalConfigs)
	sort.Strings(c.plan.ExternalNetworks)
	c.plan.ExternalSecrets = slices.Compact(c.plan.ExternalSecrets)
	c.plan.ExternalConfigs = slices.Compact(c.plan.ExternalConfigs)
	c.plan.ExternalNetworks = slices.Compact(c.plan.ExternalNetworks)
	sort.Strings(c.plan.Warnings)
	c.plan.Warnings = slices.Compact(c.plan.Warnings)
	return &c.plan, nil
}

func sortByName[T any](s []T, name func(T) string) {
	sort.SliceStable(s, func(i, j int) bool { return name(s[i]) < name(s[j]) })
}

func (c *converter) convertNetworks() error {
	for _, key := range sortedKeys(c.project.Networks) {
		n := c.project.Networks[key]
		if !c.usedNetworks[key] {
			if key != "default" {
				c.warnf("network %q: no service uses it, not created", key)
			}
			continue
		}
		if n.External {
			c.plan.ExternalNetworks = append(c.plan.ExternalNetworks, n.Name)
			continue
		}
		if n.Driver != "" && n.Driver != "overlay" {
			c.warnf("network %q: driver %q is not supported (shoal networks are overlays), ignored", key, n.Driver)
		}
		spec := &objectv1.NetworkSpec{
			Annotations: &objectv1.Annotations{Name: n.Name, Labels: c.labels(n.Labels)},
		}
		for i, pool := range n.Ipam.Config {
			if pool == nil || pool.Subnet == "" {
				continue
			}
			if spec.Subnet != "" {
				c.warnf("network %q: ipam.config[%d]: only one subnet is supported, ignored", key, i)
				continue
			}
			pfx, err := netip.ParsePrefix(pool.Subnet)
			if err != nil || !pfx.Addr().Is4() {
				return fmt.Errorf("network %q: ipam.config[%d].subnet: %q is not an IPv4 CIDR", key, i, pool.Subnet)
			}
			spec.Subnet = pfx.Masked().String()
		}
		c.plan.Networks = append(c.plan.Networks, spec)
	}
	return nil
}

// dataErr names, in an error reading a secret's or config's data, the
// compose files and the services that use it (key under field, "secrets"
// or "configs"), so the message says where to look.
func (c *converter) dataErr(field, key string, err error) error {
	var users []string
	for _, name := range sortedKeys(c.project.Services) {
		svc := c.project.Services[name]
		refs := svc.Secrets
		if field == "configs" {
			refs = []types.ServiceSecretConfig(nil)
			for _, r := range svc.Configs {
				refs = append(refs, types.ServiceSecretConfig(r))
			}
		}
		for i, r := range refs {
			if r.Source == key {
				users = append(users, fmt.Sprintf("service %q: %s[%d]", name, field, i))
			}
		}
	}
	where := strings.Join(c.names, ", ")
	if len(users) == 0 {
		return fmt.Errorf("%s: %s: %w", where, field, err)
	}
	return fmt.Errorf("%s: %s: %w", where, strings.Join(users, "; "), err)
}

// readData reads a secret's or config's data from its file, environment
// variable or inline content.
func (c *converter) readData(kind, key string, o types.FileObjectConfig) ([]byte, string, error) {
	switch {
	case o.File != "":
		path := o.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(c.wd, path)
		}
		data, err := readLimited(path)
		if err != nil {
			return nil, "", fmt.Errorf("%s %q: file %s: %w", kind, key, path, err)
		}
		return data, "file:" + path, nil
	case o.Environment != "":
		v, ok := c.project.Environment[o.Environment]
		if !ok {
			return nil, "", fmt.Errorf("%s %q: environment: variable %s is not set", kind, key, o.Environment)
		}
		if len(v) > maxDataSize {
			return nil, "", fmt.Errorf("%s %q: environment: variable %s: %d bytes, more than the %d KiB limit", kind, key, o.Environment, len(v), maxDataSize>>10)
		}
		return []byte(v), "environment:" + o.Environment, nil
	case o.Content != "":
		if len(o.Content) > maxDataSize {
			return nil, "", fmt.Errorf("%s %q: content: %d bytes, more than the %d KiB limit", kind, key, len(o.Content), maxDataSize>>10)
		}
		return []byte(o.Content), "content", nil
	}
	return nil, "", fmt.Errorf("%s %q: one of file, environment, content or external is required", kind, key)
}

// readLimited reads a regular file of at most maxDataSize bytes, reading no
// more than that whatever the file is.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxDataSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxDataSize {
		return nil, fmt.Errorf("more than the %d KiB limit", maxDataSize>>10)
	}
	return data, nil
}

func (c *converter) convertService(s types.ServiceConfig) (*objectv1.ServiceSpec, error) {
	name := s.Name
	if s.Image == "" {
		return nil, fieldError(name, "image", "required (shoal does not build images)")
	}
	ctr := &objectv1.ContainerSpec{
		Image:      s.Image,
		Command:    s.Entrypoint,
		Args:       s.Command,
		Dir:        s.WorkingDir,
		User:       s.User,
		StopSignal: s.StopSignal,
	}
	for _, k := range sortedKeys(s.Environment) {
		v := s.Environment[k]
		if v == nil {
			c.warnf("service %q: environment: %s has no value and is not set in the environment, left out", name, k)
			continue
		}
		ctr.Env = append(ctr.Env, k+"="+*v)
	}
	if s.StopGracePeriod != nil {
		if *s.StopGracePeriod < 0 {
			return nil, fieldError(name, "stop_grace_period", "must be >= 0")
		}
		ctr.StopGracePeriod = duration(s.StopGracePeriod)
	}
	hc, err := convertHealthcheck(name, s.HealthCheck)
	if err != nil {
		return nil, err
	}
	ctr.Healthcheck = hc
	if ctr.Mounts, err = c.convertMounts(s); err != nil {
		return nil, err
	}
	for i, ref := range s.Secrets {
		sec, ok := c.project.Secrets[ref.Source]
		if !ok {
			return nil, fieldError(name, fmt.Sprintf("secrets[%d]", i), "secret %q is not declared in the top-level secrets", ref.Source)
		}
		fr, err := fileRef(name, fmt.Sprintf("secrets[%d]", i), sec.Name, types.FileReferenceConfig(ref))
		if err != nil {
			return nil, err
		}
		ctr.Secrets = append(ctr.Secrets, fr)
	}
	for i, ref := range s.Configs {
		cfg, ok := c.project.Configs[ref.Source]
		if !ok {
			return nil, fieldError(name, fmt.Sprintf("configs[%d]", i), "config %q is not declared in the top-level configs", ref.Source)
		}
		target := ref.Target
		if target == "" {
			target = "/" + ref.Source
		}
		ref.Target = target
		fr, err := fileRef(name, fmt.Sprintf("configs[%d]", i), cfg.Name, types.FileReferenceConfig(ref))
		if err != nil {
			return nil, err
		}
		ctr.Configs = append(ctr.Configs, fr)
	}
	sortByName(ctr.Secrets, func(f *objectv1.FileReference) string { return f.Target })
	sortByName(ctr.Configs, func(f *objectv1.FileReference) string { return f.Target })

	task := &objectv1.TaskSpec{Container: ctr}
	spec := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: c.stack + "_" + name},
		Task:        task,
	}
	if task.Networks, err = c.convertNetworkAttachments(s); err != nil {
		return nil, err
	}
	if spec.Endpoint, err = convertEndpoint(s); err != nil {
		return nil, err
	}
	if task.Restart, err = convertRestart(s); err != nil {
		return nil, err
	}
	d := s.Deploy
	if d == nil {
		d = &types.DeployConfig{}
	}
	spec.Annotations.Labels = c.labels(d.Labels)
	if err := convertMode(name, d, spec); err != nil {
		return nil, err
	}
	if task.Resources, err = convertResources(name, d.Resources); err != nil {
		return nil, err
	}
	if task.Placement, err = convertPlacement(name, d.Placement); err != nil {
		return nil, err
	}
	if spec.Update, err = convertUpdate(name, "deploy.update_config", d.UpdateConfig, true); err != nil {
		return nil, err
	}
	if spec.Rollback, err = convertUpdate(name, "deploy.rollback_config", d.RollbackConfig, false); err != nil {
		return nil, err
	}
	return spec, nil
}

func duration(d *types.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(time.Duration(*d))
}

func convertHealthcheck(name string, h *types.HealthCheckConfig) (*objectv1.HealthConfig, error) {
	if h == nil {
		return nil, nil
	}
	if h.Disable {
		return &objectv1.HealthConfig{Test: []string{"NONE"}}, nil
	}
	hc := &objectv1.HealthConfig{
		Test:        h.Test,
		Interval:    duration(h.Interval),
		Timeout:     duration(h.Timeout),
		StartPeriod: duration(h.StartPeriod),
	}
	if len(h.Test) > 0 {
		switch h.Test[0] {
		case "NONE":
		case "CMD", "CMD-SHELL":
			if len(h.Test) < 2 {
				return nil, fieldError(name, "healthcheck.test", "%s needs a command", h.Test[0])
			}
		default:
			return nil, fieldError(name, "healthcheck.test", "must start with CMD, CMD-SHELL or NONE, not %q", h.Test[0])
		}
	}
	for _, d := range []struct {
		field string
		d     *types.Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"start_period", h.StartPeriod}} {
		if d.d != nil && *d.d < 0 {
			return nil, fieldError(name, "healthcheck."+d.field, "must be >= 0")
		}
	}
	if h.Retries != nil {
		if *h.Retries > math.MaxInt32 {
			return nil, fieldError(name, "healthcheck.retries", "must be at most %d", math.MaxInt32)
		}
		hc.Retries = int32(*h.Retries)
	}
	return hc, nil
}

func fileRef(service, field, fullName string, ref types.FileReferenceConfig) (*objectv1.FileReference, error) {
	fr := &objectv1.FileReference{Name: fullName, Target: ref.Target, Uid: ref.UID, Gid: ref.GID}
	if ref.Mode != nil {
		m := int64(*ref.Mode)
		if m < 0 || m > 0o7777 {
			return nil, fieldError(service, field+".mode", "%#o is not a file mode (0 to 07777)", m)
		}
		fr.Mode = uint32(m)
	}
	return fr, nil
}

func (c *converter) convertMounts(s types.ServiceConfig) ([]*objectv1.Mount, error) {
	var mounts []*objectv1.Mount
	for i, v := range s.Volumes {
		field := fmt.Sprintf("volumes[%d]", i)
		if v.Target == "" {
			return nil, fieldError(s.Name, field+".target", "required")
		}
		m := &objectv1.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeBind:
			m.Type = objectv1.MountType_MOUNT_TYPE_BIND
			m.Source = v.Source
			if m.Source == "" {
				return nil, fieldError(s.Name, field+".source", "required for a bind mount")
			}
			if !filepath.IsAbs(m.Source) {
				m.Source = filepath.Join(c.wd, m.Source)
			}
		case types.VolumeTypeVolume:
			m.Type = objectv1.MountType_MOUNT_TYPE_VOLUME
			if v.Source == "" {
				return nil, fieldError(s.Name, field+".source", "anonymous volumes are not supported: name the volume")
			}
			vol, ok := c.project.Volumes[v.Source]
			if !ok {
				return nil, fieldError(s.Name, field+".source", "volume %q is not declared in the top-level volumes", v.Source)
			}
			m.Source = vol.Name
		case types.VolumeTypeTmpfs:
			m.Type = objectv1.MountType_MOUNT_TYPE_TMPFS
			if v.Source != "" {
				return nil, fieldError(s.Name, field+".source", "a tmpfs mount has no source")
			}
			if v.Tmpfs != nil {
				if v.Tmpfs.Size < 0 {
					return nil, fieldError(s.Name, field+".tmpfs.size", "must be >= 0")
				}
				m.TmpfsSizeBytes = int64(v.Tmpfs.Size)
			}
		default:
			return nil, fieldError(s.Name, field+".type", "%q is not supported (bind, volume or tmpfs)", v.Type)
		}
		mounts = append(mounts, m)
	}
	sortByName(mounts, func(m *objectv1.Mount) string { return m.Target })
	return mounts, nil
}

func (c *converter) convertNetworkAttachments(s types.ServiceConfig) ([]*objectv1.NetworkAttachmentConfig, error) {
	if s.NetworkMode != "" {
		// named in the warnings; the task joins no network
		return nil, nil
	}
	keys := sortedKeys(s.Networks)
	if len(keys) == 0 {
		keys = []string{"default"}
	}
	var atts []*objectv1.NetworkAttachmentConfig
	for _, key := range keys {
		n, ok := c.project.Networks[key]
		if !ok {
			if key != "default" {
				return nil, fieldError(s.Name, "networks", "network %q is not declared in the top-level networks", key)
			}
			n = types.NetworkConfig{Name: c.stack + "_default"}
			if c.project.Networks == nil {
				c.project.Networks = types.Networks{}
			}
			c.project.Networks[key] = n
		}
		c.usedNetworks[key] = true
		// the service's short name resolves on each of its networks, as
		// with docker: "db" reaches NAME_db
		aliases := []string{s.Name}
		if cfg := s.Networks[key]; cfg != nil {
			for _, a := range cfg.Aliases {
				if !slices.Contains(aliases, a) {
					aliases = append(aliases, a)
				}
			}
		}
		atts = append(atts, &objectv1.NetworkAttachmentConfig{Target: n.Name, Aliases: aliases})
	}
	return atts, nil
}

func convertEndpoint(s types.ServiceConfig) (*objectv1.EndpointSpec, error) {
	var ep objectv1.EndpointSpec
	switch endpointMode(s.Deploy) {
	case "":
	case "vip":
		ep.Mode = objectv1.EndpointMode_ENDPOINT_MODE_VIP
	case "dnsrr":
		ep.Mode = objectv1.EndpointMode_ENDPOINT_MODE_DNSRR
	default:
		return nil, fieldError(s.Name, "deploy.endpoint_mode", "%q is not vip or dnsrr", endpointMode(s.Deploy))
	}
	for i, p := range s.Ports {
		field := fmt.Sprintf("ports[%d]", i)
		pc := &objectv1.PortConfig{Protocol: p.Protocol, TargetPort: p.Target}
		if pc.Protocol == "" {
			pc.Protocol = "tcp"
		}
		if pc.Protocol != "tcp" && pc.Protocol != "udp" {
			return nil, fieldError(s.Name, field+".protocol", "%q is not tcp or udp", p.Protocol)
		}
		if p.Target < 1 || p.Target > 65535 {
			return nil, fieldError(s.Name, field+".target", "%d is not a port (1 to 65535)", p.Target)
		}
		if p.Published == "" {
			return nil, fieldError(s.Name, field+".published", "required (shoal does not choose published ports)")
		}
		pub, err := strconv.ParseUint(p.Published, 10, 16)
		if err != nil || pub < 1 {
			return nil, fieldError(s.Name, field+".published", "%q is not a port (1 to 65535)", p.Published)
		}
		pc.PublishedPort = uint32(pub)
		switch p.Mode {
		case "", "ingress":
			pc.Mode = objectv1.PublishMode_PUBLISH_MODE_INGRESS
		case "host":
			pc.Mode = objectv1.PublishMode_PUBLISH_MODE_HOST
		default:
			return nil, fieldError(s.Name, field+".mode", "%q is not ingress or host", p.Mode)
		}
		ep.Ports = append(ep.Ports, pc)
	}
	slices.SortStableFunc(ep.Ports, func(a, b *objectv1.PortConfig) int {
		if a.PublishedPort != b.PublishedPort {
			return int(a.PublishedPort) - int(b.PublishedPort)
		}
		if a.TargetPort != b.TargetPort {
			return int(a.TargetPort) - int(b.TargetPort)
		}
		return strings.Compare(a.Protocol, b.Protocol)
	})
	if len(ep.Ports) == 0 && ep.Mode == objectv1.EndpointMode_ENDPOINT_MODE_UNSPECIFIED {
		return nil, nil
	}
	return &ep, nil
}

func convertRestart(s types.ServiceConfig) (*objectv1.RestartPolicy, error) {
	if s.Deploy != nil && s.Deploy.RestartPolicy != nil {
		r := s.Deploy.RestartPolicy
		rp := &objectv1.RestartPolicy{Delay: duration(r.Delay), Window: duration(r.Window)}
		switch r.Condition {
		case "":
		case "none":
			rp.Condition = objectv1.RestartCondition_RESTART_CONDITION_NONE
		case "on-failure":
			rp.Condition = objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE
		case "any":
			rp.Condition = objectv1.RestartCondition_RESTART_CONDITION_ANY
		default:
			return nil, fieldError(s.Name, "deploy.restart_policy.condition", "%q is not none, on-failure or any", r.Condition)
		}
		if r.MaxAttempts != nil {
			rp.MaxAttempts = *r.MaxAttempts
		}
		if r.Delay != nil && *r.Delay < 0 {
			return nil, fieldError(s.Name, "deploy.restart_policy.delay", "must be >= 0")
		}
		if r.Window != nil && *r.Window < 0 {
			return nil, fieldError(s.Name, "deploy.restart_policy.window", "must be >= 0")
		}
		return rp, nil
	}
	// the service-level restart, as docker stack deploy reads it when
	// deploy.restart_policy is not set
	policy, arg, _ := strings.Cut(s.Restart, ":")
	switch policy {
	case "":
		return nil, nil
	case "no":
		return &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_NONE}, nil
	case "always", "unless-stopped":
		return &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_ANY}, nil
	case "on-failure":
		rp := &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE}
		if arg != "" {
			n, err := strconv.ParseUint(arg, 10, 64)
			if err != nil {
				return nil, fieldError(s.Name, "restart", "%q: the maximum of attempts is not a number", s.Restart)
			}
			rp.MaxAttempts = n
		}
		return rp, nil
	}
	return nil, fieldError(s.Name, "restart", "%q is not no, always, unless-stopped or on-failure[:N]", s.Restart)
}

func convertMode(name string, d *types.DeployConfig, spec *objectv1.ServiceSpec) error {
	if d.Replicas != nil && *d.Replicas < 0 {
		return fieldError(name, "deploy.replicas", "must be >= 0")
	}
	replicas := int64(1)
	if d.Replicas != nil {
		replicas = int64(*d.Replicas)
	}
	switch d.Mode {
	case "", "replicated":
		spec.Mode = &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: replicas}}
	case "replicated-job":
		spec.Mode = &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: &objectv1.ReplicatedJob{
			MaxConcurrent: uint64(replicas), TotalCompletions: uint64(replicas),
		}}
	case "global", "global-job":
		if d.Replicas != nil {
			return fieldError(name, "deploy.replicas", "not allowed in mode %s", d.Mode)
		}
		if d.Mode == "global" {
			spec.Mode = &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}}
		} else {
			spec.Mode = &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}
		}
	default:
		return fieldError(name, "deploy.mode", "%q is not replicated, global, replicated-job or global-job", d.Mode)
	}
	return nil
}

func convertResources(name string, r types.Resources) (*objectv1.ResourceRequirements, error) {
	conv := func(field string, r *types.Resource) (*objectv1.Resources, error) {
		if r == nil || (r.NanoCPUs == 0 && r.MemoryBytes == 0) {
			return nil, nil
		}
		cpus := float64(r.NanoCPUs)
		if cpus < 0 || cpus > 1e6 || math.IsNaN(cpus) {
			return nil, fieldError(name, field+".cpus", "%v is not a number of CPUs (0 to 1e6)", cpus)
		}
		if r.MemoryBytes < 0 {
			return nil, fieldError(name, field+".memory", "must be >= 0")
		}
		return &objectv1.Resources{NanoCpus: int64(math.Round(cpus * 1e9)), MemoryBytes: int64(r.MemoryBytes)}, nil
	}
	limits, err := conv("deploy.resources.limits", r.Limits)
	if err != nil {
		return nil, err
	}
	res, err := conv("deploy.resources.reservations", r.Reservations)
	if err != nil {
		return nil, err
	}
	if limits == nil && res == nil {
		return nil, nil
	}
	return &objectv1.ResourceRequirements{Limits: limits, Reservations: res}, nil
}

func convertPlacement(name string, p types.Placement) (*objectv1.Placement, error) {
	if len(p.Constraints) == 0 && len(p.Preferences) == 0 && p.MaxReplicas == 0 {
		return nil, nil
	}
	pl := &objectv1.Placement{MaxReplicasPerNode: p.MaxReplicas}
	for i, c := range p.Constraints {
		if !strings.Contains(c, "==") && !strings.Contains(c, "!=") {
			return nil, fieldError(name, fmt.Sprintf("deploy.placement.constraints[%d]", i), "%q is not attr==value or attr!=value", c)
		}
		pl.Constraints = append(pl.Constraints, c)
	}
	sort.Strings(pl.Constraints)
	for i, pref := range p.Preferences {
		if pref.Spread == "" {
			return nil, fieldError(name, fmt.Sprintf("deploy.placement.preferences[%d].spread", i), "required")
		}
		// order matters: preferences apply in turn
		pl.Preferences = append(pl.Preferences, &objectv1.PlacementPreference{Spread: pref.Spread})
	}
	return pl, nil
}

func convertUpdate(name, field string, u *types.UpdateConfig, update bool) (*objectv1.UpdateConfig, error) {
	if u == nil {
		return nil, nil
	}
	uc := &objectv1.UpdateConfig{
		Parallelism:     1,
		Delay:           durationpb.New(time.Duration(u.Delay)),
		MaxFailureRatio: u.MaxFailureRatio,
	}
	if u.Parallelism != nil {
		uc.Parallelism = *u.Parallelism
	}
	if u.Delay < 0 {
		return nil, fieldError(name, field+".delay", "must be >= 0")
	}
	if u.Monitor < 0 {
		return nil, fieldError(name, field+".monitor", "must be >= 0")
	}
	if u.Monitor != 0 {
		uc.Monitor = durationpb.New(time.Duration(u.Monitor))
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 || math.IsNaN(float64(u.MaxFailureRatio)) {
		return nil, fieldError(name, field+".max_failure_ratio", "%v is not between 0 and 1", u.MaxFailureRatio)
	}
	switch u.FailureAction {
	case "":
	case "pause":
		uc.FailureAction = objectv1.FailureAction_FAILURE_ACTION_PAUSE
	case "continue":
		uc.FailureAction = objectv1.FailureAction_FAILURE_ACTION_CONTINUE
	case "rollback":
		if !update {
			return nil, fieldError(name, field+".failure_action", "rollback is only for update_config (pause or continue)")
		}
		uc.FailureAction = objectv1.FailureAction_FAILURE_ACTION_ROLLBACK
	default:
		return nil, fieldError(name, field+".failure_action", "%q is not pause, continue or rollback", u.FailureAction)
	}
	switch u.Order {
	case "":
	case "stop-first":
		uc.Order = objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST
	case "start-first":
		uc.Order = objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST
	default:
		return nil, fieldError(name, field+".order", "%q is not stop-first or start-first", u.Order)
	}
	return uc, nil
}

func endpointMode(d *types.DeployConfig) string {
	if d == nil {
		return ""
	}
	return d.EndpointMode
}
