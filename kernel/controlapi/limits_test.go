package controlapi

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// oneError checks that err names exactly one field and returns its message
// ("field: message").
func oneError(t *testing.T, err error) string {
	t.Helper()
	var fe sdk.FieldErrors
	if !errors.As(err, &fe) || len(fe) != 1 {
		t.Fatalf("error = %v, want exactly one field error", err)
	}
	return fe[0].Error()
}

// labelsOf returns n labels.
func labelsOf(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

// sizeTo grows m to exactly n bytes serialized with grow, which adds k
// bytes (about) somewhere in m.
func sizeTo(t *testing.T, m proto.Message, n int, grow func(k int)) {
	t.Helper()
	for range 5 {
		d := n - proto.Size(m)
		if d == 0 {
			return
		}
		grow(d)
	}
	t.Fatalf("could not size the message to %d bytes, got %d", n, proto.Size(m))
}

// padUnknown returns a grow for sizeTo that resizes an unknown field of m,
// as a client with a newer schema (or a hostile one) may send.
func padUnknown(m proto.Message) func(k int) {
	n := 0
	return func(k int) {
		n = max(0, n+k)
		m.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), make([]byte, n)))
	}
}

// resize grows or shrinks *s by k bytes.
func resize(s *string, k int) {
	if k < 0 {
		*s = (*s)[:len(*s)+k]
		return
	}
	*s += strings.Repeat("v", k)
}

// limitCase is a limit of a spec: set makes the spec reach n of what it
// bounds, and want is the error at limit+1. The TestServiceSpecLimits tests
// set each bounded field of a service spec at its limit (accepted) and just
// over it (refused, with the field, the limit and the value or length in the
// message).
type limitCase struct {
	name  string
	limit int
	set   func(t *testing.T, s *objectv1.ServiceSpec, n int)
	want  string // the error at limit+1
}

// checkLimits runs each case as a subtest: a spec at the limit is valid, one
// past it is refused with want alone.
func checkLimits(t *testing.T, tests []limitCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := validServiceSpec()
			tt.set(t, at, tt.limit)
			if err := ValidateServiceSpec(at); err != nil {
				t.Errorf("at the limit (%d): ValidateServiceSpec = %v, want nil", tt.limit, err)
			}
			over := validServiceSpec()
			tt.set(t, over, tt.limit+1)
			if got := oneError(t, ValidateServiceSpec(over)); got != tt.want {
				t.Errorf("over the limit: ValidateServiceSpec = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestServiceSpecLimitsSpec checks the limits of the size of the whole
// spec, its annotations and its replicas.
func TestServiceSpecLimitsSpec(t *testing.T) {
	checkLimits(t, []limitCase{
		{"spec size", maxSpecBytes, func(t *testing.T, s *objectv1.ServiceSpec, n int) {
			// Entries of 100 kB, then one that makes up the rest.
			c := s.Task.Container
			for proto.Size(s) < n-100000 {
				c.Env = append(c.Env, "A="+strings.Repeat("v", 100000-2))
			}
			c.Env = append(c.Env, "B=")
			sizeTo(t, s, n, func(k int) { resize(&c.Env[len(c.Env)-1], k) })
		}, "spec: must be at most 1048576 bytes serialized, got 1048577"},
		{"name length", maxNameLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Annotations.Name = strings.Repeat("a", n)
		}, "spec.annotations.name: must be at most 63 characters, got 64"},
		{"labels", maxLabels, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Annotations.Labels = labelsOf(n)
		}, "spec.annotations.labels: must have at most 128 entries, got 129"},
		{"label key length", maxLabelKeyLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Annotations.Labels = map[string]string{strings.Repeat("k", n): "v"}
		}, `spec.annotations.labels["` + strings.Repeat("k", 64) + `"...]: key must be at most 128 characters, got 129`},
		{"label value length", maxLabelValueLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Annotations.Labels = map[string]string{"big": strings.Repeat("v", n)}
		}, `spec.annotations.labels["big"]: value must be at most 4096 characters, got 4097`},
		{"replicas", maxReplicas, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.GetReplicated().Replicas = int64(n)
		}, "spec.mode.replicated.replicas: must be between 0 and 100000, got 100001"},
	})
}

// TestServiceSpecLimitsContainer checks the limits of the container's
// command, arguments, environment, directory and user.
func TestServiceSpecLimitsContainer(t *testing.T) {
	checkLimits(t, []limitCase{
		{"command", maxArgs, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Command = slices.Repeat([]string{"x"}, n)
		}, "spec.task.container.command: must have at most 1000 entries, got 1001"},
		{"command word length", maxArgLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Command = []string{"/bin/sh", strings.Repeat("c", n)}
		}, "spec.task.container.command[1]: must be at most 131071 bytes, got 131072"},
		{"args", maxArgs, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Args = slices.Repeat([]string{"x"}, n)
		}, "spec.task.container.args: must have at most 1000 entries, got 1001"},
		{"arg length", maxArgLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Args = []string{strings.Repeat("a", n)}
		}, "spec.task.container.args[0]: must be at most 131071 bytes, got 131072"},
		{"env", maxEnv, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Env = slices.Repeat([]string{"A=1"}, n)
		}, "spec.task.container.env: must have at most 1000 entries, got 1001"},
		{"env entry length", maxArgLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Env = []string{"A=1", "B=" + strings.Repeat("v", n-2)}
		}, "spec.task.container.env[1]: must be at most 131071 bytes, got 131072"},
		{"dir length", maxPathLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Dir = "/" + strings.Repeat("d", n-1)
		}, "spec.task.container.dir: must be at most 4095 bytes, got 4096"},
		{"user name length", maxUserNameLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.User = strings.Repeat("u", n)
		}, "spec.task.container.user: must be name|uid[:group|gid], with names of at most 32 characters " +
			`([a-zA-Z_][a-zA-Z0-9_.-]*) and IDs between 0 and 4294967294, got "` + strings.Repeat("u", 33) + `"`},
	})
}

// TestServiceSpecLimitsMounts checks the limits of mounts, volumes and tmpfs.
func TestServiceSpecLimitsMounts(t *testing.T) {
	checkLimits(t, []limitCase{
		{"mounts", maxMounts, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Mounts = nil
			for i := range n {
				s.Task.Container.Mounts = append(s.Task.Container.Mounts, &objectv1.Mount{Source: "/src", Target: fmt.Sprintf("/m%d", i)})
			}
		}, "spec.task.container.mounts: must have at most 128 entries, got 129"},
		{"mount source length", maxPathLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Mounts[1].Source = "/" + strings.Repeat("s", n-1)
		}, "spec.task.container.mounts[1].source: must be at most 4095 bytes, got 4096"},
		{"mount target length", maxPathLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Mounts[0].Target = "/" + strings.Repeat("t", n-1)
		}, "spec.task.container.mounts[0].target: must be at most 4095 bytes, got 4096"},
		{"volume name length", maxVolumeNameLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_VOLUME, Source: strings.Repeat("v", n), Target: "/data"}
		}, "spec.task.container.mounts[0].source: must be a volume name of at most 63 characters, got 64"},
		{"tmpfs size", maxTmpfsSize, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Container.Mounts[0] = &objectv1.Mount{Type: objectv1.MountType_MOUNT_TYPE_TMPFS, Target: "/data", TmpfsSizeBytes: int64(n)}
		}, "spec.task.container.mounts[0].tmpfs_size_bytes: must be between 0 (the node's default, half its memory) and 1099511627776 (1 TiB), got 1099511627777"},
	})
}

// TestServiceSpecLimitsPlacement checks the limits of placement
// constraints and preferences.
func TestServiceSpecLimitsPlacement(t *testing.T) {
	checkLimits(t, []limitCase{
		{"constraints", maxConstraints, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Placement.Constraints = slices.Repeat([]string{"node.role==worker"}, n)
		}, "spec.task.placement.constraints: must have at most 64 entries, got 65"},
		{"constraint length", maxConstraintLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			// White space around the value is allowed, and trimmed.
			s.Task.Placement.Constraints[0] = "node.role==worker" + strings.Repeat(" ", n-len("node.role==worker"))
		}, "spec.task.placement.constraints[0]: must be at most 4352 bytes, got 4353"},
		{"longest label constraint", maxConstraintLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			c := "node.labels." + strings.Repeat("k", maxLabelKeyLen) + " == " + strings.Repeat("v", maxLabelValueLen)
			s.Task.Placement.Constraints[0] = c + strings.Repeat(" ", n-len(c))
		}, "spec.task.placement.constraints[0]: must be at most 4352 bytes, got 4353"},
		{"preferences", maxPreferences, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Placement.Preferences = slices.Repeat([]*objectv1.PlacementPreference{{Spread: "node.id"}}, n)
		}, "spec.task.placement.preferences: must have at most 16 entries, got 17"},
	})
}

// TestServiceSpecLimitsEndpoint checks the limits of networks, aliases and
// published ports.
func TestServiceSpecLimitsEndpoint(t *testing.T) {
	checkLimits(t, []limitCase{
		{"networks", maxNetworksPerTask, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			for i := range n {
				s.Task.Networks = append(s.Task.Networks, &objectv1.NetworkAttachmentConfig{Target: fmt.Sprintf("net%d", i)})
			}
		}, "spec.task.networks: must hold at most 16 networks, got 17"},
		{"network target length", maxNameLen, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: strings.Repeat("n", n)}}
		}, "spec.task.networks[0].target: must be at most 63 characters (a network name or ID), got 64"},
		{"network aliases", maxAliases, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "front"}}
			for i := range n {
				s.Task.Networks[0].Aliases = append(s.Task.Networks[0].Aliases, fmt.Sprintf("a%d", i))
			}
		}, "spec.task.networks[0].aliases: must hold at most 8 names, got 9"},
		{"ports", maxPorts, func(_ *testing.T, s *objectv1.ServiceSpec, n int) {
			s.Endpoint.Ports = nil
			for i := range n {
				s.Endpoint.Ports = append(s.Endpoint.Ports, &objectv1.PortConfig{
					Protocol: "tcp", TargetPort: 80, PublishedPort: uint32(10000 + i), Mode: objectv1.PublishMode_PUBLISH_MODE_HOST,
				})
			}
		}, "spec.endpoint.ports: must have at most 1000 entries, got 1001"},
	})
}

// TestImageLimit: the longest valid reference (a 255-character repository
// name, a 128-character tag and a digest) is accepted; beyond maxImageLen
// the length is what the message says.
func TestImageLimit(t *testing.T) {
	s := validServiceSpec()
	s.Task.Container.Image = strings.Repeat("a", maxImageNameLen) + ":" + strings.Repeat("t", 128) + "@sha256:" + strings.Repeat("0", 64)
	if err := ValidateServiceSpec(s); err != nil {
		t.Errorf("the longest valid image (%d characters): %v", len(s.Task.Container.Image), err)
	}
	s.Task.Container.Image = strings.Repeat("a", maxImageLen+1)
	if got, want := oneError(t, ValidateServiceSpec(s)), "spec.task.container.image: must be at most 512 characters, got 513"; got != want {
		t.Errorf("ValidateServiceSpec = %q, want %q", got, want)
	}
}

// TestOverLimitListsNameEveryEntry: a list over its limit is named, and its
// bad entries too, up to maxFieldErrors.
func TestOverLimitListsNameEveryEntry(t *testing.T) {
	s := validServiceSpec()
	s.Task.Container.Env = append(slices.Repeat([]string{"A=1"}, maxEnv), "bad")
	got := fields(t, ValidateServiceSpec(s))
	if want := []string{"spec.task.container.env", "spec.task.container.env[1000]"}; !slices.Equal(got, want) {
		t.Errorf("fields = %q, want %q", got, want)
	}
}

// TestIssueSpecRefused is the spec of issue 11: 100,000 env entries.
func TestIssueSpecRefused(t *testing.T) {
	s := validServiceSpec()
	s.Task.Container.Env = slices.Repeat([]string{"A=1"}, 100000)
	if got, want := oneError(t, ValidateServiceSpec(s)), "spec.task.container.env: must have at most 1000 entries, got 100000"; got != want {
		t.Errorf("ValidateServiceSpec = %q, want %q", got, want)
	}
}

// TestOtherSpecLimits checks the limits of the node, cluster and network
// specs: their labels, and their size, which only unknown fields can reach
// within the labels' limits.
func TestOtherSpecLimits(t *testing.T) {
	type spec interface {
		proto.Message
		GetAnnotations() *objectv1.Annotations
	}
	specs := []struct {
		name     string
		valid    func() spec
		validate func(spec) error
	}{
		{"node", func() spec {
			return &objectv1.NodeSpec{Annotations: &objectv1.Annotations{}, Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE}
		}, func(s spec) error { return ValidateNodeSpec(s.(*objectv1.NodeSpec)) }},
		{"cluster", func() spec {
			s := &objectv1.ClusterSpec{Annotations: &objectv1.Annotations{}}
			ApplyClusterDefaults(s)
			return s
		}, func(s spec) error { return ValidateClusterSpec(s.(*objectv1.ClusterSpec)) }},
		{"network", func() spec { return networkSpec("front", "10.1.0.0/16", 0) },
			func(s spec) error { return ValidateNetworkSpec(s.(*objectv1.NetworkSpec)) }},
	}
	limits := []struct {
		name  string
		limit int
		set   func(t *testing.T, s spec, n int)
		want  string
	}{
		{"labels", maxLabels, func(_ *testing.T, s spec, n int) { s.GetAnnotations().Labels = labelsOf(n) },
			"spec.annotations.labels: must have at most 128 entries, got 129"},
		{"label value length", maxLabelValueLen, func(_ *testing.T, s spec, n int) {
			s.GetAnnotations().Labels = map[string]string{"rack": strings.Repeat("v", n)}
		}, `spec.annotations.labels["rack"]: value must be at most 4096 characters, got 4097`},
		{"spec size", maxSpecBytes, func(t *testing.T, s spec, n int) { sizeTo(t, s, n, padUnknown(s)) },
			"spec: must be at most 1048576 bytes serialized, got 1048577"},
	}
	for _, sp := range specs {
		for _, tt := range limits {
			t.Run(sp.name+"/"+tt.name, func(t *testing.T) {
				at := sp.valid()
				tt.set(t, at, tt.limit)
				if err := sp.validate(at); err != nil {
					t.Errorf("at the limit (%d): %v, want nil", tt.limit, err)
				}
				over := sp.valid()
				tt.set(t, over, tt.limit+1)
				if got := oneError(t, sp.validate(over)); got != tt.want {
					t.Errorf("over the limit: %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// TestRefusedOverLimitStoresNothing sends each kind of spec over a limit
// through the API: each call is refused with InvalidArgument naming the
// field, and the state is exactly what it was.
func TestRefusedOverLimitStoresNothing(t *testing.T) {
	s, r := newTestServer(t)
	ctx := t.Context()
	if err := r.Update(ctx, func(tx *state.Tx) error {
		if err := tx.CreateCluster(&objectv1.Cluster{Id: "c1", Spec: &objectv1.ClusterSpec{}}); err != nil {
			return err
		}
		return tx.CreateNode(&objectv1.Node{Id: "n1", Spec: &objectv1.NodeSpec{Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE}})
	}); err != nil {
		t.Fatal(err)
	}
	svc, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: validServiceSpec()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("front", "", 0)}); err != nil {
		t.Fatal(err)
	}
	var nodeVersion, clusterVersion uint64
	r.st.View(func(tx *state.ReadTx) {
		nodeVersion = tx.Node("n1").GetMeta().GetVersion()
		clusterVersion = tx.Cluster().GetMeta().GetVersion()
	})

	tooManyLabels := &objectv1.Annotations{Name: "x", Labels: labelsOf(maxLabels + 1)}
	withSpec := func(mutate func(*objectv1.ServiceSpec)) *objectv1.ServiceSpec {
		spec := validServiceSpec()
		mutate(spec)
		return spec
	}
	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"create service, 100000 env", func() error {
			_, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: withSpec(func(spec *objectv1.ServiceSpec) {
				spec.Annotations.Name = "big"
				spec.Task.Container.Env = slices.Repeat([]string{"A=1"}, 100000)
			})})
			return err
		}, "spec.task.container.env: must have at most 1000 entries, got 100000"},
		{"create service, 1 MiB", func() error {
			_, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: withSpec(func(spec *objectv1.ServiceSpec) {
				spec.Annotations.Name = "big"
				spec.Task.Container.Env = slices.Repeat([]string{"A=" + strings.Repeat("v", maxArgLen-2)}, 9)
			})})
			return err
		}, "spec: must be at most 1048576 bytes serialized, got "},
		{"update service", func() error {
			_, err := s.UpdateService(ctx, &controlv1.UpdateServiceRequest{
				Ref: "web", Version: svc.GetService().GetMeta().GetVersion(),
				Spec: withSpec(func(spec *objectv1.ServiceSpec) { spec.Task.Container.Args = slices.Repeat([]string{"-v"}, maxArgs+1) }),
			})
			return err
		}, "spec.task.container.args: must have at most 1000 entries, got 1001"},
		{"create network", func() error {
			_, err := s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: &objectv1.NetworkSpec{Annotations: tooManyLabels}})
			return err
		}, "spec.annotations.labels: must have at most 128 entries, got 129"},
		{"update node", func() error {
			_, err := s.UpdateNode(ctx, &controlv1.UpdateNodeRequest{Ref: "n1", Version: nodeVersion, Spec: &objectv1.NodeSpec{
				Annotations: tooManyLabels, Availability: objectv1.NodeAvailability_NODE_AVAILABILITY_DRAIN,
			}})
			return err
		}, "spec.annotations.labels: must have at most 128 entries, got 129"},
		{"update cluster", func() error {
			_, err := s.UpdateCluster(ctx, &controlv1.UpdateClusterRequest{Version: clusterVersion, Spec: &objectv1.ClusterSpec{Annotations: tooManyLabels}})
			return err
		}, "spec.annotations.labels: must have at most 128 entries, got 129"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			before := r.st.Snapshot()
			err := c.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), c.want) {
				t.Errorf("error = %v, want InvalidArgument with %q", err, c.want)
			}
			if after := r.st.Snapshot(); !proto.Equal(before, after) {
				t.Errorf("the state changed: index %d, then %d", before.GetIndex(), after.GetIndex())
			}
		})
	}
}
