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
// name.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
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
	host, _ := os.Hostname()
	greeting := os.Getenv("GREETING")
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
		go func() {
			err := http.ListenAndServe(":"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Printf("%s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
				fmt.Fprintln(w, line)
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
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, io.LimitReader(resp.Body, 1<<20)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}
