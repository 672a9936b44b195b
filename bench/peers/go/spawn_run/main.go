// spawn_run: n goroutines each sum 0..999 into an escaping sink, joined with a sync.WaitGroup.
// Metric: ns_per_task = elapsed / n, elapsed from before the first `go` to wg.Wait returning.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

var sink int64 // package-level: every task's store escapes (a plain MOV, like goro's)

func work() {
	s := int64(0)
	for i := int64(0); i < 1000; i++ {
		s += i
	}
	sink = s
}

func main() {
	n := flag.Int64("n", 10000, "number of tasks")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "spawn_run: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}

	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		go func() {
			work()
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)

	if sink != 499500 {
		fmt.Fprintf(os.Stderr, "spawn_run: bad sink %d\n", sink)
		os.Exit(1)
	}
	fmt.Printf("RESULT ns_per_task=%.3f ns\n", float64(elapsed.Nanoseconds())/float64(*n))
	fmt.Fprintf(os.Stderr, "go spawn_run: n=%d gomaxprocs=%d elapsed=%.3f ms\n", *n,
		runtime.GOMAXPROCS(0), float64(elapsed.Nanoseconds())/1e6)
}
