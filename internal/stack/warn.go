package stack

import (
	"fmt"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
	"go.yaml.in/yaml/v4"
)

// serviceAttributes are the service keys the translation implements, as
// tree.Path patterns below services.NAME. Any other key a file sets is named
// in a warning: the list is an allowlist so that a key the specification
// gains later is reported until it is wired in here and in convertService.
var serviceAttributes = []string{
	"image", "command", "entrypoint", "working_dir", "user",
	"environment", "environment.*",
	"env_file", "env_file.[].path", "env_file.[].required", "env_file.[].format",
	"ports", "ports.[].target", "ports.[].published", "ports.[].protocol", "ports.[].mode",
	"networks", "networks.*", "networks.*.aliases",
	"volumes", "volumes.[].type", "volumes.[].source", "volumes.[].target", "volumes.[].read_only",
	"volumes.[].bind", "volumes.[].bind.create_host_path", "volumes.[].volume",
	"volumes.[].tmpfs", "volumes.[].tmpfs.size",
	"secrets", "secrets.[].source", "secrets.[].target", "secrets.[].uid", "secrets.[].gid", "secrets.[].mode",
	"configs", "configs.[].source", "configs.[].target", "configs.[].uid", "configs.[].gid", "configs.[].mode",
	"healthcheck", "healthcheck.test", "healthcheck.interval", "healthcheck.timeout",
	"healthcheck.retries", "healthcheck.start_period", "healthcheck.disable",
	"stop_signal", "stop_grace_period", "restart",
	"deploy", "deploy.mode", "deploy.replicas", "deploy.labels", "deploy.labels.*", "deploy.endpoint_mode",
	"deploy.resources", "deploy.resources.limits", "deploy.resources.reservations",
	"deploy.resources.limits.cpus", "deploy.resources.limits.memory",
	"deploy.resources.reservations.cpus", "deploy.resources.reservations.memory",
	"deploy.placement", "deploy.placement.constraints", "deploy.placement.preferences",
	"deploy.placement.preferences.[].spread", "deploy.placement.max_replicas_per_node",
	"deploy.update_config", "deploy.rollback_config",
	"deploy.restart_policy", "deploy.restart_policy.condition", "deploy.restart_policy.delay",
	"deploy.restart_policy.max_attempts", "deploy.restart_policy.window",
}

var updateAttributes = []string{"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}

// topAttributes are the implemented keys outside services.
var topAttributes = []string{
	"services",
	"networks", "networks.*", "networks.*.name", "networks.*.driver", "networks.*.external",
	"networks.*.labels", "networks.*.labels.*",
	"networks.*.ipam", "networks.*.ipam.config", "networks.*.ipam.config.[].subnet",
	"volumes", "volumes.*", "volumes.*.name", "volumes.*.external",
	"secrets", "secrets.*", "secrets.*.name", "secrets.*.file", "secrets.*.environment",
	"secrets.*.external", "secrets.*.labels", "secrets.*.labels.*",
	"configs", "configs.*", "configs.*.name", "configs.*.file", "configs.*.environment",
	"configs.*.content", "configs.*.external", "configs.*.labels", "configs.*.labels.*",
}

// freeForm are maps whose keys are the user's (and may hold dots, which
// tree.Path cannot tell from its separator): nothing below them is reported.
var freeForm = []string{"environment.", "deploy.labels."}

func supportedAttributes() []tree.Path {
	var paths []tree.Path
	for _, a := range topAttributes {
		paths = append(paths, tree.Path(a))
	}
	for _, a := range serviceAttributes {
		paths = append(paths, tree.Path("services.*."+a))
	}
	for _, a := range updateAttributes {
		paths = append(paths,
			tree.Path("services.*.deploy.update_config."+a),
			tree.Path("services.*.deploy.rollback_config."+a))
	}
	return paths
}

// why says why a service key is ignored, where there is more to say than
// "not supported".
var why = map[string]string{
	"build":          "shoal runs images: build and push them first",
	"depends_on":     "services start in any order; use health checks",
	"labels":         "tasks have no container labels; deploy.labels are the service's labels",
	"container_name": "tasks are named by shoal",
	"scale":          "use deploy.replicas",
	"expose":         "services reach each other on every port over their networks",
	"links":          "services reach each other by name over their networks",
	"profiles":       "every service of the files is deployed",
	"hostname":       "a task's hostname is its ID",
	"pull_policy":    "nodes pull the image when they do not have it",
}

// warnUnsupported turns the findings of compose-go's allowlist check into
// warnings, naming the file that sets the key when one does.
func (c *converter) warnUnsupported(findings []loader.UnsupportedAttribute) {
	raw := make([]map[string]any, len(c.files))
	for i, f := range c.files {
		_ = yaml.Unmarshal(f.Content, &raw[i]) // a file that does not decode here names no key
	}
	for _, f := range findings {
		section, name, rest := splitPath(f.Path.String(), c.sectionKeys)
		if section == "services" && hasAnyPrefix(rest, freeForm) {
			continue
		}
		if name != "" && hasAnyPrefix(rest, []string{"labels."}) && section != "services" && section != "volumes" {
			continue
		}
		file := ""
		for i := range raw {
			if setIn(raw[i], section, name, rest) {
				file = c.names[i] + ": "
			}
		}
		var msg string
		switch {
		case section == "services":
			msg = fmt.Sprintf("service %q: %s is not supported", name, rest)
			if w, ok := why[rest]; ok {
				msg += " (" + w + ")"
			}
		case name == "":
			msg = fmt.Sprintf("%s is not supported", section)
			switch section {
			case "name":
				msg += " (the stack is named by the deploy command)"
			}
		default:
			msg = fmt.Sprintf("%s %q: %s is not supported", strings.TrimSuffix(section, "s"), name, rest)
		}
		c.warnf("%s%s, ignored", file, msg)
	}
}

// sectionKeys lists the keys of a top-level section, to split paths whose
// keys hold dots.
func (c *converter) sectionKeys(section string) []string {
	p := c.project
	var keys []string
	switch section {
	case "services":
		keys = sortedKeys(p.Services)
		keys = append(keys, sortedKeys(p.DisabledServices)...)
	case "networks":
		keys = sortedKeys(p.Networks)
	case "volumes":
		keys = sortedKeys(p.Volumes)
	case "secrets":
		keys = sortedKeys(p.Secrets)
	case "configs":
		keys = sortedKeys(p.Configs)
	}
	return keys
}

// splitPath splits "services.web.deploy.foo" into "services", "web" and
// "deploy.foo", choosing the longest known key so that keys may hold dots.
func splitPath(path string, keys func(string) []string) (section, name, rest string) {
	section, after, ok := strings.Cut(path, ".")
	if !ok {
		return path, "", ""
	}
	for _, k := range keys(section) {
		if strings.HasPrefix(after, k+".") && len(k) > len(name) {
			name = k
		}
	}
	if name == "" {
		name, rest, _ = strings.Cut(after, ".")
		return section, name, rest
	}
	return section, name, strings.TrimPrefix(after, name+".")
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// setIn says whether a file's raw YAML sets section.name.KEY, KEY being the
// first part of rest (or section.name itself when rest is empty).
func setIn(doc map[string]any, section, name, rest string) bool {
	v, ok := doc[section]
	if !ok {
		return false
	}
	if name == "" {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	v, ok = m[name]
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	m, ok = v.(map[string]any)
	if !ok {
		return false
	}
	key, _, _ := strings.Cut(rest, ".")
	_, ok = m[key]
	return ok
}
