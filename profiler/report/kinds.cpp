// kinds.cpp — the kinds of tensor (see kinds.h and docs/profiler.md, "Kinds of tensor").
//
// Per process: (1) optimizer steps are the bursts of the touch pattern, epochs of 32 tracked
// operations in which at least half as many long-lived blocks (live for at least half of the
// process's log: a process may free everything at exit) are
// touched as in the busiest epoch (a foreach/fused optimizer updates every parameter and state
// within a few launches); bursts up to 4 epochs apart merge. (2) Between two bursts lie one
// or more forward and backward passes (gradient accumulation); each pass's turning point is the
// moment allocated bytes peak in it. (3) Each tracked block is labelled from its lifetime
// against bursts and turning points.
#include "profiler/report/kinds.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace spillway::report {

const char* KindName(TensorKind k) {
  switch (k) {
    case TensorKind::kParameter: return "parameter";
    case TensorKind::kGradient: return "gradient";
    case TensorKind::kOptimizerState: return "optimizer_state";
    case TensorKind::kActivation: return "activation";
    case TensorKind::kTemporary: return "temporary";
    case TensorKind::kUnknown: break;
  }
  return "unknown";
}

namespace {

constexpr int kEpochShift = 5;  // matches tracker::kTouchEpochShift (32 operations)
// Busy epochs this close belong to one optimizer step (a foreach AdamW step makes several
// passes over its tensor lists, with quieter epochs between them).
constexpr std::uint64_t kMergeEpochs = 4;
constexpr std::uint64_t kInf = std::numeric_limits<std::uint64_t>::max();

struct Burst {
  std::uint64_t e0 = 0, e1 = 0;        // epochs, inclusive
  std::uint64_t t0 = kInf, t1 = 0;     // first and last touch time inside
  std::uint64_t op0 = kInf, op1 = 0;   // first and last operation of a long-lived block's touch
};

class ProcessKinds {
 public:
  ProcessKinds(Model& m, std::uint32_t p) : m_(m), p_(p) {}

  // False when the process has no touches.
  bool Run() {
    Collect();
    if (touches_.empty()) return false;
    FindBursts();
    RefineBursts();
    FindTurningPoints();
    for (std::uint32_t b = lo_; b < hi_; ++b)
      if (m_.blocks[b].process == p_ && (m_.blocks[b].tracked || Range(b).first != Range(b).second))
        m_.blocks[b].kind = Classify(b);
    return true;
  }
  std::size_t bursts() const { return bursts_.size(); }

 private:
  void Collect() {
    lo_ = static_cast<std::uint32_t>(m_.blocks.size());
    hi_ = 0;
    for (std::uint32_t b = 0; b < m_.blocks.size(); ++b)
      if (m_.blocks[b].process == p_) {
        lo_ = std::min(lo_, b);
        hi_ = b + 1;
      }
    if (hi_ <= lo_) return;
    std::uint64_t start = kInf, stop = 0;
    for (std::uint32_t b = lo_; b < hi_; ++b)
      if (m_.blocks[b].process == p_) {
        start = std::min(start, m_.blocks[b].alloc_ns);
        stop = std::max(stop, m_.blocks[b].free_ns);
      }
    long_.assign(hi_ - lo_, 0);
    for (std::uint32_t b = lo_; b < hi_; ++b) {
      const Block& blk = m_.blocks[b];
      long_[b - lo_] = blk.process == p_ && 2 * (blk.free_ns - blk.alloc_ns) >= stop - start;
    }
    for (std::uint32_t i = 0; i < m_.touches.size(); ++i) {
      const Touch& t = m_.touches[i];
      if (t.block >= lo_ && t.block < hi_ && m_.blocks[t.block].process == p_)
        touches_.push_back(i);
    }
    // Per block, its touches (indices into m_.touches), in time order.
    first_.assign(hi_ - lo_ + 1, 0);
    for (std::uint32_t i : touches_) ++first_[m_.touches[i].block - lo_ + 1];
    for (std::size_t b = 1; b < first_.size(); ++b) first_[b] += first_[b - 1];
    by_block_.resize(touches_.size());
    std::vector<std::uint32_t> fill(first_.begin(), first_.end() - 1);
    for (std::uint32_t i : touches_) by_block_[fill[m_.touches[i].block - lo_]++] = i;
    for (std::size_t b = 0; b + 1 < first_.size(); ++b)
      std::sort(by_block_.begin() + first_[b], by_block_.begin() + first_[b + 1],
                [&](std::uint32_t x, std::uint32_t y) {
                  return m_.touches[x].t_ns < m_.touches[y].t_ns;
                });
  }

  std::pair<const std::uint32_t*, const std::uint32_t*> Range(std::uint32_t b) const {
    const std::uint32_t* base = by_block_.data();
    return {base + first_[b - lo_], base + first_[b - lo_ + 1]};
  }
  void FindBursts() {
    std::uint64_t max_epoch = 0;
    for (std::uint32_t i : touches_) max_epoch = std::max(max_epoch, m_.touches[i].op >> kEpochShift);
    std::vector<std::uint32_t> count(max_epoch + 1, 0);
    for (std::uint32_t i : touches_) {
      const Touch& t = m_.touches[i];
      if (long_[t.block - lo_]) ++count[t.op >> kEpochShift];
    }
    const std::uint32_t peak = *std::max_element(count.begin(), count.end());
    if (peak < 4) return;  // too few long-lived blocks to see an optimizer
    const std::uint32_t threshold = (peak + 1) / 2;
    for (std::uint64_t e = 0; e <= max_epoch; ++e) {
      if (count[e] < threshold) continue;
      if (!bursts_.empty() && e <= bursts_.back().e1 + kMergeEpochs) {
        bursts_.back().e1 = e;
      } else {
        Burst b;
        b.e0 = b.e1 = e;
        bursts_.push_back(b);
      }
    }
    for (std::uint32_t i : touches_) {
      const Touch& t = m_.touches[i];
      if (Burst* b = BurstOfEpoch(t.op >> kEpochShift)) {
        b->t0 = std::min(b->t0, t.t_ns);
        b->t1 = std::max(b->t1, t.t_ns);
        if (long_[t.block - lo_]) {
          b->op0 = std::min(b->op0, t.op);
          b->op1 = std::max(b->op1, t.op);
        }
      }
    }
  }

  // Narrows each burst to the operations that touched optimizer states: long-lived blocks all
  // of whose touches lie in burst epochs. The epochs (32 operations) are coarse: the last
  // backward launches often share the optimizer's first epoch. Without such blocks (an
  // optimizer without state) the epoch bounds stay.
  void RefineBursts() {
    std::vector<char> state(hi_ - lo_, 0);
    for (std::uint32_t b = lo_; b < hi_; ++b) {
      if (!long_[b - lo_]) continue;
      auto [x, y] = Range(b);
      bool all = x != y;
      for (auto it = x; it != y && all; ++it)
        all = BurstOfEpoch(m_.touches[*it].op >> kEpochShift) != nullptr;
      state[b - lo_] = all;
    }
    std::vector<Burst> fine(bursts_.size());
    for (std::uint32_t i : touches_) {
      const Touch& t = m_.touches[i];
      if (!state[t.block - lo_]) continue;
      Burst* b = BurstOfEpoch(t.op >> kEpochShift);
      if (b == nullptr) continue;
      Burst& f = fine[static_cast<std::size_t>(b - bursts_.data())];
      f.op0 = std::min(f.op0, t.op);
      f.op1 = std::max(f.op1, t.op);
      f.t0 = std::min(f.t0, t.t_ns);
      f.t1 = std::max(f.t1, t.t_ns);
    }
    for (std::size_t k = 0; k < bursts_.size(); ++k)
      if (fine[k].op0 != kInf) {
        bursts_[k].op0 = fine[k].op0;
        bursts_[k].op1 = fine[k].op1;
        bursts_[k].t0 = fine[k].t0;
        bursts_[k].t1 = fine[k].t1;
      }
  }

  Burst* BurstOfEpoch(std::uint64_t e) {
    auto it = std::upper_bound(bursts_.begin(), bursts_.end(), e,
                               [](std::uint64_t v, const Burst& b) { return v < b.e0; });
    if (it == bursts_.begin()) return nullptr;
    --it;
    return e <= it->e1 ? &*it : nullptr;
  }
  // Bursts are in order and do not overlap, in operations and in time: both lookups search.
  bool InBurst(const Touch& t) const {
    auto it = std::lower_bound(bursts_.begin(), bursts_.end(), t.op,
                               [](const Burst& b, std::uint64_t op) { return b.op1 < op; });
    return it != bursts_.end() && t.op >= it->op0;
  }
  // Index k of the gap between bursts k-1 and k holding time t (bursts().size() after the
  // last), or -1 when t lies inside a burst.
  long GapOf(std::uint64_t t) const {
    auto it = std::lower_bound(bursts_.begin(), bursts_.end(), t,
                               [](const Burst& b, std::uint64_t v) { return b.t1 < v; });
    if (it == bursts_.end()) return static_cast<long>(bursts_.size());
    return t < it->t0 ? static_cast<long>(it - bursts_.begin()) : -1;
  }

  // Turning points of each gap: when the process's allocated bytes peak, once per forward and
  // backward pass. With gradient accumulation a gap holds several passes: each is a "mountain"
  // of allocated bytes, begun when they rise past 3/4 of the way from the gap's lowest to its
  // highest figure after having been under 1/4 of it, and ended when they fall under 1/4 again;
  // its turning point is its highest moment. A gap with one pass has one mountain, whose
  // turning point is the gap's peak.
  void FindTurningPoints() {
    std::vector<std::pair<std::uint64_t, std::int64_t>> ev;
    for (std::uint32_t b = lo_; b < hi_; ++b) {
      const Block& blk = m_.blocks[b];
      if (blk.process != p_) continue;
      ev.emplace_back(blk.alloc_ns, static_cast<std::int64_t>(blk.requested));
      if (!blk.live_at_end) ev.emplace_back(blk.free_ns, -static_cast<std::int64_t>(blk.requested));
    }
    std::sort(ev.begin(), ev.end());
    const std::size_t gaps = bursts_.size() + 1;
    std::vector<std::int64_t> lowest(gaps, std::numeric_limits<std::int64_t>::max()), highest(gaps, -1);
    std::int64_t cur = 0;
    for (const auto& [t, d] : ev) {
      cur += d;
      const long k = GapOf(t);
      if (k < 0) continue;
      lowest[static_cast<std::size_t>(k)] = std::min(lowest[static_cast<std::size_t>(k)], cur);
      highest[static_cast<std::size_t>(k)] = std::max(highest[static_cast<std::size_t>(k)], cur);
    }
    turns_.assign(gaps, {});
    std::vector<char> inside(gaps, 0), armed(gaps, 1);
    std::vector<std::int64_t> best(gaps, -1);
    std::vector<std::uint64_t> best_t(gaps, kInf);
    cur = 0;
    for (const auto& [t, d] : ev) {
      cur += d;
      const long kl = GapOf(t);
      if (kl < 0) continue;
      const auto k = static_cast<std::size_t>(kl);
      const std::int64_t span = highest[k] - lowest[k];
      const std::int64_t low = lowest[k] + span / 4, high = highest[k] - span / 4;
      if (!inside[k] && armed[k] && cur >= high) {
        inside[k] = 1;
        armed[k] = 0;
        best[k] = -1;
      }
      if (inside[k] && cur > best[k]) {
        best[k] = cur;
        best_t[k] = t;
      }
      if (cur <= low) {
        if (inside[k]) turns_[k].push_back(best_t[k]);
        inside[k] = 0;
        armed[k] = 1;
      }
    }
    for (std::size_t k = 0; k < gaps; ++k)
      if (inside[k]) turns_[k].push_back(best_t[k]);  // the log ends on a mountain
    turn_.assign(gaps, kInf);
    for (std::size_t k = 0; k < gaps; ++k)
      if (!turns_[k].empty()) turn_[k] = turns_[k].front();
  }

  // How many of its gap's turning points the block was made before and freed after.
  std::size_t TurningPointsSpanned(long k, const Block& blk) const {
    std::size_t n = 0;
    for (std::uint64_t turn : turns_[static_cast<std::size_t>(k)])
      n += blk.alloc_ns <= turn && blk.free_ns > turn;
    return n;
  }

  TensorKind Classify(std::uint32_t b) const {
    const Block& blk = m_.blocks[b];
    auto [tb, te] = Range(b);
    if (tb == te) return TensorKind::kTemporary;  // never touched: a workspace at best
    if (bursts_.empty()) {  // no optimizer seen: long-lived blocks are parameters
      if (long_[b - lo_]) return TensorKind::kParameter;
      return TensorKind::kTemporary;
    }
    std::size_t overlapped = 0;
    for (const Burst& u : bursts_)
      if (u.t1 >= blk.alloc_ns && u.t0 <= blk.free_ns) ++overlapped;
    // Long-lived (parameters, states, kept gradients): across three optimizer steps or more, or
    // two when the log has only two. (A block across two steps can be a batch kept one
    // iteration too long.)
    if (overlapped >= std::min<std::size_t>(3, bursts_.size())) {
      // Touches before the first optimizer step are left out: they include initialization
      // (an optimizer fills its state with zeros before its first update).
      bool all_in_bursts = true, forward = false;
      for (auto it = tb; it != te; ++it) {
        const Touch& t = m_.touches[*it];
        if (t.op <= bursts_.front().op1 || InBurst(t)) continue;
        all_in_bursts = false;
        const long k = GapOf(t.t_ns);
        if (k >= 0 && t.t_ns <= turn_[static_cast<std::size_t>(k)]) forward = true;
      }
      if (all_in_bursts) return TensorKind::kOptimizerState;
      return forward ? TensorKind::kParameter : TensorKind::kGradient;
    }
    const long k = GapOf(blk.alloc_ns);
    if (k < 0) return TensorKind::kTemporary;  // made inside an optimizer step
    if (static_cast<std::size_t>(k) < bursts_.size()) {
      // Written in backward, read by the next optimizer step, freed after it: a gradient.
      const Burst& next = bursts_[static_cast<std::size_t>(k)];
      bool in_next = false, before_next = false;
      for (auto it = tb; it != te; ++it) {
        const std::uint64_t op = m_.touches[*it].op;
        if (op >= next.op0 && op <= next.op1) in_next = true;
        if (op < next.op0) before_next = true;
      }
      if (in_next && before_next && blk.free_ns >= next.t0) return TensorKind::kGradient;
      // Across two passes or more (gradient accumulation) and into the step: an activation
      // lives within one pass; this is a gradient (whose touch by the step the log may have
      // merged into backward's last epoch).
      if (TurningPointsSpanned(k, blk) >= 2 && blk.free_ns >= next.t0) return TensorKind::kGradient;
    }
    if (TurningPointsSpanned(k, blk) != 0) return TensorKind::kActivation;
    return TensorKind::kTemporary;
  }

  Model& m_;
  const std::uint32_t p_;
  std::uint32_t lo_ = 0, hi_ = 0;
  std::vector<std::uint32_t> touches_;   // this process's, indices into m_.touches
  std::vector<char> long_;               // per block (from lo_): live half the log or more
  std::vector<std::uint32_t> first_;     // per block (from lo_): start in by_block_
  std::vector<std::uint32_t> by_block_;
  std::vector<Burst> bursts_;
  std::vector<std::uint64_t> turn_;      // per gap: its first turning point (kInf: none)
  std::vector<std::vector<std::uint64_t>> turns_;  // per gap: every turning point, in order
};

// Bytes of each kind of the blocks of (process, device) at each of the given times (sorted).
std::vector<std::array<std::uint64_t, kTensorKinds>> KindBytesAt(
    const Model& m, std::uint32_t process, std::int32_t device,
    const std::vector<std::uint64_t>& times) {
  struct Ev {
    std::uint64_t t;
    std::int64_t d;
    std::uint8_t k;
  };
  std::vector<Ev> ev;
  for (const Block& b : m.blocks) {
    if (b.process != process || b.device != device) continue;
    const auto k = static_cast<std::uint8_t>(b.kind);
    ev.push_back({b.alloc_ns, static_cast<std::int64_t>(b.requested), k});
    if (!b.live_at_end) ev.push_back({b.free_ns, -static_cast<std::int64_t>(b.requested), k});
  }
  std::sort(ev.begin(), ev.end(), [](const Ev& a, const Ev& b) { return a.t < b.t; });
  std::vector<std::array<std::uint64_t, kTensorKinds>> out(times.size());
  std::array<std::int64_t, kTensorKinds> cur{};
  std::size_t j = 0;
  for (std::size_t i = 0; i < times.size(); ++i) {
    for (; j < ev.size() && ev[j].t <= times[i]; ++j) cur[ev[j].k] += ev[j].d;
    for (int k = 0; k < kTensorKinds; ++k)
      out[i][static_cast<std::size_t>(k)] =
          static_cast<std::uint64_t>(std::max<std::int64_t>(0, cur[static_cast<std::size_t>(k)]));
  }
  return out;
}

}  // namespace

void InferKinds(Model* mp) {
  Model& m = *mp;
  if (m.touches.empty()) return;
  std::size_t bursts = 0;
  bool any = false;
  for (std::uint32_t p = 0; p < m.processes.size(); ++p) {
    ProcessKinds pk(m, p);
    if (pk.Run()) {
      any = true;
      bursts += pk.bursts();
    }
  }
  if (!any) return;
  m.iterations = static_cast<std::uint32_t>(bursts);
  m.kinds_method = bursts != 0
      ? std::to_string(bursts) + " optimizer steps found in the access pattern"
      : "no optimizer step found in the access pattern: long-lived blocks taken as parameters";
  m.kind_series.clear();
  for (const Series& s : m.series) {
    std::vector<std::uint64_t> times;
    times.reserve(s.samples.size());
    for (const Sample& x : s.samples) times.push_back(x.t_ns);
    m.kind_series.push_back(KindBytesAt(m, s.process, s.device, times));
  }
  for (DeviceSummary& d : m.devices) {
    auto at = KindBytesAt(m, d.process, d.device, {d.peak_allocated_ns});
    d.kinds_at_peak = at.front();
  }
}

}  // namespace spillway::report
