// platform.hpp - the one place that knows about Linux and the CPU: clocks, CPU counts,
// cgroup quotas, thread ids and counts, page size, a per-thread cheap random source.
#pragma once

#include <cstddef>
#include <cstdint>

namespace goro::internal {

// Monotonic time in nanoseconds (CLOCK_MONOTONIC through the vDSO: no system call).
std::int64_t nanotime() noexcept;

inline void cpu_relax() noexcept {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// CPUs in this process's affinity mask at start-up (cached).
int num_cpu() noexcept;

// The default GOMAXPROCS: num_cpu() capped by the cgroup v2 cpu.max quota of this process's
// cgroup and its ancestors (quota/period rounded up), at least 1.
int default_procs() noexcept;

// Threads of this process per /proc/self/task, or -1.
int count_threads() noexcept;

// The calling thread's kernel thread id.
int gettid() noexcept;

std::size_t page_size() noexcept;

// xorshift-based per-thread random numbers (not cryptographic; for steal order and fairness).
std::uint32_t fastrand() noexcept;
inline std::uint32_t fastrandn(std::uint32_t n) noexcept {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(fastrand()) * n) >> 32);
}

}  // namespace goro::internal
