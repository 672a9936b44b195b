// goro/goro.hpp - the whole public API of goro, a Go-style M:N goroutine runtime for C++20.
#pragma once

#include "goro/blocking.hpp"   // IWYU pragma: export
#include "goro/chan.hpp"       // IWYU pragma: export
#include "goro/cond.hpp"       // IWYU pragma: export
#include "goro/context.hpp"    // IWYU pragma: export
#include "goro/debug.hpp"      // IWYU pragma: export
#include "goro/go.hpp"         // IWYU pragma: export
#include "goro/group.hpp"      // IWYU pragma: export
#include "goro/net.hpp"        // IWYU pragma: export
#include "goro/preempt.hpp"    // IWYU pragma: export
#include "goro/runtime.hpp"    // IWYU pragma: export
#include "goro/rwmutex.hpp"    // IWYU pragma: export
#include "goro/select.hpp"     // IWYU pragma: export
#include "goro/semaphore.hpp"  // IWYU pragma: export
#include "goro/stats.hpp"      // IWYU pragma: export
#include "goro/sync.hpp"       // IWYU pragma: export
#include "goro/time.hpp"       // IWYU pragma: export
