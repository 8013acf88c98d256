// arg_scan.h — the words of a launch's arguments that may be device addresses: every 8-byte word
// at an 8-byte offset inside each argument of at least 8 bytes (a pointer argument, or a struct
// holding pointers: a struct with a pointer member is 8-aligned, so its pointers sit at 8-byte
// offsets from its start). Arguments smaller than 8 bytes are skipped; bytes are read with
// memcpy, so arguments at unaligned offsets or in unaligned buffers are fine.
//
// Two forms of arguments (cuLaunchKernel):
//   - kernelParams: params[i] points to the bytes of argument i (layout from
//     cuKernelGetParamInfo / cuFuncGetParamInfo: {offset, size} per argument; the offset is not
//     used in this form);
//   - extra: {CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &size,
//     CU_LAUNCH_PARAM_END}: one packed buffer holding argument i at layout[i].offset; without a
//     layout every 8-byte word of the buffer is visited.
// memcpy/memset take their pointers directly (no scan needed).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace spillway::tracker {

struct ParamSlot {
  std::size_t offset = 0;  // byte offset in the packed argument buffer
  std::size_t size = 0;    // bytes
};
using ParamLayout = std::vector<ParamSlot>;

inline std::uint64_t LoadWord(const unsigned char* p) {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Visits the words of one argument of `size` bytes at `p`. Returns the number of words.
template <class Visit>
std::size_t ScanArgument(const void* p, std::size_t size, Visit&& visit) {
  if (p == nullptr) return 0;
  const auto* b = static_cast<const unsigned char*>(p);
  std::size_t n = 0;
  for (std::size_t off = 0; size >= 8 && off <= size - 8; off += 8, ++n) visit(LoadWord(b + off));
  return n;
}

// kernelParams form. `params` must hold layout.size() entries (a null entry is skipped).
template <class Visit>
std::size_t ScanKernelParams(const ParamLayout& layout, void* const* params, Visit&& visit) {
  if (params == nullptr) return 0;
  std::size_t n = 0;
  for (std::size_t i = 0; i < layout.size(); ++i) n += ScanArgument(params[i], layout[i].size, visit);
  return n;
}

// A packed buffer (the extra form). Arguments reaching past `size` are cut at the end of the
// buffer. `layout` == nullptr: every 8-byte word of the buffer.
template <class Visit>
std::size_t ScanPacked(const ParamLayout* layout, const void* buf, std::size_t size,
                       Visit&& visit) {
  if (buf == nullptr) return 0;
  const auto* b = static_cast<const unsigned char*>(buf);
  if (layout == nullptr) return ScanArgument(buf, size, visit);
  std::size_t n = 0;
  for (const ParamSlot& s : *layout) {
    if (s.offset >= size) continue;
    n += ScanArgument(b + s.offset, std::min(s.size, size - s.offset), visit);
  }
  return n;
}

// A layout compiled once per kernel for the launch path: the words each form reads, so that a
// launch visits them in one tight loop (the same words, in the same order, as the functions
// above given the layout).
struct ScanPlan {
  struct Arg {
    std::uint32_t index;  // kernelParams form: params[index] ...
    std::uint32_t words;  // ... its first `words` 8-byte words (arguments of >= 8 bytes only)
  };
  std::vector<Arg> args;
  std::vector<std::uint64_t> packed;  // extra form: byte offsets of the words in the buffer
  std::size_t params = 0;             // arguments in the layout
};
ScanPlan CompileScanPlan(const ParamLayout& layout);

template <class Visit>
std::size_t ScanKernelParams(const ScanPlan& plan, void* const* params, Visit&& visit) {
  if (params == nullptr) return 0;
  std::size_t n = 0;
  for (const ScanPlan::Arg& a : plan.args) {
    const auto* b = static_cast<const unsigned char*>(params[a.index]);
    if (b == nullptr) continue;
    for (std::uint32_t k = 0; k < a.words; ++k) visit(LoadWord(b + 8 * std::size_t{k}));
    n += a.words;
  }
  return n;
}

// Words reaching past `size` are left out, as ScanPacked(&layout, ...) does.
template <class Visit>
std::size_t ScanPacked(const ScanPlan& plan, const void* buf, std::size_t size, Visit&& visit) {
  if (buf == nullptr) return 0;
  const auto* b = static_cast<const unsigned char*>(buf);
  std::size_t n = 0;
  for (std::uint64_t off : plan.packed) {
    if (off > size || size - off < 8) continue;
    visit(LoadWord(b + off));
    ++n;
  }
  return n;
}

// Reads an `extra` array. True with *buf and *size when it names a buffer and its size; false
// for nullptr, a missing pointer or size, or an unknown key (nothing safe to read then).
bool ParseExtra(void* const* extra, const void** buf, std::size_t* size);

// Convenience: the words of each form appended to *out. Return the number appended.
std::size_t CollectKernelParams(const ParamLayout& layout, void* const* params,
                                std::vector<std::uint64_t>* out);
std::size_t CollectPacked(const ParamLayout* layout, const void* buf, std::size_t size,
                          std::vector<std::uint64_t>* out);

}  // namespace spillway::tracker
