package main

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "512", want: 512},
		{in: "512b", want: 512},
		{in: "1k", want: 1024},
		{in: "256MiB", want: 256 << 20},
		{in: "256mb", want: 256 << 20},
		{in: "512m", want: 512 << 20},
		{in: "1G", want: 1 << 30},
		{in: "1.5g", want: 3 << 29},
		{in: "2 GiB", want: 2 << 30},
		{in: "1T", want: 1 << 40},
		{in: "12XB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "", wantErr: true},
		{in: "G", wantErr: true},
		{in: "1.2.3m", wantErr: true},
		{in: "99999999P", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseMemory(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{512, "512B"},
		{1024, "1KiB"},
		{256 << 20, "256MiB"},
		{3 << 29, "1.5GiB"},
	}
	for _, tt := range tests {
		if got := formatMemory(tt.in); got != tt.want {
			t.Errorf("formatMemory(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "0.5", want: 500_000_000},
		{in: "2", want: 2_000_000_000},
		{in: "0.000000001", want: 1},
		{in: ".25", want: 250_000_000},
		{in: "0.0000000001", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "1/2", wantErr: true},
		{in: "1e3", wantErr: true},
		{in: "half", wantErr: true},
		{in: "99999999999", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseCPUs(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseCPUs(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    *objectv1.PortConfig
		wantErr bool
	}{
		{in: "8080:80", want: &objectv1.PortConfig{PublishedPort: 8080, TargetPort: 80}},
		{in: "53:53/udp", want: &objectv1.PortConfig{PublishedPort: 53, TargetPort: 53, Protocol: "udp"}},
		{in: "80", want: &objectv1.PortConfig{TargetPort: 80}},
		{in: "published=1,target=2,protocol=sctp,mode=host", want: &objectv1.PortConfig{
			PublishedPort: 1, TargetPort: 2, Protocol: "sctp", Mode: objectv1.PublishMode_PUBLISH_MODE_HOST}},
		{in: "target=80", want: &objectv1.PortConfig{TargetPort: 80}},
		{in: "8080:", wantErr: true},
		{in: "x:80", wantErr: true},
		{in: "70000:80", wantErr: true},
		{in: "80/", wantErr: true},
		{in: "target=80,mode=ingress", want: &objectv1.PortConfig{TargetPort: 80, Mode: objectv1.PublishMode_PUBLISH_MODE_INGRESS}},
		{in: "target=80,mode=mesh", wantErr: true},
		{in: "target=80,published", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parsePort(tt.in)
		if (err != nil) != tt.wantErr || !proto.Equal(got, tt.want) {
			t.Errorf("parsePort(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "  a  b\tc ", want: []string{"a", "b", "c"}},
		{in: `sh -c "echo \"hi\" there"`, want: []string{"sh", "-c", `echo "hi" there`}},
		{in: `'a b' "" c\ d`, want: []string{"a b", "", "c d"}},
		{in: `'it\s'`, want: []string{`it\s`}},
		{in: `"open`, wantErr: true},
		{in: `a\`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{500 * time.Millisecond, "less than a second"},
		{time.Second, "1 second"},
		{45 * time.Second, "45 seconds"},
		{90 * time.Second, "about a minute"},
		{10 * time.Minute, "10 minutes"},
		{70 * time.Minute, "about an hour"},
		{5 * time.Hour, "5 hours"},
		{72 * time.Hour, "3 days"},
		{21 * 24 * time.Hour, "3 weeks"},
		{90 * 24 * time.Hour, "3 months"},
		{3 * 365 * 24 * time.Hour, "3 years"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.in); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEnumName(t *testing.T) {
	tests := []struct{ full, prefix, want string }{
		{"TASK_STATE_RUNNING", "TASK_STATE_", "running"},
		{"NODE_STATE_READY", "NODE_STATE_", "ready"},
		{"RESTART_CONDITION_ON_FAILURE", "RESTART_CONDITION_", "on-failure"},
	}
	for _, tt := range tests {
		if got := enumName(tt.full, tt.prefix); got != tt.want {
			t.Errorf("enumName(%q, %q) = %q, want %q", tt.full, tt.prefix, got, tt.want)
		}
	}
}

func TestShellJoinRoundTrip(t *testing.T) {
	tests := [][]string{
		{"nginx", "-g", "daemon off;"},
		{"sh", "-c", `echo "it's" $HOME`},
		{"", "a\tb", `back\slash`},
	}
	for _, args := range tests {
		line := shellJoin(args)
		got, err := splitArgs(line)
		if err != nil || !slices.Equal(got, args) {
			t.Errorf("splitArgs(shellJoin(%q)) = splitArgs(%s) = %q, %v; want %q", args, line, got, err, args)
		}
	}
}
