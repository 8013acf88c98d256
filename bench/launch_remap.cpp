// launch_remap.cpp — see launch_remap.h.
#include "bench/launch_remap.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace spillway::bench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kNoopPtx =
    ".version 8.0\n"
    ".target sm_80\n"
    ".address_size 64\n"
    ".visible .entry spillway_noop()\n"
    "{\n"
    "  ret;\n"
    "}\n";

template <typename F>
bool Entry(const char* name, F* fn, std::string* why) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess || p == nullptr) {
    *why = std::string("no driver entry point ") + name;
    return false;
  }
  *fn = reinterpret_cast<F>(p);
  return true;
}

}  // namespace

bool MeasureLaunchWhileRemapping(prim::Backend& be, LaunchRemap* out, std::string* why) {
  using LoadFn = CUresult (*)(CUmodule*, const void*);
  using GetFn = CUresult (*)(CUfunction*, CUmodule, const char*);
  using LaunchFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                                unsigned, unsigned, CUstream, void**, void**);
  using UnloadFn = CUresult (*)(CUmodule);
  LoadFn load = nullptr;
  GetFn get = nullptr;
  LaunchFn launch = nullptr;
  UnloadFn unload = nullptr;
  if (!Entry("cuModuleLoadData", &load, why) || !Entry("cuModuleGetFunction", &get, why) ||
      !Entry("cuLaunchKernel", &launch, why) || !Entry("cuModuleUnload", &unload, why))
    return false;
  if (cudaSetDevice(0) != cudaSuccess || cudaFree(nullptr) != cudaSuccess) {
    *why = "no CUDA context on device 0";
    return false;
  }
  CUmodule mod = nullptr;
  CUfunction fn = nullptr;
  if (load(&mod, kNoopPtx) != CUDA_SUCCESS || get(&fn, mod, "spillway_noop") != CUDA_SUCCESS) {
    *why = "the empty kernel's PTX did not load";
    return false;
  }
  cudaStream_t s = nullptr;
  if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
    unload(mod);
    *why = "no stream";
    return false;
  }
  // Mean CPU time per launch of each batch of 256.
  auto batches = [&](int n, std::vector<double>* per) {
    for (int b = 0; b < n; ++b) {
      const auto t0 = Clock::now();
      for (int i = 0; i < 256; ++i)
        launch(fn, 1, 1, 1, 1, 1, 1, 0, reinterpret_cast<CUstream>(s), nullptr, nullptr);
      per->push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 256);
      cudaStreamSynchronize(s);
    }
  };
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  std::vector<double> alone, busy;
  batches(8, &alone);  // warm-up
  alone.clear();
  batches(80, &alone);

  const std::size_t g = std::size_t{2} << 20, np = 16;
  std::uintptr_t va = 0;
  std::vector<prim::PhysHandle> hs(np, 0);
  bool ok = be.reserve(0, np * g, g, &va).ok();
  for (auto& h : hs) ok = ok && be.create({prim::LocationKind::kDevice, 0}, g, &h).ok();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> pages{0};
  std::atomic<int> failed{0};
  double remap_s = 0;
  if (ok) {
    std::thread mapper([&] {
      const auto t0 = Clock::now();
      while (!stop.load(std::memory_order_acquire))
        for (std::size_t i = 0; i < np; ++i) {
          const std::uintptr_t at = va + i * g;
          if (!be.map(at, g, hs[i]).ok() || !be.set_access(0, at, g).ok() || !be.unmap(at, g).ok())
            failed.fetch_add(1);
          pages.fetch_add(1, std::memory_order_relaxed);
        }
      remap_s = std::chrono::duration<double>(Clock::now() - t0).count();
    });
    while (pages.load() < np) std::this_thread::yield();  // the mapper is under way
    batches(80, &busy);
    stop.store(true, std::memory_order_release);
    mapper.join();
  }
  for (auto h : hs)
    if (h != 0) be.release(h);
  if (va != 0) be.release_va(va, np * g);
  cudaStreamDestroy(s);
  unload(mod);
  if (!ok || failed.load() != 0 || pages.load() == 0) {
    *why = "the mapping thread's calls failed";
    return false;
  }
  out->launch_us_alone = median(alone);
  out->launch_us_remapping = median(busy);
  out->launch_us_max_remapping = *std::max_element(busy.begin(), busy.end());
  out->remap_us_per_page = remap_s * 1e6 / static_cast<double>(pages.load());
  return true;
}

}  // namespace spillway::bench
