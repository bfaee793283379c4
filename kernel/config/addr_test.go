package config

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func fakeIPs(ips ...string) func() ([]net.IP, error) {
	return func() ([]net.IP, error) {
		out := make([]net.IP, len(ips))
		for i, s := range ips {
			out[i] = net.ParseIP(s)
		}
		return out, nil
	}
}

func TestAdvertiseAddr(t *testing.T) {
	machine := fakeIPs("::1", "fe80::1", "127.0.0.2", "169.254.10.1", "2001:db8::5", "10.0.0.5", "192.168.1.9")
	tests := []struct {
		listen, advertise string
		ips               func() ([]net.IP, error)
		want              string
		wantErr           string
	}{
		// advertise wins
		{"0.0.0.0:4242", "10.1.1.1:5000", machine, "10.1.1.1:5000", ""},
		{"0.0.0.0:4242", "10.1.1.1", machine, "10.1.1.1:4242", ""},
		{"0.0.0.0:4242", "mgr1.example", machine, "mgr1.example:4242", ""},
		{"0.0.0.0:4242", "mgr1.example:7000", machine, "mgr1.example:7000", ""},
		{"[::]:4242", "fd00::1", machine, "[fd00::1]:4242", ""},
		{"[::]:4242", "[fd00::1]", machine, "[fd00::1]:4242", ""},
		{"[::]:4242", "[fd00::1]:99", machine, "[fd00::1]:99", ""},
		{"127.0.0.1:0", "10.1.1.1:4242", machine, "10.1.1.1:4242", ""},
		// a specific listen host is advertised as is
		{"10.9.9.9:4242", "", machine, "10.9.9.9:4242", ""},
		{"127.0.0.1:4242", "", machine, "127.0.0.1:4242", ""},
		{"[fd00::2]:4243", "", machine, "[fd00::2]:4243", ""},
		{"node1.example:4242", "", machine, "node1.example:4242", ""},
		// unspecified: the first routable IPv4 of the machine
		{"0.0.0.0:4242", "", machine, "10.0.0.5:4242", ""},
		{":4243", "", machine, "10.0.0.5:4243", ""},
		{"[::]:4242", "", machine, "10.0.0.5:4242", ""},
		// no routable IPv4: loopback
		{"0.0.0.0:4242", "", fakeIPs("::1", "fe80::1", "169.254.1.1"), "127.0.0.1:4242", ""},
		{"0.0.0.0:4242", "", fakeIPs(), "127.0.0.1:4242", ""},
		// errors
		{"0.0.0.0:4242", "", func() ([]net.IP, error) { return nil, errors.New("no netlink") }, "", "no netlink"},
		{"0.0.0.0:0", "", machine, "", "port 0"},
		{"4242", "", machine, "", "listen address"},
		{"0.0.0.0:4242", "0.0.0.0", machine, "", "not unspecified"},
		{"0.0.0.0:4242", "[::]:4242", machine, "", "not unspecified"},
		{"0.0.0.0:4242", "10.1.1.1:0", machine, "", "port 0"},
		{"0.0.0.0:4242", "a:b:c", machine, "", "advertise address"},
		{"0.0.0.0:4242", "[nope]", machine, "", "not an IPv6 address"},
	}
	for _, tt := range tests {
		got, err := advertiseAddr(tt.listen, tt.advertise, tt.ips)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("advertiseAddr(%q, %q) = %q, %v; want error containing %q", tt.listen, tt.advertise, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("advertiseAddr(%q, %q) = %q, %v; want %q", tt.listen, tt.advertise, got, err, tt.want)
		}
	}
}

// TestAdvertiseAddrMachine runs the real interface lookup: whatever the
// machine has, the result is a dialable host:port on the listen port.
func TestAdvertiseAddrMachine(t *testing.T) {
	got, err := AdvertiseAddr("0.0.0.0:4242", "")
	if err != nil {
		t.Fatalf("AdvertiseAddr(0.0.0.0:4242, \"\") = %v", err)
	}
	host, port, err := net.SplitHostPort(got)
	if err != nil || port != "4242" {
		t.Fatalf("AdvertiseAddr(0.0.0.0:4242, \"\") = %q, want host:4242", got)
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil || ip.IsUnspecified() {
		t.Errorf("AdvertiseAddr(0.0.0.0:4242, \"\") host = %q, want an IPv4 address", host)
	}
}

func TestManagerAdvertise(t *testing.T) {
	tests := []struct {
		m              Manager
		wantAPI, wantR string
	}{
		{Manager{ListenAddr: "10.0.0.1:4242", RaftListenAddr: "10.0.0.1:4243"}, "10.0.0.1:4242", "10.0.0.1:4243"},
		// advertise_addr's host carries over to Raft, on the Raft port
		{Manager{ListenAddr: "0.0.0.0:4242", RaftListenAddr: "0.0.0.0:4243", AdvertiseAddr: "10.0.0.7"}, "10.0.0.7:4242", "10.0.0.7:4243"},
		{Manager{ListenAddr: "0.0.0.0:4242", RaftListenAddr: "0.0.0.0:4243", AdvertiseAddr: "10.0.0.7:5000"}, "10.0.0.7:5000", "10.0.0.7:4243"},
		{Manager{ListenAddr: "[::]:4242", RaftListenAddr: "[::]:4243", AdvertiseAddr: "fd00::7"}, "[fd00::7]:4242", "[fd00::7]:4243"},
		// raft_advertise_addr wins
		{Manager{ListenAddr: "0.0.0.0:4242", RaftListenAddr: "0.0.0.0:4243", AdvertiseAddr: "10.0.0.7", RaftAdvertiseAddr: "192.168.0.7:9000"}, "10.0.0.7:4242", "192.168.0.7:9000"},
	}
	for _, tt := range tests {
		api, err := tt.m.AdvertiseAPI()
		if err != nil || api != tt.wantAPI {
			t.Errorf("%+v.AdvertiseAPI() = %q, %v; want %q", tt.m, api, err, tt.wantAPI)
		}
		r, err := tt.m.AdvertiseRaft()
		if err != nil || r != tt.wantR {
			t.Errorf("%+v.AdvertiseRaft() = %q, %v; want %q", tt.m, r, err, tt.wantR)
		}
	}
}

func TestValidHost(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"10.0.0.1", true},
		{"fd00::1", true},
		{"localhost", true},
		{"mgr-1.example.com", true},
		{"mgr-1.example.com.", true},
		{"under_score", true},
		{"", false},
		{"-bad", false},
		{"bad-", false},
		{"a..b", false},
		{"a b", false},
		{"a/b", false},
		{strings.Repeat("a", 64), false},
		{strings.Repeat("a.", 127) + "a", false},
	}
	for _, tt := range tests {
		if got := validHost(tt.in); got != tt.want {
			t.Errorf("validHost(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestAdvertiseHost(t *testing.T) {
	machine := fakeIPs("::1", "169.254.10.1", "10.0.0.5", "192.168.1.9")
	tests := []struct {
		listen, advertise string
		ips               func() ([]net.IP, error)
		want, wantErr     string
	}{
		{"0.0.0.0:7946", "192.168.1.12", machine, "192.168.1.12", ""},
		{"0.0.0.0:0", "192.168.1.12", machine, "192.168.1.12", ""},
		{"10.9.9.9:7946", "", machine, "10.9.9.9", ""},
		{"127.0.0.1:0", "", machine, "127.0.0.1", ""},
		{"0.0.0.0:7946", "", machine, "10.0.0.5", ""},
		{":0", "", machine, "10.0.0.5", ""},
		{"0.0.0.0:7946", "", fakeIPs("::1"), "127.0.0.1", ""},
		{"0.0.0.0:7946", "0.0.0.0", machine, "", "must be an IP address"},
		{"0.0.0.0:7946", "node1.example", machine, "", "must be an IP address"},
		{"7946", "", machine, "", "listen address"},
		{"0.0.0.0:7946", "", func() ([]net.IP, error) { return nil, errors.New("no netlink") }, "", "no netlink"},
	}
	for _, tt := range tests {
		got, err := advertiseHost(tt.listen, tt.advertise, tt.ips)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("advertiseHost(%q, %q) = %q, %v; want an error containing %q", tt.listen, tt.advertise, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("advertiseHost(%q, %q) = %q, %v; want %q", tt.listen, tt.advertise, got, err, tt.want)
		}
	}
}
