// echo: Go's net echo server, the peer of goro's examples/echo_server.cpp (bench_goro_echo):
// one goroutine per connection, each with a plain Read/Write loop over a 4 KiB buffer (the
// same work as the goro server; io.Copy would splice(2) socket to socket instead).
//
// It prints "echo: listening on <ip:port>" on stdout as soon as it accepts connections and
// serves until killed. The load, the latency histogram and the server-CPU measurement are
// bench/echo_client.cpp's (bench_echo_client -server <this binary>); see bench/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	// One descriptor per connection: the soft limit up to the hard one (Go 1.19 also does
	// this itself when package os is imported).
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: listen %s: %v\n", *addr, err)
		os.Exit(1)
	}
	fmt.Printf("echo: listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
			time.Sleep(time.Millisecond) // out of descriptors: try again shortly
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "echo: accept: %v\n", err)
			os.Exit(1)
		}
		go serve(c)
	}
}
