// stats.cpp - goro::stats(): one snapshot of goroutines, threads, stacks and scheduler
// counters, taken without stopping the world.
//
// Where each number comes from
// ----------------------------
//  * Goroutines by state: a walk over every G record (records live in chunks that are never
//    freed). The list of chunks is copied under the G allocator's lock (g_chunks); the walk
//    itself holds no lock, so spawners are never held up by a scrape. Each record's status is
//    read atomically and, for a live one, its wait reason, insyscall flag and stack slot are
//    read racily (read_g, uninstrumented); each record lands in exactly one state, which
//    makes total == sum(by_state). Goroutines started: LocalCache::created summed
//    (goroutines_created).
//  * Threads: Ms from sched's atomics (nmidle, nmspinning) and racy reads of mlive / mnext;
//    running / blocking / locked from a lock-free walk of every M record (for_each_m).
//    Threads created for blocking calls: when sysmon takes a P from a goroutine inside
//    goro::blocking (retake_syscall_p), the call site recorded in the P is charged to any
//    thread newm creates for it (stats_note_blocking_thread, a 64-slot open-addressing table
//    keyed by the site's address; sites beyond it are counted as "other").
//  * Stacks: the slots of the goroutines the walk found with a stack bound. mincore(2) costs
//    tens of nanoseconds per page here (a 256 KiB slot is 64 pages, so 10,000 parked
//    goroutines took 18 ms per snapshot), so measurements are memoized: a stack whose
//    goroutine has not run since the previous snapshot (same record, goid, parkgen and slot,
//    and not running now) cannot have touched new pages, and keeps its previous count; the
//    others, plus the memoized ones in a rotating 1/64 of the address space (16 MiB regions, so
//    they still merge into few calls; pages the kernel took back, e.g. to swap, show within
//    64 snapshots), are measured: sorted by address, neighbouring slots (a
//    slab's) with one mincore call per run of up to 64 MiB, each slot's resident pages counted
//    from the result. A custom-size slot unmapped meanwhile (its goroutine ended) makes
//    mincore fail with ENOMEM: the run is then measured slot by slot and the vanished slot
//    counts as empty. The memo is kept in walk order (records never move), so matching it is
//    a linear merge. Reserved and cached totals come from the stack allocator's counters
//    (stack_stats).
//  * Scheduler counters: per P (PStats in proc.hpp, owner-only relaxed stores) summed here;
//    preemption and hand-off counters from sysmon; poller wake-ups from netpoll_stats().
//  * Latency histogram: 1 in 64 of each goroutine's runnable transitions is stamped
//    (sched_track_runnable) and recorded by execute() in its P's buckets.
//
// Costs: see goro/stats.hpp. Symbolizing the few call sites a snapshot names is cached per
// address (describe_call_site), so only the first snapshot that names a site pays for it.
//
// Threads: any thread or goroutine; the walk runs preemptible (no lock held), the short
// lock-holding parts (g_chunks, goroutines_created) are bracketed by EnterRuntime.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/platform.hpp"
#include "debug/stats.hpp"
#include "debug/symbolize.hpp"
#include "debug/traceback.hpp"
#include "goro/blocking.hpp"
#include "goro/preempt.hpp"
#include "goro/runtime.hpp"
#include "goro/stats.hpp"
#include "netpoll/netpoll.hpp"
#include "sched/proc.hpp"
#include "stack/stack.hpp"

namespace goro::internal {

static_assert(kSchedLatBuckets == SchedLatencies::kBuckets, "latency buckets: proc.hpp vs stats");
static_assert(kGoroutineStates == static_cast<int>(GoroutineState::kSemacquire) + 1);

namespace {

// ---------------------------------------------------------------------------------------------
// Threads created for blocking calls, by site.

constexpr int kSiteSlots = 64;
struct SiteSlot {
  std::atomic<const void*> pc{nullptr};
  std::atomic<std::uint64_t> n{0};
};
SiteSlot site_slots[kSiteSlots];
std::atomic<std::uint64_t> site_overflow{0};
std::atomic<std::uint64_t> blocking_threads{0};

int site_hash(const void* pc) {
  auto v = reinterpret_cast<std::uintptr_t>(pc);
  return static_cast<int>(((v >> 2) * 0x9E3779B97F4A7C15ull) >> 58);  // 6 bits
}

// ---------------------------------------------------------------------------------------------
// Call-site names.

std::mutex sym_mu;
std::unordered_map<const void*, std::string>* sym_cache = nullptr;  // under sym_mu

// The runtime's own sources (this file's src/ directory).
std::string_view runtime_src_dir() {
  static const std::string_view dir = [] {
    std::string_view self = __FILE__;  // <root>/src/debug/stats.cpp
    const std::size_t cut = self.rfind("/debug/");
    return cut == std::string_view::npos ? std::string_view() : self.substr(0, cut + 1);
  }();
  return dir;
}

// Frames of goro itself: its headers (goro::go, goro::blocking are inlined into the caller),
// its internals and assembly.
bool runtime_frame(const SymFrame& f) {
  std::string_view fn = f.function;
  if (fn.starts_with("goro::internal::") || fn.starts_with("goro_") ||
      fn.starts_with("goro::go<") || fn.starts_with("goro::blocking<") ||
      fn.starts_with("decltype(auto) goro::blocking<") || fn.starts_with("_ZN4goro8internal")) {
    return true;
  }
  std::string_view file = f.file;
  if (file.find("/include/goro/") != std::string_view::npos) return true;
  const std::string_view src = runtime_src_dir();
  return !src.empty() && file.starts_with(src);
}

std::string format_frame(const SymFrame& f) {
  std::string s = f.function;
  if (!f.file.empty()) {
    s += ' ';
    s += f.file;
    s += ':';
    s += std::to_string(f.line);
  } else if (!f.object.empty()) {
    s += " (";
    s += f.object;
    s += ')';
  }
  return s;
}

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%#zx",
                static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(p)));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// The goroutine walk.

struct GView {
  std::uint32_t status;
  WaitReason reason;
  bool insyscall;
  std::uintptr_t slot_base;
  std::size_t slot_size;
  std::uint64_t goid;
  std::uint32_t parkgen;
};

// The fields of a G record, read racily (its owner may be changing them, or gfget
// reconstructing the record); false if it holds no live goroutine.
GORO_RACY_READ bool read_g(const G* g, GView* v) {
  v->status = g->status.load(std::memory_order_relaxed);
  if (v->status != kGRunnable && v->status != kGRunning && v->status != kGWaiting) return false;
  v->reason = g->waitreason;
  v->insyscall = g->insyscall;
  v->slot_base = g->slot_base;
  v->slot_size = g->slot_size;
  v->goid = g->goid;
  v->parkgen = g->parkgen.load(std::memory_order_relaxed);
  return true;
}

struct GIdent {
  std::uint64_t goid;
  char name[sizeof(G::name)];
  SpawnSite site;
};
GORO_RACY_READ void read_g_ident(const G* g, GIdent* out) {
  out->goid = g->goid;
  std::memcpy(out->name, g->name, sizeof out->name);
  out->name[sizeof out->name - 1] = 0;
  out->site = g->site;
}

GoroutineState classify(const GView& v) {
  switch (v.status) {
    case kGRunning:
      return v.insyscall ? GoroutineState::kBlockingCall : GoroutineState::kRunning;
    case kGRunnable:
      return GoroutineState::kRunnable;
    default:
      break;
  }
  switch (v.reason) {
    case WaitReason::kMutex:
      return GoroutineState::kMutex;
    case WaitReason::kWaitGroup:
      return GoroutineState::kWaitGroup;
    case WaitReason::kSemacquire:
    case WaitReason::kOnce:
      return GoroutineState::kSemacquire;
    case WaitReason::kSleep:
      return GoroutineState::kSleep;
    case WaitReason::kChanReceive:
    case WaitReason::kChanReceiveNil:
      return GoroutineState::kChanReceive;
    case WaitReason::kChanSend:
    case WaitReason::kChanSendNil:
      return GoroutineState::kChanSend;
    case WaitReason::kSelect:
    case WaitReason::kSelectNoCases:
      return GoroutineState::kSelect;
    case WaitReason::kIORead:
    case WaitReason::kIOWrite:
      return GoroutineState::kIO;
    case WaitReason::kNone:
      break;
  }
  // Waiting with no reason: the record was read while the goroutine was being readied (the
  // reason is cleared when it runs again).
  return GoroutineState::kRunnable;
}

struct SlotRec {
  std::uintptr_t base;
  std::size_t size;
  std::uint64_t goid;
  G* g;
  std::uint64_t index;  // the record's position in the walk (chunk * per_chunk + slot)
  std::uint32_t parkgen;
  GoroutineState state;
  std::size_t resident;
};

void walk_goroutines(Stats& s, std::vector<SlotRec>& slots) {
  std::vector<G*> chunks(64);
  std::size_t per_chunk = 0;
  for (;;) {
    const std::size_t n = g_chunks(chunks.data(), chunks.size(), &per_chunk);
    if (n <= chunks.size()) {
      chunks.resize(n);
      break;
    }
    chunks.resize(n + n / 4 + 16);
  }
  // No reserve by num_goroutine(): during a spawn burst most goroutines have no stack yet.
  for (std::size_t c = 0; c < chunks.size(); c++) {
    for (std::size_t i = 0; i < per_chunk; i++) {
      G* g = &chunks[c][i];
      GView v;
      if (!read_g(g, &v)) continue;
      const GoroutineState st = classify(v);
      s.goroutines.by_state[static_cast<int>(st)]++;
      s.goroutines.total++;
      if (v.slot_base != 0 && v.slot_size != 0) {
        slots.push_back(
            SlotRec{v.slot_base, v.slot_size, v.goid, g, c * per_chunk + i, v.parkgen, st, 0});
      }
    }
  }
}

// The last snapshot's measurements, in walk order (see "Stacks" above), reused for stacks whose
// goroutine has not run since. Taken out under memo_mu by one snapshot at a time (a concurrent
// one measures everything) and put back when it is done.
std::mutex memo_mu;
std::vector<SlotRec>* memo = nullptr;       // under memo_mu
std::uint32_t memo_round = 0;               // under memo_mu
constexpr std::uint32_t kMemoRefresh = 64;  // every memoized entry is re-measured this often

bool same_stack(const SlotRec& old, const SlotRec& now) {
  return old.goid == now.goid && old.parkgen == now.parkgen && old.base == now.base &&
         old.size == now.size && now.state != GoroutineState::kRunning &&
         now.state != GoroutineState::kBlockingCall;
}

// Measures the resident pages of the slots that need it (see "Stacks" above): those not in
// the memo, those whose goroutine ran since (parkgen moved, or it is running now), and a
// rotating 1/kMemoRefresh of the rest. slots stays in walk order.
void measure_stacks(std::vector<SlotRec>& slots) {
  std::vector<SlotRec> old;
  std::uint32_t round = 0;
  {
    std::lock_guard<std::mutex> hold(memo_mu);
    if (memo != nullptr) old.swap(*memo);
    round = memo_round++;
  }
  std::vector<std::size_t> todo;  // indices into slots, to measure
  todo.reserve(slots.size());
  std::size_t o = 0;
  for (std::size_t k = 0; k < slots.size(); k++) {
    SlotRec& r = slots[k];
    while (o < old.size() && old[o].index < r.index) o++;
    if (o < old.size() && old[o].index == r.index && same_stack(old[o], r) &&
        ((r.base >> 24) + round) % kMemoRefresh != 0) {  // refresh whole 16 MiB regions
      r.resident = old[o].resident;
    } else {
      todo.push_back(k);
    }
  }
  std::sort(todo.begin(), todo.end(),
            [&](std::size_t a, std::size_t b) { return slots[a].base < slots[b].base; });
  // A slot's lowest page is its guard page (never resident) or holds its canary, which every
  // switch reads: the kernel maps the shared zero page there, which mincore reports as
  // resident though it costs no memory. So it is not counted (slots are whole pages).
  const std::size_t page = page_size();
  constexpr std::size_t kMaxRun = 64 << 20;
  std::vector<unsigned char> vec;
  auto count_pages = [&](std::size_t first_page, std::size_t npages) {
    std::size_t n = 0;
    for (std::size_t k = 0; k < npages; k++) n += vec[first_page + k] & 1;
    return n * page;
  };
  std::size_t i = 0;
  while (i < todo.size()) {
    // A run of neighbouring slots todo[i, j).
    const SlotRec& first = slots[todo[i]];
    std::size_t j = i + 1;
    std::uintptr_t end = first.base + first.size;
    while (j < todo.size() && slots[todo[j]].base == end &&
           end + slots[todo[j]].size - first.base <= kMaxRun) {
      end += slots[todo[j]].size;
      j++;
    }
    const std::size_t len = end - first.base;
    vec.resize((len + page - 1) / page);
    if (::mincore(reinterpret_cast<void*>(first.base), len, vec.data()) == 0) {
      for (std::size_t k = i; k < j; k++) {
        SlotRec& r = slots[todo[k]];
        r.resident = count_pages((r.base - first.base) / page + 1, r.size / page - 1);
      }
    } else {
      for (std::size_t k = i; k < j; k++) {
        SlotRec& r = slots[todo[k]];
        if (::mincore(reinterpret_cast<void*>(r.base), r.size, vec.data()) == 0) {
          r.resident = count_pages(1, r.size / page - 1);
        }
      }
    }
    i = j;
  }
  old.assign(slots.begin(), slots.end());
  std::lock_guard<std::mutex> hold(memo_mu);
  if (memo == nullptr) memo = new std::vector<SlotRec>;
  if (memo->empty()) memo->swap(old);
}

void fill_largest(Stats& s, std::vector<SlotRec>& slots) {
  constexpr std::size_t kLargest = 10;
  auto more = [](const SlotRec& a, const SlotRec& b) {
    return a.resident != b.resident ? a.resident > b.resident : a.goid < b.goid;
  };
  // A few spare candidates: some may have exited by the time we read their names.
  const std::size_t want = std::min(slots.size(), kLargest + 6);
  std::partial_sort(slots.begin(), slots.begin() + static_cast<std::ptrdiff_t>(want), slots.end(),
                    more);
  for (std::size_t k = 0; k < want && s.stacks.largest.size() < kLargest; k++) {
    const SlotRec& r = slots[k];
    GIdent id;
    read_g_ident(r.g, &id);
    if (id.goid != r.goid) continue;  // exited (the record was reused) since the walk
    StackUsage u;
    u.goid = r.goid;
    u.name = id.name;
    u.state = r.state;
    u.reserved_bytes = r.size;
    u.resident_bytes = r.resident;
    if (id.site.file != nullptr) {
      u.created_by = id.site.function != nullptr ? id.site.function : "??";
      u.created_by += ' ';
      u.created_by += id.site.file;
      u.created_by += ':';
      u.created_by += std::to_string(id.site.line);
    } else {
      u.created_by = describe_call_site(id.site.pc);
    }
    s.stacks.largest.push_back(std::move(u));
  }
}

// ---------------------------------------------------------------------------------------------
// Threads.

struct MWalk {
  int running = 0, blocking = 0, locked = 0;
  std::vector<std::pair<const void*, std::uint64_t>> sites;  // reserved up front
};

struct MView {
  G* curg;
  bool insyscall;
  const void* site;
  bool locked;
};
GORO_RACY_READ void read_m(const M* m, MView* v) {
  v->curg = m->curg.load(std::memory_order_relaxed);
  v->locked = m->lockedg != nullptr;
  v->insyscall = v->curg != nullptr && v->curg->insyscall;
  v->site = v->insyscall ? v->curg->syscall_site : nullptr;
}

void walk_m(M* m, void* arg) {
  auto* w = static_cast<MWalk*>(arg);
  MView v;
  read_m(m, &v);
  if (v.locked) w->locked++;
  if (v.curg == nullptr) return;
  if (!v.insyscall) {
    w->running++;
    return;
  }
  w->blocking++;
  for (auto& e : w->sites) {
    if (e.first == v.site) {
      e.second++;
      return;
    }
  }
  if (w->sites.size() < w->sites.capacity()) w->sites.emplace_back(v.site, 1);
}

GORO_RACY_READ int read_mlive() {
  return sched.mlive;
}
GORO_RACY_READ std::int64_t read_mnext() {
  return sched.mnext;
}

void fill_threads(Stats& s) {
  s.threads.os = count_threads();
  s.threads.runtime = read_mlive();
  s.threads.idle = sched.nmidle.load(std::memory_order_relaxed);
  s.threads.spinning = sched.nmspinning.load(std::memory_order_relaxed);
  s.threads.created = static_cast<std::uint64_t>(read_mnext());
  MWalk w;
  w.sites.reserve(256);
  for_each_m(walk_m, &w);
  s.threads.running = w.running;
  s.threads.blocking = w.blocking;
  s.threads.locked = w.locked;
  std::sort(w.sites.begin(), w.sites.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [pc, n] : w.sites) {
    s.threads.blocking_by_site.push_back(CallSiteCount{pc, describe_call_site(pc), n});
  }
  s.threads.created_for_blocking = blocking_threads.load(std::memory_order_relaxed);
  for (const SiteSlot& slot : site_slots) {
    const void* pc = slot.pc.load(std::memory_order_acquire);
    if (pc == nullptr) continue;
    const std::uint64_t n = slot.n.load(std::memory_order_relaxed);
    if (n > 0) s.threads.created_by_site.push_back(CallSiteCount{pc, describe_call_site(pc), n});
  }
  if (std::uint64_t n = site_overflow.load(std::memory_order_relaxed); n > 0) {
    s.threads.created_by_site.push_back(CallSiteCount{nullptr, "(other sites)", n});
  }
  std::sort(s.threads.created_by_site.begin(), s.threads.created_by_site.end(),
            [](const CallSiteCount& a, const CallSiteCount& b) { return a.count > b.count; });
}

// ---------------------------------------------------------------------------------------------
// Scheduler counters.

void fill_sched(Stats& s) {
  const int np = sched.nallp.load(std::memory_order_acquire);
  SchedLatencies& h = s.sched.latencies;
  for (int i = 0; i < np; i++) {
    const P* p = sched.allp[i];
    if (p == nullptr) continue;
    const PStats& ps = p->stats;
    s.sched.context_switches += ps.switches.load(std::memory_order_relaxed);
    s.sched.steals += ps.steals.load(std::memory_order_relaxed);
    s.sched.global_queue_takes += ps.global_takes.load(std::memory_order_relaxed);
    h.sum_ns += ps.lat_sum_ns.load(std::memory_order_relaxed);
    for (int b = 0; b < kSchedLatBuckets; b++)
      h.buckets[b] += ps.lat[b].load(std::memory_order_relaxed);
    s.sched.local_runqueues += p->runq.size();
  }
  for (std::uint64_t b : h.buckets) h.count += b;
  s.sched.global_runqueue = sched.runqsize.load(std::memory_order_relaxed);
  const PreemptCounts pc = preempt_counts();
  s.sched.preempt_requests = pc.requested;
  s.sched.preempt_cooperative = pc.cooperative;
  s.sched.preempt_async = pc.async;
  s.sched.syscall_handoffs = blocking_handoffs();
  s.sched.netpoll_wakeups = static_cast<std::uint64_t>(netpoll_stats().readied);
}

void fill_memory(Stats& s) {
  int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return;
  buf[n] = 0;
  unsigned long long size = 0, resident = 0;
  if (std::sscanf(buf, "%llu %llu", &size, &resident) == 2) {
    s.memory.virtual_bytes = size * page_size();
    s.memory.resident_bytes = resident * page_size();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void stats_note_blocking_thread(const void* site) noexcept {
  blocking_threads.fetch_add(1, std::memory_order_relaxed);
  const int h = site_hash(site);
  for (int i = 0; i < kSiteSlots; i++) {
    SiteSlot& slot = site_slots[(h + i) & (kSiteSlots - 1)];
    const void* cur = slot.pc.load(std::memory_order_acquire);
    if (cur == nullptr && slot.pc.compare_exchange_strong(cur, site, std::memory_order_acq_rel)) {
      cur = site;
    }
    if (cur == site) {
      slot.n.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  site_overflow.fetch_add(1, std::memory_order_relaxed);
}

std::string describe_call_site(const void* pc) {
  if (pc == nullptr) return "??";
  {
    std::lock_guard<std::mutex> hold(sym_mu);
    if (sym_cache != nullptr) {
      if (auto it = sym_cache->find(pc); it != sym_cache->end()) return it->second;
    }
  }
  // Symbolize outside the cache's lock (the symbolizer has its own).
  std::vector<SymFrame> frames = symbolize(pc, true);
  std::string s;
  for (const SymFrame& f : frames) {
    if (!runtime_frame(f)) {
      s = format_frame(f);
      break;
    }
  }
  if (s.empty() && !frames.empty() && frames.back().function != "??")
    s = format_frame(frames.back());
  if (s.empty()) s = hex(pc);
  std::lock_guard<std::mutex> hold(sym_mu);
  if (sym_cache == nullptr) sym_cache = new std::unordered_map<const void*, std::string>;
  if (sym_cache->size() >= 4096) sym_cache->clear();
  sym_cache->emplace(pc, s);
  return s;
}

const char* state_label(GoroutineState s) noexcept {
  switch (s) {
    case GoroutineState::kRunning:
      return "running";
    case GoroutineState::kRunnable:
      return "runnable";
    case GoroutineState::kBlockingCall:
      return "blocking_call";
    case GoroutineState::kChanReceive:
      return "chan_receive";
    case GoroutineState::kChanSend:
      return "chan_send";
    case GoroutineState::kSelect:
      return "select";
    case GoroutineState::kMutex:
      return "mutex";
    case GoroutineState::kWaitGroup:
      return "waitgroup";
    case GoroutineState::kSleep:
      return "sleep";
    case GoroutineState::kIO:
      return "io_wait";
    case GoroutineState::kSemacquire:
      return "semacquire";
  }
  return "unknown";
}

}  // namespace goro::internal

// ---------------------------------------------------------------------------------------------
// Public API (goro/stats.hpp).

namespace goro {

using namespace internal;

const char* to_string(GoroutineState s) noexcept {
  switch (s) {
    case GoroutineState::kRunning:
      return "running";
    case GoroutineState::kRunnable:
      return "runnable";
    case GoroutineState::kBlockingCall:
      return "blocking call";
    case GoroutineState::kChanReceive:
      return "chan receive";
    case GoroutineState::kChanSend:
      return "chan send";
    case GoroutineState::kSelect:
      return "select";
    case GoroutineState::kMutex:
      return "sync.Mutex.Lock";
    case GoroutineState::kWaitGroup:
      return "sync.WaitGroup.Wait";
    case GoroutineState::kSleep:
      return "sleep";
    case GoroutineState::kIO:
      return "IO wait";
    case GoroutineState::kSemacquire:
      return "semacquire";
  }
  return "unknown";
}

std::int64_t SchedLatencies::quantile_ns(double q) const noexcept {
  if (count == 0) return 0;
  if (!(q >= 0)) q = 0;
  if (q > 1) q = 1;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (int i = 0; i < kBuckets; i++) {
    seen += buckets[i];
    if (seen >= rank) return upper_bound_ns(i);
  }
  return upper_bound_ns(kBuckets - 1);
}

Stats stats() {
  ensure_started();
  Stats s;
  const std::int64_t start = runtime_start_ns();
  s.uptime_ns = start != 0 ? nanotime() - start : 0;
  s.gomaxprocs = sched.gomaxprocs.load(std::memory_order_relaxed);

  fill_sched(s);
  fill_threads(s);
  std::vector<SlotRec> slots;
  walk_goroutines(s, slots);
  // Read after the walk: every goroutine the walk counted was created before, so
  // goroutines.total <= goroutines.created always holds.
  s.goroutines.created = goroutines_created();
  measure_stacks(slots);
  for (const SlotRec& r : slots) {
    s.stacks.count++;
    s.stacks.in_use_bytes += r.size;
    s.stacks.resident_bytes += r.resident;
  }
  fill_largest(s, slots);
  const StackStats ss = stack_stats();
  s.stacks.reserved_bytes = ss.reserved_bytes;
  s.stacks.cached = static_cast<std::int64_t>(ss.cached);

  fill_memory(s);
  return s;
}

}  // namespace goro
