// grant_under_d2h.cpp — does a grant wait behind device -> host copies whatever host memory they
// write, or only behind writes into the host tier's memory (cuMemCreate at HOST_NUMA)? While the
// copy engine writes to the host, cuMemSetAccess costs ~1 ms a mapping against ~25 us idle
// (docs/offload.md, "Driver calls under copy traffic"); every copy measured so far wrote into
// cuMemCreate'd host memory. Here the same grants (32 device chunks of 8 MiB, mapped, granted one
// by one, unmapped) run while 4 GiB go device -> host in 2 MiB copies into: cudaMallocHost
// memory, malloc'd memory registered with cudaHostRegister, the host tier's chunks
// (offload::HostPool), and, as controls, device memory and host -> device from cudaMallocHost.
//   grant_under_d2h [--json FILE]      exit 77 without a GPU
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "allocator/prim/cuda_backend.h"
#include "offload/host_pool.h"
#include "offload/numa.h"

namespace {

namespace prim = spillway::prim;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kBuf = 1024 * kMiB, kPiece = 2 * kMiB, kPasses = 4;

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
bool Ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    std::fprintf(stderr, "grant_under_d2h: %s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

struct Row {
  std::string what;
  double copy_gbps = 0;  // the copies alone
  double access_us = 0;  // per 8 MiB mapping while they run (median of 3 rounds)
};

}  // namespace

int main(int argc, char** argv) {
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else {
      std::fprintf(stderr, "grant_under_d2h: usage: grant_under_d2h [--json FILE]\n");
      return 2;
    }
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "grant_under_d2h: no GPU\n");
    return 77;
  }
  if (!Ck(cudaSetDevice(0), "cudaSetDevice")) return 1;
  std::string why;
  auto be = prim::CudaBackend::Create(&why);
  if (!be) {
    std::fprintf(stderr, "grant_under_d2h: %s\n", why.c_str());
    return 1;
  }
  char bus[32] = {};
  cudaDeviceGetPCIBusId(bus, sizeof bus, 0);
  std::string how;
  const int numa = spillway::offload::NearestNumaNode(bus, &how);

  // The probe's chunks and VA.
  const std::size_t g = 8 * kMiB, n = 32;
  std::uintptr_t va = 0;
  std::vector<prim::PhysHandle> hs(n, 0);
  bool ok = be->reserve(0, g * n, g, &va).ok();
  for (auto& h : hs) ok = ok && be->create({prim::LocationKind::kDevice, 0}, g, &h).ok();
  if (!ok) {
    std::fprintf(stderr, "grant_under_d2h: the probe's chunks could not be made\n");
    return 1;
  }
  // Grants of the probe's chunks, us per mapping (mapped before, unmapped after, untimed).
  auto grants = [&](double* us) {
    for (std::size_t i = 0; i < n; ++i)
      if (!be->map(va + i * g, g, hs[i]).ok()) return false;
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i)
      if (!be->set_access(0, va + i * g, g).ok()) return false;
    *us = Us(t0, Clock::now()) / static_cast<double>(n);
    for (std::size_t i = 0; i < n; ++i)
      if (!be->unmap(va + i * g, g).ok()) return false;
    return true;
  };

  void *dev = nullptr, *dev2 = nullptr, *pinned = nullptr, *registered = nullptr;
  cudaStream_t st = nullptr;
  ok = Ck(cudaMalloc(&dev, kBuf), "cudaMalloc") && Ck(cudaMalloc(&dev2, kBuf), "cudaMalloc") &&
       Ck(cudaMallocHost(&pinned, kBuf), "cudaMallocHost") &&
       Ck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
  registered = std::aligned_alloc(2 * kMiB, kBuf);
  ok = ok && registered != nullptr &&
       Ck(cudaHostRegister(registered, kBuf, cudaHostRegisterDefault), "cudaHostRegister");
  spillway::offload::HostPool pool(*be, 0, numa, 2 * kMiB, kBuf);
  std::vector<spillway::offload::HostChunk> chunks;
  ok = ok && pool.acquire(kBuf / (2 * kMiB), &chunks, &why) == SPILLWAY_OK;
  if (!ok) {
    std::fprintf(stderr, "grant_under_d2h: buffers: %s\n", why.c_str());
    return 1;
  }
  ok = Ck(cudaMemset(dev, 1, kBuf), "memset") && Ck(cudaMemset(dev2, 2, kBuf), "memset");
  std::memset(pinned, 3, kBuf);
  std::memset(registered, 4, kBuf);

  // `dst(off)` / `src(off)`: the addresses of the 2 MiB piece at `off`.
  using Addr = std::function<void*(std::size_t)>;
  auto at = [](void* base) -> Addr {
    return [base](std::size_t off) { return static_cast<char*>(base) + off; };
  };
  Addr tier = [&](std::size_t off) {
    return reinterpret_cast<void*>(chunks[off / (2 * kMiB)].window);
  };
  auto queue = [&](const Addr& dst, const Addr& src) {
    for (std::size_t p = 0; p < kPasses; ++p)
      for (std::size_t off = 0; off < kBuf; off += kPiece)
        if (!Ck(cudaMemcpyAsync(dst(off), src(off), kPiece, cudaMemcpyDefault, st), "copy"))
          return false;
    return true;
  };
  struct Case {
    const char* what;
    Addr dst, src;
  };
  const Case cases[] = {
      {"device -> cudaMallocHost memory", at(pinned), at(dev)},
      {"device -> malloc + cudaHostRegister", at(registered), at(dev)},
      {"device -> host tier chunks (cuMemCreate HOST_NUMA)", tier, at(dev)},
      {"device -> device (control)", at(dev2), at(dev)},
      {"cudaMallocHost memory -> device (control)", at(dev), at(pinned)},
  };
  std::vector<Row> rows;
  double idle = 0;
  std::vector<double> idles;
  for (int r = 0; r < 3 && ok; ++r) ok = grants(&idle), idles.push_back(idle);
  rows.push_back({"no copies", 0, Median(idles)});
  for (const Case& c : cases) {
    if (!ok) break;
    Row row{c.what, 0, 0};
    std::vector<double> a;
    const auto t0 = Clock::now();  // the copies alone
    ok = queue(c.dst, c.src) && Ck(cudaStreamSynchronize(st), "sync");
    row.copy_gbps = static_cast<double>(kBuf * kPasses) / (Us(t0, Clock::now()) * 1e3);
    for (int r = 0; r < 3 && ok; ++r) {
      double us = 0;
      ok = queue(c.dst, c.src) && grants(&us) && Ck(cudaStreamSynchronize(st), "sync");
      a.push_back(us);
    }
    row.access_us = Median(a);
    rows.push_back(row);
  }
  if (!ok) std::fprintf(stderr, "grant_under_d2h: a round failed; the table is partial\n");
  pool.release(chunks);
  for (auto h : hs) be->release(h);
  be->release_va(va, g * n);
  cudaHostUnregister(registered);
  std::free(registered);
  cudaFreeHost(pinned);
  cudaFree(dev);
  cudaFree(dev2);
  cudaStreamDestroy(st);

  std::printf(
      "grant_under_d2h: cuMemSetAccess per 8 MiB device mapping (32, median of 3) while\n"
      "  4 GiB move in 2 MiB copies; host tier on NUMA node %d\n",
      numa);
  std::printf("  %-52s %10s %12s\n", "copies", "GB/s", "access us");
  for (const Row& r : rows)
    std::printf("  %-52s %10.1f %12.1f\n", r.what.c_str(), r.copy_gbps, r.access_us);
  if (!json.empty()) {
    std::ofstream j(json);
    j << "{\"probe\": \"cuMemSetAccess per 8 MiB device mapping, 32 mappings, median of 3\", "
         "\"copies\": \"4 GiB in 2 MiB cudaMemcpyAsync\", \"rows\": [";
    for (std::size_t i = 0; i < rows.size(); ++i)
      j << (i ? ", " : "") << "{\"copies\": \"" << rows[i].what
        << "\", \"copy_gbps\": " << rows[i].copy_gbps << ", \"access_us\": " << rows[i].access_us
        << "}";
    j << "]}\n";
  }
  return ok ? 0 : 1;
}
