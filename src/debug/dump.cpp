// dump.cpp - goroutine dumps (goro::debug::write_goroutines) and the SIGQUIT traceback.
//
// What it owns
// ------------
// The dump's format (documented in include/goro/debug.hpp), the choice of which frames to
// show, grouping identical stacks, and the SIGQUIT handler with its dump thread. Unwinding
// and symbolizing are traceback.cpp's.
//
// Taking a dump, in steps
// -----------------------
//  1. The public entry captures its own registers (capture_regs) while it is still running:
//     the calling goroutine's stack starts there.
//  2. collect(): for_each_g visits every goroutine record under the G allocator's lock; the
//     callback copies the few fields we need into a vector reserved beforehand (no allocation,
//     no blocking under that lock; if the vector is too small, collect again with the count
//     seen). Records of plain threads (kStackThread) are skipped.
//  3. Outside every runtime lock, per goroutine: the caller unwinds itself
//     (traceback_self); a running goroutine gets no stack; a switched-out one is unwound by
//     traceback_parked (the parkgen protocol), which also reports its state as of the copy;
//     a goroutine that exited meanwhile is dropped. G records are never freed, so reading them
//     after the lock is memory-safe.
//  4. Symbolize (TraceSymbolizer, cached per address), filter frames, format into a string.
//  5. Write the string to the stream, with no lock held.
//
// Which frames are shown (Go hides runtime.* frames the same way)
// --------------------------------------------------------------
// Leading frames (innermost) of the runtime's internals are dropped: goro::internal::*
// (park, mcall, semaphores, channel internals), goro_* assembly, and what is inlined into them
// from the runtime's sources. Trailing frames of the goroutine's entry are dropped:
// goro_trampoline, goroutine_entry, run_closure and the layers inlined into it through which
// it calls the user's function (std::apply, std::invoke, run_closure's lambda). Inlined
// template and lambda frames often have unqualified DWARF names ("apply<...>",
// "operator()"), and GCC 12's demangler gives up on some generic lambdas (the mangled name is
// shown), so those layers are recognized by where their code is (a C++ standard header,
// goro/go.hpp, the runtime's src/) as well as by name. Public API frames (goro::Mutex::lock,
// goro::Chan<T>::recv, goro::sleep_until) stay, like Go's sync.(*Mutex).Lock. If nothing
// would remain, every frame is shown. GORO_TRACEBACK=system shows every frame always.
//
// "created by": go() records its return address in the caller (spawn and goro::go are
// inlined there); the first frame of that address's inline expansion whose code is not in
// goro/go.hpp is the caller, and its file:line is the go() call. GoOptions::where, when given,
// supplies the file:line instead.
//
// SIGQUIT, in steps
// -----------------
//  1. debug_init() (called by start_runtime, once): unless GORO_SIGQUIT=0, and only if
//     SIGQUIT's disposition is still SIG_DFL (an application handler, or SIG_IGN, is never
//     taken over), it creates a pipe and the dump thread (all signals blocked, 1 MiB stack,
//     blocked in read(2) on the pipe), then installs the handler (SA_ONSTACK, so a goroutine
//     near the end of its stack runs it on its M's alternate stack).
//  2. The handler (async-signal-safe: an atomic exchange, write(2), sigaction(2), raise(3),
//     errno saved and restored) marks the dump as started and writes one byte to the pipe.
//     If a dump had already started (a second SIGQUIT, e.g. because the first one hangs), or
//     the write fails, it restores SIG_DFL and re-raises: SIGQUIT's default action (core).
//  3. The dump thread wakes, writes "SIGQUIT: quit\n\n" and the Detail::kFull dump to
//     stderr with write(2), and calls _exit(2) (Go's exit status; no atexit handlers, no
//     destructors, while goroutines may still be running).
//  After fork() (without exec) the child has no dump thread: a pthread_atfork child handler
//  puts SIG_DFL back if our handler is installed.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/platform.hpp"
#include "debug/symbolize.hpp"
#include "debug/traceback.hpp"
#include "goro/debug.hpp"
#include "sched/proc.hpp"

namespace goro::internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Step 2: collecting the goroutine records.

struct GRecord {
  G* g;
  std::uint64_t goid;
  std::uint32_t status;
  SpawnSite site;
  void (*run)(void*);
  char name[sizeof(G::name)];
};

// A G may be reused (and its plain fields rewritten) by the time we read it: the fields are
// copied in one uninstrumented function; a record whose goroutine ended is dropped later.
GORO_RACY_READ bool snapshot(const G* g, std::uint32_t st, GRecord* r) {
  if (g->stack_kind == kStackThread) return false;
  r->g = const_cast<G*>(g);
  r->goid = g->goid;
  r->status = st;
  r->site = g->site;
  r->run = g->run;
  std::memcpy(r->name, g->name, sizeof r->name);
  r->name[sizeof r->name - 1] = 0;
  return true;
}

// The goroutine id a G record holds now (it changes only when the record is reused).
GORO_RACY_READ std::uint64_t goid_now(const G* g) {
  return g->goid;
}

struct Collect {
  GRecord* buf;
  std::size_t cap;
  std::size_t n;
  std::size_t seen;
};

void collect_one(G* g, void* arg) {
  auto* c = static_cast<Collect*>(arg);
  const std::uint32_t st = g->status.load(std::memory_order_acquire);
  GRecord r;
  if (!snapshot(g, st, &r)) return;
  c->seen++;
  if (c->n < c->cap) c->buf[c->n++] = r;
}

std::vector<GRecord> collect() {
  std::vector<GRecord> v;
  std::size_t want = 256;
  for (;;) {
    v.resize(want);
    Collect c{v.data(), v.size(), 0, 0};
    for_each_g(collect_one, &c);
    if (c.seen <= c.cap) {
      v.resize(c.n);
      return v;
    }
    want = c.seen + c.seen / 4 + 64;  // more goroutines than room: again, with room to spare
  }
}

// ---------------------------------------------------------------------------------------------
// Step 3: per-goroutine state and stack.

enum class StackKind { kFrames, kRunningElsewhere, kUnavailable };

struct Entry {
  GRecord rec;
  bool self = false;
  std::uint32_t status = 0;
  WaitReason reason = WaitReason::kNone;
  std::int64_t waitsince = 0;
  StackKind kind = StackKind::kUnavailable;
  Traceback tb;
};

// Fills e; returns false if the goroutine no longer exists.
bool examine_g(Entry& e, G* self, const UnwindRegs* self_regs);

bool examine(Entry& e, G* self, const UnwindRegs* self_regs) {
  // A record reused by a new goroutine since collect() means ours exited.
  return examine_g(e, self, self_regs) && goid_now(e.rec.g) == e.rec.goid;
}

bool examine_g(Entry& e, G* self, const UnwindRegs* self_regs) {
  G* g = e.rec.g;
  e.status = e.rec.status;
  if (g == self) {
    e.self = true;
    e.status = kGRunning;
    e.kind = self_regs != nullptr && traceback_self(g, *self_regs, &e.tb) ? StackKind::kFrames
                                                                          : StackKind::kUnavailable;
    return true;
  }
  if (e.status == kGRunning) {
    e.kind = StackKind::kRunningElsewhere;
    return true;
  }
  ParkedState ps;
  switch (traceback_parked(g, &ps, &e.tb)) {
    case ParkedTrace::kOk:
      e.status = ps.status;
      e.reason = ps.reason;
      e.waitsince = ps.waitsince;
      e.kind = StackKind::kFrames;
      return true;
    case ParkedTrace::kNotStarted:
      e.status = kGRunnable;
      e.tb.pcs.assign(1, TracePc{reinterpret_cast<std::uintptr_t>(e.rec.run), false});
      e.kind = e.rec.run != nullptr ? StackKind::kFrames : StackKind::kUnavailable;
      return true;
    case ParkedTrace::kMoved:
      if (ps.status != kGRunning && ps.status != kGRunnable && ps.status != kGWaiting) {
        return false;  // it exited
      }
      e.status = ps.status;
      e.reason = ps.reason;
      e.kind = ps.status == kGRunning ? StackKind::kRunningElsewhere : StackKind::kUnavailable;
      return true;
    case ParkedTrace::kUnreadable:
      e.status = ps.status;
      e.reason = ps.reason;
      e.waitsince = ps.waitsince;
      e.kind = StackKind::kUnavailable;
      return true;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Step 4: frame selection and formatting.

// The qualified name of a demangled function name, without a leading return type
// ("unsigned long goro::go<F>(F&&)" -> "goro::go<F>(F&&)"), for classification only.
std::string_view bare_name(std::string_view name) {
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < name.size(); i++) {
    const char c = name[i];
    if (c == '<' || c == '{' || c == '[') {
      depth++;
    } else if ((c == '>' || c == '}' || c == ']') && depth > 0) {
      depth--;
    } else if (c == '(' && depth == 0) {
      if (name.substr(i).starts_with("(anonymous namespace)")) {
        i += std::string_view("(anonymous namespace)").size() - 1;
        continue;
      }
      break;  // the parameter list
    } else if (c == ' ' && depth == 0) {
      start = i + 1;
    }
  }
  return name.substr(start);
}

// The leading scopes of a name the demangler gave up on (it fails on some generic lambdas):
// "_ZZN4goro8internal11run_closure..." -> "goro::internal::run_closure::",
// "_ZSt5applyI..." -> "std::apply::". Reads only <source-name>s and "St"; for classification.
std::string mangled_scopes(std::string_view m) {
  std::string out;
  if (!m.starts_with("_Z")) return out;
  m.remove_prefix(2);
  if (m.starts_with("Z")) m.remove_prefix(1);  // a local entity: its enclosing function
  if (m.starts_with("N")) m.remove_prefix(1);  // a nested name
  while (!m.empty() && (m[0] == 'K' || m[0] == 'V' || m[0] == 'r')) m.remove_prefix(1);
  for (int i = 0; i < 3 && !m.empty(); i++) {
    if (m.starts_with("St")) {
      out += "std::";
      m.remove_prefix(2);
      continue;
    }
    std::size_t n = 0, digits = 0;
    while (digits < m.size() && m[digits] >= '0' && m[digits] <= '9' && digits < 6) {
      n = n * 10 + static_cast<std::size_t>(m[digits] - '0');
      digits++;
    }
    if (digits == 0 || n == 0 || digits + n > m.size()) break;
    out += m.substr(digits, n);
    out += "::";
    m.remove_prefix(digits + n);
  }
  return out;
}

bool starts_with_any(std::string_view s, std::initializer_list<std::string_view> prefixes) {
  for (std::string_view p : prefixes) {
    if (s.starts_with(p)) return true;
  }
  return false;
}

// The runtime's internals, by name: goro::internal::*, goro::go's inlined spawn, the goro_*
// assembly.
bool internal_frame(const TraceFrame& f) {
  std::string_view name = f.function;
  if (name.starts_with("_Z")) {
    return starts_with_any(mangled_scopes(name), {"goro::internal::", "goro::go::"});
  }
  return starts_with_any(bare_name(name), {"goro::internal::", "goro::go<", "goro_"});
}

// Source locations of the runtime: its own sources (this file's src/ directory) and
// goro/go.hpp, where go(), spawn and run_closure live (inlined into the user's code).
bool runtime_source(std::string_view file) {
  static const std::string_view src_dir = [] {
    std::string_view self = __FILE__;  // <root>/src/debug/dump.cpp
    const std::size_t cut = self.rfind("/debug/");
    return cut == std::string_view::npos ? std::string_view() : self.substr(0, cut + 1);
  }();
  return (!src_dir.empty() && file.starts_with(src_dir)) || file.ends_with("/goro/go.hpp");
}

// The C++ standard library's headers (std::invoke, std::apply, std::function, ...).
bool std_header(std::string_view file) {
  return file.find("/include/c++/") != std::string_view::npos || file.starts_with("/usr/include/");
}

bool traceback_system() {
  const char* e = std::getenv("GORO_TRACEBACK");
  return e != nullptr && std::strcmp(e, "system") == 0;
}

// The frames of tb to print, innermost first (see "Which frames are shown"). Inlined frames
// of templates and lambdas often carry unqualified DWARF names ("apply<...>", "operator()"),
// so the entry layers are recognized by where their code is (a standard header, goro's own
// sources) as well as by name.
std::vector<const TraceFrame*> visible_frames(const Traceback& tb, TraceSymbolizer& sym, bool all) {
  std::vector<const TraceFrame*> v;
  std::vector<const TraceFrame*> physical;  // the out-of-line frame each v[i] belongs to
  for (const TracePc& pc : tb.pcs) {
    const std::vector<TraceFrame>& group = sym.frames(pc);
    for (const TraceFrame& f : group) {
      v.push_back(&f);
      physical.push_back(&group.back());
    }
  }
  if (all) return v;
  std::size_t begin = 0, end = v.size();
  // Top: the runtime's internals, and what is inlined into them from the runtime's sources.
  while (begin < end && (internal_frame(*v[begin]) ||
                         (internal_frame(*physical[begin]) && runtime_source(v[begin]->file)))) {
    begin++;
  }
  // Bottom (only an untruncated trace reaches it): the entry's out-of-line frames
  // (goro_trampoline, goroutine_entry, run_closure) and the layers inlined into them up to
  // the user's function.
  while (!tb.truncated && end > begin && internal_frame(*physical[end - 1]) &&
         (v[end - 1] == physical[end - 1] || internal_frame(*v[end - 1]) ||
          std_header(v[end - 1]->file) || runtime_source(v[end - 1]->file))) {
    end--;
  }
  if (begin == end) return v;
  return std::vector<const TraceFrame*>(v.begin() + static_cast<std::ptrdiff_t>(begin),
                                        v.begin() + static_cast<std::ptrdiff_t>(end));
}

void append_hex(std::string& s, std::uintptr_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  char buf[2 + 2 * sizeof v];
  std::size_t n = sizeof buf;
  do {
    buf[--n] = kDigits[v & 15];
    v >>= 4;
  } while (v != 0);
  buf[--n] = 'x';
  buf[--n] = '0';
  s.append(buf + n, sizeof buf - n);
}

void append_location(std::string& s, const TraceFrame& f) {
  if (!f.file.empty()) {
    s += f.file;
    s += ':';
    s += std::to_string(f.line);
  } else if (!f.object.empty()) {
    s += f.object;
  } else {
    s += "??";
  }
}

const char* state_string(const Entry& e) {
  switch (e.status) {
    case kGRunning:
      return "running";
    case kGRunnable:
      return "runnable";
    case kGWaiting:
      return wait_reason_string(e.reason);
    default:
      return "unknown";
  }
}

// "created by f\n\tfile:line\n". The site's pc is go()'s return address inside the caller,
// with goro::go and spawn inlined there (their code is in goro/go.hpp): the first frame that
// is not theirs is the caller, and its file:line is the go() call.
void append_created_by(std::string& s, const GRecord& r, TraceSymbolizer& sym) {
  const TraceFrame* caller = nullptr;
  const TraceFrame* containing = nullptr;  // without inline information: the function only
  if (r.site.pc != nullptr) {
    const std::vector<TraceFrame>& frames =
        sym.frames(TracePc{reinterpret_cast<std::uintptr_t>(r.site.pc), true});
    for (const TraceFrame& f : frames) {
      if (!internal_frame(f) && !runtime_source(f.file)) {
        caller = &f;
        break;
      }
    }
    containing = &frames.back();
  }
  s += "created by ";
  if (caller != nullptr && caller->function != "??") {
    s += caller->function;
  } else if (containing != nullptr && containing->function != "??" &&
             !internal_frame(*containing)) {
    s += containing->function;
  } else if (r.site.function != nullptr && *r.site.function != 0) {
    s += r.site.function;
  } else {
    s += "??";
  }
  s += "\n\t";
  if (r.site.file != nullptr) {
    s += r.site.file;
    s += ':';
    s += std::to_string(r.site.line);
  } else if (caller != nullptr) {
    append_location(s, *caller);
  } else if (r.site.pc != nullptr) {
    append_hex(s, reinterpret_cast<std::uintptr_t>(r.site.pc));
  } else {
    s += "??";
  }
  s += '\n';
}

void format_full(std::string& s, const std::vector<Entry>& entries, TraceSymbolizer& sym,
                 bool all) {
  const std::int64_t now = nanotime();
  for (const Entry& e : entries) {
    s += "goroutine ";
    s += std::to_string(e.rec.goid);
    if (e.rec.name[0] != 0) {
      s += " \"";
      s += e.rec.name;
      s += '"';
    }
    s += " [";
    s += state_string(e);
    if (e.status == kGWaiting && e.waitsince > 0 && now > e.waitsince) {
      const std::int64_t minutes = (now - e.waitsince) / 60'000'000'000;
      if (minutes >= 1) {
        s += ", ";
        s += std::to_string(minutes);
        s += " minutes";
      }
    }
    s += "]:\n";
    switch (e.kind) {
      case StackKind::kFrames:
        for (const TraceFrame* f : visible_frames(e.tb, sym, all)) {
          s += f->function;
          s += "\n\t";
          append_location(s, *f);
          if (!f->inlined && f->has_offset) {
            s += " +";
            append_hex(s, f->offset);
          }
          s += '\n';
        }
        if (e.tb.truncated) s += "...additional frames elided...\n";
        break;
      case StackKind::kRunningElsewhere:
        s += "\tgoroutine running on other thread; stack unavailable\n";
        break;
      case StackKind::kUnavailable:
        s += "\tstack unavailable\n";
        break;
    }
    append_created_by(s, e.rec, sym);
    s += '\n';
  }
}

void format_grouped(std::string& s, const std::vector<Entry>& entries, TraceSymbolizer& sym,
                    bool all) {
  struct Group {
    const Entry* first;
    std::size_t count;
  };
  std::vector<Group> groups;
  std::unordered_map<std::string, std::size_t> index;  // stack key -> groups[]
  for (const Entry& e : entries) {
    std::string key(1, static_cast<char>('0' + static_cast<int>(e.kind)));
    if (e.kind == StackKind::kFrames) {
      for (const TracePc& pc : e.tb.pcs) {
        key.append(reinterpret_cast<const char*>(&pc.pc), sizeof pc.pc);
        key += pc.return_address ? 'r' : 'x';
      }
      if (e.tb.truncated) key += 't';
    }
    auto [it, added] = index.emplace(std::move(key), groups.size());
    if (added) {
      groups.push_back(Group{&e, 0});
    }
    groups[it->second].count++;
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [](const Group& a, const Group& b) { return a.count > b.count; });

  s += "goroutine profile: total ";
  s += std::to_string(entries.size());
  s += '\n';
  for (const Group& grp : groups) {
    const Entry& e = *grp.first;
    s += std::to_string(grp.count);
    s += " @";
    if (e.kind == StackKind::kFrames) {
      for (const TracePc& pc : e.tb.pcs) {
        s += ' ';
        append_hex(s, pc.pc);
      }
    }
    s += '\n';
    switch (e.kind) {
      case StackKind::kFrames:
        for (const TraceFrame* f : visible_frames(e.tb, sym, all)) {
          // pprof shows a return address as its call instruction (pc - 1).
          const std::uintptr_t back = f->return_address ? 1 : 0;
          s += "#\t";
          append_hex(s, f->pc - back);
          s += '\t';
          s += f->function;
          if (f->has_offset) {
            s += '+';
            append_hex(s, f->offset - back);
          }
          s += '\t';
          append_location(s, *f);
          s += '\n';
        }
        break;
      case StackKind::kRunningElsewhere:
        s += "#\tgoroutine running on other thread; stack unavailable\n";
        break;
      case StackKind::kUnavailable:
        s += "#\tstack unavailable\n";
        break;
    }
    s += '\n';
  }
}

std::string dump(goro::debug::Detail detail, const UnwindRegs* self_regs) {
  G* self = getg();
  std::vector<GRecord> recs = collect();
  std::vector<Entry> entries;
  entries.reserve(recs.size());
  for (const GRecord& r : recs) {
    Entry e;
    e.rec = r;
    if (examine(e, self, self_regs)) entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.self != b.self) return a.self;
    return a.rec.goid < b.rec.goid;
  });
  TraceSymbolizer sym;
  const bool all = traceback_system();
  std::string s;
  if (detail == goro::debug::Detail::kGrouped) {
    format_grouped(s, entries, sym, all);
  } else {
    format_full(s, entries, sym, all);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// SIGQUIT.

std::atomic<bool> g_init_started{false};
std::atomic<bool> g_handler_installed{false};
std::atomic<bool> g_quitting{false};
int g_quit_pipe[2] = {-1, -1};

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void default_quit() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGQUIT, &sa, nullptr);
}

// Async-signal-safe (see the design comment).
void on_sigquit(int, siginfo_t*, void*) {
  const int saved = errno;
  const char c = 'q';
  if (g_quitting.exchange(true) || ::write(g_quit_pipe[1], &c, 1) != 1) {
    default_quit();
    ::raise(SIGQUIT);  // pending until this handler returns (SIGQUIT is blocked in it)
  }
  errno = saved;
}

[[noreturn]] void* quit_thread(void*) {
  char c = 0;
  for (;;) {
    ssize_t n = ::read(g_quit_pipe[0], &c, 1);
    if (n == 1) break;
    if (n < 0 && errno == EINTR) continue;
    // The pipe broke (cannot happen while the process lives): leave SIGQUIT to its default.
    default_quit();
    for (;;) ::pause();
  }
  static constexpr char kHeader[] = "SIGQUIT: quit\n\n";
  write_all(2, kHeader, sizeof kHeader - 1);
  try {
    std::string s = dump(goro::debug::Detail::kFull, nullptr);
    write_all(2, s.data(), s.size());
  } catch (...) {
    static constexpr char kFailed[] = "goro: goroutine dump failed (out of memory)\n";
    write_all(2, kFailed, sizeof kFailed - 1);
  }
  ::_exit(2);
}

void atfork_child() {
  if (!g_handler_installed.load(std::memory_order_relaxed)) return;
  struct sigaction cur;
  if (::sigaction(SIGQUIT, nullptr, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) != 0 &&
      cur.sa_sigaction == on_sigquit) {
    default_quit();
  }
}

}  // namespace

void debug_init() noexcept {
  if (g_init_started.exchange(true)) return;
  if (const char* e = std::getenv("GORO_SIGQUIT"); e != nullptr && std::strcmp(e, "0") == 0) {
    return;
  }
  struct sigaction cur;
  if (::sigaction(SIGQUIT, nullptr, &cur) != 0) return;
  const bool has_handler =
      (cur.sa_flags & SA_SIGINFO) != 0 ? cur.sa_sigaction != nullptr : cur.sa_handler != SIG_DFL;
  if (has_handler) return;  // the application's (or SIG_IGN): never take it over
  if (::pipe2(g_quit_pipe, O_CLOEXEC) != 0) return;

  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return;
  pthread_attr_setstacksize(&attr, 1 << 20);  // libdw and the demangler recurse a little
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the thread inherits "everything blocked"
  pthread_t t;
  const int rc = pthread_create(&t, &attr, quit_thread, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    ::close(g_quit_pipe[0]);
    ::close(g_quit_pipe[1]);
    return;
  }
  pthread_setname_np(t, "goro-sigquit");

  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigquit;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGQUIT, &sa, nullptr) != 0) return;  // the thread just stays blocked
  g_handler_installed.store(true, std::memory_order_relaxed);
  pthread_atfork(nullptr, nullptr, atfork_child);
}

}  // namespace goro::internal

// ---------------------------------------------------------------------------------------------
// Public API (goro/debug.hpp).

namespace goro::debug {

// Both entries capture their own registers (step 1): noinline keeps them real frames that
// stay live while the dump unwinds the calling goroutine through them.
__attribute__((noinline)) void write_goroutines(std::ostream& out, Detail detail) {
  internal::UnwindRegs regs;
  internal::capture_regs(&regs);
  std::string s = internal::dump(detail, &regs);
  out << s;
}

__attribute__((noinline)) std::string goroutines(Detail detail) {
  internal::UnwindRegs regs;
  internal::capture_regs(&regs);
  return internal::dump(detail, &regs);
}

}  // namespace goro::debug
