package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
)

// instance is one run of the plugin process, from its start to its end.
type instance struct {
	kind   string
	client *plugin.Client
	rpc    *plugin.GRPCClient
	pid    int
	// kill SIGKILLs the process: it cancels the context of its exec.Cmd.
	// It is how a start, a wedged plugin or a shutdown that hangs is cut
	// short, since go-plugin's Start and Kill take no context.
	kill context.CancelFunc

	// down is instUp while the host uses the instance, then why it
	// stopped. Calls through the instance's connection fail as Unavailable
	// with it.
	down atomic.Int32
	// connected is set once go-plugin's Client returned. Before, calls made
	// by go-plugin itself (its stdio stream) run under go-plugin's client
	// lock, which Exited takes too: unavailable must not call it then.
	connected atomic.Bool
}

// Values of instance.down.
const (
	instUp int32 = iota
	instRestarting
	instStopped
)

// errExited is the crash of a plugin process that exited by itself.
// go-plugin logs its exit status.
var errExited = errors.New("plugin process exited")

// launch starts the plugin process and connects to it. If ctx ends first,
// it kills the process and returns ctx.Err().
func (h *Host[T]) launch(ctx context.Context) (*instance, error) {
	cmdCtx, kill := context.WithCancel(context.Background())
	cmd := exec.CommandContext(cmdCtx, h.cfg.Path)
	cmd.Env = h.env
	cmd.SysProcAttr = sysProcAttr()
	in := &instance{kind: h.cfg.Kind, kill: kill}
	stdio := h.log.With("stream", "stdio")
	in.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: h.cfg.Plugins},
		Cmd:              cmd,
		// The environment is built by pluginEnv, from the agent's.
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		// AutoMTLS: only this process can talk to the plugin, whatever the
		// socket's permissions. It rules out reattaching to a plugin after
		// an agent restart, which the host never does: plugins die with the
		// agent (sysProcAttr).
		AutoMTLS:     true,
		StartTimeout: h.timing.startTimeout,
		Logger:       h.hclog,
		// What the plugin writes to os.Stdout and os.Stderr once serving
		// comes over gRPC; its log lines (sdk.ServePlugins) come on its
		// original stderr and are re-leveled through Logger.
		SyncStdout: lineLogger(stdio),
		SyncStderr: lineLogger(stdio),
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes), grpc.MaxCallSendMsgSize(sdk.MaxMessageBytes)),
			grpc.WithChainUnaryInterceptor(in.unary),
			grpc.WithChainStreamInterceptor(in.stream),
		},
	})
	stop := context.AfterFunc(ctx, kill)
	cp, err := in.client.Client()
	in.connected.Store(true)
	if !stop() {
		in.close()
		return nil, ctx.Err()
	}
	if err != nil {
		in.close()
		return nil, &launchError{fmt.Errorf("start %s plugin %s: %w", h.cfg.Kind, h.cfg.Path, err)}
	}
	rpc, ok := cp.(*plugin.GRPCClient)
	if !ok { // AllowedProtocols is gRPC only
		in.close()
		return nil, permanent(fmt.Errorf("start %s plugin %s: protocol client is %T, want gRPC", h.cfg.Kind, h.cfg.Path, cp))
	}
	in.rpc = rpc
	if rc := in.client.ReattachConfig(); rc != nil {
		in.pid = rc.Pid
	}
	return in, nil
}

// ping health-checks the plugin with go-plugin's health service. Unlike
// ClientProtocol.Ping, it gives up after timeout: a wedged plugin would
// otherwise hang the supervisor.
func (in *instance) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(in.rpc.Conn).Check(ctx,
		&grpc_health_v1.HealthCheckRequest{Service: plugin.GRPCServiceName})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != grpc_health_v1.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %s", s)
	}
	return nil
}

// close kills the process at once and waits until go-plugin let go of it.
// It is for a plugin that crashed or failed to start.
func (in *instance) close() {
	in.down.CompareAndSwap(instUp, instRestarting)
	in.kill()
	in.client.Kill()
}

// shutdown asks the plugin to exit, kills it if it has not within grace,
// and waits until it is gone.
func (in *instance) shutdown(grace time.Duration) {
	in.down.Store(instStopped)
	// go-plugin's Kill waits for the plugin to answer a Shutdown call
	// without a deadline before its own 2s grace; the timer bounds a
	// plugin that never answers.
	t := time.AfterFunc(grace, in.kill)
	in.client.Kill()
	t.Stop()
	in.kill()
}

// unavailable turns the error of a call made while the plugin is down into
// an Unavailable status naming the plugin, so that callers see
// sdk.ErrUnavailable ("scheduler plugin restarting") rather than a
// transport error, or the Canceled of the closed connection, which they
// would take for the end of their own context. The host sets down before
// it closes the connection, so the Canceled never slips through.
func (in *instance) unavailable(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return err
	}
	down := in.down.Load()
	if down == instUp && in.connected.Load() && in.client.Exited() {
		down = instRestarting // the supervisor has not noticed yet
	}
	switch down {
	case instRestarting:
		return status.Errorf(codes.Unavailable, "%s plugin restarting", in.kind)
	case instStopped:
		return status.Errorf(codes.Unavailable, "%s plugin stopped", in.kind)
	}
	return err
}

func (in *instance) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return in.unavailable(ctx, invoker(ctx, method, req, reply, cc, opts...))
}

func (in *instance) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, in.unavailable(ctx, err)
	}
	return &clientStream{ClientStream: s, ctx: ctx, in: in}, nil
}

// clientStream maps the errors of a stream like those of unary calls.
type clientStream struct {
	grpc.ClientStream
	ctx context.Context // the caller's, which ClientStream.Context may not be read for yet
	in  *instance
}

func (s *clientStream) SendMsg(m any) error {
	return s.in.unavailable(s.ctx, s.ClientStream.SendMsg(m))
}

func (s *clientStream) RecvMsg(m any) error {
	return s.in.unavailable(s.ctx, s.ClientStream.RecvMsg(m))
}
