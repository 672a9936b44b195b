// servers.hpp - starting and stopping real third-party servers (redis-server, PostgreSQL) on
// loopback, and running wrk, for the peer tests (tests/peer_*_test.cpp) and the peer benchmarks
// (bench/common/redis_bench.hpp, httplib_bench.hpp). Nothing here touches goro: it runs on
// plain threads, before and after the goroutines that talk to the servers.
//
//   goro_test::RedisServer redis;
//   if (!redis.start(&err)) ...           // redis-server --port <free port> on 127.0.0.1
//   redisConnect("127.0.0.1", redis.port());
//   redis.stop();                          // SIGTERM to its PID, SIGKILL after a grace period
//
//   goro_test::PostgresServer pg;          // initdb into a temporary directory, then postgres
//   pg.start(&err);                        // (as the `postgres` user when run as root)
//   PQconnectdb(pg.conninfo().c_str());    // host=127.0.0.1 port=<free port> user=postgres
//   pg.stop();                             // SIGINT (fast shutdown) to its PID
//
//   goro_test::WrkResult r = goro_test::run_wrk(url, conns, threads, seconds);  // --latency
//
// How a server is run (ServerProcess):
//  1. fork(); the child, which calls only async-signal-safe functions (raw syscalls, no libc
//     wrapper that goro's hooks could see), puts itself in its own process group, redirects
//     stdin to /dev/null and stdout+stderr to a log file, drops to another user if asked
//     (PostgreSQL refuses to run as root), sets PR_SET_PDEATHSIG=SIGKILL (a test that crashes
//     takes its servers with it; the signal follows the forking *thread*, so start servers from
//     the main thread or one that outlives them) and execs the server.
//  2. Readiness: the caller polls for a line in the log ("Ready to accept connections") and a
//     TCP connect to the port, with a timeout; a server that exited early is reported with its
//     log's tail.
//  3. stop(): kill(pid, SIGTERM) (or the given signal), waitpid with a timeout, then SIGKILL to
//     its process group. The destructor stops a server that is still running.
// Ports come from binding 127.0.0.1:0 and closing (free_tcp_port); the tiny window in which
// another process could take the port is covered by retrying the start on a new port.
//
// Everything returns false with a message in *err rather than throwing or asserting, so that a
// test decides between GTEST_SKIP (the server's binary is missing) and a failure.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace goro_test {

// The full path of an executable: each directory of $PATH, then each directory in `extra`
// and each <extra>/<subdirectory>/bin, newest version first (/usr/lib/postgresql/15/bin
// before .../13/bin). Empty if none.
inline std::string find_program(const std::string& name,
                                const std::vector<std::string>& extra = {}) {
  auto is_exec = [](const std::string& p) { return ::access(p.c_str(), X_OK) == 0; };
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      if (!dir.empty() && is_exec(dir + "/" + name)) return dir + "/" + name;
    }
  }
  for (const auto& root : extra) {
    std::error_code ec;
    if (is_exec(root + "/" + name)) return root + "/" + name;
    std::vector<std::string> subs;
    for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
      subs.push_back(e.path().string());
    }
    std::sort(subs.rbegin(), subs.rend());  // "15" before "13": the newest version
    for (const auto& s : subs) {
      if (is_exec(s + "/bin/" + name)) return s + "/bin/" + name;
    }
  }
  return {};
}

// Raises RLIMIT_NOFILE's soft limit to `want` (or to the hard limit, if lower). Returns the
// new soft limit.
inline long raise_fd_limit(long want) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  rlim_t target = static_cast<rlim_t>(want);
  if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) target = rl.rlim_max;
  if (target > rl.rlim_cur) {
    rl.rlim_cur = target;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  return static_cast<long>(rl.rlim_cur);
}

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close), or -1.
inline int free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// Whether something accepts TCP connections on 127.0.0.1:port (a blocking connect, which
// loopback answers at once).
inline bool tcp_port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

// The whole content of a file ("" if it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The last `lines` lines of s.
inline std::string tail_lines(const std::string& s, int lines) {
  std::size_t pos = s.size();
  while (lines-- > 0 && pos > 0) {
    pos = s.rfind('\n', pos - 1);
    if (pos == std::string::npos) return s;
  }
  return s.substr(pos == 0 ? 0 : pos + 1);
}

// A user to run a server as: its uid, gid and supplementary groups, looked up before fork().
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
};

// The user `name` (nullopt if there is none).
inline std::optional<RunAs> lookup_user(const char* name) {
  passwd* pw = ::getpwnam(name);
  if (pw == nullptr) return std::nullopt;
  RunAs r;
  r.uid = pw->pw_uid;
  r.gid = pw->pw_gid;
  int n = 64;
  r.groups.resize(static_cast<std::size_t>(n));
  while (::getgrouplist(name, pw->pw_gid, r.groups.data(), &n) < 0) {
    r.groups.resize(static_cast<std::size_t>(n));
  }
  r.groups.resize(static_cast<std::size_t>(n));
  return r;
}

// A temporary directory (mkdtemp under $TMPDIR or /tmp), removed with its content by the
// destructor. chown()s it when a RunAs is given.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix, const std::optional<RunAs>& owner = std::nullopt) {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/" + prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
      if (owner && ::chown(path_.c_str(), owner->uid, owner->gid) != 0) path_.clear();
    }
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A server process (see "How a server is run" above).
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { stop(); }

  // Starts argv (argv[0] a full path) with stdout and stderr appended to log_path, in cwd
  // (empty: this process's), as `as` if given. Returns false with *err set if it could not be
  // started (the exec itself failing shows up as an early exit: see exited()).
  bool start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::optional<RunAs>& as = std::nullopt, const std::string& cwd = {},
             std::string* err = nullptr) {
    stop();
    log_path_ = log_path;
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    int logfd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nullfd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0) {
      if (err) *err = "cannot open " + log_path + ": " + std::strerror(errno);
      if (logfd >= 0) ::close(logfd);
      if (nullfd >= 0) ::close(nullfd);
      return false;
    }
    if (as && ::fchown(logfd, as->uid, as->gid) != 0) {
      // Not fatal: the server writes through the inherited descriptor anyway.
    }
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // The child: async-signal-safe calls only, through raw syscalls (goro's libc hooks are
      // off in a child, but no wrapper is needed here anyway).
      ::syscall(SYS_setpgid, 0, 0);
      ::syscall(SYS_dup2, nullfd, 0);
      ::syscall(SYS_dup2, logfd, 1);
      ::syscall(SYS_dup2, logfd, 2);
      if (as) {
        if (::syscall(SYS_setgroups, as->groups.size(), as->groups.data()) != 0 ||
            ::syscall(SYS_setresgid, as->gid, as->gid, as->gid) != 0 ||
            ::syscall(SYS_setresuid, as->uid, as->uid, as->uid) != 0) {
          static const char msg[] = "servers.hpp: cannot change user\n";
          ::syscall(SYS_write, 2, msg, sizeof(msg) - 1);
          ::syscall(SYS_exit_group, 126);
        }
      }
      // After the credential change, which clears it.
      ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
      if (static_cast<pid_t>(::syscall(SYS_getppid)) != parent) ::syscall(SYS_exit_group, 125);
      if (!cwd.empty() && ::syscall(SYS_chdir, cwd.c_str()) != 0) ::syscall(SYS_exit_group, 124);
      ::syscall(SYS_execve, cargv[0], cargv.data(), environ);
      static const char msg[] = "servers.hpp: exec failed\n";
      ::syscall(SYS_write, 2, msg, sizeof(msg) - 1);
      ::syscall(SYS_exit_group, 127);
    }
    int fork_errno = errno;
    ::close(logfd);
    ::close(nullfd);
    if (pid < 0) {
      if (err) *err = std::string("fork: ") + std::strerror(fork_errno);
      return false;
    }
    pid_ = pid;
    status_.reset();
    return true;
  }

  pid_t pid() const { return pid_; }

  // Whether the process has ended (reaps it; its wait status is then in status()).
  bool exited() {
    if (pid_ <= 0) return true;
    if (status_) return true;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      status_ = r == pid_ ? st : 0;
      return true;
    }
    return false;
  }
  std::optional<int> status() const { return status_; }

  // "exit code N" / "signal N" of an ended process.
  std::string describe_exit() const {
    if (!status_) return "running";
    if (WIFEXITED(*status_)) return "exit code " + std::to_string(WEXITSTATUS(*status_));
    if (WIFSIGNALED(*status_)) return "signal " + std::to_string(WTERMSIG(*status_));
    return "status " + std::to_string(*status_);
  }

  // Waits up to timeout_s for the process to end. Returns whether it did.
  bool wait_exit(double timeout_s) {
    auto t0 = std::chrono::steady_clock::now();
    while (!exited()) {
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >
          timeout_s) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  // Stops the server: `sig` to its PID, then SIGKILL to its process group if it has not ended
  // after grace_s. Returns false if it had to be killed. A no-op if it is not running.
  bool stop(int sig = SIGTERM, double grace_s = 10) {
    if (pid_ <= 0 || exited()) {
      pid_ = -1;
      return true;
    }
    ::kill(pid_, sig);
    bool clean = wait_exit(grace_s);
    if (!clean) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      wait_exit(30);
    }
    pid_ = -1;
    return clean;
  }

  const std::string& log_path() const { return log_path_; }
  std::string log() const { return read_file(log_path_); }

  // Waits until the log contains `line` and 127.0.0.1:port accepts connections (port < 0: no
  // port check), the process ends (false), or timeout_s passes (false). *err says which.
  bool wait_ready(const std::string& line, int port, double timeout_s, std::string* err) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      if (log().find(line) != std::string::npos && (port < 0 || tcp_port_open(port))) {
        return true;
      }
      if (exited()) {
        if (err) {
          *err = "server exited (" + describe_exit() + ") before it was ready; log " + log_path_ +
                 ":\n" + tail_lines(log(), 15);
        }
        return false;
      }
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >
          timeout_s) {
        if (err) {
          *err = "server not ready after " + std::to_string(timeout_s) + " s; log " + log_path_ +
                 ":\n" + tail_lines(log(), 15);
        }
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// Runs argv to completion (as `as`), output appended to log_path. Returns its wait status, or
// -1 if it could not be started or ran past timeout_s (then it is killed).
inline int run_to_completion(const std::vector<std::string>& argv, const std::string& log_path,
                             const std::optional<RunAs>& as, const std::string& cwd,
                             double timeout_s, std::string* err) {
  ServerProcess p;
  if (!p.start(argv, log_path, as, cwd, err)) return -1;
  if (!p.wait_exit(timeout_s)) {
    if (err) *err = argv[0] + " ran past " + std::to_string(timeout_s) + " s";
    p.stop(SIGKILL, 5);
    return -1;
  }
  return *p.status();
}

// ---- redis-server -----------------------------------------------------------------------------

// A redis-server on 127.0.0.1:<free port>, no persistence, in a temporary directory.
class RedisServer {
 public:
  static std::string binary() { return find_program("redis-server"); }

  // max_clients: redis's maxclients (it raises its own fd limit to fit, within the hard limit).
  bool start(std::string* err, int max_clients = 11000) {
    std::string bin = binary();
    if (bin.empty()) {
      if (err) *err = "redis-server not found in PATH";
      return false;
    }
    if (!dir_.ok()) {
      if (err) *err = "cannot create a temporary directory";
      return false;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
      port_ = free_tcp_port();
      // clang-format off
      std::vector<std::string> argv = {bin,
          "--port", std::to_string(port_),
          "--bind", "127.0.0.1",
          "--save", "",
          "--appendonly", "no",
          "--daemonize", "no",
          "--dir", dir_.path(),
          "--maxclients", std::to_string(max_clients),
          "--tcp-backlog", "4096"};
      // clang-format on
      if (!proc_.start(argv, dir_.path() + "/redis.log", std::nullopt, dir_.path(), err)) {
        return false;
      }
      if (proc_.wait_ready("Ready to accept connections", port_, 30, err)) return true;
      bool in_use = proc_.log().find("Address already in use") != std::string::npos;
      proc_.stop(SIGKILL, 5);
      if (!in_use) return false;
    }
    return false;
  }
  void stop() { proc_.stop(SIGTERM, 10); }
  int port() const { return port_; }
  pid_t pid() const { return proc_.pid(); }
  std::string log() const { return proc_.log(); }

 private:
  TempDir dir_{"goro-redis"};
  ServerProcess proc_;
  int port_ = -1;
};

// ---- PostgreSQL -------------------------------------------------------------------------------

// A PostgreSQL cluster made by initdb in a temporary directory and a postgres server on
// 127.0.0.1:<free port> with its unix socket in that directory; trust authentication, user
// "postgres", database "postgres", durability off (fsync, synchronous_commit). As root, both
// run as the `postgres` user (PostgreSQL refuses root).
class PostgresServer {
 public:
  static std::vector<std::string> search_dirs() { return {"/usr/lib/postgresql"}; }
  static std::string postgres_binary() { return find_program("postgres", search_dirs()); }
  static std::string initdb_binary() {
    std::string pg = postgres_binary();
    if (!pg.empty()) {  // initdb of the same version as the server
      std::string sib = pg.substr(0, pg.rfind('/') + 1) + "initdb";
      if (::access(sib.c_str(), X_OK) == 0) return sib;
    }
    return find_program("initdb", search_dirs());
  }

  bool start(std::string* err, int max_connections = 300) {
    std::string pg = postgres_binary(), initdb = initdb_binary();
    if (pg.empty() || initdb.empty()) {
      if (err) *err = "postgres/initdb not found (PATH, /usr/lib/postgresql/*/bin)";
      return false;
    }
    if (::geteuid() == 0) {
      as_ = lookup_user("postgres");
      if (!as_) {
        if (err) *err = "running as root and there is no `postgres` user to run the server as";
        return false;
      }
    }
    dir_.emplace("goro-pg", as_);
    if (!dir_->ok()) {
      if (err) *err = "cannot create a temporary directory";
      return false;
    }
    std::string data = dir_->path() + "/data";
    std::string log = dir_->path() + "/postgres.log";
    int st = run_to_completion({initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                "--locale=C", "--no-sync", "--no-instructions"},
                               dir_->path() + "/initdb.log", as_, dir_->path(), 120, err);
    if (st != 0) {
      if (err && st != -1) {
        *err = "initdb failed (status " + std::to_string(st) + "):\n" +
               tail_lines(read_file(dir_->path() + "/initdb.log"), 15);
      }
      return false;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
      port_ = free_tcp_port();
      // clang-format off
      std::vector<std::string> argv = {pg,
          "-D", data,
          "-p", std::to_string(port_),
          "-k", dir_->path(),
          "-c", "listen_addresses=127.0.0.1",
          "-c", "max_connections=" + std::to_string(max_connections),
          "-c", "shared_buffers=32MB",
          "-c", "fsync=off",
          "-c", "synchronous_commit=off",
          "-c", "full_page_writes=off",
          "-c", "logging_collector=off"};
      // clang-format on
      if (!proc_.start(argv, log, as_, dir_->path(), err)) return false;
      if (proc_.wait_ready("database system is ready to accept connections", port_, 60, err)) {
        return true;
      }
      bool in_use = proc_.log().find("already in use") != std::string::npos;
      proc_.stop(SIGKILL, 5);
      if (!in_use) return false;
    }
    return false;
  }

  // Fast shutdown (SIGINT: clients are disconnected, the server exits at once).
  void stop() { proc_.stop(SIGINT, 20); }
  int port() const { return port_; }
  pid_t pid() const { return proc_.pid(); }
  std::string log() const { return proc_.log(); }
  // A libpq connection string for the TCP port.
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port_) +
           " user=postgres dbname=postgres connect_timeout=30";
  }

 private:
  std::optional<RunAs> as_;
  std::optional<TempDir> dir_;
  ServerProcess proc_;
  int port_ = -1;
};

// ---- wrk (the HTTP load generator) -----------------------------------------------------------

// What `wrk --latency` reported (-1 where a line was missing).
struct WrkResult {
  bool ran = false;       // wrk started and exited with status 0
  std::string output;     // its stdout and stderr, for messages
  long requests = -1;     // "N requests in 2.00s"
  double seconds = -1;    // the "in 2.00s" part
  double req_per_s = -1;  // "Requests/sec:"
  double p50_us = -1, p75_us = -1, p90_us = -1, p99_us = -1;  // "Latency Distribution"
  long non_2xx = 0;  // "Non-2xx or 3xx responses: N" (absent: 0)
  long err_connect = 0, err_read = 0, err_write = 0, err_timeout = 0;  // "Socket errors: ..."
  long socket_errors() const { return err_connect + err_read + err_write + err_timeout; }
};

inline std::string wrk_binary() {
  return find_program("wrk");
}

// "1.23ms" / "456.00us" / "2.01s" in microseconds, or -1.
inline double wrk_duration_us(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str()) return -1;
  std::string unit(end);
  if (unit == "us") return v;
  if (unit == "ms") return v * 1e3;
  if (unit == "s") return v * 1e6;
  if (unit == "m") return v * 60e6;
  return -1;
}

// Parses wrk's --latency report.
inline WrkResult parse_wrk(const std::string& out) {
  WrkResult r;
  r.output = out;
  std::istringstream in(out);
  std::string line;
  bool in_dist = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string first;
    ls >> first;
    if (first == "Latency" && line.find("Distribution") != std::string::npos) {
      in_dist = true;
      continue;
    }
    if (in_dist && !first.empty() && first.back() == '%') {
      std::string val;
      ls >> val;
      double us = wrk_duration_us(val);
      if (first == "50%") r.p50_us = us;
      if (first == "75%") r.p75_us = us;
      if (first == "90%") r.p90_us = us;
      if (first == "99%") r.p99_us = us;
      continue;
    }
    in_dist = false;
    long n = 0;
    double secs = 0;
    char unit = 0;
    if (std::sscanf(line.c_str(), " %ld requests in %lf%c", &n, &secs, &unit) == 3) {
      r.requests = n;
      r.seconds = unit == 'm' ? secs * 60 : secs;
    } else if (first == "Requests/sec:") {
      ls >> r.req_per_s;
    } else if (line.find("Non-2xx or 3xx responses:") != std::string::npos) {
      r.non_2xx = std::strtol(line.c_str() + line.find(':') + 1, nullptr, 10);
    } else if (first == "Socket") {
      std::sscanf(line.c_str(), " Socket errors: connect %ld, read %ld, write %ld, timeout %ld",
                  &r.err_connect, &r.err_read, &r.err_write, &r.err_timeout);
    }
  }
  return r;
}

// Runs `wrk -t threads -c conns -d seconds --timeout 10s --latency url` to completion (from a
// plain thread: it is a child process whose output this process reads).
inline WrkResult run_wrk(const std::string& url, int conns, int threads, int seconds,
                         const std::vector<std::string>& extra = {}) {
  // clang-format off
  std::vector<std::string> argv = {wrk_binary(),
      "-t", std::to_string(threads),
      "-c", std::to_string(conns),
      "-d", std::to_string(seconds) + "s",
      "--timeout", "10s",
      "--latency"};
  // clang-format on
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  ProcResult p = run_process(argv, {}, seconds + 120.0);
  WrkResult r = parse_wrk(p.out + p.err);
  r.ran = p.exited && p.exit_code == 0;
  if (!r.ran) r.output = p.describe();
  return r;
}

}  // namespace goro_test
