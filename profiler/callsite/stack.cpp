// stack.cpp — C++ frames of a call site (see stack.h): backtrace() from execinfo, Spillway's
// modules found once with dl_iterate_phdr.
#include "profiler/callsite/stack.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

namespace spillway::callsite {

namespace {

struct Range {
  std::uintptr_t lo, hi;
};

// Loaded segments of this library and of every module whose file name starts with
// "libspillway" (the core library and the preload).
const std::vector<Range>& OwnRanges() {
  static const std::vector<Range> ranges = [] {
    std::vector<Range> r;
    Dl_info self{};
    dladdr(reinterpret_cast<void*>(&CppFrames), &self);
    struct Ctx {
      std::vector<Range>* out;
      const void* self_base;
    } ctx{&r, self.dli_fbase};
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* p) {
          auto* c = static_cast<Ctx*>(p);
          const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
          const char* slash = std::strrchr(name, '/');
          const char* base = slash != nullptr ? slash + 1 : name;
          bool ours = std::strncmp(base, "libspillway", 11) == 0;
          for (int i = 0; i < info->dlpi_phnum && !ours; ++i)  // this library, whatever its name
            ours = info->dlpi_phdr[i].p_type == PT_LOAD &&
                   reinterpret_cast<const void*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr -
                                                 info->dlpi_phdr[i].p_offset) == c->self_base;
          if (!ours) return 0;
          for (int i = 0; i < info->dlpi_phnum; ++i) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[i];
            if (ph.p_type != PT_LOAD) continue;
            const std::uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
            c->out->push_back(Range{lo, lo + ph.p_memsz});
          }
          return 0;
        },
        &ctx);
    return r;
  }();
  return ranges;
}

bool Ours(std::uintptr_t pc) {
  for (const Range& r : OwnRanges())
    if (pc >= r.lo && pc < r.hi) return true;
  return false;
}

const char* BaseName(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

// A sanitizer runtime intercepts backtrace(), adding its own frame innermost (ASan builds).
bool SanitizerRuntime(std::uintptr_t pc) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_fname == nullptr) return false;
  const char* base = BaseName(info.dli_fname);
  return std::strncmp(base, "libasan", 7) == 0 || std::strncmp(base, "libtsan", 7) == 0 ||
         std::strncmp(base, "libubsan", 8) == 0 || std::strncmp(base, "libclang_rt", 11) == 0;
}

}  // namespace

std::size_t CppFrames(std::uintptr_t* out, std::size_t max) {
  constexpr int kRaw = 40;  // Spillway's own frames (a handful) and the 24 kept; ~0.2 us each
  void* raw[kRaw];
  const int n = backtrace(raw, kRaw);
  int i = 0;
  if (n > 0 && SanitizerRuntime(reinterpret_cast<std::uintptr_t>(raw[0]))) ++i;
  while (i < n && Ours(reinterpret_cast<std::uintptr_t>(raw[i]))) ++i;
  std::size_t k = 0;
  for (; i < n && k < max; ++i) out[k++] = reinterpret_cast<std::uintptr_t>(raw[i]);
  return k;
}

std::string Symbolize(std::uintptr_t pc) {
  char buf[64];
  Dl_info info{};
  // pc - 1: the call instruction, not the one after it (which may start another function).
  if (dladdr(reinterpret_cast<void*>(pc - 1), &info) == 0 || info.dli_fname == nullptr) {
    std::snprintf(buf, sizeof buf, "0x%zx", static_cast<std::size_t>(pc));
    return buf;
  }
  const std::string module = BaseName(info.dli_fname);
  if (info.dli_sname == nullptr) {
    std::snprintf(buf, sizeof buf, "+0x%zx",
                  static_cast<std::size_t>(pc - reinterpret_cast<std::uintptr_t>(info.dli_fbase)));
    return module + buf;
  }
  int status = -1;
  char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
  std::string name = status == 0 && demangled != nullptr ? demangled : info.dli_sname;
  std::free(demangled);
  if (name.size() > 240) name = name.substr(0, 237) + "...";
  std::snprintf(buf, sizeof buf, "+0x%zx",
                static_cast<std::size_t>(pc - reinterpret_cast<std::uintptr_t>(info.dli_saddr)));
  return name + buf + " (" + module + ")";
}

}  // namespace spillway::callsite
