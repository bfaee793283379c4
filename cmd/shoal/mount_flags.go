package main

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// mountsValue collects --mount and --mount-add values, each parsed as it
// is given (parseMount), so that pflag's error names the flag.
type mountsValue struct{ target *[]*objectv1.Mount }

func (v mountsValue) String() string {
	parts := make([]string, len(*v.target))
	for i, m := range *v.target {
		parts[i] = formatMount(m)
	}
	return strings.Join(parts, " ")
}

func (v mountsValue) Type() string { return "type=TYPE,source=SRC,target=DST" }

func (v mountsValue) Set(s string) error {
	m, err := parseMount(s)
	if err != nil {
		return err
	}
	*v.target = append(*v.target, m)
	return nil
}

// parseMount parses docker's --mount syntax: comma-separated KEY=VALUE
// fields, of which
//
//	type=bind|volume|tmpfs  (default volume, as in docker)
//	source=, src=           a path on the node (bind) or a volume's name
//	target=, destination=, dst=  the path in the container (required)
//	readonly, ro            (=true|false|1|0; alone: true)
//	tmpfs-size=             a tmpfs's size: bytes, or with a unit k, m, g, ...
//
// It checks the fields' forms and combinations; the server checks the
// rest (an absolute bind source, a volume name's characters, bounds).
func parseMount(s string) (*objectv1.Mount, error) {
	m := &objectv1.Mount{}
	typ := ""
	sizeSet := false
	for _, field := range strings.Split(s, ",") {
		key, val, hasVal := strings.Cut(field, "=")
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "type":
			switch val {
			case "bind", "volume", "tmpfs":
				typ = val
			default:
				return nil, fmt.Errorf("type=%s: want bind, volume or tmpfs", val)
			}
		case "source", "src":
			m.Source = val
		case "target", "destination", "dst":
			m.Target = val
		case "readonly", "ro":
			if !hasVal {
				m.ReadOnly = true
				break
			}
			b, err := strconv.ParseBool(val)
			if err != nil {
				return nil, fmt.Errorf("%s: want true or false, got %q", field, val)
			}
			m.ReadOnly = b
		case "tmpfs-size":
			n, err := parseMemory(val)
			if err != nil {
				return nil, fmt.Errorf("tmpfs-size: %w", err)
			}
			m.TmpfsSizeBytes, sizeSet = n, true
		case "":
			if field == "" {
				return nil, fmt.Errorf("empty field in %q", s)
			}
			return nil, fmt.Errorf("field %q has no key", field)
		default:
			return nil, fmt.Errorf("unknown field %q (want type, source, target, readonly or tmpfs-size)", key)
		}
	}
	if m.Target == "" {
		return nil, fmt.Errorf("target=PATH is required")
	}
	switch typ {
	case "bind":
		m.Type = objectv1.MountType_MOUNT_TYPE_BIND
		if m.Source == "" {
			return nil, fmt.Errorf("source=PATH is required for a bind mount")
		}
	case "volume", "":
		m.Type = objectv1.MountType_MOUNT_TYPE_VOLUME
		if m.Source == "" {
			return nil, fmt.Errorf("source=NAME is required for a volume mount (anonymous volumes are not supported)")
		}
	case "tmpfs":
		m.Type = objectv1.MountType_MOUNT_TYPE_TMPFS
		if m.Source != "" {
			return nil, fmt.Errorf("source=%s: a tmpfs mount has no source", m.Source)
		}
	}
	if sizeSet && m.Type != objectv1.MountType_MOUNT_TYPE_TMPFS {
		return nil, fmt.Errorf("tmpfs-size: only for type=tmpfs")
	}
	return m, nil
}

// formatMount is m in parseMount's syntax.
func formatMount(m *objectv1.Mount) string {
	var b strings.Builder
	switch m.GetType() {
	case objectv1.MountType_MOUNT_TYPE_VOLUME:
		b.WriteString("type=volume")
	case objectv1.MountType_MOUNT_TYPE_TMPFS:
		b.WriteString("type=tmpfs")
	default:
		b.WriteString("type=bind")
	}
	if m.GetSource() != "" {
		b.WriteString(",source=" + m.GetSource())
	}
	b.WriteString(",target=" + m.GetTarget())
	if m.GetReadOnly() {
		b.WriteString(",readonly")
	}
	if n := m.GetTmpfsSizeBytes(); n > 0 {
		b.WriteString(",tmpfs-size=" + strconv.FormatInt(n, 10))
	}
	return b.String()
}

// applyMounts sets the task's mounts: --mount's for create; for update,
// --mount-rm removes those at a target, then --mount-add adds each
// mount, replacing one at the same target (as docker does). Targets
// compare cleaned: "/data/" is "/data".
func (f *serviceFlags) applyMounts(set func(string) bool, spec *objectv1.ServiceSpec) {
	if !set("mount") && !set("mount-rm") && !set("mount-add") {
		return
	}
	c := containerOf(spec)
	same := func(a, b string) bool { return path.Clean(a) == path.Clean(b) }
	c.Mounts = slices.DeleteFunc(c.Mounts, func(m *objectv1.Mount) bool {
		return slices.ContainsFunc(f.mountRm, func(t string) bool { return same(t, m.GetTarget()) })
	})
	c.Mounts = append(c.Mounts, f.mounts...)
	for _, add := range f.mountAdd {
		c.Mounts = slices.DeleteFunc(c.Mounts, func(m *objectv1.Mount) bool { return same(add.GetTarget(), m.GetTarget()) })
		c.Mounts = append(c.Mounts, add)
	}
}
