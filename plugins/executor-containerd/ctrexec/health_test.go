package ctrexec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shoalhq/shoal/internal/testimage"
	"github.com/shoalhq/shoal/kernel/containerd"
	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestResolveHealth(t *testing.T) {
	d := durationpb.New
	img := &dockerHealth{Test: []string{"CMD", "/bin/check"}, Interval: int64(5 * time.Second), Retries: 7}
	for _, tt := range []struct {
		name string
		spec *objectv1.HealthConfig
		img  *dockerHealth
		want *healthConfig
	}{
		{"none anywhere", nil, nil, nil},
		{"image's, defaults for the rest", nil, img,
			&healthConfig{Args: []string{"/bin/check"}, Interval: 5 * time.Second, Timeout: 30 * time.Second, Retries: 7}},
		{"NONE disables the image's", &objectv1.HealthConfig{Test: []string{"NONE"}}, img, nil},
		{"spec's timing over the image's check", &objectv1.HealthConfig{Interval: d(time.Second), Retries: 2}, img,
			&healthConfig{Args: []string{"/bin/check"}, Interval: time.Second, Timeout: 30 * time.Second, Retries: 2}},
		{"CMD-SHELL, docker's defaults", &objectv1.HealthConfig{Test: []string{"CMD-SHELL", "curl -f localhost"}}, nil,
			&healthConfig{Args: []string{"/bin/sh", "-c", "curl -f localhost"}, Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3}},
		{"zero durations are unset", &objectv1.HealthConfig{Test: []string{"CMD", "x"}, Interval: d(0), StartPeriod: d(time.Minute)}, nil,
			&healthConfig{Args: []string{"x"}, Interval: 30 * time.Second, Timeout: 30 * time.Second, Retries: 3, StartPeriod: time.Minute}},
	} {
		got := resolveHealth(tt.spec, tt.img)
		if (got == nil) != (tt.want == nil) || (got != nil && (strings.Join(got.Args, " ") != strings.Join(tt.want.Args, " ") ||
			got.Interval != tt.want.Interval || got.Timeout != tt.want.Timeout || got.Retries != tt.want.Retries || got.StartPeriod != tt.want.StartPeriod)) {
			t.Errorf("%s: resolveHealth = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestDecodeImageHealth(t *testing.T) {
	docker := `{"architecture":"amd64","config":{"Env":["A=1"],"Healthcheck":{"Test":["CMD-SHELL","wget -q localhost"],"Interval":2000000000,"Retries":4}}}`
	h, err := decodeImageHealth([]byte(docker))
	if err != nil || h == nil || h.Test[1] != "wget -q localhost" || h.Interval != int64(2*time.Second) || h.Retries != 4 {
		t.Errorf("docker config: %+v, %v", h, err)
	}
	oci := `{"architecture":"amd64","config":{"Env":["A=1"]}}`
	if h, err := decodeImageHealth([]byte(oci)); err != nil || h != nil {
		t.Errorf("OCI config without a check: %+v, %v; want none", h, err)
	}
}

func TestHealthState(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newHealthState(healthConfig{Retries: 2, StartPeriod: 10 * time.Second}, start)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	fail := errors.New("exec: no such file")
	steps := []struct {
		at   time.Duration
		code int
		err  error
		want objectv1.TaskHealth
	}{
		{1 * time.Second, 1, nil, objectv1.TaskHealth_TASK_HEALTH_STARTING}, // start period: does not count
		{2 * time.Second, 1, nil, objectv1.TaskHealth_TASK_HEALTH_STARTING},
		{3 * time.Second, 1, nil, objectv1.TaskHealth_TASK_HEALTH_STARTING},
		{11 * time.Second, 1, nil, objectv1.TaskHealth_TASK_HEALTH_STARTING}, // counts: 1 of 2
		{12 * time.Second, 0, nil, objectv1.TaskHealth_TASK_HEALTH_HEALTHY},
		{13 * time.Second, 1, nil, objectv1.TaskHealth_TASK_HEALTH_HEALTHY}, // 1 of 2
		{14 * time.Second, -1, fail, objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY},
	}
	for _, st := range steps {
		s.record(at(st.at), st.code, "out", st.err)
		if s.status != st.want {
			t.Fatalf("after a run at %v (code %d, %v): %v, want %v (%s)", st.at, st.code, st.err, s.status, st.want, s.output)
		}
	}
	if !strings.Contains(s.output, "failed 2 of 2 times in a row: exec: no such file") {
		t.Errorf("output = %q, want the failures and the last error", s.output)
	}
}

func TestLimitedBuffer(t *testing.T) {
	b := &limitedBuffer{max: 4}
	b.Write([]byte("abc"))
	if n, _ := b.Write([]byte("def")); n != 3 || b.String() != "abcd" {
		t.Errorf("limitedBuffer = %q (wrote %d), want %q", b.String(), n, "abcd")
	}
	if got := truncateOutput(strings.Repeat("x", executor.MaxHealthOutput+10)); len(got) != executor.MaxHealthOutput {
		t.Errorf("truncateOutput: %d bytes, want %d", len(got), executor.MaxHealthOutput)
	}
}

// healthTask is a test task that sleeps, with a health check.
func healthTask(t *testing.T, h *objectv1.HealthConfig) *objectv1.Task {
	task := newTask(t, "write:/tmp/ready=yes", "sleep:inf")
	task.Spec.Container.Healthcheck = h
	return task
}

// awaitHealth polls Inspect, as the agent does, until the task's health is
// want, and returns the last TaskInfo.
func awaitHealth(t *testing.T, e *Executor, id string, want objectv1.TaskHealth) executor.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := e.Inspect(ctxT(t), id)
		if err != nil {
			t.Fatalf("Inspect(%s) = %v", id, err)
		}
		if info.Health == want {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: health %v (%q) after a minute, want %v", id, info.Health, info.HealthOutput, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHealthCheckInContainer runs checks in real containers: one that
// passes, one that fails, one that times out, one whose command the image
// lacks; a task without a check, or with NONE, has no health.
func TestHealthCheckInContainer(t *testing.T) {
	e := newExecutor(t, "", "")
	fast := func(test ...string) *objectv1.HealthConfig {
		return &objectv1.HealthConfig{Test: test, Interval: durationpb.New(100 * time.Millisecond), Timeout: durationpb.New(5 * time.Second), Retries: 2}
	}
	t.Run("passes", func(t *testing.T) {
		task := healthTask(t, fast("CMD", "/prog", "cat:/tmp/ready"))
		run(t, e, task)
		if info, err := e.Inspect(ctxT(t), task.Id); err != nil || (info.Health != objectv1.TaskHealth_TASK_HEALTH_STARTING && info.Health != objectv1.TaskHealth_TASK_HEALTH_HEALTHY) {
			t.Fatalf("Inspect right after Start = %+v, %v; want starting (or healthy)", info, err)
		}
		info := awaitHealth(t, e, task.Id, objectv1.TaskHealth_TASK_HEALTH_HEALTHY)
		if info.HealthOutput != "yes" {
			t.Errorf("health output = %q, want the check's output %q", info.HealthOutput, "yes")
		}
	})
	t.Run("after a plugin restart", func(t *testing.T) {
		task := healthTask(t, fast("CMD", "/prog", "cat:/tmp/ready"))
		run(t, e, task)
		awaitHealth(t, e, task.Id, objectv1.TaskHealth_TASK_HEALTH_HEALTHY)
		// A new executor (the plugin restarted) finds the check in the
		// container's spec and runs it again from the first Inspect.
		again := newExecutor(t, "", "")
		awaitHealth(t, again, task.Id, objectv1.TaskHealth_TASK_HEALTH_HEALTHY)
		again.health.stop(task.Id)
	})
	t.Run("fails", func(t *testing.T) {
		task := healthTask(t, fast("CMD", "/prog", "err:not ready", "exit:1"))
		run(t, e, task)
		info := awaitHealth(t, e, task.Id, objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY)
		if !strings.Contains(info.HealthOutput, "failed 2 of 2 times in a row: exit code 1: not ready") {
			t.Errorf("health output = %q, want the failures, the exit code and the output", info.HealthOutput)
		}
		if !info.Running {
			t.Errorf("unhealthy task: %+v, want it still running (the kernel stops it)", info)
		}
	})
	t.Run("times out", func(t *testing.T) {
		h := fast("CMD", "/prog", "sleep:inf")
		h.Timeout, h.Retries = durationpb.New(200*time.Millisecond), 1
		task := healthTask(t, h)
		run(t, e, task)
		info := awaitHealth(t, e, task.Id, objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY)
		if !strings.Contains(info.HealthOutput, "health check timed out after 200ms") {
			t.Errorf("health output = %q, want the timeout", info.HealthOutput)
		}
	})
	t.Run("no shell in the image", func(t *testing.T) {
		task := healthTask(t, fast("CMD-SHELL", "exit 0"))
		run(t, e, task)
		info := awaitHealth(t, e, task.Id, objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY)
		if !strings.Contains(info.HealthOutput, "/bin/sh") {
			t.Errorf("health output = %q, want it to name /bin/sh", info.HealthOutput)
		}
	})
	t.Run("none", func(t *testing.T) {
		for _, h := range []*objectv1.HealthConfig{nil, {Test: []string{"NONE"}}} {
			task := healthTask(t, proto.CloneOf(h))
			run(t, e, task)
			info, err := e.Inspect(ctxT(t), task.Id)
			if err != nil || !info.Running || info.Health != objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED {
				t.Errorf("task with healthcheck %v: Inspect = %+v, %v; want running without health", h, info, err)
			}
		}
	})
	t.Run("ends with the task", func(t *testing.T) {
		task := healthTask(t, fast("CMD", "/prog", "cat:/tmp/ready"))
		run(t, e, task)
		awaitHealth(t, e, task.Id, objectv1.TaskHealth_TASK_HEALTH_HEALTHY)
		if err := e.Stop(ctxT(t), task.Id, "", time.Second); err != nil {
			t.Fatal(err)
		}
		if p := e.health.get(task.Id); p != nil {
			t.Errorf("a prober still runs for a stopped task")
		}
		if info, err := e.Inspect(ctxT(t), task.Id); err != nil || info.Health != objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED {
			t.Errorf("stopped task: Inspect = %+v, %v; want no health", info, err)
		}
	})
}

// healthImage is the test image with a HEALTHCHECK in its (docker) config.
const healthImage = "docker.io/shoaltest/prog:health"

// TestImageHealthcheck: a task without a check of its own runs its image's
// HEALTHCHECK, read from the image's config blob; the spec's fields win
// over the image's, and NONE turns it off.
func TestImageHealthcheck(t *testing.T) {
	e := newExecutor(t, "", "")
	im, err := testimage.New(healthImage)
	if err != nil {
		t.Fatal(err)
	}
	im, err = im.WithHealthcheck(testimage.Healthcheck{Test: []string{"CMD", "/prog", "cat:/tmp/ready"}, Interval: 100 * time.Millisecond, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := im.WriteDocker(&buf); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(startContainerd(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := containerd.Import(ctxT(t), c, testNamespace, DefaultConfig().Snapshotter, &buf); err != nil {
		t.Fatalf("import %s: %v", healthImage, err)
	}
	imageTask := func(h *objectv1.HealthConfig, args ...string) *objectv1.Task {
		task := newTask(t, args...)
		task.Spec.Container.Image = healthImage
		task.Spec.Container.Healthcheck = h
		return task
	}

	healthy := imageTask(nil, "write:/tmp/ready=from the image's check", "sleep:inf")
	run(t, e, healthy)
	if info := awaitHealth(t, e, healthy.Id, objectv1.TaskHealth_TASK_HEALTH_HEALTHY); info.HealthOutput != "from the image's check" {
		t.Errorf("health output = %q, want the image's check's", info.HealthOutput)
	}

	// The image's check fails without the file: unhealthy after its one
	// retry.
	failing := imageTask(nil, "sleep:inf")
	run(t, e, failing)
	awaitHealth(t, e, failing.Id, objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY)

	// The spec's retries win: still starting after the image's one retry
	// would have made it unhealthy (the start period holds it, too).
	patient := imageTask(&objectv1.HealthConfig{Retries: 1000, StartPeriod: durationpb.New(time.Hour)}, "sleep:inf")
	run(t, e, patient)
	time.Sleep(500 * time.Millisecond) // several intervals of the image's check: not a timing assert, any wait holds
	if info, err := e.Inspect(ctxT(t), patient.Id); err != nil || info.Health != objectv1.TaskHealth_TASK_HEALTH_STARTING {
		t.Errorf("task with its own retries: Inspect = %+v, %v; want starting", info, err)
	}

	off := imageTask(&objectv1.HealthConfig{Test: []string{"NONE"}}, "sleep:inf")
	run(t, e, off)
	if info, err := e.Inspect(ctxT(t), off.Id); err != nil || info.Health != objectv1.TaskHealth_TASK_HEALTH_UNSPECIFIED {
		t.Errorf("task with NONE: Inspect = %+v, %v; want no health", info, err)
	}
}
