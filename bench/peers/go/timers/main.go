// timers: n goroutines each sleep a pseudo-random duration in [min_ms, max_ms] (default
// [10 ms, 110 ms], a seeded splitmix64 stream at microsecond granularity, the same durations
// as the goro program) and record their lateness: the time from the sleep's start to the
// goroutine running again, minus the requested duration. With -busy B, B goroutines spin for
// the whole measurement, each calling runtime.Gosched() every ~50 µs (started before the
// sleepers, stopped after). Metrics: p50_lateness_us, p99_lateness_us (nearest rank),
// max_lateness_us, cpu_ms (process user + system CPU time, syscall.Getrusage, from the first
// spawn to the last wake-up), ms (wall time of the same span).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func cpuNs() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func splitmix64(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	z := *s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// percentile: the nearest-rank percentile of sorted v (the goro program uses the same rule).
func percentile(v []int64, pct int) int64 {
	rank := (len(v)*pct + 99) / 100
	if rank == 0 {
		return v[0]
	}
	return v[rank-1]
}

func main() {
	n := flag.Int64("n", 100000, "sleeping goroutines")
	minMs := flag.Int64("min_ms", 10, "shortest sleep")
	maxMs := flag.Int64("max_ms", 110, "longest sleep")
	busy := flag.Int64("busy", 0, "spinning goroutines that yield every ~50 us")
	seed := flag.Uint64("seed", 1, "seed of the sleep durations")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *minMs < 0 || *maxMs < *minMs || *busy < 0 || *busy > 1024 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "timers: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	sleepNs := make([]int64, *n)
	lateNs := make([]int64, *n)
	s := *seed
	spanUs := uint64(*maxMs-*minMs)*1000 + 1
	for i := range sleepNs {
		sleepNs[i] = (*minMs*1000 + int64(splitmix64(&s)%spanUs)) * 1000
	}

	var stop int32
	var spinners, sleepers sync.WaitGroup
	spinners.Add(int(*busy))
	for b := int64(0); b < *busy; b++ {
		go func() {
			for atomic.LoadInt32(&stop) == 0 {
				t := time.Now()
				for time.Since(t) < 50*time.Microsecond {
				}
				runtime.Gosched()
			}
			spinners.Done()
		}()
	}
	c0, t0 := cpuNs(), time.Now()
	sleepers.Add(int(*n))
	for i := range sleepNs {
		d, out := sleepNs[i], &lateNs[i]
		go func() {
			start := time.Now()
			time.Sleep(time.Duration(d))
			*out = int64(time.Since(start)) - d
			sleepers.Done()
		}()
	}
	sleepers.Wait()
	wall := time.Since(t0)
	cpu := cpuNs() - c0
	atomic.StoreInt32(&stop, 1)
	spinners.Wait()

	sort.Slice(lateNs, func(i, j int) bool { return lateNs[i] < lateNs[j] })
	if lateNs[0] < 0 {
		fmt.Fprintf(os.Stderr, "timers: a sleep returned %d ns early\n", -lateNs[0])
		os.Exit(1)
	}
	fmt.Printf("RESULT p50_lateness_us=%.3f us\n", float64(percentile(lateNs, 50))/1e3)
	fmt.Printf("RESULT p99_lateness_us=%.3f us\n", float64(percentile(lateNs, 99))/1e3)
	fmt.Printf("RESULT max_lateness_us=%.3f us\n", float64(lateNs[len(lateNs)-1])/1e3)
	fmt.Printf("RESULT cpu_ms=%.3f ms\n", float64(cpu)/1e6)
	fmt.Printf("RESULT ms=%.3f ms\n", float64(wall.Nanoseconds())/1e6)
	fmt.Fprintf(os.Stderr, "go timers: n=%d busy=%d gomaxprocs=%d wall=%.3f ms\n", *n, *busy,
		runtime.GOMAXPROCS(0), float64(wall.Nanoseconds())/1e6)
}
