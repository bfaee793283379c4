package stack

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestLoadInterpolation(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"compose.yml": `
services:
  web:
    image: "web:${TAG}"
    environment:
      - GREETING=${GREETING:-hello}
      - FROM_DOTENV=${ONLY_IN_DOTENV}
    deploy:
      replicas: ${REPLICAS}
`,
		".env": "TAG=from-dotenv\nONLY_IN_DOTENV=dot\nREPLICAS=3\n",
	})
	plan, err := Load(context.Background(), Options{
		Files: []string{filepath.Join(dir, "compose.yml")},
		Name:  "app",
		Env:   map[string]string{"TAG": "2.1"},
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ctr := plan.Services[0].GetTask().GetContainer()
	if ctr.GetImage() != "web:2.1" {
		t.Errorf("image = %q, want web:2.1 (Env overrides .env)", ctr.GetImage())
	}
	if want := []string{"FROM_DOTENV=dot", "GREETING=hello"}; !slices.Equal(ctr.GetEnv(), want) {
		t.Errorf("env = %q, want %q", ctr.GetEnv(), want)
	}
	if got := plan.Services[0].GetReplicated().GetReplicas(); got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}
}

func TestLoadMergesFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yml": `
services:
  web:
    image: web:1
    ports: ["80:8080"]
    deploy:
      replicas: 1
  worker:
    image: worker:1
`,
		"b.yml": `
services:
  web:
    image: web:2
    deploy:
      replicas: 4
    networks: [front]
networks:
  front: {}
`,
	})
	plan, err := Load(context.Background(), Options{
		Files: []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml")},
		Name:  "app",
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var names []string
	for _, s := range plan.Services {
		names = append(names, s.GetAnnotations().GetName())
	}
	if want := []string{"app_web", "app_worker"}; !slices.Equal(names, want) {
		t.Fatalf("services = %q, want %q", names, want)
	}
	web := plan.Services[0]
	if web.GetTask().GetContainer().GetImage() != "web:2" || web.GetReplicated().GetReplicas() != 4 || len(web.GetEndpoint().GetPorts()) != 1 {
		t.Errorf("web = %v, want image web:2, 4 replicas and a.yml's port", web)
	}
	// worker declares no network: it joins NAME_default, made for it
	if got := plan.Services[1].GetTask().GetNetworks(); len(got) != 1 || got[0].GetTarget() != "app_default" {
		t.Errorf("worker networks = %v, want app_default", got)
	}
	var nets []string
	for _, n := range plan.Networks {
		nets = append(nets, n.GetAnnotations().GetName())
	}
	if want := []string{"app_default", "app_front"}; !slices.Equal(nets, want) {
		t.Errorf("networks = %q, want %q", nets, want)
	}
}

func TestLoadWarnings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		service string // the web service's keys, indented by 4
		top     string
		want    string
	}{
		{"build", "build: .", "", `compose.yml: service "web": build is not supported (shoal runs images: build and push them first), ignored`},
		{"privileged", "privileged: true", "", `compose.yml: service "web": privileged is not supported, ignored`},
		{"cap_add", "cap_add: [NET_ADMIN]", "", `compose.yml: service "web": cap_add is not supported, ignored`},
		{"devices", "devices: [/dev/fuse]", "", `compose.yml: service "web": devices is not supported, ignored`},
		{"depends_on", "depends_on: [db]", "", `compose.yml: service "web": depends_on is not supported (services start in any order; use health checks), ignored`},
		{"labels", "labels: {a: b}", "", `compose.yml: service "web": labels is not supported (tasks have no container labels; deploy.labels are the service's labels), ignored`},
		{"container_name", "container_name: xy", "", `compose.yml: service "web": container_name is not supported (tasks are named by shoal), ignored`},
		{"deploy key", "deploy: {resources: {limits: {pids: 5}}}", "", `compose.yml: service "web": deploy.resources.limits.pids is not supported, ignored`},
		{"port host_ip", `ports: [{target: 80, published: "80", host_ip: 127.0.0.1}]`, "", `compose.yml: service "web": ports.[].host_ip is not supported, ignored`},
		{"healthcheck start_interval", "healthcheck: {test: [CMD, x], start_interval: 1s}", "", `compose.yml: service "web": healthcheck.start_interval is not supported, ignored`},
		{"network driver", "networks: [n]", "networks:\n  n: {driver: bridge}\n", `network "n": driver "bridge" is not supported (shoal networks are overlays), ignored`},
		{"network attachable", "networks: [n]", "networks:\n  n: {attachable: true}\n", `compose.yml: network "n": attachable is not supported, ignored`},
		{"profiles", "profiles: [debug]", "", `compose.yml: service "web": profiles is not supported (every service of the files is deployed), ignored`},
		{"volume driver", `volumes: ["data:/v"]`, "volumes:\n  data: {driver: nfs}\n", `volume "data": driver "nfs" is not supported (volumes are local to each node), ignored`},
		{"unset variable", "environment: [FOO]", "", `service "web": environment: FOO has no value and is not set in the environment, left out`},
		{"top-level name", "", "name: other\n", `compose.yml: name is not supported (the stack is named by the deploy command), ignored`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			content := "services:\n  db:\n    image: db\n  web:\n    image: web\n"
			if tc.service != "" {
				content += "    " + tc.service + "\n"
			}
			content += tc.top
			dir := writeFiles(t, map[string]string{"compose.yml": content})
			plan, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yml")}, Name: "app"})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var found bool
			for _, w := range plan.Warnings {
				if strings.HasSuffix(w, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("Load(%q): warnings = %q, want %q", tc.service, plan.Warnings, tc.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	big := strings.Repeat("x", 600<<10)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{"unknown key", map[string]string{"compose.yml": "services:\n  web:\n    imagee: web\n"},
			[]string{"compose.yml", `service "web": imagee: not a key`}},
		{"wrong type", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    deploy:\n      replicas: many\n"},
			[]string{"compose.yml", "web", "replicas"}},
		{"negative replicas", map[string]string{"compose.yml": "services:\n  db:\n    image: db\n    deploy:\n      replicas: -1\n"},
			[]string{"compose.yml", "db", "deploy.replicas", "0"}},
		{"undeclared secret", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    secrets: [nope]\n"},
			[]string{`"web"`, "nope"}},
		{"600 KiB secret", map[string]string{
			"compose.yml": "services:\n  web:\n    image: web\n    secrets: [big]\nsecrets:\n  big:\n    file: ./big.txt\n",
			"big.txt":     big,
		}, []string{"compose.yml", `service "web": secrets[0]`, `secret "big"`, "big.txt", "500 KiB"}},
		{"bad port", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    ports: [\"80:99999\"]\n"},
			[]string{"compose.yml", `service "web": ports[0]`, "99999"}},
		{"bad published port", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    ports: [{target: 80, published: \"0\"}]\n"},
			[]string{`service "web": ports[0].published`}},
		{"no published port", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    ports: [\"80\"]\n"},
			[]string{`service "web": ports[0].published: required`}},
		{"no image", map[string]string{"compose.yml": "services:\n  web:\n    build: .\n"},
			[]string{`service "web"`, "image"}},
		{"bad mode", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    deploy: {mode: sometimes}\n"},
			[]string{"web", "mode"}},
		{"global replicas", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    deploy: {mode: global, replicas: 2}\n"},
			[]string{`service "web": deploy.replicas: not allowed in mode global`}},
		{"bad subnet", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    networks: [n]\nnetworks:\n  n:\n    ipam: {config: [{subnet: fd00::/64}]}\n"},
			[]string{`network "n"`, "subnet"}},
		{"secret env unset", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    secrets: [s]\nsecrets:\n  s: {environment: NOT_SET_ANYWHERE}\n"},
			[]string{`secret "s"`, "NOT_SET_ANYWHERE"}},
		{"anonymous volume", map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    volumes: [/data]\n"},
			[]string{`service "web": volumes[0].source`}},
		{"not yaml", map[string]string{"compose.yml": "services: [\n"}, []string{"compose.yml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			_, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yml")}, Name: "app"})
			if err == nil {
				t.Fatalf("Load: no error, want one with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load: error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadSecretsAndConfigs(t *testing.T) {
	dir := writeFiles(t, map[string]string{"compose.yml": `
services:
  web:
    image: web
    secrets: [token, ext_secret]
    configs: [inline, ext_config]
    networks: [ext_net]
secrets:
  token: {environment: TOKEN}
  ext_secret: {external: true, name: shared_token}
configs:
  inline: {content: "hello"}
  ext_config: {external: true}
networks:
  ext_net: {external: true, name: ingress2}
`})
	plan, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yml")}, Name: "app", Env: map[string]string{"TOKEN": "t0k"}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(plan.Secrets) != 1 || string(plan.Secrets[0].Spec.GetData()) != "t0k" || plan.Secrets[0].Source != "environment:TOKEN" {
		t.Errorf("secrets = %v, want app_token from TOKEN", plan.Secrets)
	}
	if len(plan.Configs) != 1 || string(plan.Configs[0].Spec.GetData()) != "hello" || plan.Configs[0].Spec.GetAnnotations().GetName() != "app_inline" {
		t.Errorf("configs = %v, want app_inline", plan.Configs)
	}
	if !slices.Equal(plan.ExternalSecrets, []string{"shared_token"}) || !slices.Equal(plan.ExternalConfigs, []string{"ext_config"}) || !slices.Equal(plan.ExternalNetworks, []string{"ingress2"}) {
		t.Errorf("external = %q %q %q, want shared_token, ext_config, ingress2", plan.ExternalSecrets, plan.ExternalConfigs, plan.ExternalNetworks)
	}
	ctr := plan.Services[0].GetTask().GetContainer()
	wantSecrets := []*objectv1.FileReference{
		{Name: "shared_token", Target: "/run/secrets/ext_secret"},
		{Name: "app_token", Target: "/run/secrets/token"},
	}
	for i, w := range wantSecrets {
		if i >= len(ctr.GetSecrets()) || !proto.Equal(ctr.GetSecrets()[i], w) {
			t.Errorf("secrets refs = %v, want %v", ctr.GetSecrets(), wantSecrets)
			break
		}
	}
	if got := plan.Services[0].GetTask().GetNetworks(); len(got) != 1 || got[0].GetTarget() != "ingress2" {
		t.Errorf("networks = %v, want ingress2", got)
	}
	if len(plan.Networks) != 0 {
		t.Errorf("stack networks = %v, want none", plan.Networks)
	}
}

// Keys the user chooses may hold dots; they are not taken for paths of
// unsupported keys.
func TestLoadNoFalseWarnings(t *testing.T) {
	dir := writeFiles(t, map[string]string{"compose.yml": `
services:
  web.v2:
    image: web
    environment:
      com.example.env: "1"
    deploy:
      labels:
        com.example.tier: front
    networks: [n]
    restart: on-failure:3
networks:
  n:
    driver: overlay
    labels:
      com.example.net: "x"
x-common: {a: b}
`})
	plan, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yml")}, Name: "app"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(plan.Warnings) != 0 {
		t.Errorf("Load: warnings = %q, want none", plan.Warnings)
	}
	svc := plan.Services[0]
	if svc.GetAnnotations().GetName() != "app_web.v2" || svc.GetAnnotations().GetLabels()["com.example.tier"] != "front" {
		t.Errorf("service annotations = %v, want app_web.v2 with com.example.tier", svc.GetAnnotations())
	}
	want := &objectv1.RestartPolicy{Condition: objectv1.RestartCondition_RESTART_CONDITION_ON_FAILURE, MaxAttempts: 3}
	if !proto.Equal(svc.GetTask().GetRestart(), want) {
		t.Errorf("restart = %v, want %v", svc.GetTask().GetRestart(), want)
	}
}

func TestLoadModes(t *testing.T) {
	for _, tc := range []struct {
		deploy string
		want   *objectv1.ServiceSpec
	}{
		{"{}", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}}}},
		{"{replicas: 0}", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{}}}},
		{"{mode: global}", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_Global{Global: &objectv1.GlobalService{}}}},
		{"{mode: global-job}", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_GlobalJob{GlobalJob: &objectv1.GlobalJob{}}}},
		{"{mode: replicated-job, replicas: 3}", &objectv1.ServiceSpec{Mode: &objectv1.ServiceSpec_ReplicatedJob{ReplicatedJob: &objectv1.ReplicatedJob{MaxConcurrent: 3, TotalCompletions: 3}}}},
		{"{endpoint_mode: dnsrr}", &objectv1.ServiceSpec{
			Mode:     &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
			Endpoint: &objectv1.EndpointSpec{Mode: objectv1.EndpointMode_ENDPOINT_MODE_DNSRR},
		}},
		{"{rollback_config: {parallelism: 0, monitor: 20s, max_failure_ratio: 0.5, failure_action: continue, order: stop-first}}", &objectv1.ServiceSpec{
			Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
			Rollback: &objectv1.UpdateConfig{
				Delay:           durationpb.New(0),
				Monitor:         durationpb.New(20 * time.Second),
				MaxFailureRatio: 0.5,
				FailureAction:   objectv1.FailureAction_FAILURE_ACTION_CONTINUE,
				Order:           objectv1.UpdateOrder_UPDATE_ORDER_STOP_FIRST,
			},
		}},
		{"{resources: {reservations: {cpus: '2', memory: 1G}}, placement: {preferences: [{spread: node.labels.rack}]}}", &objectv1.ServiceSpec{
			Mode: &objectv1.ServiceSpec_Replicated{Replicated: &objectv1.ReplicatedService{Replicas: 1}},
			Task: &objectv1.TaskSpec{
				Resources: &objectv1.ResourceRequirements{Reservations: &objectv1.Resources{NanoCpus: 2e9, MemoryBytes: 1 << 30}},
				Placement: &objectv1.Placement{Preferences: []*objectv1.PlacementPreference{{Spread: "node.labels.rack"}}},
			},
		}},
	} {
		dir := writeFiles(t, map[string]string{"compose.yml": "services:\n  web:\n    image: web\n    deploy: " + tc.deploy + "\n"})
		plan, err := Load(context.Background(), Options{Files: []string{filepath.Join(dir, "compose.yml")}, Name: "app"})
		if err != nil {
			t.Errorf("Load(deploy: %s): %v", tc.deploy, err)
			continue
		}
		got := proto.Clone(plan.Services[0]).(*objectv1.ServiceSpec)
		// compare only what deploy sets
		got.Annotations = nil
		task := got.GetTask()
		task.Container, task.Networks = nil, nil
		if proto.Equal(task, &objectv1.TaskSpec{}) {
			got.Task = nil
		}
		if !proto.Equal(got, tc.want) {
			t.Errorf("Load(deploy: %s) = %v, want %v", tc.deploy, got, tc.want)
		}
	}
}
