// mutex: w goroutines (8) each lock a shared sync.Mutex n/w times, increment a shared counter
// and unlock (a tiny critical section). Metric: ns_per_op = elapsed / n (one lock + unlock per
// op).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

var (
	mu      sync.Mutex
	counter int64 // guarded by mu
)

func main() {
	n := flag.Int64("n", 1000000, "lock/unlock pairs in all")
	w := flag.Int64("w", 8, "worker goroutines")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *w <= 0 || *w > 1024 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "mutex: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var workers sync.WaitGroup
	t0 := time.Now()
	workers.Add(int(*w))
	for k := int64(0); k < *w; k++ {
		count := *n*(k+1) / *w - *n*k / *w
		go func() {
			for i := int64(0); i < count; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			workers.Done()
		}()
	}
	workers.Wait()
	elapsed := time.Since(t0)
	if counter != *n {
		fmt.Fprintf(os.Stderr, "mutex: counter %d, want %d\n", counter, *n)
		os.Exit(1)
	}
	fmt.Printf("RESULT ns_per_op=%.3f ns\n", float64(elapsed.Nanoseconds())/float64(*n))
	fmt.Fprintf(os.Stderr, "go mutex: n=%d w=%d gomaxprocs=%d elapsed=%.3f ms\n", *n, *w,
		runtime.GOMAXPROCS(0), float64(elapsed.Nanoseconds())/1e6)
}
