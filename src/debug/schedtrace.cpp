// schedtrace.cpp - GORO_SCHEDTRACE / GORO_SCHEDDETAIL (Go's GODEBUG=schedtrace,scheddetail)
// and the observability start-up hook.
//
// stats_init() runs once, at the end of start_runtime. It stamps the runtime's start time and
// reads three environment variables; when they are unset it does nothing else, so the trace
// costs nothing: no thread, no timer, no check on any scheduler path.
//  * GORO_SCHEDTRACE=<ms> (> 0): a plain thread (all signals blocked, 256 KiB stack, holding no
//    P and running no goroutine, like sysmon) wakes <ms> milliseconds after its last report
//    (Go's lasttrace + period: late wake-ups delay, never bunch, reports; clock_nanosleep on
//    CLOCK_MONOTONIC), formats one report and writes it to stderr with
//    write(2) (one call per report, so lines of concurrent writers do not interleave within a
//    report). GORO_SCHEDDETAIL=1 adds the P, M and G lines. Go runs this from sysmon; a
//    thread of its own keeps sysmon's timing (and its deep sleep while every P is idle)
//    unchanged, and the trace keeps ticking while the process is idle, as Go's does.
//  * GORO_DEBUG_ADDR=<addr>: a short-lived plain thread calls goro::debug::serve(addr)
//    (http.cpp) and exits; the server lives for the rest of the process.
//
// Reading the scheduler: the report reads sched's atomics and, racily, plain fields of Ps, Ms
// and Gs (GORO_RACY_READ readers below), taking no lock: like sysmon, it may see a record in
// the middle of a change (a number off by one, an M between two states), never unmapped
// memory (P, M and G records are never freed). The G lines walk the G record chunks as
// stats.cpp does.
//
// Format (Go's, see goro/stats.hpp for the fields):
//   SCHED 1000ms: gomaxprocs=2 idleprocs=0 threads=5 spinningthreads=0 idlethreads=1 runqueue=0 [3
//   0]
// with detail:
//   SCHED 1000ms: gomaxprocs=2 idleprocs=0 threads=5 spinningthreads=0 idlethreads=1 runqueue=0
//   sysmonwait=false
//     P0: status=1 schedtick=10 syscalltick=2 m=3 runqsize=0 gfreecnt=5 timerslen=1
//     M3: p=0 curg=7 spinning=false blocked=false lockedg=nil
//     G7: status=2 m=3 lockedm=nil
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/platform.hpp"
#include "base/raw_log.hpp"
#include "debug/stats.hpp"
#include "debug/traceback.hpp"
#include "sched/proc.hpp"

namespace goro::internal {
namespace {

std::atomic<std::int64_t> start_ns{0};
std::int64_t trace_period_ns = 0;  // set before the trace thread starts, then immutable
bool trace_detail = false;

void append_num(std::string& s, std::int64_t v) {
  s += std::to_string(v);
}

// "nil" or the number.
void append_id(std::string& s, bool present, std::int64_t v) {
  if (present) {
    append_num(s, v);
  } else {
    s += "nil";
  }
}

// --- Racy readers (see the design comment).

struct PView {
  std::int32_t id;
  std::uint32_t status;
  std::uint32_t schedtick, syscalltick;
  M* m;
  std::int64_t mid;
  std::uint32_t runqsize;
  int gfree;
  std::size_t ntimers;
};
GORO_RACY_READ void read_p(const P* p, PView* v) {
  v->id = p->id;
  v->status = p->status.load(std::memory_order_relaxed);
  v->schedtick = p->schedtick.load(std::memory_order_relaxed);
  v->syscalltick = p->syscalltick.load(std::memory_order_relaxed);
  v->m = p->m.load(std::memory_order_relaxed);
  v->mid = v->m != nullptr ? v->m->id : -1;
  v->runqsize = p->runq.size();
  v->gfree = p->cache.ngfree;
  v->ntimers = p->timers.t.size();
}

struct MView {
  std::int64_t id;
  int tid;
  P* p;
  std::int32_t pid;
  std::uint64_t curg;
  bool has_curg;
  bool spinning;
  bool blocked;
  std::uint64_t lockedg;
  bool has_lockedg;
};
GORO_RACY_READ void read_m(const M* m, MView* v) {
  v->id = m->id;
  v->tid = m->tid.load(std::memory_order_relaxed);
  v->p = m->p;
  v->pid = v->p != nullptr ? v->p->id : -1;
  G* g = m->curg.load(std::memory_order_relaxed);
  v->has_curg = g != nullptr;
  v->curg = g != nullptr ? g->goid : 0;
  v->spinning = m->spinning;
  v->blocked = m->idle_listed;
  v->has_lockedg = m->lockedg != nullptr;
  v->lockedg = m->lockedg != nullptr ? m->lockedg->goid : 0;
}

struct GLine {
  std::uint64_t goid;
  int status;  // Go's numbering
  WaitReason reason;
  std::int64_t m, lockedm;  // -1: nil
};
GORO_RACY_READ bool read_g(const G* g, GLine* out) {
  const std::uint32_t st = g->status.load(std::memory_order_relaxed);
  if (st != kGRunnable && st != kGRunning && st != kGWaiting) return false;
  if (g->stack_kind == kStackThread) return false;
  out->goid = g->goid;
  out->reason = g->waitreason;
  out->m = -1;
  out->lockedm = g->lockedm != nullptr ? g->lockedm->id : -1;
  switch (st) {
    case kGRunnable:
      out->status = 1;
      break;
    case kGRunning:
      out->status = g->insyscall ? 3 : 2;
      out->m = g->m != nullptr ? g->m->id : -1;
      break;
    default:
      out->status = 4;
      break;
  }
  return true;
}

GORO_RACY_READ int read_mlive() {
  return sched.mlive;
}
GORO_RACY_READ bool read_sysmonwait() {
  return sched.sysmonwait;
}

bool thread_alive(int tid) {
  return tid > 0 && ::syscall(SYS_tgkill, ::getpid(), tid, 0) == 0;
}

// Go's P status numbers: _Pidle 0, _Prunning 1, _Psyscall 2, _Pdead 4 (retired).
int go_p_status(std::uint32_t st) {
  switch (st) {
    case kPIdle:
      return 0;
    case kPRunning:
      return 1;
    case kPSyscall:
      return 2;
    default:
      return 4;
  }
}

void append_m_lines(std::string& s) {
  std::vector<MView> ms;
  for_each_m(
      [](M* m, void* arg) {
        MView v;
        read_m(m, &v);
        static_cast<std::vector<MView>*>(arg)->push_back(v);
      },
      &ms);
  // The registry is newest first; show them by id, skipping records whose thread exited.
  for (auto it = ms.rbegin(); it != ms.rend(); ++it) {
    const MView& v = *it;
    if (!thread_alive(v.tid)) continue;
    s += "  M";
    append_num(s, v.id);
    s += ": p=";
    append_id(s, v.p != nullptr, v.pid);
    s += " curg=";
    append_id(s, v.has_curg, static_cast<std::int64_t>(v.curg));
    s += " spinning=";
    s += v.spinning ? "true" : "false";
    s += " blocked=";
    s += v.blocked ? "true" : "false";
    s += " lockedg=";
    append_id(s, v.has_lockedg, static_cast<std::int64_t>(v.lockedg));
    s += '\n';
  }
}

void append_g_lines(std::string& s) {
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
  std::vector<GLine> gs;
  for (G* chunk : chunks) {
    for (std::size_t i = 0; i < per_chunk; i++) {
      GLine l;
      if (read_g(&chunk[i], &l)) gs.push_back(l);
    }
  }
  std::sort(gs.begin(), gs.end(), [](const GLine& a, const GLine& b) { return a.goid < b.goid; });
  for (const GLine& l : gs) {
    s += "  G";
    append_num(s, static_cast<std::int64_t>(l.goid));
    s += ": status=";
    append_num(s, l.status);
    if (l.status == 4 && l.reason != WaitReason::kNone) {
      s += '(';
      s += wait_reason_string(l.reason);
      s += ')';
    }
    s += " m=";
    append_id(s, l.m >= 0, l.m);
    s += " lockedm=";
    append_id(s, l.lockedm >= 0, l.lockedm);
    s += '\n';
  }
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void* schedtrace_main(void*) {
  timespec next;
  ::clock_gettime(CLOCK_MONOTONIC, &next);
  for (;;) {
    const std::int64_t t = next.tv_nsec + trace_period_ns;
    next.tv_sec += static_cast<time_t>(t / 1'000'000'000);
    next.tv_nsec = static_cast<long>(t % 1'000'000'000);
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) == EINTR) {
    }
    // The next report is a period after this one (Go's rule, lasttrace + period): a late
    // wake-up (a busy machine, a debugger) delays the cadence instead of bunching reports.
    ::clock_gettime(CLOCK_MONOTONIC, &next);
    try {
      const std::string s = schedtrace_text(trace_detail);
      write_all(2, s.data(), s.size());
    } catch (...) {
      // Out of memory: skip this report.
    }
  }
  return nullptr;
}

void* serve_env_main(void* arg) {
  serve_from_env(static_cast<const char*>(arg));
  return nullptr;
}

// Starts a detached plain thread with every signal blocked; false if it cannot be created.
bool start_thread(void* (*fn)(void*), void* arg, std::size_t stack, const char* name) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  pthread_attr_setstacksize(&attr, stack);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  const int rc = pthread_create(&t, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) return false;
  pthread_setname_np(t, name);
  return true;
}

// Parses a positive decimal integer; -1 if malformed.
long long parse_positive(const char* v) {
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != 0 || n < 0) return -1;
  return n;
}

}  // namespace

std::int64_t runtime_start_ns() noexcept {
  return start_ns.load(std::memory_order_relaxed);
}

std::string schedtrace_text(bool detail) {
  std::string s;
  s.reserve(256);
  const std::int64_t start = runtime_start_ns();
  const int procs = sched.gomaxprocs.load(std::memory_order_relaxed);
  s += "SCHED ";
  append_num(s, start != 0 ? (nanotime() - start) / 1'000'000 : 0);
  s += "ms: gomaxprocs=";
  append_num(s, procs);
  s += " idleprocs=";
  append_num(s, sched.npidle.load(std::memory_order_relaxed));
  s += " threads=";
  append_num(s, read_mlive());
  s += " spinningthreads=";
  append_num(s, sched.nmspinning.load(std::memory_order_relaxed));
  s += " idlethreads=";
  append_num(s, sched.nmidle.load(std::memory_order_relaxed));
  s += " runqueue=";
  append_num(s, sched.runqsize.load(std::memory_order_relaxed));
  const int np = sched.nallp.load(std::memory_order_acquire);
  if (!detail) {
    s += " [";
    for (int i = 0; i < np && i < procs; i++) {
      if (i > 0) s += ' ';
      append_num(s, sched.allp[i]->runq.size());
    }
    s += "]\n";
    return s;
  }
  s += " sysmonwait=";
  s += read_sysmonwait() ? "true" : "false";
  s += '\n';
  for (int i = 0; i < np; i++) {
    PView v;
    read_p(sched.allp[i], &v);
    s += "  P";
    append_num(s, v.id);
    s += ": status=";
    append_num(s, go_p_status(v.status));
    s += " schedtick=";
    append_num(s, v.schedtick);
    s += " syscalltick=";
    append_num(s, v.syscalltick);
    s += " m=";
    append_id(s, v.m != nullptr, v.mid);
    s += " runqsize=";
    append_num(s, v.runqsize);
    s += " gfreecnt=";
    append_num(s, v.gfree);
    s += " timerslen=";
    append_num(s, static_cast<std::int64_t>(v.ntimers));
    s += '\n';
  }
  append_m_lines(s);
  append_g_lines(s);
  return s;
}

void stats_init() noexcept {
  start_ns.store(nanotime(), std::memory_order_relaxed);
  if (const char* v = std::getenv("GORO_SCHEDTRACE"); v != nullptr && *v != 0) {
    const long long ms = parse_positive(v);
    if (ms < 0 || ms > 86'400'000) {
      RawBuf b;
      b.str("goro: ignoring GORO_SCHEDTRACE=").str(v).str(": want milliseconds (0: off)\n");
      b.flush();
    } else if (ms > 0) {
      trace_period_ns = ms * 1'000'000;
      const char* d = std::getenv("GORO_SCHEDDETAIL");
      trace_detail = d != nullptr && std::strcmp(d, "1") == 0;
      if (!start_thread(schedtrace_main, nullptr, 256 * 1024, "goro-schedtrace")) {
        RawBuf b;
        b.str("goro: cannot start the GORO_SCHEDTRACE thread\n");
        b.flush();
      }
    }
  }
  if (const char* a = std::getenv("GORO_DEBUG_ADDR"); a != nullptr && *a != 0) {
    if (!start_thread(serve_env_main, const_cast<char*>(a), 256 * 1024, "goro-debug-start")) {
      RawBuf b;
      b.str("goro: cannot start the GORO_DEBUG_ADDR server\n");
      b.flush();
    }
  }
}

}  // namespace goro::internal
