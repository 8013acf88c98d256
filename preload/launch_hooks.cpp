// launch_hooks.cpp — interposers of the CUDA driver's kernel launches (cuLaunchKernel,
// cuLaunchKernelEx, cuLaunchCooperativeKernel and their _ptsz forms), reached by symbol,
// through dlsym and through cuGetProcAddress, which is how cudart launches. Each hands the
// launch to the tracker (tracker::HookedLaunchBegin/End: the scan costs less here than in a
// CUPTI callback) and then calls the real entry point. Interposed only with SPILLWAY_TRACK=1;
// otherwise the exported symbols pass straight through.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include "preload/preload.h"
#include "profiler/tracker/tracker.h"

namespace tr = spillway::tracker;

namespace {

using LaunchFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, unsigned, CUstream, void**, void**);
using LaunchExFn = CUresult (*)(const CUlaunchConfig*, CUfunction, void**, void**);
using CoopFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                            unsigned, unsigned, CUstream, void**);

// The driver's own entry points, by their exported names.
struct RealLaunches {
  LaunchFn launch = nullptr, launch_ptsz = nullptr;
  LaunchExFn ex = nullptr, ex_ptsz = nullptr;
  CoopFn coop = nullptr, coop_ptsz = nullptr;
};

const RealLaunches& TheReal() {
  static const RealLaunches r = [] {
    RealLaunches x;
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (lib == nullptr) return x;
    auto sym = [lib](const char* n) { return spillway::prim::RealDlsym(lib, n); };
    x.launch = reinterpret_cast<LaunchFn>(sym("cuLaunchKernel"));
    x.launch_ptsz = reinterpret_cast<LaunchFn>(sym("cuLaunchKernel_ptsz"));
    x.ex = reinterpret_cast<LaunchExFn>(sym("cuLaunchKernelEx"));
    x.ex_ptsz = reinterpret_cast<LaunchExFn>(sym("cuLaunchKernelEx_ptsz"));
    x.coop = reinterpret_cast<CoopFn>(sym("cuLaunchCooperativeKernel"));
    x.coop_ptsz = reinterpret_cast<CoopFn>(sym("cuLaunchCooperativeKernel_ptsz"));
    return x;
  }();
  return r;
}

// Begin before the launch, End after it, also when the real call is missing. `ok` false: a
// block the launch names is not readable at its address (on NVMe, and it could not come back):
// the launch is refused with CUDA_ERROR_OUT_OF_MEMORY rather than run against unmapped memory.
struct Hooked {
  Hooked(CUfunction f, CUstream s, bool ptsz, void** params, void** extra)
      : ok(tr::HookedLaunchBegin(f, s, ptsz, params, extra)) {}
  ~Hooked() { tr::HookedLaunchEnd(); }
  Hooked(const Hooked&) = delete;
  Hooked& operator=(const Hooked&) = delete;
  const bool ok;
};

CUresult Refused() {
  std::fprintf(stderr, "spillway: a kernel launch was refused with CUDA_ERROR_OUT_OF_MEMORY: a "
                       "block it names could not be brought back (see above)\n");
  return CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult Launch(bool ptsz, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                unsigned by, unsigned bz, unsigned shmem, CUstream s, void** params,
                void** extra) {
  LaunchFn real = ptsz ? TheReal().launch_ptsz : TheReal().launch;
  if (real == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  Hooked h(f, s, ptsz, params, extra);
  if (!h.ok) return Refused();
  return real(f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

CUresult LaunchEx(bool ptsz, const CUlaunchConfig* cfg, CUfunction f, void** params,
                  void** extra) {
  LaunchExFn real = ptsz ? TheReal().ex_ptsz : TheReal().ex;
  if (real == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  Hooked h(f, cfg != nullptr ? cfg->hStream : nullptr, ptsz, params, extra);
  if (!h.ok) return Refused();
  return real(cfg, f, params, extra);
}

CUresult Coop(bool ptsz, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
              unsigned by, unsigned bz, unsigned shmem, CUstream s, void** params) {
  CoopFn real = ptsz ? TheReal().coop_ptsz : TheReal().coop;
  if (real == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  Hooked h(f, s, ptsz, params, nullptr);
  if (!h.ok) return Refused();
  return real(f, gx, gy, gz, bx, by, bz, shmem, s, params);
}

}  // namespace

extern "C" {

CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned shmem, CUstream s, void** params,
                        void** extra) {
  return Launch(false, f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}
CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                             unsigned by, unsigned bz, unsigned shmem, CUstream s, void** params,
                             void** extra) {
  return Launch(true, f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}
CUresult cuLaunchKernelEx(const CUlaunchConfig* cfg, CUfunction f, void** params, void** extra) {
  return LaunchEx(false, cfg, f, params, extra);
}
CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* cfg, CUfunction f, void** params,
                               void** extra) {
  return LaunchEx(true, cfg, f, params, extra);
}
CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                   unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                                   CUstream s, void** params) {
  return Coop(false, f, gx, gy, gz, bx, by, bz, shmem, s, params);
}
CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                        unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                                        CUstream s, void** params) {
  return Coop(true, f, gx, gy, gz, bx, by, bz, shmem, s, params);
}

}  // extern "C"

namespace spillway::preload {

void* LaunchHookFor(const char* symbol, void* real) {
  if (!TrackingRequested() || real == nullptr || std::strncmp(symbol, "cuLaunch", 8) != 0)
    return nullptr;
  // By the entry point the driver chose (legacy or per-thread default stream): a pointer we do
  // not know is left alone (CUPTI's launch callbacks then see those launches).
  const RealLaunches& r = TheReal();
  const struct {
    void* real;
    void* ours;
  } map[] = {
      {reinterpret_cast<void*>(r.launch), reinterpret_cast<void*>(&cuLaunchKernel)},
      {reinterpret_cast<void*>(r.launch_ptsz), reinterpret_cast<void*>(&cuLaunchKernel_ptsz)},
      {reinterpret_cast<void*>(r.ex), reinterpret_cast<void*>(&cuLaunchKernelEx)},
      {reinterpret_cast<void*>(r.ex_ptsz), reinterpret_cast<void*>(&cuLaunchKernelEx_ptsz)},
      {reinterpret_cast<void*>(r.coop), reinterpret_cast<void*>(&cuLaunchCooperativeKernel)},
      {reinterpret_cast<void*>(r.coop_ptsz),
       reinterpret_cast<void*>(&cuLaunchCooperativeKernel_ptsz)},
  };
  for (const auto& m : map)
    if (m.real != nullptr && m.real == real) return m.ours;
  return nullptr;
}

}  // namespace spillway::preload
