// offload.cpp — the offload figures of a report (see offload.h).
#include "profiler/report/offload.h"

#include <algorithm>

namespace spillway::report {

const char* TierName(std::uint32_t tier) {
  switch (tier) {
    case trace::kTierDevice:
      return "device";
    case trace::kTierHost:
      return "host";
    case trace::kTierNvme:
      return "nvme";
    default:
      return "?";
  }
}

const char* OffloadErrorName(std::uint32_t reason) {
  switch (reason) {
    case trace::kErrHostLimit:
      return "host limit";
    case trace::kErrNvmeFull:
      return "NVMe full";
    case trace::kErrNvmeIo:
      return "NVMe I/O error";
    case trace::kErrChecksum:
      return "checksum mismatch";
    case trace::kErrDeviceFull:
      return "device full";
    default:
      return "other";
  }
}

const char* OffloadErrorKey(std::uint32_t reason) {
  switch (reason) {
    case trace::kErrHostLimit:
      return "host_limit";
    case trace::kErrNvmeFull:
      return "nvme_full";
    case trace::kErrNvmeIo:
      return "nvme_io";
    case trace::kErrChecksum:
      return "checksum";
    case trace::kErrDeviceFull:
      return "device_full";
    default:
      return "other";
  }
}

namespace {

constexpr std::size_t kFirstErrors = 10;

std::uint64_t Sub(std::uint64_t a, std::uint64_t b) {
  return a > b ? a - b : 0;
}

double Median(std::vector<double>& v) {
  if (v.empty()) return 0;
  const std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  const double hi = v[mid];
  if (v.size() % 2 == 1) return hi;
  const double lo = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
  return (lo + hi) / 2;
}

}  // namespace

void OffloadReplay::StartProcess(std::size_t first_block, std::size_t end_block, bool moves) {
  first_ = first_block;
  blocks_.clear();
  if (moves) blocks_.assign(end_block - first_block, BlockTiers{});
  process_errors_ = 0;
  process_stalls_ = 0;
}

bool OffloadReplay::Record(const trace::Record& r, std::uint64_t ns, std::uint32_t block,
                           std::uint32_t p, DeviceTiers& t) {
  Offload& o = m_.offload;
  ++o.events;
  const std::int32_t device = block != kNoBlock ? m_.blocks[block].device : r.device;
  if (r.kind == static_cast<std::uint16_t>(trace::Kind::kOffloadError)) {
    ++o.errors;
    ++o.errors_by_reason[r.aux2 >= 1 && r.aux2 <= 5 ? r.aux2 : 0];
    if (process_errors_++ < kFirstErrors)
      o.first_errors.push_back(OffloadFailure{ns, r.addr, r.size, p, device, r.aux2, r.status});
    return false;
  }
  const bool fetch = r.kind == static_cast<std::uint16_t>(trace::Kind::kFetch);
  const std::uint32_t from = (r.aux2 >> 8) & 0xff, to = r.aux2 & 0xff;
  if (from >= kTiers || to >= kTiers || from == to) {
    ++o.bad_moves;
    return false;
  }
  ++(fetch ? o.fetches : o.evictions);
  Traffic& tr = o.traffic[from][to];
  ++tr.moves;
  tr.bytes += r.size;
  if (r.aux > 0) {
    ++tr.timed_moves;
    tr.timed_bytes += r.size;
    tr.ns += r.aux;
    rates_[from][to].push_back(static_cast<double>(r.size) / static_cast<double>(r.aux));
  }
  const bool demand = fetch && (r.aux2 & trace::kFetchDemand) != 0;
  if (fetch && to == trace::kTierDevice) {
    ++o.fetches_to_device;
    if (!demand) ++o.prefetches_to_device;
  }
  if (demand) {
    const Stall s{ns, r.aux, r.addr, r.size, p, device, from, to};
    ++o.stalls;
    o.stall_ns += r.aux;
    if (s.wait_ns > o.longest_stall.wait_ns ||
        (s.wait_ns == o.longest_stall.wait_ns && o.stalls == 1))
      o.longest_stall = s;
    if (process_stalls_++ < Offload::kMaxStalls) o.stall_list.push_back(s);
  }
  if (block == kNoBlock || block < first_ || block - first_ >= blocks_.size()) {
    ++o.unknown_block_moves;
    return false;
  }
  // The block's bytes leave `from` (at most what it has there) and arrive at `to`.
  BlockTiers& b = blocks_[block - first_];
  const Block& blk = m_.blocks[block];
  const std::uint64_t off_before = std::min(blk.requested, b.host + b.nvme);
  std::uint64_t moved = r.size;
  if (from == trace::kTierHost)
    moved = std::min(moved, b.host);
  else if (from == trace::kTierNvme)
    moved = std::min(moved, b.nvme);
  else
    moved = std::min(moved, Sub(std::max(blk.rounded, blk.requested), b.host + b.nvme));
  if (from == trace::kTierHost) {
    b.host -= moved;
    t.host -= moved;
  } else if (from == trace::kTierNvme) {
    b.nvme -= moved;
    t.nvme -= moved;
  }
  if (to == trace::kTierHost) {
    b.host += moved;
    t.host += moved;
  } else if (to == trace::kTierNvme) {
    b.nvme += moved;
    t.nvme += moved;
  }
  const std::uint64_t off_after = std::min(blk.requested, b.host + b.nvme);
  t.off = t.off - off_before + off_after;
  return moved != 0;
}

bool OffloadReplay::Ended(std::uint32_t block, DeviceTiers& t) {
  if (blocks_.empty() || block < first_ || block - first_ >= blocks_.size()) return false;
  BlockTiers& b = blocks_[block - first_];
  if (b.host == 0 && b.nvme == 0) return false;
  t.host -= b.host;
  t.nvme -= b.nvme;
  t.off -= std::min(m_.blocks[block].requested, b.host + b.nvme);
  b = BlockTiers{};
  return true;
}

void OffloadReplay::Observe(DeviceTiers& t, std::uint64_t allocated, std::uint64_t ns) {
  const TierBytes now = t.At(allocated);
  TierPeaks& pk = t.peaks;
  if (now.device > pk.peak_device) {
    pk.peak_device = now.device;
    pk.peak_device_ns = ns;
  }
  if (now.host > pk.peak_host) {
    pk.peak_host = now.host;
    pk.peak_host_ns = ns;
  }
  if (now.nvme > pk.peak_nvme) {
    pk.peak_nvme = now.nvme;
    pk.peak_nvme_ns = ns;
  }
}

void OffloadReplay::Finish() {
  Offload& o = m_.offload;
  if (o.events == 0) {
    o = Offload{};
    return;
  }
  for (int f = 0; f < kTiers; ++f) {
    for (int d = 0; d < kTiers; ++d) {
      Traffic& tr = o.traffic[static_cast<std::size_t>(f)][static_cast<std::size_t>(d)];
      tr.gbps = tr.ns ? static_cast<double>(tr.timed_bytes) / static_cast<double>(tr.ns) : 0;
      tr.median_gbps = Median(rates_[static_cast<std::size_t>(f)][static_cast<std::size_t>(d)]);
    }
  }
  o.prefetch_hit_rate = o.fetches_to_device ? static_cast<double>(o.prefetches_to_device) /
                                                  static_cast<double>(o.fetches_to_device)
                                            : 0;
  auto by_time = [](const auto& a, const auto& b) { return a.t_ns < b.t_ns; };
  std::stable_sort(o.stall_list.begin(), o.stall_list.end(), by_time);
  if (o.stall_list.size() > Offload::kMaxStalls) o.stall_list.resize(Offload::kMaxStalls);
  std::stable_sort(o.first_errors.begin(), o.first_errors.end(), by_time);
  if (o.first_errors.size() > kFirstErrors) o.first_errors.resize(kFirstErrors);
  if (o.stalls > o.stall_list.size())
    m_.notes.push_back("offload: " + std::to_string(o.stalls) +
                       " stalls; the Chrome trace shows the first " +
                       std::to_string(o.stall_list.size()));
  if (o.unknown_block_moves)
    m_.notes.push_back("offload: " + std::to_string(o.unknown_block_moves) +
                       " moves of addresses with no live block are counted in the traffic, not "
                       "in the tiers");
  if (o.bad_moves)
    m_.notes.push_back("offload: " + std::to_string(o.bad_moves) +
                       " moves with an unknown or unchanged tier were ignored");
}

}  // namespace spillway::report
