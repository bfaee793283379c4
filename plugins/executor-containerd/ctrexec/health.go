package ctrexec

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/shoalhq/shoal/sdk/executor"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// Health checks run here, in the executor, not in the agent: the check runs
// inside the task's container (containerd's exec, as docker does), the
// image's HEALTHCHECK comes from the image's config, both of which only the
// executor holds, and no call had to be added to the executor contract for
// it (the agent reads the verdict in Inspect's TaskInfo.Health).
//
// Prepare resolves the task's check (the spec's fields, else the image's,
// else docker's defaults) and keeps it in the container's OCI spec as the
// annotation annotationHealth, so a restarted plugin finds it. Start starts
// a prober for it; Inspect starts one for a running task that has none (the
// plugin restarted: the check starts over, STARTING); Wait, Stop and Remove
// end it. A prober runs the check every interval (the first one interval
// after start, as docker), each run bounded by timeout and its output by
// executor.MaxHealthOutput.

// annotationHealth holds a task's resolved health check, as JSON.
const annotationHealth = "io.shoal.health"

// Docker's defaults.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// healthConfig is a resolved health check: the command to run and its
// timing, every field set.
type healthConfig struct {
	Args        []string      `json:"args"`
	Interval    time.Duration `json:"interval"`
	Timeout     time.Duration `json:"timeout"`
	Retries     int           `json:"retries"`
	StartPeriod time.Duration `json:"start_period"`
}

// dockerHealth is a docker image config's Healthcheck (durations in
// nanoseconds). The OCI image spec has no such field, so containerd's
// image config (ocispec.Image) drops it: it is read from the config blob.
type dockerHealth struct {
	Test        []string `json:"Test"`
	Interval    int64    `json:"Interval"`
	Timeout     int64    `json:"Timeout"`
	StartPeriod int64    `json:"StartPeriod"`
	Retries     int      `json:"Retries"`
}

// imageHealth reads the image's HEALTHCHECK, nil when it has none.
func imageHealth(ctx context.Context, img client.Image) (*dockerHealth, error) {
	desc, err := img.Config(ctx)
	if err != nil {
		return nil, err
	}
	blob, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nil, err
	}
	return decodeImageHealth(blob)
}

// decodeImageHealth reads Healthcheck from an image config blob (docker's
// config JSON; an OCI config has none, which is no check).
func decodeImageHealth(blob []byte) (*dockerHealth, error) {
	var cfg struct {
		Config struct {
			Healthcheck *dockerHealth `json:"Healthcheck"`
		} `json:"config"`
	}
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return cfg.Config.Healthcheck, nil
}

// resolveHealth merges the spec's check over the image's, as docker merges
// a service's over its image's: the spec's test, else the image's; each
// unset duration or retries from the image, else docker's default. nil:
// no check (none anywhere, or NONE).
func resolveHealth(spec *objectv1.HealthConfig, img *dockerHealth) *healthConfig {
	if img == nil {
		img = &dockerHealth{}
	}
	test := spec.GetTest()
	if len(test) == 0 {
		test = img.Test
	}
	var args []string
	switch {
	case len(test) == 0 || test[0] == "NONE":
		return nil
	case test[0] == "CMD" && len(test) > 1:
		args = test[1:]
	case test[0] == "CMD-SHELL" && len(test) == 2:
		args = []string{"/bin/sh", "-c", test[1]}
	default:
		return nil // not a check docker would run
	}
	pick := func(d interface{ AsDuration() time.Duration }, set bool, image int64, def time.Duration) time.Duration {
		if set && d.AsDuration() > 0 {
			return d.AsDuration()
		}
		if image > 0 {
			return time.Duration(image)
		}
		return def
	}
	h := &healthConfig{
		Args:        args,
		Interval:    pick(spec.GetInterval(), spec.GetInterval() != nil, img.Interval, defaultHealthInterval),
		Timeout:     pick(spec.GetTimeout(), spec.GetTimeout() != nil, img.Timeout, defaultHealthTimeout),
		StartPeriod: pick(spec.GetStartPeriod(), spec.GetStartPeriod() != nil, img.StartPeriod, 0),
		Retries:     int(spec.GetRetries()),
	}
	if h.Retries <= 0 {
		h.Retries = img.Retries
	}
	if h.Retries <= 0 {
		h.Retries = defaultHealthRetries
	}
	return h
}

// healthSpecOpt records the task's resolved check in its container's spec,
// or nothing when it has none.
func healthSpecOpt(ctx context.Context, img client.Image, t *objectv1.Task) (oci.SpecOpts, error) {
	spec := t.GetSpec().GetContainer().GetHealthcheck()
	var ih *dockerHealth
	if len(spec.GetTest()) == 0 || spec.GetInterval() == nil || spec.GetTimeout() == nil || spec.GetRetries() == 0 || spec.GetStartPeriod() == nil {
		var err error
		if ih, err = imageHealth(ctx, img); err != nil {
			return nil, fmt.Errorf("image %s: health check: %w", img.Name(), kind(err))
		}
	}
	h := resolveHealth(spec, ih)
	if h == nil {
		return nil, nil
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	return oci.WithAnnotations(map[string]string{annotationHealth: string(b)}), nil
}

// healthOf returns the task's resolved check from its container's spec,
// nil when it has none.
func healthOf(ctx context.Context, ctr client.Container) (*healthConfig, error) {
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return nil, err
	}
	raw, ok := spec.Annotations[annotationHealth]
	if !ok {
		return nil, nil
	}
	var h healthConfig
	if err := json.Unmarshal([]byte(raw), &h); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", annotationHealth, err)
	}
	return &h, nil
}

// healthState is a check's verdict so far, as docker keeps it.
type healthState struct {
	cfg       healthConfig
	startedAt time.Time
	status    objectv1.TaskHealth
	failures  int    // failed runs in a row that count
	output    string // the last run's output and how it ended
}

func newHealthState(cfg healthConfig, startedAt time.Time) *healthState {
	return &healthState{cfg: cfg, startedAt: startedAt, status: objectv1.TaskHealth_TASK_HEALTH_STARTING}
}

// record takes one run's result: exit code 0 passes; any other, or err (a
// timeout, a command that could not start), fails. A failure within the
// start period while no run has passed does not count.
func (s *healthState) record(now time.Time, code int, out string, err error) {
	if err == nil && code == 0 {
		s.status, s.failures, s.output = objectv1.TaskHealth_TASK_HEALTH_HEALTHY, 0, out
		return
	}
	why := fmt.Sprintf("exit code %d", code)
	if err != nil {
		why = err.Error()
	}
	if s.status == objectv1.TaskHealth_TASK_HEALTH_STARTING && now.Sub(s.startedAt) < s.cfg.StartPeriod {
		s.output = fmt.Sprintf("health check failed in the start period: %s: %s", why, out)
		return
	}
	s.failures++
	s.output = fmt.Sprintf("health check failed %d of %d times in a row: %s: %s", s.failures, s.cfg.Retries, why, out)
	if s.failures >= s.cfg.Retries {
		s.status = objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY
	}
}

// runFunc runs a check's command in a task's container once, within
// timeout, and returns its exit code and output.
type runFunc func(ctx context.Context, taskID string, args []string, timeout time.Duration) (int, string, error)

// prober checks one task's health until stopped.
type prober struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state *healthState
}

func (p *prober) verdict() (objectv1.TaskHealth, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.status, truncateOutput(strings.TrimRight(p.state.output, "\n "))
}

// run probes every interval until ctx ends; an UNHEALTHY verdict is final
// (the kernel stops the task).
func (p *prober) run(ctx context.Context, taskID string, cfg healthConfig, runCheck runFunc) {
	defer close(p.done)
	timer := time.NewTimer(cfg.Interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		code, out, err := runCheck(ctx, taskID, cfg.Args, cfg.Timeout)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.state.record(time.Now(), code, out, err)
		final := p.state.status == objectv1.TaskHealth_TASK_HEALTH_UNHEALTHY
		p.mu.Unlock()
		if final {
			return
		}
		timer.Reset(cfg.Interval)
	}
}

// probers holds the running probers by task ID.
type probers struct {
	mu sync.Mutex
	m  map[string]*prober
}

// start starts a prober for a task unless one runs.
func (ps *probers) start(taskID string, cfg healthConfig, runCheck runFunc) *prober {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.m[taskID]; p != nil {
		return p
	}
	if ps.m == nil {
		ps.m = map[string]*prober{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{cancel: cancel, done: make(chan struct{}), state: newHealthState(cfg, time.Now())}
	ps.m[taskID] = p
	go p.run(ctx, taskID, cfg, runCheck)
	return p
}

func (ps *probers) get(taskID string) *prober {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.m[taskID]
}

// stop ends a task's prober, if it has one, and waits for its last run.
func (ps *probers) stop(taskID string) {
	ps.mu.Lock()
	p := ps.m[taskID]
	delete(ps.m, taskID)
	ps.mu.Unlock()
	if p != nil {
		p.cancel()
		<-p.done
	}
}

// startHealth starts the task's prober when it has a check.
func (e *Executor) startHealth(ctx context.Context, ctr client.Container) *prober {
	if p := e.health.get(ctr.ID()); p != nil {
		return p
	}
	h, err := healthOf(ctx, ctr)
	if err != nil {
		e.log.Warn("reading a task's health check", "task_id", ctr.ID(), "err", err)
		return nil
	}
	if h == nil {
		return nil
	}
	return e.health.start(ctr.ID(), *h, e.runCheck)
}

// inspectHealth fills in a task's health for Inspect: a running task with
// a check gets a prober if it has none (the plugin restarted).
func (e *Executor) inspectHealth(ctx context.Context, ctr client.Container, info *executor.TaskInfo) {
	if !info.Running {
		e.health.stop(info.TaskID)
		return
	}
	if p := e.startHealth(ctx, ctr); p != nil {
		info.Health, info.HealthOutput = p.verdict()
	}
}

// errHealthTimeout is a check that ran past its timeout.
var errHealthTimeout = errors.New("health check timed out")

// runCheck runs args in the task's container as a process of its own, with
// the container's environment, user and working directory, and kills it
// at timeout.
func (e *Executor) runCheck(ctx context.Context, taskID string, args []string, timeout time.Duration) (int, string, error) {
	nctx, c, err := e.conn(ctx)
	if err != nil {
		return -1, "", err
	}
	ctr, err := e.load(nctx, c, taskID)
	if err != nil {
		return -1, "", err
	}
	spec, err := ctr.Spec(nctx)
	if err != nil {
		return -1, "", kind(err)
	}
	tk, err := ctr.Task(nctx, nil)
	if err != nil {
		return -1, "", kind(err)
	}
	pspec := *spec.Process
	pspec.Args = args
	pspec.Terminal = false
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	execID := "shoal-health-" + hex.EncodeToString(suffix[:])
	out := &limitedBuffer{max: executor.MaxHealthOutput}
	proc, err := tk.Exec(nctx, execID, &pspec, cio.NewCreator(cio.WithStreams(nil, out, out)))
	if err != nil {
		return -1, "", fmt.Errorf("exec: %w", kind(err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(nctx), 10*time.Second)
		defer cancel()
		_, _ = proc.Delete(dctx, client.WithProcessKill)
	}()
	exited, err := proc.Wait(nctx)
	if err != nil {
		return -1, "", fmt.Errorf("exec: %w", kind(err))
	}
	if err := proc.Start(nctx); err != nil {
		return -1, "", fmt.Errorf("exec %s: %w", args[0], kind(err))
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case st := <-exited:
		proc.IO().Wait()
		return int(st.ExitCode()), out.String(), nil
	case <-timer.C:
		_ = proc.Kill(nctx, syscall.SIGKILL)
		<-exited
		return -1, out.String(), fmt.Errorf("%w after %s", errHealthTimeout, timeout)
	case <-ctx.Done():
		return -1, "", ctx.Err()
	}
}

// limitedBuffer keeps the first max bytes written to it, as docker keeps a
// check's output.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// truncateOutput bounds a verdict's text to executor.MaxHealthOutput.
func truncateOutput(s string) string {
	if len(s) <= executor.MaxHealthOutput {
		return s
	}
	return s[:executor.MaxHealthOutput-3] + "..."
}
