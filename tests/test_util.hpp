// test_util.hpp - small helpers shared by goro's tests: workload scaling, polling, a
// subprocess runner (for crash cases), and a few /proc readers.
//
// GORO_TEST_SCALE (a float, default 1.0) scales every heavy count in the suite: sanitizer
// builds run with 0.05-0.1. scaled(n) is max(1, n * scale).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace goro_test {

inline double test_scale() {
  static const double s = [] {
    const char* e = std::getenv("GORO_TEST_SCALE");
    if (e == nullptr || *e == 0) return 1.0;
    char* end = nullptr;
    double v = std::strtod(e, &end);
    if (end == e || !(v > 0) || !std::isfinite(v)) return 1.0;
    return v;
  }();
  return s;
}

// max(1, n * GORO_TEST_SCALE).
inline std::int64_t scaled(std::int64_t n) {
  double v = static_cast<double>(n) * test_scale();
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(v));
}

inline int sys_gettid() {
  return static_cast<int>(::syscall(SYS_gettid));
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Polls pred every millisecond until it holds or timeout_s passes. Returns its last value.
template <class Pred>
bool wait_until(Pred&& pred, double timeout_s = 5.0) {
  auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    if (pred()) return true;
    if (seconds_since(t0) > timeout_s) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Waits for a condition that goroutines make true, with a deadline. If it does not hold by
// then (a lost wake-up or a deadlock in the runtime), reports `what` and aborts the process:
// goroutines still referencing the caller's stack must not outlive the test body.
template <class Pred>
void wait_or_die(Pred&& pred, double timeout_s, const std::string& what) {
  if (wait_until(pred, timeout_s)) return;
  std::fprintf(stderr, "\nTIMEOUT after %.0f s: %s\n", timeout_s, what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Whether this is a sanitizer build (the library's CMake defines these for all targets).
#if defined(GORO_ASAN) || defined(GORO_TSAN) || defined(__SANITIZE_ADDRESS__) || \
    defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif

#if defined(GORO_ASAN) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsanBuild = true;
#else
inline constexpr bool kAsanBuild = false;
#endif

#if defined(GORO_TSAN) || defined(__SANITIZE_THREAD__)
inline constexpr bool kTsanBuild = true;
#else
inline constexpr bool kTsanBuild = false;
#endif

// Scheduler-chaos builds randomize run-queue order (tests that check an order skip there).
#if defined(GORO_CHAOS)
inline constexpr bool kChaosBuild = true;
#else
inline constexpr bool kChaosBuild = false;
#endif

// ThreadSanitizer counts every live goroutine (a TSan fiber) against its limit of 8128
// threads and dies beyond it, so under TSan a test may keep at most this many alive at once.
inline constexpr std::int64_t kTsanMaxLive = 4000;

// n, capped to what may be alive at once in this build.
inline std::int64_t live_cap(std::int64_t n) {
  return kTsanBuild ? std::min(n, kTsanMaxLive) : n;
}

// A field of /proc/self/status in kB (VmRSS, VmSize, ...), or -1.
inline long proc_status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  std::size_t n = std::strlen(field);
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') {
      return std::strtol(line.c_str() + n + 1, nullptr, 10);
    }
  }
  return -1;
}

// Counts non-overlapping occurrences of needle in hay.
inline int count_occurrences(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (std::size_t pos = hay.find(needle); pos != std::string::npos;
       pos = hay.find(needle, pos + needle.size())) {
    n++;
  }
  return n;
}

inline bool regex_search(const std::string& s, const std::string& re) {
  return std::regex_search(s, std::regex(re));
}

// The result of a subprocess: how it ended and what it wrote.
struct ProcResult {
  bool started = false;
  bool exited = false;  // exited normally with exit_code
  int exit_code = -1;
  int term_signal = 0;  // killed by this signal (0 if it exited)
  bool timed_out = false;
  std::string out, err;

  std::string describe() const {
    std::string s = exited ? "exit code " + std::to_string(exit_code)
                           : "signal " + std::to_string(term_signal) + " (" +
                                 (term_signal != 0 ? strsignal(term_signal) : "?") + ")";
    if (timed_out) s += " [timed out]";
    return s + "\n--- stdout ---\n" + out + "\n--- stderr ---\n" + err + "\n---";
  }
};

// An environment change: name=value, or name removed when value is nullopt.
using EnvChange = std::pair<std::string, std::optional<std::string>>;

// Runs argv (argv[0] a path) with the current environment changed by env, captures stdout and
// stderr and waits for it, killing it after timeout_s. posix_spawn is safe to call from a
// multithreaded process (and from a goroutine).
inline ProcResult run_process(const std::vector<std::string>& argv,
                              const std::vector<EnvChange>& env = {}, double timeout_s = 120) {
  ProcResult r;
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; e++) {
    std::string kv = *e;
    std::string name = kv.substr(0, kv.find('='));
    bool changed = false;
    for (const auto& c : env) changed = changed || c.first == name;
    if (!changed) envs.push_back(kv);
  }
  for (const auto& c : env) {
    if (c.second) envs.push_back(c.first + "=" + *c.second);
  }
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : envs) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  int outp[2], errp[2];
  if (::pipe2(outp, O_CLOEXEC) != 0) return r;
  if (::pipe2(errp, O_CLOEXEC) != 0) {
    ::close(outp[0]);
    ::close(outp[1]);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(outp[1]);
  ::close(errp[1]);
  if (rc != 0) {
    ::close(outp[0]);
    ::close(errp[0]);
    r.err = std::string("posix_spawn failed: ") + std::strerror(rc);
    return r;
  }
  r.started = true;
  auto t0 = std::chrono::steady_clock::now();
  pollfd fds[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
  std::string* bufs[2] = {&r.out, &r.err};
  int open_fds = 2;
  while (open_fds > 0) {
    double left = timeout_s - seconds_since(t0);
    if (left <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(std::min(left, 1.0) * 1000) + 1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t k = ::read(fds[i].fd, buf, sizeof(buf));
      if (k > 0) {
        bufs[i]->append(buf, static_cast<std::size_t>(k));
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    r.exited = true;
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.term_signal = WTERMSIG(status);
  }
  return r;
}

#if defined(GORO_TESTPROG)
// Runs the crash-case program (tests/testprog) with argv[1] = test_case.
inline ProcResult run_testprog(const std::string& test_case, const std::vector<EnvChange>& env = {},
                               double timeout_s = 120) {
  return run_process({GORO_TESTPROG, test_case}, env, timeout_s);
}
#endif

// The default GOMAXPROCS computed independently of the runtime: the affinity mask's CPU count
// capped by the cgroup v2 cpu.max quota (rounded up) of this process's cgroup and its ancestors.
inline int expected_default_procs(int ncpu) {
  std::ifstream cg("/proc/self/cgroup");
  std::string line, path;
  bool found = false;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) {
      path = line.substr(3);
      found = true;
      break;
    }
  }
  int n = ncpu;
  if (!found) return n;
  for (;;) {
    std::ifstream f("/sys/fs/cgroup" + (path == "/" ? std::string() : path) + "/cpu.max");
    std::string quota;
    long long period = 0;
    if (f >> quota >> period && quota != "max" && period > 0) {
      long long q = std::atoll(quota.c_str());
      if (q > 0) n = std::min<long long>(n, (q + period - 1) / period);
    }
    if (path.empty() || path == "/") break;
    auto slash = path.rfind('/');
    path = slash == 0 ? "/" : path.substr(0, slash);
  }
  return std::max(n, 1);
}

}  // namespace goro_test
