// tracker.h — which live blocks each launch touches: CUPTI driver-API callbacks (kernel
// launches, the common memcpy/memset calls, graph launches, stream creation), the arguments of
// each launch scanned for addresses inside live blocks (arg_scan.h, block_index.h).
//
// libcupti is dlopen'ed (RTLD_LOCAL): libspillway has no link-time dependency on it. The driver
// entry points for parameter layouts come from prim::CudaDriver (cuKernelGetParamInfo first: in
// launch callbacks the handle is a CUkernel; cuFuncGetParamInfo for real CUfunctions). Layouts
// are cached per handle for the life of the process (a handle reused after its module is
// unloaded would keep the old layout).
//
// Not decoded yet: kernels inside CUDA graphs (cuGraphLaunch is only counted), cuLaunchKernelEx
// attributes, 2D/3D/peer/batch copies, 2D sets.
//
// Environment: SPILLWAY_CUPTI_LIB=path loads that file instead of libcupti.so.13 (and its
// fallbacks); meant for tests of the "CUPTI unavailable" path and for unusual installs.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "profiler/tracker/arg_scan.h"
#include "profiler/tracker/block_index.h"

namespace spillway::tracker {

struct Counters {
  std::atomic<std::uint64_t> launches{0};       // kernel launches seen
  std::atomic<std::uint64_t> by_param_info{0};  // decoded through the parameter layout
  std::atomic<std::uint64_t> by_extra{0};       // decoded through an `extra` buffer
  std::atomic<std::uint64_t> undecodable{0};
  std::atomic<std::uint64_t> words{0};  // argument words looked up (launches, copies, sets)
  std::atomic<std::uint64_t> hits{0};   // words inside a live block
  std::atomic<std::uint64_t> copies{0};           // memcpy/memset calls seen
  std::atomic<std::uint64_t> graph_launches{0};   // counted only (kernels not decoded)
  std::atomic<std::uint64_t> streams_created{0};
};

struct CounterValues {
  std::uint64_t launches = 0, by_param_info = 0, by_extra = 0, undecodable = 0, words = 0,
                hits = 0, copies = 0, graph_launches = 0, streams_created = 0;
};
CounterValues Read(const Counters& c);

enum class Decoded { kParamInfo, kExtra, kUndecodable };

// One kernel launch: scans its arguments (`layout` nullptr = unknown), records `a` on every
// live block found, and counts. kernelParams need the layout (argument sizes); an `extra`
// buffer is read through the layout when known, else word by word. A launch with neither and
// a known empty layout takes no arguments (decoded by parameter info).
Decoded ScanLaunch(BlockIndex& index, const ParamLayout* layout, void* const* params,
                   void* const* extra, const Access& a, Counters& c);

// A memcpy/memset: its device pointers, looked up directly.
void ScanDirect(BlockIndex& index, const std::uint64_t* ptrs, std::size_t n, const Access& a,
                Counters& c);

// Subscribes to CUPTI once per process and feeds `index` (which must outlive the process's
// CUDA work; it is never unsubscribed). True when tracking runs. When CUPTI cannot be had (no
// library, no driver, another subscriber such as Nsight), prints once on stderr
// "spillway: CUPTI unavailable (why): running without tracking" and returns false, then and on
// every later call. Never aborts.
bool StartTracking(BlockIndex* index);
bool TrackingActive();
CounterValues TrackingCounters();  // zeros when not active
// One paragraph for the exit summary ("" when not active).
std::string TrackingSummary();

}  // namespace spillway::tracker
