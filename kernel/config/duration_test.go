package config

import (
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		text string // MarshalText of the result
	}{
		{"500ms", 500 * time.Millisecond, "500ms"},
		{"5s", 5 * time.Second, "5s"},
		{"5m", 5 * time.Minute, "5m"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"2160h", 2160 * time.Hour, "2160h"},
		{"1h0m30s", time.Hour + 30*time.Second, "1h0m30s"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
		{"0s", 0, "0s"},
		{"-10ms", -10 * time.Millisecond, "-10ms"},
		{"10us", 10 * time.Microsecond, "10µs"},
	}
	for _, tt := range tests {
		var d Duration
		if err := d.UnmarshalText([]byte(tt.in)); err != nil || d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tt.in, d.Duration, err, tt.want)
			continue
		}
		text, err := d.MarshalText()
		if err != nil || string(text) != tt.text {
			t.Errorf("MarshalText(%v) = %q, %v; want %q", d.Duration, text, err, tt.text)
		}
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back != d {
			t.Errorf("UnmarshalText(MarshalText(%v)) = %v, %v; want %v", d.Duration, back.Duration, err, d.Duration)
		}
	}
}

func TestDurationInvalid(t *testing.T) {
	for _, in := range []string{"", "5", "5x", "five seconds", "1e3s", "9999999999h"} {
		var d Duration
		err := d.UnmarshalText([]byte(in))
		if err == nil {
			t.Errorf("UnmarshalText(%q) = %v, nil; want an error", in, d.Duration)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{time.Second, "1s"},
		{90 * time.Second, "1m30s"},
		{time.Minute, "1m"},
		{time.Hour, "1h"},
		{time.Hour + time.Minute, "1h1m"},
		{time.Hour + time.Second, "1h0m1s"},
		{-time.Hour, "-1h"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
