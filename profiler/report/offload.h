// offload.h — the offload figures of a report (Model::offload): bytes of live blocks on each
// tier over time and their peaks, traffic and bandwidth each way, stalls, the prefetch hit rate
// and offload errors. analyze.cpp's second pass feeds it the offload records (kEvict, kFetch,
// kOffloadError) and the ends of blocks, in each process's time order. Definitions:
// docs/profiler.md, "Offload in reports".
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "profiler/report/model.h"
#include "profiler/trace_format.h"

namespace spillway::report {

const char* TierName(std::uint32_t tier);            // "device", "host", "nvme", "?"
const char* OffloadErrorName(std::uint32_t reason);  // "host limit", ..., "other"
const char* OffloadErrorKey(std::uint32_t reason);   // "host_limit", ..., "other"
inline bool IsOffloadKind(std::uint16_t k) {
  return k >= 60 && k <= 62;
}

// Tier state of one device of one process during the replay.
struct DeviceTiers {
  std::uint64_t host = 0, nvme = 0;
  std::uint64_t off = 0;  // sum over live blocks of min(requested, host + nvme bytes)
  TierPeaks peaks;
  TierBytes At(std::uint64_t allocated) const {
    return TierBytes{allocated - (off < allocated ? off : allocated), host, nvme};
  }
};

class OffloadReplay {
 public:
  explicit OffloadReplay(Model* m) : m_(*m) {}

  // Starts a process whose blocks are Model::blocks[first_block, end_block); `moves`: whether
  // it has offload records at all (without, the per-record calls below are not needed).
  void StartProcess(std::size_t first_block, std::size_t end_block, bool moves);
  // An offload record at `ns` (common time axis) of process `p`; `block`: the live block at
  // its address (kNoBlock if none) on the device whose state is `t`. True when tier bytes
  // changed.
  bool Record(const trace::Record& r, std::uint64_t ns, std::uint32_t block, std::uint32_t p,
              DeviceTiers& t);
  // Block `block` of the current process ended (freed, or its address allocated again): its
  // off-device bytes leave their tiers. Returns whether anything changed.
  bool Ended(std::uint32_t block, DeviceTiers& t);
  // After a record that changed device `t`'s state: its peaks.
  static void Observe(DeviceTiers& t, std::uint64_t allocated, std::uint64_t ns);
  // Bandwidths, medians, hit rate, stall order; without offload records the tier series and
  // peaks are dropped (Model::offload stays all zeros and empty).
  void Finish();

  static constexpr std::uint32_t kNoBlock = 0xffffffffu;

 private:
  struct BlockTiers {
    std::uint64_t host = 0, nvme = 0;
  };
  Model& m_;
  std::size_t first_ = 0;
  std::vector<BlockTiers> blocks_;  // of the current process; empty when it has no moves
  std::array<std::array<std::vector<double>, kTiers>, kTiers> rates_;  // bytes / ns per move
  std::size_t process_errors_ = 0, process_stalls_ = 0;  // kept so far, of the current process
};

}  // namespace spillway::report
