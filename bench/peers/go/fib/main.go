// fib: fork-join fib(n): every call with n >= 2 starts one goroutine for fib(n-1), computes
// fib(n-2) itself and joins the child with a sync.WaitGroup of its own. Metric: ms.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func fib(n int) int {
	if n < 2 {
		return n
	}
	var wg sync.WaitGroup
	var a int
	wg.Add(1)
	go func() {
		a = fib(n - 1)
		wg.Done()
	}()
	b := fib(n - 2)
	wg.Wait()
	return a + b
}

func fibSeq(n int) int {
	if n < 2 {
		return n
	}
	return fibSeq(n-1) + fibSeq(n-2)
}

func main() {
	n := flag.Int("n", 27, "fib argument")
	procs := flag.Int("procs", 1, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n < 0 || *n > 40 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "fib: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}

	t0 := time.Now()
	r := fib(*n) // main is a goroutine: it is the root task
	elapsed := time.Since(t0)

	if want := fibSeq(*n); r != want {
		fmt.Fprintf(os.Stderr, "fib: got %d, want %d\n", r, want)
		os.Exit(1)
	}
	fmt.Printf("RESULT ms=%.3f ms\n", float64(elapsed.Nanoseconds())/1e6)
	fmt.Fprintf(os.Stderr, "go fib(%d)=%d gomaxprocs=%d\n", *n, r, runtime.GOMAXPROCS(0))
}
