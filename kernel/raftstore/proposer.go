package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

const (
	// maxEntryBytes bounds how many queued transactions the proposer packs
	// into one log entry. 4 MiB holds about 15,000 small task writes, so
	// creating 10,000 tasks is one or two entries, while an entry still
	// replicates to a follower in a few milliseconds on a LAN.
	maxEntryBytes = 4 << 20
	// maxInflight bounds how many proposed entries may await commit at once.
	// hashicorp/raft already groups pending entries into one fsync and one
	// AppendEntries, so more in flight only splits the same writes into
	// more, smaller entries: with 64, 100,000 concurrent updates took about
	// 8,000 entries; with 4, about 850, at the same throughput.
	maxInflight = 4
	// queueLen is how many writers may wait to be packed before Propose
	// blocks. It absorbs bursts of concurrent writers without bounding them.
	queueLen = 4096
	// applyTimeout bounds how long raft may take to accept an entry into its
	// pipeline (not to commit it: commit waits on the caller's ctx).
	applyTimeout = 10 * time.Second
)

// ErrNotLeader is returned by writes on a manager that is not the leader.
// It is of kind sdk.ErrUnavailable; callers forward to the leader and retry.
var ErrNotLeader = fmt.Errorf("not the raft leader: %w", sdk.ErrUnavailable)

// ErrLeadershipLost is returned when leadership was lost before a proposal's
// outcome became known. The write may or may not have committed.
var ErrLeadershipLost = fmt.Errorf("leadership lost while committing: %w", sdk.ErrUnavailable)

type proposal struct {
	txn  *raftv1.Transaction
	size int
	done chan error // buffered, 1
	// index is the entry's Raft index, set before a nil error is sent on
	// done.
	index uint64
}

type inflight struct {
	future raft.ApplyFuture
	props  []*proposal
}

// proposer packs queued transactions into commands.
type proposer struct {
	raft  *raft.Raft
	queue chan *proposal
	wait  chan inflight
	stats *proposerStats
}

func newProposer(r *raft.Raft, stats *proposerStats) *proposer {
	return &proposer{
		raft:  r,
		queue: make(chan *proposal, queueLen),
		wait:  make(chan inflight, maxInflight),
		stats: stats,
	}
}

// propose queues txn and waits for its own result.
func (p *proposer) propose(ctx context.Context, txn *raftv1.Transaction) error {
	_, err := p.proposeIndex(ctx, txn)
	return err
}

// proposeIndex is propose that also returns the Raft index txn applied at.
func (p *proposer) proposeIndex(ctx context.Context, txn *raftv1.Transaction) (uint64, error) {
	if p.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	pr := &proposal{txn: txn, size: proto.Size(txn), done: make(chan error, 1)}
	select {
	case p.queue <- pr:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case err := <-pr.done:
		if err != nil {
			return 0, err
		}
		return pr.index, nil
	case <-ctx.Done():
		// The write may still commit; the caller learns nothing more.
		return 0, ctx.Err()
	}
}

// packLoop drains the queue into commands until ctx ends.
func (p *proposer) packLoop(ctx context.Context) {
	defer close(p.wait)
	for {
		var first *proposal
		select {
		case first = <-p.queue:
		case <-ctx.Done():
			p.failQueued(ErrLeadershipLost)
			return
		}
		props := []*proposal{first}
		size := first.size
	drain:
		for size < maxEntryBytes {
			select {
			case pr := <-p.queue:
				props = append(props, pr)
				size += pr.size
			default:
				break drain
			}
		}
		cmd := &raftv1.Command{Transactions: make([]*raftv1.Transaction, len(props))}
		for i, pr := range props {
			cmd.Transactions[i] = pr.txn
		}
		data, err := proto.Marshal(cmd)
		if err != nil {
			finish(props, fmt.Errorf("encode raft entry: %w", err))
			continue
		}
		f := p.raft.Apply(data, applyTimeout)
		p.stats.entry(len(props), len(data))
		select {
		case p.wait <- inflight{future: f, props: props}:
		case <-ctx.Done():
			finish(props, ErrLeadershipLost)
			p.failQueued(ErrLeadershipLost)
			return
		}
	}
}

// waitLoop resolves entries in proposal order until packLoop closes wait.
func (p *proposer) waitLoop() {
	for in := range p.wait {
		if err := in.future.Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
				err = ErrLeadershipLost
			}
			finish(in.props, err)
			continue
		}
		res, _ := in.future.Response().(applyResult)
		if res.err != nil {
			finish(in.props, res.err)
			continue
		}
		for i, pr := range in.props {
			var err error
			if i < len(res.errs) {
				err = res.errs[i]
			}
			pr.index = in.future.Index()
			pr.done <- err
		}
	}
}

func (p *proposer) failQueued(err error) {
	for {
		select {
		case pr := <-p.queue:
			pr.done <- err
		default:
			return
		}
	}
}

func finish(props []*proposal, err error) {
	for _, pr := range props {
		pr.done <- err
	}
}

// logCacheEntries is how many of the newest log entries the leader keeps in
// memory to replicate them without reading the WAL back. Followers that
// keep up only ever need the last few; an entry holds at most maxEntryBytes,
// so the cache holds at most 64 × 4 MiB, and usually a small part of that
// (a status batch is a few KiB).
const logCacheEntries = 64
