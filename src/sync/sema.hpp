// sema.hpp - the runtime semaphore under Mutex, WaitGroup and the rest of package sync.
#pragma once

#include <cstdint>

#include "goro/sync.hpp"
#include "sched/proc.hpp"

namespace goro::internal {

// Waits until s->count > 0, then decrements it (Go's semacquire). Parks a goroutine, blocks a
// plain thread. With lifo, the waiter queues at the front (a Mutex waiter that already waited).
void semacquire(Sema* s, bool lifo, WaitReason reason) noexcept;

// Adds n to s->count and readies up to n waiters (Go's semrelease). With handoff (n == 1), the
// count goes directly to the first waiter and the caller yields to it (a starving Mutex).
void semrelease(Sema* s, bool handoff, std::uint32_t n = 1) noexcept;

}  // namespace goro::internal
