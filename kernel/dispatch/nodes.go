package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// nodeBatcher commits node presence transitions (Up on a session, Down on a
// missed deadline) in batched writes. Heartbeats themselves never reach it.
type nodeBatcher struct {
	raft Raft
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	pending map[string]nodeChange
}

type nodeChange struct {
	state objectv1.NodeState
	desc  *objectv1.NodeDescription
}

func newNodeBatcher(r Raft, logger *slog.Logger) *nodeBatcher {
	return &nodeBatcher{raft: r, log: logger, wake: make(chan struct{}, 1), pending: map[string]nodeChange{}}
}

func (b *nodeBatcher) up(nodeID string, desc *objectv1.NodeDescription) {
	b.mu.Lock()
	b.pending[nodeID] = nodeChange{state: objectv1.NodeState_NODE_STATE_READY, desc: desc}
	b.mu.Unlock()
}

// down commits nodes as Down right away, in one write: their tasks are
// waiting to be rescheduled.
func (b *nodeBatcher) down(nodeIDs []string) {
	b.mu.Lock()
	for _, id := range nodeIDs {
		b.pending[id] = nodeChange{state: objectv1.NodeState_NODE_STATE_DOWN}
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *nodeBatcher) run(ctx context.Context) error {
	tick := time.NewTicker(maxBatchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		case <-tick.C:
		}
		b.mu.Lock()
		batch := b.pending
		b.pending = map[string]nodeChange{}
		b.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if err := b.write(ctx, batch); err != nil && ctx.Err() == nil {
			// Keep what failed (unless newer news arrived) and try again.
			b.log.Warn("writing node states", "nodes", len(batch), "error", err)
			b.mu.Lock()
			for id, c := range batch {
				if _, newer := b.pending[id]; !newer {
					b.pending[id] = c
				}
			}
			b.mu.Unlock()
		}
	}
}

func (b *nodeBatcher) write(ctx context.Context, batch map[string]nodeChange) error {
	var err error
	for range 5 {
		var downs int
		err = b.raft.Update(ctx, func(tx *state.Tx) error {
			downs = 0
			for id, c := range batch {
				n := tx.Node(id)
				if n == nil {
					continue
				}
				desc := n.GetDescription()
				if c.desc != nil {
					desc = mergeDescription(desc, c.desc)
				}
				if n.GetStatus().GetState() == c.state && proto.Equal(desc, n.GetDescription()) {
					continue
				}
				next := proto.Clone(n).(*objectv1.Node)
				next.Description = desc
				msg := ""
				if c.state == objectv1.NodeState_NODE_STATE_DOWN {
					msg = "heartbeat deadline passed"
					downs++
				}
				next.Status = &objectv1.NodeStatus{State: c.state, Message: msg, Addr: n.GetStatus().GetAddr()}
				if err := tx.UpdateNode(next); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			if downs > 0 {
				b.log.Info("nodes down", "count", downs)
			}
			return nil
		}
		if !errors.Is(err, sdk.ErrFailedPrecondition) {
			return err
		}
	}
	return err
}

// mergeDescription takes what a worker reports about itself, keeping the
// recorded values for what it left out.
func mergeDescription(cur, reported *objectv1.NodeDescription) *objectv1.NodeDescription {
	out := proto.Clone(cur).(*objectv1.NodeDescription)
	if out == nil {
		out = &objectv1.NodeDescription{}
	}
	if reported.GetHostname() != "" {
		out.Hostname = reported.GetHostname()
	}
	if reported.GetPlatform() != "" {
		out.Platform = reported.GetPlatform()
	}
	if reported.GetResources() != nil {
		out.Resources = reported.GetResources()
	}
	if reported.GetExecutor() != "" {
		out.Executor = reported.GetExecutor()
	}
	if reported.GetEngineVersion() != "" {
		out.EngineVersion = reported.GetEngineVersion()
	}
	// Empty is news too: the node no longer gossips.
	out.GossipAddr = reported.GetGossipAddr()
	return out
}
