package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// healthFlags are docker's health check flags of service create and update.
// Only the given ones change the spec's healthcheck; the rest stay unset
// (create) or as they were (update), and the node fills in the image's
// values, then docker's defaults (interval 30s, timeout 30s, retries 3,
// start period 0). Bad values (negative durations, say) go to the server,
// which refuses them naming the field.
type healthFlags struct {
	cmd         string
	interval    time.Duration
	timeout     time.Duration
	retries     int32
	startPeriod time.Duration
	none        bool
}

// healthFlagNames are the flags that --no-healthcheck conflicts with.
var healthFlagNames = []string{"health-cmd", "health-interval", "health-timeout", "health-retries", "health-start-period"}

func (h *healthFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&h.cmd, "health-cmd", "", `command that checks the task's health, run with /bin/sh -c in its container ("" on update: the image's)`)
	fs.DurationVar(&h.interval, "health-interval", 0, "time between health checks (default 30s)")
	fs.DurationVar(&h.timeout, "health-timeout", 0, "longest a health check may run (default 30s)")
	fs.Int32Var(&h.retries, "health-retries", 0, "consecutive failed checks that make the task unhealthy (default 3)")
	fs.DurationVar(&h.startPeriod, "health-start-period", 0, "time after start during which failed checks do not count (default 0s)")
	fs.BoolVar(&h.none, "no-healthcheck", false, "run no health check, not even the image's")
}

func (h *healthFlags) apply(set func(string) bool, spec *objectv1.ServiceSpec) error {
	given := false
	for _, n := range healthFlagNames {
		given = given || set(n)
	}
	if !given && !set("no-healthcheck") {
		return nil
	}
	if set("no-healthcheck") && h.none {
		if given {
			return fmt.Errorf("--no-healthcheck: conflicts with --health-* options")
		}
		containerOf(spec).Healthcheck = &objectv1.HealthConfig{Test: []string{"NONE"}}
		return nil
	}
	c := containerOf(spec)
	hc := c.Healthcheck
	if hc == nil {
		hc = &objectv1.HealthConfig{}
	}
	if set("no-healthcheck") && len(hc.Test) == 1 && hc.Test[0] == "NONE" {
		hc.Test = nil // --no-healthcheck=false: the image's check again
	}
	if set("health-cmd") {
		hc.Test = nil
		if h.cmd != "" {
			hc.Test = []string{"CMD-SHELL", h.cmd}
		}
	}
	if set("health-interval") {
		hc.Interval = durationpb.New(h.interval)
	}
	if set("health-timeout") {
		hc.Timeout = durationpb.New(h.timeout)
	}
	if set("health-retries") {
		hc.Retries = h.retries
	}
	if set("health-start-period") {
		hc.StartPeriod = durationpb.New(h.startPeriod)
	}
	if len(hc.Test) == 0 && hc.Interval == nil && hc.Timeout == nil && hc.Retries == 0 && hc.StartPeriod == nil {
		hc = nil
	}
	c.Healthcheck = hc
	return nil
}
