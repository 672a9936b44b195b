// bench/common/bench_util.hpp - small helpers shared by the C++ benchmark programs (goro,
// Boost.Fiber and std::thread flavours): command-line flags, a monotonic clock, the
// /proc/self/status counters and the `RESULT <metric>=<value> <unit>` output lines that
// bench/compare.py parses. The Go programs under bench/peers/go mirror these by hand.
//
// Flags: `-name value`, `-name=value`, `--name value` and `--name=value` are accepted (the same
// spellings Go's flag package accepts), integer values only. An unknown flag or a malformed
// value prints usage and exits with status 2.
#pragma once

#include <time.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

struct Flag {
  const char* name;
  std::int64_t value;  // default on input, parsed value on output
  const char* help;
};

// Parses argv into `flags` (which hold the defaults). Exits(2) on error, (0) on -h/--help.
inline void parse_flags(int argc, char** argv, std::vector<Flag>& flags) {
  auto usage = [&](FILE* out) {
    std::fprintf(out, "usage: %s", argv[0]);
    for (const Flag& f : flags) std::fprintf(out, " [-%s N]", f.name);
    std::fprintf(out, "\n");
    for (const Flag& f : flags) {
      std::fprintf(out, "  -%-8s %s (default %" PRId64 ")\n", f.name, f.help, f.value);
    }
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "-help") {
      usage(stdout);
      std::exit(0);
    }
    if (arg.size() < 2 || arg[0] != '-') {
      std::fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[i]);
      usage(stderr);
      std::exit(2);
    }
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    std::string_view name = arg;
    std::string value;
    bool have_value = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = std::string(arg.substr(eq + 1));
      have_value = true;
    }
    Flag* flag = nullptr;
    for (Flag& f : flags) {
      if (name == f.name) flag = &f;
    }
    if (flag == nullptr) {
      std::fprintf(stderr, "%s: unknown flag '%s'\n", argv[0], argv[i]);
      usage(stderr);
      std::exit(2);
    }
    if (!have_value) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s: flag -%s needs a value\n", argv[0], flag->name);
        std::exit(2);
      }
      value = argv[++i];
    }
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0) {
      std::fprintf(stderr, "%s: bad value '%s' for -%s\n", argv[0], value.c_str(), flag->name);
      std::exit(2);
    }
    flag->value = v;
  }
}

inline std::int64_t flag_value(const std::vector<Flag>& flags, const char* name) {
  for (const Flag& f : flags) {
    if (std::strcmp(f.name, name) == 0) return f.value;
  }
  std::fprintf(stderr, "internal error: no flag %s\n", name);
  std::abort();
}

inline std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The counters of /proc/self/status that the benchmarks report; -1 when missing.
struct ProcStatus {
  std::int64_t rss_kib = -1;  // VmRSS
  std::int64_t pte_kib = -1;  // VmPTE (page tables)
  std::int64_t threads = -1;  // Threads
};

inline ProcStatus read_proc_status() {
  ProcStatus s;
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return s;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    long long v = 0;
    if (std::sscanf(line, "VmRSS: %lld", &v) == 1) s.rss_kib = v;
    if (std::sscanf(line, "VmPTE: %lld", &v) == 1) s.pte_kib = v;
    if (std::sscanf(line, "Threads: %lld", &v) == 1) s.threads = v;
  }
  std::fclose(f);
  return s;
}

// One result line on stdout, the format compare.py parses.
inline void result(const char* metric, double value, const char* unit) {
  std::printf("RESULT %s=%.3f %s\n", metric, value, unit);
  std::fflush(stdout);
}

// The per-task work of spawn_run: sum 0..999 without letting the compiler fold the loop into a
// closed form (Go's compiler does not fold it either: one add per iteration), then store the
// sum where it escapes.
inline std::int64_t sum_0_to_999() {
  std::int64_t s = 0;
  for (std::int64_t i = 0; i < 1000; ++i) {
    s += i;
    asm volatile("" : "+r"(s));
  }
  return s;
}
inline constexpr std::int64_t kSum0To999 = 499500;

// Where spawn_run's tasks store their sums (a relaxed store: a plain MOV, like Go's store to a
// package-level variable).
inline std::atomic<std::int64_t> g_sink{0};

}  // namespace bench
