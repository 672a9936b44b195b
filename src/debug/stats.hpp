// stats.hpp - internals shared by the observability files: stats.cpp (goro::stats()),
// schedtrace.cpp (GORO_SCHEDTRACE, the start-up hook) and http.cpp (goro::debug::serve).
// The hooks the scheduler calls (stats_init, stats_note_blocking_thread) are declared in
// sched/proc.hpp. Internal to the goro library.
#pragma once

#include <cstdint>
#include <string>

#include "goro/stats.hpp"

namespace goro::internal {

// nanotime() when the runtime started (stats_init); 0 before.
std::int64_t runtime_start_ns() noexcept;

// One GORO_SCHEDTRACE report, as text: the SCHED line, and with detail the P, M and G lines
// (format in goro/stats.hpp). Reads the scheduler without locks (racy reads, like sysmon).
// Allocates; never parks.
std::string schedtrace_text(bool detail);

// "function file:line" for a code address recorded by the runtime (a go() or blocking()
// return address), skipping the frames of goro's own headers and internals, so the result
// names the user's call. Cached per address. Thread-safe; allocates; the first call loads
// debug information.
std::string describe_call_site(const void* pc);

// Prometheus-style snake_case name of a state ("chan_receive").
const char* state_label(GoroutineState s) noexcept;

// GORO_DEBUG_ADDR: starts a debug server on addr for the process lifetime, reporting a
// failure on stderr (http.cpp). Called on a plain helper thread.
void serve_from_env(const char* addr) noexcept;

}  // namespace goro::internal
