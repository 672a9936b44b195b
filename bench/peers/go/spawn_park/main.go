// spawn_park: n goroutines each block on one gate (a sync.WaitGroup of count 1 that main
// releases with Done). Metrics:
//
//	spawn_ns_per_task    start all n and wait until each has reached the gate, / n
//	release_ns_per_task  open the gate and wait until all n have returned, / n
//	rss_kib_per_task     ((VmRSS+VmPTE) with all parked - the same before spawning) / n
//	threads_while_parked Threads of /proc/self/status with all parked
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

type procStatus struct{ rssKiB, pteKiB, threads int64 }

func readProcStatus() procStatus {
	s := procStatus{-1, -1, -1}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			s.rssKiB = v
		case "VmPTE:":
			s.pteKiB = v
		case "Threads:":
			s.threads = v
		}
	}
	return s
}

func main() {
	n := flag.Int64("n", 100000, "number of tasks")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: all CPUs)")
	flag.Parse()
	if *n <= 0 || *procs < 0 {
		fmt.Fprintln(os.Stderr, "spawn_park: bad arguments")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}

	var started, gate, done sync.WaitGroup
	before := readProcStatus()

	t0 := time.Now()
	started.Add(int(*n))
	gate.Add(1)
	done.Add(int(*n))
	for i := int64(0); i < *n; i++ {
		go func() {
			started.Done()
			gate.Wait()
			done.Done()
		}()
	}
	started.Wait()
	t1 := time.Now()

	// Done() comes just before Wait(): give the last few tasks time to actually park
	// (not timed; every flavour sleeps the same 10 ms here).
	time.Sleep(10 * time.Millisecond)
	parked := readProcStatus()

	t2 := time.Now()
	gate.Done()
	done.Wait()
	t3 := time.Now()

	fn := float64(*n)
	fmt.Printf("RESULT spawn_ns_per_task=%.3f ns\n", float64(t1.Sub(t0).Nanoseconds())/fn)
	fmt.Printf("RESULT release_ns_per_task=%.3f ns\n", float64(t3.Sub(t2).Nanoseconds())/fn)
	fmt.Printf("RESULT rss_kib_per_task=%.3f KiB\n",
		float64((parked.rssKiB+parked.pteKiB)-(before.rssKiB+before.pteKiB))/fn)
	fmt.Printf("RESULT threads_while_parked=%.3f threads\n", float64(parked.threads))
	fmt.Fprintf(os.Stderr, "go spawn_park: n=%d gomaxprocs=%d rss %d->%d KiB pte %d->%d KiB\n",
		*n, runtime.GOMAXPROCS(0), before.rssKiB, parked.rssKiB, before.pteKiB, parked.pteKiB)
}
