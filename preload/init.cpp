// init.cpp — start-up of the preload: configuration is checked when the library is loaded (a
// malformed SPILLWAY_* variable stops the process with a message); the allocator itself starts
// lazily on the first intercepted call, never in a constructor (processes fork and set
// CUDA_VISIBLE_DEVICES before they touch CUDA). With SPILLWAY_TRACK=1 the constructor also sets
// NVTX_INJECTION64_PATH to libcupti (when unset) so that NVTX ranges reach the tracker.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "allocator/config.h"
#include "preload/preload.h"
#include "profiler/tracker/tracker.h"

namespace spillway::preload {

namespace {
bool g_track = false;  // launch hooks wanted: SPILLWAY_TRACK=1 and not SPILLWAY_TRACK_LAUNCHES=cupti

__attribute__((constructor)) void CheckConfig() {
  Config cfg;
  std::string err;
  if (!ParseConfig([](const char* n) { return std::getenv(n); }, &cfg, &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    std::fflush(stderr);
    _exit(2);
  }
  // NVTX reaches CUPTI (and the tracker's marks) only through its injection variable, read at
  // the process's first NVTX call: name libcupti now, unless the user named a library.
  // SPILLWAY_TRACK_LAUNCHES=cupti: launches reach the tracker through CUPTI alone (no hooks).
  g_track = cfg.track && !cfg.track_launches_cupti;
  if (cfg.track) tracker::SetNvtxInjectionForTracking();
}

}  // namespace

bool TrackingRequested() { return g_track; }

Allocator* Instance() {
  static Allocator* instance = [] {
    spillway_status s = SPILLWAY_OK;
    Allocator* a = Allocator::Global(&s);
    if (a == nullptr)
      std::fprintf(stderr, "spillway: disabled, CUDA allocation calls go to CUDA unchanged: %s\n",
                   Allocator::GlobalError().c_str());
    return a;
  }();
  return instance;
}

const prim::CudaDriver* Driver() {
  static const prim::CudaDriver* d = [] {
    std::string err;
    return prim::LoadCudaDriver(&err);
  }();
  return d;
}

int CurrentDevice() {
  using GetDevice = cudaError_t (*)(int*);
  static GetDevice real = Real<GetDevice>("cudaGetDevice");
  int dev = 0;
  if (real != nullptr && real(&dev) == cudaSuccess) return dev;
  CUdevice d = 0;  // no runtime in this process (driver API user): the current context
  if (Driver() != nullptr && Driver()->cuCtxGetDevice(&d) == CUDA_SUCCESS) return d;
  return 0;
}

void ApplyBudget(Allocator* a, int device, size_t real_free, size_t* free_bytes,
                 size_t* total_bytes) {
  spillway_stats st;
  if (a == nullptr || a->stats(device, &st) != SPILLWAY_OK || st.budget_bytes == 0) return;
  const size_t cached = st.reserved_bytes - std::min(st.reserved_bytes, st.allocated_bytes);
  const size_t room = st.budget_bytes - std::min(st.budget_bytes, st.allocated_bytes);
  *free_bytes = std::min(room, real_free + cached);
  *total_bytes = st.budget_bytes;
}

void RetainForGraph(const void* p) {
  static std::once_flag once;
  std::call_once(once, [p] {
    std::fprintf(stderr,
                 "spillway: a block (%p) was freed on a stream that is capturing a CUDA graph; "
                 "such blocks stay allocated for the rest of the process, since a replay may "
                 "still use them\n",
                 p);
  });
}

void* HookFor(const char* symbol) {
  struct Entry {
    const char* name;
    const char* ours;
  };
  // Symbols resolved by name (dlsym on a libcuda/libcudart handle) that we replace.
  static const Entry kEntries[] = {
      {"cuMemAlloc_v2", "cuMemAlloc_v2"},
      {"cuMemFree_v2", "cuMemFree_v2"},
      {"cuMemAllocAsync", "cuMemAllocAsync"},
      {"cuMemAllocAsync_ptsz", "cuMemAllocAsync_ptsz"},
      {"cuMemFreeAsync", "cuMemFreeAsync"},
      {"cuMemFreeAsync_ptsz", "cuMemFreeAsync_ptsz"},
      {"cuMemGetInfo_v2", "cuMemGetInfo_v2"},
      {"cuGetProcAddress", "cuGetProcAddress"},
      {"cuGetProcAddress_v2", "cuGetProcAddress_v2"},
      {"cudaMalloc", "cudaMalloc"},
      {"cudaFree", "cudaFree"},
      {"cudaMallocAsync", "cudaMallocAsync"},
      {"cudaMallocAsync_ptsz", "cudaMallocAsync_ptsz"},
      {"cudaFreeAsync", "cudaFreeAsync"},
      {"cudaFreeAsync_ptsz", "cudaFreeAsync_ptsz"},
      {"cudaMemGetInfo", "cudaMemGetInfo"},
  };
  // Kernel launches: interposed only for the tracker (launch_hooks.cpp).
  static const char* const kLaunches[] = {
      "cuLaunchKernel",   "cuLaunchKernel_ptsz",       "cuLaunchKernelEx",
      "cuLaunchKernelEx_ptsz", "cuLaunchCooperativeKernel", "cuLaunchCooperativeKernel_ptsz",
  };
  if (symbol == nullptr || (symbol[0] != 'c' || symbol[1] != 'u')) return nullptr;
  static void* self = [] {
    Dl_info info{};
    dladdr(reinterpret_cast<void*>(&HookFor), &info);
    return dlopen(info.dli_fname, RTLD_NOLOAD | RTLD_LAZY);
  }();
  for (const Entry& e : kEntries)
    if (std::strcmp(symbol, e.name) == 0) return prim::RealDlsym(self, e.ours);
  if (g_track)
    for (const char* n : kLaunches)
      if (std::strcmp(symbol, n) == 0) return prim::RealDlsym(self, n);
  return nullptr;
}

}  // namespace spillway::preload
