package allocator

import objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"

// Holds reports whether a task holds its network addresses: from their
// allocation until the task has ended (observed COMPLETE or beyond) and is
// not wanted running. Both only move forward, so once false it stays false,
// and every manager computes it alike from the store: a task's addresses
// are released, and the IPAM plugin may give them again, only once its
// container has exited, never while it may still run.
func Holds(t *objectv1.Task) bool {
	return t.GetStatus().GetState() < objectv1.TaskState_TASK_STATE_COMPLETE ||
		t.GetDesiredState() == objectv1.TaskState_TASK_STATE_RUNNING
}

// Allocated reports whether every network of t's spec has an address in
// t.networks. The dispatcher sends a task to its worker only then.
func Allocated(t *objectv1.Task) bool {
	for _, want := range t.GetSpec().GetNetworks() {
		if attachment(t, want.GetTarget()).GetAddr() == "" {
			return false
		}
	}
	return true
}

// attachment returns t's attachment to a network, or nil.
func attachment(t *objectv1.Task, networkID string) *objectv1.NetworkAttachment {
	for _, a := range t.GetNetworks() {
		if a.GetNetworkId() == networkID {
			return a
		}
	}
	return nil
}
