package controlapi

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestValidateHealthcheck(t *testing.T) {
	const f = "spec.task.container.healthcheck"
	valid := func() *objectv1.HealthConfig {
		return &objectv1.HealthConfig{
			Test:        []string{"CMD-SHELL", "curl -f http://localhost/ || exit 1"},
			Interval:    dur(30 * time.Second),
			Timeout:     dur(30 * time.Second),
			Retries:     3,
			StartPeriod: dur(0),
		}
	}
	tests := []struct {
		name   string
		mutate func(h *objectv1.HealthConfig)
		want   []string
	}{
		{"valid", func(*objectv1.HealthConfig) {}, nil},
		{"image's check, own timing", func(h *objectv1.HealthConfig) { h.Test = nil }, nil},
		{"CMD", func(h *objectv1.HealthConfig) { h.Test = []string{"CMD", "/bin/check", "-q"} }, nil},
		{"NONE", func(h *objectv1.HealthConfig) { h.Test = []string{"NONE"} }, nil},
		{"unset durations", func(h *objectv1.HealthConfig) { h.Interval, h.Timeout, h.StartPeriod = nil, nil, nil }, nil},
		{"minimum durations", func(h *objectv1.HealthConfig) {
			h.Interval, h.Timeout, h.StartPeriod = dur(time.Millisecond), dur(time.Millisecond), dur(time.Millisecond)
		}, nil},
		{"NONE with a command", func(h *objectv1.HealthConfig) { h.Test = []string{"NONE", "true"} }, []string{f + ".test"}},
		{"unknown kind", func(h *objectv1.HealthConfig) { h.Test = []string{"true"} }, []string{f + ".test[0]"}},
		{"CMD without command", func(h *objectv1.HealthConfig) { h.Test = []string{"CMD"} }, []string{f + ".test"}},
		{"CMD-SHELL empty", func(h *objectv1.HealthConfig) { h.Test = []string{"CMD-SHELL", " "} }, []string{f + ".test"}},
		{"CMD-SHELL two words", func(h *objectv1.HealthConfig) { h.Test = []string{"CMD-SHELL", "a", "b"} }, []string{f + ".test"}},
		{"command too long", func(h *objectv1.HealthConfig) { h.Test = []string{"CMD-SHELL", strings.Repeat("x", maxHealthTestLen)} }, []string{f + ".test"}},
		{"too many words", func(h *objectv1.HealthConfig) {
			h.Test = append([]string{"CMD"}, slices.Repeat([]string{"x"}, maxHealthTestWords)...)
		}, []string{f + ".test"}},
		{"NUL byte", func(h *objectv1.HealthConfig) { h.Test = []string{"CMD", "a\x00b"} }, []string{f + ".test[1]"}},
		{"interval negative", func(h *objectv1.HealthConfig) { h.Interval = dur(-time.Second) }, []string{f + ".interval"}},
		{"interval below 1ms", func(h *objectv1.HealthConfig) { h.Interval = dur(time.Microsecond) }, []string{f + ".interval"}},
		{"interval above a day", func(h *objectv1.HealthConfig) { h.Interval = dur(25 * time.Hour) }, []string{f + ".interval"}},
		{"timeout negative", func(h *objectv1.HealthConfig) { h.Timeout = dur(-time.Second) }, []string{f + ".timeout"}},
		{"timeout below 1ms", func(h *objectv1.HealthConfig) { h.Timeout = dur(time.Nanosecond) }, []string{f + ".timeout"}},
		{"start period negative", func(h *objectv1.HealthConfig) { h.StartPeriod = dur(-time.Second) }, []string{f + ".start_period"}},
		{"start period invalid", func(h *objectv1.HealthConfig) { h.StartPeriod = &durationpb.Duration{Seconds: 1, Nanos: -1} }, []string{f + ".start_period"}},
		{"retries negative", func(h *objectv1.HealthConfig) { h.Retries = -1 }, []string{f + ".retries"}},
		{"retries too many", func(h *objectv1.HealthConfig) { h.Retries = maxHealthRetries + 1 }, []string{f + ".retries"}},
		{"retries zero (default)", func(h *objectv1.HealthConfig) { h.Retries = 0 }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validServiceSpec()
			h := valid()
			tt.mutate(h)
			s.Task.Container.Healthcheck = h
			got := fields(t, ValidateServiceSpec(s))
			if !slices.Equal(got, tt.want) {
				t.Errorf("fields = %v, want %v (error: %v)", got, tt.want, ValidateServiceSpec(s))
			}
		})
	}
}
