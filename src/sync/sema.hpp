// sema.hpp - the runtime semaphore under Mutex, WaitGroup and the rest of package sync.
#pragma once

#include <atomic>
#include <cstdint>

#include "sched/proc.hpp"

namespace goro::internal {

// Waits until *addr > 0, then decrements it (Go's semacquire). Parks a goroutine, blocks a
// plain thread. With lifo, the waiter queues at the front (a Mutex waiter that already
// waited once). Returns nanotime() at which it was readied, or 0 if it never parked.
void semacquire(std::atomic<std::uint32_t>* addr, bool lifo, WaitReason reason) noexcept;

// Increments *addr and readies one waiter, if any (Go's semrelease). With handoff, the count
// is passed directly to the first waiter and the caller yields to it (starving Mutex).
void semrelease(std::atomic<std::uint32_t>* addr, bool handoff) noexcept;

}  // namespace goro::internal
