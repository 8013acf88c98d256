// tracker.h — which live blocks each launch touches: CUPTI driver-API callbacks (kernel
// launches, the common memcpy/memset calls, stream capture, graph building, instantiation and
// launch, stream creation), the arguments of each launch scanned for addresses inside live
// blocks (arg_scan.h, block_index.h); and NVTX ranges and marks as event-log marks
// (nvtx_marks.h).
//
// libcupti is dlopen'ed (RTLD_LOCAL): libspillway has no link-time dependency on it. The driver
// entry points for parameter layouts come from prim::CudaDriver (cuKernelGetParamInfo first: in
// launch callbacks the handle is a CUkernel; cuFuncGetParamInfo for real CUfunctions). Layouts
// are cached per handle for the life of the process (a handle reused after its module is
// unloaded would keep the old layout).
//
// CUDA graphs (graph_map.h): launches, copies and sets on a capturing stream (from
// cuStreamBeginCapture* to cuStreamEndCapture) are not accesses (nothing runs yet): the
// addresses in live blocks they name are kept for the capture, then for the CUgraph, then for
// each CUgraphExec instantiated from it; every cuGraphLaunch records one access on each block
// live at one of those addresses. An operation on another stream that the driver says is
// capturing (joined to a capture through an event) goes to the capture when exactly one is in
// progress, else it is dropped (counted). Explicit nodes: cuGraphAddKernelNode(_v2) and
// cuGraphAddNode(_v2) kernel, memset and child-graph nodes are decoded; cuGraphClone copies.
// A graph launched into a capturing stream adds its exec's addresses to that capture.
//
// Not decoded yet: explicit memcpy nodes and the other node kinds, node parameters changed
// after the node was added (cuGraph*SetParams, cuGraphExecUpdate), cuLaunchKernelEx
// attributes, 2D/3D/peer/batch copies, 2D sets.
//
// NVTX (nvtxMarkA/Ex, nvtxRangePushA/Ex, nvtxRangePop, nvtxRangeStartA/Ex, nvtxRangeEnd) reaches
// CUPTI only when NVTX_INJECTION64_PATH names libcupti before the process's first NVTX call:
// the preload and `spillway run` set it (CuptiLibraryPath()) when SPILLWAY_TRACK=1 and it is
// unset. Calls made before tracking starts (the first allocation) are not seen. Labels of
// registered strings and wide-character labels are written as "nvtx".
//
// Environment: SPILLWAY_CUPTI_LIB=path loads that file instead of libcupti.so.13 (and its
// fallbacks); meant for tests of the "CUPTI unavailable" path and for unusual installs.
// SPILLWAY_TRACK_DIAG, to split the tracker's cost on a GPU: `empty` subscribes and enables
// every callback as usual, but the callback returns at once (CUPTI's and the driver's cost
// alone; nothing is tracked); `time` tracks as usual and times the callback itself (two clock
// reads a call), printed in the exit summary (SPILLWAY_STATS=1) as ns a call and a launch.
//
// Callbacks enabled (cuptiEnableCallback, one cbid at a time; no whole domain): driver API
// cuLaunchKernel, cuLaunchKernelEx, cuLaunchCooperativeKernel (+ _ptsz); cuMemcpy, cuMemcpyAsync,
// cuMemcpy{HtoD,DtoH,DtoD}_v2 and their Async forms (+ _ptds/_ptsz); cuMemsetD{8,16,32}_v2 and
// Async (+ _ptds/_ptsz); cuGraphLaunch (+ _ptsz); cuStreamCreate, cuStreamCreateWithPriority;
// cuGraphDestroy, cuGraphExecDestroy, cuStreamBeginCapture (4 forms), BeginCaptureToGraph (+
// _ptsz), cuStreamEndCapture (+ _ptsz), cuGraphInstantiate (5 forms), cuGraphClone,
// cuGraphAdd{Kernel (2), Memset, ChildGraph}Node, cuGraphAddNode (2): 60. NVTX (with a mark
// sink): nvtxMarkA/Ex, nvtxRangePushA/Ex, nvtxRangePop, nvtxRangeStartA/Ex, nvtxRangeEnd. CUPTI
// calls an enabled callback at API entry and at exit; of these only the launch, copy and set
// callbacks (and cuGraphLaunch) fire per operation of a training step.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "profiler/tracker/arg_scan.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/nvtx_marks.h"

namespace spillway::tracker {

struct Counters {
  std::atomic<std::uint64_t> launches{0};       // kernel launches seen
  std::atomic<std::uint64_t> by_param_info{0};  // decoded through the parameter layout
  std::atomic<std::uint64_t> by_extra{0};       // decoded through an `extra` buffer
  std::atomic<std::uint64_t> undecodable{0};
  std::atomic<std::uint64_t> hiding{0};  // launches of kernels that hide pointers (NCCL)
  std::atomic<std::uint64_t> words{0};  // argument words looked up (launches, copies, sets)
  std::atomic<std::uint64_t> hits{0};   // words inside a live block
  std::atomic<std::uint64_t> copies{0};           // memcpy/memset calls seen
  std::atomic<std::uint64_t> graph_launches{0};
  std::atomic<std::uint64_t> streams_created{0};
  std::atomic<std::uint64_t> captured{0};     // launches/copies/sets kept for a graph capture
  std::atomic<std::uint64_t> uncaptured{0};   // ...on a capturing stream with no capture to join
  std::atomic<std::uint64_t> graph_nodes{0};  // explicit nodes decoded
  std::atomic<std::uint64_t> graph_hits{0};   // block accesses recorded at graph launches
};

struct CounterValues {
  std::uint64_t launches = 0, by_param_info = 0, by_extra = 0, undecodable = 0, hiding = 0, words = 0,
                hits = 0, copies = 0, graph_launches = 0, streams_created = 0, captured = 0,
                uncaptured = 0, graph_nodes = 0, graph_hits = 0;
};
CounterValues Read(const Counters& c);

enum class Decoded { kParamInfo, kExtra, kUndecodable };

// One kernel launch: scans its arguments (`layout` nullptr = unknown), records `a` on every
// live block found, and counts. kernelParams need the layout (argument sizes); an `extra`
// buffer is read through the layout when known, else word by word. A launch with neither and
// a known empty layout takes no arguments (decoded by parameter info).
Decoded ScanLaunch(BlockIndex& index, const ParamLayout* layout, void* const* params,
                   void* const* extra, const Access& a, Counters& c);

// What a kernel's name says of it (LayoutCache::TraitsQuery). `hides`: it keeps device pointers
// where the argument scan cannot see them (KernelHidesPointers). `streams`: it reads and writes
// each byte it names once, in order (KernelStreams), so it may work on a block where it lies.
struct KernelTraits {
  bool hides = false;
  bool streams = false;
};

// A kernel's parameter layout and its compiled scan plan (immutable once made), and its traits.
struct KernelLayout {
  ParamLayout slots;
  ScanPlan plan;
  bool hides = false;
  bool streams = false;
};

// Whether a kernel of this (possibly mangled) name reaches device memory through pointers kept
// in memory of its own rather than in its arguments: NCCL's collective kernels
// (ncclDevKernel_*, and ncclKernel_* before NCCL 2.19) read their buffer addresses from device
// structures. A launch of one makes the offload pager strict, like an undecodable launch.
bool KernelHidesPointers(const char* name);

// Whether a kernel of this (possibly mangled) name streams through the tensors it names: each
// element read and written once, in order, with no reuse (PyTorch's elementwise kernels,
// `vectorized_elementwise_kernel`, `unrolled_elementwise_kernel`, `elementwise_kernel`, and its
// foreach and fused optimizers' `multi_tensor_apply_kernel`). Such a kernel reads an evicted block
// over the link at the link's speed, so the offload pager may leave the block where it is
// (Pager::access_in_place) instead of bringing it back. Matrix products, reductions, attention,
// indexed gathers and scatters (`index_elementwise_kernel`) and everything unnamed are not
// streaming. A kernel taken for streaming wrongly costs speed, never correctness: the block is
// read at its own address either way.
bool KernelStreams(const char* name);
KernelTraits KernelTraitsOf(const char* name);  // both of the above

// ScanLaunch with a compiled layout (`k` nullptr = unknown): the launch path of the callback.
// Words outside every live block are dropped before the index's lock is taken (a launch none
// of whose words can be inside a block takes no lock); the rest are looked up in batches.
Decoded ScanLaunchPlan(BlockIndex& index, const KernelLayout* k, void* const* params,
                       void* const* extra, const Access& a, Counters& c);

// Parameter layouts by kernel handle: queried once per handle (the driver, in the tracker) and
// kept for the life of the cache (a handle reused after its module is unloaded would keep the
// old layout). get() reads a hash table without a lock (open addressing; entries are published
// with a release store and never removed; a full table is replaced by one twice its size and
// kept for readers still in it); a handle not there yet takes a mutex. Thread-safe.
class LayoutCache {
 public:
  // Fills *out; false when the layout cannot be known. Called without locks held, possibly by
  // two threads for one handle (the first answer stored is kept).
  using Query = bool (*)(void* ctx, const void* handle, ParamLayout* out);
  // The kernel's traits (KernelLayout::hides, ::streams); nullptr: none has any. Asked once per
  // handle, with `ctx`, like Query.
  using TraitsQuery = KernelTraits (*)(void* ctx, const void* handle);
  LayoutCache(Query query, void* ctx, TraitsQuery traits = nullptr);
  ~LayoutCache();
  LayoutCache(const LayoutCache&) = delete;
  LayoutCache& operator=(const LayoutCache&) = delete;
  // The layout of `handle`; nullptr when it cannot be known. Valid for the cache's life.
  const KernelLayout* get(const void* handle) {
    const Table* t = table_.load(std::memory_order_acquire);
    for (std::size_t i = Hash(handle) & t->mask;; i = (i + 1) & t->mask) {
      const Entry* e = t->slots[i].load(std::memory_order_acquire);
      if (e == nullptr) break;
      if (e->handle == handle) return e->known ? &e->layout : nullptr;
    }
    return get_slow(handle);
  }
  std::size_t size() const;  // handles seen

 private:
  struct Entry {
    const void* handle;
    bool known;
    KernelLayout layout;
  };
  struct Table {
    explicit Table(std::size_t n) : mask(n - 1), slots(new std::atomic<const Entry*>[n]) {
      for (std::size_t i = 0; i < n; ++i) slots[i].store(nullptr, std::memory_order_relaxed);
    }
    std::size_t mask;
    std::unique_ptr<std::atomic<const Entry*>[]> slots;
  };
  static std::size_t Hash(const void* handle) {
    return static_cast<std::size_t>(
        (reinterpret_cast<std::uintptr_t>(handle) >> 4) * 0x9E3779B97F4A7C15ull >> 32);
  }
  const KernelLayout* get_slow(const void* handle);
  static void Put(const Table& t, const Entry* e);  // a free slot: under mu_
  Query query_;
  TraitsQuery traits_;
  void* ctx_;
  std::atomic<const Table*> table_;              // the current table
  mutable std::mutex mu_;                        // inserts; the members below
  std::vector<std::unique_ptr<Table>> tables_;   // every table made (readers may be in any)
  std::vector<std::unique_ptr<Entry>> entries_;  // every handle seen
};

// The per-launch work of the CUPTI callback (tracker.cpp's OnLaunch when no graph capture is in
// progress), without CUPTI: the layout of `f`, the access (CLOCK_MONOTONIC now, the next
// sequence number), the scan, the lookups and the touches. bench/tracker_bench.cpp drives it.
class LaunchPath {
 public:
  LaunchPath(BlockIndex* index, LayoutCache::Query query, void* ctx,
             LayoutCache::TraitsQuery traits = nullptr)
      : index_(index), layouts_(query, ctx, traits) {}
  // *traits (when given): the kernel's (KernelLayout::hides, ::streams; none when unknown). The
  // access is recorded as a streaming one for a streaming kernel.
  Decoded launch(const void* f, std::uint64_t stream, void* const* params, void* const* extra,
                 KernelTraits* traits = nullptr) {
    const KernelLayout* k = layouts_.get(f);
    Access a = next(stream);
    a.streaming = k != nullptr && k->streams;
    if (traits != nullptr) *traits = {k != nullptr && k->hides, a.streaming};
    return ScanLaunchPlan(*index_, k, params, extra, a, counters_);
  }
  // The next tracked operation on `stream`.
  Access next(std::uint64_t stream);
  BlockIndex& index() { return *index_; }
  LayoutCache& layouts() { return layouts_; }
  Counters& counters() { return counters_; }

 private:
  BlockIndex* index_;
  LayoutCache layouts_;
  alignas(64) std::atomic<std::uint64_t> seq_{0};
  Counters counters_;
};

// The decoding half of ScanLaunch: counts the launch and how it was decoded, and appends its
// argument words to *words (nothing is looked up or recorded).
Decoded DecodeLaunch(const ParamLayout* layout, void* const* params, void* const* extra,
                     std::vector<std::uint64_t>* words, Counters& c);

// The words of w[0, n) inside a live block, appended to *out (nothing recorded; for a graph
// capture). Counts the words looked up. Returns the number appended.
std::size_t CollectHits(BlockIndex& index, const std::uint64_t* w, std::size_t n,
                        std::vector<std::uint64_t>* out, Counters& c);

// A graph launch: one access `a` on each distinct block live at one of `addrs` (freed ones are
// skipped). Counts the launch. Returns the number of blocks recorded.
std::size_t RecordGraphLaunch(BlockIndex& index, const std::vector<std::uint64_t>* addrs,
                              const Access& a, Counters& c);

// A memcpy/memset: its device pointers, looked up directly.
void ScanDirect(BlockIndex& index, const std::uint64_t* ptrs, std::size_t n, const Access& a,
                Counters& c);

// Subscribes to CUPTI once per process and feeds `index` (which must outlive the process's
// CUDA work; it is never unsubscribed). True when tracking runs. When CUPTI cannot be had (no
// library, no driver, another subscriber such as Nsight), prints once on stderr
// "spillway: CUPTI unavailable (why): running without tracking" and returns false, then and on
// every later call. Never aborts. NVTX ranges and marks go to `marks` (with `ctx`) as marks;
// nullptr: NVTX callbacks are not enabled. `cupti_launches` (SPILLWAY_TRACK_LAUNCHES=cupti,
// Config::track_launches_cupti): launches are seen through CUPTI's callbacks alone, for good.
bool StartTracking(BlockIndex* index, MarkSink marks = nullptr, void* ctx = nullptr,
                   bool cupti_launches = false);
bool TrackingActive();
// The libcupti the running tracker loaded (kernel_activity.h uses it), or nullptr.
void* CuptiLibrary();
CounterValues TrackingCounters();  // zeros when not active
// One paragraph for the exit summary ("" when not active).
std::string TrackingSummary();

// The offload pager's hook: called from the launch, copy and set callbacks (before the
// operation is enqueued, on the calling thread, no tracker lock held) with the blocks marked
// away (Block::set_away) that the operation names, and the operation's stream; `blind` instead
// (addrs empty) when a launch could not be decoded (its pointers are unknown). `streaming`: the
// operation is a streaming kernel's launch (KernelStreams), which may read its blocks where
// they lie. Returns false when a block could not be made readable at its address (the
// operation would fault). Set once.
using ResidencyHook = bool (*)(void* ctx, const std::uint64_t* addrs, std::size_t n,
                               std::uint64_t stream, bool blind, bool streaming);
void SetResidencyHook(ResidencyHook hook, void* ctx);

// The issue watermark, for the offload pager's progress fences. An operation's sequence number
// is taken (and its accesses recorded) before it is enqueued: a fence event recorded on a stream
// covers only operations already enqueued there. IssueBegin is called before an operation takes
// its number, IssueEnd once it is enqueued (the launch hook's end, CUPTI's exit callback; its
// number, or this thread's last). IssuedWatermark gives the newest number of an enqueued
// operation such that every operation with a number at or below it is enqueued: false when
// another thread's operation is between its begin and end (the calling thread's own is
// allowed: the pager runs inside it) or none ended yet. Thread-safe, process-wide; a thread
// has at most one operation in flight (a nested begin is ignored).
void IssueBegin();
void IssueEnd(std::uint64_t seq);
void IssueEnd();
bool IssuedWatermark(std::uint64_t* seq);
// The calling thread is between IssueBegin and IssueEnd: the pager runs inside an operation that
// is not enqueued yet (its blocks must not be evicted for it).
bool Issuing();

// Launches through the preload's hooks. The preload interposes cuLaunchKernel,
// cuLaunchKernelEx and cuLaunchCooperativeKernel (and their _ptsz forms) wherever they are
// resolved (by symbol, dlsym or cuGetProcAddress, which is how cudart reaches them) and calls
// HookedLaunchBegin before the real call (it does the launch callback's work: scan, record,
// bring away blocks back) and HookedLaunchEnd after it. CUPTI's launch callbacks run only to
// catch launches that bypass the hooks: while they are on, one inside a hooked launch returns
// at once. After 10,000 hooked launches confirmed by CUPTI with none that bypassed the hooks,
// the tracker turns CUPTI's launch callbacks off (the CUPTI callback itself costs about 4% of a
// GPT-2 step); if any bypassed them, they stay on and take those. Launches by code first run
// after that check, through a path other than the hooks, would go unseen: while an offload pager
// runs (KeepCuptiLaunchCallbacks) they stay on for good. SPILLWAY_TRACK_LAUNCHES=cupti: the
// preload installs no hooks, and CUPTI's callbacks see every launch. No-ops until StartTracking succeeded. Thread-safe; not reentrant.
// False: a block the launch names could not be made readable (the pager said why); the
// caller must not launch (the preload returns CUDA_ERROR_OUT_OF_MEMORY), and still calls
// HookedLaunchEnd.
bool HookedLaunchBegin(const void* f, void* stream, bool per_thread, void** params,
                       void** extra);
void HookedLaunchEnd();
// Turns CUPTI's launch callbacks back on (if the check turned them off) and keeps them on.
// Also forbids pausing (SetPaused): the offload pager must see every launch.
void KeepCuptiLaunchCallbacks();

// Pausing: launches, copies, sets and graph launches go unrecorded while paused (allocations
// and frees still update the index; operations are still numbered by those that are recorded;
// graph captures made while paused are incomplete). For measuring the tracker's cost inside one
// process (spillway_set_tracking) and for skipping phases nobody wants to see. False (and no
// change) when pausing is forbidden: an offload pager in tracked mode runs.
bool SetPaused(bool paused);
bool Paused();

// The libcupti for NVTX_INJECTION64_PATH, without loading it: SPILLWAY_CUPTI_LIB, else the
// first of the tracker's candidates that is found: a bare name ("libcupti.so.13") when it is
// already loaded, in LD_LIBRARY_PATH or in the loader's cache (NVTX's dlopen then resolves it
// as the tracker's does), a path when the file exists. "" when none is found.
std::string CuptiLibraryPath();
// Sets NVTX_INJECTION64_PATH to CuptiLibraryPath() when SPILLWAY_TRACK is 1 and the variable is
// unset (or empty). True when it is set afterwards.
bool SetNvtxInjectionForTracking();

}  // namespace spillway::tracker
