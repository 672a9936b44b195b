// chan_model_test.cpp - model-based randomized tests of goro::Chan and goro::select.
//
// SequentialModel: one task (a goroutine or a thread) runs a seeded random program of
// send / recv / try_send / try_recv / select / close / len over channels of capacity 0, 1 and 3
// (and a nil channel) and compares every result with an exact model (a deque per channel). Only
// operations that the model says cannot block are issued.
//
// ConcurrentInvariants: 8 goroutines and 2 threads run seeded random programs of the same
// operations (blocking ones included) over 4 shared channels with mixed capacities, while some
// of them close channels. Whenever every unfinished worker is blocked and nothing moves (the
// random program deadlocked), a controller thread takes a value from and offers one to each
// channel, and closes a channel if that does not help, so every round ends. Checked:
//   * every value whose send succeeded is received exactly once, on its channel, or is still
//     buffered at the end (drained after closing); no other value is ever received;
//   * per-sender FIFO: every receiver sees each sender's values on a channel in send order;
//   * after close: a send, try_send or send case that starts after close() returned throws; a
//     receive that starts after some receive reported "closed" gets no value; "closed" is
//     never reported, nor ChanClosed thrown, for a channel no one has started to close;
//   * exactly one close() per channel succeeds, the others throw.
//
// Seeds: random by default and printed on failure; GORO_MODEL_SEED=<n> reruns one.
// GORO_SOAK=1 runs 20x more operations. GORO_TEST_SCALE scales the operation count (about one
// million operations in all at scale 1).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "goro/goro.hpp"
#include "test_util.hpp"

namespace {

using goro_test::scaled;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using Rng = std::mt19937_64;

std::uint64_t base_seed() {
  static const std::uint64_t seed = [] {
    if (const char* e = std::getenv("GORO_MODEL_SEED"); e != nullptr && *e != 0) {
      return static_cast<std::uint64_t>(std::strtoull(e, nullptr, 0));
    }
    return static_cast<std::uint64_t>(std::random_device{}()) << 32 ^ std::random_device{}();
  }();
  return seed;
}

bool soak() {
  const char* e = std::getenv("GORO_SOAK");
  return e != nullptr && *e != 0 && std::string(e) != "0";
}

std::int64_t total_ops() {
  return scaled(1'000'000) * (soak() ? 20 : 1);
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

std::string seed_note(std::uint64_t seed) {
  return "rerun with GORO_MODEL_SEED=" + std::to_string(seed);
}

// ---- Sequential model -------------------------------------------------------------------------

enum class Who { kGoroutine, kThread };

struct SeqParam {
  int procs;
  Who who;
};

class ChanModelSequentialTest : public ::testing::TestWithParam<SeqParam> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam().procs); }
};

// Runs f on a goroutine or a thread and waits.
template <class F>
void run_on(Who who, F f) {
  if (who == Who::kThread) {
    std::thread(std::move(f)).join();
    return;
  }
  std::atomic<bool> done{false};
  goro::go([&] {
    f();
    done.store(true, std::memory_order_release);
  });
  goro_test::wait_or_die([&] { return done.load(std::memory_order_acquire); }, 120,
                         "the sequential model program did not finish");
}

struct ModelChan {
  goro::Chan<std::uint64_t> ch;
  std::size_t cap = 0;
  std::deque<std::uint64_t> buf;
  bool closed = false;
  bool nil = false;
};

// One random program; returns "" or the first mismatch.
std::string run_sequential(std::uint64_t seed, std::int64_t nops) {
  Rng rng(seed);
  std::vector<ModelChan> cs(5);
  const std::size_t caps[] = {0, 1, 3};
  auto renew = [&](std::size_t i) {
    ModelChan& m = cs[i];
    m.buf.clear();
    m.closed = false;
    m.nil = i == 4;
    m.cap = m.nil ? 0 : caps[rng() % 3];
    m.ch = m.nil ? goro::Chan<std::uint64_t>() : goro::Chan<std::uint64_t>(m.cap);
  };
  for (std::size_t i = 0; i < cs.size(); i++) renew(i);
  std::uint64_t next_value = 1;
  std::ostringstream err;
  auto fail = [&](std::int64_t op, const std::string& what) {
    err << "op " << op << ": " << what;
    return err.str();
  };
  auto can_send = [](const ModelChan& m) { return !m.nil && !m.closed && m.buf.size() < m.cap; };
  auto can_recv = [](const ModelChan& m) { return !m.nil && (!m.buf.empty() || m.closed); };

  for (std::int64_t op = 0; op < nops; op++) {
    std::size_t ci = rng() % cs.size();
    ModelChan& m = cs[ci];
    std::string where = " on chan " + std::to_string(ci) + " (cap " + std::to_string(m.cap) +
                        (m.nil ? ", nil" : "") + (m.closed ? ", closed" : "") + ", " +
                        std::to_string(m.buf.size()) + " buffered)";
    switch (rng() % 12) {
      case 0:
      case 1: {  // try_send
        std::uint64_t v = next_value++;
        bool threw = false, ok = false;
        try {
          ok = m.ch.try_send(v);
        } catch (const goro::ChanClosed&) {
          threw = true;
        }
        if (m.closed && !m.nil) {
          if (!threw) return fail(op, "try_send did not throw" + where);
        } else if (threw) {
          return fail(op, "try_send threw" + where);
        } else if (ok != can_send(m)) {
          return fail(op, std::string("try_send returned ") + (ok ? "true" : "false") + where);
        }
        if (ok) m.buf.push_back(v);
        break;
      }
      case 2: {  // send, only if it cannot block
        if (!(m.closed && !m.nil) && !can_send(m)) break;
        std::uint64_t v = next_value++;
        bool threw = false;
        try {
          m.ch.send(v);
        } catch (const goro::ChanClosed&) {
          threw = true;
        }
        if (threw != m.closed)
          return fail(op, std::string("send ") + (threw ? "threw" : "did not throw") + where);
        if (!threw) m.buf.push_back(v);
        break;
      }
      case 3:
      case 4: {  // try_recv
        bool closed = false;
        auto v = m.ch.try_recv(&closed);
        if (!m.buf.empty()) {
          if (!v || *v != m.buf.front()) return fail(op, "try_recv got the wrong value" + where);
          if (closed) return fail(op, "try_recv reported closed with a value" + where);
          m.buf.pop_front();
        } else if (v) {
          return fail(op, "try_recv got a value from an empty channel" + where);
        } else if (closed != (m.closed && !m.nil)) {
          return fail(op, std::string("try_recv closed=") + (closed ? "true" : "false") + where);
        }
        break;
      }
      case 5: {  // recv, only if it cannot block
        if (!can_recv(m)) break;
        auto v = m.ch.recv();
        if (!m.buf.empty()) {
          if (!v || *v != m.buf.front()) return fail(op, "recv got the wrong value" + where);
          m.buf.pop_front();
        } else if (v) {
          return fail(op, "recv got a value from a closed, drained channel" + where);
        }
        break;
      }
      case 6: {  // len / cap / bool
        if (m.ch.len() != m.buf.size())
          return fail(op, "len " + std::to_string(m.ch.len()) + where);
        if (m.ch.cap() != m.cap) return fail(op, "cap" + where);
        if (static_cast<bool>(m.ch) == m.nil) return fail(op, "operator bool" + where);
        break;
      }
      case 7: {  // close (rarely), or renew a closed channel
        if (rng() % 8 != 0) break;
        if (m.closed && rng() % 2 == 0) {
          renew(ci);
          break;
        }
        bool threw = false;
        try {
          m.ch.close();
        } catch (const goro::ChanClosed&) {
          threw = true;
        }
        if (threw != (m.closed || m.nil))
          return fail(op, std::string("close ") + (threw ? "threw" : "did not throw") + where);
        if (!m.nil) m.closed = true;
        break;
      }
      default: {  // select over two cases, with a default case
        std::size_t cj = rng() % cs.size();
        ModelChan& n = cs[cj];
        bool a_send = rng() % 2 == 0, b_send = rng() % 2 == 0;
        std::uint64_t va = next_value++, vb = next_value++;
        std::optional<std::uint64_t> got;
        bool got_any = false;
        auto on_r = [&](std::optional<std::uint64_t> x) {
          got = x;
          got_any = true;
        };
        // Which cases the model says can proceed (a send on a closed channel "proceeds" by
        // throwing).
        auto ready = [&](const ModelChan& c, bool send) {
          if (c.nil) return false;
          return send ? (c.closed || c.buf.size() < c.cap) : can_recv(c);
        };
        bool ra = ready(m, a_send), rb = ready(n, b_send);
        int idx = -1;
        bool threw = false;
        try {
          if (a_send && b_send) {
            idx =
                goro::select(goro::on_send(m.ch, va), goro::on_send(n.ch, vb), goro::on_default());
          } else if (a_send) {
            idx = goro::select(goro::on_send(m.ch, va), goro::on_recv(n.ch, on_r),
                               goro::on_default());
          } else if (b_send) {
            idx = goro::select(goro::on_recv(m.ch, on_r), goro::on_send(n.ch, vb),
                               goro::on_default());
          } else {
            idx = goro::select(goro::on_recv(m.ch, on_r), goro::on_recv(n.ch, on_r),
                               goro::on_default());
          }
        } catch (const goro::ChanClosed&) {
          threw = true;
        }
        std::string sw = " in select(" + std::string(a_send ? "send " : "recv ") +
                         std::to_string(ci) + ", " + (b_send ? "send " : "recv ") +
                         std::to_string(cj) + ", default)" + where;
        if (threw) {
          bool closed_send = (a_send && ra && m.closed) || (b_send && rb && n.closed);
          if (!closed_send) return fail(op, "ChanClosed without a closed send case" + sw);
          break;
        }
        if (idx == 2) {
          if (ra || rb) return fail(op, "default chosen although a case was ready" + sw);
          break;
        }
        if ((idx == 0 && !ra) || (idx == 1 && !rb) || idx < 0 || idx > 2) {
          return fail(op, "case " + std::to_string(idx) + " chosen but not ready" + sw);
        }
        ModelChan& c = idx == 0 ? m : n;
        bool send = idx == 0 ? a_send : b_send;
        if (send) {
          if (c.closed) return fail(op, "send case on a closed channel did not throw" + sw);
          c.buf.push_back(idx == 0 ? va : vb);
        } else {
          if (!got_any) return fail(op, "receive handler did not run" + sw);
          if (!c.buf.empty()) {
            if (!got || *got != c.buf.front())
              return fail(op, "select received the wrong value" + sw);
            c.buf.pop_front();
          } else if (got) {
            return fail(op, "select received from a closed, drained channel" + sw);
          }
        }
        break;
      }
    }
  }
  // Everything still buffered comes out, in order.
  for (std::size_t i = 0; i < cs.size(); i++) {
    ModelChan& m = cs[i];
    if (m.nil) continue;
    if (!m.closed) m.ch.close();
    for (std::uint64_t want : m.buf) {
      auto v = m.ch.recv();
      if (!v || *v != want) return fail(nops, "final drain of chan " + std::to_string(i));
    }
    if (m.ch.recv().has_value()) return fail(nops, "extra value in chan " + std::to_string(i));
  }
  return "";
}

TEST_P(ChanModelSequentialTest, MatchesModel) {
  const std::uint64_t seed =
      mix(base_seed(),
          static_cast<std::uint64_t>(GetParam().procs * 2 + (GetParam().who == Who::kThread)));
  const std::int64_t nops = std::max<std::int64_t>(1000, total_ops() / 20);
  std::string result;
  run_on(GetParam().who, [&] {
    // Several independent programs, each with fresh channels.
    for (int prog = 0; prog < 10 && result.empty(); prog++) {
      std::uint64_t s = mix(seed, static_cast<std::uint64_t>(prog));
      result = run_sequential(s, nops / 10);
      if (!result.empty()) result += " (program seed " + std::to_string(s) + ")";
    }
  });
  EXPECT_EQ(result, "") << seed_note(base_seed());
}

INSTANTIATE_TEST_SUITE_P(All, ChanModelSequentialTest,
                         ::testing::Values(SeqParam{1, Who::kGoroutine}, SeqParam{1, Who::kThread},
                                           SeqParam{2, Who::kGoroutine}, SeqParam{8, Who::kThread}),
                         [](const ::testing::TestParamInfo<SeqParam>& i) {
                           return "P" + std::to_string(i.param.procs) +
                                  (i.param.who == Who::kThread ? "_Thread" : "_Goroutine");
                         });

// ---- Concurrent invariants
// -----------------------------------------------------------------------

constexpr int kChans = 4;
constexpr int kGoroutineWorkers = 8;
constexpr int kThreadWorkers = 2;
constexpr int kWorkers = kGoroutineWorkers + kThreadWorkers;

struct Violations {
  std::atomic<std::int64_t> count{0};
  std::mutex mu;
  std::vector<std::string> first;
  void add(const std::string& what) {
    count++;
    std::lock_guard<std::mutex> hold(mu);
    if (first.size() < 10) first.push_back(what);
  }
};

struct Shared {
  std::array<goro::Chan<std::uint64_t>, kChans> ch;
  std::array<std::size_t, kChans> cap{};
  goro::Chan<std::uint64_t> nil;
  // Per channel: someone called close() (set before the call); some close() returned or threw
  // (the channel is closed from then on); some receive reported "closed" (it is drained for good).
  std::array<std::atomic<bool>, kChans> closing{}, closed{}, drained{};
  std::array<std::atomic<int>, kChans> close_ok{}, close_threw{};
  std::atomic<int> finished{0}, blocked{0};
  std::atomic<std::int64_t> progress{0};
  Violations bad;
};

struct WorkerLog {
  std::vector<std::pair<int, std::uint64_t>> sent;      // (chan, value) of successful sends
  std::vector<std::pair<int, std::uint64_t>> received;  // (chan, value) in receive order
};

std::uint64_t value_of(int worker, std::uint64_t seq) {
  return static_cast<std::uint64_t>(worker) << 40 | seq;
}

void close_chan(Shared& s, int c) {
  s.closing[static_cast<std::size_t>(c)] = true;
  try {
    s.ch[static_cast<std::size_t>(c)].close();
    s.close_ok[static_cast<std::size_t>(c)]++;
  } catch (const goro::ChanClosed&) {
    s.close_threw[static_cast<std::size_t>(c)]++;
  }
  s.closed[static_cast<std::size_t>(c)] = true;
}

// One worker's random program.
void worker(Shared& s, WorkerLog& log, int w, std::uint64_t seed, std::int64_t nops) {
  Rng rng(seed);
  std::uint64_t seq = 0;
  auto chan_name = [](int c) { return "chan " + std::to_string(c); };

  // Bookkeeping around one send attempt of value v on channel c.
  struct SendCheck {
    bool closed_before;
  };
  auto before_send = [&](int c) { return SendCheck{s.closed[static_cast<std::size_t>(c)].load()}; };
  auto after_send_ok = [&](int c, std::uint64_t v, SendCheck k) {
    if (k.closed_before) s.bad.add("a send succeeded on closed " + chan_name(c));
    log.sent.emplace_back(c, v);
  };
  auto after_send_threw = [&](int c) {
    if (!s.closing[static_cast<std::size_t>(c)].load()) {
      s.bad.add("ChanClosed from a send on open " + chan_name(c));
    }
  };
  struct RecvCheck {
    bool drained_before;
  };
  auto before_recv = [&](int c) {
    return RecvCheck{s.drained[static_cast<std::size_t>(c)].load()};
  };
  auto after_recv = [&](int c, const std::optional<std::uint64_t>& v, RecvCheck k) {
    if (v) {
      if (k.drained_before)
        s.bad.add("a value received after closed was reported on " + chan_name(c));
      log.received.emplace_back(c, *v);
    } else {
      if (!s.closing[static_cast<std::size_t>(c)].load()) {
        s.bad.add("closed reported on open " + chan_name(c));
      }
      s.drained[static_cast<std::size_t>(c)] = true;
    }
  };

  for (std::int64_t op = 0; op < nops; op++) {
    int c = static_cast<int>(rng() % kChans);
    const auto& ch = s.ch[static_cast<std::size_t>(c)];
    // close: rare (about one per round from all workers together, so that most of a round
    // runs on open channels); the deadlock detector closes the rest.
    if (rng() % (kWorkers * 2000) == 0) {
      close_chan(s, c);
      s.progress.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::uint32_t kind = static_cast<std::uint32_t>(rng() % 1000);
    if (kind < 200) {  // send
      std::uint64_t v = value_of(w, seq++);
      auto k = before_send(c);
      s.blocked++;
      try {
        ch.send(v);
        s.blocked--;
        after_send_ok(c, v, k);
      } catch (const goro::ChanClosed&) {
        s.blocked--;
        after_send_threw(c);
      }
    } else if (kind < 400) {  // recv
      auto k = before_recv(c);
      s.blocked++;
      auto v = ch.recv();
      s.blocked--;
      after_recv(c, v, k);
    } else if (kind < 530) {  // try_send
      std::uint64_t v = value_of(w, seq++);
      auto k = before_send(c);
      try {
        if (ch.try_send(v)) after_send_ok(c, v, k);
      } catch (const goro::ChanClosed&) {
        after_send_threw(c);
      }
    } else if (kind < 660) {  // try_recv
      auto k = before_recv(c);
      bool closed = false;
      auto v = ch.try_recv(&closed);
      if (v && closed) s.bad.add("try_recv: a value and closed");
      if (v || closed) after_recv(c, v, k);
    } else if (kind < 680) {  // nil channel: never ready
      if (s.nil.try_send(1)) s.bad.add("try_send on nil succeeded");
      bool closed = true;
      if (s.nil.try_recv(&closed) || closed) s.bad.add("try_recv on nil");
    } else {  // select over two cases (+ default / timeout / nothing), maybe a nil case
      int c2 = static_cast<int>(rng() % kChans);
      bool send1 = rng() % 2 == 0, send2 = rng() % 2 == 0;
      int tail = static_cast<int>(rng() % 3);  // 0: default, 1: timeout, 2: blocking
      bool nil2 = tail != 2 && rng() % 8 == 0;
      const auto& ch2 = nil2 ? s.nil : s.ch[static_cast<std::size_t>(c2)];
      std::uint64_t v = value_of(w, seq++);  // both send cases carry it; at most one fires
      auto ks1 = before_send(c), ks2 = before_send(c2);
      auto kr1 = before_recv(c), kr2 = before_recv(c2);
      std::optional<std::uint64_t> got;
      int idx = -1;
      auto r1 = [&](std::optional<std::uint64_t> x) { got = x; };
      auto run = [&](auto&& a, auto&& b) {
        switch (tail) {
          case 0:
            return goro::select(std::move(a), std::move(b), goro::on_default());
          case 1:
            return goro::select(std::move(a), std::move(b),
                                goro::on_timeout(std::chrono::microseconds(rng() % 200)));
          default:
            return goro::select(std::move(a), std::move(b));
        }
      };
      if (tail == 2) s.blocked++;
      try {
        if (send1 && send2) {
          idx = run(goro::on_send(ch, v), goro::on_send(ch2, v));
        } else if (send1) {
          idx = run(goro::on_send(ch, v), goro::on_recv(ch2, r1));
        } else if (send2) {
          idx = run(goro::on_recv(ch, r1), goro::on_send(ch2, v));
        } else {
          idx = run(goro::on_recv(ch, r1), goro::on_recv(ch2, r1));
        }
      } catch (const goro::ChanClosed&) {
        idx = -2;
      }
      if (tail == 2) s.blocked--;
      if (idx == -2) {
        bool any = (send1 && s.closing[static_cast<std::size_t>(c)].load()) ||
                   (send2 && !nil2 && s.closing[static_cast<std::size_t>(c2)].load());
        if (!any) s.bad.add("select threw ChanClosed with no closing send case");
      } else if (idx == 0 || idx == 1) {
        if (idx == 1 && nil2) {
          s.bad.add("a nil channel case fired");
        } else {
          int cc = idx == 0 ? c : c2;
          bool send = idx == 0 ? send1 : send2;
          if (send) {
            after_send_ok(cc, v, idx == 0 ? ks1 : ks2);
          } else {
            after_recv(cc, got, idx == 0 ? kr1 : kr2);
          }
        }
      } else if (idx != 2) {
        s.bad.add("select returned " + std::to_string(idx));
      }
    }
    s.progress.fetch_add(1, std::memory_order_relaxed);
  }
  s.finished++;
}

struct RoundResult {
  std::int64_t ops = 0;
  std::int64_t stall_closes = 0;  // channels closed because even the controller could not help
  std::int64_t transfers = 0;     // successful sends
};

// Runs one round; reports violations through gtest.
RoundResult run_round(std::uint64_t seed, std::int64_t ops_per_worker) {
  RoundResult rr;
  Rng rng(seed);
  Shared s;
  const std::size_t caps[] = {0, 1, 3};
  for (int c = 0; c < kChans; c++) {
    // Every round has an unbuffered and a 3-buffered channel; the rest are random.
    std::size_t cap = c == 0 ? 0 : c == 1 ? 3 : caps[rng() % 3];
    s.cap[static_cast<std::size_t>(c)] = cap;
    s.ch[static_cast<std::size_t>(c)] = goro::Chan<std::uint64_t>(cap);
  }
  std::vector<WorkerLog> logs(kWorkers + 1);  // the last one is the controller's
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; w++) {
    std::uint64_t ws = mix(seed, static_cast<std::uint64_t>(w) + 1);
    if (w < kGoroutineWorkers) {
      goro::go([&s, &logs, w, ws, ops_per_worker] {
        worker(s, logs[static_cast<std::size_t>(w)], w, ws, ops_per_worker);
      });
    } else {
      threads.emplace_back([&s, &logs, w, ws, ops_per_worker] {
        worker(s, logs[static_cast<std::size_t>(w)], w, ws, ops_per_worker);
      });
    }
  }
  // Controller (a plain thread, and one more sender/receiver): when every unfinished worker is
  // blocked and nothing has moved for a while, the program is deadlocked. It then takes a value
  // from every channel and offers one to every channel (try_recv / try_send), which unblocks
  // blocked senders and receivers; if even that moves nothing twice in a row, it closes a
  // channel.
  WorkerLog ctl;
  std::uint64_t ctl_seq = 0;
  int fruitless = 0;
  auto t0 = Clock::now();
  std::int64_t last_progress = -1;
  int still = 0;
  while (s.finished.load() < kWorkers) {
    std::this_thread::sleep_for(200us);
    std::int64_t p = s.progress.load();
    bool all_blocked = s.finished.load() + s.blocked.load() == kWorkers;
    still = (p == last_progress && all_blocked) ? still + 1 : 0;
    last_progress = p;
    if (still >= 3) {
      still = 0;
      bool moved = false;
      const std::uint64_t first = rng();
      for (int k = 0; k < kChans; k++) {
        int c = static_cast<int>((static_cast<std::uint64_t>(k) + first) % kChans);
        const auto& ch = s.ch[static_cast<std::size_t>(c)];
        bool drained_before = s.drained[static_cast<std::size_t>(c)].load();
        bool is_closed = false;
        if (auto v = ch.try_recv(&is_closed)) {
          if (drained_before) s.bad.add("controller: value after closed was reported");
          ctl.received.emplace_back(c, *v);
          moved = true;
        }
        bool closed_before = s.closed[static_cast<std::size_t>(c)].load();
        std::uint64_t v = value_of(kWorkers, ctl_seq++);
        try {
          if (ch.try_send(v)) {
            if (closed_before) s.bad.add("controller: try_send succeeded on a closed channel");
            ctl.sent.emplace_back(c, v);
            moved = true;
          }
        } catch (const goro::ChanClosed&) {
          if (!s.closing[static_cast<std::size_t>(c)].load())
            s.bad.add("controller: ChanClosed on open channel");
        }
      }
      fruitless = moved ? 0 : fruitless + 1;
      if (fruitless >= 2) {
        fruitless = 0;
        std::vector<int> open;
        for (int c = 0; c < kChans; c++) {
          if (!s.closing[static_cast<std::size_t>(c)].load()) open.push_back(c);
        }
        if (!open.empty()) {
          close_chan(s, open[rng() % open.size()]);
          rr.stall_closes++;
        }
      }
    }
    if (goro_test::seconds_since(t0) > 120) {
      std::fprintf(stderr, "\nTIMEOUT: a model round did not finish (%s); finished %d blocked %d\n",
                   seed_note(base_seed()).c_str(), s.finished.load(), s.blocked.load());
      std::abort();
    }
  }
  for (auto& t : threads) t.join();
  logs[kWorkers] = std::move(ctl);
  // Drain: close what is still open, then receive what is buffered.
  std::vector<std::pair<int, std::uint64_t>> drained;
  for (int c = 0; c < kChans; c++) {
    if (!s.closing[static_cast<std::size_t>(c)].load()) close_chan(s, c);
    while (auto v = s.ch[static_cast<std::size_t>(c)].recv()) drained.emplace_back(c, *v);
  }
  rr.ops = ops_per_worker * kWorkers;
  for (const auto& l : logs) rr.transfers += static_cast<std::int64_t>(l.sent.size());

  // ---- Checks.
  const std::string note = seed_note(base_seed()) + " (round seed " + std::to_string(seed) + ")";
  std::unordered_map<std::uint64_t, std::pair<int, int>> sent;  // value -> (chan, times received)
  for (const auto& l : logs) {
    for (auto [c, v] : l.sent) {
      if (!sent.emplace(v, std::make_pair(c, 0)).second) s.bad.add("a value was sent twice");
    }
  }
  std::int64_t unknown = 0, wrong_chan = 0, dup = 0, lost = 0, order = 0;
  auto account = [&](const std::vector<std::pair<int, std::uint64_t>>& seqn) {
    std::unordered_map<std::uint64_t, std::uint64_t> last;  // (sender, chan) -> last seq
    for (auto [c, v] : seqn) {
      auto it = sent.find(v);
      if (it == sent.end()) {
        unknown++;
        continue;
      }
      if (it->second.first != c) wrong_chan++;
      if (it->second.second++ != 0) dup++;
      std::uint64_t key = (v >> 40) * kChans + static_cast<std::uint64_t>(c);
      std::uint64_t sq = v & ((1ull << 40) - 1);
      auto [lit, fresh] = last.emplace(key, sq);
      if (!fresh) {
        if (sq <= lit->second) order++;
        lit->second = sq;
      }
    }
  };
  for (const auto& l : logs) account(l.received);
  account(drained);
  for (const auto& [v, cr] : sent) {
    if (cr.second == 0) lost++;
  }
  EXPECT_EQ(unknown, 0) << "received values that no successful send sent; " << note;
  EXPECT_EQ(wrong_chan, 0) << "values received on another channel; " << note;
  EXPECT_EQ(dup, 0) << "values received twice; " << note;
  EXPECT_EQ(lost, 0) << "sent values neither received nor left buffered; " << note;
  EXPECT_EQ(order, 0) << "per-sender FIFO broken; " << note;
  for (int c = 0; c < kChans; c++) {
    EXPECT_EQ(s.close_ok[static_cast<std::size_t>(c)].load(), 1)
        << "successful closes of chan " << c << "; " << note;
  }
  std::lock_guard<std::mutex> hold(s.bad.mu);
  EXPECT_EQ(s.bad.count.load(), 0)
      << "first: " << (s.bad.first.empty() ? "" : s.bad.first[0])
      << (s.bad.first.size() > 1 ? "; " + s.bad.first[1] : "") << "; " << note;
  return rr;
}

class ChanModelConcurrentTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { goro::set_gomaxprocs(GetParam()); }
  void TearDown() override {
    EXPECT_TRUE(goro_test::wait_until([] { return goro::num_goroutine() == 0; }))
        << "goroutines left: " << goro::num_goroutine();
  }
};

TEST_P(ChanModelConcurrentTest, Invariants) {
  // A third of the operation budget for each GOMAXPROCS value; rounds of about 20,000 operations.
  const std::int64_t budget = std::max<std::int64_t>(kWorkers * 200, total_ops() / 3);
  const std::int64_t per_worker = std::min<std::int64_t>(2000, budget / kWorkers);
  const std::int64_t rounds = std::max<std::int64_t>(1, budget / (per_worker * kWorkers));
  const std::uint64_t seed = mix(base_seed(), static_cast<std::uint64_t>(GetParam()) + 100);
  std::int64_t ops = 0, stall_closes = 0, transfers = 0, ran = 0;
  auto t0 = Clock::now();
  for (std::int64_t r = 0; r < rounds && !HasFailure(); r++, ran++) {
    RoundResult rr = run_round(mix(seed, static_cast<std::uint64_t>(r)), per_worker);
    ops += rr.ops;
    stall_closes += rr.stall_closes;
    transfers += rr.transfers;
  }
  // Most of the program must run on open channels, or the test checks little.
  EXPECT_GT(transfers, ops / 10) << "too few values were sent; " << seed_note(base_seed());
  RecordProperty("operations", std::to_string(ops));
  std::printf(
      "[ model    ] %lld operations (%lld values sent) in %lld rounds, %.1f s, %lld "
      "closes by the deadlock breaker (seed %llu)\n",
      static_cast<long long>(ops), static_cast<long long>(transfers), static_cast<long long>(ran),
      goro_test::seconds_since(t0), static_cast<long long>(stall_closes),
      static_cast<unsigned long long>(base_seed()));
}

INSTANTIATE_TEST_SUITE_P(Procs, ChanModelConcurrentTest, ::testing::Values(1, 2, 8),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return "P" + std::to_string(i.param);
                         });

}  // namespace
