package state

import (
	"fmt"

	"github.com/shoalhq/shoal/sdk"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// MaxRequests is how many applied request IDs the state remembers. A retry
// comes within seconds of its first attempt (a follower resending a call to
// a new leader, a client retrying after a timeout); at the control API's
// write rates this keeps minutes of them, in about 1 MiB.
const MaxRequests = 16384

// ErrDuplicateRequest is a transaction's error when its request_id was
// already applied: nothing of it applies a second time. The writer answers
// with the first attempt's result (ReadTx.Request). It is of kind
// sdk.ErrAlreadyExists.
var ErrDuplicateRequest = fmt.Errorf("request already applied: %w", sdk.ErrAlreadyExists)

// Request is the record of an applied transaction that carried a request ID.
type Request struct {
	// Index is the Raft index it applied at.
	Index uint64
	// ObjectID is the ID of the object its first action wrote.
	ObjectID string
}

// requests remembers the last MaxRequests applied request IDs, oldest
// evicted first. It changes only in Apply and Restore, identically on every
// replica.
type requests struct {
	byID map[string]Request
	// order is a ring of the IDs in byID, oldest at head.
	order []string
	head  int
}

func (r *requests) get(id string) (Request, bool) {
	v, ok := r.byID[id]
	return v, ok
}

func (r *requests) add(id string, rec Request) {
	if r.byID == nil {
		r.byID = make(map[string]Request)
	}
	if len(r.order) < MaxRequests {
		r.order = append(r.order, id)
	} else {
		delete(r.byID, r.order[r.head])
		r.order[r.head] = id
		r.head = (r.head + 1) % len(r.order)
	}
	r.byID[id] = rec
}

// list returns the records oldest first, for a snapshot.
func (r *requests) list() []*raftv1.AppliedRequest {
	out := make([]*raftv1.AppliedRequest, 0, len(r.order))
	for i := range r.order {
		id := r.order[(r.head+i)%len(r.order)]
		rec := r.byID[id]
		out = append(out, &raftv1.AppliedRequest{Id: id, Index: rec.Index, ObjectId: rec.ObjectID})
	}
	return out
}

// loadRequests fills r from a snapshot's records, oldest first.
func loadRequests(r *requests, recs []*raftv1.AppliedRequest) error {
	for i, rec := range recs {
		if rec.GetId() == "" {
			return fmt.Errorf("request %d: empty id: %w", i, sdk.ErrInvalidArgument)
		}
		if _, dup := r.get(rec.GetId()); dup {
			return fmt.Errorf("request %s: duplicate id: %w", rec.GetId(), sdk.ErrInvalidArgument)
		}
		r.add(rec.GetId(), Request{Index: rec.GetIndex(), ObjectID: rec.GetObjectId()})
	}
	return nil
}

// Request returns the record of the applied transaction that carried
// request ID id, if the state still remembers it.
func (tx *ReadTx) Request(id string) (Request, bool) {
	if id == "" {
		return Request{}, false
	}
	return tx.t.requests.get(id)
}

// FirstObjectID is the ID of the object txn's first action writes.
func FirstObjectID(txn *raftv1.Transaction) string {
	acts := txn.GetActions()
	if len(acts) == 0 {
		return ""
	}
	switch t := acts[0].GetTarget().(type) {
	case *raftv1.StoreAction_Cluster:
		return t.Cluster.GetId()
	case *raftv1.StoreAction_Node:
		return t.Node.GetId()
	case *raftv1.StoreAction_Service:
		return t.Service.GetId()
	case *raftv1.StoreAction_Task:
		return t.Task.GetId()
	case *raftv1.StoreAction_Network:
		return t.Network.GetId()
	case *raftv1.StoreAction_Secret:
		return t.Secret.GetId()
	case *raftv1.StoreAction_Config:
		return t.Config.GetId()
	}
	return ""
}
