// Runtime symbolizer: maps code addresses to function / file:line using elfutils libdw
// (Dwfl), with dladdr as a fallback. Internal to the goro library (not exported).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace goro::internal {

struct SymFrame {
  std::string function;  // demangled; "??" if unknown
  std::string file;      // source file path, empty if unknown
  int line = 0;          // 0 if unknown
  bool inlined = false;  // true for a frame that was inlined into the next one
  std::uintptr_t pc = 0;
  std::string object;  // path of the ELF object (executable or .so) containing pc
};

// Symbolizes one code address. If `return_address` is true, pc is a return address and the
// lookup uses pc-1 (the call instruction). Returns the frames for pc innermost first: inlined
// frames (each inlined subroutine's call site file:line giving the location in the caller)
// followed by the containing function. Never throws (returns a single "??" frame on any
// failure). Thread-safe (internal mutex). Not async-signal-safe: it allocates.
std::vector<SymFrame> symbolize(const void* pc, bool return_address) noexcept;

// One-line form used by fatal messages and dumps: "function (file:line)" or, without line
// info, "function+0xOFF (object)" or "0xADDR (object)"; uses the outermost non-inlined
// function name but the innermost file:line. Never throws.
std::string symbolize_line(const void* pc, bool return_address) noexcept;

}  // namespace goro::internal
