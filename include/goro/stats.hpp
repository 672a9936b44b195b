// goro/stats.hpp - what the runtime is doing, as numbers: goro::stats() (one snapshot of
// goroutines, OS threads, stacks and scheduler counters), the scheduler trace
// (GORO_SCHEDTRACE), and a debug HTTP endpoint with Prometheus metrics (goro::debug::serve).
//
//   goro::Stats s = goro::stats();
//   std::printf("goroutines=%lld (chan receive: %lld) threads=%d\n",
//               (long long)s.goroutines.total,
//               (long long)s.goroutines.count(goro::GoroutineState::kChanReceive), s.threads.os);
//
//   static goro::debug::Server debug = goro::debug::serve();  // http://127.0.0.1:6060/
//
// Snapshot, not stop-the-world
// ----------------------------
// stats() never stops goroutines: it reads the scheduler's counters and walks every goroutine
// record while they keep running, so a snapshot describes a moment only approximately. What
// it guarantees ("consistent"):
//  * every goroutine that exists during the whole call is counted exactly once, in exactly
//    one state, so goroutines.total is the sum of goroutines.by_state; goroutines started or
//    ended during the call may or may not be counted;
//  * every counter (created totals, scheduler counters, the latency histogram) is monotonic:
//    a later snapshot taken by the same thread never shows a smaller value; the histogram's
//    count is the sum of its buckets;
//  * stacks.count, stacks.in_use_bytes and stacks.resident_bytes describe the same set of
//    goroutines (those the walk found with a stack bound).
// Thread counts are read from several atomics one after another and may disagree with each
// other by the threads that changed role meanwhile.
//
// Environment (read once, when the runtime starts; unset costs nothing: no thread, no timer)
// -------------------------------------------------------------------------------------------
//  GORO_SCHEDTRACE=<ms>   every <ms> milliseconds a dedicated thread writes one line to stderr
//                         in Go's schedtrace format (ms since the runtime started):
//      SCHED 1000ms: gomaxprocs=2 idleprocs=0 threads=5 spinningthreads=0 idlethreads=1 runqueue=0
//      [3 0]
//                         gomaxprocs: Ps; idleprocs: idle Ps; threads: runtime threads (Ms)
//                         alive; spinningthreads: Ms looking for work; idlethreads: Ms parked;
//                         runqueue: goroutines in the global run queue; [...]: each P's local
//                         run queue length (runnext included).
//  GORO_SCHEDDETAIL=1     with GORO_SCHEDTRACE: Go's scheddetail form: the header line (with
//                         sysmonwait= instead of the [...] list), then one line per P, M and
//                         goroutine:
//      P0: status=1 schedtick=10 syscalltick=2 m=3 runqsize=0 gfreecnt=5 timerslen=1
//      M3: p=0 curg=7 spinning=false blocked=false lockedg=nil
//      G7: status=4(chan receive) m=nil lockedm=nil
//                         P status: 0 idle, 1 running, 2 in a blocking call, 4 retired
//                         (beyond GOMAXPROCS); G status: 1 runnable, 2 running, 3 in a
//                         blocking call, 4 waiting (with its reason); "nil" for none.
//  GORO_DEBUG_ADDR=<addr> starts goro::debug::serve(<addr>) when the runtime starts (for
//                         programs that do not call it themselves); a failure to listen is
//                         reported on stderr once.
// A malformed value is reported on stderr and ignored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "goro/export.hpp"

namespace goro {

/// What a goroutine is doing, as stats() counts it. The waiting states name what the
/// goroutine waits for (its wait reason, the same as in goroutine dumps).
enum class GoroutineState : std::uint8_t {
  kRunning = 0,   ///< executing on an OS thread
  kRunnable,      ///< ready to run, in a run queue (or not started yet)
  kBlockingCall,  ///< inside goro::blocking(): holds its OS thread, not a processor
  kChanReceive,   ///< Chan::recv, range-for over a channel (nil channels included)
  kChanSend,      ///< Chan::send (nil channels included)
  kSelect,        ///< goro::select with no ready case (select with no cases included)
  kMutex,         ///< Mutex::lock, RWMutex::lock / lock_shared
  kWaitGroup,     ///< WaitGroup::wait, Group::wait
  kSleep,         ///< sleep_for / sleep_until
  kIO,            ///< goro::net: waiting for a socket to become readable or writable
  kSemacquire,    ///< other synchronization: Cond::wait, Semaphore::acquire, Group limits
};
/// Number of GoroutineState values (the size of Stats::Goroutines::by_state).
inline constexpr int kGoroutineStates = 11;

/// The state's name as goroutine dumps and Go show it: "running", "runnable", "blocking call",
/// "chan receive", "chan send", "select", "sync.Mutex.Lock", "sync.WaitGroup.Wait", "sleep",
/// "IO wait", "semacquire". A static string; "unknown" for a value out of range. Never blocks.
GORO_API const char* to_string(GoroutineState s) noexcept;

/// Histogram of scheduling latencies: how long goroutines waited between becoming runnable
/// (started, readied by a channel, lock, timer or the network poller, preempted, yielding) and
/// starting to run. Sampled: 1 in 64 of each goroutine's transitions to runnable is timed (Go's
/// /sched/latencies:seconds samples 1 in 8; two clock reads per sample make that too dear for
/// goro's cheaper switches), so count is about 1/64 of all switches.
struct SchedLatencies {
  /// Buckets: i < kBuckets - 1 holds latencies in (upper_bound_ns(i - 1), upper_bound_ns(i)],
  /// with upper_bound_ns(i) = 128 ns << i (128 ns ... 2^30 ns, about 1.07 s); the last
  /// bucket holds everything longer.
  static constexpr int kBuckets = 25;
  static constexpr std::int64_t upper_bound_ns(int i) noexcept {
    return i < kBuckets - 1 ? std::int64_t{128} << i : INT64_MAX;
  }
  std::uint64_t buckets[kBuckets] = {};  ///< per bucket, not cumulative
  std::uint64_t count = 0;               ///< sum of buckets
  std::uint64_t sum_ns = 0;              ///< sum of the sampled latencies
  /// The upper bound of the bucket that holds the q-quantile (q in [0, 1]), i.e. a value the
  /// quantile does not exceed; 0 when count is 0; INT64_MAX when it lies in the last bucket.
  GORO_API std::int64_t quantile_ns(double q) const noexcept;
};

/// A code location with a count: a goro::blocking() call site.
struct CallSiteCount {
  const void* pc = nullptr;  ///< the return address of the call into the runtime at that site
  std::string location;      ///< "function file:line" (symbolized; the address if unknown)
  std::uint64_t count = 0;
};

/// One goroutine stack, as listed in Stats::Stacks::largest.
struct StackUsage {
  std::uint64_t goid = 0;
  std::string name;  ///< GoOptions::name, or empty
  GoroutineState state = GoroutineState::kRunnable;
  std::size_t reserved_bytes = 0;  ///< its slot's address space (GoOptions::stack_size)
  std::size_t resident_bytes = 0;  ///< pages of the slot in memory (mincore)
  std::string created_by;          ///< "function file:line" of the go() call
};

/// One snapshot of the runtime. Plain data: copy it, keep it, compare two.
struct Stats {
  std::int64_t uptime_ns = 0;  ///< since the runtime started
  int gomaxprocs = 0;          ///< GOMAXPROCS at the time of the snapshot

  struct Goroutines {
    std::int64_t total = 0;                        ///< goroutines that exist (sum of by_state)
    std::int64_t by_state[kGoroutineStates] = {};  ///< indexed by GoroutineState
    std::uint64_t created = 0;  ///< goroutines started since the process began (monotonic)
    std::int64_t count(GoroutineState s) const noexcept { return by_state[static_cast<int>(s)]; }
    /// Goroutines neither running nor runnable (blocking calls included).
    std::int64_t waiting() const noexcept {
      return total - count(GoroutineState::kRunning) - count(GoroutineState::kRunnable);
    }
  } goroutines;

  /// OS threads. The runtime's own threads that run goroutines are "Ms"; the process has
  /// others too (main, the monitor, application threads).
  struct Threads {
    int os = 0;                 ///< every thread of the process (/proc/self/task)
    int runtime = 0;            ///< Ms alive: threads the runtime created to run goroutines
    int running = 0;            ///< Ms running a goroutine (not inside goro::blocking)
    int idle = 0;               ///< Ms parked with nothing to do
    int spinning = 0;           ///< Ms looking for work
    int blocking = 0;           ///< Ms inside a goro::blocking() call
    int locked = 0;             ///< Ms wired to a goroutine by lock_os_thread()
    std::uint64_t created = 0;  ///< Ms created since start (monotonic)
    std::uint64_t created_for_blocking = 0;  ///< of which: to take over a processor from a
                                             ///< goroutine inside goro::blocking()
    /// created_for_blocking by call site of the blocking() call responsible, most first.
    /// This is the answer to "why does my thread count grow": each entry is a place where a
    /// goroutine sat in a blocking call long enough that its processor went to a new thread.
    std::vector<CallSiteCount> created_by_site;
    /// goro::blocking() calls in progress now, by call site, most first.
    std::vector<CallSiteCount> blocking_by_site;
  } threads;

  /// Goroutine stacks. Each goroutine has a slot of address space (GoOptions::stack_size,
  /// default 256 KiB) from its first run on, of which the kernel keeps in memory the pages
  /// it touched.
  struct Stacks {
    std::int64_t count = 0;          ///< stacks bound to existing goroutines
    std::uint64_t in_use_bytes = 0;  ///< address space of those stacks
    /// Their pages in memory, measured with mincore(2) (a stack whose goroutine has not run
    /// since the previous snapshot keeps that snapshot's measurement, see stats()).
    std::uint64_t resident_bytes = 0;
    std::uint64_t reserved_bytes = 0;  ///< address space of every slot, free ones included
    std::int64_t cached = 0;           ///< free slots kept for reuse (their memory is not measured)
    std::vector<StackUsage> largest;   ///< up to 10 stacks with the most resident bytes, most first
  } stacks;

  /// Scheduler counters since start (monotonic).
  struct Sched {
    std::uint64_t context_switches = 0;     ///< goroutines switched to by the scheduler
    std::uint64_t steals = 0;               ///< work taken from another processor's queue
    std::uint64_t global_queue_takes = 0;   ///< work taken from the global run queue
    std::uint64_t preempt_requests = 0;     ///< 10 ms slices exceeded (preempt_counts)
    std::uint64_t preempt_cooperative = 0;  ///< preemptions served at a runtime entry
    std::uint64_t preempt_async = 0;        ///< preemptions by signal
    std::uint64_t syscall_handoffs = 0;     ///< processors taken from blocking() calls
    std::uint64_t netpoll_wakeups = 0;      ///< waiters readied by the network poller
    std::int64_t global_runqueue = 0;       ///< goroutines in the global run queue now
    std::int64_t local_runqueues = 0;       ///< goroutines in the processors' queues now
    SchedLatencies latencies;               ///< runnable → running, sampled
  } sched;

  /// The process (from /proc/self/statm).
  struct Memory {
    std::uint64_t resident_bytes = 0;  ///< RSS
    std::uint64_t virtual_bytes = 0;   ///< address space
  } memory;
};

/// Takes a snapshot of the runtime (see "Snapshot, not stop-the-world" above). Starts the
/// runtime if it is not running yet.
///
/// Blocking: never parks; it blocks the calling OS thread for its duration (a few system
/// calls: /proc/self/task, /proc/self/statm, mincore(2) over the stacks). On a goroutine it
/// may be preempted like other code. The first call that has a stack or blocking call site to
/// name loads the program's debug information (symbolization, as goroutine dumps do); names
/// are cached afterwards.
///
/// Cost: O(Ps + Ms) for the counters; a walk over every goroutine record (a few ns per record
/// ever allocated, ~15 ns per existing goroutine); and mincore(2) over the stacks of the
/// goroutines that ran since the previous snapshot (the others keep their last measurement;
/// a rotating 1/64 of them is measured again each time). Measured on a 2-core VM: 0.01 ms
/// per call with no goroutines, 0.06 ms with 1,000 parked ones, 0.4 ms with 10,000, 4 ms
/// with 100,000; the first call (nothing memoized yet) measures every stack: 18 ms for
/// 10,000. It takes no scheduler lock for longer than copying a list of pointers, so
/// goroutines keep running and starting meanwhile. Cheap enough for a health check every
/// second.
///
/// Thread-safety: any number of threads and goroutines may call it at once.
/// Errors: throws std::bad_alloc when memory runs out.
GORO_API Stats stats();

namespace debug {

namespace internal_http {
struct ServerState;
}

class Server;

/// Starts the debug HTTP server on `addr` ("host:port", see goro/net.hpp; port 0 picks a free
/// one, Server::addr() tells which) and returns at once; the server runs until the returned
/// Server is closed or destroyed. An empty host (":6060") means 127.0.0.1, so the server is
/// reachable only from this machine unless another address is named explicitly
/// ("0.0.0.0:6060", "[::]:6060"). It is served by goroutines on the runtime's own network
/// poller (one accepting, one per connection, at most 64 connections at once over all servers;
/// more are answered 503 and closed), HTTP/1.1 with keep-alive and pipelining, GET and HEAD
/// only (405 otherwise), request heads up to 16 KiB (431), parsed with the system's
/// http-parser library; a connection idle for 60 s is closed. Endpoints:
///
///   /                    an index of the endpoints below
///   /debug/runtime       the health check: goroutines (by state), threads, stacks, memory,
///                        GOMAXPROCS and scheduler counters as "name=value" lines (the names
///                        of the JSON form joined by '_', e.g. goroutines_chan_receive=1000),
///                        then one "threads_created_for_blocking_at=<n> <site>" and
///                        "blocking_calls_at=<n> <site>" line per call site and one
///                        "largest_stack=<bytes> goroutine <id> [<state>] ..." line per stack
///                        in Stats::Stacks::largest;
///                        ?format=json gives the whole Stats as one JSON object
///   /debug/goroutines    goro::debug::goroutines(): ?debug=1 (default) grouped by stack,
///                        ?debug=2 every goroutine with its full stack
///   /debug/sched         one GORO_SCHEDTRACE report with GORO_SCHEDDETAIL's P, M, G lines
///   /metrics             Prometheus text exposition format 0.0.4, names after Go's
///                        collector: goro_goroutines, goro_goroutines_by_state{state},
///                        goro_goroutines_created_total, goro_threads, goro_runtime_threads*,
///                        goro_blocking_calls{site}, goro_stack_*_bytes, goro_sched_*_total,
///                        goro_sched_latencies_seconds (histogram), goro_netpoll_wakeups_total,
///                        process_resident_memory_bytes, ... (each with HELP and TYPE)
///
/// Each request takes a stats() snapshot (or a goroutine dump) on its connection's goroutine.
/// The server answers while every processor is busy with CPU-bound goroutines: its
/// goroutines are readied by the network poller and get a processor at the next preemption
/// (a time slice is 10 ms).
///
/// Errors: throws std::system_error from goro::net::listen (address_in_use,
/// invalid_argument for a malformed address, ...), std::bad_alloc.
/// Thread-safety: callable from goroutines and plain threads; any number of servers may run.
GORO_API Server serve(std::string_view addr = "127.0.0.1:6060");

/// A running debug HTTP server (see serve()). Movable, not copyable; destroying a Server
/// that is still open closes it (so keep it alive as long as it should serve, e.g. in a
/// static or a long-lived object). A default-constructed or moved-from Server is empty.
class GORO_API Server {
 public:
  Server() noexcept = default;
  Server(Server&&) noexcept = default;
  /// Closes this server (if open), then takes o's.
  Server& operator=(Server&& o) noexcept;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  /// close().
  ~Server();

  bool valid() const noexcept { return state_ != nullptr; }
  explicit operator bool() const noexcept { return valid(); }

  /// The address it listens on, with the actual port ("127.0.0.1:6060"); empty for an empty
  /// Server. Never blocks. Throws std::bad_alloc.
  std::string addr() const;

  /// Stops the server: closes the listener and every open connection (a request in progress
  /// is cut off) and waits until every goroutine of the server has finished its work (each
  /// exits right after, dropping its share of the server's state). Idempotent; a
  /// no-op on an empty Server. Blocks the caller (a goroutine parks, a thread sleeps) until
  /// those goroutines noticed, normally well under a millisecond; a request in the middle of
  /// taking a goroutine dump finishes that first. Thread-safe.
  void close() noexcept;

 private:
  friend Server serve(std::string_view addr);
  std::shared_ptr<internal_http::ServerState> state_;
};

}  // namespace debug
}  // namespace goro
