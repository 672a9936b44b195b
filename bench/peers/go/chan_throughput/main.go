// chan_throughput: p producers and p consumers move n ints (0..n-1, split evenly among the
// producers) through one channel buffered to cap (1024). A WaitGroup tracks the producers;
// once they are done the channel is closed, and the consumers' range loops end. Metrics:
// ns_per_op = elapsed / n, mops = n / elapsed (µs).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	n := flag.Int64("n", 10000000, "values sent in all")
	p := flag.Int64("p", 1, "producers (and as many consumers)")
	capacity := flag.Int("cap", 1024, "channel capacity")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *p <= 0 || *p > 1024 || *capacity < 0 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "chan_throughput: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var total int64
	ch := make(chan int64, *capacity)
	var producers, consumers sync.WaitGroup
	t0 := time.Now()
	producers.Add(int(*p))
	consumers.Add(int(*p))
	for k := int64(0); k < *p; k++ {
		lo, hi := *n*k / *p, *n*(k+1) / *p
		go func() {
			for v := lo; v < hi; v++ {
				ch <- v
			}
			producers.Done()
		}()
		go func() {
			sum := int64(0)
			for v := range ch {
				sum += v
			}
			atomic.AddInt64(&total, sum)
			consumers.Done()
		}()
	}
	go func() {
		producers.Wait()
		close(ch)
	}()
	consumers.Wait()
	elapsed := time.Since(t0)
	if want := *n * (*n - 1) / 2; total != want {
		fmt.Fprintf(os.Stderr, "chan_throughput: sum %d, want %d\n", total, want)
		os.Exit(1)
	}
	ns := float64(elapsed.Nanoseconds())
	fmt.Printf("RESULT ns_per_op=%.3f ns\n", ns/float64(*n))
	fmt.Printf("RESULT mops=%.3f Mop/s\n", float64(*n)*1e3/ns)
	fmt.Fprintf(os.Stderr, "go chan_throughput: n=%d p=%d cap=%d gomaxprocs=%d elapsed=%.3f ms\n",
		*n, *p, *capacity, runtime.GOMAXPROCS(0), ns/1e6)
}
