package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// logsFlags are the flags of service logs and task logs, docker's.
type logsFlags struct {
	follow     bool
	tail       string
	timestamps bool
	noTrunc    bool
	noTaskIDs  bool
	raw        bool
}

func (f *logsFlags) add(fs *pflag.FlagSet) {
	fs.BoolVarP(&f.follow, "follow", "f", false, "keep printing lines as they are written (and a followed service's new tasks') until interrupted; --timeout does not apply")
	fs.StringVarP(&f.tail, "tail", "n", "all", `number of lines to show from the end of each task's logs, or "all"`)
	fs.BoolVarP(&f.timestamps, "timestamps", "t", false, "show when each line was read")
	fs.BoolVar(&f.noTrunc, "no-trunc", false, "do not truncate task IDs")
	fs.BoolVar(&f.noTaskIDs, "no-task-ids", false, "leave task IDs out of the prefix")
	fs.BoolVar(&f.raw, "raw", false, "print the lines alone, without a prefix")
}

// request returns the request the flags ask for, without its selector.
func (f *logsFlags) request() (*controlv1.TaskLogsRequest, error) {
	req := &controlv1.TaskLogsRequest{Follow: f.follow}
	if f.tail != "all" {
		n, err := strconv.ParseInt(f.tail, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf(`--tail: want a number of lines (0 or more) or "all", got %q`, f.tail)
		}
		req.Tail = proto.Int64(n)
	}
	return req, nil
}

func (c *cli) newServiceLogsCmd() *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs [flags] SERVICE",
		Short: "Print the logs of a service's tasks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			req.Service = args[0]
			return c.printLogs(cmd.Context(), req, f)
		},
	}
	f.add(cmd.Flags())
	return cmd
}

func (c *cli) newTaskCmd() *cobra.Command {
	return group("task", "Manage tasks", c.newTaskLogsCmd(), c.newTaskExecCmd())
}

func (c *cli) newTaskLogsCmd() *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:   "logs [flags] TASK...",
		Short: "Print the logs of tasks",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request()
			if err != nil {
				return err
			}
			req.TaskRefs = args
			return c.printLogs(cmd.Context(), req, f)
		},
	}
	f.add(cmd.Flags())
	return cmd
}

// errLogsIncomplete is returned when the server named logs it could not
// read: the lines that came were printed, and the exit status says that
// some are missing.
var errLogsIncomplete = errors.New("some logs could not be read (see above)")

// printLogs streams the logs req selects to stdout and stderr, as their
// tasks wrote them, each response as it comes. --timeout does not bound
// it: following a service runs until the user interrupts (or the service
// is removed), following tasks until they ended, and a long log takes
// what it takes. An interrupt ends it with no error: the user has seen
// what they wanted.
func (c *cli) printLogs(ctx context.Context, req *controlv1.TaskLogsRequest, f logsFlags) error {
	client, closeConn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	stream, err := client.TaskLogs(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.streamErr(err)
	}
	p := newLogPrinter(c.out, c.errOut, f)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return c.streamErr(err)
		}
		if err := p.print(resp); err != nil {
			return err
		}
	}
	if p.errors > 0 {
		return errLogsIncomplete
	}
	return nil
}

// streamErr is kindInterceptor's wording for a stream's error.
func (c *cli) streamErr(err error) error {
	err = sdk.FromGRPC(err)
	if errors.Is(err, sdk.ErrUnavailable) {
		return fmt.Errorf("%s: %w", c.host, err)
	}
	return err
}

// logPrinter prints log lines with docker's prefix,
// "web.2.abc123def456@node-1 | line", aligned on the longest prefix seen.
type logPrinter struct {
	out, errOut *bufio.Writer
	f           logsFlags
	tasks       map[string]*controlv1.LogTask
	nodes       map[string]string // node ID to name, from the tasks
	width       int
	errors      int
}

func newLogPrinter(out, errOut io.Writer, f logsFlags) *logPrinter {
	return &logPrinter{out: bufio.NewWriter(out), errOut: bufio.NewWriter(errOut), f: f,
		tasks: map[string]*controlv1.LogTask{}, nodes: map[string]string{}}
}

// prefix names a task: service.slot (service.node for a global service's
// task), then the task ID unless --no-task-ids, then @node.
func (p *logPrinter) prefix(lt *controlv1.LogTask) string {
	name := lt.GetServiceName()
	if name == "" {
		name = shortID(lt.GetServiceId(), p.f.noTrunc)
	}
	if lt.GetSlot() > 0 {
		name += "." + strconv.FormatInt(lt.GetSlot(), 10)
	} else {
		name += "." + shortID(lt.GetNodeId(), p.f.noTrunc)
	}
	if !p.f.noTaskIDs {
		name += "." + shortID(lt.GetTaskId(), p.f.noTrunc)
	}
	node := lt.GetNodeName()
	if node == "" {
		node = shortID(lt.GetNodeId(), p.f.noTrunc)
	}
	return name + "@" + node
}

// print writes one response: stdout lines to out, stderr lines and errors
// to errOut.
func (p *logPrinter) print(resp *controlv1.TaskLogsResponse) error {
	for _, lt := range resp.GetTasks() {
		p.tasks[lt.GetTaskId()] = lt
		if lt.GetNodeName() != "" {
			p.nodes[lt.GetNodeId()] = lt.GetNodeName()
		}
		p.width = max(p.width, len(p.prefix(lt)))
	}
	for _, l := range resp.GetLines() {
		w := p.out
		if l.GetStream() == controlv1.LogStream_LOG_STREAM_STDERR {
			w = p.errOut
		}
		if !p.f.raw {
			prefix := l.GetTaskId()
			if lt := p.tasks[l.GetTaskId()]; lt != nil {
				prefix = p.prefix(lt)
			}
			fmt.Fprintf(w, "%-*s | ", p.width, prefix)
		}
		if p.f.timestamps {
			w.WriteString(l.GetTime().AsTime().UTC().Format(time.RFC3339Nano))
			w.WriteByte(' ')
		}
		w.Write(l.GetData())
		w.WriteByte('\n')
	}
	for _, e := range resp.GetErrors() {
		p.errors++
		var who string
		switch lt := p.tasks[e.GetTaskId()]; {
		case lt != nil:
			who = "task " + p.prefix(lt)
		case e.GetTaskId() != "":
			who = "task " + e.GetTaskId()
		case p.nodes[e.GetNodeId()] != "":
			who = "node " + p.nodes[e.GetNodeId()]
		default:
			who = "node " + e.GetNodeId()
		}
		fmt.Fprintf(p.errOut, "error: logs of %s: %s\n", who, e.GetError())
	}
	if err := p.out.Flush(); err != nil {
		return err
	}
	return p.errOut.Flush()
}
