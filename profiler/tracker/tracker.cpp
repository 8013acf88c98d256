// tracker.cpp — the CUPTI tracker (see tracker.h). The decoding (ScanLaunch, ScanDirect) is
// plain C++ tested on the CPU; the CUPTI glue below it is small and runs on the GPU only.
#include "profiler/tracker/tracker.h"

#include <cuda.h>
#include <cupti.h>  // callbacks, driver cbids and the parameter structs (generated_cuda_meta.h)
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <iterator>
#include <vector>

#include "allocator/prim/backend.h"
#include "profiler/clock.h"
#include "allocator/prim/cuda_driver.h"
#include "profiler/tracker/graph_map.h"

// NVTX parameter structs (types only: NVTX_NO_IMPL keeps NVTX's own implementation out).
#define NVTX_NO_IMPL
#include <generated_nvtx_meta.h>

namespace spillway::tracker {

CounterValues Read(const Counters& c) {
  CounterValues v;
  v.launches = c.launches.load(std::memory_order_relaxed);
  v.by_param_info = c.by_param_info.load(std::memory_order_relaxed);
  v.by_extra = c.by_extra.load(std::memory_order_relaxed);
  v.undecodable = c.undecodable.load(std::memory_order_relaxed);
  v.hiding = c.hiding.load(std::memory_order_relaxed);
  v.words = c.words.load(std::memory_order_relaxed);
  v.hits = c.hits.load(std::memory_order_relaxed);
  v.copies = c.copies.load(std::memory_order_relaxed);
  v.graph_launches = c.graph_launches.load(std::memory_order_relaxed);
  v.streams_created = c.streams_created.load(std::memory_order_relaxed);
  v.captured = c.captured.load(std::memory_order_relaxed);
  v.uncaptured = c.uncaptured.load(std::memory_order_relaxed);
  v.graph_nodes = c.graph_nodes.load(std::memory_order_relaxed);
  v.graph_hits = c.graph_hits.load(std::memory_order_relaxed);
  return v;
}

namespace {
// Per-thread scratch for one launch's words (reused: no allocation per launch once warm).
thread_local std::vector<std::uint64_t> t_words;

void Lookup(BlockIndex& index, const std::uint64_t* w, std::size_t n, const Access& a,
            Counters& c) {
  c.words.fetch_add(n, std::memory_order_relaxed);
  if (n == 0) return;
  const std::size_t hits = index.record(w, n, a);
  if (hits != 0) c.hits.fetch_add(hits, std::memory_order_relaxed);
}

void CountDecoded(Decoded how, Counters& c) {
  switch (how) {
    case Decoded::kParamInfo: c.by_param_info.fetch_add(1, std::memory_order_relaxed); break;
    case Decoded::kExtra: c.by_extra.fetch_add(1, std::memory_order_relaxed); break;
    case Decoded::kUndecodable: c.undecodable.fetch_add(1, std::memory_order_relaxed); break;
  }
}

// The words of one launch that may be inside a live block (BlockIndex::maybe_inside), kept on
// the stack and looked up in batches under the index's lock: no allocation, and no lock at all
// for a launch none of whose words can be inside a block.
class Gather {
 public:
  Gather(BlockIndex& index, const Access& a) : index_(index), a_(a) {
    std::uint64_t hi = 0;
    index.range(&lo_, &hi);
    span_ = hi > lo_ ? hi - lo_ : 0;
  }
  void operator()(std::uint64_t word) {
    // Branchless: most words are not addresses, and which ones are is unpredictable.
    w_[n_] = word;
    n_ += word - lo_ < span_ ? 1 : 0;
    if (n_ == kBatch) [[unlikely]]
      flush();
  }
  void flush() {
    if (n_ != 0) hits_ += index_.record(w_, n_, a_);
    n_ = 0;
  }
  std::size_t hits() const { return hits_; }

 private:
  static constexpr std::size_t kBatch = 128;
  BlockIndex& index_;
  const Access& a_;
  std::uint64_t lo_ = 0, span_ = 0;
  std::size_t n_ = 0, hits_ = 0;
  std::uint64_t w_[kBatch];
};

template <class Visit>
std::size_t Packed(const ParamLayout& l, const void* buf, std::size_t size, Visit&& visit) {
  return ScanPacked(&l, buf, size, visit);
}
template <class Visit>
std::size_t Packed(const ScanPlan& p, const void* buf, std::size_t size, Visit&& visit) {
  return ScanPacked(p, buf, size, visit);
}

// The words of a launch given to `visit`: *words their number. ParamLayout or ScanPlan.
template <class Layout, class Visit>
Decoded Decode(const Layout* layout, std::size_t nparams, void* const* params, void* const* extra,
               Visit&& visit, std::size_t* words) {
  *words = 0;
  if (params != nullptr) {
    if (layout == nullptr) return Decoded::kUndecodable;  // sizes unknown
    *words = ScanKernelParams(*layout, params, visit);
    return Decoded::kParamInfo;
  }
  if (extra != nullptr) {
    const void* buf = nullptr;
    std::size_t size = 0;
    if (!ParseExtra(extra, &buf, &size)) return Decoded::kUndecodable;
    // Without a layout: every word of the buffer.
    *words = layout != nullptr ? Packed(*layout, buf, size, visit) : ScanArgument(buf, size, visit);
    return Decoded::kExtra;
  }
  // A kernel without arguments.
  return layout != nullptr && nparams == 0 ? Decoded::kParamInfo : Decoded::kUndecodable;
}

template <class Layout>
Decoded ScanWith(BlockIndex& index, const Layout* layout, std::size_t nparams, void* const* params,
                 void* const* extra, const Access& a, Counters& c) {
  Gather g(index, a);
  std::size_t words = 0;
  const Decoded how = Decode(layout, nparams, params, extra, g, &words);
  g.flush();
  c.launches.fetch_add(1, std::memory_order_relaxed);
  CountDecoded(how, c);
  c.words.fetch_add(words, std::memory_order_relaxed);
  if (g.hits() != 0) c.hits.fetch_add(g.hits(), std::memory_order_relaxed);
  return how;
}
}  // namespace

Decoded DecodeLaunch(const ParamLayout* layout, void* const* params, void* const* extra,
                     std::vector<std::uint64_t>* words, Counters& c) {
  c.launches.fetch_add(1, std::memory_order_relaxed);
  std::size_t n = 0;
  const Decoded how = Decode(
      layout, layout != nullptr ? layout->size() : 0, params, extra,
      [words](std::uint64_t w) { words->push_back(w); }, &n);
  CountDecoded(how, c);
  return how;
}

Decoded ScanLaunch(BlockIndex& index, const ParamLayout* layout, void* const* params,
                   void* const* extra, const Access& a, Counters& c) {
  return ScanWith(index, layout, layout != nullptr ? layout->size() : 0, params, extra, a, c);
}

Decoded ScanLaunchPlan(BlockIndex& index, const KernelLayout* k, void* const* params,
                       void* const* extra, const Access& a, Counters& c) {
  return ScanWith(index, k != nullptr ? &k->plan : nullptr, k != nullptr ? k->plan.params : 0,
                  params, extra, a, c);
}

// ---- LayoutCache -------------------------------------------------------------------------------

bool KernelHidesPointers(const char* name) {
  return name != nullptr &&
         (std::strstr(name, "ncclDevKernel") != nullptr || std::strstr(name, "ncclKernel") != nullptr);
}

bool KernelStreams(const char* name) {
  if (name == nullptr || std::strstr(name, "index_elementwise_kernel") != nullptr)
    return false;  // gathers and scatters through an index: random access
  return std::strstr(name, "elementwise_kernel") != nullptr ||
         std::strstr(name, "multi_tensor_apply_kernel") != nullptr;
}

KernelTraits KernelTraitsOf(const char* name) {
  return {KernelHidesPointers(name), KernelStreams(name)};
}

LayoutCache::LayoutCache(Query query, void* ctx, TraitsQuery traits)
    : query_(query), traits_(traits), ctx_(ctx) {
  tables_.push_back(std::make_unique<Table>(1024));
  table_.store(tables_.back().get(), std::memory_order_release);
}
LayoutCache::~LayoutCache() = default;

std::size_t LayoutCache::size() const {
  std::lock_guard<std::mutex> lk(mu_);
  return entries_.size();
}

void LayoutCache::Put(const Table& t, const Entry* e) {
  std::size_t i = Hash(e->handle) & t.mask;
  while (t.slots[i].load(std::memory_order_relaxed) != nullptr) i = (i + 1) & t.mask;
  t.slots[i].store(e, std::memory_order_release);
}

const KernelLayout* LayoutCache::get_slow(const void* handle) {
  auto fresh = std::make_unique<Entry>();
  fresh->handle = handle;
  fresh->known = query_(ctx_, handle, &fresh->layout.slots);  // no lock held: a driver call
  if (!fresh->known) fresh->layout.slots.clear();
  fresh->layout.plan = CompileScanPlan(fresh->layout.slots);
  if (traits_ != nullptr) {
    const KernelTraits t = traits_(ctx_, handle);
    fresh->layout.hides = t.hides;
    fresh->layout.streams = t.streams;
  }
  std::lock_guard<std::mutex> lk(mu_);
  const Table* t = table_.load(std::memory_order_relaxed);
  for (std::size_t i = Hash(handle) & t->mask;; i = (i + 1) & t->mask) {  // another thread's?
    const Entry* e = t->slots[i].load(std::memory_order_relaxed);
    if (e == nullptr) break;
    if (e->handle == handle) return e->known ? &e->layout : nullptr;
  }
  const Entry* e = entries_.emplace_back(std::move(fresh)).get();
  if (2 * entries_.size() > t->mask + 1) {  // keep the load <= 1/2: a table twice the size
    tables_.push_back(std::make_unique<Table>(2 * (t->mask + 1)));
    for (const auto& x : entries_) Put(*tables_.back(), x.get());
    table_.store(tables_.back().get(), std::memory_order_release);
  } else {
    Put(*t, e);
  }
  return e->known ? &e->layout : nullptr;
}


namespace {
thread_local std::uint64_t t_last_seq = 0;  // the sequence number this thread took last
// The issue watermark (tracker.h): operations between IssueBegin and IssueEnd, and the newest
// sequence number of an operation known to be enqueued.
std::atomic<std::uint64_t> g_in_flight{0};
std::atomic<std::uint64_t> g_issued{0};
thread_local bool t_issuing = false;
}  // namespace

Access LaunchPath::next(std::uint64_t stream) {
  t_last_seq = seq_.fetch_add(1, std::memory_order_relaxed) + 1;
  return Access{MonotonicNs(), t_last_seq, stream};
}

void IssueBegin() {
  if (t_issuing) return;
  t_issuing = true;
  g_in_flight.fetch_add(1, std::memory_order_seq_cst);
}

void IssueEnd(std::uint64_t seq) {
  if (!t_issuing) return;
  t_issuing = false;
  std::uint64_t cur = g_issued.load(std::memory_order_relaxed);
  while (cur < seq && !g_issued.compare_exchange_weak(cur, seq, std::memory_order_seq_cst)) {
  }
  g_in_flight.fetch_sub(1, std::memory_order_seq_cst);
}

void IssueEnd() { IssueEnd(t_last_seq); }

bool Issuing() { return t_issuing; }

bool IssuedWatermark(std::uint64_t* seq) {
  // In flight first: an operation that begins after this load takes a newer number than any
  // enqueued one read below, and one that ends meanwhile was enqueued before our caller's fence.
  const std::uint64_t mine = t_issuing ? 1 : 0;
  if (g_in_flight.load(std::memory_order_seq_cst) > mine) return false;
  *seq = g_issued.load(std::memory_order_seq_cst);
  return *seq != 0;
}

std::size_t CollectHits(BlockIndex& index, const std::uint64_t* w, std::size_t n,
                        std::vector<std::uint64_t>* out, Counters& c) {
  c.words.fetch_add(n, std::memory_order_relaxed);
  std::size_t added = 0;
  if (n == 0) return 0;
  auto lk = index.read_lock();
  for (std::size_t i = 0; i < n; ++i) {
    if (index.find(w[i]) != nullptr) {
      out->push_back(w[i]);
      ++added;
    }
  }
  return added;
}

std::size_t RecordGraphLaunch(BlockIndex& index, const std::vector<std::uint64_t>* addrs,
                              const Access& a, Counters& c) {
  c.graph_launches.fetch_add(1, std::memory_order_relaxed);
  if (addrs == nullptr || addrs->empty()) return 0;
  thread_local std::vector<Block*> blocks;  // reused: no allocation per launch once warm
  blocks.clear();
  std::size_t n = 0;
  {
    auto lk = index.read_lock();
    for (std::uint64_t w : *addrs)
      if (Block* b = index.find(w)) blocks.push_back(b);
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    for (Block* b : blocks) index.record_on(*b, a);  // under the lock that found them
    n = blocks.size();
  }
  if (n != 0) c.graph_hits.fetch_add(n, std::memory_order_relaxed);
  return n;
}

void ScanDirect(BlockIndex& index, const std::uint64_t* ptrs, std::size_t n, const Access& a,
                Counters& c) {
  c.copies.fetch_add(1, std::memory_order_relaxed);
  Lookup(index, ptrs, n, a, c);
}

// ---- CUPTI glue (compiled here, run on the GPU machine only) ----------------------------------

namespace {

using SubscribeV2Fn = CUptiResult (*)(CUpti_SubscriberHandle*, CUpti_CallbackFunc, void*,
                                      CUpti_SubscriberParams*);
using SubscribeFn = CUptiResult (*)(CUpti_SubscriberHandle*, CUpti_CallbackFunc, void*);
using UnsubscribeFn = CUptiResult (*)(CUpti_SubscriberHandle);
using EnableCallbackFn = CUptiResult (*)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
                                         CUpti_CallbackId);
using GetResultStringFn = CUptiResult (*)(CUptiResult, const char**);

constexpr std::size_t kMaxParams = 4096;  // bound on the layout query loop

// Iterates get(handle, i, ...) from i = 0 until it fails. *first_error: the result at index 0.
template <class Get, class Handle>
bool Query(Get get, Handle h, ParamLayout* out, CUresult* first_error) {
  out->clear();
  for (std::size_t i = 0; i < kMaxParams; ++i) {
    std::size_t off = 0, size = 0;
    CUresult r = get(h, i, &off, &size);
    if (r != CUDA_SUCCESS) {
      if (i == 0) *first_error = r;
      return i != 0;
    }
    out->push_back(ParamSlot{off, size});
  }
  return true;
}

// LayoutCache::Query through the driver (`ctx`: the prim::CudaDriver). Once per handle.
bool QueryLayout(void* ctx, const void* handle, ParamLayout* out) {
  const auto* d = static_cast<const prim::CudaDriver*>(ctx);
  auto f = reinterpret_cast<CUfunction>(const_cast<void*>(handle));
  CUresult r1 = CUDA_ERROR_NOT_SUPPORTED, r2 = CUDA_ERROR_NOT_SUPPORTED;
  if (d->cuKernelGetParamInfo != nullptr &&
      Query(d->cuKernelGetParamInfo, reinterpret_cast<CUkernel>(f), out, &r1))
    return true;
  if (d->cuFuncGetParamInfo != nullptr && Query(d->cuFuncGetParamInfo, f, out, &r2)) return true;
  // Both failed at index 0: "index out of range" from either means no arguments; an invalid
  // handle from both means we cannot tell.
  out->clear();
  return r1 == CUDA_ERROR_INVALID_VALUE || r2 == CUDA_ERROR_INVALID_VALUE;
}

// LayoutCache::TraitsQuery through the driver: the kernel's name (a CUkernel in launch callbacks
// and hooks, else a CUfunction). A kernel without a name to read has no traits.
KernelTraits QueryTraits(void* ctx, const void* handle) {
  const auto* d = static_cast<const prim::CudaDriver*>(ctx);
  const char* name = nullptr;
  auto h = const_cast<void*>(handle);
  if (d->cuKernelGetName != nullptr &&
      d->cuKernelGetName(&name, static_cast<CUkernel>(h)) == CUDA_SUCCESS && name != nullptr)
    return KernelTraitsOf(name);
  name = nullptr;
  if (d->cuFuncGetName != nullptr &&
      d->cuFuncGetName(&name, static_cast<CUfunction>(h)) == CUDA_SUCCESS && name != nullptr)
    return KernelTraitsOf(name);
  return {};
}

// SPILLWAY_TRACK_DIAG (tracker.h): kEmpty, the callback returns at once; kTime, it times itself.
enum class Diag { kNone, kEmpty, kTime };

struct State {
  State(const prim::CudaDriver* d, BlockIndex* index)
      : drv(d), path(index, &QueryLayout, const_cast<prim::CudaDriver*>(d), &QueryTraits) {}
  const prim::CudaDriver* drv;
  Diag diag = Diag::kNone;
  std::atomic<std::uint64_t> callback_ns{0}, callback_calls{0};  // Diag::kTime
  LaunchPath path;  // index, layouts, sequence numbers, counters
  GraphMap graphs;
  NvtxMarks* nvtx = nullptr;  // null: NVTX callbacks not enabled
  // Launch hooks (tracker.h, "Launches through the preload's hooks").
  CUpti_SubscriberHandle sub = nullptr;
  EnableCallbackFn enable = nullptr;
  bool allow_hooks_only = true;  // SPILLWAY_TRACK_LAUNCHES is not `cupti`
  std::atomic<std::uint64_t> confirmed{0};  // CUPTI launch callbacks inside a hooked launch
  std::atomic<std::uint64_t> missed{0};     // CUPTI launch callbacks no hook took
  std::atomic<int> launch_cb{0};            // LaunchCallbacks
  std::mutex launch_cb_mu;                  // changes of launch_cb away from kChecking
  Counters& counters() { return path.counters(); }
  BlockIndex& index() { return path.index(); }
};

// Whether CUPTI's launch callbacks are on: kChecking, on while the hooks are checked against
// them; kHooksOnly, turned off (every launch in the check went through a hook); kCupti, on for
// good (a launch bypassed the hooks, the check is disabled, or the pager needs every launch).
enum LaunchCallbacks { kChecking = 0, kHooksOnly = 1, kCupti = 2 };
constexpr std::uint64_t kHookCheckLaunches = 10000;

State* g_state = nullptr;  // set once, before any callback is enabled; never freed
std::atomic<State*> g_hook_state{nullptr};  // g_state for the launch hooks, once tracking runs
thread_local bool t_hooked = false;         // this thread is inside a hooked launch
std::atomic<bool> g_paused{false};          // SetPaused
std::atomic<bool> g_pause_forbidden{false};  // KeepCuptiLaunchCallbacks
void* g_cupti_lib = nullptr;  // the libcupti handle of a running tracker
std::mutex g_start_mu;
int g_start_result = -1;  // -1 not tried, 0 failed, 1 active

const KernelLayout* LayoutOf(State& st, CUfunction f) {
  return st.path.layouts().get(f);
}
const ParamLayout* SlotsOf(const KernelLayout* k) {
  return k != nullptr ? &k->slots : nullptr;
}

// The stream value recorded: a null stream of a per-thread-default-stream (_ptsz/_ptds) call
// is the per-thread stream.
std::uint64_t StreamOf(CUstream s, bool per_thread) {
  auto v = reinterpret_cast<std::uintptr_t>(s);
  if (v == 0 && per_thread) v = reinterpret_cast<std::uintptr_t>(CU_STREAM_PER_THREAD);
  return v;
}

Access Next(State& st, CUstream s, bool per_thread) {
  return st.path.next(StreamOf(s, per_thread));
}

std::uint64_t Key(const void* handle) { return reinterpret_cast<std::uintptr_t>(handle); }

// Whether an operation on `stream` is being captured into a graph: kKnown, a stream seen to
// begin capturing; kJoined, another stream the driver says is capturing (joined to a capture
// through an event). Costs one relaxed load when no capture is in progress: the driver is
// asked (cuStreamIsCapturing) only while a capture is in progress.
enum class Capture { kNo, kKnown, kJoined };
Capture CaptureOf(State& st, std::uint64_t stream) {
  if (!st.graphs.any_capturing()) [[likely]]
    return Capture::kNo;
  if (st.graphs.capturing(stream)) return Capture::kKnown;
  // Not the legacy stream (0, CU_STREAM_LEGACY): asking about it during a capture in a
  // non-relaxed mode is an error; work on it could not be captured anyway.
  if (stream <= 1 || st.drv->cuStreamIsCapturing == nullptr) return Capture::kNo;
  CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
  if (st.drv->cuStreamIsCapturing(reinterpret_cast<CUstream>(stream), &cs) == CUDA_SUCCESS &&
      cs == CU_STREAM_CAPTURE_STATUS_ACTIVE)
    return Capture::kJoined;
  return Capture::kNo;
}

// Keeps the words of w[0, n) inside live blocks for the capture (not recorded as accesses).
void Keep(State& st, Capture c, std::uint64_t stream, const std::uint64_t* w, std::size_t n) {
  thread_local std::vector<std::uint64_t> hits;
  hits.clear();
  CollectHits(st.index(), w, n, &hits, st.counters());
  const bool kept = c == Capture::kKnown ? st.graphs.capture(stream, hits.data(), hits.size())
                                         : st.graphs.capture_sole(hits.data(), hits.size());
  (kept ? st.counters().captured : st.counters().uncaptured)
      .fetch_add(1, std::memory_order_relaxed);
}

std::atomic<ResidencyHook> g_residency_hook{nullptr};
void* g_residency_ctx = nullptr;

// Hands the away blocks this thread's operation named to the pager (see SetResidencyHook).
// False when one could not be made readable.
// `streaming`: the operation is a streaming kernel's launch (ResidencyHook).
bool DeliverAway(std::uint64_t stream, bool streaming = false) {
  thread_local std::vector<std::uint64_t> away;
  if (!BlockIndex::TakeAway(&away)) [[likely]]
    return true;
  bool ok = true;
  if (ResidencyHook h = g_residency_hook.load(std::memory_order_acquire))
    ok = h(g_residency_ctx, away.data(), away.size(), stream, false, streaming);
  away.clear();
  return ok;
}

bool OnLaunch(State& st, CUfunction f, CUstream s, bool pt, void** params, void** extra);

// A CUPTI launch callback (at API entry): false when a preload hook already took this launch.
bool CuptiLaunch(State& st) {
  if (g_paused.load(std::memory_order_relaxed)) [[unlikely]]
    return false;  // neither recorded nor counted against the hooks
  if (t_hooked) {
    st.confirmed.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  st.missed.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// False when a block the launch names could not be made readable (DeliverAway).
bool OnLaunch(State& st, CUfunction f, CUstream s, bool pt, void** params, void** extra) {
  IssueBegin();  // ended after the launch is enqueued (the hook's end, or CUPTI's exit callback)
  const std::uint64_t stream = StreamOf(s, pt);
  if (const Capture c = CaptureOf(st, stream); c != Capture::kNo) [[unlikely]] {
    std::vector<std::uint64_t>& w = t_words;
    w.clear();
    DecodeLaunch(SlotsOf(LayoutOf(st, f)), params, extra, &w, st.counters());
    Keep(st, c, stream, w.data(), w.size());
    return true;
  }
  KernelTraits traits;
  if (st.path.launch(f, stream, params, extra, &traits) == Decoded::kUndecodable || traits.hides)
      [[unlikely]] {
    if (traits.hides) {
      st.counters().hiding.fetch_add(1, std::memory_order_relaxed);
      static std::once_flag said;
      std::call_once(said, [] {
        std::fprintf(stderr,
                     "spillway: an NCCL kernel was launched: it reaches its buffers through "
                     "pointers kept in device memory, which the tracker cannot see (its accesses "
                     "are missing from the records); offload, if on, uses strict safety from now "
                     "on\n");
      });
    }
    if (ResidencyHook h = g_residency_hook.load(std::memory_order_acquire))
      h(g_residency_ctx, nullptr, 0, stream, true, false);
  }
  return DeliverAway(stream, traits.streams);
}

void OnDirect(State& st, CUdeviceptr a, CUdeviceptr b, CUstream s, bool pt) {
  if (g_paused.load(std::memory_order_relaxed)) [[unlikely]]
    return;
  IssueBegin();  // ended by CUPTI's exit callback
  const std::uint64_t w[2] = {a, b};
  const std::size_t n = b != 0 ? 2 : 1;
  const std::uint64_t stream = StreamOf(s, pt);
  if (const Capture c = CaptureOf(st, stream); c != Capture::kNo) [[unlikely]] {
    st.counters().copies.fetch_add(1, std::memory_order_relaxed);
    Keep(st, c, stream, w, n);
    return;
  }
  Access acc = Next(st, s, pt);
  acc.streaming = true;  // a copy or a set goes through each byte once
  ScanDirect(st.index(), w, n, acc, st.counters());
  DeliverAway(stream);
}

void OnGraphLaunch(State& st, CUgraphExec e, CUstream s, bool pt) {
  if (g_paused.load(std::memory_order_relaxed)) [[unlikely]]
    return;
  IssueBegin();  // ended by CUPTI's exit callback
  const GraphMap::Addrs addrs = st.graphs.exec_addrs(Key(e));
  const std::uint64_t stream = StreamOf(s, pt);
  if (const Capture c = CaptureOf(st, stream); c != Capture::kNo) [[unlikely]] {
    // Launched into a capture: a child graph of the graph being captured.
    st.counters().graph_launches.fetch_add(1, std::memory_order_relaxed);
    if (addrs) Keep(st, c, stream, addrs->data(), addrs->size());
    return;
  }
  RecordGraphLaunch(st.index(), addrs.get(), Next(st, s, pt), st.counters());
  DeliverAway(stream);
}

// An explicit kernel node added to `g` (cuGraphAddKernelNode, cuGraphAddNode): its argument
// words inside live blocks, kept for the graph. `f` may be null with `k` set (node params v2).
void OnKernelNode(State& st, CUgraph g, CUfunction f, CUkernel k, void** params, void** extra) {
  CUfunction h = f != nullptr ? f : reinterpret_cast<CUfunction>(k);
  if (h == nullptr) return;
  const ParamLayout* layout = SlotsOf(LayoutOf(st, h));
  Counters scratch;  // a node is not a launch: only graph_nodes is counted
  std::vector<std::uint64_t>& w = t_words;
  w.clear();
  if (DecodeLaunch(layout, params, extra, &w, scratch) == Decoded::kUndecodable) return;
  thread_local std::vector<std::uint64_t> hits;
  hits.clear();
  CollectHits(st.index(), w.data(), w.size(), &hits, st.counters());
  st.graphs.add_to_graph(Key(g), hits.data(), hits.size());
  st.counters().graph_nodes.fetch_add(1, std::memory_order_relaxed);
}

void OnMemsetNode(State& st, CUgraph g, CUdeviceptr dst) {
  thread_local std::vector<std::uint64_t> hits;
  hits.clear();
  const std::uint64_t w = dst;
  CollectHits(st.index(), &w, 1, &hits, st.counters());
  st.graphs.add_to_graph(Key(g), hits.data(), hits.size());
  st.counters().graph_nodes.fetch_add(1, std::memory_order_relaxed);
}

void OnAddNode(State& st, CUgraph g, const CUgraphNodeParams* p) {
  if (p == nullptr) return;
  switch (p->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
      OnKernelNode(st, g, p->kernel.func, p->kernel.kern, p->kernel.kernelParams,
                   p->kernel.extra);
      break;
    case CU_GRAPH_NODE_TYPE_MEMSET: OnMemsetNode(st, g, p->memset.dst); break;
    case CU_GRAPH_NODE_TYPE_GRAPH:
      st.graphs.add_graph_to_graph(Key(p->graph.graph), Key(g));
      st.counters().graph_nodes.fetch_add(1, std::memory_order_relaxed);
      break;
    default: break;  // memcpy and the other kinds: not decoded
  }
}

// Callbacks at API exit (results are known): capture, graph building, instantiation.
void OnExit(State& st, CUpti_CallbackId cbid, const CUpti_CallbackData* cb) {
  const void* fp = cb->functionParams;
  const bool ok = cb->functionReturnValue != nullptr &&
                  *static_cast<const CUresult*>(cb->functionReturnValue) == CUDA_SUCCESS;
#define SPW_P(name) (*static_cast<const name##_params*>(fp))
#define SPW_CASE(name) case CUPTI_DRIVER_TRACE_CBID_##name:
// An instantiation: the exec gets the graph's addresses. (These paste `name` directly: cuda.h
// defines some names as macros, e.g. cuGraphInstantiate as cuGraphInstantiateWithFlags.)
#define SPW_INSTANTIATE(name)                                            \
  case CUPTI_DRIVER_TRACE_CBID_##name: {                                 \
    const auto& p = *static_cast<const name##_params*>(fp);              \
    if (ok && p.phGraphExec != nullptr)                                  \
      st.graphs.instantiate(Key(p.hGraph), Key(*p.phGraphExec));         \
    break;                                                               \
  }
// A capture begins on the call's stream.
#define SPW_BEGIN(name, pt)                                              \
  case CUPTI_DRIVER_TRACE_CBID_##name: {                                 \
    const auto& p = *static_cast<const name##_params*>(fp);              \
    if (ok) st.graphs.begin_capture(StreamOf(p.hStream, pt));            \
    break;                                                               \
  }
  switch (cbid) {
    SPW_BEGIN(cuStreamBeginCapture, false)
    SPW_BEGIN(cuStreamBeginCapture_ptsz, true)
    SPW_BEGIN(cuStreamBeginCapture_v2, false)
    SPW_BEGIN(cuStreamBeginCapture_v2_ptsz, true)
    SPW_BEGIN(cuStreamBeginCaptureToGraph, false)
    SPW_BEGIN(cuStreamBeginCaptureToGraph_ptsz, true)
    // The capture ends whatever the result; a failed one (invalidated) gives no graph.
    SPW_CASE(cuStreamEndCapture) {
      const auto& p = SPW_P(cuStreamEndCapture);
      st.graphs.end_capture(StreamOf(p.hStream, false),
                            ok && p.phGraph != nullptr ? Key(*p.phGraph) : 0);
      break;
    }
    SPW_CASE(cuStreamEndCapture_ptsz) {
      const auto& p = SPW_P(cuStreamEndCapture_ptsz);
      st.graphs.end_capture(StreamOf(p.hStream, true),
                            ok && p.phGraph != nullptr ? Key(*p.phGraph) : 0);
      break;
    }
    SPW_INSTANTIATE(cuGraphInstantiate)
    SPW_INSTANTIATE(cuGraphInstantiate_v2)
    SPW_INSTANTIATE(cuGraphInstantiateWithFlags)
    SPW_INSTANTIATE(cuGraphInstantiateWithParams)
    SPW_INSTANTIATE(cuGraphInstantiateWithParams_ptsz)
    SPW_CASE(cuGraphClone) {
      const auto& p = SPW_P(cuGraphClone);
      if (ok && p.phGraphClone != nullptr)
        st.graphs.add_graph_to_graph(Key(p.originalGraph), Key(*p.phGraphClone));
      break;
    }
    SPW_CASE(cuGraphAddKernelNode) {
      const auto& p = SPW_P(cuGraphAddKernelNode);
      if (ok && p.nodeParams != nullptr)
        OnKernelNode(st, p.hGraph, p.nodeParams->func, nullptr, p.nodeParams->kernelParams,
                     p.nodeParams->extra);
      break;
    }
    SPW_CASE(cuGraphAddKernelNode_v2) {
      const auto& p = SPW_P(cuGraphAddKernelNode_v2);
      if (ok && p.nodeParams != nullptr)
        OnKernelNode(st, p.hGraph, p.nodeParams->func, p.nodeParams->kern,
                     p.nodeParams->kernelParams, p.nodeParams->extra);
      break;
    }
    SPW_CASE(cuGraphAddMemsetNode) {
      const auto& p = SPW_P(cuGraphAddMemsetNode);
      if (ok && p.memsetParams != nullptr) OnMemsetNode(st, p.hGraph, p.memsetParams->dst);
      break;
    }
    SPW_CASE(cuGraphAddChildGraphNode) {
      const auto& p = SPW_P(cuGraphAddChildGraphNode);
      if (ok) {
        st.graphs.add_graph_to_graph(Key(p.childGraph), Key(p.hGraph));
        st.counters().graph_nodes.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    }
    SPW_CASE(cuGraphAddNode) {
      const auto& p = SPW_P(cuGraphAddNode);
      if (ok) OnAddNode(st, p.hGraph, p.nodeParams);
      break;
    }
    SPW_CASE(cuGraphAddNode_v2) {
      const auto& p = SPW_P(cuGraphAddNode_v2);
      if (ok) OnAddNode(st, p.hGraph, p.nodeParams);
      break;
    }
    default: break;
  }
#undef SPW_BEGIN
#undef SPW_INSTANTIATE
#undef SPW_CASE
#undef SPW_P
}

// The label of an NVTX event's attributes: ASCII text, else "" (NvtxMarks writes "nvtx").
const char* LabelOf(const nvtxEventAttributes_t* a) {
  if (a == nullptr || a->messageType != NVTX_MESSAGE_TYPE_ASCII) return "";
  return a->message.ascii;
}

void OnNvtx(State& st, CUpti_CallbackId cbid, const CUpti_NvtxData* d) {
  NvtxMarks* m = st.nvtx;
  if (m == nullptr) return;
  if (cbid == CUPTI_CBID_NVTX_nvtxRangePop) {  // no arguments: its parameters may be null
    m->pop();
    return;
  }
  const void* fp = d->functionParams;
  if (fp == nullptr) return;
  // nvtxRangeStart* return the range id (its end names it).
  const auto* id = static_cast<const nvtxRangeId_t*>(d->functionReturnValue);
#define SPW_P(name) (*static_cast<const name##_params*>(fp))
  switch (cbid) {
    case CUPTI_CBID_NVTX_nvtxMarkA: m->mark(SPW_P(nvtxMarkA).message); break;
    case CUPTI_CBID_NVTX_nvtxMarkEx: m->mark(LabelOf(SPW_P(nvtxMarkEx).eventAttrib)); break;
    case CUPTI_CBID_NVTX_nvtxRangePushA: m->push(SPW_P(nvtxRangePushA).message); break;
    case CUPTI_CBID_NVTX_nvtxRangePushEx:
      m->push(LabelOf(SPW_P(nvtxRangePushEx).eventAttrib));
      break;
    case CUPTI_CBID_NVTX_nvtxRangeStartA:
      if (id != nullptr) m->start(*id, SPW_P(nvtxRangeStartA).message);
      break;
    case CUPTI_CBID_NVTX_nvtxRangeStartEx:
      if (id != nullptr) m->start(*id, LabelOf(SPW_P(nvtxRangeStartEx).eventAttrib));
      break;
    case CUPTI_CBID_NVTX_nvtxRangeEnd: m->end(SPW_P(nvtxRangeEnd).id); break;
    default: break;
  }
#undef SPW_P
}

void Dispatch(State& st, CUpti_CallbackDomain domain, CUpti_CallbackId cbid, const void* cbdata) {
  if (prim::t_internal_call) return;  // Spillway's own driver calls (the pager's copies)
  if (domain == CUPTI_CB_DOMAIN_NVTX) {
    OnNvtx(st, cbid, static_cast<const CUpti_NvtxData*>(cbdata));
    return;
  }
  if (domain != CUPTI_CB_DOMAIN_DRIVER_API) return;
  const auto* cb = static_cast<const CUpti_CallbackData*>(cbdata);
  if (cb->functionParams == nullptr) return;
  if (cb->callbackSite == CUPTI_API_EXIT) {
    IssueEnd();  // the operation begun at this call's entry is enqueued (no-op for others)
    OnExit(st, cbid, cb);
    return;
  }
  if (cb->callbackSite != CUPTI_API_ENTER) return;
  const void* fp = cb->functionParams;
#define SPW_P(name) (*static_cast<const name##_params*>(fp))
#define SPW_CASE(name) case CUPTI_DRIVER_TRACE_CBID_##name:
  switch (cbid) {
    // Kernel launches.
    SPW_CASE(cuLaunchKernel) {
      if (!CuptiLaunch(st)) break;
      const auto& p = SPW_P(cuLaunchKernel);
      OnLaunch(st, p.f, p.hStream, false, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchKernel_ptsz) {
      if (!CuptiLaunch(st)) break;
      const auto& p = SPW_P(cuLaunchKernel_ptsz);
      OnLaunch(st, p.f, p.hStream, true, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchKernelEx) {
      if (!CuptiLaunch(st)) break;
      const auto& p = SPW_P(cuLaunchKernelEx);
      OnLaunch(st, p.f, p.config ? p.config->hStream : nullptr, false, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchKernelEx_ptsz) {
      if (!CuptiLaunch(st)) break;
      const auto& p = SPW_P(cuLaunchKernelEx_ptsz);
      OnLaunch(st, p.f, p.config ? p.config->hStream : nullptr, true, p.kernelParams, p.extra);
      break;
    }
    SPW_CASE(cuLaunchCooperativeKernel) {
      if (!CuptiLaunch(st)) break;
      const auto& p = SPW_P(cuLaunchCooperativeKernel);
      OnLaunch(st, p.f, p.hStream, false, p.kernelParams, nullptr);
      break;
    }
    SPW_CASE(cuLaunchCooperativeKernel_ptsz) {
      if (!CuptiLaunch(st)) break;
      const auto& p = SPW_P(cuLaunchCooperativeKernel_ptsz);
      OnLaunch(st, p.f, p.hStream, true, p.kernelParams, nullptr);
      break;
    }
    // Copies: device pointers only (a host side is passed as 0).
    SPW_CASE(cuMemcpy) { const auto& p = SPW_P(cuMemcpy); OnDirect(st, p.dst, p.src, nullptr, false); break; }
    SPW_CASE(cuMemcpy_ptds) { const auto& p = SPW_P(cuMemcpy_ptds); OnDirect(st, p.dst, p.src, nullptr, true); break; }
    SPW_CASE(cuMemcpyAsync) { const auto& p = SPW_P(cuMemcpyAsync); OnDirect(st, p.dst, p.src, p.hStream, false); break; }
    SPW_CASE(cuMemcpyAsync_ptsz) { const auto& p = SPW_P(cuMemcpyAsync_ptsz); OnDirect(st, p.dst, p.src, p.hStream, true); break; }
    SPW_CASE(cuMemcpyHtoD_v2) { const auto& p = SPW_P(cuMemcpyHtoD_v2); OnDirect(st, p.dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemcpyHtoD_v2_ptds) { const auto& p = SPW_P(cuMemcpyHtoD_v2_ptds); OnDirect(st, p.dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemcpyDtoH_v2) { const auto& p = SPW_P(cuMemcpyDtoH_v2); OnDirect(st, p.srcDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemcpyDtoH_v2_ptds) { const auto& p = SPW_P(cuMemcpyDtoH_v2_ptds); OnDirect(st, p.srcDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemcpyDtoD_v2) { const auto& p = SPW_P(cuMemcpyDtoD_v2); OnDirect(st, p.dstDevice, p.srcDevice, nullptr, false); break; }
    SPW_CASE(cuMemcpyDtoD_v2_ptds) { const auto& p = SPW_P(cuMemcpyDtoD_v2_ptds); OnDirect(st, p.dstDevice, p.srcDevice, nullptr, true); break; }
    SPW_CASE(cuMemcpyHtoDAsync_v2) { const auto& p = SPW_P(cuMemcpyHtoDAsync_v2); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemcpyHtoDAsync_v2_ptsz) { const auto& p = SPW_P(cuMemcpyHtoDAsync_v2_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemcpyDtoHAsync_v2) { const auto& p = SPW_P(cuMemcpyDtoHAsync_v2); OnDirect(st, p.srcDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemcpyDtoHAsync_v2_ptsz) { const auto& p = SPW_P(cuMemcpyDtoHAsync_v2_ptsz); OnDirect(st, p.srcDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemcpyDtoDAsync_v2) { const auto& p = SPW_P(cuMemcpyDtoDAsync_v2); OnDirect(st, p.dstDevice, p.srcDevice, p.hStream, false); break; }
    SPW_CASE(cuMemcpyDtoDAsync_v2_ptsz) { const auto& p = SPW_P(cuMemcpyDtoDAsync_v2_ptsz); OnDirect(st, p.dstDevice, p.srcDevice, p.hStream, true); break; }
    // Sets.
    SPW_CASE(cuMemsetD8_v2) { OnDirect(st, SPW_P(cuMemsetD8_v2).dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemsetD16_v2) { OnDirect(st, SPW_P(cuMemsetD16_v2).dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemsetD32_v2) { OnDirect(st, SPW_P(cuMemsetD32_v2).dstDevice, 0, nullptr, false); break; }
    SPW_CASE(cuMemsetD8_v2_ptds) { OnDirect(st, SPW_P(cuMemsetD8_v2_ptds).dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemsetD16_v2_ptds) { OnDirect(st, SPW_P(cuMemsetD16_v2_ptds).dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemsetD32_v2_ptds) { OnDirect(st, SPW_P(cuMemsetD32_v2_ptds).dstDevice, 0, nullptr, true); break; }
    SPW_CASE(cuMemsetD8Async) { const auto& p = SPW_P(cuMemsetD8Async); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemsetD16Async) { const auto& p = SPW_P(cuMemsetD16Async); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemsetD32Async) { const auto& p = SPW_P(cuMemsetD32Async); OnDirect(st, p.dstDevice, 0, p.hStream, false); break; }
    SPW_CASE(cuMemsetD8Async_ptsz) { const auto& p = SPW_P(cuMemsetD8Async_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemsetD16Async_ptsz) { const auto& p = SPW_P(cuMemsetD16Async_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    SPW_CASE(cuMemsetD32Async_ptsz) { const auto& p = SPW_P(cuMemsetD32Async_ptsz); OnDirect(st, p.dstDevice, 0, p.hStream, true); break; }
    // Graphs: each launch records an access on the blocks its exec's addresses are in.
    SPW_CASE(cuGraphLaunch) {
      const auto& p = SPW_P(cuGraphLaunch);
      OnGraphLaunch(st, p.hGraph, p.hStream, false);
      break;
    }
    SPW_CASE(cuGraphLaunch_ptsz) {
      const auto& p = SPW_P(cuGraphLaunch_ptsz);
      OnGraphLaunch(st, p.hGraphExec, p.hStream, true);
      break;
    }
    SPW_CASE(cuGraphDestroy) { st.graphs.destroy_graph(Key(SPW_P(cuGraphDestroy).hGraph)); break; }
    SPW_CASE(cuGraphExecDestroy) {
      st.graphs.destroy_exec(Key(SPW_P(cuGraphExecDestroy).hGraphExec));
      break;
    }
    SPW_CASE(cuStreamCreate)
    SPW_CASE(cuStreamCreateWithPriority) {
      st.counters().streams_created.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    default: break;
  }
#undef SPW_CASE
#undef SPW_P
}

void CUPTIAPI Callback(void* userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                       const void* cbdata) {
  if (userdata == nullptr || cbdata == nullptr) return;
  State& st = *static_cast<State*>(userdata);
  if (st.diag == Diag::kNone) [[likely]] {
    Dispatch(st, domain, cbid, cbdata);
    return;
  }
  if (st.diag == Diag::kEmpty) return;  // CUPTI's own cost alone
  const std::uint64_t t0 = MonotonicNs();     // Diag::kTime
  Dispatch(st, domain, cbid, cbdata);
  st.callback_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  st.callback_calls.fetch_add(1, std::memory_order_relaxed);
}

// The launch callbacks (turned off once the preload's hooks are known to see every launch),
// then exactly the other callbacks handled above (enabling more costs time per call).
constexpr CUpti_CallbackId kLaunchCallbacks[] = {
    CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernel_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx, CUPTI_DRIVER_TRACE_CBID_cuLaunchKernelEx_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel,
    CUPTI_DRIVER_TRACE_CBID_cuLaunchCooperativeKernel_ptsz,
};
constexpr CUpti_CallbackId kCallbacks[] = {
    CUPTI_DRIVER_TRACE_CBID_cuMemcpy, CUPTI_DRIVER_TRACE_CBID_cuMemcpy_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyAsync, CUPTI_DRIVER_TRACE_CBID_cuMemcpyAsync_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2, CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoD_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2, CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoH_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2, CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoD_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyHtoDAsync_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoHAsync_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemcpyDtoDAsync_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2, CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2, CUPTI_DRIVER_TRACE_CBID_cuMemsetD8_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD16_v2_ptds, CUPTI_DRIVER_TRACE_CBID_cuMemsetD32_v2_ptds,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async, CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async, CUPTI_DRIVER_TRACE_CBID_cuMemsetD8Async_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemsetD16Async_ptsz, CUPTI_DRIVER_TRACE_CBID_cuMemsetD32Async_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch, CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuStreamCreate, CUPTI_DRIVER_TRACE_CBID_cuStreamCreateWithPriority,
    // Graphs (graph_map.h): destruction at entry, the rest at exit (OnExit).
    CUPTI_DRIVER_TRACE_CBID_cuGraphDestroy, CUPTI_DRIVER_TRACE_CBID_cuGraphExecDestroy,
    CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture, CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2,
    CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCapture_v2_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph,
    CUPTI_DRIVER_TRACE_CBID_cuStreamBeginCaptureToGraph_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture, CUPTI_DRIVER_TRACE_CBID_cuStreamEndCapture_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiate, CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiate_v2,
    CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiateWithFlags,
    CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiateWithParams,
    CUPTI_DRIVER_TRACE_CBID_cuGraphInstantiateWithParams_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuGraphClone, CUPTI_DRIVER_TRACE_CBID_cuGraphAddKernelNode,
    CUPTI_DRIVER_TRACE_CBID_cuGraphAddKernelNode_v2, CUPTI_DRIVER_TRACE_CBID_cuGraphAddMemsetNode,
    CUPTI_DRIVER_TRACE_CBID_cuGraphAddChildGraphNode, CUPTI_DRIVER_TRACE_CBID_cuGraphAddNode,
    CUPTI_DRIVER_TRACE_CBID_cuGraphAddNode_v2,
};

// The NVTX calls handled in OnNvtx (enabled only with a mark sink).
constexpr CUpti_CallbackId kNvtxCallbacks[] = {
    CUPTI_CBID_NVTX_nvtxMarkA,       CUPTI_CBID_NVTX_nvtxMarkEx,
    CUPTI_CBID_NVTX_nvtxRangePushA,  CUPTI_CBID_NVTX_nvtxRangePushEx,
    CUPTI_CBID_NVTX_nvtxRangePop,    CUPTI_CBID_NVTX_nvtxRangeStartA,
    CUPTI_CBID_NVTX_nvtxRangeStartEx, CUPTI_CBID_NVTX_nvtxRangeEnd,
};

// The libraries tried, in order (SPILLWAY_CUPTI_LIB alone when set).
std::vector<std::string> CuptiCandidates() {
  if (const char* p = std::getenv("SPILLWAY_CUPTI_LIB"); p != nullptr && *p != '\0') return {p};
  return {"libcupti.so.13", "libcupti.so", "/usr/local/cuda/lib64/libcupti.so.13",
          "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13"};
}

void* OpenCupti(std::string* why) {
  const std::vector<std::string> names = CuptiCandidates();
  std::string errors;
  for (const std::string& n : names) {
    if (void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL)) return h;
    const char* e = dlerror();
    if (!errors.empty()) errors += "; ";
    errors += e != nullptr ? e : n + ": cannot load";
  }
  *why = "cannot load " + names.front() + ": " + errors;
  return nullptr;
}

std::string CuptiError(GetResultStringFn str, CUptiResult r) {
  const char* s = nullptr;
  if (str != nullptr) str(r, &s);
  return "CUPTI error " + std::to_string(static_cast<int>(r)) + (s ? std::string(" ") + s : "");
}

// Subscribes and enables the callbacks. False with *why.
bool Start(BlockIndex* index, MarkSink marks, void* ctx, bool cupti_launches,
           std::string* why) {
  void* lib = OpenCupti(why);
  if (lib == nullptr) return false;
  auto sym = [lib](const char* name) { return prim::RealDlsym(lib, name); };
  auto subscribe_v2 = reinterpret_cast<SubscribeV2Fn>(sym("cuptiSubscribe_v2"));
  auto subscribe = reinterpret_cast<SubscribeFn>(sym("cuptiSubscribe"));
  auto unsubscribe = reinterpret_cast<UnsubscribeFn>(sym("cuptiUnsubscribe"));
  auto enable = reinterpret_cast<EnableCallbackFn>(sym("cuptiEnableCallback"));
  auto result_string = reinterpret_cast<GetResultStringFn>(sym("cuptiGetResultString"));
  if ((subscribe_v2 == nullptr && subscribe == nullptr) || enable == nullptr ||
      unsubscribe == nullptr) {
    *why = "libcupti lacks cuptiSubscribe/cuptiEnableCallback";
    return false;
  }
  std::string err;
  const prim::CudaDriver* drv = prim::LoadCudaDriver(&err);
  if (drv == nullptr) {
    *why = err;
    return false;
  }
  auto* st = new State(drv, index);  // never freed: callbacks may run until the process ends
  if (const char* d = std::getenv("SPILLWAY_TRACK_DIAG"); d != nullptr && *d != '\0') {
    if (std::strcmp(d, "empty") == 0) {
      st->diag = Diag::kEmpty;
    } else if (std::strcmp(d, "time") == 0) {
      st->diag = Diag::kTime;
    } else {
      std::fprintf(stderr, "spillway: SPILLWAY_TRACK_DIAG=%s ignored (empty or time)\n", d);
    }
  }
  CUpti_SubscriberHandle sub = nullptr;
  CUptiResult r;
  char holder[CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN + 1] = {};
  if (subscribe_v2 != nullptr) {
    CUpti_SubscriberParams params{};
    params.structSize = CUpti_SubscriberParams_STRUCT_SIZE;
    params.subscriberName = "Spillway";
    params.oldSubscriberName = holder;
    params.oldSubscriberSize = CUPTI_OLD_SUBSCRIBER_NAME_MIN_LEN;
    r = subscribe_v2(&sub, Callback, st, &params);
  } else {
    r = subscribe(&sub, Callback, st);
  }
  if (r != CUPTI_SUCCESS) {
    *why = CuptiError(result_string, r);
    if (r == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED)
      *why += std::string(": another tool holds CUPTI") + (holder[0] ? std::string(" (") + holder + ")" : "");
    delete st;
    return false;
  }
  st->sub = sub;
  st->enable = enable;
  if (cupti_launches) {
    st->allow_hooks_only = false;
    st->launch_cb.store(kCupti, std::memory_order_relaxed);
  }
  // The hooks take launches from here on: a launch CUPTI sees from now on and no hook took
  // really bypassed them.
  g_hook_state.store(st, std::memory_order_release);
  std::vector<CUpti_CallbackId> all(std::begin(kLaunchCallbacks), std::end(kLaunchCallbacks));
  all.insert(all.end(), std::begin(kCallbacks), std::end(kCallbacks));
  for (CUpti_CallbackId cbid : all) {
    r = enable(1, sub, CUPTI_CB_DOMAIN_DRIVER_API, cbid);
    if (r != CUPTI_SUCCESS) {
      *why = "cuptiEnableCallback(driver cbid " + std::to_string(cbid) + "): " +
             CuptiError(result_string, r);
      g_hook_state.store(nullptr, std::memory_order_release);
      unsubscribe(sub);
      // st may still be in use by a callback that started before the unsubscribe: leak it.
      return false;
    }
  }
  if (marks != nullptr) {  // NVTX is optional: without it, tracking goes on
    auto* nvtx = new NvtxMarks(marks, ctx);  // never freed, like st
    st->nvtx = nvtx;
    for (CUpti_CallbackId cbid : kNvtxCallbacks) {
      r = enable(1, sub, CUPTI_CB_DOMAIN_NVTX, cbid);
      if (r != CUPTI_SUCCESS) {
        std::fprintf(stderr,
                     "spillway: NVTX marks unavailable (cuptiEnableCallback(nvtx cbid %u): %s)\n",
                     static_cast<unsigned>(cbid), CuptiError(result_string, r).c_str());
        for (CUpti_CallbackId c : kNvtxCallbacks) enable(0, sub, CUPTI_CB_DOMAIN_NVTX, c);
        break;
      }
    }
  }
  g_state = st;
  g_cupti_lib = lib;
  return true;
}


// Turns CUPTI's launch callbacks on or off. Under st.launch_cb_mu.
bool EnableLaunchCallbacks(State& st, bool on) {
  for (CUpti_CallbackId cbid : kLaunchCallbacks) {
    if (st.enable(on ? 1 : 0, st.sub, CUPTI_CB_DOMAIN_DRIVER_API, cbid) != CUPTI_SUCCESS) {
      std::fprintf(stderr, "spillway: cuptiEnableCallback(%d, launch cbid %u) failed\n", on ? 1 : 0,
                   static_cast<unsigned>(cbid));
      return false;
    }
  }
  return true;
}

// The end of the check (kHookCheckLaunches hooked launches confirmed by CUPTI): off when no
// launch bypassed the hooks, else on for good.
void DecideLaunchCallbacks(State& st) {
  std::lock_guard<std::mutex> lk(st.launch_cb_mu);
  if (st.launch_cb.load(std::memory_order_relaxed) != kChecking) return;
  const bool off = st.allow_hooks_only && st.missed.load(std::memory_order_relaxed) == 0 &&
                   EnableLaunchCallbacks(st, false);
  if (!off) EnableLaunchCallbacks(st, true);  // a failed turn-off may have left some off
  st.launch_cb.store(off ? kHooksOnly : kCupti, std::memory_order_relaxed);
}

}  // namespace

bool HookedLaunchBegin(const void* f, void* stream, bool per_thread, void** params,
                       void** extra) {
  State* st = g_hook_state.load(std::memory_order_acquire);
  if (st == nullptr || prim::t_internal_call || g_paused.load(std::memory_order_relaxed))
    return true;
  t_hooked = true;
  auto fn = reinterpret_cast<CUfunction>(const_cast<void*>(f));
  auto s = static_cast<CUstream>(stream);
  if (st->diag == Diag::kNone) [[likely]]
    return OnLaunch(*st, fn, s, per_thread, params, extra);
  if (st->diag == Diag::kEmpty) return true;
  const std::uint64_t t0 = MonotonicNs();  // Diag::kTime
  const bool ok = OnLaunch(*st, fn, s, per_thread, params, extra);
  st->callback_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  st->callback_calls.fetch_add(1, std::memory_order_relaxed);
  return ok;
}

void HookedLaunchEnd() {
  if (!t_hooked) return;
  t_hooked = false;
  IssueEnd();
  State* st = g_hook_state.load(std::memory_order_relaxed);
  if (st->launch_cb.load(std::memory_order_relaxed) == kChecking &&
      st->confirmed.load(std::memory_order_relaxed) >= kHookCheckLaunches) [[unlikely]]
    DecideLaunchCallbacks(*st);
}

std::mutex g_pause_mu;  // SetPaused against KeepCuptiLaunchCallbacks

bool SetPaused(bool paused) {
  std::lock_guard<std::mutex> lk(g_pause_mu);
  if (paused && g_pause_forbidden.load(std::memory_order_acquire)) return false;
  g_paused.store(paused, std::memory_order_release);
  return true;
}

bool Paused() { return g_paused.load(std::memory_order_acquire); }

void KeepCuptiLaunchCallbacks() {
  {
    std::lock_guard<std::mutex> lk(g_pause_mu);
    g_pause_forbidden.store(true, std::memory_order_release);
    g_paused.store(false, std::memory_order_release);
  }
  State* st = g_hook_state.load(std::memory_order_acquire);
  if (st == nullptr) return;
  std::lock_guard<std::mutex> lk(st->launch_cb_mu);
  if (st->launch_cb.load(std::memory_order_relaxed) == kHooksOnly) EnableLaunchCallbacks(*st, true);
  st->launch_cb.store(kCupti, std::memory_order_relaxed);
}

bool StartTracking(BlockIndex* index, MarkSink marks, void* ctx, bool cupti_launches) {
  std::lock_guard<std::mutex> lk(g_start_mu);
  if (g_start_result < 0) {
    std::string why;
    g_start_result = index != nullptr && Start(index, marks, ctx, cupti_launches, &why) ? 1 : 0;
    if (g_start_result == 0) {
      if (index == nullptr) why = "no block index";
      std::fprintf(stderr, "spillway: CUPTI unavailable (%s): running without tracking\n",
                   why.c_str());
    }
  }
  return g_start_result == 1;
}

bool TrackingActive() {
  std::lock_guard<std::mutex> lk(g_start_mu);
  return g_start_result == 1;
}

CounterValues TrackingCounters() {
  std::lock_guard<std::mutex> lk(g_start_mu);
  return g_start_result == 1 && g_state != nullptr ? Read(g_state->counters()) : CounterValues{};
}

void* CuptiLibrary() {
  std::lock_guard<std::mutex> lk(g_start_mu);
  return g_start_result == 1 ? g_cupti_lib : nullptr;
}

void SetResidencyHook(ResidencyHook hook, void* ctx) {
  g_residency_ctx = ctx;
  g_residency_hook.store(hook, std::memory_order_release);
}

std::string TrackingSummary() {
  if (!TrackingActive()) return "";
  const CounterValues v = TrackingCounters();
  std::uint64_t nvtx_marks = 0, nvtx_unmatched = 0;
  bool nvtx = false;
  {
    std::lock_guard<std::mutex> lk(g_start_mu);
    if (g_state != nullptr && g_state->nvtx != nullptr) {
      nvtx = true;
      nvtx_marks = g_state->nvtx->written();
      nvtx_unmatched = g_state->nvtx->unmatched();
    }
  }
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "  tracker (CUPTI)\n"
                "    launches          %" PRIu64 " (decoded: %" PRIu64 " by parameter info, %" PRIu64
                " by extra buffer; %" PRIu64 " undecodable; %" PRIu64 " of kernels hiding pointers)\n"
                "    copies and sets   %" PRIu64 "\n"
                "    graph launches    %" PRIu64 " (%" PRIu64 " block accesses; captured: %" PRIu64
                " operations, %" PRIu64 " with no capture to join; explicit nodes %" PRIu64 ")\n"
                "    argument words    %" PRIu64 " looked up, %" PRIu64 " in live blocks\n",
                v.launches, v.by_param_info, v.by_extra, v.undecodable, v.hiding, v.copies,
                v.graph_launches, v.graph_hits, v.captured, v.uncaptured, v.graph_nodes, v.words,
                v.hits);
  std::string r = buf;
  {
    std::lock_guard<std::mutex> lk(g_start_mu);
    if (State* st = g_state; st != nullptr) {
      const int cb = st->launch_cb.load(std::memory_order_relaxed);
      const std::uint64_t missed = st->missed.load(std::memory_order_relaxed);
      std::snprintf(
          buf, sizeof buf,
          "    launch hooks      %" PRIu64 " launches through the preload's hooks, %" PRIu64
          " past them; CUPTI launch callbacks %s\n",
          v.launches - std::min(v.launches, missed), missed,
          cb == kHooksOnly  ? "off (every checked launch went through a hook)"
          : cb == kChecking ? "on (still checking the hooks)"
          : !st->allow_hooks_only ? "on (SPILLWAY_TRACK_LAUNCHES=cupti)"
          : missed != 0           ? "on (launches bypass the hooks)"
                                  : "on (the offload pager needs every launch)");
      r += buf;
    }
    if (g_state != nullptr && g_state->diag == Diag::kEmpty) {
      r += "    diagnostic        SPILLWAY_TRACK_DIAG=empty: callbacks returned at once, nothing "
           "tracked\n";
    } else if (g_state != nullptr && g_state->diag == Diag::kTime) {
      const std::uint64_t ns = g_state->callback_ns.load(std::memory_order_relaxed);
      const std::uint64_t calls = g_state->callback_calls.load(std::memory_order_relaxed);
      std::snprintf(buf, sizeof buf,
                    "    callback time     %.3f ms in %" PRIu64
                    " calls (%.0f ns a call, %.0f ns "
                    "a launch/copy/set; clock reads included)\n",
                    static_cast<double>(ns) / 1e6, calls,
                    calls ? static_cast<double>(ns) / static_cast<double>(calls) : 0.0,
                    v.launches + v.copies
                        ? static_cast<double>(ns) / static_cast<double>(v.launches + v.copies)
                        : 0.0);
      r += buf;
    }
  }
  if (nvtx) {
    std::snprintf(buf, sizeof buf,
                  "    NVTX marks        %" PRIu64 " written (%" PRIu64
                  " pops/ends with no open range)\n",
                  nvtx_marks, nvtx_unmatched);
    r += buf;
  }
  return r;
}

namespace {
bool InLibraryPath(const std::string& name) {
  if (const char* lp = std::getenv("LD_LIBRARY_PATH"); lp != nullptr) {
    std::string dirs = lp;
    for (std::size_t b = 0; b <= dirs.size();) {
      std::size_t e = dirs.find(':', b);
      if (e == std::string::npos) e = dirs.size();
      if (e > b && access((dirs.substr(b, e - b) + "/" + name).c_str(), R_OK) == 0) return true;
      b = e + 1;
    }
  }
  // The loader's cache (ldconfig): the name appears in it when the loader can find it.
  FILE* f = std::fopen("/etc/ld.so.cache", "rb");
  if (f == nullptr) return false;
  std::string data;
  char chunk[65536];
  for (std::size_t n; (n = std::fread(chunk, 1, sizeof chunk, f)) > 0;) data.append(chunk, n);
  std::fclose(f);
  return data.find(name + std::string(1, '\0')) != std::string::npos;
}
}  // namespace

std::string CuptiLibraryPath() {
  for (const std::string& n : CuptiCandidates()) {
    if (n.find('/') != std::string::npos) {
      if (access(n.c_str(), R_OK) == 0) return n;
      continue;
    }
    // A bare name: NVTX's dlopen resolves it as ours does (and reuses a copy already loaded
    // under that name, such as PyTorch's), so the same library gets both.
    if (void* h = dlopen(n.c_str(), RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD)) {
      dlclose(h);
      return n;
    }
    if (InLibraryPath(n)) return n;
  }
  return "";
}

bool SetNvtxInjectionForTracking() {
  if (const char* cur = std::getenv("NVTX_INJECTION64_PATH"); cur != nullptr && *cur != '\0')
    return true;
  const char* track = std::getenv("SPILLWAY_TRACK");
  if (track == nullptr || std::strcmp(track, "1") != 0) return false;
  const std::string path = CuptiLibraryPath();
  return !path.empty() && setenv("NVTX_INJECTION64_PATH", path.c_str(), 1) == 0;
}

}  // namespace spillway::tracker
