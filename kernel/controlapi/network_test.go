package controlapi

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/raftstore"
	"github.com/shoalhq/shoal/kernel/state"
	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

// leaderRaft is a one-manager Raft: it applies each write to the store at
// once.
type leaderRaft struct {
	mu    sync.Mutex
	st    *state.Store
	index uint64
}

func (r *leaderRaft) IsLeader() bool                             { return true }
func (r *leaderRaft) Leader() (string, string)                   { return "self", "" }
func (r *leaderRaft) RemoveMember(context.Context, string) error { return nil }
func (r *leaderRaft) ReadBarrier(context.Context) error          { return nil }

// Update is UpdateRequest with no request ID, for the tests' own writes.
func (r *leaderRaft) Update(ctx context.Context, fn func(*state.Tx) error) error {
	_, err := r.UpdateRequest(ctx, "", fn)
	return err
}

// UpdateRequest applies fn's writes at once, once per request ID.
func (r *leaderRaft) UpdateRequest(_ context.Context, requestID string, fn func(*state.Tx) error) (raftstore.Write, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		rec  state.Request
		done bool
	)
	r.st.View(func(tx *state.ReadTx) { rec, done = tx.Request(requestID) })
	if done {
		return raftstore.Write{Index: rec.Index, ObjectID: rec.ObjectID, Replayed: true}, nil
	}
	txn, err := r.st.Prepare(time.Now(), fn)
	if err != nil || txn == nil {
		return raftstore.Write{}, err
	}
	txn.RequestId = requestID
	r.index++
	if err := r.st.Apply(r.index, &raftv1.Command{Transactions: []*raftv1.Transaction{txn}})[0]; err != nil {
		return raftstore.Write{}, err
	}
	return raftstore.Write{Index: r.index, ObjectID: state.FirstObjectID(txn)}, nil
}

func newTestServer(t *testing.T) (*Server, *leaderRaft) {
	t.Helper()
	r := &leaderRaft{st: state.New()}
	return NewServer(r, r.st, nil, slog.New(slog.DiscardHandler)), r
}

func networkSpec(name, subnet string, nodeBits uint32) *objectv1.NetworkSpec {
	return &objectv1.NetworkSpec{Annotations: &objectv1.Annotations{Name: name}, Subnet: subnet, NodePrefixLen: nodeBits}
}

func TestValidateNetworkSpec(t *testing.T) {
	for _, c := range []struct {
		spec *objectv1.NetworkSpec
		want []string
	}{
		{networkSpec("front", "", 0), nil},
		{networkSpec("front", "10.1.0.0/16", 26), nil},
		{networkSpec("front", "10.1.0.0/23", 0), nil},
		{nil, []string{"spec"}},
		{networkSpec("", "", 0), []string{"spec.annotations.name"}},
		{networkSpec("front", "10.1.0.0", 0), []string{"spec.subnet"}},
		{networkSpec("front", "10.1.0.300/16", 0), []string{"spec.subnet"}},
		{networkSpec("front", "10.1.2.0/16", 0), []string{"spec.subnet"}},
		{networkSpec("front", "fd00::/64", 0), []string{"spec.subnet"}},
		{networkSpec("front", "10.1.0.0/24", 0), []string{"spec.subnet"}},
		{networkSpec("front", "10.1.0.0/16", 31), []string{"spec.node_prefix_len"}},
		{networkSpec("front", "10.1.0.0/16", 4), []string{"spec.node_prefix_len"}},
		{networkSpec("bad name!", "10.1.0.0/16", 16), []string{"spec.annotations.name", "spec.subnet"}},
	} {
		if got := fields(t, ValidateNetworkSpec(c.spec)); !slices.Equal(got, c.want) {
			t.Errorf("ValidateNetworkSpec(%v) fields = %v, want %v", c.spec, got, c.want)
		}
	}
}

func TestValidateServiceNetworks(t *testing.T) {
	spec := validServiceSpec()
	spec.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "front", Aliases: []string{"web", "www.example"}}, {Target: "", Aliases: []string{"bad alias"}}}
	want := []string{"spec.task.networks[1].target", "spec.task.networks[1].aliases[0]"}
	if got := fields(t, ValidateServiceSpec(spec)); !slices.Equal(got, want) {
		t.Errorf("ValidateServiceSpec fields = %v, want %v", got, want)
	}
}

func TestCreateNetwork(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := t.Context()
	resp, err := s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("front", "10.1.0.0/16", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetNetwork(); n.GetId() == "" || n.GetMeta().GetVersion() == 0 || n.GetSpec().GetSubnet() != "10.1.0.0/16" {
		t.Errorf("CreateNetwork = %v, want the stored network", n)
	}
	if _, err := s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("front", "", 0)}); !errors.Is(sdk.FromGRPC(err), sdk.ErrAlreadyExists) {
		t.Errorf("CreateNetwork(same name) = %v, want AlreadyExists", err)
	}
	_, err = s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("back", "10.1.128.0/17", 0)})
	if got := fields(t, sdk.FromGRPC(err)); !slices.Equal(got, []string{"spec.subnet"}) {
		t.Errorf("CreateNetwork(overlapping subnet) = %v, want an error naming spec.subnet", err)
	}
	_, err = s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("back", "not-a-cidr", 0)})
	if got := fields(t, sdk.FromGRPC(err)); !slices.Equal(got, []string{"spec.subnet"}) {
		t.Errorf("CreateNetwork(bad CIDR) = %v, want an error naming spec.subnet", err)
	}
	if _, err := s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("back", "10.2.0.0/16", 0)}); err != nil {
		t.Errorf("CreateNetwork(disjoint subnet) = %v", err)
	}
	list, err := s.ListNetworks(ctx, &controlv1.ListNetworksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list.GetNetworks() {
		names = append(names, n.GetSpec().GetAnnotations().GetName())
	}
	if !slices.Equal(names, []string{"back", "front"}) {
		t.Errorf("ListNetworks names = %v, want [back front]", names)
	}
	got, err := s.GetNetwork(ctx, &controlv1.GetNetworkRequest{Ref: "front"})
	if err != nil || got.GetNetwork().GetId() != resp.GetNetwork().GetId() {
		t.Errorf("GetNetwork(front) = %v, %v", got.GetNetwork(), err)
	}
}

func TestServiceJoinsNetworkAndRemoveNetworkInUse(t *testing.T) {
	s, r := newTestServer(t)
	ctx := t.Context()
	net, err := s.CreateNetwork(ctx, &controlv1.CreateNetworkRequest{Spec: networkSpec("front", "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	netID := net.GetNetwork().GetId()

	spec := validServiceSpec()
	spec.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "nope"}}
	_, err = s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if got := fields(t, sdk.FromGRPC(err)); !slices.Equal(got, []string{"spec.task.networks[0].target"}) {
		t.Errorf("CreateService(unknown network) = %v, want an error naming spec.task.networks[0].target", err)
	}
	spec.Task.Networks = []*objectv1.NetworkAttachmentConfig{{Target: "front"}, {Target: netID}}
	_, err = s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if got := fields(t, sdk.FromGRPC(err)); !slices.Equal(got, []string{"spec.task.networks[1].target"}) {
		t.Errorf("CreateService(one network twice) = %v, want an error naming spec.task.networks[1].target", err)
	}
	spec.Task.Networks = spec.Task.Networks[:1]
	svc, err := s.CreateService(ctx, &controlv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.GetService().GetSpec().GetTask().GetNetworks()[0].GetTarget(); got != netID {
		t.Errorf("stored target = %q, want the network's ID %s", got, netID)
	}

	_, err = s.RemoveNetwork(ctx, &controlv1.RemoveNetworkRequest{Ref: "front"})
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) {
		t.Errorf("RemoveNetwork(joined by a service) = %v, want FailedPrecondition", err)
	}

	// The service goes, its task still runs with an address: refused.
	task := &objectv1.Task{
		Id: "t1", ServiceId: svc.GetService().GetId(), NodeId: "n1",
		Spec:         svc.GetService().GetSpec().GetTask(),
		DesiredState: objectv1.TaskState_TASK_STATE_SHUTDOWN,
		Status:       &objectv1.TaskStatus{State: objectv1.TaskState_TASK_STATE_RUNNING},
		Networks:     []*objectv1.NetworkAttachment{{NetworkId: netID, Addr: "10.192.1.2/16"}},
	}
	if err := r.Update(ctx, func(tx *state.Tx) error { return tx.CreateTask(task) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveService(ctx, &controlv1.RemoveServiceRequest{Ref: "web"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.RemoveNetwork(ctx, &controlv1.RemoveNetworkRequest{Ref: "front"})
	if !errors.Is(sdk.FromGRPC(err), sdk.ErrFailedPrecondition) {
		t.Errorf("RemoveNetwork(a task still running on it) = %v, want FailedPrecondition", err)
	}
	// It ends: the network may go.
	if err := r.Update(ctx, func(tx *state.Tx) error {
		next := proto.Clone(tx.Task("t1")).(*objectv1.Task)
		next.Status.State = objectv1.TaskState_TASK_STATE_SHUTDOWN
		return tx.UpdateTask(next)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveNetwork(ctx, &controlv1.RemoveNetworkRequest{Ref: "front"}); err != nil {
		t.Errorf("RemoveNetwork(unused) = %v", err)
	}
	r.st.View(func(tx *state.ReadTx) {
		if tx.Network(netID) != nil {
			t.Error("network still stored after RemoveNetwork")
		}
	})
}
