package lb

import (
	"fmt"
	"strings"
)

// String renders the ruleset in nft's syntax.
func (rs *ruleset) String() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table ip %s {", rs.table)
	rs.renderMaps(w)
	rs.renderChains(w)
	w("}")
	return b.String()
}

// writef writes one line of a rendering.
type writef func(format string, args ...any)

// renderMaps writes the table's maps: the services chain's three verdict
// maps, then each target's backends.
func (rs *ruleset) renderMaps(w writef) {
	w("\tmap %s {", vipsMap)
	w("\t\ttype ipv4_addr . inet_proto . inet_service : verdict")
	for _, e := range rs.vips {
		w("\t\telement %s . %s . %d : goto %s", e.addr, e.proto, e.port, e.chain)
	}
	w("\t}")
	w("\tmap %s {", vipsAnyMap)
	w("\t\ttype ipv4_addr . inet_proto : verdict")
	for _, e := range rs.anyPorts {
		w("\t\telement %s . %s : goto %s", e.addr, e.proto, e.chain)
	}
	w("\t}")
	w("\tmap %s {", publishedMap)
	w("\t\ttype inet_proto . inet_service : verdict")
	for _, e := range rs.published {
		w("\t\telement %s . %d : goto %s", e.proto, e.port, e.chain)
	}
	w("\t}")
	for _, t := range rs.targets {
		if len(t.addrs) == 0 {
			continue
		}
		w("\tmap %s {", t.backends)
		if t.anyPort {
			w("\t\ttype integer : ipv4_addr")
		} else {
			w("\t\ttype integer : ipv4_addr . inet_service")
		}
		for i, a := range t.addrs {
			if t.anyPort {
				w("\t\telement %d : %s", i, a.Addr())
			} else {
				w("\t\telement %d : %s . %d", i, a.Addr(), a.Port())
			}
		}
		w("\t}")
	}
}

// renderChains writes the table's chains: the hooks, the services chain,
// each target's and mesh's chain, and the masquerade.
func (rs *ruleset) renderChains(w writef) {
	w("\tchain %s {", preroutingCh)
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;")
	w("\t\tjump %s", servicesChain)
	w("\t}")
	w("\tchain %s {", outputCh)
	w("\t\ttype nat hook output priority -100; policy accept;")
	w("\t\tjump %s", servicesChain)
	w("\t}")
	w("\tchain %s {", servicesChain)
	w("\t\tip daddr . meta l4proto . th dport vmap @%s", vipsMap)
	w("\t\tip daddr . meta l4proto vmap @%s", vipsAnyMap)
	if rs.localhost {
		w("\t\tfib daddr type local meta l4proto . th dport vmap @%s", publishedMap)
	} else {
		w("\t\tip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @%s", publishedMap)
	}
	w("\t}")
	for _, t := range rs.targets {
		w("\tchain %s {", t.chain)
		if len(t.addrs) == 0 {
			if t.anyPort {
				w("\t\tmeta l4proto tcp reject with tcp reset")
			}
			w("\t\treject")
		} else {
			w("\t\tip saddr 127.0.0.0/8 meta mark set meta mark | %#x", rs.mark)
			w("\t\tdnat ip to numgen random mod %d map @%s", len(t.addrs), t.backends)
		}
		w("\t}")
	}
	for _, m := range rs.meshes {
		w("\tchain %s {", m.chain)
		w("\t\tmeta mark set meta mark | %#x goto %s", rs.mark, m.target)
		w("\t}")
	}
	w("\tchain %s {", hairpinCh)
	w("\t\ttype filter hook prerouting priority %d; policy accept;", hairpinPrio)
	w("\t\tct state new ct status dnat fib daddr . iif oif != 0 meta mark set meta mark | %#x", rs.mark)
	w("\t}")
	w("\tchain %s {", postroutingCh)
	w("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	w("\t\tmeta mark & %#x == 0 return", rs.mark)
	w("\t\tmeta mark set meta mark & %#x masquerade", ^rs.mark)
	w("\t}")
	if rs.localhost {
		w("\tchain %s {", localnetCh)
		w("\t\ttype filter hook input priority filter; policy accept;")
		w("\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop")
		w("\t}")
	}
}
