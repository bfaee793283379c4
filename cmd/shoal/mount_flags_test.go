package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

const (
	bindMount   = objectv1.MountType_MOUNT_TYPE_BIND
	volumeMount = objectv1.MountType_MOUNT_TYPE_VOLUME
	tmpfsMount  = objectv1.MountType_MOUNT_TYPE_TMPFS
)

func TestParseMount(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want *objectv1.Mount
	}{
		{"type=bind,source=/srv/data,target=/data", &objectv1.Mount{Type: bindMount, Source: "/srv/data", Target: "/data"}},
		{"type=bind,src=/srv,dst=/data,readonly", &objectv1.Mount{Type: bindMount, Source: "/srv", Target: "/data", ReadOnly: true}},
		{"type=volume,source=db,target=/var/lib/db,ro=true", &objectv1.Mount{Type: volumeMount, Source: "db", Target: "/var/lib/db", ReadOnly: true}},
		{"source=db,destination=/data,readonly=false", &objectv1.Mount{Type: volumeMount, Source: "db", Target: "/data"}},
		{"type=tmpfs,target=/scratch", &objectv1.Mount{Type: tmpfsMount, Target: "/scratch"}},
		{"type=tmpfs,target=/scratch,tmpfs-size=64m", &objectv1.Mount{Type: tmpfsMount, Target: "/scratch", TmpfsSizeBytes: 64 << 20}},
		{"type=tmpfs,target=/scratch,tmpfs-size=1024,readonly", &objectv1.Mount{Type: tmpfsMount, Target: "/scratch", TmpfsSizeBytes: 1024, ReadOnly: true}},
	} {
		got, err := parseMount(tt.in)
		if err != nil || !proto.Equal(got, tt.want) {
			t.Errorf("parseMount(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		// formatMount writes what parseMount reads.
		if again, err := parseMount(formatMount(got)); err != nil || !proto.Equal(again, got) {
			t.Errorf("parseMount(formatMount(%v)) = %v, %v", got, again, err)
		}
	}
	for _, tt := range []struct{ in, wantErr string }{
		{"type=nfs,source=x,target=/d", "type=nfs: want bind, volume or tmpfs"},
		{"type=bind,target=/d", "source=PATH is required for a bind mount"},
		{"type=volume,target=/d", "source=NAME is required for a volume mount"},
		{"type=tmpfs,source=/x,target=/d", "source=/x: a tmpfs mount has no source"},
		{"type=bind,source=/x", "target=PATH is required"},
		{"type=bind,source=/x,target=/d,readonly=maybe", `readonly=maybe: want true or false, got "maybe"`},
		{"type=tmpfs,target=/d,tmpfs-size=lots", `tmpfs-size: invalid size "lots"`},
		{"type=volume,source=v,target=/d,tmpfs-size=1m", "tmpfs-size: only for type=tmpfs"},
		{"type=bind,source=/x,target=/d,bogus=1", `unknown field "bogus"`},
		{"type=bind,,source=/x,target=/d", "empty field"},
		{"type=bind,=x,source=/x,target=/d", `field "=x" has no key`},
	} {
		if _, err := parseMount(tt.in); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parseMount(%q) = %v, want an error with %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestServiceCreateMounts(t *testing.T) {
	f := newFakeControl()
	host := f.serve(t)
	res := runCLI(host, "service", "create", "--detach",
		"--mount", "type=bind,source=/srv/data,target=/data,readonly",
		"--mount", "type=volume,source=db,target=/var/lib/db",
		"--mount", "type=tmpfs,target=/scratch,tmpfs-size=64m",
		"img")
	if res.code != 0 || len(f.creates) != 1 {
		t.Fatalf("create = exit %d, stderr %q, %d creates", res.code, res.stderr, len(f.creates))
	}
	want := []*objectv1.Mount{
		{Type: bindMount, Source: "/srv/data", Target: "/data", ReadOnly: true},
		{Type: volumeMount, Source: "db", Target: "/var/lib/db"},
		{Type: tmpfsMount, Target: "/scratch", TmpfsSizeBytes: 64 << 20},
	}
	got := f.creates[0].GetSpec().GetTask().GetContainer().GetMounts()
	if len(got) != len(want) {
		t.Fatalf("mounts = %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("mounts[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestServiceMountFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		cmd     string
		args    []string
		wantErr string
	}{
		{"create", []string{"--mount", "type=nfs,source=x,target=/d", "img"}, `"--mount" flag: type=nfs: want bind, volume or tmpfs`},
		{"create", []string{"--mount", "type=tmpfs,target=/d,tmpfs-size=huge", "img"}, `"--mount" flag: tmpfs-size: invalid size "huge"`},
		{"create", []string{"--mount", "type=bind,source=/x", "img"}, `"--mount" flag: target=PATH is required`},
		{"update", []string{"--mount-add", "type=volume,target=/d", "web"}, `"--mount-add" flag: source=NAME is required`},
	} {
		f := newFakeControl()
		seed(f)
		host := f.serve(t)
		res := runCLI(host, append([]string{"service", tt.cmd, "-d"}, tt.args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, tt.wantErr) || len(f.creates)+len(f.updates) != 0 {
			t.Errorf("service %s %v = exit %d, stderr %q; want exit 1 and %q", tt.cmd, tt.args, res.code, res.stderr, tt.wantErr)
		}
	}
}

func TestServiceUpdateMounts(t *testing.T) {
	f := newFakeControl()
	seed(f)
	f.services[webID].Spec.Task.Container.Mounts = []*objectv1.Mount{
		{Source: "/srv/a", Target: "/a"},
		{Type: volumeMount, Source: "b", Target: "/b"},
		{Type: tmpfsMount, Target: "/c"},
	}
	host := f.serve(t)
	res := runCLI(host, "service", "update", "-d",
		"--mount-rm", "/a/", "--mount-add", "type=volume,source=b2,target=/b", "--mount-add", "type=tmpfs,target=/d,ro", "web")
	if res.code != 0 || len(f.updates) != 1 {
		t.Fatalf("update = exit %d, stderr %q, %d updates", res.code, res.stderr, len(f.updates))
	}
	want := []*objectv1.Mount{
		{Type: tmpfsMount, Target: "/c"},
		{Type: volumeMount, Source: "b2", Target: "/b"},
		{Type: tmpfsMount, Target: "/d", ReadOnly: true},
	}
	got := f.updates[0].GetSpec().GetTask().GetContainer().GetMounts()
	if len(got) != len(want) {
		t.Fatalf("mounts = %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("mounts[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
