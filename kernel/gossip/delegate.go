package gossip

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the Gossip as memberlist's Delegate: a separate type so that
// memberlist's callbacks are not methods of Gossip.
type delegate Gossip

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta is empty: a node's slices travel in its record (the head
// entry), not in memberlist's node metadata, which is limited to 512 bytes
// and would cap the networks a node can be on at about ten.
func (d *delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg receives a broadcast entry.
func (d *delegate) NotifyMsg(b []byte) {
	g := (*Gossip)(d)
	_, es, err := decode(b)
	if err != nil {
		g.log.Debug("dropped a gossip message", "err", err)
		return
	}
	g.receive(es, true)
}

// GetBroadcasts hands memberlist the queued entries that fit a packet.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.get(overhead, limit)
}

// LocalState is the full state for a push/pull (join, and every 30 s with a
// random member).
func (d *delegate) LocalState(join bool) []byte {
	g := (*Gossip)(d)
	b, err := encode(msgState, g.store.state(time.Now(), tombstoneTTL))
	if err != nil {
		g.log.Error("encode gossip state", "err", err)
		return nil
	}
	return b
}

// MergeRemoteState merges another member's full state. Its news is not
// relayed: the push/pulls of every member spread it.
func (d *delegate) MergeRemoteState(b []byte, join bool) {
	g := (*Gossip)(d)
	_, es, err := decode(b)
	if err != nil {
		g.log.Debug("dropped a gossip state", "err", err)
		return
	}
	g.receive(es, false)
}

// events is the Gossip as memberlist's EventDelegate.
type events Gossip

var _ memberlist.EventDelegate = (*events)(nil)

func (ev *events) NotifyJoin(n *memberlist.Node) {
	g := (*Gossip)(ev)
	if g.store.setAlive(n.Name, n.Addr.String(), time.Now()) {
		g.changed()
	}
}

func (ev *events) NotifyLeave(n *memberlist.Node) {
	g := (*Gossip)(ev)
	if g.store.setGone(n.Name, time.Now()) {
		g.log.Info("gossip member gone; its endpoints dropped", "node_id", n.Name)
		g.changed()
	}
}

func (ev *events) NotifyUpdate(n *memberlist.Node) {
	g := (*Gossip)(ev)
	if g.store.setAlive(n.Name, n.Addr.String(), time.Now()) {
		g.changed()
	}
}

// logWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// slog records of the matching level.
type logWriter struct {
	log *slog.Logger
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		level := slog.LevelInfo
		for _, l := range []struct {
			tag   string
			level slog.Level
		}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}} {
			if _, after, ok := strings.Cut(line, l.tag); ok {
				level, line = l.level, after
				break
			}
		}
		w.log.Log(context.Background(), level, strings.TrimSpace(line))
	}
	return len(p), nil
}
