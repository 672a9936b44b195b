// yield: two goroutines on ONE processor (GOMAXPROCS=1) each call runtime.Gosched() n times.
// Metric: ns_per_switch = elapsed / (2n), elapsed from starting both to both finished.
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
	n := flag.Int64("n", 10000000, "yields per task")
	flag.Parse()
	if *n <= 0 {
		fmt.Fprintln(os.Stderr, "yield: -n must be positive")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)

	var wg sync.WaitGroup
	wg.Add(2)
	// main is a goroutine on the only P: neither task runs before main blocks in wg.Wait.
	t0 := time.Now()
	for k := 0; k < 2; k++ {
		go func() {
			for i := int64(0); i < *n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)

	fmt.Printf("RESULT ns_per_switch=%.3f ns\n", float64(elapsed.Nanoseconds())/float64(2**n))
	fmt.Fprintf(os.Stderr, "go yield: n=%d gomaxprocs=%d elapsed=%.3f s\n", *n,
		runtime.GOMAXPROCS(0), elapsed.Seconds())
}
