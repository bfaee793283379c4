package stack

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"
)

// explainLoadError makes sure an error of compose-go names the file it is
// about and, for the short port syntax (whose parse errors name neither),
// the service and the port.
// unknownKey matches compose-go's schema error for an unknown service key.
var unknownKey = regexp.MustCompile(`^validating (.+): services\.([^.\s]+)\.(\S+) false schema`)

func explainLoadError(ctx context.Context, err error, details types.ConfigDetails, names []string, name string) error {
	// The schema's words for a key it does not know ("services.web.imagee
	// false schema") become the file, the service and the key.
	if m := unknownKey.FindStringSubmatch(err.Error()); m != nil {
		file := m[1]
		for i, f := range details.ConfigFiles {
			if f.Filename == m[1] {
				file = names[i]
			}
		}
		return fmt.Errorf("%s: service %q: %s: not a key of the compose specification (misspelt?)", file, m[2], m[3])
	}
	for _, f := range details.ConfigFiles {
		if strings.Contains(err.Error(), f.Filename) {
			return err
		}
	}
	for i, f := range details.ConfigFiles {
		var doc struct {
			Services map[string]struct {
				Ports []any `yaml:"ports"`
			} `yaml:"services"`
		}
		if yaml.Unmarshal(f.Content, &doc) != nil {
			continue
		}
		for _, svc := range sortedKeys(doc.Services) {
			for j, p := range doc.Services[svc].Ports {
				var spec string
				switch v := p.(type) {
				case string:
					spec = v
				case int:
					spec = fmt.Sprint(v)
				default:
					continue
				}
				if strings.Contains(spec, "$") {
					continue // interpolated: the raw text says nothing
				}
				if _, perr := types.ParsePortConfig(spec); perr != nil {
					return fmt.Errorf("%s: service %q: ports[%d]: %q: %w", names[i], svc, j, spec, perr)
				}
			}
		}
	}
	if len(details.ConfigFiles) == 1 {
		return fmt.Errorf("%s: %w", names[0], err)
	}
	// the first file that fails on its own is the one to blame
	for i, f := range details.ConfigFiles {
		solo := details
		solo.ConfigFiles = []types.ConfigFile{f}
		if _, serr := loadProject(ctx, solo, name, nil, func(o *loader.Options) { o.SkipConsistencyCheck = true }); serr != nil {
			return fmt.Errorf("%s: %w", names[i], err)
		}
	}
	return fmt.Errorf("%s: %w", strings.Join(names, ", "), err)
}
