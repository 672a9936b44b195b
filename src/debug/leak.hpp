// leak.hpp - internal interfaces of the leak finder (leak.cpp), the deadlock detector and the
// OS-lock check (deadlock.cpp), and the hooks the rest of the runtime calls: chan.cpp (the
// handle registry), proc.cpp (park, mcall), sysmon.cpp (every P idle), hook/pthread_hooks.cpp
// (lock sites). The design essays are at the top of leak.cpp and deadlock.cpp. Internal to the
// goro library.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace goro::internal {

struct G;
struct ChanCore;
struct Timer;

// ---------------------------------------------------------------------------------------------
// Channels (chan.cpp): what find_leaks reads of every tracked channel.

// One waiter record queued on a channel.
struct ChanWaiter {
  G* g;                // the waiting goroutine, or a plain thread's G (kStackThread)
  const void* sudog;   // its waiter record (on the waiter's stack)
  const void* elem;    // the value to send / the storage to receive into (on its stack)
  const void* select;  // its select's shared state (on its stack), or null
  bool select_timed;   // that select also waits for a deadline
  bool select_done;    // another case (or the deadline) already won that select
  int select_cases;    // how many channel cases that select queued (nil cases excluded)
  // One past the top of the runtime's frame that queued the record (chan_send, chan_recv,
  // select_impl): [g->sp, frame_top) holds only the runtime's own frames.
  std::uintptr_t frame_top;
  std::size_t sudog_size;  // sizeof the record (select may keep records on the heap)
};

// Receives the tracked channels, one at a time, with the channel's lock and registry lock held:
// it must not block, park, or touch any channel; it may allocate (not from the C++ heap: see
// "Our own memory" in leak.cpp).
class ChanVisitor {
 public:
  // A tracked channel. judgeable: its handle registry is complete and agrees with its reference
  // count (it is not, for a moment, while a handle is being made, and for good if recording a
  // handle ran out of memory). Its handles and waiters follow.
  virtual void channel(const ChanCore* c, bool judgeable) = 0;
  virtual void handle(std::uintptr_t addr) = 0;
  virtual void waiter(const ChanWaiter& w) = 0;

 protected:
  ~ChanVisitor() = default;
};

// If t is the deadline timer of a select, the goroutine (or thread G) waiting in it; else null.
// Call with t's timer heap locked.
G* chan_select_timer_g(const Timer* t) noexcept;

// Visits every tracked channel (see ChanVisitor). Lock order: the tracked-channel list lock ▸
// the channel's lock ▸ its registry lock. Safe to call from goroutines and threads at any time.
void chan_leak_visit(ChanVisitor& v);

// Reading other threads' registers (leak.cpp, "Registers"): while leak_capture_active is set, a
// SIGURG handler calls leak_capture_signal(ucontext) first thing. sysmon's handler does, when
// installed (sigurg_handler_is tells whether a handler is it, sysmon.cpp); otherwise leak.cpp
// installs its own. Async-signal-safe.
extern std::atomic<bool> leak_capture_active;
// In sanitizer builds, whether thread tid belongs to the sanitizer runtime (TSan's background
// thread): 1 yes, 0 no, -1 unknown (it kept running, or /proc could not be read), judged by
// symbolizing where it is blocked (allocates; needs a normal-sized stack). Always 0 in other
// builds.
int sanitizer_runtime_thread(int tid) noexcept;
void leak_capture_signal(void* ucontext) noexcept;
bool sigurg_handler_is(const void* handler) noexcept;

// ---------------------------------------------------------------------------------------------
// Deadlock detection (deadlock.cpp).

// Plain threads waiting on goro primitives, for the detector: park() counts +1 before the
// waiter can be found (and -1 if the park is cancelled), ready() -1 when it wakes one. So a
// thread is counted exactly while it is parked and not yet readied: one that was woken but has
// not run yet (a starved thread) no longer counts as blocked.
void deadlock_thread_wait(int delta) noexcept;
// park() on a plain thread, once the park is committed (no lock held): may start the runtime
// and wakes sysmon if every P is idle.
void deadlock_thread_parked() noexcept;

// sysmon, with every P idle, before it sleeps: looks for a deadlock (starting the confirmation
// thread when everything is parked). Returns how long sysmon may sleep before it should look
// again (nanoseconds), or -1 to sleep until a P is handed out.
std::int64_t deadlock_idle_check() noexcept;

// ---------------------------------------------------------------------------------------------
// The OS-lock check (deadlock.cpp, "Parking with an OS lock held").

// 0: off; 1: warn once per lock site; 2: fatal. Read on every counted pthread lock operation.
extern std::atomic<int> oslock_check;

// The pthread hooks, when oslock_check != 0 and the caller is goroutine g: g acquired the lock
// at `lock` (a mutex or rwlock) at call site `site`; g released it.
void oslock_acquired(G* g, const void* lock, const void* site, bool rwlock) noexcept;
void oslock_released(G* g, const void* lock) noexcept;

// mcall: g is about to switch away (park, yield, preemption, blocking-call exit, or its exit
// when dying) with g->oslocks != 0.
void oslock_switch(G* g, bool dying) noexcept;

}  // namespace goro::internal
