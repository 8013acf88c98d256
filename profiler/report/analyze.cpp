// analyze.cpp — the report Model from event logs (see analyze.h).
//
// Two passes over each process's records, in time order:
//  1. match frees to allocations by address (a hash map), build Model::blocks, count records and
//     find each device's peaks (O(1) per record);
//  2. replay again with ordered sets of live blocks and mapped pages (O(log n) per record) and
//     take samples: one per non-empty time bucket (2000 buckets over the device's span), one
//     holding the value across a run of empty buckets, and one at the exact peak-allocated
//     record. Only samples sweep the intervals (external fragmentation). Offload records
//     (kEvict, kFetch, kOffloadError) are replayed here too (offload.cpp): bytes on each tier,
//     sampled with the rest.
#include "profiler/report/analyze.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <map>
#include <unordered_map>

#include "profiler/report/callsites.h"
#include "profiler/report/kinds.h"
#include "profiler/report/offload.h"
#include "profiler/trace_format.h"

namespace spillway::report {

double InternalFragmentation(std::uint64_t allocated, std::uint64_t rounded,
                             std::uint64_t reserved) {
  if (reserved == 0 || rounded <= allocated) return 0;
  return static_cast<double>(rounded - allocated) / static_cast<double>(reserved);
}

double ExternalFragmentation(std::uint64_t largest_free, std::uint64_t total_free) {
  if (total_free == 0) return 0;
  return 1.0 - static_cast<double>(largest_free) / static_cast<double>(total_free);
}

double Overhead(std::uint64_t reserved, std::uint64_t allocated) {
  if (allocated == 0) return 0;
  return static_cast<double>(reserved) / static_cast<double>(allocated);
}

namespace {

using trace::Kind;
using trace::Record;

constexpr std::uint64_t kBuckets = 2000;  // + holds + peak: at most ~4000 samples per device
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();
constexpr std::size_t kProgressEvery = 1 << 16;

std::uint16_t K(Kind k) { return static_cast<std::uint16_t>(k); }

// Per-block replay facts that the model does not keep.
struct BlockIdx {
  std::uint64_t alloc_rec = 0;      // index (in time order) of its allocation record
  std::uint64_t free_rec = kNever;  // index of the record that ended it
};

// Non-overlapping, merged address intervals [start, end) with their total size.
struct IntervalSet {
  std::map<std::uint64_t, std::uint64_t> iv;  // start -> end
  std::uint64_t total = 0;

  void add(std::uint64_t s, std::uint64_t e) {
    if (e <= s) return;
    auto it = iv.upper_bound(s);
    if (it != iv.begin()) {
      auto prev = std::prev(it);
      if (prev->second >= s) {  // overlaps or touches the previous one
        s = prev->first;
        e = std::max(e, prev->second);
        total -= prev->second - prev->first;
        it = iv.erase(prev);
      }
    }
    while (it != iv.end() && it->first <= e) {
      e = std::max(e, it->second);
      total -= it->second - it->first;
      it = iv.erase(it);
    }
    iv.emplace(s, e);
    total += e - s;
  }

  void remove(std::uint64_t s, std::uint64_t e) {
    if (e <= s) return;
    auto it = iv.upper_bound(s);
    if (it != iv.begin()) --it;
    while (it != iv.end() && it->first < e) {
      const std::uint64_t a = it->first, b = it->second;
      if (b <= s) {
        ++it;
        continue;
      }
      total -= b - a;
      it = iv.erase(it);
      if (a < s) {
        iv.emplace(a, s);
        total += s - a;
      }
      if (b > e) {
        iv.emplace(e, b);
        total += b - e;
        break;
      }
    }
  }
};

// One device of one process.
struct Dev {
  std::int32_t device = 0;
  std::uint32_t summary = 0;  // index into Model::devices
  bool has_chunks = false;
  std::uint64_t peak_rec = kNever;  // record index where allocated peaked
  std::vector<std::uint32_t> blocks;  // indices into Model::blocks
  // Pass 1 counters.
  std::uint64_t allocated = 0, rounded = 0, chunks = 0;
  std::uint64_t peak_rounded = 0, peak_rounded_ns = 0, peak_chunks = 0, peak_chunks_ns = 0;
  // Pass 2 state.
  std::map<std::uint64_t, std::uint32_t> live;  // addr -> block
  IntervalSet mapped;
  std::uint64_t a2 = 0, r2 = 0, c2 = 0;
  std::uint64_t t0 = 0, width = 1, cur_bucket = kNever, last_t = 0;
  bool have_state = false;  // the state differs from the last sample emitted
  DeviceTiers tiers;        // bytes of its live blocks on each tier (offload.h)
  std::uint64_t first = kNever, last = 0;  // times of its first and last record
};

// Records that belong to no device's state (marks, labels, OOMs are kept apart).
bool NoDevice(std::uint16_t k) {
  return k == K(Kind::kMark) || k == K(Kind::kString) || k == K(Kind::kOom) ||
         k == K(Kind::kCallSite);
}

class Analyzer {
 public:
  Analyzer(const std::vector<trace::Trace>& logs, Model* m,
           const std::function<void(double)>& progress)
      : logs_(logs), m_(*m), progress_(progress), off_(m) {}

  void Run() {
    std::uint64_t base = std::numeric_limits<std::uint64_t>::max();
    for (const auto& t : logs_) {
      base = std::min(base, t.header.start_unix_ns);
      total_records_ += t.records.size();
    }
    m_ = Model{};
    m_.events = total_records_;
    m_.origin_unix_ns = base;
    for (std::size_t p = 0; p < logs_.size(); ++p) {
      const trace::Trace& t = logs_[p];
      Process proc;
      proc.path = t.path;
      proc.pid = t.header.pid;
      proc.rank = t.header.rank;
      proc.offset_ns = t.header.start_unix_ns - base;
      proc.records = t.records.size();
      m_.processes.push_back(proc);
    }
    for (std::size_t p = 0; p < logs_.size(); ++p) RunProcess(static_cast<std::uint32_t>(p));
    Finish();
    if (progress_) progress_(1.0);
  }

 private:
  // Records of a process in time order (they are, unless a log was written oddly).
  void Order(const trace::Trace& t) {
    order_.clear();
    bool sorted = true;
    for (std::size_t i = 1; i < t.records.size() && sorted; ++i)
      sorted = t.records[i - 1].t_ns <= t.records[i].t_ns;
    if (sorted) return;
    order_.resize(t.records.size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<std::uint32_t>(i);
    std::stable_sort(order_.begin(), order_.end(), [&](std::uint32_t a, std::uint32_t b) {
      const Record& x = t.records[a];
      const Record& y = t.records[b];
      return x.t_ns != y.t_ns ? x.t_ns < y.t_ns : x.seq < y.seq;
    });
  }
  const Record& Rec(const trace::Trace& t, std::size_t i) const {
    return order_.empty() ? t.records[i] : t.records[order_[i]];
  }

  Dev& DevOf(std::int32_t device) {
    if (device >= 0 && device < 1024) {
      auto d = static_cast<std::size_t>(device);
      if (d < slot_.size() && slot_[d] != kNone) return devs_[slot_[d]];
    } else if (auto it = other_slot_.find(device); it != other_slot_.end()) {
      return devs_[it->second];
    }
    const auto idx = static_cast<std::uint32_t>(devs_.size());
    devs_.emplace_back();
    devs_.back().device = device;
    if (device >= 0 && device < 1024) {
      auto d = static_cast<std::size_t>(device);
      if (slot_.size() <= d) slot_.resize(d + 1, kNone);
      slot_[d] = idx;
    } else {
      other_slot_[device] = idx;
    }
    return devs_[idx];
  }

  void Tick(std::size_t done) {
    if (progress_ && done % kProgressEvery == 0)
      progress_(static_cast<double>(done_records_ + done) / (2.0 * static_cast<double>(total_records_ + 1)));
  }

  void RunProcess(std::uint32_t p) {
    const trace::Trace& t = logs_[p];
    const std::uint64_t off = m_.processes[p].offset_ns;
    Order(t);
    devs_.clear();
    slot_.clear();
    other_slot_.clear();
    const std::size_t n = t.records.size();
    const std::uint64_t end = n ? off + Rec(t, n - 1).t_ns : off;
    m_.end_ns = std::max(m_.end_ns, end);

    // ---- pass 1: blocks, counts, peaks --------------------------------------------------
    std::vector<std::uint32_t> rec_block(n, kNone);  // alloc/free record -> block
    std::unordered_map<std::uint64_t, std::uint32_t> by_addr;  // live blocks of the process
    by_addr.reserve(1024);
    const std::size_t first_block = m_.blocks.size();
    std::vector<DeviceSummary> sums;  // indexed like devs_
    auto sum_of = [&](Dev& d) -> DeviceSummary& {
      const auto i = static_cast<std::size_t>(&d - devs_.data());
      if (sums.size() <= i) sums.resize(i + 1);
      return sums[i];
    };
    auto end_block = [&](std::uint32_t b, std::uint64_t ns, std::uint64_t rec) {
      Block& blk = m_.blocks[b];
      Dev& d = DevOf(blk.device);
      d.allocated -= blk.requested;
      d.rounded -= blk.rounded;
      blk.free_ns = ns;
      blk.live_at_end = false;
      idx_[b - idx_base_].free_rec = rec;
    };
    idx_base_ = first_block;
    idx_.clear();
    std::uint64_t offload_records = 0;
    for (std::size_t i = 0; i < n; ++i) {
      Tick(i);
      const Record& r = Rec(t, i);
      const std::uint64_t ns = off + r.t_ns;
      const std::uint16_t k = r.kind;
      if (!NoDevice(k)) {
        Dev& d0 = DevOf(r.device);
        if (d0.first == kNever) d0.first = ns;
        d0.last = ns;
      }
      if (trace::IsAlloc(k) || trace::IsFree(k)) {
        const bool alloc = trace::IsAlloc(k);
        if (r.status == trace::kStatusPassedThrough) {
          ++sum_of(DevOf(r.device)).passed_through;
          continue;
        }
        if (r.status != 0 || (alloc && r.addr == 0)) {
          ++sum_of(DevOf(r.device)).failed;
          continue;
        }
        if (!alloc) {
          auto it = by_addr.find(r.addr);
          if (it == by_addr.end()) {
            ++sum_of(DevOf(r.device)).unknown_frees;
            continue;
          }
          const std::uint32_t b = it->second;
          by_addr.erase(it);
          ++sum_of(DevOf(m_.blocks[b].device)).frees;
          end_block(b, ns, i);
          rec_block[i] = b;
          continue;
        }
        Dev& d = DevOf(r.device);
        DeviceSummary& s = sum_of(d);
        ++s.allocs;
        if (auto it = by_addr.find(r.addr); it != by_addr.end()) {
          // Allocated again without a free record: the old block ended here.
          end_block(it->second, ns, i);
          by_addr.erase(it);
        }
        const auto b = static_cast<std::uint32_t>(m_.blocks.size());
        Block blk;
        blk.addr = r.addr;
        blk.requested = r.size;
        blk.rounded = r.aux != 0 ? r.aux : r.size;
        blk.alloc_ns = ns;
        blk.free_ns = end;
        blk.live_at_end = true;
        blk.stream = r.stream;
        blk.device = r.device;
        blk.process = p;
        blk.call = k;
        m_.blocks.push_back(blk);
        idx_.push_back(BlockIdx{i, kNever});
        by_addr.emplace(r.addr, b);
        d.blocks.push_back(b);
        rec_block[i] = b;
        d.allocated += blk.requested;
        d.rounded += blk.rounded;
        AddToHistogram(blk.requested);
        if (d.peak_rec == kNever || d.allocated > s.peak_allocated) {
          s.peak_allocated = d.allocated;
          s.peak_allocated_ns = ns;
          d.peak_rec = i;
        }
        if (d.rounded > d.peak_rounded) {
          d.peak_rounded = d.rounded;
          d.peak_rounded_ns = ns;
        }
        continue;
      }
      switch (static_cast<Kind>(k)) {
        case Kind::kMap: ++sum_of(DevOf(r.device)).maps; break;
        case Kind::kUnmap: ++sum_of(DevOf(r.device)).unmaps; break;
        case Kind::kChunkCreate: {
          Dev& d = DevOf(r.device);
          ++sum_of(d).chunk_creates;
          d.has_chunks = true;
          d.chunks += r.size;
          if (d.chunks > d.peak_chunks) {
            d.peak_chunks = d.chunks;
            d.peak_chunks_ns = ns;
          }
          break;
        }
        case Kind::kChunkRelease: {
          Dev& d = DevOf(r.device);
          ++sum_of(d).chunk_releases;
          d.has_chunks = true;
          d.chunks -= std::min(d.chunks, r.size);
          break;
        }
        case Kind::kMark: {
          Mark mk;
          mk.t_ns = ns;
          mk.process = p;
          mk.phase = r.aux2;
          auto it = t.labels.find(r.addr);
          mk.label = it != t.labels.end() ? it->second : "#" + std::to_string(r.addr);
          m_.marks.push_back(std::move(mk));
          break;
        }
        case Kind::kOom:
          m_.ooms.push_back(Oom{ns, p, r.device, r.size});
          break;
        case Kind::kAccess: {  // written just before the block's free, or at exit if live
          auto it = by_addr.find(r.addr);
          if (it == by_addr.end()) break;
          Block& blk = m_.blocks[it->second];
          blk.tracked = true;
          blk.accesses = r.size;
          blk.first_access_ns = off + r.aux;
          blk.last_access_ns = off + r.stream;
          blk.access_streams = r.aux2;
          break;
        }
        case Kind::kKernel: {  // a kernel's execution (SPILLWAY_KERNELS=1)
          ++m_.kernels_total;
          if (m_.kernels.size() >= Model::kMaxKernels) break;
          auto lit = t.labels.find(r.addr);
          const std::string name = lit != t.labels.end() ? lit->second : "#" + std::to_string(r.addr);
          auto [nit, fresh] = kernel_name_ids_.try_emplace(name, static_cast<std::uint32_t>(m_.kernel_names.size()));
          if (fresh) m_.kernel_names.push_back(name);
          m_.kernels.push_back(KernelRun{ns, r.aux, p, static_cast<std::uint32_t>(r.stream),
                                         nit->second, r.device});
          break;
        }
        case Kind::kTouch:  // a tracked access starting a touch epoch (kinds.cpp reads them)
          if (auto it = by_addr.find(r.addr); it != by_addr.end())
            m_.touches.push_back(Touch{it->second, ns, r.aux});
          break;
        case Kind::kEvict:  // offload moves and errors: replayed in pass 2 (offload.cpp)
        case Kind::kFetch:
        case Kind::kOffloadError:
          ++offload_records;
          if (auto it = by_addr.find(r.addr); it != by_addr.end()) rec_block[i] = it->second;
          break;
        case Kind::kCallSite:  // written just after its block's allocation record
          if (auto it = by_addr.find(r.addr); it != by_addr.end())
            if (auto l = t.labels.find(r.aux); l != t.labels.end())
              m_.blocks[it->second].callsite = callsites_.Intern(&m_, l->second);
          break;
        default: break;  // kString (labels, already read) and unknown kinds
      }
    }
    done_records_ += n;

    // Device summaries, in device order.
    std::vector<std::uint32_t> dorder(devs_.size());
    for (std::size_t i = 0; i < dorder.size(); ++i) dorder[i] = static_cast<std::uint32_t>(i);
    std::sort(dorder.begin(), dorder.end(),
              [&](std::uint32_t a, std::uint32_t b) { return devs_[a].device < devs_[b].device; });
    sums.resize(devs_.size());
    std::vector<std::uint32_t> series_of(devs_.size(), kNone);
    for (std::uint32_t di : dorder) {
      Dev& d = devs_[di];
      if (d.first == kNever) continue;
      DeviceSummary s = sums[di];
      s.process = p;
      s.device = d.device;
      s.first_ns = d.first;
      s.last_ns = d.last;
      s.reserved_estimated = !d.has_chunks;
      s.peak_reserved = d.has_chunks ? d.peak_chunks : d.peak_rounded;
      s.peak_reserved_ns = d.has_chunks ? d.peak_chunks_ns : d.peak_rounded_ns;
      s.largest_at_peak = LargestAt(d);
      d.summary = static_cast<std::uint32_t>(m_.devices.size());
      m_.devices.push_back(std::move(s));
      series_of[di] = static_cast<std::uint32_t>(m_.series.size());
      Series se;
      se.process = p;
      se.device = d.device;
      m_.series.push_back(std::move(se));
      m_.offload.tiers.emplace_back();
      m_.offload.devices.emplace_back();
      d.t0 = d.first;
      d.width = std::max<std::uint64_t>(1, (d.last - d.first) / kBuckets + 1);
    }
    bool any_estimated = false;
    for (std::uint32_t di : dorder)
      if (series_of[di] != kNone && !devs_[di].has_chunks && !devs_[di].blocks.empty())
        any_estimated = true;
    if (any_estimated)
      m_.notes.push_back("process " + std::to_string(t.header.pid) + " (" + t.path +
                         "): no chunk events" + (t.header.version == 1 ? " (version 1 log)" : "") +
                         "; reserved is taken as the rounded size of live blocks");

    // ---- pass 2: samples -----------------------------------------------------------------
    proc_moves_ = offload_records != 0;
    off_.StartProcess(first_block, m_.blocks.size(), proc_moves_);
    for (std::size_t i = 0; i < n; ++i) {
      Tick(i);
      const Record& r = Rec(t, i);
      const std::uint16_t k = r.kind;
      if (NoDevice(k)) continue;
      Dev* dp = nullptr;
      const std::uint32_t b = rec_block[i];
      if (b != kNone) dp = &DevOf(m_.blocks[b].device);
      else dp = &DevOf(r.device);
      Dev& d = *dp;
      const std::uint32_t si = series_of[static_cast<std::size_t>(dp - devs_.data())];
      if (si == kNone) continue;
      Series& se = m_.series[si];
      const std::uint64_t ns = off + r.t_ns;
      const std::uint64_t bucket = (ns - d.t0) / d.width;
      if (d.cur_bucket == kNever) {
        se.samples.push_back(Sample{ns, 0, 0, 0, 0, 0, 0, 0});  // the state before anything
        m_.offload.tiers[si].push_back(TierBytes{});
      } else if (bucket != d.cur_bucket) {
        if (d.have_state) Emit(d, se, d.last_t);
        if (bucket > d.cur_bucket + 1 && ns > d.last_t + 1) {
          Sample hold = se.samples.back();
          hold.t_ns = ns - 1;
          se.samples.push_back(hold);
          m_.offload.tiers[si].push_back(m_.offload.tiers[si].back());
        }
      }
      d.cur_bucket = bucket;
      d.last_t = ns;
      bool changed = true;
      if (trace::IsAlloc(k) || trace::IsFree(k)) {
        if (b == kNone) {
          changed = false;
        } else if (trace::IsAlloc(k)) {
          const Block& blk = m_.blocks[b];
          if (auto it = d.live.find(blk.addr); it != d.live.end()) Unlive(d, it);
          d.live.emplace(blk.addr, b);
          d.a2 += blk.requested;
          d.r2 += blk.rounded;
        } else if (auto it = d.live.find(m_.blocks[b].addr); it != d.live.end() && it->second == b) {
          Unlive(d, it);
        }
      } else {
        switch (static_cast<Kind>(k)) {
          case Kind::kMap: d.mapped.add(r.addr, r.addr + r.size); break;
          case Kind::kUnmap: d.mapped.remove(r.addr, r.addr + r.size); break;
          case Kind::kChunkCreate: d.c2 += r.size; break;
          case Kind::kChunkRelease: d.c2 -= std::min(d.c2, r.size); break;
          case Kind::kEvict:
          case Kind::kFetch:
          case Kind::kOffloadError:
            changed = off_.Record(r, ns, b, p, d.tiers);
            break;
          default: changed = false; break;
        }
      }
      if (changed) {
        d.have_state = true;
        if (proc_moves_) OffloadReplay::Observe(d.tiers, d.a2, ns);
      }
      if (i == d.peak_rec) {
        Emit(d, se, ns);
        m_.devices[d.summary].at_peak = se.samples.back();
      }
    }
    for (std::size_t di = 0; di < devs_.size(); ++di) {
      Dev& d = devs_[di];
      if (series_of[di] == kNone) continue;
      if (d.have_state) Emit(d, m_.series[series_of[di]], d.last_t);
      TierPeaks pk = d.tiers.peaks;  // without moves: everything stayed on the device
      const DeviceSummary& sum = m_.devices[d.summary];
      if (!proc_moves_) {
        pk.peak_device = sum.peak_allocated;
        pk.peak_device_ns = sum.peak_allocated_ns;
      }
      pk.process = p;
      pk.device = d.device;
      m_.offload.devices[series_of[di]] = pk;
    }
    done_records_ += n;
  }

  void Unlive(Dev& d, std::map<std::uint64_t, std::uint32_t>::iterator it) {
    const Block& old = m_.blocks[it->second];
    d.a2 -= old.requested;
    d.r2 -= old.rounded;
    if (proc_moves_) off_.Ended(it->second, d.tiers);  // its off-device bytes leave their tiers
    d.live.erase(it);
  }

  // Appends the current state of `d` as a sample at `ns` (the interval sweep is here).
  void Emit(Dev& d, Series& se, std::uint64_t ns) {
    Sample s;
    s.t_ns = ns;
    s.allocated = d.a2;
    s.rounded = d.r2;
    s.reserved = d.has_chunks ? d.c2 : d.r2;
    s.mapped = d.mapped.total;
    std::uint64_t total_free = 0, largest = 0;
    auto b = d.live.begin();
    std::uint64_t cov = 0;  // the highest end of the blocks passed so far
    for (const auto& [ms, me] : d.mapped.iv) {
      std::uint64_t pos = ms;
      if (cov > pos) pos = std::min(cov, me);
      while (b != d.live.end() && b->first < me) {
        const std::uint64_t bs = b->first;
        const std::uint64_t be = bs + m_.blocks[b->second].rounded;
        if (bs > pos) {
          total_free += bs - pos;
          largest = std::max(largest, bs - pos);
        }
        cov = std::max(cov, be);
        pos = std::max(pos, std::min(be, me));
        ++b;
      }
      if (pos < me) {
        total_free += me - pos;
        largest = std::max(largest, me - pos);
      }
    }
    s.internal = InternalFragmentation(s.allocated, s.rounded, s.reserved);
    s.external = ExternalFragmentation(largest, total_free);
    s.overhead = Overhead(s.reserved, s.allocated);
    se.samples.push_back(s);
    m_.offload.tiers[static_cast<std::size_t>(&se - m_.series.data())].push_back(d.tiers.At(d.a2));
    d.have_state = false;
  }

  // The 10 largest blocks (requested bytes) live just after the peak-allocated record.
  std::vector<std::uint32_t> LargestAt(const Dev& d) const {
    std::vector<std::uint32_t> live;
    if (d.peak_rec == kNever) return live;
    for (std::uint32_t b : d.blocks) {
      const BlockIdx& x = idx_[b - idx_base_];
      if (x.alloc_rec <= d.peak_rec && x.free_rec > d.peak_rec) live.push_back(b);
    }
    auto larger = [&](std::uint32_t a, std::uint32_t c) {
      const Block& x = m_.blocks[a];
      const Block& y = m_.blocks[c];
      if (x.requested != y.requested) return x.requested > y.requested;
      if (x.rounded != y.rounded) return x.rounded > y.rounded;
      return x.addr < y.addr;
    };
    const std::size_t k = std::min<std::size_t>(10, live.size());
    std::partial_sort(live.begin(), live.begin() + static_cast<std::ptrdiff_t>(k), live.end(), larger);
    live.resize(k);
    return live;
  }

  void AddToHistogram(std::uint64_t bytes) {
    // Bucket 0 holds sizes below 512 B (floor 0); bucket i >= 1 holds [256 << i, 512 << i).
    std::size_t i = 0;
    if (bytes >= 512) i = static_cast<std::size_t>(std::bit_width(bytes)) - 9;
    if (hist_count_.size() <= i) {
      hist_count_.resize(i + 1, 0);
      hist_bytes_.resize(i + 1, 0);
    }
    ++hist_count_[i];
    hist_bytes_[i] += bytes;
  }

  void Finish() {
    Histogram& h = m_.sizes;
    for (std::size_t i = 0; i < hist_count_.size(); ++i) {
      h.bucket_floor.push_back(i == 0 ? 0 : std::uint64_t{256} << i);
      h.count.push_back(hist_count_[i]);
      h.bytes.push_back(hist_bytes_[i]);
    }
    // Idle byte-seconds of tracked blocks: the ten largest.
    std::vector<std::pair<double, std::uint32_t>> idle;
    for (std::uint32_t b = 0; b < m_.blocks.size(); ++b)
      if (m_.blocks[b].tracked)
        idle.emplace_back(static_cast<double>(m_.blocks[b].requested) *
                              static_cast<double>(IdleNs(m_.blocks[b])), b);
    const std::size_t keep = std::min<std::size_t>(10, idle.size());
    std::partial_sort(idle.begin(), idle.begin() + static_cast<std::ptrdiff_t>(keep), idle.end(),
                      [](const auto& x, const auto& y) { return x.first > y.first; });
    for (std::size_t i = 0; i < keep; ++i) m_.idle_longest.push_back(idle[i].second);
    std::stable_sort(m_.marks.begin(), m_.marks.end(),
                     [](const Mark& a, const Mark& b) { return a.t_ns < b.t_ns; });
    std::stable_sort(m_.ooms.begin(), m_.ooms.end(),
                     [](const Oom& a, const Oom& b) { return a.t_ns < b.t_ns; });
    std::uint64_t unknown = 0, failed = 0, passed = 0;
    for (const DeviceSummary& s : m_.devices) {
      unknown += s.unknown_frees;
      failed += s.failed;
      passed += s.passed_through;
    }
    if (unknown)
      m_.notes.push_back(std::to_string(unknown) + " frees of unknown addresses were ignored");
    if (failed || passed)
      m_.notes.push_back(std::to_string(failed) + " failed and " + std::to_string(passed) +
                         " passed-through (handed to CUDA) calls are counted but not replayed");
    off_.Finish();  // offload figures; drops the tier series when no log has offload records
    if (m_.kernels_total > m_.kernels.size())
      m_.notes.push_back(std::to_string(m_.kernels_total - m_.kernels.size()) +
                         " kernel records past the first " + std::to_string(Model::kMaxKernels) +
                         " are counted, not shown");
  }

  const std::vector<trace::Trace>& logs_;
  Model& m_;
  const std::function<void(double)>& progress_;
  std::uint64_t total_records_ = 0, done_records_ = 0;
  std::vector<std::uint32_t> order_;
  std::vector<Dev> devs_;
  std::vector<std::uint32_t> slot_;
  std::unordered_map<std::int32_t, std::uint32_t> other_slot_;
  std::vector<BlockIdx> idx_;
  std::size_t idx_base_ = 0;
  std::vector<std::uint64_t> hist_count_, hist_bytes_;
  CallSiteTable callsites_;
  std::unordered_map<std::string, std::uint32_t> kernel_name_ids_;  // into m_.kernel_names
  OffloadReplay off_;
  bool proc_moves_ = false;  // the current process has offload records
};

}  // namespace

bool Analyze(const std::vector<trace::Trace>& logs, Model* out, std::string* error,
             const std::function<void(double)>& progress) {
  if (logs.empty()) {
    *error = "no event logs to report on";
    return false;
  }
  Analyzer(logs, out, progress).Run();
  InferKinds(out);
  return true;
}

}  // namespace spillway::report
