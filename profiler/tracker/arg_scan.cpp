// arg_scan.cpp — argument words of a launch (see arg_scan.h).
#include "profiler/tracker/arg_scan.h"

#include <algorithm>
#include <cstdint>

namespace spillway::tracker {

namespace {
// The keys of an `extra` array (cuda.h's CU_LAUNCH_PARAM_*_AS_INT, spelled here so this file
// needs no CUDA header).
constexpr std::uintptr_t kEnd = 0x00, kBufferPointer = 0x01, kBufferSize = 0x02;
constexpr int kMaxPairs = 16;  // the driver knows 2 pairs; more means garbage
}  // namespace

bool ParseExtra(void* const* extra, const void** buf, std::size_t* size) {
  if (extra == nullptr) return false;
  const void* b = nullptr;
  const std::size_t* s = nullptr;
  bool ended = false;
  for (int i = 0; i < 2 * kMaxPairs && !ended; i += 2) {
    const auto key = reinterpret_cast<std::uintptr_t>(extra[i]);
    if (key == kEnd) ended = true;
    else if (key == kBufferPointer) b = extra[i + 1];
    else if (key == kBufferSize) s = static_cast<const std::size_t*>(extra[i + 1]);
    else return false;
  }
  if (!ended || b == nullptr || s == nullptr) return false;
  *buf = b;
  *size = *s;
  return true;
}

ScanPlan CompileScanPlan(const ParamLayout& layout) {
  ScanPlan p;
  p.params = layout.size();
  for (std::size_t i = 0; i < layout.size(); ++i) {
    const ParamSlot& s = layout[i];
    if (s.size < 8) continue;
    const std::size_t words = std::min<std::size_t>(s.size / 8, UINT32_MAX);
    p.args.push_back(
        ScanPlan::Arg{static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(words)});
    for (std::size_t k = 0; k < words; ++k) {
      if (s.offset > UINT64_MAX - 8 * k) break;  // garbage: nothing past the address space
      p.packed.push_back(s.offset + 8 * k);
    }
  }
  return p;
}

std::size_t CollectKernelParams(const ParamLayout& layout, void* const* params,
                                std::vector<std::uint64_t>* out) {
  return ScanKernelParams(layout, params, [out](std::uint64_t w) { out->push_back(w); });
}

std::size_t CollectPacked(const ParamLayout* layout, const void* buf, std::size_t size,
                          std::vector<std::uint64_t>* out) {
  return ScanPacked(layout, buf, size, [out](std::uint64_t w) { out->push_back(w); });
}

}  // namespace spillway::tracker
