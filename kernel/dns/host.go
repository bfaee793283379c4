package dns

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// This file keeps the host's resolver configuration, which names the
// nameservers queries are forwarded to, and follows its changes.

// Host returns the host's resolver configuration in use: what a task's
// resolv.conf copies (ResolvConf).
func (s *Server) Host() HostConfig { return *s.host.Load() }

// setHost makes hc, without our own addresses, the host's configuration
// in use.
func (s *Server) setHost(hc HostConfig) {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	s.rawHost = hc
	s.filterHost(true)
}

// filterHost stores rawHost without self; s.hostMu is held. When only
// self changed, nothing is stored (or logged) unless the nameservers in
// use change.
func (s *Server) filterHost(newHost bool) {
	hc := s.rawHost
	var servers []string
	for _, a := range hc.Servers {
		if !s.self[a] {
			servers = append(servers, a)
		}
	}
	if old := s.host.Load(); !newHost && (old == nil || slices.Equal(old.Servers, servers)) {
		return
	}
	for _, a := range hc.Servers {
		if s.self[a] {
			s.log.Warn("the host's resolv.conf names this DNS server: not forwarding to it", "nameserver", a)
		}
	}
	hc.Servers = servers
	if len(servers) == 0 {
		s.log.Warn("the host has no nameserver: names that are not the cluster's get SERVFAIL", "resolv_conf", s.cfg.ResolvConf)
	}
	s.host.Store(&hc)
}

// watchHost reloads ResolvConf when its size or time changes.
func (s *Server) watchHost(ctx context.Context) {
	stamp := func() string {
		st, err := os.Stat(s.cfg.ResolvConf)
		if err != nil {
			return ""
		}
		return fmt.Sprint(st.Size(), st.ModTime().UnixNano())
	}
	last := stamp()
	t := time.NewTicker(hostConfigPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := stamp()
		if cur == last || cur == "" {
			continue
		}
		last = cur
		hc, err := ReadHostConfig(s.cfg.ResolvConf)
		if err != nil {
			s.log.Warn("the host's resolver configuration changed but cannot be read: keeping the old one", "error", err)
			continue
		}
		s.setHost(hc)
		s.log.Info("the host's resolver configuration changed", "nameservers", hc.Servers, "search", hc.Search)
	}
}
