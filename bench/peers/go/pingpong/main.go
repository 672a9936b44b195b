// pingpong: two goroutines bounce an int over two unbuffered channels n times: main sends on
// ping and receives on pong; its partner receives, adds one and sends back. Metric:
// ns_per_roundtrip = elapsed / n, elapsed from starting the partner to the last reply.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	n := flag.Int64("n", 1000000, "round trips")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "pingpong: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	ping, pong := make(chan int64), make(chan int64)
	t0 := time.Now()
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	v := int64(0)
	for i := int64(0); i < *n; i++ {
		ping <- v
		v = <-pong
	}
	elapsed := time.Since(t0)
	close(ping)
	if v != *n {
		fmt.Fprintf(os.Stderr, "pingpong: final value %d, want %d\n", v, *n)
		os.Exit(1)
	}
	fmt.Printf("RESULT ns_per_roundtrip=%.3f ns\n", float64(elapsed.Nanoseconds())/float64(*n))
	fmt.Fprintf(os.Stderr, "go pingpong: n=%d gomaxprocs=%d elapsed=%.3f ms\n", *n,
		runtime.GOMAXPROCS(0), float64(elapsed.Nanoseconds())/1e6)
}
