// vmm_scaling.cpp — whether the driver's grant and unmap get slower as the process holds more
// mappings. Under the `activations` budget a step's cuMemSetAccess costs ~170 us a mapping and
// cuMemUnmap ~100 us (offload_train.py --step-stats), against ~26 and ~17 us for the same 8 MiB
// spans in offload_bench, and device -> host copies slow the grant but not the unmap
// (docs/offload.md, "Driver calls under copy traffic"). What the training process has that the
// micro-benchmark lacks: thousands of mappings (the host tier's 2 MiB chunks, each in its own
// window with device and CPU access; the arenas' spans and chunks). So: map, grant and unmap 32
// device chunks of 8 MiB (the median of 5 rounds, per mapping) with the GPU idle, then again
// after each of these, cumulatively: the host tier's chunks created (offload::HostPool, as the
// pager makes them), device 2 MiB chunks mapped and granted one by one, the host tier released.
//   vmm_scaling [--host-gib G] [--device-gib G] [--json FILE]      exit 77 without a GPU
// Under the preload (`spillway run --track -- vmm_scaling`) the same probe runs with Spillway's
// allocator and the tracker (CUPTI) live in the process.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "allocator/prim/cuda_backend.h"
#include "offload/host_pool.h"
#include "offload/numa.h"

namespace {

namespace prim = spillway::prim;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kMiB = std::size_t{1} << 20;

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Cost {
  std::string stage;
  std::size_t mappings = 0;                        // mappings the process holds besides the probe's
  double map_us = 0, access_us = 0, unmap_us = 0;  // per 8 MiB mapping
};

// Map, grant and unmap `hs` (8 MiB each) at `va`, 5 rounds; medians per mapping.
bool Probe(prim::Backend& be, std::uintptr_t va, const std::vector<prim::PhysHandle>& hs, Cost* c,
           std::string* why) {
  const std::size_t g = 8 * kMiB;
  const double n = static_cast<double>(hs.size());
  std::vector<double> m, a, u;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < hs.size(); ++i)
      if (prim::Status s = be.map(va + i * g, g, hs[i]); !s.ok()) return *why = s.message, false;
    const auto t1 = Clock::now();
    for (std::size_t i = 0; i < hs.size(); ++i)
      if (prim::Status s = be.set_access(0, va + i * g, g); !s.ok()) return *why = s.message, false;
    const auto t2 = Clock::now();
    for (std::size_t i = 0; i < hs.size(); ++i)
      if (prim::Status s = be.unmap(va + i * g, g); !s.ok()) return *why = s.message, false;
    const auto t3 = Clock::now();
    m.push_back(Us(t0, t1) / n), a.push_back(Us(t1, t2) / n), u.push_back(Us(t2, t3) / n);
  }
  c->map_us = Median(m), c->access_us = Median(a), c->unmap_us = Median(u);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  double host_gib = 16, device_gib = 8;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "vmm_scaling: %s needs a value\n", k.c_str());
      return 2;
    }
    const char* v = argv[++i];
    if (k == "--host-gib")
      host_gib = std::atof(v);
    else if (k == "--device-gib")
      device_gib = std::atof(v);
    else if (k == "--json")
      json = v;
    else {
      std::fprintf(stderr, "vmm_scaling: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (!(host_gib > 0) || !(device_gib > 0)) {
    std::fprintf(stderr, "vmm_scaling: --host-gib and --device-gib must be > 0\n");
    return 2;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "vmm_scaling: no GPU\n");
    return 77;
  }
  cudaSetDevice(0);
  cudaFree(nullptr);  // the primary context
  // One allocation through the runtime: under the preload (`spillway run [--track] --
  // vmm_scaling`) it starts Spillway's allocator, and with --track the tracker (CUPTI
  // subscribed), so the same probe shows what they add to the driver's VMM calls.
  void* touch = nullptr;
  if (cudaMalloc(&touch, 2 * kMiB) != cudaSuccess) {
    std::fprintf(stderr, "vmm_scaling: cudaMalloc of 2 MiB failed\n");
    return 1;
  }
  std::string why;
  auto be = prim::CudaBackend::Create(&why);
  if (!be) {
    std::fprintf(stderr, "vmm_scaling: %s\n", why.c_str());
    return 1;
  }
  char bus[32] = {};
  cudaDeviceGetPCIBusId(bus, sizeof bus, 0);
  std::string how;
  const int numa = spillway::offload::NearestNumaNode(bus, &how);
  auto fail = [&](const std::string& what) {
    std::fprintf(stderr, "vmm_scaling: %s: %s\n", what.c_str(), why.c_str());
    return 1;
  };

  // The probe: 32 device chunks of 8 MiB and a 256 MiB VA range.
  const std::size_t g = 8 * kMiB, n = 32;
  std::uintptr_t va = 0;
  if (prim::Status s = be->reserve(0, g * n, g, &va); !s.ok()) return why = s.message, fail("VA");
  std::vector<prim::PhysHandle> hs(n, 0);
  for (auto& h : hs)
    if (prim::Status s = be->create({prim::LocationKind::kDevice, 0}, g, &h); !s.ok())
      return why = s.message, fail("creating the probe's chunks");
  std::vector<Cost> out;
  std::size_t held = 0;
  auto probe = [&](const std::string& stage) {
    Cost c;
    c.stage = stage, c.mappings = held;
    if (!Probe(*be, va, hs, &c, &why)) return false;
    out.push_back(c);
    return true;
  };
  if (!probe("idle, nothing else mapped")) return fail("probe");

  // The host tier's chunks, as the pager creates them.
  const std::size_t host_chunks = static_cast<std::size_t>(host_gib * 1024) / 2;
  auto pool =
      std::make_unique<spillway::offload::HostPool>(*be, 0, numa, 2 * kMiB, host_chunks * 2 * kMiB);
  const auto tp = Clock::now();
  if (pool->reserve(host_chunks * 2 * kMiB, &why) != SPILLWAY_OK) return fail("host pool");
  const double pool_s = Us(tp, Clock::now()) / 1e6;
  held += host_chunks;
  if (!probe("+ host tier chunks (2 MiB, device+CPU access)")) return fail("probe");

  // Device 2 MiB chunks, each mapped and granted on its own (an arena's chunks).
  const std::size_t dev_chunks = static_cast<std::size_t>(device_gib * 1024) / 2;
  std::uintptr_t dva = 0;
  if (prim::Status s = be->reserve(0, dev_chunks * 2 * kMiB, 2 * kMiB, &dva); !s.ok())
    return why = s.message, fail("device VA");
  std::vector<prim::PhysHandle> dh(dev_chunks, 0);
  for (std::size_t i = 0; i < dev_chunks; ++i) {
    const std::uintptr_t at = dva + i * 2 * kMiB;
    prim::Status s = be->create({prim::LocationKind::kDevice, 0}, 2 * kMiB, &dh[i]);
    if (s.ok()) s = be->map(at, 2 * kMiB, dh[i]);
    if (s.ok()) s = be->set_access(0, at, 2 * kMiB);
    if (!s.ok()) return why = s.message, fail("device chunks");
  }
  held += dev_chunks;
  if (!probe("+ device chunks (2 MiB, one mapping each)")) return fail("probe");

  pool.reset();
  held -= host_chunks;
  if (!probe("host tier released, device chunks kept")) return fail("probe");
  for (std::size_t i = 0; i < dev_chunks; ++i) {
    be->unmap(dva + i * 2 * kMiB, 2 * kMiB);
    be->release(dh[i]);
  }
  be->release_va(dva, dev_chunks * 2 * kMiB);
  held -= dev_chunks;
  if (!probe("everything released again")) return fail("probe");
  for (auto h : hs) be->release(h);
  be->release_va(va, g * n);
  cudaFree(touch);

  std::printf(
      "vmm_scaling: 32 device chunks of 8 MiB mapped, granted and unmapped (median of 5,\n"
      "  us per mapping); host tier %zu chunks on NUMA node %d (%s), created in %.2f s;\n"
      "  device %zu chunks of 2 MiB\n",
      host_chunks, numa, how.c_str(), pool_s, dev_chunks);
  std::printf("  %-48s %8s %8s %8s %8s\n", "stage", "mappings", "map", "access", "unmap");
  for (const Cost& c : out)
    std::printf("  %-48s %8zu %8.1f %8.1f %8.1f\n", c.stage.c_str(), c.mappings, c.map_us,
                c.access_us, c.unmap_us);
  if (!json.empty()) {
    std::ofstream j(json);
    j << "{\"probe\": \"32 device chunks of 8 MiB, us per mapping, median of 5\", \"host_chunks\": "
      << host_chunks << ", \"device_chunks\": " << dev_chunks << ", \"stages\": [";
    for (std::size_t i = 0; i < out.size(); ++i)
      j << (i ? ", " : "") << "{\"stage\": \"" << out[i].stage
        << "\", \"other_mappings\": " << out[i].mappings << ", \"map\": " << out[i].map_us
        << ", \"access\": " << out[i].access_us << ", \"unmap\": " << out[i].unmap_us << "}";
    j << "]}\n";
  }
  return 0;
}
