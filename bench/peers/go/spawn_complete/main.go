// spawn_complete: the cost of starting and finishing a short goroutine. The main goroutine
// starts n goroutines that each call wg.Done() and return, then waits. Metric: ns_per_task.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func main() {
	n := flag.Int64("n", 1000000, "number of tasks")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "spawn_complete: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	fmt.Printf("RESULT ns_per_task=%.3f ns\n", float64(elapsed.Nanoseconds())/float64(*n))
	fmt.Fprintf(os.Stderr, "go spawn_complete: n=%d gomaxprocs=%d elapsed=%.3f ms\n", *n,
		runtime.GOMAXPROCS(0), float64(elapsed.Nanoseconds())/1e6)
}
