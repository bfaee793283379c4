package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// exitStatus is an error that makes the command exit with this status,
// printing nothing: the exit status of a command run with task exec.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// execChunk is the most stdin one message carries (the server's bound).
const execChunk = 32 << 10

type execFlags struct {
	interactive, tty bool
	env              []string
	workdir, user    string
}

func (c *cli) newTaskExecCmd() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] TASK -- COMMAND [ARG...]",
		Short: "Run a command in a running task, on whichever node runs it",
		Long: `Run a command in a running task's container, on whichever node runs it,
through the managers (the node needs no open port). TASK is a task's ID, ID
prefix or name (web.1). The command's output comes back as it is written,
stdout to stdout and stderr to stderr; shoal exits with the command's exit
status. With -i the command reads this terminal's stdin; with -t it gets a
terminal (-it for a shell).`,
		Example: `  shoal task exec web.1 -- cat /etc/hostname
  shoal task exec -it web.1 -- sh`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			task, command := args[0], args[1:]
			if len(command) > 0 && command[0] == "--" {
				command = command[1:]
			}
			if len(command) == 0 {
				return errors.New("a command is required after TASK")
			}
			return c.taskExec(cmd.Context(), task, command, f)
		},
	}
	// Flags after TASK belong to the command, as with docker exec.
	cmd.Flags().SetInterspersed(false)
	fs := cmd.Flags()
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "pass stdin to the command")
	fs.BoolVarP(&f.tty, "tty", "t", false, "give the command a terminal")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (NAME=value)")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "the command's working directory (default: the task's)")
	fs.StringVarP(&f.user, "user", "u", "", "user[:group] or uid[:gid] to run as (default: the task's)")
	return cmd
}

// taskExec runs the command and returns exitStatus with its exit status
// (nil for 0). --timeout does not bound it: a shell lasts what it lasts.
func (c *cli) taskExec(ctx context.Context, task string, command []string, f execFlags) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client, closeConn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer closeConn()
	stdin := c.in
	if stdin == nil {
		stdin = os.Stdin
	}
	start := &controlv1.TaskExecStart{Task: task, Cmd: command, Env: f.env, Tty: f.tty,
		WorkingDir: f.workdir, User: f.user, Stdin: f.interactive}
	// With -t and a terminal, its size goes along, and changes follow.
	termFd := -1
	if f.tty {
		if file, ok := c.out.(*os.File); ok && isTerminal(file) {
			termFd = int(file.Fd())
		} else if file, ok := stdin.(*os.File); ok && isTerminal(file) {
			termFd = int(file.Fd())
		}
		if termFd >= 0 {
			start.Size = termSize(termFd)
		}
	}
	stream, err := client.TaskExec(ctx)
	if err != nil {
		return c.streamErr(err)
	}
	var mu sync.Mutex // Send is not safe for concurrent use
	send := func(m *controlv1.TaskExecRequest) error {
		mu.Lock()
		defer mu.Unlock()
		return stream.Send(m)
	}
	if err := send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_Start{Start: start}}); err != nil {
		return c.recvErr(ctx, stream)
	}
	first, err := stream.Recv()
	if err != nil {
		return c.recvErr(ctx, stream, err)
	}
	if first.GetStarted() == nil {
		return errors.New("the manager answered the exec without starting it")
	}
	// The command runs: the local terminal goes raw with -it, so that
	// every key (Ctrl-C included) goes to the command, and comes back
	// as it was however the command ends.
	if f.tty && f.interactive {
		if file, ok := stdin.(*os.File); ok && isTerminal(file) {
			restore, err := makeRaw(int(file.Fd()))
			if err == nil {
				defer restore()
			}
		}
	}
	if termFd >= 0 {
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-winch:
					if sz := termSize(termFd); sz != nil {
						_ = send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_Resize{Resize: sz}})
					}
				}
			}
		}()
	}
	if f.interactive {
		// This goroutine may outlive the command while it waits on the
		// terminal: the process exits right after.
		go func() {
			buf := make([]byte, execChunk)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
						return
					}
				}
				if err != nil {
					_ = send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_StdinClosed{StdinClosed: true}})
					return
				}
			}
		}()
	} else {
		_ = send(&controlv1.TaskExecRequest{Msg: &controlv1.TaskExecRequest_StdinClosed{StdinClosed: true}})
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the exec ended without the command's exit status")
			}
			if ctx.Err() != nil {
				return exitStatus(130) // interrupted: as a shell reports SIGINT
			}
			return c.streamErr(err)
		}
		switch m := resp.GetMsg().(type) {
		case *controlv1.TaskExecResponse_Stdout:
			if _, err := c.out.Write(m.Stdout); err != nil {
				return err
			}
		case *controlv1.TaskExecResponse_Stderr:
			if _, err := c.errOut.Write(m.Stderr); err != nil {
				return err
			}
		case *controlv1.TaskExecResponse_ExitCode:
			if m.ExitCode == 0 {
				return nil
			}
			return exitStatus(m.ExitCode)
		}
	}
}

// recvErr is the error that ended the stream, from its next Recv (a Send
// that fails tells nothing) or the one given.
func (c *cli) recvErr(ctx context.Context, stream controlv1.Control_TaskExecClient, errs ...error) error {
	err := errors.Join(errs...)
	if err == nil {
		_, err = stream.Recv()
	}
	if ctx.Err() != nil {
		return exitStatus(130)
	}
	if err == nil || errors.Is(err, io.EOF) {
		return errors.New("the manager ended the exec")
	}
	return c.streamErr(err)
}

// termSize is the size of the terminal fd, or nil.
func termSize(fd int) *controlv1.TerminalSize {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return nil
	}
	return &controlv1.TerminalSize{Width: uint32(ws.Col), Height: uint32(ws.Row)}
}

// makeRaw puts the terminal fd in raw mode, as golang.org/x/term's MakeRaw
// does, and returns how to restore it.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
