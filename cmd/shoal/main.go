// Command shoal is the one binary of a shoal cluster: `shoal agent` runs the
// node daemon, and every other subcommand is the command-line client of the
// control API, with the verbs and tables of `docker service`.
//
// The CLI is thin: each command turns its flags into control API requests
// and prints the replies. The server validates; the CLI only parses.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// version is the version of this binary, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

const (
	// defaultHost is the control socket every manager serves; it is
	// root-only, so local access needs no certificate.
	defaultHost = "unix:///run/shoal/control.sock"
	// defaultTimeout bounds each command, including the wait for a service
	// to converge: long enough for a leader election, short enough that a
	// script does not hang on an unreachable cluster.
	defaultTimeout = 30 * time.Second
	// pollInterval is how often progress polls the tasks of a service.
	pollInterval = 250 * time.Millisecond
	// managerServerName is the name every manager certificate carries, so a
	// client verifies whichever manager it dials by address.
	managerServerName = "shoal-manager"
	// settleTime is how long tasks must be pending, with a reason and
	// unchanged, before progress stops waiting for them: a reason such as
	// "no suitable node" will not resolve by itself.
	settleTime = 2 * time.Second
)

// cli holds what every command shares: the connection flags, where to
// print, and the clock and pacing of progress (shortened in tests).
type cli struct {
	// in is task exec -i's stdin; nil: os.Stdin.
	in     io.Reader
	out    io.Writer
	errOut io.Writer
	// tty and errTTY are true when out and errOut are terminals: progress
	// then rewrites one line.
	tty    bool
	errTTY bool
	now    func() time.Time
	getenv func(string) string
	poll   time.Duration
	settle time.Duration
	// quiet, when set, replaces --timeout in how long waiting without
	// --timeout goes on while nothing changes (see quietLimit).
	quiet time.Duration

	host    string
	tlsCert string
	tlsKey  string
	tlsCA   string
	timeout time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{
		out:    os.Stdout,
		errOut: os.Stderr,
		tty:    isTerminal(os.Stdout),
		errTTY: isTerminal(os.Stderr),
		now:    time.Now,
		getenv: os.Getenv,
		poll:   pollInterval,
		settle: settleTime,
	}
	code := c.execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// execute runs the command line args and returns the exit status, having
// printed any error.
func (c *cli) execute(ctx context.Context, args []string) int {
	root := c.newRootCmd()
	root.SetArgs(args)
	root.SetOut(c.out)
	root.SetErr(c.errOut)
	if err := root.ExecuteContext(ctx); err != nil {
		var status exitStatus
		if errors.As(err, &status) {
			return int(status) // task exec: the command's own status
		}
		printError(c.errOut, err)
		return 1
	}
	return 0
}

func (c *cli) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "shoal",
		Short:         "Run and manage a shoal cluster",
		Args:          cobra.ArbitraryArgs,
		RunE:          runGroup,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help'.", err, cmd.CommandPath())
	})
	root.SetHelpCommand(newHelpCmd())
	pf := root.PersistentFlags()
	pf.StringVar(&c.host, "host", c.env("SHOAL_HOST", defaultHost),
		`control API address: "unix:///path" or "tcp://host:port" (env SHOAL_HOST)`)
	pf.StringVar(&c.tlsCert, "tls-cert", c.env("SHOAL_TLS_CERT", ""), "client certificate file, for tcp:// (env SHOAL_TLS_CERT)")
	pf.StringVar(&c.tlsKey, "tls-key", c.env("SHOAL_TLS_KEY", ""), "client key file, for tcp:// (env SHOAL_TLS_KEY)")
	pf.StringVar(&c.tlsCA, "tls-ca", c.env("SHOAL_TLS_CA", ""), "cluster root CA file, for tcp:// (env SHOAL_TLS_CA)")
	pf.DurationVar(&c.timeout, "timeout", defaultTimeout,
		"bound on each call to the cluster; given, it also bounds the whole command, waiting for a service to converge included")

	root.AddCommand(
		newAgentCmd(),
		c.newServiceCmd(),
		c.newNodeCmd(),
		c.newNetworkCmd(),
		c.newSecretCmd(),
		c.newConfigCmd(),
		c.newStackCmd(),
		c.newTaskCmd(),
		c.newClusterCmd(),
		c.newJoinTokenCmd(),
		c.newImageCmd(),
		c.newVolumeCmd(),
		c.newVersionCmd(),
		c.newEventsCmd(),
	)
	c.addCompletions(root)
	return root
}

func (c *cli) env(key, def string) string {
	if v := c.getenv(key); v != "" {
		return v
	}
	return def
}

// group returns a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs, RunE: runGroup}
	cmd.AddCommand(subs...)
	return cmd
}

// runGroup runs a command that only holds subcommands (the root too), which
// cobra found with args left over: the first is a subcommand it does not
// know, an error, so that a script does not take `shoal service rollbak web`
// for done. With no args it prints the help and succeeds, as
// `docker service` does: asking what a group holds is not a failure.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	return unknownCommand(cmd, args[0])
}

// unknownCommand is cobra's error for an unknown subcommand, with its
// suggestions.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return fmt.Errorf("%s\nRun '%s --help' for usage.", msg, cmd.CommandPath())
}

// newHelpCmd is `shoal help [COMMAND]`, which fails on a command that does
// not exist, where cobra's prints the root's usage and succeeds.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				return unknownCommand(target, rest[0])
			}
			return target.Help()
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, _, err := cmd.Root().Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// call runs fn with a control client and a context bounded by --timeout.
func (c *cli) call(cmd *cobra.Command, fn func(ctx context.Context, client controlv1.ControlClient) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout)
	defer cancel()
	return c.callCtx(ctx, fn)
}

// callWaiting is call for a command that waits for a service to converge,
// which takes as long as its rollout: each call to the cluster is bounded
// by --timeout, and the whole command only when --timeout was given. (An
// update of 10 replicas one at a time, each watched for 5 s, takes longer
// than the default bound; waiting gives up instead when nothing changes for
// long, see waitConverged.)
func (c *cli) callWaiting(cmd *cobra.Command, fn func(ctx context.Context, client controlv1.ControlClient) error) error {
	if f := cmd.Flags().Lookup("timeout"); f != nil && f.Changed {
		return c.call(cmd, fn)
	}
	return c.callCtx(cmd.Context(), fn)
}

func (c *cli) callCtx(ctx context.Context, fn func(ctx context.Context, client controlv1.ControlClient) error) error {
	client, closeConn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	return fn(ctx, client)
}

// dial returns a client of the control API at --host. It does no I/O: the
// connection is made by the first call and bounded by that call's context.
// Errors of the calls come back as sdk error kinds (sdk.FromGRPC).
func (c *cli) dial(ctx context.Context) (controlv1.ControlClient, func() error, error) {
	conn, err := c.dialConn(ctx)
	if err != nil {
		return nil, nil, err
	}
	return controlv1.NewControlClient(conn), conn.Close, nil
}

// dialConn is the connection behind dial, for the manager's other services
// (Events).
func (c *cli) dialConn(_ context.Context) (*grpc.ClientConn, error) {
	target, creds, err := c.transport()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageBytes)),
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(kindInterceptor(c.host), callTimeout(c.timeout)))
	if err != nil {
		return nil, fmt.Errorf("--host %s: %w", c.host, err)
	}
	return conn, nil
}

// transport turns --host and the TLS flags into a gRPC target and its
// credentials. The unix socket is root-only on the manager, so it carries no
// TLS; a tcp:// host is always mutual TLS, verified against the cluster CA.
func (c *cli) transport() (string, credentials.TransportCredentials, error) {
	if path, ok := strings.CutPrefix(c.host, "unix://"); ok {
		if path == "" {
			return "", nil, fmt.Errorf("--host %q: no socket path", c.host)
		}
		if filepath.IsAbs(path) {
			return "unix://" + path, insecure.NewCredentials(), nil
		}
		return "unix:" + path, insecure.NewCredentials(), nil
	}
	addr, ok := strings.CutPrefix(c.host, "tcp://")
	if !ok {
		return "", nil, fmt.Errorf(`--host %q: want "unix:///path" or "tcp://host:port"`, c.host)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", nil, fmt.Errorf("--host %q: %w", c.host, err)
	}
	if c.tlsCert == "" || c.tlsKey == "" || c.tlsCA == "" {
		return "", nil, fmt.Errorf("--host %s: --tls-cert, --tls-key and --tls-ca are required for tcp://", c.host)
	}
	cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
	if err != nil {
		return "", nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	caPEM, err := os.ReadFile(c.tlsCA)
	if err != nil {
		return "", nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return "", nil, fmt.Errorf("--tls-ca %s: no PEM certificate found", c.tlsCA)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   managerServerName,
		MinVersion:   tls.VersionTLS13,
	}
	return "dns:///" + addr, credentials.NewTLS(cfg), nil
}

// kindInterceptor turns gRPC status errors into sdk error kinds, keeping the
// server's message, and says which host could not be reached when the
// connection itself failed.
func kindInterceptor(host string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		switch {
		case err == nil:
			return nil
		case errors.Is(ctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
			// The server may give up on the deadline before ctx notices.
			return fmt.Errorf("no answer from %s within --timeout: %w", host, context.DeadlineExceeded)
		case status.Code(err) == codes.Unavailable && cc.GetState() != connectivity.Ready:
			return fmt.Errorf("cannot reach %s: %w", host, sdk.FromGRPC(err))
		}
		return sdk.FromGRPC(err)
	}
}

// callTimeout bounds each call by --timeout, also when the command's
// context is not (see callWaiting).
func callTimeout(timeout time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// maxConflictRetries bounds how often a read-modify-write is retried when
// another writer changed the object in between: enough to get through a
// burst of concurrent updates, few enough to give up on a livelock.
const maxConflictRetries = 5

// versionConflict is in the message of the FailedPrecondition error that an
// update carrying a stale version gets.
const versionConflict = "version conflict"

// retryConflicts runs fn, a read-modify-write, again while it fails with a
// version conflict, at most maxConflictRetries more times.
func retryConflicts(fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || attempt == maxConflictRetries || !isVersionConflict(err) {
			return err
		}
	}
}

func isVersionConflict(err error) bool {
	return errors.Is(err, sdk.ErrFailedPrecondition) && strings.Contains(err.Error(), versionConflict)
}

// versionInfo is what `shoal version --format json` prints.
type versionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

func (c *cli) newVersionCmd() *cobra.Command {
	var format outputFormat
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := versionInfo{Version: binaryVersion(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
			if format.structured() {
				return writeOne(c.out, &format, v)
			}
			fmt.Fprintf(c.out, "shoal %s %s %s/%s\n", v.Version, v.GoVersion, v.OS, v.Arch)
			return nil
		},
	}
	addOutputFlag(cmd.Flags(), &format, "")
	return cmd
}

// binaryVersion is the version set at build time or, failing that, the
// module version `go install` recorded.
func binaryVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// printError prints err for people: "Error: <message>", one line per error
// of a joined error and one line per field of a validation failure.
func printError(w io.Writer, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			printError(w, e)
		}
		return
	}
	var fe sdk.FieldErrors
	if errors.As(err, &fe) {
		fmt.Fprintln(w, "Error: invalid argument:")
		for _, f := range fe {
			fmt.Fprintf(w, "  %s: %s\n", f.Field, f.Message)
		}
		return
	}
	fmt.Fprintf(w, "Error: %s\n", err)
}

// isTerminal reports whether f is a character device, i.e. a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
