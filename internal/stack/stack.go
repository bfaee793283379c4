package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// LabelNamespace is the label every object of a stack carries, set to the
// stack's name; `stack rm` and `stack ls` find a stack's objects by it.
const LabelNamespace = "shoal.stack"

// maxDataSize is the largest secret or config, as the control API accepts.
const maxDataSize = 500 << 10

// Options says which compose files make a stack.
type Options struct {
	// Files are the compose files, merged in order (later files override
	// earlier ones, as `-c a.yml -c b.yml`). At least one is required.
	Files []string
	// Name is the stack's name, the prefix of every object it owns. It must
	// be lowercase letters, digits, '-' and '_', starting with a letter or
	// digit.
	Name string
	// WorkingDir is the project directory: relative paths in the files
	// (bind mounts, env_file, secret and config files) and the .env file are
	// taken from it. Default: the directory of the first file.
	WorkingDir string
	// Env is the environment variables are interpolated from (usually the
	// CLI's os.Environ). It overrides the values of WorkingDir/.env.
	Env map[string]string
}

// Plan is what a stack deploys: the specs of the objects it owns and the
// names of the external ones it uses. Every list is sorted by name.
type Plan struct {
	// Name is the stack's name.
	Name     string
	Services []*objectv1.ServiceSpec
	// Networks are the networks the services join that the stack owns,
	// NAME_default among them when a service declares no network.
	Networks []*objectv1.NetworkSpec
	Secrets  []Secret
	Configs  []Config
	// Volumes are the full names of the named volumes the stack declares;
	// they are made on the nodes on first use, so there is nothing to create.
	Volumes []string
	// ExternalSecrets, ExternalConfigs and ExternalNetworks are the names of
	// the external objects the stack uses; they must exist before deploying.
	ExternalSecrets  []string
	ExternalConfigs  []string
	ExternalNetworks []string
	// Warnings name what the files ask for that shoal ignores, one sentence
	// each, sorted.
	Warnings []string
}

// Secret is a secret the stack owns, with its data.
type Secret struct {
	Spec *objectv1.SecretSpec
	// Source says where the data came from: "file:/abs/path",
	// "environment:VAR" or "content".
	Source string
}

// Config is a config the stack owns, with its data.
type Config struct {
	Spec *objectv1.ConfigSpec
	// Source says where the data came from, as Secret.Source.
	Source string
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Load reads the compose files and translates them into a Plan. It returns
// an error naming the file, the service and the key for anything the
// specification or shoal does not accept; keys shoal only ignores are in
// Plan.Warnings.
func Load(ctx context.Context, opts Options) (*Plan, error) {
	if !validName.MatchString(opts.Name) {
		return nil, fmt.Errorf("stack name %q: must be lowercase letters, digits, '-' and '_', starting with a letter or digit", opts.Name)
	}
	if len(opts.Files) == 0 {
		return nil, errors.New("no compose file given")
	}
	files := make([]types.ConfigFile, len(opts.Files))
	for i, f := range opts.Files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("compose file %s: %w", f, err)
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("compose file: %w", err)
		}
		files[i] = types.ConfigFile{Filename: abs, Content: b}
	}
	wd := opts.WorkingDir
	if wd == "" {
		wd = filepath.Dir(files[0].Filename)
	}
	wd, err := filepath.Abs(wd)
	if err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	env, err := environment(wd, opts.Env)
	if err != nil {
		return nil, err
	}

	var findings []loader.UnsupportedAttribute
	details := types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: files,
		Environment: env,
	}
	project, err := loadProject(ctx, details, opts.Name, func(f []loader.UnsupportedAttribute) { findings = f })
	if err != nil {
		return nil, explainLoadError(ctx, err, details, opts.Files, opts.Name)
	}
	c := &converter{
		stack:   opts.Name,
		wd:      wd,
		project: project,
		files:   files,
		names:   opts.Files,
	}
	c.warnUnsupported(findings)
	return c.convert()
}

// environment is the variables interpolation sees: wd/.env, overridden by
// env, as `docker compose` does.
func environment(wd string, env map[string]string) (types.Mapping, error) {
	m := types.Mapping{}
	dotEnv := filepath.Join(wd, ".env")
	if st, err := os.Stat(dotEnv); err == nil && st.Mode().IsRegular() {
		vals, err := dotenv.GetEnvFromFile(env, []string{dotEnv})
		if err != nil {
			return nil, fmt.Errorf("env file %s: %w", dotEnv, err)
		}
		for k, v := range vals {
			m[k] = v
		}
	}
	for k, v := range env {
		m[k] = v
	}
	return m, nil
}

// loadProject runs compose-go. A panic in the library on odd input becomes
// an error: Load must not take its caller down.
func loadProject(ctx context.Context, details types.ConfigDetails, name string, report func([]loader.UnsupportedAttribute), more ...func(*loader.Options)) (p *types.Project, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("compose file: cannot load: %v", r)
		}
	}()
	options := []func(*loader.Options){
		func(o *loader.Options) {
			o.SetProjectName(name, true)
			// every service is deployed, whatever its profiles
			o.Profiles = []string{"*"}
		},
	}
	if report != nil {
		options = append(options, loader.WithSupportedAttributes(supportedAttributes(), report))
	}
	return loader.LoadWithContext(ctx, details, append(options, more...)...)
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
