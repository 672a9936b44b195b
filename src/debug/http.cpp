// http.cpp - goro::debug::serve: the debug HTTP endpoint (health check, goroutine dumps,
// scheduler trace, Prometheus metrics), served by goroutines on the runtime's own poller.
//
// Design
// ------
// HTTP parsing is the system's http-parser library (Debian's libhttp-parser-dev, the parser
// Node.js used before llhttp): a callback parser that owns no sockets, so the bytes come from
// goro::net and every wait parks a goroutine instead of blocking a thread. (cpp-httplib, also
// packaged, was rejected: it runs its own blocking sockets and thread pool.)
//
//   serve(addr)          listen (net::listen), start the accept goroutine, return a Server
//   accept goroutine     loop: accept → go(connection goroutine); ends when the listener closes
//   connection goroutine loop: read (60 s idle deadline) → http_parser_execute → on each
//                        complete request (the parser pauses in on_message_complete, so
//                        pipelined requests are answered in order) route, build the body,
//                        write the response (30 s deadline); keep-alive unless the request
//                        says otherwise; any parse error answers 400 and closes
//
// Limits: 64 connections at once (more get 503 and are closed at once), 16 KiB of request
// head per request (431), GET and HEAD only (405). Bodies are ignored.
//
// Shutting down (Server::close), in steps:
//  1. Under the state's mutex: closing = true, close the listener (the accept goroutine's
//     accept() fails and it returns), close every registered connection (their goroutines'
//     read or write fails and they return).
//  2. A connection goroutine registers its Conn under the same mutex when it starts (after
//     step 1 it closes it at once) and unregisters before destroying it, so close() never
//     touches a destroyed Conn.
//  3. Wait on the WaitGroup every goroutine of the server was added to. The state is held by
//     shared_ptr by each goroutine, so it outlives the last done().
//
// Threads: the goroutines run on any M; Server's methods on any goroutine or thread. The
// mutex is a std::mutex (never held across a park: Conn::close never parks).
#include <http_parser.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/raw_log.hpp"
#include "debug/stats.hpp"
#include "goro/debug.hpp"
#include "goro/go.hpp"
#include "goro/net.hpp"
#include "goro/stats.hpp"
#include "goro/sync.hpp"
#include "goro/time.hpp"

namespace goro::debug {
namespace internal_http {

constexpr int kMaxConns = 64;
constexpr std::size_t kMaxHead = 16 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kWriteTimeout = std::chrono::seconds(30);

struct ServerState {
  net::Listener listener;
  std::string addr;
  goro::WaitGroup wg;
  std::mutex mu;
  bool closing = false;                  // under mu
  std::unordered_set<net::Conn*> conns;  // under mu
  bool closed = false;                   // under mu: close() ran (idempotence)
};

}  // namespace internal_http

namespace {

using internal_http::kIdleTimeout;
using internal_http::kMaxConns;
using internal_http::kMaxHead;
using internal_http::kWriteTimeout;
using internal_http::ServerState;

// ---------------------------------------------------------------------------------------------
// Requests.

struct Request {
  std::string method;
  std::string url;
  bool keep_alive = true;
  bool complete = false;
};

struct ParseState {
  Request req;
  std::size_t head_bytes = 0;
};

int on_message_begin(http_parser* p) {
  auto* c = static_cast<ParseState*>(p->data);
  c->req = Request{};
  return 0;
}

int on_url(http_parser* p, const char* at, std::size_t n) {
  auto* c = static_cast<ParseState*>(p->data);
  c->req.url.append(at, n);
  return c->req.url.size() > kMaxHead ? 1 : 0;  // HPE_CB_url: 400
}

int on_message_complete(http_parser* p) {
  auto* c = static_cast<ParseState*>(p->data);
  c->req.method = http_method_str(static_cast<http_method>(p->method));
  c->req.keep_alive = http_should_keep_alive(p) != 0;
  c->req.complete = true;
  http_parser_pause(p, 1);  // answer this request before parsing the next (pipelining)
  return 0;
}

std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); i++) {
    const char c = s[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      auto hexval = [](char h) {
        if (h >= '0' && h <= '9') return h - '0';
        if (h >= 'a' && h <= 'f') return h - 'a' + 10;
        if (h >= 'A' && h <= 'F') return h - 'A' + 10;
        return -1;
      };
      const int hi = i + 1 < s.size() ? hexval(s[i + 1]) : -1;
      const int lo = i + 2 < s.size() ? hexval(s[i + 2]) : -1;
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        out += c;
      }
    } else {
      out += c;
    }
  }
  return out;
}

// The value of `key` in a query string ("a=1&b=2"), URL-decoded; empty if absent.
std::string query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const std::size_t eq = kv.find('=');
    if (url_decode(kv.substr(0, eq)) == key) {
      return eq == std::string_view::npos ? std::string() : url_decode(kv.substr(eq + 1));
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers.

void append_u(std::string& s, std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%" PRIu64, v);
  s += buf;
}

void append_i(std::string& s, std::int64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%" PRId64, v);
  s += buf;
}

void append_f(std::string& s, double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  s += buf;
}

void append_json_string(std::string& s, std::string_view v) {
  s += '"';
  for (const char c : v) {
    switch (c) {
      case '"':
        s += "\\\"";
        break;
      case '\\':
        s += "\\\\";
        break;
      case '\n':
        s += "\\n";
        break;
      case '\r':
        s += "\\r";
        break;
      case '\t':
        s += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          s += buf;
        } else {
          s += c;
        }
    }
  }
  s += '"';
}

// A Prometheus label value: backslash, double quote and newline escaped.
void append_label_value(std::string& s, std::string_view v) {
  s += '"';
  for (const char c : v) {
    if (c == '\\') {
      s += "\\\\";
    } else if (c == '"') {
      s += "\\\"";
    } else if (c == '\n') {
      s += "\\n";
    } else {
      s += c;
    }
  }
  s += '"';
}

constexpr GoroutineState kAllStates[] = {
    GoroutineState::kRunning,     GoroutineState::kRunnable,  GoroutineState::kBlockingCall,
    GoroutineState::kChanReceive, GoroutineState::kChanSend,  GoroutineState::kSelect,
    GoroutineState::kMutex,       GoroutineState::kWaitGroup, GoroutineState::kSleep,
    GoroutineState::kIO,          GoroutineState::kSemacquire};
static_assert(sizeof kAllStates / sizeof kAllStates[0] == kGoroutineStates);

double seconds(std::uint64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

// ---------------------------------------------------------------------------------------------
// /debug/runtime (text).

std::string runtime_text(const Stats& s) {
  std::string b;
  b.reserve(2048);
  auto kv = [&](const char* k, std::int64_t v) {
    b += k;
    b += '=';
    append_i(b, v);
    b += '\n';
  };
  b += "# goro runtime (goro::stats())\n";
  kv("gomaxprocs", s.gomaxprocs);
  b += "uptime_seconds=";
  append_f(b, seconds(static_cast<std::uint64_t>(s.uptime_ns)));
  b += '\n';
  kv("goroutines", s.goroutines.total);
  kv("goroutines_created", static_cast<std::int64_t>(s.goroutines.created));
  for (const GoroutineState st : kAllStates) {
    b += "goroutines_";
    b += internal::state_label(st);
    b += '=';
    append_i(b, s.goroutines.count(st));
    b += '\n';
  }
  kv("threads", s.threads.os);
  kv("threads_runtime", s.threads.runtime);
  kv("threads_running", s.threads.running);
  kv("threads_idle", s.threads.idle);
  kv("threads_spinning", s.threads.spinning);
  kv("threads_blocking", s.threads.blocking);
  kv("threads_locked", s.threads.locked);
  kv("threads_created", static_cast<std::int64_t>(s.threads.created));
  kv("threads_created_for_blocking", static_cast<std::int64_t>(s.threads.created_for_blocking));
  kv("memory_resident_bytes", static_cast<std::int64_t>(s.memory.resident_bytes));
  kv("memory_virtual_bytes", static_cast<std::int64_t>(s.memory.virtual_bytes));
  kv("stacks", s.stacks.count);
  kv("stacks_in_use_bytes", static_cast<std::int64_t>(s.stacks.in_use_bytes));
  kv("stacks_resident_bytes", static_cast<std::int64_t>(s.stacks.resident_bytes));
  kv("stacks_reserved_bytes", static_cast<std::int64_t>(s.stacks.reserved_bytes));
  kv("stacks_cached", s.stacks.cached);
  kv("sched_context_switches", static_cast<std::int64_t>(s.sched.context_switches));
  kv("sched_steals", static_cast<std::int64_t>(s.sched.steals));
  kv("sched_global_queue_takes", static_cast<std::int64_t>(s.sched.global_queue_takes));
  kv("sched_preempt_requests", static_cast<std::int64_t>(s.sched.preempt_requests));
  kv("sched_preempt_cooperative", static_cast<std::int64_t>(s.sched.preempt_cooperative));
  kv("sched_preempt_async", static_cast<std::int64_t>(s.sched.preempt_async));
  kv("sched_syscall_handoffs", static_cast<std::int64_t>(s.sched.syscall_handoffs));
  kv("sched_netpoll_wakeups", static_cast<std::int64_t>(s.sched.netpoll_wakeups));
  kv("sched_global_runqueue", s.sched.global_runqueue);
  kv("sched_local_runqueues", s.sched.local_runqueues);
  kv("sched_latency_samples", static_cast<std::int64_t>(s.sched.latencies.count));
  kv("sched_latency_p50_ns", s.sched.latencies.quantile_ns(0.5));
  kv("sched_latency_p99_ns", s.sched.latencies.quantile_ns(0.99));
  for (const CallSiteCount& c : s.threads.created_by_site) {
    b += "threads_created_for_blocking_at=";
    append_u(b, c.count);
    b += ' ';
    b += c.location;
    b += '\n';
  }
  for (const CallSiteCount& c : s.threads.blocking_by_site) {
    b += "blocking_calls_at=";
    append_u(b, c.count);
    b += ' ';
    b += c.location;
    b += '\n';
  }
  for (const StackUsage& u : s.stacks.largest) {
    b += "largest_stack=";
    append_u(b, u.resident_bytes);
    b += " goroutine ";
    append_u(b, u.goid);
    b += " [";
    b += to_string(u.state);
    b += ']';
    if (!u.name.empty()) {
      b += " \"";
      b += u.name;
      b += '"';
    }
    b += " created by ";
    b += u.created_by;
    b += '\n';
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// /debug/runtime?format=json.

std::string runtime_json(const Stats& s) {
  std::string b;
  b.reserve(4096);
  auto key = [&](const char* k) {
    if (b.back() != '{' && b.back() != '[') b += ',';
    append_json_string(b, k);
    b += ':';
  };
  auto num = [&](const char* k, std::int64_t v) {
    key(k);
    append_i(b, v);
  };
  auto unum = [&](const char* k, std::uint64_t v) {
    key(k);
    append_u(b, v);
  };
  auto sites = [&](const char* k, const std::vector<CallSiteCount>& v) {
    key(k);
    b += '[';
    for (const CallSiteCount& c : v) {
      if (b.back() != '[') b += ',';
      b += '{';
      key("location");
      append_json_string(b, c.location);
      unum("count", c.count);
      b += '}';
    }
    b += ']';
  };
  b += '{';
  key("uptime_seconds");
  append_f(b, seconds(static_cast<std::uint64_t>(s.uptime_ns)));
  num("gomaxprocs", s.gomaxprocs);
  key("goroutines");
  b += '{';
  num("total", s.goroutines.total);
  unum("created", s.goroutines.created);
  key("by_state");
  b += '{';
  for (const GoroutineState st : kAllStates) num(internal::state_label(st), s.goroutines.count(st));
  b += "}}";
  key("threads");
  b += '{';
  num("os", s.threads.os);
  num("runtime", s.threads.runtime);
  num("running", s.threads.running);
  num("idle", s.threads.idle);
  num("spinning", s.threads.spinning);
  num("blocking", s.threads.blocking);
  num("locked", s.threads.locked);
  unum("created", s.threads.created);
  unum("created_for_blocking", s.threads.created_for_blocking);
  sites("created_by_site", s.threads.created_by_site);
  sites("blocking_by_site", s.threads.blocking_by_site);
  b += '}';
  key("stacks");
  b += '{';
  num("count", s.stacks.count);
  unum("in_use_bytes", s.stacks.in_use_bytes);
  unum("resident_bytes", s.stacks.resident_bytes);
  unum("reserved_bytes", s.stacks.reserved_bytes);
  num("cached", s.stacks.cached);
  key("largest");
  b += '[';
  for (const StackUsage& u : s.stacks.largest) {
    if (b.back() != '[') b += ',';
    b += '{';
    unum("goid", u.goid);
    key("name");
    append_json_string(b, u.name);
    key("state");
    append_json_string(b, internal::state_label(u.state));
    unum("reserved_bytes", u.reserved_bytes);
    unum("resident_bytes", u.resident_bytes);
    key("created_by");
    append_json_string(b, u.created_by);
    b += '}';
  }
  b += "]}";
  key("sched");
  b += '{';
  unum("context_switches", s.sched.context_switches);
  unum("steals", s.sched.steals);
  unum("global_queue_takes", s.sched.global_queue_takes);
  unum("preempt_requests", s.sched.preempt_requests);
  unum("preempt_cooperative", s.sched.preempt_cooperative);
  unum("preempt_async", s.sched.preempt_async);
  unum("syscall_handoffs", s.sched.syscall_handoffs);
  unum("netpoll_wakeups", s.sched.netpoll_wakeups);
  num("global_runqueue", s.sched.global_runqueue);
  num("local_runqueues", s.sched.local_runqueues);
  key("latencies");
  b += '{';
  const SchedLatencies& h = s.sched.latencies;
  unum("count", h.count);
  key("sum_seconds");
  append_f(b, seconds(h.sum_ns));
  key("buckets");
  b += '[';
  for (int i = 0; i < SchedLatencies::kBuckets; i++) {
    if (b.back() != '[') b += ',';
    b += '{';
    key("le_seconds");
    if (i < SchedLatencies::kBuckets - 1) {
      append_f(b, seconds(static_cast<std::uint64_t>(SchedLatencies::upper_bound_ns(i))));
    } else {
      b += "null";  // +Inf
    }
    unum("count", h.buckets[i]);
    b += '}';
  }
  b += "]}}";
  key("memory");
  b += '{';
  unum("resident_bytes", s.memory.resident_bytes);
  unum("virtual_bytes", s.memory.virtual_bytes);
  b += "}}\n";
  return b;
}

// ---------------------------------------------------------------------------------------------
// /metrics (Prometheus text exposition format 0.0.4).

struct Prom {
  std::string b;
  void family(const char* name, const char* type, const char* help) {
    b += "# HELP ";
    b += name;
    b += ' ';
    b += help;
    b += "\n# TYPE ";
    b += name;
    b += ' ';
    b += type;
    b += '\n';
  }
  void begin(const char* name) { b += name; }
  void label(bool first, const char* k, std::string_view v) {
    b += first ? '{' : ',';
    b += k;
    b += '=';
    append_label_value(b, v);
  }
  void value_u(bool labels, std::uint64_t v) {
    if (labels) b += '}';
    b += ' ';
    append_u(b, v);
    b += '\n';
  }
  void value_i(bool labels, std::int64_t v) {
    if (labels) b += '}';
    b += ' ';
    append_i(b, v);
    b += '\n';
  }
  void value_f(bool labels, double v) {
    if (labels) b += '}';
    b += ' ';
    append_f(b, v);
    b += '\n';
  }
  void gauge(const char* name, const char* help, std::int64_t v) {
    family(name, "gauge", help);
    begin(name);
    value_i(false, v);
  }
  void counter(const char* name, const char* help, std::uint64_t v) {
    family(name, "counter", help);
    begin(name);
    value_u(false, v);
  }
};

std::string metrics_text(const Stats& s) {
  Prom p;
  p.b.reserve(8192);
  p.gauge("goro_goroutines", "Number of goroutines that currently exist.", s.goroutines.total);
  p.family("goro_goroutines_by_state", "gauge",
           "Goroutines by state: running, runnable, in a blocking call, or what they wait for.");
  for (const GoroutineState st : kAllStates) {
    p.begin("goro_goroutines_by_state");
    p.label(true, "state", internal::state_label(st));
    p.value_i(true, s.goroutines.count(st));
  }
  p.counter("goro_goroutines_created_total", "Goroutines started since the process began.",
            s.goroutines.created);
  p.gauge("goro_sched_gomaxprocs_threads",
          "The current GOMAXPROCS: processors that run goroutines at once.", s.gomaxprocs);
  p.gauge("goro_threads", "Number of OS threads of the process.", s.threads.os);
  p.gauge("goro_runtime_threads", "OS threads the runtime created to run goroutines (Ms) alive.",
          s.threads.runtime);
  p.family("goro_runtime_threads_by_state", "gauge",
           "Runtime threads running a goroutine, idle, spinning (looking for work), inside a "
           "blocking call, or locked to a goroutine (overlaps the others).");
  const std::pair<const char*, int> tstates[] = {{"running", s.threads.running},
                                                 {"idle", s.threads.idle},
                                                 {"spinning", s.threads.spinning},
                                                 {"blocking", s.threads.blocking},
                                                 {"locked", s.threads.locked}};
  for (const auto& [name, v] : tstates) {
    p.begin("goro_runtime_threads_by_state");
    p.label(true, "state", name);
    p.value_i(true, v);
  }
  p.counter("goro_runtime_threads_created_total", "Runtime threads created since start.",
            s.threads.created);
  p.family("goro_runtime_threads_created_for_blocking_total", "counter",
           "Runtime threads created to take over a processor from a goroutine inside "
           "goro::blocking, by the call site of that blocking call.");
  for (const CallSiteCount& c : s.threads.created_by_site) {
    p.begin("goro_runtime_threads_created_for_blocking_total");
    p.label(true, "site", c.location);
    p.value_u(true, c.count);
  }
  p.family("goro_blocking_calls", "gauge", "goro::blocking calls in progress, by call site.");
  for (const CallSiteCount& c : s.threads.blocking_by_site) {
    p.begin("goro_blocking_calls");
    p.label(true, "site", c.location);
    p.value_u(true, c.count);
  }
  p.gauge("goro_stacks", "Goroutine stacks bound to existing goroutines.", s.stacks.count);
  p.gauge("goro_stack_inuse_bytes", "Address space of the stacks of existing goroutines.",
          static_cast<std::int64_t>(s.stacks.in_use_bytes));
  p.gauge("goro_stack_resident_bytes",
          "Resident memory of the stacks of existing goroutines (measured with mincore).",
          static_cast<std::int64_t>(s.stacks.resident_bytes));
  p.gauge("goro_stack_reserved_bytes", "Address space of every stack slot, free ones included.",
          static_cast<std::int64_t>(s.stacks.reserved_bytes));
  p.gauge("goro_stack_cached", "Free stack slots kept for reuse.", s.stacks.cached);
  p.gauge(
      "goro_stack_max_resident_bytes", "Resident memory of the largest goroutine stack.",
      s.stacks.largest.empty() ? 0 : static_cast<std::int64_t>(s.stacks.largest[0].resident_bytes));
  p.counter("goro_sched_context_switches_total", "Goroutines switched to by the scheduler.",
            s.sched.context_switches);
  p.counter("goro_sched_steals_total", "Work taken from another processor's run queue.",
            s.sched.steals);
  p.counter("goro_sched_global_queue_takes_total", "Work taken from the global run queue.",
            s.sched.global_queue_takes);
  p.counter("goro_sched_preempt_requests_total",
            "Preemption requests: goroutines that ran 10 ms without yielding.",
            s.sched.preempt_requests);
  p.family("goro_sched_preemptions_total", "counter",
           "Preemptions served, cooperatively (at a runtime entry) or asynchronously (signal).");
  p.begin("goro_sched_preemptions_total");
  p.label(true, "kind", "cooperative");
  p.value_u(true, s.sched.preempt_cooperative);
  p.begin("goro_sched_preemptions_total");
  p.label(true, "kind", "async");
  p.value_u(true, s.sched.preempt_async);
  p.counter("goro_sched_syscall_handoffs_total",
            "Processors handed away from goroutines inside goro::blocking.",
            s.sched.syscall_handoffs);
  p.counter("goro_netpoll_wakeups_total", "Waiters readied by the network poller.",
            s.sched.netpoll_wakeups);
  p.family("goro_sched_runqueue", "gauge", "Goroutines waiting in run queues.");
  p.begin("goro_sched_runqueue");
  p.label(true, "queue", "global");
  p.value_i(true, s.sched.global_runqueue);
  p.begin("goro_sched_runqueue");
  p.label(true, "queue", "local");
  p.value_i(true, s.sched.local_runqueues);

  const SchedLatencies& h = s.sched.latencies;
  p.family("goro_sched_latencies_seconds", "histogram",
           "Time goroutines spent runnable before running (sampled, 1 in 64 transitions).");
  std::uint64_t cum = 0;
  for (int i = 0; i < SchedLatencies::kBuckets; i++) {
    cum += h.buckets[i];
    p.begin("goro_sched_latencies_seconds_bucket");
    p.b += "{le=\"";
    if (i < SchedLatencies::kBuckets - 1) {
      append_f(p.b, seconds(static_cast<std::uint64_t>(SchedLatencies::upper_bound_ns(i))));
    } else {
      p.b += "+Inf";
    }
    p.b += '"';
    p.value_u(true, cum);
  }
  p.begin("goro_sched_latencies_seconds_sum");
  p.value_f(false, seconds(h.sum_ns));
  p.begin("goro_sched_latencies_seconds_count");
  p.value_u(false, cum);

  p.gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
          static_cast<std::int64_t>(s.memory.resident_bytes));
  p.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
          static_cast<std::int64_t>(s.memory.virtual_bytes));
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  const double start = static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9 -
                       seconds(static_cast<std::uint64_t>(s.uptime_ns));
  p.family("process_start_time_seconds", "gauge",
           "Start time of the runtime since the Unix epoch in seconds.");
  p.begin("process_start_time_seconds");
  char buf[40];
  std::snprintf(buf, sizeof buf, " %.3f\n", start);
  p.b += buf;
  return std::move(p.b);
}

// ---------------------------------------------------------------------------------------------
// Routing and responses.

struct Response {
  int status = 200;
  const char* reason = "OK";
  const char* content_type = "text/plain; charset=utf-8";
  std::string body;
  const char* extra_headers = "";
};

Response error_response(int status, const char* reason, std::string body) {
  Response r;
  r.status = status;
  r.reason = reason;
  r.body = std::move(body);
  return r;
}

constexpr const char* kIndex =
    "goro debug endpoint\n"
    "\n"
    "/debug/runtime               health check: goroutines, threads, stacks, memory (text)\n"
    "/debug/runtime?format=json   the same, in full, as JSON\n"
    "/debug/goroutines?debug=1    goroutines grouped by stack\n"
    "/debug/goroutines?debug=2    every goroutine with its stack\n"
    "/debug/sched                 scheduler trace with P, M and G lines\n"
    "/metrics                     Prometheus metrics\n";

Response route(const Request& req) {
  if (req.method != "GET" && req.method != "HEAD") {
    Response r = error_response(405, "Method Not Allowed", "method not allowed\n");
    r.extra_headers = "Allow: GET, HEAD\r\n";
    return r;
  }
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(req.url.data(), req.url.size(), 0, &u) != 0) {
    return error_response(400, "Bad Request", "malformed request target\n");
  }
  std::string_view path = "/";
  std::string_view query;
  if ((u.field_set & (1 << UF_PATH)) != 0) {
    path = std::string_view(req.url).substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
  }
  if ((u.field_set & (1 << UF_QUERY)) != 0) {
    query =
        std::string_view(req.url).substr(u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
  }
  Response r;
  if (path == "/") {
    r.body = kIndex;
  } else if (path == "/debug/runtime") {
    const std::string format = query_param(query, "format");
    if (format == "json") {
      r.content_type = "application/json";
      r.body = runtime_json(goro::stats());
    } else if (format.empty() || format == "text") {
      r.body = runtime_text(goro::stats());
    } else {
      return error_response(400, "Bad Request", "format must be text or json\n");
    }
  } else if (path == "/debug/goroutines") {
    const std::string level = query_param(query, "debug");
    if (level.empty() || level == "1") {
      r.body = goro::debug::goroutines(Detail::kGrouped);
    } else if (level == "2") {
      r.body = goro::debug::goroutines(Detail::kFull);
    } else {
      return error_response(400, "Bad Request", "debug must be 1 or 2\n");
    }
  } else if (path == "/debug/sched") {
    r.body = internal::schedtrace_text(true);
  } else if (path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_text(goro::stats());
  } else {
    return error_response(404, "Not Found", "404 page not found\n");
  }
  return r;
}

std::string render(const Response& r, bool head, bool keep_alive) {
  std::string out;
  out.reserve(128 + (head ? 0 : r.body.size()));
  char line[64];
  std::snprintf(line, sizeof line, "HTTP/1.1 %d ", r.status);
  out += line;
  out += r.reason;
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nContent-Length: ";
  append_u(out, r.body.size());
  out += "\r\nCache-Control: no-store\r\n";
  out += r.extra_headers;
  out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head) out += r.body;
  return out;
}

bool send(net::Conn& c, const std::string& data) {
  std::error_code ec;
  c.set_write_deadline(net::Clock::now() + kWriteTimeout, ec);
  if (ec) return false;
  c.write(data.data(), data.size(), ec);
  return !ec;
}

// ---------------------------------------------------------------------------------------------
// Goroutines.

void serve_conn(net::Conn& conn, bool over_limit) {
  if (over_limit) {
    send(conn, render(error_response(503, "Service Unavailable", "too many connections\n"), false,
                      false));
    return;
  }
  http_parser_settings settings;
  http_parser_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_url;
  settings.on_message_complete = on_message_complete;
  ParseState c;
  http_parser parser;
  http_parser_init(&parser, HTTP_REQUEST);
  parser.data = &c;
  std::vector<char> buf(8192);
  for (;;) {
    std::error_code ec;
    conn.set_read_deadline(net::Clock::now() + kIdleTimeout, ec);
    if (ec) return;
    const std::size_t n = conn.read(buf.data(), buf.size(), ec);
    if (ec || n == 0) return;  // closed, reset, idle too long, or the peer is done
    std::size_t off = 0;
    while (off < n) {
      const std::size_t used = http_parser_execute(&parser, &settings, buf.data() + off, n - off);
      off += used;
      const http_errno err = HTTP_PARSER_ERRNO(&parser);
      if (err == HPE_PAUSED && c.req.complete) {
        c.head_bytes = 0;
        const bool head = c.req.method == "HEAD";
        const bool keep = c.req.keep_alive;
        Response r;
        try {
          r = route(c.req);
        } catch (const std::exception& e) {
          r = error_response(500, "Internal Server Error", std::string(e.what()) + "\n");
        }
        if (!send(conn, render(r, head, keep)) || !keep) return;
        c.req = Request{};
        http_parser_pause(&parser, 0);
        continue;
      }
      if (err != HPE_OK) {
        send(conn,
             render(error_response(400, "Bad Request",
                                   std::string("bad request: ") + http_errno_name(err) + "\n"),
                    false, false));
        return;
      }
      c.head_bytes += used;
      if (c.head_bytes > kMaxHead) {
        send(conn,
             render(error_response(431, "Request Header Fields Too Large", "request too large\n"),
                    false, false));
        return;
      }
    }
  }
}

void conn_main(const std::shared_ptr<ServerState>& st, net::Conn conn, bool over_limit) {
  {
    std::lock_guard<std::mutex> hold(st->mu);
    if (st->closing) return;  // conn's destructor closes it
    st->conns.insert(&conn);
  }
  serve_conn(conn, over_limit);
  std::lock_guard<std::mutex> hold(st->mu);
  st->conns.erase(&conn);
}

std::atomic<int> live_conns{0};  // over all servers: bounds the goroutines a flood can start

void accept_main(const std::shared_ptr<ServerState>& st) {
  for (;;) {
    std::error_code ec;
    net::Conn conn = st->listener.accept(ec);
    if (ec) {
      if (ec == std::errc::bad_file_descriptor) return;  // closed
      // Out of file descriptors or similar: back off a little and retry.
      goro::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    const bool over = live_conns.fetch_add(1, std::memory_order_relaxed) >= kMaxConns;
    st->wg.add(1);
    try {
      goro::go(
          {.name = "goro.debug.conn"},
          [st, over](net::Conn c) {
            conn_main(st, std::move(c), over);
            live_conns.fetch_sub(1, std::memory_order_relaxed);
            st->wg.done();
          },
          std::move(conn));
    } catch (...) {
      live_conns.fetch_sub(1, std::memory_order_relaxed);
      st->wg.done();
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API.

Server& Server::operator=(Server&& o) noexcept {
  if (this != &o) {
    close();
    state_ = std::move(o.state_);
  }
  return *this;
}

Server::~Server() {
  close();
}

std::string Server::addr() const {
  return state_ != nullptr ? state_->addr : std::string();
}

void Server::close() noexcept {
  if (state_ == nullptr) return;
  {
    std::lock_guard<std::mutex> hold(state_->mu);
    if (state_->closed) return;
    state_->closed = true;
    state_->closing = true;
    std::error_code ec;
    state_->listener.close(ec);
    for (net::Conn* c : state_->conns) c->close(ec);
  }
  state_->wg.wait();
}

Server serve(std::string_view addr) {
  std::string a(addr);
  if (a.starts_with(":")) a = "127.0.0.1" + a;  // no host: this machine only
  auto st = std::make_shared<ServerState>();
  st->listener = net::listen("tcp", a);
  st->addr = st->listener.addr();
  st->wg.add(1);
  try {
    goro::go({.name = "goro.debug.http"}, [st] {
      accept_main(st);
      st->wg.done();
    });
  } catch (...) {
    st->wg.done();
    throw;
  }
  Server s;
  s.state_ = std::move(st);
  return s;
}

}  // namespace goro::debug

namespace goro::internal {

void serve_from_env(const char* addr) noexcept {
  try {
    // Lives as long as the process: never closed.
    static auto* server = new goro::debug::Server(goro::debug::serve(addr));
    RawBuf b;
    b.str("goro: debug server listening on http://").str(server->addr().c_str()).str("/\n");
    b.flush();
  } catch (const std::exception& e) {
    RawBuf b;
    b.str("goro: GORO_DEBUG_ADDR=").str(addr).str(": cannot serve: ").str(e.what()).str("\n");
    b.flush();
  }
}

}  // namespace goro::internal
