// peer_pg_test.cpp - the unmodified libpq blocking client (Debian's libpq5: PQconnectdb, PQexec,
// PQexecParams) called from goroutines, against a real PostgreSQL server that the test makes
// with initdb in a temporary directory and starts on loopback (tests/servers.hpp; as the
// `postgres` user when run as root), and stops by its PID.
//
// libpq knows nothing of goro: it puts its socket in non-blocking mode and waits in poll();
// goro's libc interposer (src/hook/io_hooks.cpp, docs/io.md) parks the calling goroutine in that
// poll() instead of blocking its OS thread. What is checked, with GOMAXPROCS=2:
//  * QueriesFromGoroutines: 200 goroutines, each with its own connection, run queries whose
//    results they can compute themselves (arithmetic and string functions with parameters,
//    generate_series row sets checked row by row, a temporary table filled and summed inside a
//    transaction); every result is checked, and the process never has more than GOMAXPROCS + 8
//    OS threads.
//  * BlockedQueriesPark: the main thread (a plain thread, its own connection) holds an advisory
//    lock; 200 goroutines each ask for it in a query that PostgreSQL blocks. The server's
//    pg_locks must show all 200 waiting at once - possible only if each goroutine's poll()
//    parked (a poll() that blocked its OS thread would stop the 2 Ps after 2 goroutines). Main
//    then releases the lock and every goroutine's query must complete with its own result.
//
// Skips (GTEST_SKIP) only when PostgreSQL's binaries are not installed; under ThreadSanitizer
// the libc hooks are not built (skipped with a message). Counts scale with GORO_TEST_SCALE.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "goro/goro.hpp"
#include "hook/io_hooks.hpp"
#include "peer_util.hpp"
#include "servers.hpp"
#include "test_util.hpp"

namespace {

using goro_test::Failures;
using goro_test::ProcsScope;
using goro_test::scaled;

using goro_test::hook_parks;
using goro_test::kProcs;
using goro_test::kThreadSlack;

constexpr long kLockKey = 4242;

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// Runs a query with text parameters; null (and *err) unless it returned `want`.
Result exec(PGconn* c, const std::string& sql, std::initializer_list<std::string> params,
            ExecStatusType want, std::string* err) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  Result r(PQexecParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                        nullptr, nullptr, 0));
  if (!r || PQresultStatus(r.get()) != want) {
    *err = sql + ": " + (r ? PQresultErrorMessage(r.get()) : PQerrorMessage(c));
    return nullptr;
  }
  return r;
}

std::string value(const Result& r, int row, int col) {
  return std::string(PQgetvalue(r.get(), row, col), PQgetlength(r.get(), row, col));
}

class PgPeer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    goro_test::raise_fd_limit(4096);
    if (goro_test::PostgresServer::postgres_binary().empty()) return;
    if (!goro::internal::io_hooks_built()) return;  // SetUp skips every test
    server_ = new goro_test::PostgresServer;
    started_ = server_->start(&error_);
  }
  static void TearDownTestSuite() {
    delete server_;  // SIGINT (fast shutdown) to its PID, SIGKILL if it lingers
    server_ = nullptr;
  }
  void SetUp() override {
    if (goro_test::PostgresServer::postgres_binary().empty() ||
        goro_test::PostgresServer::initdb_binary().empty()) {
      GTEST_SKIP() << "PostgreSQL is not installed: no postgres/initdb in PATH or "
                      "/usr/lib/postgresql/*/bin (apt-get install postgresql; tools/deps.sh "
                      "installs it)";
    }
    if (!goro::internal::io_hooks_built()) {
      GTEST_SKIP() << "the libc I/O hooks are not built in this configuration (ThreadSanitizer): "
                      "libpq would block OS threads instead of parking goroutines";
    }
    ASSERT_TRUE(started_) << "could not start PostgreSQL: " << error_;
  }

  static Conn connect(std::string* err) {
    Conn c(PQconnectdb(server_->conninfo().c_str()));
    if (!c || PQstatus(c.get()) != CONNECTION_OK) {
      *err = std::string("PQconnectdb: ") + (c ? PQerrorMessage(c.get()) : "out of memory");
      return nullptr;
    }
    return c;
  }

  static inline goro_test::PostgresServer* server_ = nullptr;
  static inline bool started_ = false;
  static inline std::string error_;
};

// One goroutine's queries; returns "" or what went wrong.
std::string run_queries(PGconn* c, int id, int rounds) {
  std::string err;
  for (int k = 0; k < rounds; k++) {
    const int x = id * 1000 + k;
    // Scalars with parameters.
    Result r = exec(c, "SELECT $1::int * 2, length(repeat('ab', $2::int)), upper($3::text)",
                    {std::to_string(x), std::to_string(k + 1), "g" + std::to_string(id)},
                    PGRES_TUPLES_OK, &err);
    if (!r) return err;
    if (PQntuples(r.get()) != 1 || value(r, 0, 0) != std::to_string(2 * x) ||
        value(r, 0, 1) != std::to_string(2 * (k + 1)) ||
        value(r, 0, 2) != "G" + std::to_string(id)) {
      return "scalar query: wrong result for x=" + std::to_string(x);
    }
    // A row set, checked row by row.
    const int rows = 50 + k;
    r = exec(c, "SELECT i, i * $2::int FROM generate_series(1, $1::int) AS i ORDER BY i",
             {std::to_string(rows), std::to_string(id)}, PGRES_TUPLES_OK, &err);
    if (!r) return err;
    if (PQntuples(r.get()) != rows) return "generate_series: wrong row count";
    for (int i = 0; i < rows; i++) {
      if (value(r, i, 0) != std::to_string(i + 1) ||
          value(r, i, 1) != std::to_string(static_cast<long>(i + 1) * id)) {
        return "generate_series: wrong row " + std::to_string(i);
      }
    }
  }
  // A transaction on a temporary table (plain PQexec).
  const char* setup[] = {"BEGIN", "CREATE TEMP TABLE t (v int) ON COMMIT DROP"};
  for (const char* sql : setup) {
    if (!exec(c, sql, {}, PGRES_COMMAND_OK, &err)) return err;
  }
  long want = 0;
  for (int i = 0; i < 20; i++) {
    want += id + i;
    if (!exec(c, "INSERT INTO t VALUES ($1::int)", {std::to_string(id + i)}, PGRES_COMMAND_OK,
              &err)) {
      return err;
    }
  }
  Result sum(PQexec(c, "SELECT sum(v), count(*) FROM t"));
  if (!sum || PQresultStatus(sum.get()) != PGRES_TUPLES_OK)
    return "sum: " + std::string(PQerrorMessage(c));
  if (value(sum, 0, 0) != std::to_string(want) || value(sum, 0, 1) != "20") {
    return "sum: got " + value(sum, 0, 0) + ", want " + std::to_string(want);
  }
  Result commit(PQexec(c, "COMMIT"));
  if (!commit || PQresultStatus(commit.get()) != PGRES_COMMAND_OK) return "COMMIT failed";
  return {};
}

TEST_F(PgPeer, QueriesFromGoroutines) {
  ProcsScope procs(kProcs);
  const int n = static_cast<int>(goro_test::live_cap(scaled(200)));
  const int rounds = static_cast<int>(std::max<std::int64_t>(2, scaled(20)));
  Failures failures;
  std::atomic<int> done{0};
  const int threads0 = goro::num_threads();
  const auto parks0 = hook_parks();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; i++) {
    goro::go([&, i] {
      std::string err;
      Conn c = connect(&err);
      if (c) err = run_queries(c.get(), i + 1, rounds);
      if (!err.empty()) failures.add("goroutine " + std::to_string(i) + ": " + err);
      done.fetch_add(1);
    });
  }
  int max_threads = threads0;
  goro_test::wait_or_die(
      [&] {
        max_threads = std::max(max_threads, goro::num_threads());
        return done.load() == n;
      },
      200, "QueriesFromGoroutines goroutines finishing");
  const double secs = goro_test::seconds_since(t0);
  EXPECT_EQ(failures.count(), 0) << "first failure: " << failures.first();
  EXPECT_LE(max_threads, kProcs + kThreadSlack)
      << "OS threads peaked at " << max_threads << " (before: " << threads0 << ")";
  std::printf(
      "[ libpq    ] %d goroutines x %d queries (GOMAXPROCS=%d): %.2f s, %llu hook parks, "
      "OS threads at most %d (before %d)\n",
      n, 2 * rounds + 24, kProcs, secs, static_cast<unsigned long long>(hook_parks() - parks0),
      max_threads, threads0);
}

TEST_F(PgPeer, BlockedQueriesPark) {
  ProcsScope procs(kProcs);
  const int n = static_cast<int>(goro_test::live_cap(scaled(200)));
  std::string err;
  Conn main_conn = connect(&err);  // main is a plain thread: libc's blocking calls
  ASSERT_TRUE(main_conn) << err;
  ASSERT_TRUE(exec(main_conn.get(), "SELECT pg_advisory_lock($1::bigint)",
                   {std::to_string(kLockKey)}, PGRES_TUPLES_OK, &err))
      << err;

  Failures failures;
  std::atomic<int> done{0};
  for (int i = 0; i < n; i++) {
    goro::go([&, i] {
      std::string err;
      Conn c = connect(&err);
      if (c) {
        // Blocks in the server until main releases its lock.
        Result r = exec(c.get(), "SELECT pg_advisory_lock_shared($1::bigint), $2::int + 1",
                        {std::to_string(kLockKey), std::to_string(i)}, PGRES_TUPLES_OK, &err);
        if (r && value(r, 0, 1) != std::to_string(i + 1)) err = "wrong result";
      }
      if (!err.empty()) failures.add("goroutine " + std::to_string(i) + ": " + err);
      done.fetch_add(1);
    });
  }
  long waiting = 0;
  int max_threads = goro::num_threads();
  bool all_waiting = goro_test::wait_until(
      [&] {
        max_threads = std::max(max_threads, goro::num_threads());
        std::string e;
        Result r = exec(main_conn.get(),
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                        {}, PGRES_TUPLES_OK, &e);
        waiting = r ? std::strtol(PQgetvalue(r.get(), 0, 0), nullptr, 10) : -1;
        return waiting == n || failures.count() > 0;
      },
      120);
  EXPECT_TRUE(all_waiting && waiting == n)
      << "PostgreSQL saw " << waiting << " of " << n << " goroutines waiting at once: "
      << "goroutines blocked in poll() hold their OS threads (are the libc hooks active?); "
      << "first failure: " << failures.first();
  ASSERT_TRUE(exec(main_conn.get(), "SELECT pg_advisory_unlock($1::bigint)",
                   {std::to_string(kLockKey)}, PGRES_TUPLES_OK, &err))
      << err;
  goro_test::wait_or_die(
      [&] {
        max_threads = std::max(max_threads, goro::num_threads());
        return done.load() == n;
      },
      120, "BlockedQueriesPark goroutines finishing");
  EXPECT_EQ(failures.count(), 0) << "first failure: " << failures.first();
  EXPECT_LE(max_threads, kProcs + kThreadSlack) << "OS threads peaked at " << max_threads;
  std::printf(
      "[ libpq    ] %d goroutines waiting on a lock in PostgreSQL at once; OS threads at "
      "most %d\n",
      n, max_threads);
}

}  // namespace
