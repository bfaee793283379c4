package dashboard

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/state"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// The views copy what the page shows, field by field, into fresh objects:
// an allow list, so a field added to an object later stays out until it is
// added here on purpose.

func viewNode(n *objectv1.Node) *objectv1.Node {
	d := n.GetDescription()
	v := &objectv1.Node{
		Id:     n.GetId(),
		Meta:   n.GetMeta(),
		Spec:   n.GetSpec(),
		Role:   n.GetRole(),
		Status: n.GetStatus(),
		Description: &objectv1.NodeDescription{
			Hostname:      d.GetHostname(),
			Platform:      d.GetPlatform(),
			Resources:     d.GetResources(),
			EngineVersion: d.GetEngineVersion(),
			Executor:      d.GetExecutor(),
		},
	}
	if ms := n.GetManagerStatus(); ms != nil {
		v.ManagerStatus = &objectv1.ManagerStatus{RaftAddr: ms.GetRaftAddr(), ApiAddr: ms.GetApiAddr()}
	}
	return v
}

// viewService keeps a service's mode, image, ports, networks and update
// status; not its command, environment, mounts or file references.
func viewService(s *objectv1.Service) *objectv1.Service {
	spec := s.GetSpec()
	v := &objectv1.Service{
		Id:           s.GetId(),
		Meta:         s.GetMeta(),
		SpecVersion:  s.GetSpecVersion(),
		VirtualIps:   s.GetVirtualIps(),
		UpdateStatus: s.GetUpdateStatus(),
		Spec: &objectv1.ServiceSpec{
			Annotations: spec.GetAnnotations(),
			Endpoint:    spec.GetEndpoint(),
			Task: &objectv1.TaskSpec{
				Container: &objectv1.ContainerSpec{Image: spec.GetTask().GetContainer().GetImage()},
				Networks:  spec.GetTask().GetNetworks(),
			},
		},
	}
	switch m := spec.GetMode().(type) {
	case *objectv1.ServiceSpec_Replicated:
		v.Spec.Mode = m
	case *objectv1.ServiceSpec_Global:
		v.Spec.Mode = m
	case *objectv1.ServiceSpec_ReplicatedJob:
		v.Spec.Mode = m
	case *objectv1.ServiceSpec_GlobalJob:
		v.Spec.Mode = m
	}
	return v
}

// viewTask keeps a task's place, state and addresses, and its image (which
// differs from the service's during an update).
func viewTask(t *objectv1.Task) *objectv1.Task {
	st := t.GetStatus()
	v := &objectv1.Task{
		Id:                 t.GetId(),
		Meta:               t.GetMeta(),
		ServiceId:          t.GetServiceId(),
		Slot:               t.GetSlot(),
		NodeId:             t.GetNodeId(),
		SpecVersion:        t.GetSpecVersion(),
		ServiceAnnotations: &objectv1.Annotations{Name: t.GetServiceAnnotations().GetName()},
		DesiredState:       t.GetDesiredState(),
		Status: &objectv1.TaskStatus{
			Timestamp:   st.GetTimestamp(),
			State:       st.GetState(),
			Message:     st.GetMessage(),
			Err:         st.GetErr(),
			ExitCode:    st.GetExitCode(),
			ContainerId: st.GetContainerId(),
			Health:      st.GetHealth(),
		},
		Spec: &objectv1.TaskSpec{Container: &objectv1.ContainerSpec{Image: t.GetSpec().GetContainer().GetImage()}},
	}
	for _, a := range t.GetNetworks() {
		v.Networks = append(v.Networks, &objectv1.NetworkAttachment{NetworkId: a.GetNetworkId(), NetworkName: a.GetNetworkName(), Addr: a.GetAddr()})
	}
	return v
}

func viewNetwork(n *objectv1.Network) *objectv1.Network {
	return &objectv1.Network{Id: n.GetId(), Meta: n.GetMeta(), Spec: n.GetSpec(), Subnet: n.GetSubnet(), NodePrefixLen: n.GetNodePrefixLen()}
}

// viewCluster keeps the cluster's settings and its CA's digest: never the
// root key, the join tokens or the gossip key.
func viewCluster(c *objectv1.Cluster) *objectv1.Cluster {
	if c == nil {
		return nil
	}
	spec := c.GetSpec()
	return &objectv1.Cluster{
		Id:   c.GetId(),
		Meta: c.GetMeta(),
		Spec: &objectv1.ClusterSpec{
			Annotations:   spec.GetAnnotations(),
			Dispatcher:    spec.GetDispatcher(),
			Ca:            spec.GetCa(),
			Orchestration: spec.GetOrchestration(),
		},
		RootCa: &objectv1.RootCA{Digest: c.GetRootCa().GetDigest()},
	}
}

// viewSecret is a secret's name and size: not its data, sealed or not, nor
// its digest (which would let a guess of a short secret be checked).
func viewSecret(s *objectv1.Secret) *objectv1.Secret {
	return &objectv1.Secret{
		Id:   s.GetId(),
		Meta: s.GetMeta(),
		Spec: &objectv1.SecretSpec{Annotations: &objectv1.Annotations{Name: s.GetSpec().GetAnnotations().GetName()}},
		Size: s.GetSize(),
	}
}

// jsonOpts writes field names as in the .proto files, as `--format json`
// does; enums are their names.
var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// snapshot is the whole state the page shows, as one JSON document.
type snapshot struct {
	Index    uint64            `json:"index"`
	Leader   string            `json:"leader"`
	Self     string            `json:"self"`
	Admin    bool              `json:"admin"`
	Cluster  json.RawMessage   `json:"cluster,omitempty"`
	Nodes    []json.RawMessage `json:"nodes"`
	Services []json.RawMessage `json:"services"`
	Tasks    []json.RawMessage `json:"tasks"`
	Networks []json.RawMessage `json:"networks"`
	Secrets  []json.RawMessage `json:"secrets"`
}

// takeSnapshot reads the whole state in one View.
func takeSnapshot(st *state.Store) (*snapshot, error) {
	s := &snapshot{}
	var err error
	st.View(func(tx *state.ReadTx) {
		s.Index = tx.Index()
		if c := tx.Cluster(); c != nil {
			if s.Cluster, err = marshal(viewCluster(c)); err != nil {
				return
			}
		}
		if s.Nodes, err = marshalAll(tx.Nodes(), viewNode); err != nil {
			return
		}
		if s.Services, err = marshalAll(tx.Services(), viewService); err != nil {
			return
		}
		if s.Tasks, err = marshalAll(tx.Tasks(), viewTask); err != nil {
			return
		}
		if s.Networks, err = marshalAll(tx.Networks(), viewNetwork); err != nil {
			return
		}
		s.Secrets, err = marshalAll(tx.Secrets(), viewSecret)
	})
	return s, err
}

func marshal(m proto.Message) (json.RawMessage, error) {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	// protojson adds random spaces to keep its output from being relied
	// on byte for byte; the page does not care, compact it anyway.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func marshalAll[T proto.Message](objs []T, view func(T) T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		b, err := marshal(view(o))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
