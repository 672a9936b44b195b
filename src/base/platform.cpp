// platform.cpp - Linux specifics (see platform.hpp).
#include "base/platform.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace goro::internal {

std::int64_t nanotime() noexcept {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int num_cpu() noexcept {
  static const int n = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
      int c = CPU_COUNT(&set);
      if (c > 0) return c;
    }
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? static_cast<int>(c) : 1;
  }();
  return n;
}

namespace {

// Reads a small file into buf (NUL-terminated). Returns false if it cannot be read.
bool read_small_file(const char* path, char* buf, std::size_t len) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::read(fd, buf, len - 1);
  ::close(fd);
  if (n < 0) return false;
  buf[n] = 0;
  return true;
}

// The CPU limit of cgroup v2 directory `dir` (relative to /sys/fs/cgroup) and its ancestors,
// in CPUs rounded up, or 0 for none.
int cgroup_cpu_limit(const char* dir) {
  char path[4096];
  std::snprintf(path, sizeof(path), "%s", dir);
  int best = 0;
  for (;;) {
    char file[4200];
    std::snprintf(file, sizeof(file), "/sys/fs/cgroup%s/cpu.max", path);
    char buf[128];
    if (read_small_file(file, buf, sizeof(buf)) && std::strncmp(buf, "max", 3) != 0) {
      long long quota = 0, period = 0;
      if (std::sscanf(buf, "%lld %lld", &quota, &period) == 2 && quota > 0 && period > 0) {
        int cpus = static_cast<int>((quota + period - 1) / period);
        if (best == 0 || cpus < best) best = cpus;
      }
    }
    char* slash = std::strrchr(path, '/');
    if (slash == nullptr || (slash == path && path[1] == 0)) break;
    if (slash == path) {
      path[1] = 0;
    } else {
      *slash = 0;
    }
  }
  return best;
}

}  // namespace

int default_procs() noexcept {
  int n = num_cpu();
  char buf[4096];
  if (read_small_file("/proc/self/cgroup", buf, sizeof(buf))) {
    // cgroup v2 has a single line "0::/path".
    for (char* line = buf; line != nullptr && *line != 0;) {
      char* next = std::strchr(line, '\n');
      if (next != nullptr) *next++ = 0;
      if (std::strncmp(line, "0::", 3) == 0) {
        int lim = cgroup_cpu_limit(line + 3);
        if (lim > 0 && lim < n) n = lim;
        break;
      }
      line = next;
    }
  }
  return n < 1 ? 1 : n;
}

int count_threads() noexcept {
  // getdents64 directly: opendir would allocate, and this is called from health checks.
  int fd = ::open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  alignas(8) char buf[8192];
  int n = 0;
  for (;;) {
    long r = ::syscall(SYS_getdents64, fd, buf, sizeof(buf));
    if (r <= 0) break;
    for (long off = 0; off < r;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      if (d->d_name[0] != '.') n++;
      off += d->d_reclen;
    }
  }
  ::close(fd);
  return n;
}

int gettid() noexcept {
  return static_cast<int>(::syscall(SYS_gettid));
}

std::size_t page_size() noexcept {
  static const std::size_t n = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return n;
}

std::uint32_t fastrand() noexcept {
  // A thread's state; the thread may run many goroutines, which is fine for a random source.
  static thread_local std::uint64_t s = 0;
  if (s == 0) {
    s = static_cast<std::uint64_t>(nanotime()) ^ (static_cast<std::uint64_t>(gettid()) << 32) ^
        0x9E3779B97F4A7C15ull;
  }
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return static_cast<std::uint32_t>(s >> 32);
}

}  // namespace goro::internal
