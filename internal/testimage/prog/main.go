// Command prog is the program inside the test images (package testimage).
// It runs its arguments as a script of actions, in order:
//
//	out:TEXT       print TEXT and a newline to stdout
//	err:TEXT       print TEXT and a newline to stderr
//	outn:N         print "out 1" ... "out N" to stdout, one per line
//	errn:N         print "err 1" ... "err N" to stderr, one per line
//	env:NAME       print "NAME=value" of the environment variable to stdout
//	pwd            print the working directory to stdout
//	id             print "uid=U gid=G" to stdout
//	cat:FILE       copy FILE to stdout
//	write:FILE=TEXT write TEXT to FILE
//	ignore-term    ignore SIGTERM from now on
//	sleep:DUR      sleep for a Go duration, or "inf" for ever
//	listen:ADDR    serve TCP on ADDR in the background: each connection
//	               gets "hello from HOSTNAME\n" and is closed
//	connect:ADDR   connect to ADDR and copy what it sends to stdout
//	connectn:N:ADDR connect to ADDR N times, one after the other, and copy
//	               what each sends to stdout (a failed one prints
//	               "connect error: ..." and the next is tried)
//	lookupbench:N:NAME resolve NAME N times, one after the other, and print
//	               "lookupbench NAME: n=N failed=F p50=DUR p99=DUR max=DUR"
//	lookup:NAME    resolve NAME and print "lookup NAME: ADDR ADDR..." (sorted),
//	               or "lookup NAME: error: ..." (and carry on)
//	alloc:N        allocate and touch N MiB, and keep it
//	exit:N         exit with code N
//
// Without arguments it runs the image's default command. On SIGTERM or
// SIGINT (unless ignored) it prints "got SIGNAL" to stderr and exits with
// 128+N like a shell would: as PID 1 of a container, a Go program without a
// handler would not die of the signal.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var ignoreTerm atomic.Bool
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			if s == syscall.SIGTERM && ignoreTerm.Load() {
				fmt.Fprintln(os.Stderr, "ignored SIGTERM")
				continue
			}
			fmt.Fprintf(os.Stderr, "got %v\n", s)
			os.Exit(128 + int(s.(syscall.Signal)))
		}
	}()
	for _, a := range os.Args[1:] {
		verb, arg, _ := strings.Cut(a, ":")
		if err := run(verb, arg, &ignoreTerm); err != nil {
			fmt.Fprintf(os.Stderr, "prog: %s: %v\n", a, err)
			os.Exit(125)
		}
	}
}

// kept holds what alloc allocated, so the collector cannot free it.
var kept [][]byte

func run(verb, arg string, ignoreTerm *atomic.Bool) error {
	switch verb {
	case "out":
		fmt.Println(arg)
	case "err":
		fmt.Fprintln(os.Stderr, arg)
	case "outn", "errn":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		w, prefix := os.Stdout, "out"
		if verb == "errn" {
			w, prefix = os.Stderr, "err"
		}
		for i := 1; i <= n; i++ {
			fmt.Fprintf(w, "%s %d\n", prefix, i)
		}
	case "env":
		fmt.Printf("%s=%s\n", arg, os.Getenv(arg))
	case "pwd":
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		fmt.Println(wd)
	case "id":
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	case "cat":
		f, err := os.Open(arg)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(os.Stdout, f)
		return err
	case "write":
		file, text, _ := strings.Cut(arg, "=")
		return os.WriteFile(file, []byte(text), 0o644)
	case "ignore-term":
		ignoreTerm.Store(true)
	case "sleep":
		if arg == "inf" {
			select {}
		}
		d, err := time.ParseDuration(arg)
		if err != nil {
			return err
		}
		time.Sleep(d)
	case "listen":
		l, err := net.Listen("tcp", arg)
		if err != nil {
			return err
		}
		host, _ := os.Hostname()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "hello from %s\n", host)
				c.Close()
			}
		}()
	case "connect":
		c, err := net.DialTimeout("tcp", arg, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.Copy(os.Stdout, c)
		return err
	case "connectn":
		ns, addr, _ := strings.Cut(arg, ":")
		n, err := strconv.Atoi(ns)
		if err != nil {
			return err
		}
		for range n {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				fmt.Printf("connect error: %v\n", err)
				continue
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.Copy(os.Stdout, c)
			c.Close()
		}
	case "lookupbench":
		ns, name, _ := strings.Cut(arg, ":")
		n, err := strconv.Atoi(ns)
		if err != nil || n < 1 {
			return fmt.Errorf("count %q", ns)
		}
		var took []time.Duration
		failed := 0
		for range n {
			start := time.Now()
			if _, err := net.LookupHost(name); err != nil {
				failed++
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		at := func(q float64) time.Duration { return took[min(len(took)-1, int(q*float64(len(took))))] }
		fmt.Printf("lookupbench %s: n=%d failed=%d p50=%s p99=%s max=%s\n", name, n, failed, at(0.50), at(0.99), took[len(took)-1])
	case "lookup":
		addrs, err := net.LookupHost(arg)
		if err != nil {
			fmt.Printf("lookup %s: error: %v\n", arg, err)
			break
		}
		slices.Sort(addrs)
		fmt.Printf("lookup %s: %s\n", arg, strings.Join(addrs, " "))
	case "alloc":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			kept = append(kept, b)
		}
	case "exit":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		os.Exit(n)
	default:
		return fmt.Errorf("unknown action %q", verb)
	}
	return nil
}
