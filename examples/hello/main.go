// Command hello is the example service of shoal's README and `make run`: a
// static program that `make run` packs into a local image
// (shoal.local/hello:1), so the example runs without a registry.
//
// It prints a greeting, then a line every INTERVAL (default 2s) to stdout;
// with PORT set it also answers HTTP requests on that port with its
// greeting. GREETING changes the greeting (a service update shows the new
// one in the logs); the image sets HELLO_VERSION, which the greeting
// shows. EXIT_AFTER (a Go duration) makes it exit with EXIT_CODE
// (default 1) after that long, to watch restart policies at work. On
// SIGTERM it says goodbye on stderr and exits 0.
//
// `hello health` is a health check for it (the hello-health image's
// HEALTHCHECK, or a service's check in CMD form): it prints "ok" and exits
// 0, or, with UNHEALTHY set in the container's environment, says so and
// exits 1 (`shoal service update --env-add UNHEALTHY=1` makes a rolling
// update whose new tasks turn unhealthy).
//
// `hello get URL` fetches URL and prints the answer's body (exit 1 on an
// error or a status other than 200): in a task, `shoal task exec client.1
// -- /prog get http://api:8080/` shows one service reaching another by its
// name. `hello cat FILE` prints a file (a secret or a config in a task).
//
// For the stack example (examples/stack): GREETING_FILE reads the greeting
// from a file (a config); STATE_DIR keeps a visit counter there (a named
// volume), counted on each HTTP request; PASSWORD_FILE (a secret) makes the
// HTTP server require that password in the X-Password header; BACKEND is a
// URL fetched on each HTTP request, its answer appended to the reply (a
// service reaching another by name), and BACKEND_PASSWORD_FILE the password
// it (and `get`) sends.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "health" {
		if v := os.Getenv("UNHEALTHY"); v != "" {
			fmt.Printf("unhealthy: UNHEALTHY=%s\n", v)
			os.Exit(1)
		}
		fmt.Println("ok")
		os.Exit(0)
	}
	if len(os.Args) == 3 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	if len(os.Args) == 3 && os.Args[1] == "cat" {
		data, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(data)
		os.Exit(0)
	}
	host, _ := os.Hostname()
	greeting := os.Getenv("GREETING")
	if f := os.Getenv("GREETING_FILE"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "GREETING_FILE:", err)
			os.Exit(2)
		}
		greeting = strings.TrimSpace(string(data))
	}
	if greeting == "" {
		greeting = "hello"
	}
	line := fmt.Sprintf("%s from %s", greeting, host)
	if v := os.Getenv("HELLO_VERSION"); v != "" {
		line += " (v" + v + ")"
	}
	interval := 2 * time.Second
	if d, err := time.ParseDuration(os.Getenv("INTERVAL")); err == nil && d > 0 {
		interval = d
	}
	fmt.Println(line)

	if port := os.Getenv("PORT"); port != "" {
		password := readPassword("PASSWORD_FILE")
		visits := newCounter(os.Getenv("STATE_DIR"))
		backend := os.Getenv("BACKEND")
		go func() {
			err := http.ListenAndServe(":"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Printf("%s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
				if password != "" && r.Header.Get("X-Password") != password {
					http.Error(w, "wrong password", http.StatusForbidden)
					return
				}
				reply := line
				if visits != nil {
					n, err := visits.next()
					if err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					reply += fmt.Sprintf(", visit %d", n)
				}
				if backend != "" {
					body, err := fetch(backend)
					if err != nil {
						http.Error(w, "backend: "+err.Error(), http.StatusBadGateway)
						return
					}
					reply += " | " + strings.TrimSpace(body)
				}
				fmt.Fprintln(w, reply)
			}))
			fmt.Fprintln(os.Stderr, "http:", err)
			os.Exit(2)
		}()
	}

	var exit <-chan time.Time
	if d, err := time.ParseDuration(os.Getenv("EXIT_AFTER")); err == nil && d > 0 {
		exit = time.After(d)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-tick.C:
			fmt.Printf("%s: tick %d\n", line, n)
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "%s: got %v, goodbye\n", host, s)
			os.Exit(0)
		case <-exit:
			code, err := strconv.Atoi(os.Getenv("EXIT_CODE"))
			if err != nil {
				code = 1
			}
			fmt.Fprintf(os.Stderr, "%s: exiting with code %d as EXIT_AFTER asked\n", host, code)
			os.Exit(code)
		}
	}
}

// get fetches url, prints the body and returns the exit code.
func get(url string) int {
	body, err := fetch(url)
	fmt.Print(body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// fetch GETs url with the password, if any; a status other than 200 is an
// error, the body still returned.
func fetch(url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if p := readPassword("BACKEND_PASSWORD_FILE"); p != "" {
		req.Header.Set("X-Password", p)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return string(body), err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("%s", resp.Status)
	}
	return string(body), nil
}

// readPassword is the content of the file the environment variable env
// names, trimmed; "" without one.
func readPassword(env string) string {
	f := os.Getenv(env)
	if f == "" {
		return ""
	}
	data, err := os.ReadFile(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, env+":", err)
		os.Exit(2)
	}
	return strings.TrimSpace(string(data))
}

// counter counts visits in a file of dir, so the count outlives the
// container when dir is a volume.
type counter struct {
	mu   sync.Mutex
	path string
}

func newCounter(dir string) *counter {
	if dir == "" {
		return nil
	}
	return &counter{path: filepath.Join(dir, "visits")}
}

func (c *counter) next() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	if data, err := os.ReadFile(c.path); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	n++
	return n, os.WriteFile(c.path, []byte(strconv.Itoa(n)+"\n"), 0o644)
}
