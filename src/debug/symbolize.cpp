// Symbolizer for runtime diagnostics (fatal messages, goroutine dumps).
//
// Design:
//  * Owns one process-wide elfutils Dwfl session, created lazily on first use from
//    /proc/self/maps (dwfl_linux_proc_report) and never freed (it lives until exit). Modules'
//    ELF/DWARF data are loaded on demand by libdwfl and cached in that session. If an address
//    lies in no reported module (e.g. a library dlopen()ed after the session was built), the
//    module list is re-reported once for that lookup; unchanged modules keep their caches.
//  * Lookups: dwfl_addrmodule -> symbol (dwfl_module_addrinfo), line table
//    (dwfl_module_getsrc/dwfl_lineinfo) and the DIE scope chain (dwfl_module_addrdie +
//    dwarf_getscopes/dwarf_getscopes_die) to expand inlined subroutines, each one's
//    DW_AT_call_file/DW_AT_call_line giving the location in its caller. When a module has no
//    .debug_aranges (clang's default) the CU is found from a per-module table of CU ranges
//    (dwarf_ranges) instead. C++ names are demangled with abi::__cxa_demangle. dladdr() is the
//    fallback when libdw knows nothing. No DWARF is parsed by hand.
//  * Thread-safety: libdw/libdwfl objects are not safe for concurrent use, so every access to
//    the session (and to the Dwarf_Die values derived from it) happens under one mutex.
//  * Not async-signal-safe: it takes a mutex, calls malloc (std::string, libdw, the demangler)
//    and may open/mmap files. Signal-time crash paths must print raw addresses instead, or
//    accept the risk knowingly.
#include "debug/symbolize.hpp"

#include <cxxabi.h>
#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace goro::internal {
namespace {

std::mutex g_mu;         // guards everything below and all libdw use
Dwfl* g_dwfl = nullptr;  // lazily created; never freed
bool g_dwfl_failed = false;

char* g_debuginfo_path = nullptr;

// Local files only: libdw's standard lookup asks debuginfod servers over the network when
// DEBUGINFOD_URLS is set, and a fatal message or a dump must never wait on the network. With
// it set we use the DWARF in the object itself (goro and its users build with -g).
int find_debuginfo_local(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                         const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                         char** debuginfo_file_name) {
  const char* urls = std::getenv("DEBUGINFOD_URLS");
  if (urls != nullptr && *urls != 0) return -1;
  return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                      debuglink_crc, debuginfo_file_name);
}

const Dwfl_Callbacks g_callbacks = {
    dwfl_linux_proc_find_elf,  // find_elf
    find_debuginfo_local,      // find_debuginfo
    nullptr,                   // section_address (only for ET_REL)
    &g_debuginfo_path,         // debuginfo_path: default search path
};

// Per-module CU address table, used only when libdwfl's own address->CU lookup fails.
// libdwfl (elfutils <= 0.191) finds CUs through .debug_aranges, which clang does not emit by
// default (-gdwarf-aranges); without it dwfl_module_addrdie/getsrc report "address out of
// range". The fallback table is built once per module from the CU DIEs' own ranges
// (dwfl_module_nextcu + dwarf_ranges).
struct CuRange {
  Dwarf_Addr start;  // module (unbiased DWARF) addresses, [start, end)
  Dwarf_Addr end;
  Dwarf_Die cu;
};
struct CuTable {
  Dwarf_Addr bias = 0;
  std::vector<CuRange> ranges;  // sorted by start
};
std::unordered_map<Dwfl_Module*, CuTable> g_cu_tables;  // guarded by g_mu

int on_module_removed(Dwfl_Module* mod, void*, const char*, Dwarf_Addr, void*) {
  g_cu_tables.erase(mod);
  return DWARF_CB_OK;
}

// (Re)reports the process's mapped modules. Requires g_mu.
bool report_modules(Dwfl* dwfl) {
  dwfl_report_begin(dwfl);
  const int rc = dwfl_linux_proc_report(dwfl, getpid());
  const int end_rc = dwfl_report_end(dwfl, on_module_removed, nullptr);
  return rc == 0 && end_rc == 0;
}

// Requires g_mu.
const CuTable& cu_table(Dwfl_Module* mod) {
  auto it = g_cu_tables.find(mod);
  if (it != g_cu_tables.end()) return it->second;
  CuTable t;
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = nullptr;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias)) != nullptr) {
    t.bias = bias;
    Dwarf_Addr base = 0, start = 0, end = 0;
    std::ptrdiff_t off = 0;
    while ((off = dwarf_ranges(cu, off, &base, &start, &end)) > 0) {
      // Skip empty ranges and the tombstones linkers leave for discarded code (0, -1, -2).
      if (start == 0 || start >= end) continue;
      t.ranges.push_back(CuRange{start, end, *cu});
    }
  }
  std::sort(t.ranges.begin(), t.ranges.end(),
            [](const CuRange& a, const CuRange& b) { return a.start < b.start; });
  return g_cu_tables.emplace(mod, std::move(t)).first->second;
}

// CU DIE containing module address `addr` (a runtime address), or nullptr. The returned DIE
// stays valid while g_mu is held. Requires g_mu.
Dwarf_Die* find_cu(Dwfl_Module* mod, Dwarf_Addr addr, Dwarf_Addr* bias, bool* via_dwfl) {
  *via_dwfl = true;
  if (Dwarf_Die* cu = dwfl_module_addrdie(mod, addr, bias)) return cu;
  *via_dwfl = false;
  const CuTable& t = cu_table(mod);
  if (t.ranges.empty() || addr < t.bias) return nullptr;
  *bias = t.bias;
  const Dwarf_Addr a = addr - t.bias;
  auto it = std::upper_bound(t.ranges.begin(), t.ranges.end(), a,
                             [](Dwarf_Addr v, const CuRange& r) { return v < r.start; });
  // Ranges of different CUs should not overlap; look back a little in case they do.
  for (int n = 0; it != t.ranges.begin() && n < 4; ++n) {
    --it;
    if (a >= it->start && a < it->end) return const_cast<Dwarf_Die*>(&it->cu);
  }
  return nullptr;
}

// Requires g_mu.
Dwfl* session() {
  if (g_dwfl != nullptr || g_dwfl_failed) return g_dwfl;
  Dwfl* dwfl = dwfl_begin(&g_callbacks);
  if (dwfl == nullptr) {
    g_dwfl_failed = true;
    return nullptr;
  }
  report_modules(dwfl);  // a partial report is still useful
  g_dwfl = dwfl;
  return g_dwfl;
}

std::string demangle(const char* name) {
  if (name == nullptr || *name == '\0') return {};
  if (name[0] == '_' && name[1] == 'Z') {
    int status = 0;
    char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (out != nullptr) {
      std::string result = (status == 0) ? std::string(out) : std::string(name);
      std::free(out);
      return result;
    }
  }
  return name;
}

std::string hex(std::uintptr_t v) {
  char buf[2 + 2 * sizeof(v) + 1];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

bool is_function_scope(Dwarf_Die* die) {
  const int tag = dwarf_tag(die);
  return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine || tag == DW_TAG_entry_point;
}

// Name of a subprogram / inlined subroutine DIE, following DW_AT_abstract_origin and
// DW_AT_specification. Prefers the (demangled) linkage name, which is fully qualified.
std::string die_function_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  for (unsigned at : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name}) {
    if (dwarf_attr_integrate(die, at, &attr) != nullptr) {
      if (const char* s = dwarf_formstring(&attr)) return demangle(s);
    }
  }
  if (dwarf_attr_integrate(die, DW_AT_name, &attr) != nullptr) {
    if (const char* s = dwarf_formstring(&attr)) return s;
  }
  return {};
}

// Everything one lookup produced; SymFrame list plus what symbolize_line needs.
struct Lookup {
  std::vector<SymFrame> frames;   // innermost first; never empty on return
  std::string symbol;             // outermost function symbol name (demangled), may be empty
  std::uintptr_t sym_offset = 0;  // offset of the *given* pc from the symbol start
  bool have_symbol = false;
  std::string object;
};

// The innermost DIE with code at `addr` (a DWARF address) below `parent`: descends through
// the DIEs whose ranges contain it, and through namespaces and types (no code of their own,
// but they may hold function definitions). The fallback for dwarf_getscopes, which finds
// nothing when it cannot locate an inlined subroutine's abstract origin in the scopes it
// searches (seen with clang 14's DWARF 5 in CUs that include GoogleTest). Requires g_mu.
bool innermost_code_scope(Dwarf_Die* parent, Dwarf_Addr addr, Dwarf_Die* out, int depth) {
  Dwarf_Die child;
  if (depth > 64 || dwarf_child(parent, &child) != 0) return false;
  do {
    switch (dwarf_tag(&child)) {
      case DW_TAG_subprogram:
      case DW_TAG_inlined_subroutine:
      case DW_TAG_entry_point:
      case DW_TAG_lexical_block:
      case DW_TAG_try_block:
      case DW_TAG_catch_block:
        if (dwarf_haspc(&child, addr) == 1) {
          *out = child;
          innermost_code_scope(&child, addr, out, depth + 1);  // a deeper match replaces it
          return true;
        }
        break;
      case DW_TAG_namespace:
      case DW_TAG_class_type:
      case DW_TAG_structure_type:
      case DW_TAG_union_type:
        if (innermost_code_scope(&child, addr, out, depth + 1)) return true;
        break;
      default:
        break;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

// Expands the DWARF scope chain at `addr` (module address) into frames. Requires g_mu.
// Appends nothing if there is no usable DWARF scope for addr.
void dwarf_frames(Dwarf_Die* cudie, Dwarf_Addr bias, Dwarf_Addr addr, std::vector<SymFrame>& out) {
  struct FreeDies {
    void operator()(Dwarf_Die* p) const noexcept { std::free(p); }
  };
  Dwarf_Die* raw = nullptr;
  int nscopes = dwarf_getscopes(cudie, addr - bias, &raw);
  std::unique_ptr<Dwarf_Die, FreeDies> holder(raw);
  // dwarf_getscopes continues an inlined subroutine's chain with its abstract origin's
  // scopes; re-derive the physical containment chain from the innermost DIE instead.
  Dwarf_Die innermost;
  if (nscopes > 0) {
    innermost = raw[0];
  } else if (!innermost_code_scope(cudie, addr - bias, &innermost, 0)) {
    return;
  }
  holder.reset();
  raw = nullptr;
  nscopes = dwarf_getscopes_die(&innermost, &raw);
  holder.reset(raw);
  if (nscopes <= 0) return;
  Dwarf_Die* scopes = raw;

  Dwarf_Files* files = nullptr;
  Dwarf_Die cu;
  if (dwarf_diecu(&innermost, &cu, nullptr, nullptr) == nullptr ||
      dwarf_getsrcfiles(&cu, &files, nullptr) != 0) {
    files = nullptr;
  }

  // Location for the frame being built: starts as the line-table location (filled in by the
  // caller for the innermost frame), then becomes each inlined subroutine's call site.
  std::string file;
  int line = 0;
  bool first = true;
  for (int i = 0; i < nscopes; ++i) {
    Dwarf_Die* die = &scopes[i];
    if (!is_function_scope(die)) continue;
    SymFrame f;
    f.function = die_function_name(die);
    if (f.function.empty()) f.function = "??";
    const bool inl = dwarf_tag(die) == DW_TAG_inlined_subroutine;
    f.inlined = inl;
    if (!first) {
      f.file = file;
      f.line = line;
    }
    first = false;
    out.push_back(std::move(f));
    if (!inl) break;  // reached the containing (out-of-line) function

    // Call site of this inlined subroutine = location in the next function scope out.
    file.clear();
    line = 0;
    Dwarf_Attribute attr;
    Dwarf_Word val = 0;
    if (files != nullptr && dwarf_formudata(dwarf_attr(die, DW_AT_call_file, &attr), &val) == 0) {
      if (const char* s = dwarf_filesrc(files, val, nullptr, nullptr)) file = s;
    }
    if (dwarf_formudata(dwarf_attr(die, DW_AT_call_line, &attr), &val) == 0) {
      line = static_cast<int>(val);
    }
  }
}

// Requires g_mu.
void lookup_locked(std::uintptr_t pc, bool return_address, Lookup& r) {
  const std::uintptr_t addr = (return_address && pc != 0) ? pc - 1 : pc;
  const std::uintptr_t delta = pc - addr;  // 0 or 1: offsets are reported for the given pc

  Dwfl_Module* mod = nullptr;
  if (Dwfl* dwfl = session()) {
    mod = dwfl_addrmodule(dwfl, addr);
    Dl_info dli;
    const bool loaded = dladdr(reinterpret_cast<void*>(addr), &dli) != 0;
    // The session's module list is a snapshot of /proc/self/maps. Re-read it (once per
    // lookup) when the dynamic linker knows an address the session does not (dlopen()ed
    // since), or no longer knows one the session does (dlclose()d since).
    if ((mod == nullptr) == loaded) {
      report_modules(dwfl);
      mod = dwfl_addrmodule(dwfl, addr);
    }
  }

  if (mod != nullptr) {
    const char* modname =
        dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    if (modname != nullptr) r.object = modname;

    GElf_Off off = 0;
    GElf_Sym sym;
    if (const char* name = dwfl_module_addrinfo(mod, addr, &off, &sym, nullptr, nullptr, nullptr)) {
      r.symbol = demangle(name);
      r.sym_offset = off + delta;
      r.have_symbol = !r.symbol.empty();
    }

    std::string src_file;
    int src_line = 0;
    Dwarf_Addr bias = 0;
    bool via_dwfl = false;
    if (Dwarf_Die* cudie = find_cu(mod, addr, &bias, &via_dwfl)) {
      dwarf_frames(cudie, bias, addr, r.frames);
      int lineno = 0;
      const char* src = nullptr;
      if (via_dwfl) {
        if (Dwfl_Line* l = dwfl_module_getsrc(mod, addr)) {
          src = dwfl_lineinfo(l, nullptr, &lineno, nullptr, nullptr, nullptr);
        }
      } else if (Dwarf_Line* l = dwarf_getsrc_die(cudie, addr - bias)) {
        src = dwarf_linesrc(l, nullptr, nullptr);
        if (dwarf_lineno(l, &lineno) != 0) lineno = 0;
      }
      if (src != nullptr) {
        src_file = src;
        src_line = lineno;
      }
    }
    if (r.frames.empty()) {
      SymFrame f;
      f.function = r.have_symbol ? r.symbol : "??";
      r.frames.push_back(std::move(f));
    } else if (r.have_symbol && !r.frames.back().inlined) {
      // The symbol table name of the containing function carries clone suffixes
      // ("[clone .cold]") and parameters even where DWARF lacks a linkage name.
      r.frames.back().function = r.symbol;
    }
    r.frames.front().file = src_file;
    r.frames.front().line = src_line;
  }

  if (r.object.empty() || !r.have_symbol) {
    Dl_info dli;
    std::memset(&dli, 0, sizeof dli);
    if (dladdr(reinterpret_cast<void*>(addr), &dli) != 0) {
      if (r.object.empty() && dli.dli_fname != nullptr) r.object = dli.dli_fname;
      if (!r.have_symbol && dli.dli_sname != nullptr && dli.dli_saddr != nullptr) {
        r.symbol = demangle(dli.dli_sname);
        r.sym_offset = pc - reinterpret_cast<std::uintptr_t>(dli.dli_saddr);
        r.have_symbol = !r.symbol.empty();
      }
    }
  }

  if (r.frames.empty()) {
    SymFrame f;
    f.function = r.have_symbol ? r.symbol : "??";
    r.frames.push_back(std::move(f));
  } else if (r.frames.back().function == "??" && r.have_symbol) {
    r.frames.back().function = r.symbol;
  }
  for (SymFrame& f : r.frames) {
    f.pc = pc;
    f.object = r.object;
  }
}

std::vector<SymFrame> unknown_frame(const void* pc) noexcept {
  try {
    std::vector<SymFrame> v(1);
    v[0].function = "??";
    v[0].pc = reinterpret_cast<std::uintptr_t>(pc);
    return v;
  } catch (...) {
    return {};
  }
}

}  // namespace

std::vector<SymFrame> symbolize(const void* pc, bool return_address) noexcept {
  try {
    Lookup r;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      lookup_locked(reinterpret_cast<std::uintptr_t>(pc), return_address, r);
    }
    return std::move(r.frames);
  } catch (...) {
    return unknown_frame(pc);
  }
}

std::string symbolize_line(const void* pc, bool return_address) noexcept {
  try {
    Lookup r;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      lookup_locked(reinterpret_cast<std::uintptr_t>(pc), return_address, r);
    }
    const SymFrame& inner = r.frames.front();
    const SymFrame& outer = r.frames.back();
    const std::string obj = r.object.empty() ? std::string("??") : r.object;
    // The outermost (non-inlined) function and its own line: for a call site inside inlined
    // library code (goro::go is inlined into its caller) that is the caller's line.
    const SymFrame& at = !outer.file.empty() && outer.line > 0 ? outer : inner;
    if (!at.file.empty() && at.line > 0) {
      std::string s = outer.function;
      s += " (";
      s += at.file;
      s += ':';
      s += std::to_string(at.line);
      s += ')';
      return s;
    }
    if (r.have_symbol) {
      return r.symbol + "+" + hex(r.sym_offset) + " (" + obj + ")";
    }
    return hex(reinterpret_cast<std::uintptr_t>(pc)) + " (" + obj + ")";
  } catch (...) {
    try {
      return "??";
    } catch (...) {
      return {};
    }
  }
}

}  // namespace goro::internal
