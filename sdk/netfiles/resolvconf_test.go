package netfiles

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

func TestParseHostConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want HostConfig
	}{
		{"empty", "", HostConfig{Timeout: 5 * time.Second, Attempts: 2}},
		{"typical", "# generated\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch Example.com. corp.example.com\noptions ndots:2 timeout:3 attempts:4 rotate\n",
			HostConfig{
				Servers:  []string{"192.0.2.53:53", "[2001:db8::53]:53"},
				Search:   []string{"example.com", "corp.example.com"},
				Options:  []string{"ndots:2", "timeout:3", "attempts:4", "rotate"},
				Timeout:  3 * time.Second,
				Attempts: 4,
			}},
		{"systemd-resolved", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
			HostConfig{Servers: []string{"127.0.0.53:53"}, Options: []string{"edns0", "trust-ad"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"at most 3 nameservers, bad ones ignored", "nameserver 10.0.0.1\nnameserver dns.example.com\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n",
			HostConfig{Servers: []string{"10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"the last of domain and search wins; comments", "search a.example\ndomain b.example ; old\n",
			HostConfig{Search: []string{"b.example"}, Timeout: 5 * time.Second, Attempts: 2}},
		{"timeout and attempts bounded", "options timeout:300 attempts:0 attempts:99 timeout:x\n",
			HostConfig{Options: []string{"timeout:300", "attempts:0", "attempts:99", "timeout:x"}, Timeout: 30 * time.Second, Attempts: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHostConfig(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if hc, err := ReadHostConfig(path); err != nil || len(hc.Servers) != 1 {
		t.Errorf("ReadHostConfig: %+v, %v", hc, err)
	}
	if _, err := ReadHostConfig(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("ReadHostConfig of a missing file succeeded")
	}
}

func TestResolvConf(t *testing.T) {
	gw := netip.MustParseAddr("10.0.1.1")
	for _, tc := range []struct {
		name string
		ns   netip.Addr
		host HostConfig
		want string
		err  bool
	}{
		{"host's search and options", gw, HostConfig{Servers: []string{"192.0.2.53:53"}, Search: []string{"example.com", "corp.example.com"}, Options: []string{"ndots:2", "timeout:3"}},
			"nameserver 10.0.1.1\nsearch example.com corp.example.com\noptions ndots:2 timeout:3\n", false},
		{"bare host", gw, HostConfig{}, "nameserver 10.0.1.1\n", false},
		{"IPv4-mapped gateway", netip.MustParseAddr("::ffff:10.0.1.1"), HostConfig{}, "nameserver 10.0.1.1\n", false},
		{"no nameserver", netip.Addr{}, HostConfig{}, "", true},
		{"a search domain that would break the file", gw, HostConfig{Search: []string{"a.example\nnameserver 6.6.6.6"}}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolvConf(tc.ns, tc.host)
			if tc.err {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("err %v, want an invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body := stripComments(string(got))
			if body != tc.want {
				t.Errorf("got\n%s\nwant\n%s", body, tc.want)
			}
			// The C library's view of it, as a task's resolver reads it.
			hc, err := ParseHostConfig(strings.NewReader(string(got)))
			if err != nil || len(hc.Servers) != 1 || hc.Servers[0] != "10.0.1.1:53" {
				t.Errorf("parsed back: %+v, %v", hc, err)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	const localhost = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	for _, tc := range []struct {
		name  string
		addr  netip.Addr
		names []string
		want  string
		err   bool
	}{
		{"task", netip.MustParseAddr("10.0.1.10"), []string{"3f2a9c", "web.1.t1", "web.1", "Web.1"}, localhost + "10.0.1.10\t3f2a9c web.1.t1 web.1\n", false},
		{"IPv6", netip.MustParseAddr("fd00::7"), []string{"v6.1"}, localhost + "fd00::7\tv6.1\n", false},
		{"no address", netip.Addr{}, []string{"web.1"}, localhost, false},
		{"no names", netip.MustParseAddr("10.0.1.10"), nil, localhost, false},
		{"a name with a space", netip.MustParseAddr("10.0.1.10"), []string{"web 1"}, "", true},
		{"an empty name", netip.MustParseAddr("10.0.1.10"), []string{""}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Hosts(tc.addr, tc.names...)
			if tc.err {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("err %v, want an invalid argument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(line, "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}
