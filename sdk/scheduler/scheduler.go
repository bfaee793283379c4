// Package scheduler is the SDK for scheduler plugins.
//
// A scheduler plugin is a program whose main calls Serve with a value that
// implements Scheduler:
//
//	type spread struct{ ... }
//
//	func (s *spread) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
//		...
//	}
//
//	func main() { scheduler.Serve(&spread{}) }
//
// Name its binary in the node's config, [plugins.scheduler] path = "...".
// Test it with one call to the conformance kit:
//
//	func TestConformance(t *testing.T) {
//		schedulertest.Run(t, func() scheduler.Scheduler { return &spread{} })
//	}
//
// The contract (see the Scheduler interface and scheduler.proto): one
// decision per task; only nodes of the view; a reason with every refusal;
// the same answer for the same input; never more reservations on a node than
// it has; return promptly when ctx is cancelled.
package scheduler

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/shoalhq/shoal/sdk"
	schedulerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/scheduler/v1"
)

// Scheduler places batches of tasks.
//
// The kernel calls Schedule from one goroutine at a time, once per batch of
// pending tasks, with the changes to the node view since the last call
// (req.ViewBase is the version they apply to; 0 means a whole new view). The
// implementation keeps its copy of the view between calls; when ViewBase is
// not the version it holds, it returns an error of kind
// sdk.ErrFailedPrecondition and the kernel sends the whole view. A request
// may carry no tasks: it only brings the view up to date (the kernel sends
// one at most every second while nothing waits for placement, so that a
// burst of tasks does not wait for the whole view), and its reply has no
// decisions.
//
// It returns one decision per task of req, a node of the view or a refusal
// with a reason a person can act on. It must be deterministic, must not place
// more reservations on a node than the node's total minus what is reserved
// (counting its own placements of the batch), and should return ctx.Err()
// promptly when ctx is cancelled.
type Scheduler interface {
	Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error)
}

// Func adapts a function to Scheduler.
type Func func(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error)

// Schedule calls f.
func (f Func) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	return f(ctx, req)
}

// Configurer is implemented by schedulers that take settings from
// [plugins.scheduler.config]. Configure is called once per plugin start,
// before any Schedule, with the table as TOML text (empty when unset); decode
// it with sdk.DecodeConfig, which refuses unknown keys.
type Configurer interface {
	Configure(ctx context.Context, config []byte) error
}

// Serve runs impl as a scheduler plugin process. It does not return.
func Serve(impl Scheduler) {
	sdk.ServePlugins(plugin.PluginSet{sdk.KindScheduler: &Plugin{Impl: impl}})
}

// Plugin is the go-plugin glue for schedulers. Plugin authors do not need
// it: Serve uses it, and so does the kernel to talk to a plugin process.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the implementation served (plugin side only).
	Impl Scheduler
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	schedulerv1.RegisterSchedulerServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns a *Client: a Scheduler (and Configurer) that calls the
// plugin process.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{rpc: schedulerv1.NewSchedulerClient(c)}, nil
}

// server adapts a Scheduler to the gRPC service.
type server struct {
	schedulerv1.UnimplementedSchedulerServer
	impl Scheduler
}

func (s *server) Configure(ctx context.Context, req *schedulerv1.ConfigureRequest) (*schedulerv1.ConfigureResponse, error) {
	if c, ok := s.impl.(Configurer); ok {
		if err := c.Configure(ctx, req.GetConfig()); err != nil {
			return nil, sdk.ToGRPC(err)
		}
	} else if len(req.GetConfig()) > 0 {
		return nil, sdk.ToGRPC(sdk.FieldErrors{{Field: "plugins.scheduler.config", Message: "this scheduler takes no settings"}})
	}
	return &schedulerv1.ConfigureResponse{}, nil
}

func (s *server) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	resp, err := s.impl.Schedule(ctx, req)
	if err != nil {
		return nil, sdk.ToGRPC(err)
	}
	return resp, nil
}

// Client is a Scheduler backed by a plugin process (or any gRPC server of
// the Scheduler service).
type Client struct {
	rpc schedulerv1.SchedulerClient
}

var (
	_ Scheduler  = (*Client)(nil)
	_ Configurer = (*Client)(nil)
)

// NewClient returns a Scheduler over conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: schedulerv1.NewSchedulerClient(conn)}
}

// Schedule calls the plugin. Errors come back as sdk kinds.
func (c *Client) Schedule(ctx context.Context, req *schedulerv1.ScheduleRequest) (*schedulerv1.ScheduleResponse, error) {
	resp, err := c.rpc.Schedule(ctx, req)
	return resp, sdk.FromGRPC(err)
}

// Configure calls the plugin's Configure.
func (c *Client) Configure(ctx context.Context, config []byte) error {
	_, err := c.rpc.Configure(ctx, &schedulerv1.ConfigureRequest{Config: config})
	return sdk.FromGRPC(err)
}
