// preempt: preemption latency of a tight loop. With ONE processor (GOMAXPROCS=1), main
// repeatedly starts a goroutine that spins on an atomic flag with no calls at all, then yields
// to it (runtime.Gosched()): only preemption (sysmon's 10 ms time slice, enforced by the
// asynchronous SIGURG preemption) can give main the processor back. One trial's latency is the
// time from the yield to main running again; then main stops the spinner and waits for it. One
// untimed warm-up trial first. Metrics (nearest rank over -n trials): p50_ms, p99_ms, max_ms.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// percentile: the nearest-rank percentile of sorted v (the goro program uses the same rule).
func percentile(v []int64, pct int) int64 {
	rank := (len(v)*pct + 99) / 100
	if rank == 0 {
		return v[0]
	}
	return v[rank-1]
}

//go:noinline
func spin(stop *int32) {
	for atomic.LoadInt32(stop) == 0 {
	}
}

func main() {
	n := flag.Int("n", 30, "trials")
	procs := flag.Int("procs", 1, "GOMAXPROCS (the workload needs 1)")
	flag.Parse()
	if *n <= 0 || *procs <= 0 {
		fmt.Fprintln(os.Stderr, "preempt: bad arguments")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*procs)

	lat := make([]int64, 0, *n)
	notStarted := 0
	for i := -1; i < *n; i++ {
		var stop, started int32
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			atomic.StoreInt32(&started, 1)
			spin(&stop)
			wg.Done()
		}()
		// The spinner runs; only preemption brings us back. The scheduler may pick main again
		// first (it serves the global queue first on every 61st tick): then yield again.
		var d time.Duration
		for tries := 0; ; tries++ {
			t0 := time.Now()
			runtime.Gosched()
			d = time.Since(t0)
			if atomic.LoadInt32(&started) != 0 {
				break
			}
			if tries == 1000 {
				notStarted++
				break
			}
		}
		atomic.StoreInt32(&stop, 1)
		wg.Wait()
		if i >= 0 {
			lat = append(lat, d.Nanoseconds())
		}
	}

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("RESULT p50_ms=%.3f ms\n", float64(percentile(lat, 50))/1e6)
	fmt.Printf("RESULT p99_ms=%.3f ms\n", float64(percentile(lat, 99))/1e6)
	fmt.Printf("RESULT max_ms=%.3f ms\n", float64(lat[len(lat)-1])/1e6)
	note := ""
	if notStarted > 0 {
		note = " (some spinners never started)"
	}
	fmt.Fprintf(os.Stderr, "go preempt: n=%d gomaxprocs=%d min=%.3f ms%s\n", *n,
		runtime.GOMAXPROCS(0), float64(lat[0])/1e6, note)
	if notStarted > 0 {
		os.Exit(1)
	}
}
