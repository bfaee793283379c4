package dns

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// This file answers a query: from the index, or by forwarding
// (forward.go), and writes the reply.

// ServeDNS answers one query: the first question only.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { s.serveDNS(s.fwdCtx, w, r) }

// handler answers the queries of one listener, whose forwards end with
// ctx: when the listener is removed.
type handler struct {
	s   *Server
	ctx context.Context
}

func (h handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { h.s.serveDNS(h.ctx, w, r) }

func (s *Server) serveDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	resp := s.answer(ctx, w, r)
	if resp == nil {
		return
	}
	s.write(w, r, resp)
}

func (s *Server) answer(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	if len(r.Question) == 0 {
		return resp.SetRcodeFormatError(r)
	}
	resp.SetReply(r)
	resp.RecursionAvailable = true
	q := r.Question[0]
	if len(q.Name) > 255 {
		return resp.SetRcodeFormatError(r)
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return resp.SetRcode(r, dns.RcodeRefused)
	}
	client := remoteAddr(w)
	name := lower(q.Name)

	var buf [16]netip.Addr
	addrs, res := s.ix.lookup(client, name, buf[:0])
	if res == unknown {
		// A resolver appending the host's search domain to one of ours:
		// redis.example.com is redis when example.com is a search domain
		// and redis is on the client's networks.
		for _, d := range s.host.Load().Search {
			if short, ok := strings.CutSuffix(name, "."+d); ok {
				if a, sr := s.ix.lookup(client, short, buf[:0]); sr == found {
					addrs, res = a, found
					break
				}
			}
		}
	}
	switch {
	case res == found:
		resp.Authoritative = true
		rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		if fit := maxUDPSize / 16; len(addrs) > fit && isUDP(w) {
			// No more than this fits (an A record takes 16 bytes,
			// compressed): do not build records to drop them.
			addrs = addrs[:fit]
			resp.Truncated = true
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
			switch {
			case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
				hdr.Rrtype = dns.TypeA
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
				hdr.Rrtype = dns.TypeAAAA
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		return resp
	case res == elsewhere || name != "" && !strings.Contains(name, "."):
		// Another network's name, or a single label: never asked of the
		// host's resolvers.
		resp.Authoritative = true
		return resp.SetRcode(r, dns.RcodeNameError)
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		return resp.SetRcode(r, dns.RcodeRefused)
	}
	if f := s.forward(ctx, r, q); f != nil {
		return f
	}
	return resp.SetRcode(r, dns.RcodeServerFailure)
}

// write sends resp, with an OPT record when the query had one, truncated to
// what the client takes over UDP (512 bytes, or its EDNS size up to
// maxUDPSize) so that it asks again over TCP.
func (s *Server) write(w dns.ResponseWriter, r, resp *dns.Msg) {
	size := dns.MaxMsgSize
	udp := isUDP(w)
	if udp {
		size = dns.MinMsgSize
	}
	if opt := r.IsEdns0(); opt != nil {
		resp.SetEdns0(maxUDPSize, false)
		if udp {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
	}
	resp.Truncate(size)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("write answer", "error", err)
	}
}

func isUDP(w dns.ResponseWriter) bool {
	_, ok := w.LocalAddr().(*net.UDPAddr)
	return ok
}

func remoteAddr(w dns.ResponseWriter) netip.Addr {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
