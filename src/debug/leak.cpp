// leak.cpp - goroutine leaks: goro::debug::find_leaks, goro::debug::track_leaks, and the
// GoogleTest helper behind goro::testing::expect_no_goroutines_left (goro/testing.hpp).
//
// What it owns
// ------------
// Deciding which goroutines can never be woken, grouping them with their stacks and creation
// sites, and listing what it cannot judge. The handle registry it relies on is chan.cpp's
// ("Handle tracking"); stacks come from the goroutine dump (dump.cpp).
//
// The question, and why channels can be answered exactly
// -------------------------------------------------------
// A goroutine parked on a channel wakes only when some code sends on, receives from or closes
// that channel, and code can do that only through a handle (a goro::Chan). A goroutine is
// therefore leaked when every handle of every channel it waits on is held by leaked goroutines
// themselves: the definition is a greatest fixpoint over the wait graph, like Go's leak profile
// (Go gets the handles' reachability from its garbage collector; C++ has none). With tracking
// on, chan.cpp knows the address of every handle, so "held by goroutine Y" can be decided: the
// handle lies in Y's live stack [sp, stack_hi) or in its closure (the arguments go() copied).
//
// That alone is not enough: C++ code reaches objects on another goroutine's stack through
// pointers and references (`go([&ch] { ... ch.send(1); })`, a registry of pointers to
// goroutine-local objects). So a candidate's stack and closure count as its own only while
// nothing else points into them: find_leaks scans memory for such pointers (the "reference
// scan", below). A handle is attributed to a blocked goroutine only if no live code could
// reach it; every doubt counts as "reachable", which can hide a leak but never invent one.
//
// Steps (Analysis::run)
// ---------------------
//  1. Snapshot every goroutine record (for_each_g, fields copied by an uninstrumented reader)
//     and every tracked channel: its handles' addresses, whether its registry is complete
//     (judgeable), and its waiters (chan_leak_visit, under the channel's locks).
//  2. Classify each goroutine: parked on a nil channel or in `select {}` -> leaked (no handle
//     can wake it); parked on channels -> a candidate if every channel it waits on is tracked
//     (a select counts its queued cases against the cases it has) and no deadline can wake it;
//     parked on a sync primitive (Mutex, RWMutex, WaitGroup, Once, Cond, Semaphore, Group) ->
//     unknown (see "What cannot be judged"); sleeping, in I/O wait, runnable, running -> alive.
//  3. Reference scan: collect pointers into the candidates' live stacks and closures from
//     (a) all other memory: the process's readable-writable mappings (heap, globals, thread
//     stacks, other goroutines' stacks) and the registers of every other thread, and (b) the
//     candidates' own stacks and closures, which give edges "candidate X points into
//     candidate Y".
//  4. Fixpoint: a channel is live if it is not judgeable or has a handle outside every
//     candidate or in a candidate whose memory is live; a candidate's memory is live if it is
//     awake, pointed to from outside, or pointed to from live memory; a candidate is awake if
//     one of its channels is live. Candidates left asleep are leaked.
//  5. Candidates whose park generation or state changed since step 1 woke up meanwhile: they
//     become roots and the fixpoint is recomputed.
// find_leaks runs these steps twice when the first run finds leaks and reports only the
// goroutines both runs found, parked throughout (a reference moving between memory areas while
// one scan runs could be missed by that scan; see "Concurrency").
//
// The reference scan (step 3)
// ---------------------------
// Words are read as 8-byte aligned values; one inside a candidate's live stack or closure is
// a reference to it unless it is one of these runtime-internal pointers, which user code never
// holds:
//  * a pointer into the candidate's runtime frames: [sp, frame_top), where frame_top is the
//    CFA of chan_send/chan_recv/select_impl, recorded in each waiter record (ParkArgs, Sudogs,
//    select state and the saved context all live there, and the scheduler's stack keeps stale
//    copies of them);
//  * a waiter record's value pointer (the value being sent, the receive slot);
//  * a word inside a byte-exact copy of the candidate's stack: at least 512 bytes around it (or
//    all of the live stack, when smaller) equal the stack at the same offsets. A goroutine dump
//    copies stacks to the heap and leaves the copy behind when it frees it.
// Registers are memory too: a worker thread that popped `&request` (a request living on a parked
// goroutine's stack) and sits in a system call may hold the only pointer in rbx. Every thread
// but the caller (whose registers capture_regs took at entry), the idle Ms (parked in the
// scheduler), the runtime's helper threads (named "goro-...") and, in sanitizer builds, the
// sanitizer runtime's own threads (they block SIGURG and are blocked inside the sanitizer
// runtime; a user thread caught like that is skipped too, a sanitizer-build-only hole) gets SIGURG
// (Go's preemption signal; goro already sends it to its Ms and chains to an application
// handler); the handler copies the interrupted general-purpose registers into a slot (see
// "Registers" below), and the captured rsp is where that thread's live stack starts. A thread
// that blocks SIGURG, or does not answer within 1 s (3 s in sanitizer builds), withholds every
// channel verdict. Side effect: a system call that SA_RESTART does not restart (nanosleep,
// poll, epoll_wait...) returns EINTR in the signalled thread, as with any signal.
// The runtime's own records of candidate addresses never look like pointers: the handle
// registry stores addresses complemented (chan.cpp), and this file's working memory is an
// mmap arena that the scan skips and unmaps when done.
// Memory not scanned, each for a reason:
//  * the leak finder's own working memory (an mmap arena, unmapped when it returns: it holds
//    every candidate address, and heap memory would keep stale copies);
//  * the G record chunks (each record's saved stack pointer, of dead goroutines too, points
//    into a slot that a live goroutine may reuse); live goroutines' inline closures are
//    scanned on their own;
//  * goroutine stack slots beyond their live part [sp, stack_hi) (below sp is dead), and the
//    parts of thread stacks below each thread's stack pointer (the captured rsp; for threads
//    not signalled, /proc/self/task/<tid>/syscall while blocked in the kernel; the M's saved
//    g0 stack pointer for the g0 stack of an M running a goroutine);
//  * the timer heaps' arrays (runtime-internal, with stale timer pointers past their size) and
//    the Ms' alternate signal stacks (stale signal frames);
//  * mappings of 1 TiB or more (64 GiB in sanitizer builds: their shadow memory), which are
//    reserved address space (a program keeping its only pointer to a goroutine's stack in
//    such a mapping defeats the verdict), [vvar]/[vdso]/[vsyscall], devices,
//    pages neither resident nor swapped (pagemap; they hold no data).
//
// What cannot be judged (reported as "unknown", never as leaked)
// --------------------------------------------------------------
//  * Waits on sync primitives: goro::Mutex, RWMutex, WaitGroup, Once, Cond, Semaphore,
//    Group. They are plain objects that anyone holding a pointer may still signal, and the
//    runtime does not know where they are referenced from.
//  * Waits on channels made while tracking was off (all of them, when tracking is off), on a
//    channel whose registry ran out of memory, or while a handle was being made.
//  * Plain threads are not goroutines: they are never listed (their handles count as held
//    by live code).
// Never leaks: sleeping, I/O wait, a select with a deadline (time wakes them), runnable and
// running goroutines.
//
// Assumptions under which "leaked" is exact
// ------------------------------------------
//  * Pointers are stored as plain 8-byte aligned addresses within the object they refer to
//    (no XOR-ed, compressed or high-bit-tagged pointers to goroutine stacks or closures).
//  * Channel handles move only through Chan's constructors and assignment (no memcpy
//    relocation), as chan.hpp requires.
//  * No code uses goroutine-stack memory that the finder proves unreferenced through
//    memory it skips: the skipped areas above are the runtime's own, and threads named
//    "goro-..." are the runtime's helpers.
// Concurrency: the scan does not stop the world. A reference that moves from a not yet scanned
// area into an already scanned one while the scan runs could be missed; the second run (and
// the park-generation check) makes that practically impossible for a reference that moves
// only once, but a program that keeps shuffling its only pointer to a goroutine's stack
// between the heap and a register during both runs could still mislead it. Vector registers
// are not read: a pointer that exists, for that instant, only in an xmm register (a memcpy in
// flight) is such a moving reference.
//
// Cost: proportional to the process's resident writable memory (read with process_vm_readv,
// about a gigabyte per second) plus one goroutine dump when it reports groups with stacks.
// With tracking on, every handle copy, move and destruction takes the channel's registry
// lock (chan.cpp).
//
// Missed leaks (never false ones): stale memory that happens to hold an address inside a
// leaked goroutine's stack or closure makes that goroutine look referenced: freed heap blocks
// (a previous goroutine dump's stack copies and unwinder state), dead stack frames of a
// running thread, and, in unoptimized builds, copies of go()'s closure pointer left in the
// frame that called go() while that frame lives (go() clears the variable it wrote).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/lock.hpp"
#include "base/platform.hpp"
#include "debug/leak.hpp"
#include "debug/symbolize.hpp"
#include "debug/traceback.hpp"
#include "goro/chan.hpp"
#include "goro/debug.hpp"
#include "goro/runtime.hpp"
#include "goro/testing.hpp"
#include "sched/proc.hpp"
#include "stack/stack.hpp"
#include "time/timer.hpp"

#if defined(GORO_TSAN)
// Exported by the TSan runtimes of GCC and Clang (not declared in their public headers).
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace goro::internal {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kCopyWindow = 512;  // see "stack copies" above
#if defined(GORO_ASAN) || defined(GORO_TSAN)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
// Mappings this large are reserved address space, not data: sanitizer shadow memory (up to
// terabytes, in pieces of hundreds of gigabytes under TSan) or reservations. Skipped.
constexpr std::uintptr_t kHugeMapping = std::uintptr_t{1} << (kSanitized ? 36 : 40);

// ---------------------------------------------------------------------------------------------
// Our own memory: an arena of anonymous mappings, never the C++ heap (freed heap blocks would
// keep stale candidate addresses for a later call to trip over), unmapped when done.

class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    while (chunks_ != nullptr) {
      Chunk* c = chunks_;
      chunks_ = c->next;
      ::munmap(c, c->size);
    }
  }

  void* alloc(std::size_t n, std::size_t align) {
    std::uintptr_t p = (cur_ + align - 1) & ~(align - 1);
    if (cur_ == 0 || p + n > end_) {
      std::size_t size = std::max<std::size_t>(kChunkBytes, n + align + sizeof(Chunk));
      size = (size + kPage - 1) & ~(kPage - 1);
      void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) throw std::bad_alloc();
      auto* c = static_cast<Chunk*>(m);
      c->size = size;
      c->next = chunks_;
      chunks_ = c;
      cur_ = reinterpret_cast<std::uintptr_t>(m) + sizeof(Chunk);
      end_ = reinterpret_cast<std::uintptr_t>(m) + size;
      p = (cur_ + align - 1) & ~(align - 1);
    }
    cur_ = p + n;
    return reinterpret_cast<void*>(p);
  }

  template <class F>
  void for_each_chunk(F f) const {
    for (const Chunk* c = chunks_; c != nullptr; c = c->next) {
      f(reinterpret_cast<std::uintptr_t>(c), c->size);
    }
  }

 private:
  static constexpr std::size_t kChunkBytes = 4 << 20;
  struct Chunk {
    std::size_t size;
    Chunk* next;
  };
  Chunk* chunks_ = nullptr;
  std::uintptr_t cur_ = 0, end_ = 0;
};

template <class T>
struct ArenaAlloc {
  using value_type = T;
  Arena* arena;
  explicit ArenaAlloc(Arena* a) noexcept : arena(a) {}
  template <class U>
  ArenaAlloc(const ArenaAlloc<U>& o) noexcept : arena(o.arena) {}
  T* allocate(std::size_t n) { return static_cast<T*>(arena->alloc(n * sizeof(T), alignof(T))); }
  void deallocate(T*, std::size_t) noexcept {}
  template <class U>
  bool operator==(const ArenaAlloc<U>& o) const noexcept {
    return arena == o.arena;
  }
};

template <class T>
using AVec = std::vector<T, ArenaAlloc<T>>;

// ---------------------------------------------------------------------------------------------
// Reading memory that may change or disappear under us: the kernel copies
// (process_vm_readv on our own pid, or /proc/self/mem), so an unmapped page is an error, not
// a SIGSEGV, and the sanitizers neither see the benign races nor ASan's poisoned redzones.

class MemReader {
 public:
  MemReader() { pid_ = ::getpid(); }
  ~MemReader() {
    if (mem_fd_ >= 0) ::close(mem_fd_);
    if (pagemap_fd_ >= 0) ::close(pagemap_fd_);
  }
  MemReader(const MemReader&) = delete;
  MemReader& operator=(const MemReader&) = delete;

  // Copies [src, src + len) to dst. Returns false if any byte could not be read.
  bool read(void* dst, std::uintptr_t src, std::size_t len) {
    if (len == 0) return true;
    if (vm_ok_) {
      iovec local{dst, len};
      iovec remote{reinterpret_cast<void*>(src), len};
      ssize_t n = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      if (n == static_cast<ssize_t>(len)) return true;
      if (n >= 0 || errno == EFAULT || errno == ESRCH) return false;
      vm_ok_ = false;  // EPERM/ENOSYS (seccomp): use /proc/self/mem from now on
    }
    if (mem_fd_ == -1) {
      mem_fd_ = ::open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
      if (mem_fd_ < 0) mem_fd_ = -2;
    }
    if (mem_fd_ < 0) return false;
    ssize_t n = ::pread(mem_fd_, dst, len, static_cast<off_t>(src));
    return n == static_cast<ssize_t>(len);
  }

  bool usable() {
    std::uint64_t probe = 0, x = 0x5ca1ab1e;
    return read(&probe, reinterpret_cast<std::uintptr_t>(&x), sizeof probe) && probe == x;
  }

  // For each page of [lo, hi) (page-aligned), whether it may hold data: present or swapped
  // (pagemap), or resident (mincore) where pagemap is unavailable. out has one byte per page.
  void pages(std::uintptr_t lo, std::uintptr_t hi, unsigned char* out) {
    const std::size_t n = (hi - lo) / kPage;
    if (pagemap_fd_ == -1) {
      pagemap_fd_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
      if (pagemap_fd_ < 0) pagemap_fd_ = -2;
    }
    if (pagemap_fd_ >= 0) {
      std::uint64_t ent[512];
      for (std::size_t i = 0; i < n;) {
        std::size_t k = std::min<std::size_t>(512, n - i);
        off_t off = static_cast<off_t>((lo / kPage + i) * sizeof(std::uint64_t));
        ssize_t got = ::pread(pagemap_fd_, ent, k * sizeof(std::uint64_t), off);
        if (got != static_cast<ssize_t>(k * sizeof(std::uint64_t))) {
          for (std::size_t j = 0; j < k; j++) out[i + j] = 1;  // unknown: read it
        } else {
          for (std::size_t j = 0; j < k; j++) out[i + j] = (ent[j] >> 62) != 0;  // present|swap
        }
        i += k;
      }
      return;
    }
    if (::mincore(reinterpret_cast<void*>(lo), hi - lo, out) != 0) {
      std::memset(out, 1, n);
      return;
    }
    for (std::size_t i = 0; i < n; i++) out[i] &= 1;
  }

 private:
  pid_t pid_;
  bool vm_ok_ = true;
  int mem_fd_ = -1;
  int pagemap_fd_ = -1;
};

// Reads a whole small /proc file into buf (NUL-terminated); returns its length or -1.
ssize_t read_small_file(const char* path, char* buf, std::size_t cap) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t n = 0;
  while (n + 1 < cap) {
    ssize_t k = ::read(fd, buf + n, cap - 1 - n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    n += static_cast<std::size_t>(k);
  }
  ::close(fd);
  buf[n] = 0;
  return static_cast<ssize_t>(n);
}

// ---------------------------------------------------------------------------------------------
// Registers. A thread blocked in the kernel or running elsewhere may hold the only pointer to a
// parked goroutine's stack in a register (a worker that popped `&request` and is in a system
// call): its registers are memory too. Each such thread gets SIGURG (Go's preemption signal,
// which goro already sends to its Ms, and which programs must tolerate as spurious); the
// handler copies the interrupted context's general-purpose registers into a slot and returns.
// Slots live in memory that is never unmapped (a handler may still be writing when a capture
// gives up waiting) and that the scan skips.

constexpr int kRegWords = 17;  // gregs[REG_R8 .. REG_RIP]: every general-purpose register, rip

struct RegSlot {
  std::atomic<int> tid;
  std::atomic<int> state;  // 0: asked; 1: written
  std::uint64_t regs[kRegWords];
};

std::atomic<RegSlot*> g_slots{nullptr};
std::atomic<int> g_nslots{0};
Lock capture_lock;                // one capture at a time
RegSlot* slot_pool = nullptr;     // under capture_lock
std::size_t slot_pool_cap = 0;    // slots in slot_pool
struct sigaction prev_sigurg {};  // what our own handler chains to (under capture_lock)

void own_sigurg(int sig, siginfo_t* info, void* uc) {
  const int saved = errno;
  if (leak_capture_active.load(std::memory_order_acquire)) leak_capture_signal(uc);
  if ((prev_sigurg.sa_flags & SA_SIGINFO) != 0) {
    if (prev_sigurg.sa_sigaction != nullptr) prev_sigurg.sa_sigaction(sig, info, uc);
  } else if (prev_sigurg.sa_handler != SIG_DFL && prev_sigurg.sa_handler != SIG_IGN) {
    prev_sigurg.sa_handler(sig);
  }
  errno = saved;
}

// Under capture_lock: makes sure a SIGURG handler that serves captures is installed.
bool ensure_handler() {
  struct sigaction cur {};
  if (::sigaction(SIGURG, nullptr, &cur) != 0) return false;
  const void* h = (cur.sa_flags & SA_SIGINFO) != 0 ? reinterpret_cast<const void*>(cur.sa_sigaction)
                                                   : reinterpret_cast<const void*>(cur.sa_handler);
  if (sigurg_handler_is(h) || h == reinterpret_cast<const void*>(&own_sigurg)) return true;
  prev_sigurg = cur;
  struct sigaction sa {};
  sa.sa_sigaction = own_sigurg;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigfillset(&sa.sa_mask);
  return ::sigaction(SIGURG, &sa, nullptr) == 0;
}

// Whether thread tid blocks (or ignores) SIGURG, from /proc/self/task/<tid>/status.
bool blocks_sigurg(int tid) {
  char path[64], text[2048];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
  if (read_small_file(path, text, sizeof text) <= 0) return false;
  const std::uint64_t bit = std::uint64_t{1} << (SIGURG - 1);
  for (const char* field : {"SigBlk:", "SigIgn:"}) {
    const char* p = std::strstr(text, field);
    if (p != nullptr && (std::strtoull(p + std::strlen(field), nullptr, 16) & bit) != 0)
      return true;
  }
  return false;
}

}  // namespace

// Sanitizer builds only (0 otherwise): the thread blocks SIGURG (sanitizer threads block every
// signal) and where it is blocked (the pc of /proc/self/task/<tid>/syscall) symbolizes into the
// sanitizer runtime (TSan's background thread). A thread seen running is looked at again a few
// times, then reported as unknown (-1). A user thread that blocks signals and waits inside a
// sanitizer interceptor at that moment looks the same: callers confirm a "yes" later.
int sanitizer_runtime_thread(int tid) noexcept {
  if constexpr (!kSanitized) {
    (void)tid;
    return 0;
  } else {
    if (!blocks_sigurg(tid)) return 0;
    char path[64], text[256];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    for (int tries = 0; tries < 20; tries++) {
      if (read_small_file(path, text, sizeof text) <= 0) return -1;
      if (std::strncmp(text, "running", 7) == 0) {
        struct timespec ts {
          0, 1'000'000
        };
        ::nanosleep(&ts, nullptr);
        continue;
      }
      const char* last = std::strrchr(text, ' ');
      if (last == nullptr) return -1;
      const auto pc = static_cast<std::uintptr_t>(std::strtoull(last + 1, nullptr, 16));
      const std::string where = symbolize_line(reinterpret_cast<const void*>(pc), false);
      for (const char* ns : {"__sanitizer::", "__tsan::", "__asan::", "__lsan::", "__ubsan::"}) {
        if (where.find(ns) != std::string::npos) return 1;
      }
      return 0;
    }
    return -1;
  }
}

namespace {

struct Captured {
  int tid;
  bool ok;    // registers read, or the thread is gone
  bool have;  // registers read
  std::uint64_t regs[kRegWords];
};

// Reads the registers of the threads out[0..n) (tid set). Returns false if a live thread's
// could not be read (it blocks SIGURG, or did not answer within the timeout).
bool capture_registers(Captured* out, std::size_t n) {
  if (n == 0) return true;
  LockGuard hold(capture_lock);
  if (!ensure_handler()) return false;
  if (slot_pool_cap < n) {
    std::size_t cap = std::max<std::size_t>(64, n * 2);
    void* m = ::mmap(nullptr, cap * sizeof(RegSlot), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return false;
    slot_pool = static_cast<RegSlot*>(m);  // the old pool stays mapped: a late handler may write
    slot_pool_cap = cap;
  }
  for (std::size_t i = 0; i < n; i++) {
    slot_pool[i].tid.store(out[i].tid, std::memory_order_relaxed);
    slot_pool[i].state.store(0, std::memory_order_relaxed);
    out[i].ok = false;
    out[i].have = false;
  }
  g_nslots.store(static_cast<int>(n), std::memory_order_release);
  g_slots.store(slot_pool, std::memory_order_release);
  leak_capture_active.store(true, std::memory_order_seq_cst);
  const pid_t pid = ::getpid();
  for (std::size_t i = 0; i < n; i++) {
    if (blocks_sigurg(out[i].tid)) continue;
    if (::syscall(SYS_tgkill, pid, out[i].tid, SIGURG) != 0 && errno == ESRCH) out[i].ok = true;
  }
  const std::int64_t deadline = nanotime() + (kSanitized ? 3'000'000'000 : 1'000'000'000);
  for (;;) {
    bool done = true;
    for (std::size_t i = 0; i < n; i++) {
      if (!out[i].ok && slot_pool[i].state.load(std::memory_order_acquire) == 0) done = false;
    }
    if (done || nanotime() > deadline) break;
    struct timespec ts {
      0, 50'000
    };
    ::nanosleep(&ts, nullptr);
  }
  leak_capture_active.store(false, std::memory_order_seq_cst);
  g_slots.store(nullptr, std::memory_order_release);
  bool all = true;
  for (std::size_t i = 0; i < n; i++) {
    if (slot_pool[i].state.load(std::memory_order_acquire) == 1) {
      std::memcpy(out[i].regs, slot_pool[i].regs, sizeof out[i].regs);
      out[i].ok = out[i].have = true;
    } else if (!out[i].ok && ::syscall(SYS_tgkill, pid, out[i].tid, 0) != 0 && errno == ESRCH) {
      out[i].ok = true;  // it exited: it holds nothing
    }
    all = all && out[i].ok;
  }
  std::memset(static_cast<void*>(slot_pool), 0, n * sizeof(RegSlot));
  return all;
}

// ---------------------------------------------------------------------------------------------
// Snapshots.

struct Range {
  std::uintptr_t lo, hi;
};

struct GInfo {
  G* g;
  std::uint64_t goid;
  std::uint32_t status;
  std::uint32_t parkgen;
  WaitReason reason;
  std::uint8_t stack_kind;
  bool closure_on_heap;
  bool insyscall;
  std::uintptr_t sp, lo, hi, slot_base;
  std::size_t slot_size;
  std::uintptr_t closure, closure_buf;
  std::uint32_t closure_size;
  M* m;
  SpawnSite site;
  char name[sizeof(G::name)];
};

// G records are never freed, but their owners rewrite the plain fields at will: copied by an
// uninstrumented function, validated afterwards by the park generation.
GORO_RACY_READ void read_g(const G* g, GInfo* out) {
  out->g = const_cast<G*>(g);
  out->parkgen = g->parkgen.load(std::memory_order_acquire);
  out->status = g->status.load(std::memory_order_acquire);
  out->goid = g->goid;
  out->reason = g->waitreason;
  out->stack_kind = g->stack_kind;
  out->closure_on_heap = g->closure_on_heap;
  out->insyscall = g->insyscall;
  out->sp = reinterpret_cast<std::uintptr_t>(g->sp);
  out->lo = g->stack_lo;
  out->hi = g->stack_hi;
  out->slot_base = g->slot_base;
  out->slot_size = g->slot_size;
  out->closure = reinterpret_cast<std::uintptr_t>(g->closure);
  out->closure_buf = reinterpret_cast<std::uintptr_t>(g->closure_buf);
  out->closure_size = g->closure_size;
  out->m = g->m;
  out->site = g->site;
  std::memcpy(out->name, g->name, sizeof out->name);
  out->name[sizeof out->name - 1] = 0;
}

GORO_RACY_READ std::pair<std::uint32_t, std::uint32_t> read_gen(const G* g) {
  return {g->parkgen.load(std::memory_order_acquire), g->status.load(std::memory_order_acquire)};
}

struct MInfo {
  std::uintptr_t g0_sp, g0_lo, g0_hi, altstack;
};

GORO_RACY_READ MInfo read_m(const M* m) {
  MInfo i;
  i.g0_sp = reinterpret_cast<std::uintptr_t>(m->g0_sp);
  i.g0_lo = reinterpret_cast<std::uintptr_t>(m->g0_stack_bottom);
  i.g0_hi = i.g0_lo + m->g0_stack_size;
  i.altstack = reinterpret_cast<std::uintptr_t>(m->altstack);
  return i;
}

struct GList {
  G** buf;
  std::size_t cap, n, seen;
};

void collect_g(G* g, void* arg) {
  auto* l = static_cast<GList*>(arg);
  l->seen++;
  if (l->n < l->cap) l->buf[l->n++] = g;
}

struct ChanRec {
  const ChanCore* c;
  bool judgeable;
  std::uint32_t first_handle, nhandles;
};

struct WaitRec {
  ChanWaiter w;
  std::uint32_t chan;  // index into the channel records
};

class Collector final : public ChanVisitor {
 public:
  explicit Collector(Arena* a)
      : chans(ArenaAlloc<ChanRec>(a)),
        handles(ArenaAlloc<std::uintptr_t>(a)),
        waits(ArenaAlloc<WaitRec>(a)) {}
  void channel(const ChanCore* c, bool judgeable) override {
    chans.push_back(ChanRec{c, judgeable, static_cast<std::uint32_t>(handles.size()), 0});
  }
  void handle(std::uintptr_t addr) override {
    handles.push_back(addr);
    chans.back().nhandles++;
  }
  void waiter(const ChanWaiter& w) override {
    waits.push_back(WaitRec{w, static_cast<std::uint32_t>(chans.size() - 1)});
  }
  AVec<ChanRec> chans;
  AVec<std::uintptr_t> handles;
  AVec<WaitRec> waits;
};

// Verdicts.
enum class Verdict : std::uint8_t {
  kAlive,      // running, runnable, or can be woken
  kLeaked,     // can never be woken
  kUnknown,    // blocked on something find_leaks cannot judge
  kCandidate,  // blocked on tracked channels only: decided by the fixpoint
};

enum class Why : std::uint8_t {
  kNone,
  kNilChan,
  kNoCases,
  kChannels,
  kSync,
  kUntracked,
  kTrackingOff,
  kNotJudgeable,
  kNoScan,
  kNoRegisters,
  kOtherWait,
};

const char* why_string(Why w, WaitReason r) {
  switch (w) {
    case Why::kNone:
      return "";
    case Why::kNilChan:
      return "blocked on a nil channel: nothing can ever wake it";
    case Why::kNoCases:
      return "select with no cases: nothing can ever wake it";
    case Why::kChannels:
      return "every handle of every channel it waits on is held by goroutines that can never "
             "run again";
    case Why::kSync:
      switch (r) {
        case WaitReason::kMutex:
          return "cannot judge: waits on a goro::Mutex or RWMutex (a plain object that any code "
                 "holding a pointer to it may still unlock)";
        case WaitReason::kWaitGroup:
          return "cannot judge: waits on a goro::WaitGroup or Group (a plain object that any "
                 "code holding a pointer to it may still call done on)";
        case WaitReason::kOnce:
          return "cannot judge: waits on a goro::Once";
        default:
          return "cannot judge: waits on a goro::Cond, Semaphore or another semaphore-based "
                 "primitive (a plain object that any code holding a pointer to it may signal)";
      }
    case Why::kUntracked:
      return "cannot judge: waits on a channel made before leak tracking started";
    case Why::kTrackingOff:
      return "cannot judge: channel waits are judged only with leak tracking on "
             "(goro::debug::track_leaks() or GORO_LEAKCHECK=1 before the channels are made)";
    case Why::kNotJudgeable:
      return "cannot judge: the channel's handle registry is incomplete (a handle was being "
             "made, or recording one ran out of memory)";
    case Why::kNoScan:
      return "cannot judge: this process's memory cannot be read back (process_vm_readv and "
             "/proc/self/mem both refused)";
    case Why::kNoRegisters:
      return "cannot judge: a thread's registers could not be read (it blocks SIGURG, or did "
             "not answer it in time)";
    case Why::kOtherWait:
      return "cannot judge: an unknown kind of wait";
  }
  return "";
}

struct GState {
  GInfo info;
  Verdict verdict = Verdict::kAlive;
  Why why = Why::kNone;
  std::int32_t cand = -1;  // index into the candidates
};

struct Candidate {
  std::uint32_t gi;              // index into the goroutines
  std::uintptr_t frame_top = 0;  // [sp, frame_top): runtime frames
  std::uint32_t first_wait = 0;  // its waits, contiguous in `waits` (sorted by G)
  std::uint32_t nwaits = 0;
  std::uintptr_t image = 0;  // a copy of [sp, hi) in the arena (0: unreadable)
  bool awake = false;        // one of its channels is live
  bool reach = false;        // its memory is pointed to by live code
  bool woke = false;         // it ran since the snapshot
};

struct OwnedRange {
  std::uintptr_t lo, hi;
  std::uint32_t cand;
  bool stack;
};

struct Edge {
  std::uint32_t from, to;
};

// One analysis (steps 1-5 of the design). Everything it allocates lives in its arena.
class Analysis {
 public:
  Analysis(const UnwindRegs& regs, G* self)
      : regs_(regs),
        self_(self),
        gs_(ArenaAlloc<GState>(&arena_)),
        col_(&arena_),
        cands_(ArenaAlloc<Candidate>(&arena_)),
        owned_(ArenaAlloc<OwnedRange>(&arena_)),
        excl_(ArenaAlloc<Range>(&arena_)),
        edges_(ArenaAlloc<Edge>(&arena_)),
        elems_(ArenaAlloc<std::uintptr_t>(&arena_)),
        chan_live_(ArenaAlloc<std::uint8_t>(&arena_)),
        timed_selects_(ArenaAlloc<G*>(&arena_)) {}

  void run();

  std::size_t size() const { return gs_.size(); }
  const GState& at(std::size_t i) const { return gs_[i]; }
  bool tracked() const { return tracked_; }
  bool scanned() const { return scanned_; }

 private:
  void snapshot_goroutines();
  void classify();
  bool scan();
  void fixpoint();
  bool revalidate();

  // The scan.
  void add_exclusions(MemReader& mem);
  void scan_range(MemReader& mem, std::uintptr_t lo, std::uintptr_t hi, std::int64_t owner);
  void scan_words(MemReader& mem, const std::uint64_t* w, std::size_t n, std::uintptr_t at,
                  std::int64_t owner);
  void on_hit(MemReader& mem, const OwnedRange& r, std::uintptr_t v, std::uintptr_t at,
              const std::uint64_t* w, std::size_t n, std::size_t idx, std::int64_t owner);
  bool is_copy(MemReader& mem, const Candidate& c, const OwnedRange& r, std::uintptr_t v,
               std::uintptr_t at, const std::uint64_t* w, std::size_t n, std::size_t idx);

  Arena arena_;
  UnwindRegs regs_;
  G* self_;
  AVec<GState> gs_;
  Collector col_;
  AVec<Candidate> cands_;
  AVec<OwnedRange> owned_;
  AVec<Range> excl_;
  AVec<Edge> edges_;
  AVec<std::uintptr_t> elems_;  // anchors: waiter value pointers, sorted
  AVec<std::uint8_t> chan_live_;
  AVec<G*> timed_selects_;
  std::uintptr_t owned_lo_ = 0, owned_hi_ = 0;
  std::uint64_t* buf_ = nullptr;  // the scan's read buffer
  bool tracked_ = false;
  bool scanned_ = false;
  Why why_ = Why::kNoScan;  // why scan() failed
};

constexpr std::size_t kReadChunk = 1 << 20;

void Analysis::snapshot_goroutines() {
  std::size_t want = 1024;
  G** list = nullptr;
  std::size_t n = 0;
  for (;;) {
    list = static_cast<G**>(arena_.alloc(want * sizeof(G*), alignof(G*)));
    GList l{list, want, 0, 0};
#if defined(GORO_TSAN)
    // G records being reconstructed by gfget outside the G lock are read on purpose (the park
    // generation decides later): TSan must not see that benign race.
    __tsan_ignore_thread_begin();
#endif
    for_each_g(collect_g, &l);
#if defined(GORO_TSAN)
    __tsan_ignore_thread_end();
#endif
    if (l.seen <= l.cap) {
      n = l.n;
      break;
    }
    want = l.seen + l.seen / 4 + 64;
  }
  gs_.resize(n);
  for (std::size_t i = 0; i < n; i++) read_g(list[i], &gs_[i].info);
}

// Step 2.
void Analysis::classify() {
  tracked_ = chan_tracking();
  chan_leak_visit(col_);
  // Goroutines in a select with an armed deadline.
  const int np = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < np; i++) {
    P* p = sched.allp[i];
    if (p == nullptr) continue;
    LockGuard hold(p->timers.lock);
    for (const TimerHeap::Entry& e : p->timers.t) {
      Timer* t = e.t;
      if (G* g = chan_select_timer_g(t)) timed_selects_.push_back(g);
    }
  }
  std::sort(timed_selects_.begin(), timed_selects_.end());
  // Waits grouped by goroutine.
  std::sort(col_.waits.begin(), col_.waits.end(),
            [](const WaitRec& a, const WaitRec& b) { return a.w.g < b.w.g; });
  for (std::size_t i = 0; i < gs_.size(); i++) {
    GState& s = gs_[i];
    const GInfo& g = s.info;
    if (g.g == self_ || g.stack_kind == kStackThread || g.status != kGWaiting || g.insyscall) {
      continue;  // alive
    }
    switch (g.reason) {
      case WaitReason::kChanReceiveNil:
      case WaitReason::kChanSendNil:
        s.verdict = Verdict::kLeaked;
        s.why = Why::kNilChan;
        continue;
      case WaitReason::kSelectNoCases:
        s.verdict = Verdict::kLeaked;
        s.why = Why::kNoCases;
        continue;
      case WaitReason::kMutex:
      case WaitReason::kWaitGroup:
      case WaitReason::kSemacquire:
      case WaitReason::kOnce:
        s.verdict = Verdict::kUnknown;
        s.why = Why::kSync;
        continue;
      case WaitReason::kChanReceive:
      case WaitReason::kChanSend:
      case WaitReason::kSelect:
        break;
      case WaitReason::kSleep:
      case WaitReason::kIORead:
      case WaitReason::kIOWrite:
        continue;  // time or I/O wakes it
      default:
        s.verdict = Verdict::kUnknown;
        s.why = Why::kOtherWait;
        continue;
    }
    auto lo = std::lower_bound(col_.waits.begin(), col_.waits.end(), g.g,
                               [](const WaitRec& w, G* gp) { return w.w.g < gp; });
    auto hi = lo;
    while (hi != col_.waits.end() && hi->w.g == g.g) ++hi;
    const auto nw = static_cast<std::uint32_t>(hi - lo);
    if (nw == 0) {
      // Not on any tracked channel: a select with only a deadline (alive), or a wait on
      // untracked channels.
      if (g.reason == WaitReason::kSelect &&
          std::binary_search(timed_selects_.begin(), timed_selects_.end(), g.g)) {
        continue;
      }
      s.verdict = Verdict::kUnknown;
      s.why = tracked_ ? Why::kUntracked : Why::kTrackingOff;
      continue;
    }
    bool timed = false, done = false, short_cases = false;
    for (auto it = lo; it != hi; ++it) {
      timed = timed || it->w.select_timed;
      done = done || it->w.select_done;
      if (it->w.select != nullptr && it->w.select_cases != static_cast<int>(nw)) {
        short_cases = true;
      }
    }
    if (timed || done) continue;  // a deadline or a won case wakes it
    if (short_cases) {
      s.verdict = Verdict::kUnknown;
      s.why = Why::kUntracked;  // some of its select's channels are untracked
      continue;
    }
    Candidate c;
    c.gi = static_cast<std::uint32_t>(i);
    c.first_wait = static_cast<std::uint32_t>(lo - col_.waits.begin());
    c.nwaits = nw;
    for (auto it = lo; it != hi; ++it) c.frame_top = std::max(c.frame_top, it->w.frame_top);
    s.verdict = Verdict::kCandidate;
    s.cand = static_cast<std::int32_t>(cands_.size());
    cands_.push_back(c);
  }
}

// Step 3 helpers.

void Analysis::add_exclusions(MemReader& mem) {
  (void)mem;
  arena_.for_each_chunk([&](std::uintptr_t lo, std::size_t n) { excl_.push_back({lo, lo + n}); });
  for_each_g_chunk(
      [](const void* lo, std::size_t n, void* arg) {
        auto* self = static_cast<AVec<Range>*>(arg);
        auto a = reinterpret_cast<std::uintptr_t>(lo);
        self->push_back({a, a + n});
      },
      &excl_);
  for (const GState& s : gs_) {
    const GInfo& g = s.info;
    if (g.slot_base != 0 && g.slot_size != 0)
      excl_.push_back({g.slot_base, g.slot_base + g.slot_size});
    if (s.cand >= 0 && g.closure_on_heap && g.closure != 0) {
      excl_.push_back({g.closure, g.closure + g.closure_size});
    }
  }
  // Heap-allocated waiter records of the candidates (a select with many cases).
  for (const Candidate& c : cands_) {
    for (std::uint32_t k = 0; k < c.nwaits; k++) {
      const ChanWaiter& w = col_.waits[c.first_wait + k].w;
      auto a = reinterpret_cast<std::uintptr_t>(w.sudog);
      excl_.push_back({a, a + w.sudog_size});
    }
  }
  // Timer heap arrays.
  const int np = sched.nallp.load(std::memory_order_acquire);
  for (int i = 0; i < np; i++) {
    P* p = sched.allp[i];
    if (p == nullptr) continue;
    LockGuard hold(p->timers.lock);
    auto a = reinterpret_cast<std::uintptr_t>(p->timers.t.data());
    if (a != 0) excl_.push_back({a, a + p->timers.t.capacity() * sizeof(TimerHeap::Entry)});
  }
}

void Analysis::on_hit(MemReader& mem, const OwnedRange& r, std::uintptr_t v, std::uintptr_t at,
                      const std::uint64_t* w, std::size_t n, std::size_t idx, std::int64_t owner) {
  Candidate& c = cands_[r.cand];
  if (owner == static_cast<std::int64_t>(r.cand)) return;  // its own memory
  if (r.stack) {
    if (v < c.frame_top) return;  // the runtime's frames
    if (std::binary_search(elems_.begin(), elems_.end(), v)) return;
    if (is_copy(mem, c, r, v, at, w, n, idx)) return;
  }
  if (owner < 0) {
    c.reach = true;
  } else {
    edges_.push_back(Edge{static_cast<std::uint32_t>(owner), r.cand});
  }
}

// Whether the word at `at` (w[idx], value v) lies in a byte-exact copy of candidate c's stack.
bool Analysis::is_copy(MemReader& mem, const Candidate& c, const OwnedRange& r, std::uintptr_t v,
                       std::uintptr_t at, const std::uint64_t* w, std::size_t n, std::size_t idx) {
  if (c.image == 0) return false;
  const auto* img = reinterpret_cast<const std::uint64_t*>(c.image);
  const std::size_t words = (r.hi - r.lo) / 8;
  const std::size_t half = kCopyWindow / 16;  // words on each side
  for (std::size_t o = 0; o < words; o++) {
    if (img[o] != v) continue;
    const std::size_t wlo = o >= half ? o - half : 0;
    const std::size_t whi = std::min(words, o + half);
    // Source words [idx - (o - wlo), idx + (whi - o)).
    if (idx >= o - wlo && idx + (whi - o) <= n) {
      if (std::memcmp(w + (idx - (o - wlo)), img + wlo, (whi - wlo) * 8) == 0) return true;
      continue;
    }
    // The window crosses our buffer: read it.
    const std::uintptr_t src = at - (o - wlo) * 8;
    std::uint64_t tmp[kCopyWindow / 8];
    if (mem.read(tmp, src, (whi - wlo) * 8) && std::memcmp(tmp, img + wlo, (whi - wlo) * 8) == 0) {
      return true;
    }
  }
  return false;
}

void Analysis::scan_words(MemReader& mem, const std::uint64_t* w, std::size_t n, std::uintptr_t at,
                          std::int64_t owner) {
  const std::uintptr_t lo = owned_lo_, span = owned_hi_ - owned_lo_;
  for (std::size_t i = 0; i < n; i++) {
    const std::uintptr_t v = w[i];
    if (v - lo >= span) continue;
    // The last owned range starting at or below v.
    auto it = std::upper_bound(owned_.begin(), owned_.end(), v,
                               [](std::uintptr_t x, const OwnedRange& r) { return x < r.lo; });
    if (it == owned_.begin()) continue;
    --it;
    if (v >= it->hi) continue;
    on_hit(mem, *it, v, at + i * 8, w, n, i, owner);
  }
}

// Scans [lo, hi) (8-byte aligned inside) as memory of `owner` (-1: outside every candidate).
void Analysis::scan_range(MemReader& mem, std::uintptr_t lo, std::uintptr_t hi,
                          std::int64_t owner) {
  lo = (lo + 7) & ~std::uintptr_t{7};
  hi &= ~std::uintptr_t{7};
  while (lo < hi) {
    std::size_t len = std::min<std::size_t>(kReadChunk, hi - lo);
    if (mem.read(buf_, lo, len)) {
      scan_words(mem, buf_, len / 8, lo, owner);
    } else {
      // Part of it is gone or unreadable: page by page.
      for (std::uintptr_t p = lo; p < lo + len;) {
        std::uintptr_t e = std::min<std::uintptr_t>((p & ~(kPage - 1)) + kPage, lo + len);
        if (mem.read(buf_, p, e - p)) scan_words(mem, buf_, (e - p) / 8, p, owner);
        p = e;
      }
    }
    lo += len;
  }
}

struct ThreadSp {
  int tid;
  std::uintptr_t sp;  // 0: unknown (running)
};

// Step 3.
bool Analysis::scan() {
  MemReader mem;
  if (!mem.usable()) return false;
  buf_ = static_cast<std::uint64_t*>(arena_.alloc(kReadChunk, 64));

  // Candidates' images, anchors and owned ranges.
  for (std::uint32_t k = 0; k < cands_.size(); k++) {
    Candidate& c = cands_[k];
    const GInfo& g = gs_[c.gi].info;
    if (g.sp < g.lo || g.sp >= g.hi) continue;  // inconsistent: revalidation will see it
    const std::size_t len = g.hi - g.sp;
    void* img = arena_.alloc(len, 8);
    if (mem.read(img, g.sp, len)) c.image = reinterpret_cast<std::uintptr_t>(img);
    owned_.push_back(OwnedRange{g.sp, g.hi, k, true});
    if (g.closure != 0) {
      const std::uintptr_t cl = g.closure;
      const std::uintptr_t ch = cl + (g.closure_on_heap ? g.closure_size : kInlineClosure);
      owned_.push_back(OwnedRange{cl, ch, k, false});
    }
    for (std::uint32_t j = 0; j < c.nwaits; j++) {
      elems_.push_back(reinterpret_cast<std::uintptr_t>(col_.waits[c.first_wait + j].w.elem));
    }
  }
  std::sort(elems_.begin(), elems_.end());
  std::sort(owned_.begin(), owned_.end(),
            [](const OwnedRange& a, const OwnedRange& b) { return a.lo < b.lo; });
  if (owned_.empty()) return true;
  owned_lo_ = owned_.front().lo;
  owned_hi_ = 0;
  for (const OwnedRange& r : owned_) owned_hi_ = std::max(owned_hi_, r.hi);

  add_exclusions(mem);

  // Threads: where each one's stack is live from.
  AVec<ThreadSp> threads{ArenaAlloc<ThreadSp>(&arena_)};
  const int self_tid = static_cast<int>(::syscall(SYS_gettid));
  {
    int dfd = ::open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      char dents[4096];
      for (;;) {
        long nread = ::syscall(SYS_getdents64, dfd, dents, sizeof dents);
        if (nread <= 0) break;
        for (long off = 0; off < nread;) {
          auto* d = reinterpret_cast<struct dirent64*>(dents + off);
          off += d->d_reclen;
          int tid = std::atoi(d->d_name);
          if (tid <= 0) continue;
          ThreadSp t{tid, 0};
          if (tid == self_tid) {
            t.sp = regs_.rsp;
          } else {
            char path[64], text[256];
            std::snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
            if (read_small_file(path, text, sizeof text) > 0 &&
                std::strncmp(text, "running", 7) != 0) {
              // "nr a1 a2 a3 a4 a5 a6 sp pc", or "-1 sp pc" when blocked outside a system call.
              char* tok[10];
              int nt = 0;
              char* save = nullptr;
              for (char* p = ::strtok_r(text, " \n", &save); p != nullptr && nt < 10;
                   p = ::strtok_r(nullptr, " \n", &save)) {
                tok[nt++] = p;
              }
              if (nt == 9) t.sp = std::strtoull(tok[7], nullptr, 16);
              if (nt == 3) t.sp = std::strtoull(tok[1], nullptr, 16);
            }
          }
          threads.push_back(t);
        }
      }
      ::close(dfd);
    }
  }
  // Registers of every thread that may hold a user pointer: all but the caller (captured at
  // entry), idle Ms (parked in the scheduler: only runtime values) and the runtime's helper
  // threads (named "goro-...": sysmon, the SIGQUIT dump thread, the deadlock check).
  {
    AVec<int> idle_ms{ArenaAlloc<int>(&arena_)};
    {
      LockGuard hold(sched.lock);
      for (M* m = sched.midle; m != nullptr; m = m->schedlink) {
        idle_ms.push_back(m->tid.load(std::memory_order_relaxed));
      }
    }
    AVec<Captured> caps{ArenaAlloc<Captured>(&arena_)};
    for (const ThreadSp& t : threads) {
      if (t.tid == self_tid) continue;
      if (std::find(idle_ms.begin(), idle_ms.end(), t.tid) != idle_ms.end()) continue;
      char path[64], comm[32];
      std::snprintf(path, sizeof path, "/proc/self/task/%d/comm", t.tid);
      if (read_small_file(path, comm, sizeof comm) > 0 && std::strncmp(comm, "goro-", 5) == 0) {
        continue;
      }
      if (sanitizer_runtime_thread(t.tid) == 1) continue;  // holds no pointer of the program's
      Captured c{};
      c.tid = t.tid;
      caps.push_back(c);
    }
    if (!capture_registers(caps.data(), caps.size())) {
      why_ = Why::kNoRegisters;
      return false;
    }
    for (const Captured& c : caps) {
      if (!c.have) continue;
      scan_words(mem, c.regs, kRegWords, 0, -1);
      for (ThreadSp& t : threads) {
        if (t.tid == c.tid) t.sp = c.regs[REG_RSP];
      }
    }
  }

  // Non-candidate goroutines: their live stacks and inline closures; their Ms' g0 stacks.
  AVec<Range> explicit_ext{ArenaAlloc<Range>(&arena_)};
  AVec<std::uintptr_t> altstacks{ArenaAlloc<std::uintptr_t>(&arena_)};
  for (const GState& s : gs_) {
    const GInfo& g = s.info;
    if (s.cand >= 0) continue;
    if (g.status != kGRunnable && g.status != kGRunning && g.status != kGWaiting) continue;
    if (!g.closure_on_heap && g.closure == g.closure_buf && g.closure != 0) {
      explicit_ext.push_back({g.closure_buf, g.closure_buf + kInlineClosure});
    }
    if (g.slot_base == 0 || g.hi <= g.lo) continue;  // not started: no stack yet
    std::uintptr_t from = g.lo;
    if (g.g == self_) {
      from = regs_.rsp;
    } else if (g.status == kGRunning) {
      for (const ThreadSp& t : threads) {
        if (t.sp >= g.lo && t.sp < g.hi) from = t.sp;  // its thread is in a system call
      }
    } else if (g.sp >= g.lo && g.sp < g.hi) {
      from = g.sp;
    }
    explicit_ext.push_back({from, g.hi});
    if (g.status == kGRunning && g.m != nullptr) {
      // Its M is on the goroutine's stack: g0 is live only above the saved g0 sp.
      MInfo mi = read_m(g.m);
      if (mi.g0_sp > mi.g0_lo && mi.g0_sp < mi.g0_hi) excl_.push_back({mi.g0_lo, mi.g0_sp});
      if (mi.altstack != 0) altstacks.push_back(mi.altstack);
    }
  }
  {
    LockGuard hold(sched.lock);
    for (M* m = sched.midle; m != nullptr; m = m->schedlink) {
      MInfo mi = read_m(m);
      if (mi.altstack != 0) altstacks.push_back(mi.altstack);
    }
  }

  // The mappings.
  std::size_t cap = 1 << 20;
  char* maps = nullptr;
  ssize_t mlen = -1;
  for (int tries = 0; tries < 6; tries++) {
    maps = static_cast<char*>(arena_.alloc(cap, 8));
    mlen = read_small_file("/proc/self/maps", maps, cap);
    if (mlen < 0 || static_cast<std::size_t>(mlen) + 1 < cap) break;
    cap *= 4;
  }
  if (mlen < 0) return false;
  struct Mapping {
    std::uintptr_t lo, hi;
    bool scan;
  };
  AVec<Mapping> mappings{ArenaAlloc<Mapping>(&arena_)};
  for (char* line = maps; *line != 0;) {
    char* eol = std::strchr(line, '\n');
    if (eol != nullptr) *eol = 0;
    unsigned long long lo = 0, hi = 0;
    char perms[8] = {};
    int pathpos = 0;
    if (std::sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &lo, &hi, perms, &pathpos) >= 3) {
      const char* path = pathpos > 0 ? line + pathpos : "";
      while (*path == ' ') path++;
      const bool readable = perms[0] == 'r';
      const bool writable = perms[1] == 'w';
      const bool anon = *path == 0;
      bool scan = readable && (writable || anon) && hi - lo < kHugeMapping;
      if (path[0] == '[' && std::strcmp(path, "[heap]") != 0 && std::strcmp(path, "[stack]") != 0 &&
          std::strncmp(path, "[anon", 5) != 0) {
        scan = false;  // [vvar], [vdso], [vsyscall]
      }
      if (std::strncmp(path, "/dev/", 5) == 0 && std::strncmp(path, "/dev/zero", 9) != 0 &&
          std::strncmp(path, "/dev/shm/", 9) != 0) {
        scan = false;  // device memory: reads may have effects
      }
      mappings.push_back(
          Mapping{static_cast<std::uintptr_t>(lo), static_cast<std::uintptr_t>(hi), scan});
    }
    if (eol == nullptr) break;
    line = eol + 1;
  }
  auto mapping_of = [&](std::uintptr_t a) -> const Mapping* {
    for (const Mapping& m : mappings) {
      if (a >= m.lo && a < m.hi) return &m;
    }
    return nullptr;
  };
  // Alternate signal stacks: exactly their own range. Not "the mapping holding each": the
  // kernel merges an altstack's anonymous mapping with a neighbouring one of the same flags,
  // such as a malloc arena's heap (MAP_NORESERVE both), and skipping that arena hid the only
  // references to a healthy goroutine's channel (LeakHealthy heap_registry, ~3 % of runs).
  for (std::uintptr_t a : altstacks) excl_.push_back({a, a + kAltStackSize});
  // Thread stacks below each thread's stack pointer are dead.
  for (const ThreadSp& t : threads) {
    if (t.sp == 0) continue;
    if (const Mapping* m = mapping_of(t.sp)) excl_.push_back({m->lo, t.sp & ~std::uintptr_t{7}});
  }

  std::sort(excl_.begin(), excl_.end(), [](const Range& a, const Range& b) { return a.lo < b.lo; });
  AVec<Range> merged{ArenaAlloc<Range>(&arena_)};
  for (const Range& r : excl_) {
    if (r.hi <= r.lo) continue;
    if (!merged.empty() && r.lo <= merged.back().hi) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }

  // (a) Everything else, page by page where pages exist.
  auto* present = static_cast<unsigned char*>(arena_.alloc(kReadChunk / kPage, 8));
  // [lo, hi) need not be page-aligned (a thread's live stack starts at its sp): pages are
  // looked up over the aligned cover, words scanned over [lo, hi) only.
  auto scan_gap = [&](std::uintptr_t lo, std::uintptr_t hi) {
    std::uintptr_t page = lo & ~(kPage - 1);
    const std::uintptr_t end = (hi + kPage - 1) & ~(kPage - 1);
    while (page < end) {
      const std::uintptr_t e = std::min<std::uintptr_t>(end, page + kReadChunk);
      mem.pages(page, e, present);
      for (std::uintptr_t p = page; p < e;) {
        if (present[(p - page) / kPage] == 0) {
          p += kPage;
          continue;
        }
        std::uintptr_t q = p;
        while (q < e && present[(q - page) / kPage] != 0) q += kPage;
        scan_range(mem, std::max(p, lo), std::min(q, hi), -1);
        p = q;
      }
      page = e;
    }
  };
  for (const Mapping& m : mappings) {
    if (!m.scan) continue;
    std::uintptr_t at = m.lo;
    auto it = std::upper_bound(merged.begin(), merged.end(), m.lo,
                               [](std::uintptr_t x, const Range& r) { return x < r.lo; });
    if (it != merged.begin() && std::prev(it)->hi > at) at = std::prev(it)->hi;
    for (; at < m.hi && it != merged.end() && it->lo < m.hi; ++it) {
      if (it->lo > at) scan_gap(at, it->lo);
      at = std::max(at, it->hi);
    }
    if (at < m.hi) scan_gap(at, m.hi);
  }
  // Slots and closures skipped above: the live parts of other goroutines, and the caller's
  // registers (it may keep a pointer in one).
  for (const Range& r : explicit_ext) scan_range(mem, r.lo, r.hi, -1);
  const std::uint64_t reg_words[] = {regs_.rbp, regs_.rbx, regs_.r12,
                                     regs_.r13, regs_.r14, regs_.r15};
  scan_words(mem, reg_words, 6, 0, -1);
  // (b) The candidates' own memory: edges.
  for (const OwnedRange& r : owned_) scan_range(mem, r.lo, r.hi, r.cand);
  return true;
}

// Step 4.
void Analysis::fixpoint() {
  chan_live_.assign(col_.chans.size(), 0);
  // Which candidate holds each handle (or none).
  AVec<std::int32_t> holder{ArenaAlloc<std::int32_t>(&arena_)};
  holder.assign(col_.handles.size(), -1);
  for (std::size_t h = 0; h < col_.handles.size(); h++) {
    const std::uintptr_t a = col_.handles[h];
    auto it = std::upper_bound(owned_.begin(), owned_.end(), a,
                               [](std::uintptr_t x, const OwnedRange& r) { return x < r.lo; });
    if (it == owned_.begin()) continue;
    --it;
    if (a < it->hi) holder[h] = static_cast<std::int32_t>(it->cand);
  }
  auto live_mem = [&](std::int32_t k) {
    return cands_[k].awake || cands_[k].reach || cands_[k].woke;
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t ci = 0; ci < col_.chans.size(); ci++) {
      if (chan_live_[ci]) continue;
      const ChanRec& c = col_.chans[ci];
      bool live = !c.judgeable || !scanned_;
      for (std::uint32_t h = 0; !live && h < c.nhandles; h++) {
        const std::int32_t k = holder[c.first_handle + h];
        live = k < 0 || live_mem(k);
      }
      if (live) {
        chan_live_[ci] = 1;
        changed = true;
      }
    }
    for (Candidate& c : cands_) {
      if (c.awake) continue;
      for (std::uint32_t j = 0; j < c.nwaits; j++) {
        if (chan_live_[col_.waits[c.first_wait + j].chan]) {
          c.awake = true;
          changed = true;
          break;
        }
      }
    }
    for (const Edge& e : edges_) {
      if (!cands_[e.to].reach && live_mem(static_cast<std::int32_t>(e.from))) {
        cands_[e.to].reach = true;
        changed = true;
      }
    }
  }
}

// Step 5: whether every candidate is still parked as it was.
bool Analysis::revalidate() {
  bool all = true;
  for (Candidate& c : cands_) {
    const GInfo& g = gs_[c.gi].info;
    auto [gen, st] = read_gen(g.g);
    if (gen != g.parkgen || st != kGWaiting) {
      c.woke = true;
      all = false;
    }
  }
  for (GState& s : gs_) {
    if (s.verdict != Verdict::kLeaked) continue;
    auto [gen, st] = read_gen(s.info.g);
    if (gen != s.info.parkgen || st != kGWaiting) s.verdict = Verdict::kAlive;
  }
  return all;
}

void Analysis::run() {
  snapshot_goroutines();
  classify();
  scanned_ = cands_.empty() || scan();
  fixpoint();
  if (!revalidate()) {
    for (Candidate& c : cands_) c.awake = false;
    fixpoint();
  }
  for (const Candidate& c : cands_) {
    GState& s = gs_[c.gi];
    if (c.woke) {
      s.verdict = Verdict::kAlive;
      continue;
    }
    if (!scanned_) {
      s.verdict = Verdict::kUnknown;
      s.why = why_;
      continue;
    }
    if (!c.awake) {
      s.verdict = Verdict::kLeaked;
      s.why = Why::kChannels;
      continue;
    }
    // Awake: because of a live channel we could judge, or only because a channel could not
    // be judged?
    bool judged_live = false, unjudgeable = false;
    for (std::uint32_t j = 0; j < c.nwaits; j++) {
      const std::uint32_t ci = col_.waits[c.first_wait + j].chan;
      if (!col_.chans[ci].judgeable) {
        unjudgeable = true;
      } else if (chan_live_[ci]) {
        judged_live = true;
      }
    }
    if (!judged_live && unjudgeable) {
      s.verdict = Verdict::kUnknown;
      s.why = Why::kNotJudgeable;
    } else {
      s.verdict = Verdict::kAlive;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

// One goroutine's block of a Detail::kFull dump.
struct DumpBlock {
  std::uint64_t id = 0;
  std::string header;  // "goroutine 18 \"worker\" [chan receive]:"
  std::string name;
  std::string state;  // inside the brackets, without ", N minutes"
  std::string trace;  // the frames and "created by" lines
};

std::vector<DumpBlock> parse_dump(const std::string& dump) {
  std::vector<DumpBlock> out;
  std::size_t pos = 0;
  while (pos < dump.size()) {
    std::size_t end = dump.find("\n\n", pos);
    if (end == std::string::npos) end = dump.size();
    std::string_view block(dump.data() + pos, end - pos);
    pos = end + 2;
    if (!block.starts_with("goroutine ")) continue;
    DumpBlock b;
    std::size_t nl = block.find('\n');
    b.header = std::string(block.substr(0, nl));
    b.trace = nl == std::string_view::npos ? std::string() : std::string(block.substr(nl + 1));
    if (!b.trace.empty()) b.trace += '\n';
    b.id = std::strtoull(b.header.c_str() + 10, nullptr, 10);
    std::size_t q1 = b.header.find(" \"");
    std::size_t lb = b.header.rfind(" [");
    if (q1 != std::string::npos && lb != std::string::npos && q1 < lb) {
      std::size_t q2 = b.header.rfind('"', lb);
      if (q2 != std::string::npos && q2 > q1 + 1) b.name = b.header.substr(q1 + 2, q2 - q1 - 2);
    }
    if (lb != std::string::npos) {
      std::size_t rb = b.header.find(']', lb);
      b.state = b.header.substr(lb + 2, rb == std::string::npos ? std::string::npos : rb - lb - 2);
      if (std::size_t c = b.state.find(", "); c != std::string::npos) b.state.resize(c);
    }
    out.push_back(std::move(b));
  }
  return out;
}

std::string site_string(const SpawnSite& site) {
  std::string s = "created by ";
  if (site.file != nullptr) {
    s += site.function != nullptr && *site.function != 0 ? site.function : "??";
    s += "\n\t";
    s += site.file;
    s += ':';
    s += std::to_string(site.line);
  } else if (site.pc != nullptr) {
    s += symbolize_line(site.pc, true);
  } else {
    s += "??";
  }
  return s + '\n';
}

struct Finding {
  std::uint64_t id;
  Verdict verdict;
  Why why;
  WaitReason reason;
  SpawnSite site;
};

std::vector<Finding> findings_of(const Analysis& a) {
  std::vector<Finding> out;
  for (std::size_t i = 0; i < a.size(); i++) {
    const GState& s = a.at(i);
    if (s.verdict != Verdict::kLeaked && s.verdict != Verdict::kUnknown) continue;
    out.push_back(Finding{s.info.goid, s.verdict, s.why, s.info.reason, s.info.site});
  }
  return out;
}

// The goroutines every run found leaked (or unknown), in the last run's terms.
std::vector<Finding> analyse(G* self, const UnwindRegs& regs, bool* tracked, bool* scanned,
                             std::size_t* total) {
  std::vector<Finding> first;
  {
    Analysis a(regs, self);
    a.run();
    first = findings_of(a);
    *tracked = a.tracked();
    *scanned = a.scanned();
    *total = a.size() - (self != nullptr ? 1 : 0);
  }
  bool any_leak = false;
  for (const Finding& f : first) any_leak = any_leak || f.verdict == Verdict::kLeaked;
  if (!any_leak) return first;
  Analysis b(regs, self);
  b.run();
  std::vector<Finding> second = findings_of(b);
  std::vector<Finding> out;
  for (const Finding& f : second) {
    if (f.verdict != Verdict::kLeaked) {
      out.push_back(f);
      continue;
    }
    bool both = false;
    for (const Finding& g : first) both = both || (g.id == f.id && g.verdict == Verdict::kLeaked);
    if (both) out.push_back(f);
  }
  return out;
}

const char* const kNotJudged[] = {
    "waits on goro::Mutex / RWMutex (sync.Mutex.Lock): plain objects that any code holding a "
    "pointer may still unlock",
    "waits on goro::WaitGroup / Group (sync.WaitGroup.Wait): plain objects that any code "
    "holding a pointer may still call done() on",
    "waits on goro::Cond, Semaphore and Once (semacquire, sync.Once): plain objects that any "
    "code holding a pointer may still signal",
    "waits on channels made while leak tracking was off (all channel waits, when it is off)",
    "plain threads: they are not goroutines (never listed; what they hold counts as live)",
};

// Not inlined into find_leaks: the caller's stack is scanned from find_leaks's frame up, so
// that frame must stay small (the captured registers and the caller's saved registers), not
// hold this function's locals, whose slots keep stale values from earlier calls until used.
__attribute__((noinline)) goro::debug::LeakReport report(G* self, const UnwindRegs& regs,
                                                         const goro::debug::LeakOptions& opts) {
  EnterRuntime enter;
  goro::debug::LeakReport r;
  bool tracked = false, scanned = false;
  std::size_t total = 0;
  std::vector<Finding> fs = analyse(self, regs, &tracked, &scanned, &total);
  r.goroutines = total;
  r.channels_tracked = tracked;
  r.memory_scanned = scanned;
  for (const char* s : kNotJudged) r.not_judged.emplace_back(s);
  if (fs.empty()) return r;
  std::map<std::uint64_t, DumpBlock> blocks;
  if (opts.stacks) {
    for (DumpBlock& b : parse_dump(goro::debug::goroutines(goro::debug::Detail::kFull))) {
      std::uint64_t id = b.id;
      blocks.emplace(id, std::move(b));
    }
  }
  std::map<std::tuple<int, std::string, std::string, std::string>, goro::debug::LeakGroup> groups;
  for (const Finding& f : fs) {
    goro::debug::LeakGroup g;
    g.state = wait_reason_string(f.reason);
    g.why = why_string(f.why, f.reason);
    auto it = blocks.find(f.id);
    if (it != blocks.end()) {
      g.trace = it->second.trace;
    } else {
      g.trace = site_string(f.site);  // no stacks asked for (or it ended meanwhile)
    }
    auto key = std::make_tuple(f.verdict == Verdict::kLeaked ? 0 : 1, g.state, g.why, g.trace);
    auto [slot, added] = groups.emplace(key, std::move(g));
    slot->second.ids.push_back(f.id);
  }
  for (auto& [key, g] : groups) {
    std::sort(g.ids.begin(), g.ids.end());
    (std::get<0>(key) == 0 ? r.leaked : r.unknown).push_back(std::move(g));
  }
  auto by_count = [](const goro::debug::LeakGroup& a, const goro::debug::LeakGroup& b) {
    return a.ids.size() > b.ids.size();
  };
  std::stable_sort(r.leaked.begin(), r.leaked.end(), by_count);
  std::stable_sort(r.unknown.begin(), r.unknown.end(), by_count);
  return r;
}

}  // namespace

std::atomic<bool> leak_capture_active{false};

void leak_capture_signal(void* ucontext) noexcept {
  RegSlot* slots = g_slots.load(std::memory_order_acquire);
  const int n = g_nslots.load(std::memory_order_acquire);
  if (slots == nullptr) return;
  const int tid = static_cast<int>(::syscall(SYS_gettid));
  for (int i = 0; i < n; i++) {
    if (slots[i].tid.load(std::memory_order_relaxed) != tid) continue;
    if (slots[i].state.load(std::memory_order_relaxed) != 0) return;
    const greg_t* g = static_cast<ucontext_t*>(ucontext)->uc_mcontext.gregs;
    for (int k = 0; k < kRegWords; k++) slots[i].regs[k] = static_cast<std::uint64_t>(g[k]);
    slots[i].state.store(1, std::memory_order_release);
    return;
  }
}

}  // namespace goro::internal

// ---------------------------------------------------------------------------------------------
// Public API (goro/debug.hpp, goro/testing.hpp).

namespace goro::debug {

void track_leaks() noexcept {
  internal::chan_track_on.store(true, std::memory_order_relaxed);
}

bool leaks_tracked() noexcept {
  return internal::chan_tracking();
}

std::size_t LeakReport::leaked_goroutines() const noexcept {
  std::size_t n = 0;
  for (const LeakGroup& g : leaked) n += g.ids.size();
  return n;
}

std::string LeakReport::str() const {
  std::string s;
  auto ids = [](const std::vector<std::uint64_t>& v) {
    std::string t;
    for (std::size_t i = 0; i < v.size() && i < 20; i++) {
      if (i > 0) t += ' ';
      t += std::to_string(v[i]);
    }
    if (v.size() > 20) t += " ...";
    return t;
  };
  s += "goroutine leaks: " + std::to_string(leaked_goroutines()) + " leaked";
  std::size_t unknown_n = 0;
  for (const LeakGroup& g : unknown) unknown_n += g.ids.size();
  s += ", " + std::to_string(unknown_n) + " not judged, of " + std::to_string(goroutines) +
       " goroutines";
  if (!channels_tracked) s += " (channel tracking off: goro::debug::track_leaks())";
  if (channels_tracked && !memory_scanned) s += " (memory scan unavailable)";
  s += "\n";
  for (const LeakGroup& g : leaked) {
    s += "\n" + std::to_string(g.ids.size()) + " leaked [" + g.state + "]: " + g.why +
         "\n  goroutines: " + ids(g.ids) + "\n" + g.trace;
  }
  for (const LeakGroup& g : unknown) {
    s += "\n" + std::to_string(g.ids.size()) + " not judged [" + g.state + "]: " + g.why +
         "\n  goroutines: " + ids(g.ids) + "\n" + g.trace;
  }
  return s;
}

// The caller's registers are captured first thing; its stack is scanned from here up (see
// report()).
__attribute__((noinline)) LeakReport find_leaks(const LeakOptions& options) {
  internal::UnwindRegs regs;
  internal::capture_regs(&regs);
  return internal::report(internal::getg(), regs, options);
}

}  // namespace goro::debug

namespace goro::testing {

std::vector<std::uint64_t> current_goroutines() {
  std::vector<std::uint64_t> ids;
  for (const auto& b : internal::parse_dump(debug::goroutines(debug::Detail::kFull))) {
    ids.push_back(b.id);
  }
  return ids;
}

namespace {

bool ignored(const internal::DumpBlock& b, const LeftOptions& o, std::uint64_t self) {
  if (b.id == self) return true;
  if (std::find(o.ignore_ids.begin(), o.ignore_ids.end(), b.id) != o.ignore_ids.end()) {
    return true;
  }
  for (const std::string& p : o.ignore_name_prefix) {
    if (!p.empty() && b.name.starts_with(p)) return true;
  }
  const std::size_t created = b.trace.rfind("created by ");
  const std::string_view frames =
      std::string_view(b.trace).substr(0, created == std::string::npos ? b.trace.size() : created);
  const std::string_view site =
      created == std::string::npos ? std::string_view() : std::string_view(b.trace).substr(created);
  for (const std::string& p : o.ignore_created_by) {
    if (!p.empty() && site.find(p) != std::string_view::npos) return true;
  }
  for (const std::string& p : o.ignore_in_stack) {
    if (!p.empty() && frames.find(p) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

std::string goroutines_left(const LeftOptions& options) {
  const std::uint64_t self = this_goroutine::id();
  const std::int64_t own = self != 0 ? 1 : 0;
  const bool filters = !options.ignore_ids.empty() || !options.ignore_name_prefix.empty() ||
                       !options.ignore_created_by.empty() || !options.ignore_in_stack.empty();
  auto left_now = [&] {
    std::vector<internal::DumpBlock> left;
    for (internal::DumpBlock& b : internal::parse_dump(debug::goroutines(debug::Detail::kFull))) {
      if (!ignored(b, options, self)) left.push_back(std::move(b));
    }
    return left;
  };
  const auto deadline = std::chrono::steady_clock::now() + options.grace;
  auto pause = std::chrono::milliseconds(1);
  std::int64_t dumped_at = -1;  // num_goroutine() when the last dump found some left
  for (;;) {
    const std::int64_t n = num_goroutine();
    if (n <= own) return {};
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (filters && n != dumped_at) {  // dump again only when the count moved
      if (left_now().empty()) return {};
      dumped_at = n;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(filters ? 100 : 20));
  }
  // The leak finder's verdicts first: the dump below leaves copies of stacks behind, which
  // could hide a leak from it (see leak.cpp, "Missed leaks").
  debug::LeakReport leaks;
  const bool have_leaks = debug::leaks_tracked();
  if (have_leaks) leaks = debug::find_leaks(debug::LeakOptions{.stacks = false});
  std::vector<internal::DumpBlock> left = left_now();
  if (left.empty()) return {};
  std::string s = std::to_string(left.size()) + " goroutine(s) still running after " +
                  std::to_string(options.grace.count()) + " ms:\n\n";
  for (const internal::DumpBlock& b : left) {
    s += b.header;
    if (have_leaks) {
      for (const debug::LeakGroup& g : leaks.leaked) {
        if (std::find(g.ids.begin(), g.ids.end(), b.id) != g.ids.end()) {
          s += "  <- leaked: " + g.why;
        }
      }
    }
    s += '\n' + b.trace + '\n';
  }
  return s;
}

}  // namespace goro::testing
