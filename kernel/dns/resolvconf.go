package dns

import (
	"io"
	"net/netip"

	"github.com/shoalhq/shoal/sdk/netfiles"
)

// The host's resolver configuration and a task's resolv.conf and hosts are
// rendered by sdk/netfiles, which executors (separate programs that import
// only the sdk) use too; these are its names here.

// HostConfig is the node's own resolver configuration (netfiles.HostConfig).
type HostConfig = netfiles.HostConfig

// DefaultResolvConf is where the host's resolver configuration is read.
const DefaultResolvConf = netfiles.DefaultResolvConf

// ReadHostConfig reads and parses a resolv.conf (netfiles.ReadHostConfig).
func ReadHostConfig(path string) (HostConfig, error) { return netfiles.ReadHostConfig(path) }

// ParseHostConfig parses a resolv.conf as the C library does
// (netfiles.ParseHostConfig).
func ParseHostConfig(r io.Reader) (HostConfig, error) { return netfiles.ParseHostConfig(r) }

// ResolvConf renders a task's /etc/resolv.conf (netfiles.ResolvConf).
func ResolvConf(nameserver netip.Addr, host HostConfig) ([]byte, error) {
	return netfiles.ResolvConf(nameserver, host)
}

// Hosts renders a task's /etc/hosts (netfiles.Hosts).
func Hosts(addr netip.Addr, names ...string) ([]byte, error) { return netfiles.Hosts(addr, names...) }
