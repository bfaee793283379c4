package stack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// writeFiles writes name -> content files into a new temporary directory
// and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func labels(kv ...string) map[string]string {
	m := map[string]string{LabelNamespace: "app"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestLoadFullExample(t *testing.T) {
	dir, err := filepath.Abs("testdata/full")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Load(context.Background(), Options{Files: []string{"testdata/full/compose.yml"}, Name: "app"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	sec := durationpb.New
	web := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "app_web", Labels: labels("tier", "front")},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{
				Image: "registry.local:5000/web:1",
				Args:  []string{"--listen", ":8080"},
				Env:   []string{"DB_HOST=db", "DB_PASSWORD_FILE=/run/secrets/db_password"},
				Mounts: []*objectv1.Mount{
					{Source: filepath.Join(dir, "static"), Target: "/srv/static", ReadOnly: true, Type: objectv1.MountType_MOUNT_TYPE_BIND},
					{Target: "/tmp", Type: objectv1.MountType_MOUNT_TYPE_TMPFS, TmpfsSizeBytes: 64 << 20},
				},
				Healthcheck: &objectv1.HealthConfig{
					Test:        []string{"CMD", "wget", "-q", "-O-", "http://localhost:8080/health"},
					Interval:    sec(10 * time.Second),
					Timeout:     sec(2 * time.Second),
					Retries:     3,
					StartPeriod: sec(5 * time.Second),
				},
				Secrets: []*objectv1.FileReference{{Name: "app_db_password", Target: "/run/secrets/db_password"}},
				Configs: []*objectv1.FileReference{{Name: "app_web_conf", Target: "/etc/web/web.conf", Mode: 0o440}},
			},
			Resources: &objectv1.ResourceRequirements{
				Limits: &objectv1.Resources{NanoCpus: 500_000_000, MemoryBytes: 256 << 20},
			},
			Placement: &objectv1.Placement{Constraints: []string{"node.role==worker"}},
			Networks: []*objectv1.NetworkAttachmentConfig{
				{Target: "app_back", Aliases: []string{"web"}},
				{Target: "app_front", Aliases: []string{"web"}},
			},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 2}},
		Update: &objectv1.UpdateConfig{
			Parallelism:   1,
			Delay:         sec(10 * time.Second),
			FailureAction: objectv1.FailureAction_FAILURE_ACTION_ROLLBACK,
			Order:         objectv1.UpdateOrder_UPDATE_ORDER_START_FIRST,
		},
		Endpoint: &objectv1.EndpointSpec{Ports: []*objectv1.PortConfig{
			{Protocol: "tcp", TargetPort: 8080, PublishedPort: 80, Mode: objectv1.PublishMode_PUBLISH_MODE_INGRESS},
			{Protocol: "udp", TargetPort: 9090, PublishedPort: 9090, Mode: objectv1.PublishMode_PUBLISH_MODE_HOST},
		}},
	}
	db := &objectv1.ServiceSpec{
		Annotations: &objectv1.Annotations{Name: "app_db", Labels: labels()},
		Task: &objectv1.TaskSpec{
			Container: &objectv1.ContainerSpec{
				Image: "postgres:16",
				Env:   []string{"POSTGRES_PASSWORD_FILE=/run/secrets/db_password"},
				Mounts: []*objectv1.Mount{
					{Source: "app_dbdata", Target: "/var/lib/postgresql/data", Type: objectv1.MountType_MOUNT_TYPE_VOLUME},
				},
				StopGracePeriod: sec(30 * time.Second),
				Healthcheck: &objectv1.HealthConfig{
					Test:     []string{"CMD-SHELL", "pg_isready -U postgres"},
					Interval: sec(5 * time.Second),
				},
				Secrets: []*objectv1.FileReference{{Name: "app_db_password", Target: "/run/secrets/db_password", Uid: "999", Gid: "999", Mode: 0o400}},
			},
			Restart: &objectv1.RestartPolicy{
				Condition:   objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE,
				MaxAttempts: 3,
			},
			Placement: &objectv1.Placement{MaxReplicasPerNode: 1},
			Networks: []*objectv1.NetworkAttachmentConfig{
				{Target: "app_back", Aliases: []string{"db", "database"}},
			},
		},
		Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
	}
	for i, want := range []*objectv1.ServiceSpec{db, web} {
		if i >= len(plan.Services) {
			t.Fatalf("Load: %d services, want 2", len(plan.Services))
		}
		if got := plan.Services[i]; !proto.Equal(got, want) {
			t.Errorf("Load: service %d = %v, want %v", i, got, want)
		}
	}
	wantNets := []*objectv1.NetworkSpec{
		{Annotations: &objectv1.Annotations{Name: "app_back", Labels: labels()}, Subnet: "10.210.0.0/16"},
		{Annotations: &objectv1.Annotations{Name: "app_front", Labels: labels()}},
	}
	if len(plan.Networks) != len(wantNets) {
		t.Fatalf("Load: networks = %v, want %v", plan.Networks, wantNets)
	}
	for i := range wantNets {
		if !proto.Equal(plan.Networks[i], wantNets[i]) {
			t.Errorf("Load: network %d = %v, want %v", i, plan.Networks[i], wantNets[i])
		}
	}
	wantSecret := &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: "app_db_password", Labels: labels()}, Data: []byte("s3cret\n")}
	if len(plan.Secrets) != 1 || !proto.Equal(plan.Secrets[0].Spec, wantSecret) || plan.Secrets[0].Source != "file:"+filepath.Join(dir, "db_password.txt") {
		t.Errorf("Load: secrets = %v, want %v from file", plan.Secrets, wantSecret)
	}
	wantConfig := &objectv1.ConfigSpec{Annotations: &objectv1.Annotations{Name: "app_web_conf", Labels: labels()}, Data: []byte("listen 8080\n")}
	if len(plan.Configs) != 1 || !proto.Equal(plan.Configs[0].Spec, wantConfig) {
		t.Errorf("Load: configs = %v, want %v", plan.Configs, wantConfig)
	}
	if strings.Join(plan.Volumes, ",") != "app_dbdata" {
		t.Errorf("Load: volumes = %v, want [app_dbdata]", plan.Volumes)
	}
	if len(plan.Warnings) != 0 {
		t.Errorf("Load: warnings = %q, want none", plan.Warnings)
	}

	// a redeploy of the same files gives the same bytes
	again, err := Load(context.Background(), Options{Files: []string{"testdata/full/compose.yml"}, Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range plan.Services {
		a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(plan.Services[i])
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again.Services[i])
		if string(a) != string(b) {
			t.Errorf("Load twice: service %d differs", i)
		}
	}
}
