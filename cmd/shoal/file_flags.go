package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// fileRefFlags are a service's --secret and --config flags.
type fileRefFlags struct {
	secrets, secretAdd []*objectv1.FileReference
	secretRm           []string
	configs, configAdd []*objectv1.FileReference
	configRm           []string
}

func (f *fileRefFlags) addCreate(fs *pflag.FlagSet) {
	fs.Var(fileRefsValue{&f.secrets, true}, "secret", "give the tasks a secret: NAME, or source=NAME[,target=FILE][,uid=N][,gid=N][,mode=0444]; at /run/secrets/FILE")
	fs.Var(fileRefsValue{&f.configs, false}, "config", "give the tasks a config: NAME, or source=NAME[,target=/PATH][,uid=N][,gid=N][,mode=0444]; at /NAME by default")
}

func (f *fileRefFlags) addUpdate(fs *pflag.FlagSet) {
	fs.Var(fileRefsValue{&f.secretAdd, true}, "secret-add", "add a secret (as --secret of service create), replacing one of the same name")
	fs.StringArrayVar(&f.secretRm, "secret-rm", nil, "remove the secret `NAME`")
	fs.Var(fileRefsValue{&f.configAdd, false}, "config-add", "add a config (as --config of service create), replacing one of the same name")
	fs.StringArrayVar(&f.configRm, "config-rm", nil, "remove the config `NAME`")
}

// apply sets the container's references: --secret's and --config's for
// create; for update, --secret-rm removes by name, then --secret-add adds,
// replacing a reference to the same secret (docker's rules; configs alike).
func (f *fileRefFlags) apply(set func(string) bool, spec *objectv1.ServiceSpec) {
	if set("secret") || set("secret-add") || set("secret-rm") {
		c := containerOf(spec)
		c.Secrets = applyFileRefs(c.Secrets, f.secretRm, slices.Concat(f.secrets, f.secretAdd))
	}
	if set("config") || set("config-add") || set("config-rm") {
		c := containerOf(spec)
		c.Configs = applyFileRefs(c.Configs, f.configRm, slices.Concat(f.configs, f.configAdd))
	}
}

func applyFileRefs(have []*objectv1.FileReference, rm []string, add []*objectv1.FileReference) []*objectv1.FileReference {
	out := slices.DeleteFunc(slices.Clone(have), func(r *objectv1.FileReference) bool {
		return slices.Contains(rm, r.GetName()) || slices.Contains(rm, r.GetId())
	})
	for _, a := range add {
		out = slices.DeleteFunc(out, func(r *objectv1.FileReference) bool { return r.GetName() == a.GetName() })
		out = append(out, a)
	}
	return out
}

// fileRefsValue collects --secret or --config values, each parsed as it
// is given so that pflag's error names the flag.
type fileRefsValue struct {
	target *[]*objectv1.FileReference
	secret bool
}

func (v fileRefsValue) String() string {
	parts := make([]string, len(*v.target))
	for i, r := range *v.target {
		parts[i] = formatFileRef(r)
	}
	return strings.Join(parts, " ")
}

func (v fileRefsValue) Type() string { return "source=NAME,target=FILE" }

func (v fileRefsValue) Set(s string) error {
	r, err := parseFileRef(s)
	if err != nil {
		return err
	}
	*v.target = append(*v.target, r)
	return nil
}

// parseFileRef parses docker's --secret and --config syntax: a bare NAME,
// or comma-separated KEY=VALUE fields source (src), target, uid, gid and
// mode (octal). The server checks the values' bounds.
func parseFileRef(s string) (*objectv1.FileReference, error) {
	if !strings.Contains(s, "=") {
		if s == "" || strings.Contains(s, ",") {
			return nil, fmt.Errorf("want NAME or source=NAME,target=...; got %q", s)
		}
		return &objectv1.FileReference{Name: s}, nil
	}
	r := &objectv1.FileReference{}
	for _, field := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("field %q: want KEY=VALUE", field)
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "source", "src":
			r.Name = val
		case "target":
			r.Target = val
		case "uid":
			r.Uid = val
		case "gid":
			r.Gid = val
		case "mode":
			m, err := strconv.ParseUint(val, 8, 32)
			if err != nil || m > 0o777 {
				return nil, fmt.Errorf("mode=%s: want octal permission bits such as 0400", val)
			}
			r.Mode = uint32(m)
		default:
			return nil, fmt.Errorf("unknown field %q (want source, target, uid, gid or mode)", key)
		}
	}
	if r.Name == "" {
		return nil, fmt.Errorf("source=NAME is required")
	}
	return r, nil
}

// formatFileRef is r in parseFileRef's syntax.
func formatFileRef(r *objectv1.FileReference) string {
	out := "source=" + r.GetName()
	if r.GetTarget() != "" {
		out += ",target=" + r.GetTarget()
	}
	if r.GetUid() != "" {
		out += ",uid=" + r.GetUid()
	}
	if r.GetGid() != "" {
		out += ",gid=" + r.GetGid()
	}
	if r.GetMode() != 0 {
		out += fmt.Sprintf(",mode=%#o", r.GetMode())
	}
	return out
}
