package simexec

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/shoalhq/shoal/sdk"
	"github.com/shoalhq/shoal/sdk/executor"
)

// Exec runs a command in a running simulated task. No process runs: the
// command is interpreted, as a tiny shell that knows what tests ask for.
// A command is either one of these, or "sh -c SCRIPT" (also /bin/sh) whose
// script is such commands separated by ";" or newlines, words quoted with
// '...' or "...":
//
//	echo WORD...        print the words and a newline (">&2" last: to stderr)
//	cat                 copy stdin to stdout
//	exit N              exit with code N
//	true, false         exit 0, 1
//
// Anything else is "not found" on stderr, exit code 127, as a shell says.
// The exit code is the last command's.
func (e *Executor) Exec(ctx context.Context, taskID string, spec executor.ExecSpec, stdio executor.ExecIO) (int, error) {
	if len(spec.Cmd) == 0 {
		return 0, fmt.Errorf("exec: %w", sdk.FieldErrors{{Field: "cmd", Message: "is required"}})
	}
	e.mu.Lock()
	t, ok := e.tasks[taskID]
	var ph phase
	if ok {
		ph = t.phase
	}
	e.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("exec in task %s: no such task: %w", taskID, sdk.ErrNotFound)
	}
	if ph != running {
		return 0, fmt.Errorf("exec in task %s: its process does not run: %w", taskID, sdk.ErrFailedPrecondition)
	}
	script := [][]string{spec.Cmd}
	if len(spec.Cmd) == 3 && (spec.Cmd[0] == "sh" || spec.Cmd[0] == "/bin/sh") && spec.Cmd[1] == "-c" {
		script = parseScript(spec.Cmd[2])
	}
	// The interpretation may block on stdin: it runs aside, and its writes
	// stop once Exec returned.
	g := &gatedIO{out: stdio.Stdout, err: stdio.Stderr, open: true}
	if spec.Tty {
		g.err = stdio.Stdout
	}
	done := make(chan int, 1)
	go func() { done <- interpret(script, stdio.Stdin, g) }()
	select {
	case code := <-done:
		return code, nil
	case <-ctx.Done():
		g.close()
		return 0, ctx.Err()
	}
}

// gatedIO writes to an exec's streams until closed.
type gatedIO struct {
	mu       sync.Mutex
	out, err io.Writer
	open     bool
}

func (g *gatedIO) write(stderr bool, s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.out
	if stderr {
		w = g.err
	}
	if g.open && w != nil {
		_, _ = io.WriteString(w, s)
	}
}

func (g *gatedIO) close() {
	g.mu.Lock()
	g.open = false
	g.mu.Unlock()
}

func interpret(script [][]string, stdin io.Reader, g *gatedIO) int {
	code := 0
	for _, words := range script {
		if len(words) == 0 {
			continue
		}
		toErr := false
		if n := len(words); n > 1 && words[n-1] == ">&2" {
			toErr, words = true, words[:n-1]
		}
		switch words[0] {
		case "echo":
			g.write(toErr, strings.Join(words[1:], " ")+"\n")
			code = 0
		case "cat":
			code = 0
			if stdin == nil {
				continue
			}
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					g.write(toErr, string(buf[:n]))
				}
				if err != nil {
					break
				}
			}
		case "exit":
			n := 0
			if len(words) > 1 {
				v, err := strconv.Atoi(words[1])
				if err != nil {
					g.write(true, "sh: exit: "+words[1]+": numeric argument required\n")
					return 2
				}
				n = v & 0xff
			}
			return n
		case "true":
			code = 0
		case "false":
			code = 1
		default:
			g.write(true, "sh: "+words[0]+": not found\n")
			code = 127
		}
	}
	return code
}

// parseScript splits a script into commands and their words.
func parseScript(s string) [][]string {
	var (
		cmds   [][]string
		words  []string
		word   strings.Builder
		inWord bool
	)
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	endCmd := func() {
		endWord()
		cmds = append(cmds, words)
		words = nil
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t':
			endWord()
		case ';', '\n':
			endCmd()
		case '\'', '"':
			inWord = true
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				j = len(s) - i - 1
			}
			word.WriteString(s[i+1 : i+1+j])
			i += j + 1
		default:
			inWord = true
			word.WriteByte(c)
		}
	}
	endCmd()
	return cmds
}
