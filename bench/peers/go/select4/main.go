// select4: one receiver (main) selects over 4 channels (unbuffered unless -cap), each fed by
// its own sender goroutine that sends n/4 ints; the receiver performs n selects in all.
// Metric: ns_per_op = elapsed / n (one select and one send per op).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	n := flag.Int64("n", 4000000, "values received in all (a multiple of 4)")
	capacity := flag.Int("cap", 0, "capacity of each channel (0: unbuffered)")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *n%4 != 0 || *capacity < 0 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "select4: bad arguments (-n must be a positive multiple of 4)")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var ch [4]chan int64
	for k := range ch {
		ch[k] = make(chan int64, *capacity)
	}
	per := *n / 4
	var sum int64
	var got [4]int64
	t0 := time.Now()
	for k := 0; k < 4; k++ {
		c := ch[k]
		go func() {
			for v := int64(0); v < per; v++ {
				c <- v
			}
		}()
	}
	for i := int64(0); i < *n; i++ {
		select {
		case v := <-ch[0]:
			sum += v
			got[0]++
		case v := <-ch[1]:
			sum += v
			got[1]++
		case v := <-ch[2]:
			sum += v
			got[2]++
		case v := <-ch[3]:
			sum += v
			got[3]++
		}
	}
	elapsed := time.Since(t0)
	if want := 4 * (per * (per - 1) / 2); sum != want || got[0] != per || got[1] != per ||
		got[2] != per || got[3] != per {
		fmt.Fprintf(os.Stderr, "select4: sum %d (want %d), per channel %v\n", sum, want, got)
		os.Exit(1)
	}
	fmt.Printf("RESULT ns_per_op=%.3f ns\n", float64(elapsed.Nanoseconds())/float64(*n))
	fmt.Fprintf(os.Stderr, "go select4: n=%d cap=%d gomaxprocs=%d elapsed=%.3f ms\n", *n,
		*capacity, runtime.GOMAXPROCS(0), float64(elapsed.Nanoseconds())/1e6)
}
