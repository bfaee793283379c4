package dns

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// This file forwards the queries the index does not answer to the
// host's nameservers.

// forward asks the host's resolvers as the C library does, each in turn,
// Attempts rounds, within ForwardTimeout for all the tries: each try gets
// an equal part of it. An answer other than SERVFAIL, REFUSED or NOTIMP
// ends the tries, and so does ctx. It returns nil when no answer came.
func (s *Server) forward(ctx context.Context, r *dns.Msg, q dns.Question) *dns.Msg {
	select {
	case s.fwdSem <- struct{}{}:
		defer func() { <-s.fwdSem }()
	default:
		s.log.Debug("too many forwarded queries in flight: SERVFAIL", "name", q.Name)
		return nil
	}
	host := s.host.Load()
	if len(host.Servers) == 0 {
		return nil
	}
	budget := s.cfg.ForwardTimeout
	if budget == 0 {
		budget = host.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	tries := max(1, host.Attempts) * len(host.Servers)
	per := budget / time.Duration(tries)

	m := new(dns.Msg)
	m.SetQuestion(q.Name, q.Qtype)
	m.Question[0].Qclass = q.Qclass
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	m.SetEdns0(maxForwardSize, do)

	var last *dns.Msg
asking:
	for i := 0; i < tries && ctx.Err() == nil; i++ {
		srv := host.Servers[i%len(host.Servers)]
		resp, err := exchange(ctx, per, m, srv)
		if err != nil {
			s.log.Debug("forward failed", "name", q.Name, "nameserver", srv, "error", err)
			continue
		}
		last = resp
		switch resp.Rcode {
		case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented:
			continue
		}
		break asking
	}
	if last == nil {
		return nil
	}
	last.Id = r.Id
	last.Question = []dns.Question{q}
	last.Extra = stripOPT(last.Extra)
	return last
}

// exchange sends m to srv over UDP, and again over TCP when the answer is
// truncated, within per and ctx.
func exchange(ctx context.Context, per time.Duration, m *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, per)
	defer cancel()
	m.Id = dns.Id()
	resp, err := exchangeOver(ctx, "udp", m, srv)
	if err == nil && resp.Truncated {
		m.Id = dns.Id()
		resp, err = exchangeOver(ctx, "tcp", m, srv)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) ||
		resp.Question[0].Qtype != m.Question[0].Qtype {
		return nil, errors.New("answer to another question")
	}
	return resp, nil
}

func exchangeOver(ctx context.Context, network string, m *dns.Msg, srv string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: maxForwardSize}
	if dl, ok := ctx.Deadline(); ok {
		// miekg/dns cuts each read at its own 2 s default otherwise,
		// whatever the try's share of the forward timeout.
		c.Timeout = time.Until(dl)
	}
	co, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// Cancelling ctx (Run stopping) interrupts the read at once.
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, co)
	return resp, err
}

func stripOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}
