// Package ipam is the SDK for IPAM (address management) plugins.
//
// An IPAM plugin is a program whose main calls Serve with a value that
// implements IPAM:
//
//	type pools struct{ ... }
//
//	func (p *pools) Restore(ctx context.Context, req *ipamv1.RestoreRequest) (*ipamv1.RestoreResponse, error)    { ... }
//	func (p *pools) Allocate(ctx context.Context, req *ipamv1.AllocateRequest) (*ipamv1.AllocateResponse, error) { ... }
//	func (p *pools) Release(ctx context.Context, req *ipamv1.ReleaseRequest) (*ipamv1.ReleaseResponse, error)    { ... }
//
//	func main() { ipam.Serve(&pools{}) }
//
// Name its binary in the node's config, [plugins.ipam] path = "...".
// Test it with one call to the conformance kit:
//
//	func TestConformance(t *testing.T) {
//		ipamtest.Run(t, func() ipam.IPAM { return &pools{} })
//	}
//
// The contract (see the IPAM interface and ipam.proto): never hand out an
// address, a node slice or a subnet that is held; answer every item of a
// batch; the same answer to an owner that asks again; forget everything on
// Restore and hold exactly what it carries; refuse, with
// sdk.ErrFailedPrecondition, requests naming another restore than the last.
package ipam

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/shoalhq/shoal/sdk"
	ipamv1 "github.com/shoalhq/shoal/sdk/proto/shoal/ipam/v1"
)

// IPAM allocates network subnets, node slices and addresses.
//
// The kernel calls it from one goroutine at a time. After each start of the
// plugin, and whenever it takes over as leader, the kernel first calls
// Restore with everything it recorded; the implementation drops all it
// held and holds exactly that. Allocate and Release carry the restore_id of
// the last Restore: when it is not the one the implementation holds (it
// restarted, or was never restored), they return an error of kind
// sdk.ErrFailedPrecondition and the kernel restores first.
//
// Allocate answers every item, in request order: subnets first (a subnet
// asked for must not overlap another network's; an empty one comes from the
// default pool), then addresses (from the network's slice for virtual IPs
// when node_id is empty, else from the node's slice, allocated on its
// first use). An owner asking again for what it holds on a network gets
// the same answer. Failures of one item (a pool exhausted, an overlap) are
// that item's error string, not the call's error. Release frees what it
// names; releasing what is not held is not an error. Implementations
// should return ctx.Err() promptly when ctx is cancelled.
type IPAM interface {
	Restore(ctx context.Context, req *ipamv1.RestoreRequest) (*ipamv1.RestoreResponse, error)
	Allocate(ctx context.Context, req *ipamv1.AllocateRequest) (*ipamv1.AllocateResponse, error)
	Release(ctx context.Context, req *ipamv1.ReleaseRequest) (*ipamv1.ReleaseResponse, error)
}

// Configurer is implemented by IPAM plugins that take settings from
// [plugins.ipam.config]. Configure is called once per plugin start, before
// any other call, with the table as TOML text (empty when unset); decode it
// with sdk.DecodeConfig, which refuses unknown keys.
type Configurer interface {
	Configure(ctx context.Context, config []byte) error
}

// Serve runs impl as an IPAM plugin process. It does not return.
func Serve(impl IPAM) {
	sdk.ServePlugins(plugin.PluginSet{sdk.KindIPAM: &Plugin{Impl: impl}})
}

// Plugin is the go-plugin glue for IPAM plugins. Plugin authors do not need
// it: Serve uses it, and so does the kernel to talk to a plugin process.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served (plugin side only).
	Impl IPAM
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	ipamv1.RegisterIPAMServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns a *Client: an IPAM (and Configurer) that calls the
// plugin process.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// server adapts an IPAM to the gRPC service.
type server struct {
	ipamv1.UnimplementedIPAMServer
	impl IPAM
}

func (s *server) Configure(ctx context.Context, req *ipamv1.ConfigureRequest) (*ipamv1.ConfigureResponse, error) {
	if c, ok := s.impl.(Configurer); ok {
		if err := c.Configure(ctx, req.GetConfig()); err != nil {
			return nil, sdk.ToGRPC(err)
		}
	} else if len(req.GetConfig()) > 0 {
		return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "plugins.ipam.config", Message: "this IPAM plugin takes no settings"}})
	}
	return &ipamv1.ConfigureResponse{}, nil
}

func (s *server) Restore(ctx context.Context, req *ipamv1.RestoreRequest) (*ipamv1.RestoreResponse, error) {
	resp, err := s.impl.Restore(ctx, req)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return resp, nil
}

func (s *server) Allocate(ctx context.Context, req *ipamv1.AllocateRequest) (*ipamv1.AllocateResponse, error) {
	resp, err := s.impl.Allocate(ctx, req)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return resp, nil
}

func (s *server) Release(ctx context.Context, req *ipamv1.ReleaseRequest) (*ipamv1.ReleaseResponse, error) {
	resp, err := s.impl.Release(ctx, req)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return resp, nil
}

// Client is an IPAM backed by a plugin process (or any gRPC server of the
// IPAM service).
type Client struct {
	rpc ipamv1.IPAMClient
}

var (
	_ IPAM       = (*Client)(nil)
	_ Configurer = (*Client)(nil)
)

// NewClient returns an IPAM over conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: ipamv1.NewIPAMClient(conn)}
}

// Restore calls the plugin. Errors come back as sdk kinds.
func (c *Client) Restore(ctx context.Context, req *ipamv1.RestoreRequest) (*ipamv1.RestoreResponse, error) {
	resp, err := c.rpc.Restore(ctx, req)
	return resp, sdk.FromGRPC(err)
}

// Allocate calls the plugin. Errors come back as sdk kinds.
func (c *Client) Allocate(ctx context.Context, req *ipamv1.AllocateRequest) (*ipamv1.AllocateResponse, error) {
	resp, err := c.rpc.Allocate(ctx, req)
	return resp, sdk.FromGRPC(err)
}

// Release calls the plugin. Errors come back as sdk kinds.
func (c *Client) Release(ctx context.Context, req *ipamv1.ReleaseRequest) (*ipamv1.ReleaseResponse, error) {
	resp, err := c.rpc.Release(ctx, req)
	return resp, sdk.FromGRPC(err)
}

// Configure calls the plugin's Configure.
func (c *Client) Configure(ctx context.Context, config []byte) error {
	_, err := c.rpc.Configure(ctx, &ipamv1.ConfigureRequest{Config: config})
	return sdk.FromGRPC(err)
}
