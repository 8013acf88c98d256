// pager_nvme.cpp — the pager's NVMe tier (see pager.h): host chunks for an eviction, spilling
// the host tier's blocks needed last to NVMe when it is full, and the moves between the host
// tier and NVMe (offload/nvme_store.h does the I/O).
#include "offload/pager.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <climits>
#include <cstdio>

#include "allocator/device_heap.h"
#include "allocator/error.h"
#include "offload/next_use.h"
#include "profiler/clock.h"
#include "profiler/trace_writer.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/tracker.h"

namespace spillway::offload {

spillway_status Pager::acquire_host_locked(std::uintptr_t p, std::size_t pages,
                                           std::vector<HostChunk>* chunks, std::string* why) {
  spillway_status s = host_->acquire(pages, chunks, why);
  if (s != SPILLWAY_ERR_OUT_OF_MEMORY) return s;
  if (!moves_.empty()) {  // copies back to the device still hold host chunks: finish them
    poll_locked(true);
    chunks->clear();
    s = host_->acquire(pages, chunks, why);
    if (s != SPILLWAY_ERR_OUT_OF_MEMORY) return s;
  }
  if (opt_.nvme == nullptr) return s;
  // The host tier is full: its blocks needed last go on to NVMe, one at a time, until `pages`
  // chunks are free (or none is left to move).
  struct Cand {
    std::uintptr_t p;
    tracker::BlockSummary sum;
    std::int64_t dist;
  };
  std::vector<Cand> cands;
  std::uint64_t now = 0;
  for (const auto& [q, e] : entries_)
    if (q != p && q != no_spill_ && e.state == Residency::kHost) {
      cands.push_back({q, summary_of(q), 0});
      now = std::max(now, cands.back().sum.last_seq);
    }
  // Inside an operation being issued (a launch whose blocks are being made readable), the blocks
  // it names stay: it is not enqueued yet, and one it reads where it lies (access_in_place) must
  // keep its host pages. Those are the blocks used after the issue watermark (every operation up
  // to it is enqueued); without one, the newest operation's.
  if (tracker::Issuing()) {
    std::uint64_t issued = 0;
    const bool known = tracker::IssuedWatermark(&issued);
    std::erase_if(cands, [&](const Cand& c) {
      return known ? c.sum.last_seq > issued : c.sum.last_seq == now;
    });
  }
  for (Cand& c : cands) c.dist = NextUseDistance(c.sum, now);
  std::sort(cands.begin(), cands.end(), [](const Cand& a, const Cand& b) { return a.dist > b.dist; });
  for (const Cand& c : cands) {
    auto it = entries_.find(c.p);
    if (it == entries_.end() || it->second.state != Residency::kHost) continue;
    if (host_to_nvme_locked(it->second) != SPILLWAY_OK) continue;  // said and counted there
    counters_.spills.fetch_add(1, std::memory_order_relaxed);
    chunks->clear();
    s = host_->acquire(pages, chunks, why);
    if (s != SPILLWAY_ERR_OUT_OF_MEMORY) return s;
  }
  return s;
}

spillway_status Pager::host_to_nvme_locked(Entry& e) {
  if (opt_.nvme == nullptr)
    return Fail(
        SPILLWAY_ERR_CONFIG,
        "spillway: the NVMe tier is off: set SPILLWAY_NVME_PATH to a directory on the disk");
  const std::uint64_t t0 = MonotonicNs();
  for (const Move& m : moves_)
    if (m.id == e.move) {  // the host chunks are still being filled
      poll_locked(true);
      break;
    }
  if (spillway_status st = fence_cpu_locked(e, nullptr, false); st != SPILLWAY_OK) return st;
  std::vector<NvmeSegment> segs;
  for (const HostChunk& c : e.host) segs.push_back({reinterpret_cast<void*>(c.window), gran_});
  NvmeStore::Slot slot = 0;
  std::string why;
  spillway_status st = opt_.nvme->write(segs.data(), segs.size(), &slot, &why);
  if (st != SPILLWAY_OK) {
    error_locked(e.p, e.pages * gran_,
                 st == SPILLWAY_ERR_IO && why.find("disk full:") == std::string::npos
                     ? trace::kErrNvmeIo
                     : trace::kErrNvmeFull,
                 st, why);
    return Fail(st, why);
  }
  if (e.mapped) {  // the VA goes unmapped while the block is on NVMe
    st = unmap_pages_locked(e);
    if (st != SPILLWAY_OK) {
      opt_.nvme->release(slot);
      return st;
    }
    e.mapped = false;
  }
  host_->release(e.host);
  e.host.clear();
  e.slot = slot;
  e.state = Residency::kNvme;
  count_nvme_move(e, true, t0);
  return SPILLWAY_OK;
}

spillway_status Pager::nvme_to_host_locked(Entry& e, bool through) {
  std::string why;
  std::vector<HostChunk> chunks;
  if (spillway_status s = acquire_host_locked(e.p, e.pages, &chunks, &why); s != SPILLWAY_OK) {
    error_locked(e.p, e.pages * gran_, trace::kErrHostLimit, s, why);
    return Fail(s, why);
  }
  // Timed from here: making room in a full host tier (spilling other blocks) is timed as their
  // writes, not as this read.
  const std::uint64_t t0 = MonotonicNs();
  std::vector<NvmeSegment> segs;
  for (const HostChunk& c : chunks) segs.push_back({reinterpret_cast<void*>(c.window), gran_});
  spillway_status st = opt_.nvme->read(e.slot, segs.data(), segs.size(), &why);
  if (st != SPILLWAY_OK) {
    host_->release(chunks);
    error_locked(
        e.p, e.pages * gran_,
        why.find("checksum") != std::string::npos ? trace::kErrChecksum : trace::kErrNvmeIo, st,
        why);
    return Fail(st, why + " (the block stays on NVMe)");
  }
  if (eager_host_map() && !through) {  // strict: the VA must be valid while on the host
    std::vector<prim::PhysHandle> in, old;
    for (const HostChunk& c : chunks) in.push_back(c.handle);
    st = swap_locked(e, in.data(), true, &old);
    if (st != SPILLWAY_OK) {
      host_->release(chunks);
      return st;
    }
    e.mapped = true;
  }
  opt_.nvme->release(e.slot);
  e.slot = 0;
  e.host = std::move(chunks);
  e.state = Residency::kHost;
  e.access_mark = access_count(e.p);
  count_nvme_move(e, false, t0);
  return SPILLWAY_OK;
}

void Pager::count_nvme_move(const Entry& e, bool to_nvme, std::uint64_t t0) {
  const std::uint64_t bytes = e.pages * gran_;
  (to_nvme ? host_bytes_ : nvme_bytes_).fetch_sub(bytes, std::memory_order_relaxed);
  (to_nvme ? nvme_bytes_ : host_bytes_).fetch_add(bytes, std::memory_order_relaxed);
  (to_nvme ? counters_.bytes_to_nvme : counters_.bytes_from_nvme)
      .fetch_add(bytes, std::memory_order_relaxed);
  const std::uint32_t from = to_nvme ? trace::kTierHost : trace::kTierNvme;
  const std::uint32_t to = to_nvme ? trace::kTierNvme : trace::kTierHost;
  trace_move(to_nvme ? trace::Kind::kEvict : trace::Kind::kFetch, e.p, bytes,
             MonotonicNs() - t0, from, to, false);
}

}  // namespace spillway::offload
