// offload_policy_sim.cpp — the pager's victim and prefetch policy on a training-shaped access
// pattern, on the CPU (SimBackend, no GPU): how many bytes it moves per optimizer step against
// the least any policy must move, so that the policy can be tuned without GPU time.
//
// The model (sizes in MiB, scaled down from bench/torch/offload_train.py's `ga`): L layers,
// each with a parameter, a gradient and two optimizer states of P MiB, and an activation of A MiB
// made in the forward pass and freed in the backward pass; K micro-batches per optimizer step.
// Each "launch" records its blocks in the tracker's block index the way the tracker does (issue
// watermark, accesses, then the away blocks brought back through Allocator::on_away), in order:
//   forward, layer i = 0..L-1: allocate A_i; launch(P_i, A_i)
//   backward, layer i = L-1..0: launch(A_i, P_i, G_i); free A_i
//   optimizer step (after K micro-batches): F passes (PyTorch's foreach AdamW makes several,
//   one per foreach operation), each over the layers T at a time:
//   launch(P_i, G_i, M_i, V_i, ... for T layers)
// --autocast 1: as PyTorch under bf16 autocast, the fp32 parameters and gradients are touched
// only by streaming kernels (tracker::KernelStreams): forward launch~(P_i) (the bf16 cast), then
// launch(A_i); backward launch(A_i), then launch~(G_i) (the accumulation); the optimizer's
// passes are streaming too (multi_tensor_apply). Blocks named by a streaming launch may be used
// where they lie (Pager::access_in_place); the bytes so used are counted, with an estimate of
// the step's excess time at the H200's rates (copies 55 GB/s each way, overlapped; ~60 us of
// remapping per 2 MiB page moved; in-place use at ~50 GB/s, serial with the kernels).
// --return-uses X: Pager::set_return_uses (Belady's rule for in-place use).
// --spans 0|1: SPILLWAY_SPANS (allocator/arena.h; default 1, as with offload).
// --span-mib M: SPILLWAY_SPAN_MIB (the size of a span; default 8).
// --drain first|last: SPILLWAY_OFFLOAD_DRAIN (default last). The per-step line counts the
// times the heap made the CPU wait for the streams to reclaim memory.
// --temps 1: each optimizer pass also allocates a temporary of P MiB per layer (a foreach
// operation's result list, as PyTorch's foreach AdamW makes) and frees it after the pass.
// --per-step 1: the bytes moved to the host in each optimizer step, to see a drift, and the
// driver calls of the step (physical allocations created and released, mappings made and
// removed) with what they would cost on the H200's CPU (docs/offload.md, "Driver calls").
// The budget is the peak divided by --ratio. The floor printed is about the least a policy
// must move each way per optimizer step: the excess over the budget taken from the optimizer
// states (idle for K micro-batches: out and back once a step), and past the states, the rest
// streamed once per micro-batch.
//
//   offload_policy_sim [--layers L] [--param-mib P] [--act-mib A] [--accum K] [--steps S]
//                      [--ratio R] [--optim-passes F] [--foreach-layers T] [--max-over-floor X]
//                      [--autocast 0|1] [--return-uses X]
// --max-over-floor: exit 1 when the bytes moved exceed X times the floor (the CPU test suite
// runs a small case as a guard against policy regressions: tests/cpu/CMakeLists.txt).
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "allocator/prim/sim_backend.h"
#include "offload/pager.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/tracker.h"

namespace {

using namespace spillway;
constexpr std::size_t kMiB = std::size_t{1} << 20;

struct Args {
  int layers = 16, accum = 8, steps = 6, passes = 1, foreach = 1;
  std::size_t param_mib = 8, act_mib = 12;
  double ratio = 2.0;
  double max_over_floor = 0;  // 0: no check
  bool autocast = false;
  double return_uses = 1.0;
  bool spans = true, temps = false, per_step = false;
  unsigned span_mib = 0;
  bool drain_last = true;
};

bool Parse(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--layers")
      a->layers = std::atoi(v);
    else if (k == "--accum")
      a->accum = std::atoi(v);
    else if (k == "--steps")
      a->steps = std::atoi(v);
    else if (k == "--param-mib")
      a->param_mib = std::strtoull(v, nullptr, 10);
    else if (k == "--act-mib")
      a->act_mib = std::strtoull(v, nullptr, 10);
    else if (k == "--ratio")
      a->ratio = std::atof(v);
    else if (k == "--optim-passes")
      a->passes = std::atoi(v);
    else if (k == "--foreach-layers")
      a->foreach = std::atoi(v);
    else if (k == "--max-over-floor")
      a->max_over_floor = std::atof(v);
    else if (k == "--autocast")
      a->autocast = std::atoi(v) != 0;
    else if (k == "--return-uses")
      a->return_uses = std::atof(v);
    else if (k == "--spans")
      a->spans = std::atoi(v) != 0;
    else if (k == "--span-mib")
      a->span_mib = static_cast<unsigned>(std::atoi(v));
    else if (k == "--drain" && (std::strcmp(v, "first") == 0 || std::strcmp(v, "last") == 0))
      a->drain_last = std::strcmp(v, "last") == 0;
    else if (k == "--temps")
      a->temps = std::atoi(v) != 0;
    else if (k == "--per-step")
      a->per_step = std::atoi(v) != 0;
    else
      return false;
  }
  return a->layers > 0 && a->accum > 0 && a->steps > 1 && a->param_mib >= 4 && a->act_mib >= 4 &&
         a->ratio >= 1.0 && a->passes > 0 && a->foreach > 0 && a->foreach <= a->layers &&
         a->return_uses > 0;
}

// The driver calls between two snapshots and what they cost on the H200's CPU: about 27 us to
// map a physical allocation and grant access, 17 to unmap, 12 to create and 100 to release,
// per call and nearly whatever its size (bench/offload_bench at 21b1a11).
std::string DriverCalls(const spillway_stats& a, const spillway_stats& b) {
  const auto d = [](std::uint64_t x, std::uint64_t y) { return static_cast<double>(y - x); };
  const double cr = d(a.chunk_create_count, b.chunk_create_count),
               rl = d(a.chunk_release_count, b.chunk_release_count),
               mp = d(a.map_count, b.map_count), um = d(a.unmap_count, b.unmap_count);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%.0f creates, %.0f releases, %.0f maps, %.0f unmaps: %.1f ms of driver calls at "
                "H200 rates",
                cr, rl, mp, um, (27 * mp + 17 * um + 12 * cr + 100 * rl) / 1e3);
  return buf;
}

class Sim {
 public:
  Sim(std::size_t device_memory, std::uint64_t budget, bool spans, unsigned span_mib,
      bool drain_last) {
    prim::SimOptions o;
    o.device_memory = device_memory;
    o.granularity = 2 * kMiB;
    auto b = std::make_unique<prim::SimBackend>(o);
    sim_ = b.get();
    Config c;
    c.budget_bytes = budget;
    c.offload = true;
    c.host_limit_bytes = device_memory * 2;
    c.offload_safety = Config::Safety::kTracked;
    c.spans = spans ? Config::Spans::kOn : Config::Spans::kOff;
    if (span_mib != 0) c.span_mib = span_mib;
    c.offload_drain_last = drain_last;
    alloc_ = std::make_unique<Allocator>(std::move(b), c);
    alloc_->enable_access_tracking();
    stream_ = sim_->create_stream();
  }
  ~Sim() { sim_->synchronize(stream_); }
  void* alloc(std::size_t n) {
    void* p = nullptr;
    if (alloc_->allocate(&p, n, 0, stream_, false, trace::Kind::kApiMalloc) != SPILLWAY_OK) {
      std::fprintf(stderr, "allocation of %zu MiB failed: %s\n", n / kMiB, LastError());
      std::exit(1);
    }
    return p;
  }
  void free(void* p) { alloc_->free(p, FreeMode::kStreamOrdered, stream_, trace::Kind::kApiFree); }
  // One launch naming `blocks`, as the tracker feeds the pager; `streaming`: a streaming
  // kernel's. Blocks it named that are still off the device afterwards were used where they
  // lay: their bytes are added to in_place_bytes.
  void launch(std::initializer_list<void*> blocks, bool streaming = false) {
    launch(std::vector<void*>(blocks), streaming);
  }
  void launch(const std::vector<void*>& blocks, bool streaming = false) {
    tracker::IssueBegin();
    ++seq_;
    std::vector<std::uint64_t> w;
    for (void* p : blocks) w.push_back(reinterpret_cast<std::uint64_t>(p));
    alloc_->block_index()->record(w.data(), w.size(),
                                  tracker::Access{seq_ * 1000, seq_, Stream(), streaming});
    std::vector<std::uint64_t> away;
    if (tracker::BlockIndex::TakeAway(&away))
      alloc_->on_away(away.data(), away.size(), stream_, false, streaming);
    tracker::IssueEnd(seq_);
    if (streaming && pager() != nullptr)
      for (void* p : blocks)
        if (pager()->residency(reinterpret_cast<std::uintptr_t>(p)) == offload::Residency::kHost)
          in_place_bytes += sizes_[p];
  }
  void note_size(void* p, std::size_t n) { sizes_[p] = n; }
  std::uint64_t in_place_bytes = 0;
  offload::Pager* pager() { return alloc_->pager_if_any(0); }
  std::uint64_t reserved() { return stats().reserved_bytes; }
  spillway_stats stats() {
    spillway_stats s{};
    alloc_->stats(0, &s);
    return s;
  }
  // Times the heap's last resort made the CPU wait for the streams (DeviceStats::drains).
  std::uint64_t drains() {
    DeviceHeap* h = nullptr;
    return alloc_->heap(0, &h) == SPILLWAY_OK ? h->stats().drains() : 0;
  }

 private:
  std::uint64_t Stream() const { return reinterpret_cast<std::uint64_t>(stream_); }
  prim::SimBackend* sim_ = nullptr;
  std::unique_ptr<Allocator> alloc_;
  prim::Stream stream_ = nullptr;
  std::uint64_t seq_ = std::uint64_t{1} << 32;
  std::unordered_map<void*, std::size_t> sizes_;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!Parse(argc, argv, &a)) {
    std::fprintf(
        stderr,
        "usage: offload_policy_sim [--layers L] [--param-mib P] [--act-mib A] "
        "[--accum K] [--steps S>1] [--ratio R>=1] [--optim-passes F] "
        "[--foreach-layers T<=L] [--max-over-floor X] [--autocast 0|1] "
        "[--return-uses X>0] [--spans 0|1] [--span-mib M] [--drain first|last] [--temps 0|1] "
        "[--per-step 0|1]\n");
    return 2;
  }
  const std::size_t L = static_cast<std::size_t>(a.layers);
  const std::size_t P = a.param_mib * kMiB, A = a.act_mib * kMiB;
  const std::uint64_t peak = L * (4 * P + A);  // parameters, gradients, states, activations
  const auto budget = static_cast<std::uint64_t>(static_cast<double>(peak) / a.ratio);
  Sim sim(2 * peak + 256 * kMiB, budget, a.spans, a.span_mib, a.drain_last);
  std::vector<void*> par(L), grad(L), m(L), v(L), act(L);
  for (std::size_t i = 0; i < L; ++i) {
    par[i] = sim.alloc(P);
    grad[i] = sim.alloc(P);
    m[i] = sim.alloc(P);
    v[i] = sim.alloc(P);
    for (void* p : {par[i], grad[i], m[i], v[i]}) sim.note_size(p, P);
  }
  if (sim.pager() != nullptr) sim.pager()->set_return_uses(a.return_uses);
  const bool ac = a.autocast;
  std::uint64_t to0 = 0, from0 = 0, stalls0 = 0, prefetch0 = 0, in_place0 = 0, returns0 = 0;
  std::uint64_t max_reserved = 0, last_to = 0;
  spillway_stats last = sim.stats(), first{};
  std::uint64_t last_drains = 0, first_drains = 0;
  for (int step = 0; step < a.steps; ++step) {
    if (step == 1) {
      first = sim.stats();
      first_drains = sim.drains();
    }
    if (step == 1 && sim.pager() != nullptr) {  // the first step is warm-up
      const auto& k = sim.pager()->counters();
      to0 = k.bytes_to_host.load();
      from0 = k.bytes_from_host.load();
      stalls0 = k.stalls.load();
      prefetch0 = k.prefetches.load();
      returns0 = k.in_place_returns.load();
      in_place0 = sim.in_place_bytes;
    }
    for (int mb = 0; mb < a.accum; ++mb) {
      for (std::size_t i = 0; i < L; ++i) {
        if (ac) sim.launch({par[i]}, true);  // the bf16 cast
        act[i] = sim.alloc(A);
        if (ac)
          sim.launch({act[i]});  // a GEMM with the bf16 copy
        else
          sim.launch({par[i], act[i]});
      }
      for (std::size_t i = L; i-- > 0;) {
        if (ac) {
          sim.launch({act[i]});
          sim.launch({grad[i]}, true);  // the accumulation
        } else {
          sim.launch({act[i], par[i], grad[i]});
        }
        sim.free(act[i]);
      }
      max_reserved = std::max(max_reserved, sim.reserved());
    }
    const auto T = static_cast<std::size_t>(a.foreach);
    for (int pass = 0; pass < a.passes; ++pass) {
      std::vector<void*> temps;
      for (std::size_t i = 0; i < L; i += T) {
        std::vector<void*> named;
        for (std::size_t j = i; j < std::min(L, i + T); ++j) {
          named.insert(named.end(), {par[j], grad[j], m[j], v[j]});
          if (a.temps) {
            temps.push_back(sim.alloc(P));
            named.push_back(temps.back());
          }
        }
        sim.launch(named, ac);
      }
      for (void* t : temps) sim.free(t);
    }
    if (a.per_step && sim.pager() != nullptr) {
      const std::uint64_t now = sim.pager()->counters().bytes_to_host.load();
      const spillway_stats s = sim.stats();
      std::printf("step %d: %.0f MiB to host; %s; %llu waits for the GPU\n", step,
                  static_cast<double>(now - last_to) / kMiB, DriverCalls(last, s).c_str(),
                  static_cast<unsigned long long>(sim.drains() - last_drains));
      last_to = now;
      last = s;
      last_drains = sim.drains();
    }
  }
  offload::Pager* pg = sim.pager();
  const double steps = a.steps - 1;
  std::printf("driver calls after the first step: %s; %llu waits for the GPU\n",
              DriverCalls(first, sim.stats()).c_str(),
              static_cast<unsigned long long>(sim.drains() - first_drains));
  const double to = pg ? static_cast<double>(pg->counters().bytes_to_host.load() - to0) / steps : 0;
  const double from =
      pg ? static_cast<double>(pg->counters().bytes_from_host.load() - from0) / steps : 0;
  // The floor each way: what exceeds the budget, taken from the optimizer states (idle for K
  // micro-batches: they leave and come back once a step); past the states, the rest streams once
  // per micro-batch.
  const double states = static_cast<double>(2 * L * P);
  const double excess = static_cast<double>(peak) - static_cast<double>(budget);
  const double floor = excess <= states ? excess : states + (excess - states) * a.accum;
  std::printf(
      "model: %d layers, %zu MiB parameters each, %zu MiB activations, %d micro-batches; "
      "peak %.0f MiB, budget %.0f MiB (footprint/budget %.2f); max reserved %.0f MiB\n",
      a.layers, a.param_mib, a.act_mib, a.accum, static_cast<double>(peak) / kMiB,
      static_cast<double>(budget) / kMiB, a.ratio, static_cast<double>(max_reserved) / kMiB);
  std::printf(
      "per optimizer step: %.0f MiB to host, %.0f MiB back; floor %.0f MiB each way; "
      "moved/floor %.2f / %.2f; stalls %.1f, prefetches %.1f\n",
      to / kMiB, from / kMiB, floor / kMiB, to / floor, from / floor,
      pg ? static_cast<double>(pg->counters().stalls.load() - stalls0) / steps : 0,
      pg ? static_cast<double>(pg->counters().prefetches.load() - prefetch0) / steps : 0);
  if (ac && pg != nullptr) {
    const double in_place = static_cast<double>(sim.in_place_bytes - in_place0) / steps;
    const double returns =
        static_cast<double>(pg->counters().in_place_returns.load() - returns0) / steps;
    // At the H200's rates: copies overlap each way; each 2 MiB page moved is remapped (~60 us
    // of driver calls, on the launch path); in-place bytes cross the link inside the kernels.
    const double ms = std::max(to, from) / 55e9 * 1e3 + (to + from) / (2.0 * kMiB) * 60e-3 +
                      in_place / 50e9 * 1e3;
    std::printf(
        "autocast: %.0f MiB used in place per optimizer step, %.1f returns; estimated "
        "excess %.1f ms a step at H200 rates (return_uses %.2f)\n",
        in_place / kMiB, returns, ms, a.return_uses);
  }
  for (std::size_t i = 0; i < L; ++i)
    for (void* p : {par[i], grad[i], m[i], v[i]}) sim.free(p);
  if (a.max_over_floor > 0 &&
      (pg == nullptr || to / floor > a.max_over_floor || from / floor > a.max_over_floor)) {
    std::fprintf(stderr, "FAIL: moved %.2f / %.2f times the floor, more than %.2f\n", to / floor,
                 from / floor, a.max_over_floor);
    return 1;
  }
  return 0;
}
