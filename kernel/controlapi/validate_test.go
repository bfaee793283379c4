package controlapi

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// validServiceSpec sets every field of a service spec to a valid value.
func validServiceSpec() *objectv1.ServiceSpec {
	return &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "web", Labels: map[string]string{"team": "a", "com.example.tier": "front"}},
		Mode:        &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 3}},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{
				Image:           "registry.local:5000/team/web:1.2@sha256:" + strings.Repeat("ab", 32),
				Command:         []string{"/bin/web"},
				Args:            []string{"--port", "80"},
				Env:             []string{"A=1", "EMPTY="},
				Dir:             "/srv",
				User:            "1000:www-data",
				Mounts:          []*objectv1.Mount{{Source: "/var/data", Target: "/data"}, {Source: "/etc/web", Target: "/etc/web", ReadOnly: true}},
				StopSignal:      "SIGQUIT",
				StopGracePeriod: durationpb.New(30 * time.Second),
			},
			Resources: &objectv1.ResourceRequirements{
				Limits:       &objectv1.Resources{NanoCpus: 2e9, MemoryBytes: 512 << 20},
				Reservations: &objectv1.Resources{NanoCpus: 1e9, MemoryBytes: 256 << 20},
			},
			Restart: &objectv1.RestartPolicy{
				Condition:   objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE,
				Delay:       durationpb.New(time.Second),
				MaxAttempts: 3,
				Window:      durationpb.New(time.Minute),
			},
			Placement: &objectv1.Placement{
				Constraints:        []string{"node.role==worker", "node.labels.rack != a"},
				Preferences:        []*objectv1.PlacementPreference{{Spread: "node.labels.zone"}, {Spread: "node.hostname"}},
				MaxReplicasPerNode: 2,
			},
		},
		Update: &objectv1.UpdateConfig{
			Parallelism:     2,
			Delay:           durationpb.New(10 * time.Second),
			FailureAction:   objectv1.FailureAction_FAILURE_ACTION_ROLLBACK,
			Monitor:         durationpb.New(time.Minute),
			MaxFailureRatio: 0.25,
			Order:           objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST,
		},
		Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{
			{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST},
			{Protocol: "udp", TargetPort: 53, PublishedPort: 8080, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST},
		}},
	}
}

// fields returns the field paths of a validation error, in order, and
// checks that it is sdk.FieldErrors of kind sdk.ErrInvalidArgument.
func fields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("error %v (%T) is not sdk.FieldErrors of kind ErrInvalidArgument", err, err)
	}
	out := make([]string, len(fe))
	for i, f := range fe {
		if f.Message == "" {
			t.Errorf("field %s has an empty message", f.Field)
		}
		out[i] = f.Field
	}
	return out
}

func TestValidateServiceSpecValid(t *testing.T) {
	if err := ValidateServiceSpec(validServiceSpec()); err != nil {
		t.Fatalf("ValidateServiceSpec(valid) = %v, want nil", err)
	}
}

// specCase is a change to validServiceSpec and the fields
// ValidateServiceSpec names for it, in order (nil: still valid).
type specCase struct {
	name   string
	mutate func(s *objectv1.ServiceSpec)
	want   []string
}

// checkSpecCases runs each case as a subtest on a fresh validServiceSpec.
func checkSpecCases(t *testing.T, tests []specCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServiceSpec()
			tt.mutate(s)
			got := fields(t, ValidateServiceSpec(s))
			if !slices.Equal(got, tt.want) {
				t.Errorf("ValidateServiceSpec fields = %q, want %q (error: %v)", got, tt.want, ValidateServiceSpec(s))
			}
		})
	}
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// TestValidateServiceSpecAnnotations checks the validation of the
// service's name and labels.
func TestValidateServiceSpecAnnotations(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"name missing", func(s *objectv1.ServiceSpec) { s.Annotations.Name = "" }, []string{"spec.annotations.name"}},
		{"annotations missing", func(s *objectv1.ServiceSpec) { s.Annotations = nil }, []string{"spec.annotations.name"}},
		{"name too long", func(s *objectv1.ServiceSpec) { s.Annotations.Name = strings.Repeat("a", 64) }, []string{"spec.annotations.name"}},
		{"name 63 chars", func(s *objectv1.ServiceSpec) { s.Annotations.Name = strings.Repeat("a", 63) }, nil},
		{"name leading dash", func(s *objectv1.ServiceSpec) { s.Annotations.Name = "-web" }, []string{"spec.annotations.name"}},
		{"name with space", func(s *objectv1.ServiceSpec) { s.Annotations.Name = "my web" }, []string{"spec.annotations.name"}},
		{"name with slash", func(s *objectv1.ServiceSpec) { s.Annotations.Name = "a/b" }, []string{"spec.annotations.name"}},
		{"name with _ . -", func(s *objectv1.ServiceSpec) { s.Annotations.Name = "0web_a.b-c" }, nil},
		{"label key empty", func(s *objectv1.ServiceSpec) { s.Annotations.Labels[""] = "x" }, []string{`spec.annotations.labels[""]`}},
		{"label key too long", func(s *objectv1.ServiceSpec) { s.Annotations.Labels[strings.Repeat("k", 129)] = "x" },
			[]string{`spec.annotations.labels["` + strings.Repeat("k", 64) + `"...]`}},
		{"label key with =", func(s *objectv1.ServiceSpec) { s.Annotations.Labels["a=b"] = "x" }, []string{`spec.annotations.labels["a=b"]`}},
		{"label value too long", func(s *objectv1.ServiceSpec) { s.Annotations.Labels["big"] = strings.Repeat("v", 4097) },
			[]string{`spec.annotations.labels["big"]`}},
		{"label value at limit", func(s *objectv1.ServiceSpec) { s.Annotations.Labels["big"] = strings.Repeat("v", 4096) }, nil},
		{"labels sorted", func(s *objectv1.ServiceSpec) {
			s.Annotations.Labels["z="] = ""
			s.Annotations.Labels["a="] = ""
			s.Annotations.Labels["m="] = ""
		}, []string{`spec.annotations.labels["a="]`, `spec.annotations.labels["m="]`, `spec.annotations.labels["z="]`}},
	})
}

// TestValidateServiceSpecMode checks the validation of the mode, replicated
// or global, and the number of replicas.
func TestValidateServiceSpecMode(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"no mode", func(s *objectv1.ServiceSpec) { s.Mode = nil }, []string{"spec.mode"}},
		{"replicated nil", func(s *objectv1.ServiceSpec) { s.Mode = &objectv1.ServiceSpec_Replicated{} }, []string{"spec.mode.replicated"}},
		{"global nil", func(s *objectv1.ServiceSpec) { s.Mode = &objectv1.ServiceSpec_Global{} }, []string{"spec.mode.global"}},
		{"global", func(s *objectv1.ServiceSpec) {
			s.Mode = &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}}
		}, nil},
		{"replicas negative", func(s *objectv1.ServiceSpec) { s.GetReplicated().Replicas = -1 }, []string{"spec.mode.replicated.replicas"}},
		{"replicas zero", func(s *objectv1.ServiceSpec) { s.GetReplicated().Replicas = 0 }, nil},
		{"replicas max", func(s *objectv1.ServiceSpec) { s.GetReplicated().Replicas = maxReplicas }, nil},
		{"replicas too many", func(s *objectv1.ServiceSpec) { s.GetReplicated().Replicas = maxReplicas + 1 }, []string{"spec.mode.replicated.replicas"}},
	})
}

// TestValidateServiceSpecContainer checks the validation of the
// container's image, command, environment, directory and user.
func TestValidateServiceSpecContainer(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"task missing", func(s *objectv1.ServiceSpec) { s.Task = nil }, []string{"spec.task.container.image"}},
		{"image missing", func(s *objectv1.ServiceSpec) { s.Task.Container.Image = "" }, []string{"spec.task.container.image"}},
		{"image bad", func(s *objectv1.ServiceSpec) { s.Task.Container.Image = "Web" }, []string{"spec.task.container.image"}},
		{"command NUL", func(s *objectv1.ServiceSpec) { s.Task.Container.Command = []string{"ok", "a\x00b"} }, []string{"spec.task.container.command[1]"}},
		{"args NUL", func(s *objectv1.ServiceSpec) { s.Task.Container.Args = []string{"\x00"} }, []string{"spec.task.container.args[0]"}},
		{"env no =", func(s *objectv1.ServiceSpec) { s.Task.Container.Env = []string{"A=1", "B"} }, []string{"spec.task.container.env[1]"}},
		{"env empty key", func(s *objectv1.ServiceSpec) { s.Task.Container.Env = []string{"=1"} }, []string{"spec.task.container.env[0]"}},
		{"env value with =", func(s *objectv1.ServiceSpec) { s.Task.Container.Env = []string{"A==b=c"} }, nil},
		{"env NUL", func(s *objectv1.ServiceSpec) { s.Task.Container.Env = []string{"A=\x00"} }, []string{"spec.task.container.env[0]"}},
		{"dir relative", func(s *objectv1.ServiceSpec) { s.Task.Container.Dir = "srv" }, []string{"spec.task.container.dir"}},
		{"dir empty", func(s *objectv1.ServiceSpec) { s.Task.Container.Dir = "" }, nil},
		{"user bad", func(s *objectv1.ServiceSpec) { s.Task.Container.User = "a b" }, []string{"spec.task.container.user"}},
		{"user empty group", func(s *objectv1.ServiceSpec) { s.Task.Container.User = "1000:" }, []string{"spec.task.container.user"}},
		{"user uid overflow", func(s *objectv1.ServiceSpec) { s.Task.Container.User = "4294967295" }, []string{"spec.task.container.user"}},
		{"user three parts", func(s *objectv1.ServiceSpec) { s.Task.Container.User = "a:b:c" }, []string{"spec.task.container.user"}},
		{"user name", func(s *objectv1.ServiceSpec) { s.Task.Container.User = "nobody" }, nil},
	})
}

// TestValidateServiceSpecMounts checks the validation of bind, volume and
// tmpfs mounts.
func TestValidateServiceSpecMounts(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"mount source relative", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts[0].Source = "data" },
			[]string{"spec.task.container.mounts[0].source"}},
		{"mount target relative", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts[1].Target = "etc" },
			[]string{"spec.task.container.mounts[1].target"}},
		{"mount target root", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts[1].Target = "//" },
			[]string{"spec.task.container.mounts[1].target"}},
		{"mount duplicate target", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts[1].Target = "/data/" },
			[]string{"spec.task.container.mounts[1].target"}},
		{"mount nil", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts = []*objectv1.Mount{nil} },
			[]string{"spec.task.container.mounts[0].source", "spec.task.container.mounts[0].target"}},
		{"mount volume", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "db-data_1.x", Target: "/data", ReadOnly: true}
		}, nil},
		{"mount volume name a path", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "/var/data", Target: "/data"}
		}, []string{"spec.task.container.mounts[0].source"}},
		{"mount volume name dot dot", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "..", Target: "/data"}
		}, []string{"spec.task.container.mounts[0].source"}},
		{"mount volume name empty", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Target: "/data"}
		}, []string{"spec.task.container.mounts[0].source"}},
		{"mount volume target relative", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "v", Target: "data"}
		}, []string{"spec.task.container.mounts[0].target"}},
		{"mount volume with a tmpfs size", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: "v", Target: "/data", TmpfsSizeBytes: 1}
		}, []string{"spec.task.container.mounts[0].tmpfs_size_bytes"}},
		{"mount tmpfs", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch", TmpfsSizeBytes: 64 << 20, ReadOnly: true}
		}, nil},
		{"mount tmpfs default size", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch"}
		}, nil},
		{"mount tmpfs with a source", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Source: "/tmp", Target: "/scratch"}
		}, []string{"spec.task.container.mounts[0].source"}},
		{"mount tmpfs size negative", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/scratch", TmpfsSizeBytes: -1}
		}, []string{"spec.task.container.mounts[0].tmpfs_size_bytes"}},
		{"mount tmpfs duplicate target", func(s *objectv1.ServiceSpec) {
			s.Task.Container.Mounts[1] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/data"}
		}, []string{"spec.task.container.mounts[1].target"}},
		{"mount type unknown", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts[0].Type = 99 },
			[]string{"spec.task.container.mounts[0].type"}},
		{"mount bind with a tmpfs size", func(s *objectv1.ServiceSpec) { s.Task.Container.Mounts[0].TmpfsSizeBytes = 1 },
			[]string{"spec.task.container.mounts[0].tmpfs_size_bytes"}},
	})
}

// TestValidateServiceSpecStop checks the validation of the container's
// stop signal and grace period.
func TestValidateServiceSpecStop(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"stop signal unknown", func(s *objectv1.ServiceSpec) { s.Task.Container.StopSignal = "SIGSTOP" }, []string{"spec.task.container.stop_signal"}},
		{"stop signal lower case", func(s *objectv1.ServiceSpec) { s.Task.Container.StopSignal = "sigterm" }, []string{"spec.task.container.stop_signal"}},
		{"stop signal number", func(s *objectv1.ServiceSpec) { s.Task.Container.StopSignal = "15" }, []string{"spec.task.container.stop_signal"}},
		{"stop signal short", func(s *objectv1.ServiceSpec) { s.Task.Container.StopSignal = "TERM" }, nil},
		{"stop grace negative", func(s *objectv1.ServiceSpec) { s.Task.Container.StopGracePeriod = dur(-time.Second) },
			[]string{"spec.task.container.stop_grace_period"}},
	})
}

// TestValidateServiceSpecResources checks the validation of limits and
// reservations of CPU and memory.
func TestValidateServiceSpecResources(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"cpu limit negative", func(s *objectv1.ServiceSpec) { s.Task.Resources.Limits.NanoCpus = -1 },
			[]string{"spec.task.resources.limits.nano_cpus"}},
		{"memory limit negative", func(s *objectv1.ServiceSpec) { s.Task.Resources.Limits.MemoryBytes = -1 },
			[]string{"spec.task.resources.limits.memory_bytes"}},
		{"cpu reservation negative", func(s *objectv1.ServiceSpec) { s.Task.Resources.Reservations.NanoCpus = -1 },
			[]string{"spec.task.resources.reservations.nano_cpus"}},
		{"memory reservation negative", func(s *objectv1.ServiceSpec) { s.Task.Resources.Reservations.MemoryBytes = -1 },
			[]string{"spec.task.resources.reservations.memory_bytes"}},
		{"memory limit too small", func(s *objectv1.ServiceSpec) {
			s.Task.Resources.Limits.MemoryBytes = 4<<20 - 1
			s.Task.Resources.Reservations.MemoryBytes = 0
		}, []string{"spec.task.resources.limits.memory_bytes"}},
		{"memory limit minimum", func(s *objectv1.ServiceSpec) {
			s.Task.Resources.Limits.MemoryBytes = 4 << 20
			s.Task.Resources.Reservations.MemoryBytes = 0
		}, nil},
		{"cpu reservation above limit", func(s *objectv1.ServiceSpec) { s.Task.Resources.Reservations.NanoCpus = 3e9 },
			[]string{"spec.task.resources.reservations.nano_cpus"}},
		{"memory reservation above limit", func(s *objectv1.ServiceSpec) { s.Task.Resources.Reservations.MemoryBytes = 1 << 30 },
			[]string{"spec.task.resources.reservations.memory_bytes"}},
		{"reservation without limit", func(s *objectv1.ServiceSpec) { s.Task.Resources.Limits = nil }, nil},
	})
}

// TestValidateServiceSpecRestart checks the validation of the restart policy.
func TestValidateServiceSpecRestart(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"restart delay negative", func(s *objectv1.ServiceSpec) { s.Task.Restart.Delay = dur(-time.Second) },
			[]string{"spec.task.restart.delay"}},
		{"restart delay invalid", func(s *objectv1.ServiceSpec) { s.Task.Restart.Delay = &durationpb.Duration{Seconds: 1, Nanos: -1} },
			[]string{"spec.task.restart.delay"}},
		{"restart delay out of range", func(s *objectv1.ServiceSpec) { s.Task.Restart.Delay = &durationpb.Duration{Seconds: math.MaxInt64} },
			[]string{"spec.task.restart.delay"}},
		{"restart window negative", func(s *objectv1.ServiceSpec) { s.Task.Restart.Window = dur(-time.Second) },
			[]string{"spec.task.restart.window"}},
		{"restart condition unknown", func(s *objectv1.ServiceSpec) { s.Task.Restart.Condition = 9 },
			[]string{"spec.task.restart.condition"}},
	})
}

// TestValidateServiceSpecPlacement checks the validation of constraints
// and preferences.
func TestValidateServiceSpecPlacement(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"constraint no operator", func(s *objectv1.ServiceSpec) { s.Task.Placement.Constraints[1] = "node.role" },
			[]string{"spec.task.placement.constraints[1]"}},
		{"constraint unknown key", func(s *objectv1.ServiceSpec) { s.Task.Placement.Constraints[0] = "engine.labels.a==b" },
			[]string{"spec.task.placement.constraints[0]"}},
		{"constraint bad role", func(s *objectv1.ServiceSpec) { s.Task.Placement.Constraints[0] = "node.role==boss" },
			[]string{"spec.task.placement.constraints[0]"}},
		{"too many constraints", func(s *objectv1.ServiceSpec) {
			s.Task.Placement.Constraints = slices.Repeat([]string{"node.role==worker"}, maxConstraints+1)
		}, []string{"spec.task.placement.constraints"}},
		{"constraints at limit", func(s *objectv1.ServiceSpec) {
			s.Task.Placement.Constraints = slices.Repeat([]string{"node.role==worker"}, maxConstraints)
		}, nil},
		{"preference unknown", func(s *objectv1.ServiceSpec) { s.Task.Placement.Preferences[1].Spread = "node.name" },
			[]string{"spec.task.placement.preferences[1].spread"}},
		{"preference empty label", func(s *objectv1.ServiceSpec) { s.Task.Placement.Preferences[0].Spread = "node.labels." },
			[]string{"spec.task.placement.preferences[0].spread"}},
		{"too many preferences", func(s *objectv1.ServiceSpec) {
			s.Task.Placement.Preferences = slices.Repeat([]*objectv1.PlacementPreference{{Spread: "node.id"}}, maxPreferences+1)
		}, []string{"spec.task.placement.preferences"}},
	})
}

// TestValidateServiceSpecUpdate checks the validation of the update policy.
func TestValidateServiceSpecUpdate(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"update delay negative", func(s *objectv1.ServiceSpec) { s.Update.Delay = dur(-1) }, []string{"spec.update.delay"}},
		{"update monitor negative", func(s *objectv1.ServiceSpec) { s.Update.Monitor = dur(-1) }, []string{"spec.update.monitor"}},
		{"failure ratio above 1", func(s *objectv1.ServiceSpec) { s.Update.MaxFailureRatio = 1.5 }, []string{"spec.update.max_failure_ratio"}},
		{"failure ratio negative", func(s *objectv1.ServiceSpec) { s.Update.MaxFailureRatio = -0.1 }, []string{"spec.update.max_failure_ratio"}},
		{"failure ratio NaN", func(s *objectv1.ServiceSpec) { s.Update.MaxFailureRatio = float32(math.NaN()) }, []string{"spec.update.max_failure_ratio"}},
		{"failure ratio 1", func(s *objectv1.ServiceSpec) { s.Update.MaxFailureRatio = 1 }, nil},
		{"failure action unknown", func(s *objectv1.ServiceSpec) { s.Update.FailureAction = 4 }, []string{"spec.update.failure_action"}},
		{"order unknown", func(s *objectv1.ServiceSpec) { s.Update.Order = -1 }, []string{"spec.update.order"}},
		{"parallelism zero", func(s *objectv1.ServiceSpec) { s.Update.Parallelism = 0 }, nil},
	})
}

// TestValidateServiceSpecPorts checks the validation of published ports
// and the endpoint mode.
func TestValidateServiceSpecPorts(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"target port zero", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[1].TargetPort = 0 }, []string{"spec.endpoint.ports[1].target_port"}},
		{"target port too big", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[1].TargetPort = 65536 }, []string{"spec.endpoint.ports[1].target_port"}},
		{"published port zero", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[0].PublishedPort = 0 }, []string{"spec.endpoint.ports[0].published_port"}},
		{"published port too big", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[0].PublishedPort = 70000 }, []string{"spec.endpoint.ports[0].published_port"}},
		{"protocol unknown", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[0].Protocol = "sctp" }, []string{"spec.endpoint.ports[0].protocol"}},
		{"protocol upper case", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[0].Protocol = "TCP" }, []string{"spec.endpoint.ports[0].protocol"}},
		{"published twice", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[1].Protocol = "tcp" }, []string{"spec.endpoint.ports[1].published_port"}},
		{"publish mode unknown", func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[0].Mode = 9 }, []string{"spec.endpoint.ports[0].mode"}},
		{"endpoint mode unknown", func(s *objectv1.ServiceSpec) { s.Endpoint.Mode = 9 }, []string{"spec.endpoint.mode"}},
	})
}

// TestValidateServiceSpecCollectsEveryError checks several errors at once:
// every one is named, in the order of the spec.
func TestValidateServiceSpecCollectsEveryError(t *testing.T) {
	checkSpecCases(t, []specCase{
		{"several", func(s *objectv1.ServiceSpec) {
			s.Annotations.Name = ""
			s.GetReplicated().Replicas = -5
			s.Task.Container.Image = ""
			s.Task.Restart.Delay = dur(-1)
			s.Endpoint.Ports[1].TargetPort = 0
		}, []string{"spec.annotations.name", "spec.mode.replicated.replicas", "spec.task.container.image",
			"spec.task.restart.delay", "spec.endpoint.ports[1].target_port"}},
	})
}

func TestValidateServiceSpecNil(t *testing.T) {
	got := fields(t, ValidateServiceSpec(nil))
	if want := []string{"spec"}; !slices.Equal(got, want) {
		t.Errorf("ValidateServiceSpec(nil) fields = %q, want %q", got, want)
	}
}

// TestValidateMessages checks that messages give the bounds and the bad
// value.
func TestValidateMessages(t *testing.T) {
	tests := []struct {
		mutate func(s *objectv1.ServiceSpec)
		want   string
	}{
		{func(s *objectv1.ServiceSpec) { s.GetReplicated().Replicas = -1 },
			"spec.mode.replicated.replicas: must be between 0 and 100000, got -1"},
		{func(s *objectv1.ServiceSpec) { s.Annotations.Name = strings.Repeat("a", 70) },
			"spec.annotations.name: must be at most 63 characters, got 70"},
		{func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[0].TargetPort = 0 },
			"spec.endpoint.ports[0].target_port: must be between 1 and 65535, got 0"},
		{func(s *objectv1.ServiceSpec) { s.Task.Restart.Condition = 9 },
			"spec.task.restart.condition: must be one of RESTART_CONDITION_UNSPECIFIED, RESTART_CONDITION_NONE, " +
				"RESTART_CONDITION_ON_FAILURE, RESTART_CONDITION_ANY, got 9"},
		{func(s *objectv1.ServiceSpec) { s.Task.Restart.Delay = durationpb.New(-1500 * time.Millisecond) },
			"spec.task.restart.delay: must be at least 0s, got -1.5s"},
		{func(s *objectv1.ServiceSpec) { s.Endpoint.Ports[1].Protocol = "tcp" },
			"spec.endpoint.ports[1].published_port: 8080/tcp is already published by spec.endpoint.ports[0]"},
		{func(s *objectv1.ServiceSpec) {
			s.Task.Resources.Limits.MemoryBytes = 1024
			s.Task.Resources.Reservations = nil
		}, "spec.task.resources.limits.memory_bytes: must be 0 (no limit) or at least 4194304 (4 MiB), got 1024"},
	}
	for _, tt := range tests {
		s := validServiceSpec()
		tt.mutate(s)
		err := ValidateServiceSpec(s)
		var fe sdk.FieldErrors
		if !errors.As(err, &fe) || len(fe) != 1 {
			t.Errorf("ValidateServiceSpec = %v, want one field error %q", err, tt.want)
			continue
		}
		if got := fe[0].Error(); got != tt.want {
			t.Errorf("ValidateServiceSpec = %q, want %q", got, tt.want)
		}
	}
}

// TestValidateCapsErrors checks that a spec with very many bad fields gets a
// bounded reply that says how many were left out.
func TestValidateCapsErrors(t *testing.T) {
	s := validServiceSpec()
	s.Task.Container.Env = slices.Repeat([]string{"bad"}, 250)
	var fe sdk.FieldErrors
	if !errors.As(ValidateServiceSpec(s), &fe) {
		t.Fatal("ValidateServiceSpec(250 bad env) = nil, want FieldErrors")
	}
	if len(fe) != maxFieldErrors+1 {
		t.Fatalf("ValidateServiceSpec(250 bad env) has %d errors, want %d", len(fe), maxFieldErrors+1)
	}
	last := fe[len(fe)-1]
	if want := (sdk.FieldError{Field: "spec", Message: "150 more invalid fields not shown"}); last != want {
		t.Errorf("last error = %+v, want %+v", last, want)
	}
}

func TestCheckImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		ref  string
		want bool
	}{
		{"nginx", true},
		{"nginx:1.27", true},
		{"nginx:latest", true},
		{"library/nginx", true},
		{"docker.io/library/nginx:1.27-alpine", true},
		{"localhost/app", true},
		{"localhost:5000/app:v1", true},
		{"registry.local:5000/team/web:1", true},
		{"10.0.0.1:5000/web", true},
		{"Registry.Example/web", true},
		{"my-registry/web", true}, // no '.' or ':': a path, like Docker reads it
		{"a__b/c.d/e-f--g", true},
		{"nginx@" + digest, true},
		{"nginx:1@" + digest, true},
		{"registry.local:5000/web@" + digest, true},
		{"", false},
		{"Nginx", false},
		{"nginx:", false},
		{"nginx:-x", false},
		{"nginx:" + strings.Repeat("t", 129), false},
		{"nginx:" + strings.Repeat("t", 128), true},
		{"nginx@sha256:abc", false},
		{"nginx@md5:" + strings.Repeat("0", 32), false},
		{"nginx@" + strings.ToUpper(digest), false},
		{"nginx web", false},
		{"nginx\t", false},
		{"/nginx", false},
		{"nginx/", false},
		{"a//b", false},
		{"-a/b", false},
		{"a_/b", false},
		{"registry.local:0/web", false},
		{"registry.local:65536/web", false},
		{"registry.local:x/web", false},
		{"[::1]:5000/web", false},
		{"reg_istry.local/web", false},
		{":tag", false},
		{"@" + digest, false},
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a/", 300) + "a", false},
	}
	for _, tt := range tests {
		reason := checkImage(tt.ref)
		if got := reason == ""; got != tt.want {
			t.Errorf("checkImage(%q) = %q, want valid %v", tt.ref, reason, tt.want)
		}
	}
}

func TestValidateConstraint(t *testing.T) {
	tests := []struct {
		expr string
		ok   bool
	}{
		{"node.id==abc", true},
		{"node.hostname!=h1", true},
		{"node.role==worker", true},
		{"node.role!=manager", true},
		{"node.platform.os==linux", true},
		{"node.platform.arch==arm64", true},
		{"node.labels.rack==a", true},
		{"node.labels.com.example/zone==eu", true},
		{"node.role==Manager", false},
		{"node.role==leader", false},
		{"node.labels.==a", false},
		{"node.labels==a", false},
		{"node.labels." + strings.Repeat("k", maxLabelKeyLen+1) + "==a", false},
		{"node.name==a", false},
		{"engine.labels.a==b", false},
		{"NODE.ROLE==worker", false},
		{"node.role", false},
		// The syntax is the SDK's (sdk/scheduler has the cases);
		// the bounds are the API's.
		{" node.labels.rack != a ", true},
		{"node.labels.rack==a b", true},
		{"k==a==b", false},
		{"node.labels.rack==" + strings.Repeat("v", maxLabelValueLen), true},
		{"node.labels.rack==" + strings.Repeat("v", maxLabelValueLen+1), false},
		{"node.labels." + strings.Repeat("k", maxLabelKeyLen) + "==a", true},
	}
	for _, tt := range tests {
		err := ValidateConstraint(tt.expr)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateConstraint(%q) = %v, want ok %v", tt.expr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("ValidateConstraint(%q) error %v is not ErrInvalidArgument", tt.expr, err)
		}
	}
}

func TestValidateNodeSpec(t *testing.T) {
	valid := func() *objectv1.NodeSpec {
		return &objectv1.NodeSpec{
			Annotations:  &objectv1.Annotations{Name: "node-1.example", Labels: map[string]string{"rack": "a"}},
			DesiredRole:  objectv1.NodeRole_NODE_ROLE_MANAGER,
			Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN,
		}
	}
	tests := []struct {
		name   string
		mutate func(s *objectv1.NodeSpec)
		want   []string
	}{
		{"valid", func(s *objectv1.NodeSpec) {}, nil},
		{"no name", func(s *objectv1.NodeSpec) { s.Annotations.Name = "" }, nil},
		{"no annotations", func(s *objectv1.NodeSpec) { s.Annotations = nil }, nil},
		{"role unspecified", func(s *objectv1.NodeSpec) { s.DesiredRole = objectv1.NodeRole_NODE_ROLE_UNSPECIFIED }, nil},
		{"name too long", func(s *objectv1.NodeSpec) { s.Annotations.Name = strings.Repeat("n", 64) }, []string{"spec.annotations.name"}},
		{"name bad", func(s *objectv1.NodeSpec) { s.Annotations.Name = "node 1" }, []string{"spec.annotations.name"}},
		{"label key empty", func(s *objectv1.NodeSpec) { s.Annotations.Labels[""] = "" }, []string{`spec.annotations.labels[""]`}},
		{"label value too long", func(s *objectv1.NodeSpec) { s.Annotations.Labels["rack"] = strings.Repeat("v", 4097) },
			[]string{`spec.annotations.labels["rack"]`}},
		{"role unknown", func(s *objectv1.NodeSpec) { s.DesiredRole = 3 }, []string{"spec.desired_role"}},
		{"availability unspecified", func(s *objectv1.NodeSpec) {
			s.Availability = objectv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED
		}, []string{"spec.availability"}},
		{"availability unknown", func(s *objectv1.NodeSpec) { s.Availability = 7 }, []string{"spec.availability"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(s)
			got := fields(t, ValidateNodeSpec(s))
			if !slices.Equal(got, tt.want) {
				t.Errorf("ValidateNodeSpec fields = %q, want %q (error: %v)", got, tt.want, ValidateNodeSpec(s))
			}
		})
	}
	if got := fields(t, ValidateNodeSpec(nil)); !slices.Equal(got, []string{"spec"}) {
		t.Errorf("ValidateNodeSpec(nil) fields = %q, want [spec]", got)
	}
}

func TestValidateNodeSpecMessage(t *testing.T) {
	err := ValidateNodeSpec(&objectv1.NodeSpec{})
	want := "invalid argument: spec.availability: must be one of NODE_AVAILABILITY_ACTIVE, NODE_AVAILABILITY_PAUSE, " +
		"NODE_AVAILABILITY_DRAIN, got NODE_AVAILABILITY_UNSPECIFIED"
	if err == nil || err.Error() != want {
		t.Errorf("ValidateNodeSpec(empty) = %v, want %q", err, want)
	}
}

func TestValidateClusterSpec(t *testing.T) {
	valid := func() *objectv1.ClusterSpec {
		return &objectv1.ClusterSpec{
			Annotations:   &objectv1.Annotations{Name: "default"},
			Dispatcher:    &objectv1.DispatcherConfig{HeartbeatPeriod: durationpb.New(5 * time.Second)},
			Ca:            &objectv1.CAConfig{NodeCertExpiry: durationpb.New(2160 * time.Hour)},
			Orchestration: &objectv1.OrchestrationConfig{TaskHistoryRetention: 5},
		}
	}
	tests := []struct {
		name   string
		mutate func(s *objectv1.ClusterSpec)
		want   []string
	}{
		{"valid", func(s *objectv1.ClusterSpec) {}, nil},
		{"bounds low", func(s *objectv1.ClusterSpec) {
			s.Dispatcher.HeartbeatPeriod = dur(time.Second)
			s.Ca.NodeCertExpiry = dur(time.Hour)
			s.Orchestration.TaskHistoryRetention = 0
		}, nil},
		{"bounds high", func(s *objectv1.ClusterSpec) {
			s.Dispatcher.HeartbeatPeriod = dur(time.Hour)
			s.Ca.NodeCertExpiry = dur(87600 * time.Hour)
			s.Orchestration.TaskHistoryRetention = 100
		}, nil},
		{"name bad", func(s *objectv1.ClusterSpec) { s.Annotations.Name = "my cluster" }, []string{"spec.annotations.name"}},
		{"label bad", func(s *objectv1.ClusterSpec) { s.Annotations.Labels = map[string]string{"": ""} }, []string{`spec.annotations.labels[""]`}},
		{"heartbeat short", func(s *objectv1.ClusterSpec) { s.Dispatcher.HeartbeatPeriod = dur(999 * time.Millisecond) },
			[]string{"spec.dispatcher.heartbeat_period"}},
		{"heartbeat long", func(s *objectv1.ClusterSpec) { s.Dispatcher.HeartbeatPeriod = dur(time.Hour + 1) },
			[]string{"spec.dispatcher.heartbeat_period"}},
		{"heartbeat unset", func(s *objectv1.ClusterSpec) { s.Dispatcher = nil }, []string{"spec.dispatcher.heartbeat_period"}},
		{"heartbeat invalid", func(s *objectv1.ClusterSpec) {
			s.Dispatcher.HeartbeatPeriod = &durationpb.Duration{Seconds: 2, Nanos: -5}
		}, []string{"spec.dispatcher.heartbeat_period"}},
		{"heartbeat huge", func(s *objectv1.ClusterSpec) {
			s.Dispatcher.HeartbeatPeriod = &durationpb.Duration{Seconds: 315576000000}
		}, []string{"spec.dispatcher.heartbeat_period"}},
		{"expiry short", func(s *objectv1.ClusterSpec) { s.Ca.NodeCertExpiry = dur(59 * time.Minute) }, []string{"spec.ca.node_cert_expiry"}},
		{"expiry long", func(s *objectv1.ClusterSpec) { s.Ca.NodeCertExpiry = dur(87601 * time.Hour) }, []string{"spec.ca.node_cert_expiry"}},
		{"history negative", func(s *objectv1.ClusterSpec) { s.Orchestration.TaskHistoryRetention = -1 },
			[]string{"spec.orchestration.task_history_retention"}},
		{"history too long", func(s *objectv1.ClusterSpec) { s.Orchestration.TaskHistoryRetention = 101 },
			[]string{"spec.orchestration.task_history_retention"}},
		{"all bad", func(s *objectv1.ClusterSpec) {
			s.Dispatcher.HeartbeatPeriod = dur(0)
			s.Ca.NodeCertExpiry = dur(0)
			s.Orchestration.TaskHistoryRetention = 1000
		}, []string{"spec.dispatcher.heartbeat_period", "spec.ca.node_cert_expiry", "spec.orchestration.task_history_retention"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.mutate(s)
			got := fields(t, ValidateClusterSpec(s))
			if !slices.Equal(got, tt.want) {
				t.Errorf("ValidateClusterSpec fields = %q, want %q (error: %v)", got, tt.want, ValidateClusterSpec(s))
			}
		})
	}
	if got := fields(t, ValidateClusterSpec(nil)); !slices.Equal(got, []string{"spec"}) {
		t.Errorf("ValidateClusterSpec(nil) fields = %q, want [spec]", got)
	}
}

func TestValidateClusterSpecMessage(t *testing.T) {
	s := &objectv1.ClusterSpec{}
	ApplyClusterDefaults(s)
	s.Ca.NodeCertExpiry = durationpb.New(30 * time.Minute)
	err := ValidateClusterSpec(s)
	want := "invalid argument: spec.ca.node_cert_expiry: must be between 1h and 87600h, got 30m"
	if err == nil || err.Error() != want {
		t.Errorf("ValidateClusterSpec = %v, want %q", err, want)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", `"abc"`},
		{strings.Repeat("x", 64), fmt.Sprintf("%q", strings.Repeat("x", 64))},
		{strings.Repeat("x", 65), fmt.Sprintf("%q...", strings.Repeat("x", 64))},
		// A multi-byte rune is not cut in half.
		{strings.Repeat("x", 63) + "é", fmt.Sprintf("%q...", strings.Repeat("x", 63))},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func BenchmarkValidateServiceSpec(b *testing.B) {
	s := validServiceSpec()
	for b.Loop() {
		if err := ValidateServiceSpec(s); err != nil {
			b.Fatal(err)
		}
	}
}
