package raftstore

import (
	"fmt"
	"time"

	"github.com/shoalhq/shoal/sdk"
)

// StepDown hands this node's leadership to another voter, waiting at most
// timeout for raft's answer. A leader whose stages keep failing steps down
// so that another manager leads. It fails with ErrNotLeader on a follower,
// and with sdk.ErrFailedPrecondition when no other voter could take over.
func (n *Node) StepDown(timeout time.Duration) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if n.voters() <= 1 {
		return fmt.Errorf("step down: no other voter to take over: %w", sdk.ErrFailedPrecondition)
	}
	return n.transferLeadership(timeout)
}

// transferLeadership asks raft to hand leadership to the most up-to-date
// voter and waits at most timeout for the answer. raft bounds a transfer by
// its election timeout, but only its main loop answers the future, and a
// transfer stuck behind a replication to a peer that stopped answering is
// never answered (hashicorp/raft#696): whoever asks must not wait
// unbounded. On timeout the goroutine waiting for the answer stays behind
// until raft gives one.
func (n *Node) transferLeadership(timeout time.Duration) error {
	f := n.raft.LeadershipTransfer()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("leadership transfer: %w", err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("leadership transfer: no answer within %s", timeout)
	}
}

const (
	// maxTransferWait bounds the leadership transfer before shutdown; raft
	// itself gives up after an election timeout or two.
	maxTransferWait = 5 * time.Second
	// shutdownWait bounds raft's shutdown (see Run).
	shutdownWait = 5 * time.Second
)
