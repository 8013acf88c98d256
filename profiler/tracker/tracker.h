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
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
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
  std::uint64_t launches = 0, by_param_info = 0, by_extra = 0, undecodable = 0, words = 0,
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
// nullptr: NVTX callbacks are not enabled.
bool StartTracking(BlockIndex* index, MarkSink marks = nullptr, void* ctx = nullptr);
bool TrackingActive();
CounterValues TrackingCounters();  // zeros when not active
// One paragraph for the exit summary ("" when not active).
std::string TrackingSummary();

// The libcupti for NVTX_INJECTION64_PATH, without loading it: SPILLWAY_CUPTI_LIB, else the
// first of the tracker's candidates that is found: a bare name ("libcupti.so.13") when it is
// already loaded, in LD_LIBRARY_PATH or in the loader's cache (NVTX's dlopen then resolves it
// as the tracker's does), a path when the file exists. "" when none is found.
std::string CuptiLibraryPath();
// Sets NVTX_INJECTION64_PATH to CuptiLibraryPath() when SPILLWAY_TRACK is 1 and the variable is
// unset (or empty). True when it is set afterwards.
bool SetNvtxInjectionForTracking();

}  // namespace spillway::tracker
