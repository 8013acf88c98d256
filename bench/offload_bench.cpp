// offload_bench.cpp — the pager's copy throughput on the GPU against the link's, in one run:
//   pcie_gbps: cudaMemcpyAsync between pinned host memory (cudaMallocHost) and device memory,
//              each way, blocks of --block-mib;
//   host_gbps: Spillway evicting blocks to its host tier (copy + remap) and prefetching them
//              back, the same bytes in the same block size;
//   nvme (with --nvme-dir): blocks evicted to the NVMe tier and read back, against plain
//              io_uring O_DIRECT on the same directory (offload::RawIoThroughput);
//   remapping: the driver's calls per page, by physical chunk size (bench/remap_chunk_size.h),
//              their scaling over threads, and whether they hold
//              up launches made meanwhile from another thread (bench/launch_remap.h).
// The pager maps as it does under SPILLWAY_OFFLOAD=1: spans on (SPILLWAY_SPANS=auto), of
// SPILLWAY_SPAN_MIB (both read from the environment, so an A/B can set them). Up to 1a6c3ad
// it ran with spans off (one mapping per 2 MiB page), unlike every offload run.
// Medians of --reps repetitions. Prints a table and writes --json FILE.
//   offload_bench [--gib 8] [--block-mib 256] [--reps 3] [--nvme-dir DIR] [--nvme-gib 4]
//                 [--json FILE]
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "allocator/prim/cuda_backend.h"
#include "bench/launch_remap.h"
#include "bench/remap_chunk_size.h"
#include "bench/remap_under_copy.h"
#include "offload/nvme_store.h"
#include "offload/pager.h"

namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
#define CK(x)                                                              \
  do {                                                                     \
    cudaError_t e_ = (x);                                                  \
    if (e_ != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)
#define SK(x)                                                             \
  do {                                                                    \
    spillway_status s_ = (x);                                             \
    if (s_ != SPILLWAY_OK) {                                              \
      std::fprintf(stderr, "%s failed: %s\n", #x, spillway::LastError()); \
      std::exit(1);                                                       \
    }                                                                     \
  } while (0)

struct Args {
  double gib = 8, nvme_gib = 4;
  std::size_t block_mib = 256;
  int reps = 3;
  std::string nvme_dir, json;
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "offload_bench: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--gib")
      a.gib = std::atof(val().c_str());
    else if (k == "--nvme-gib")
      a.nvme_gib = std::atof(val().c_str());
    else if (k == "--block-mib")
      a.block_mib = std::strtoul(val().c_str(), nullptr, 10);
    else if (k == "--reps")
      a.reps = std::atoi(val().c_str());
    else if (k == "--nvme-dir")
      a.nvme_dir = val();
    else if (k == "--json")
      a.json = val();
    else {
      std::fprintf(stderr, "offload_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (a.reps < 1 || a.block_mib < 2 || a.block_mib % 2 != 0 || !(a.gib > 0) ||
      (!a.nvme_dir.empty() && !(a.nvme_gib > 0))) {
    std::fprintf(stderr,
                 "offload_bench: --reps must be >= 1, --block-mib an even number >= 2 (whole 2 "
                 "MiB pages), --gib and --nvme-gib > 0\n");
    return 2;
  }
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::fprintf(stderr, "offload_bench: no GPU\n");
    return 77;
  }
  const std::size_t block = a.block_mib << 20;
  const std::size_t nblocks =
      std::max<std::size_t>(1, static_cast<std::size_t>(a.gib * 1024) / a.block_mib);
  const double bytes = static_cast<double>(nblocks * block);
  CK(cudaSetDevice(0));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  // ---- anchor: pinned memcpy, each way
  void* host = nullptr;
  void* dev = nullptr;
  CK(cudaMallocHost(&host, nblocks * block));
  CK(cudaMalloc(&dev, nblocks * block));
  CK(cudaMemset(dev, 1, nblocks * block));
  std::memset(host, 2, nblocks * block);
  std::vector<double> d2h, h2d;
  for (int r = 0; r < a.reps + 1; ++r) {
    auto t0 = Clock::now();
    for (std::size_t b = 0; b < nblocks; ++b)
      CK(cudaMemcpyAsync(static_cast<char*>(host) + b * block, static_cast<char*>(dev) + b * block,
                         block, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    auto t1 = Clock::now();
    for (std::size_t b = 0; b < nblocks; ++b)
      CK(cudaMemcpyAsync(static_cast<char*>(dev) + b * block, static_cast<char*>(host) + b * block,
                         block, cudaMemcpyHostToDevice, s));
    CK(cudaStreamSynchronize(s));
    auto t2 = Clock::now();
    if (r == 0) continue;  // warm-up
    d2h.push_back(bytes / Seconds(t0, t1) / 1e9);
    h2d.push_back(bytes / Seconds(t1, t2) / 1e9);
  }
  CK(cudaFree(dev));
  CK(cudaFreeHost(host));

  // ---- Spillway: evict to the host tier and prefetch back
  spillway::Config cfg;
  {  // SPILLWAY_SPANS and SPILLWAY_SPAN_MIB only; auto means on (this allocator runs the pager)
    spillway::Config env;
    std::string cerr;
    if (!spillway::ParseConfig([](const char* n) { return std::getenv(n); }, &env, &cerr)) {
      std::fprintf(stderr, "offload_bench: %s\n", cerr.c_str());
      return 2;
    }
    cfg.spans = env.spans == spillway::Config::Spans::kOff ? spillway::Config::Spans::kOff
                                                           : spillway::Config::Spans::kOn;
    cfg.span_mib = env.span_mib;
  }
  const bool spans_on = cfg.spans == spillway::Config::Spans::kOn;
  cfg.host_limit_bytes = nblocks * block + (std::size_t{64} << 20);
  if (!a.nvme_dir.empty()) cfg.nvme_path = a.nvme_dir;
  std::string err;
  auto backend = spillway::prim::CudaBackend::Create(&err);
  if (!backend) {
    std::fprintf(stderr, "offload_bench: %s\n", err.c_str());
    return 1;
  }
  // Evicts every block to the host and prefetches all back, reps times (after a warm-up).
  auto measure = [&](spillway::Allocator& al, std::vector<void*>& blocks, double* pool_s,
                     std::vector<double>* evict, std::vector<double>* fetch) {
    for (auto& p : blocks)
      SK(al.allocate(&p, block, 0, s, false, spillway::trace::Kind::kApiMalloc));
    for (void* p : blocks) CK(cudaMemsetAsync(p, 3, block, s));
    CK(cudaStreamSynchronize(s));
    spillway::offload::Pager* pg = nullptr;
    SK(al.pager(0, &pg));
    auto tp0 = Clock::now();
    SK(pg->host_pool().reserve(nblocks * block, &err));
    *pool_s = Seconds(tp0, Clock::now());
    std::vector<std::uintptr_t> all;
    for (void* p : blocks) all.push_back(reinterpret_cast<std::uintptr_t>(p));
    for (int r = 0; r < a.reps + 1; ++r) {
      auto t0 = Clock::now();
      for (std::uintptr_t p : all) SK(pg->offload(p, spillway::trace::kTierHost, false));
      SK(pg->synchronize());
      auto t1 = Clock::now();
      SK(pg->prefetch_many(all.data(), all.size(), s));
      CK(cudaStreamSynchronize(s));
      SK(pg->synchronize());
      auto t2 = Clock::now();
      if (r == 0) continue;
      const double moved = static_cast<double>(pg->counters().bytes_to_host.load()) /
                           static_cast<double>(r + 1);  // whole pages of each block
      evict->push_back(moved / Seconds(t0, t1) / 1e9);
      fetch->push_back(moved / Seconds(t1, t2) / 1e9);
    }
    return pg;
  };
  // Tracked safety (the block index on, as under SPILLWAY_TRACK=1): evicted blocks' VAs stay
  // unmapped while they are on the host. Measured first, then freed.
  double pool_tracked_s = 0;
  std::vector<double> evict_tr, fetch_tr;
  {
    spillway::Config tcfg = cfg;
    tcfg.offload_safety = spillway::Config::Safety::kTracked;
    auto tb = spillway::prim::CudaBackend::Create(&err);
    auto tal = std::make_unique<spillway::Allocator>(std::move(tb), tcfg);
    tal->enable_access_tracking();
    std::vector<void*> tblocks(nblocks);
    measure(*tal, tblocks, &pool_tracked_s, &evict_tr, &fetch_tr);
    for (void* p : tblocks)
      SK(tal->free(p, spillway::FreeMode::kStreamOrdered, s, spillway::trace::Kind::kApiFree));
    CK(cudaStreamSynchronize(s));
  }
  // Strict safety (no tracker): the host chunks are mapped at each evicted block's VA.
  auto alloc = std::make_unique<spillway::Allocator>(std::move(backend), cfg);
  std::vector<void*> blocks(nblocks);
  double pool_s = 0;
  std::vector<double> evict, fetch;
  spillway::offload::Pager* pg = measure(*alloc, blocks, &pool_s, &evict, &fetch);
  // Driver cost of the remapping steps, per 2 MiB page, on a scratch range of 128 pages.
  struct OpCost {
    const char* what;
    double us_per_page;
  };
  std::vector<OpCost> ops;
  {
    spillway::prim::Backend& be = alloc->backend();
    const std::size_t g = std::size_t{2} << 20, np = 128;
    std::uintptr_t va = 0;
    if (!be.reserve(0, np * g, g, &va).ok()) return 1;
    std::vector<spillway::prim::PhysHandle> dh(np), hh(np);
    for (auto& h : dh) be.create({spillway::prim::LocationKind::kDevice, 0}, g, &h);
    for (auto& h : hh)
      be.create({spillway::prim::LocationKind::kHostNuma, pg->host_pool().numa()}, g, &h);
    auto per_page = [&](auto&& fn) {
      auto t0 = Clock::now();
      fn();
      return Seconds(t0, Clock::now()) * 1e6 / np;
    };
    for (int kind = 0; kind < 3; ++kind) {  // device chunks; host chunks device-only; host + CPU
      auto& hs = kind == 0 ? dh : hh;
      ops.push_back({kind == 0 ? "map device chunk" : "map host chunk", per_page([&] {
                       for (std::size_t i = 0; i < np; ++i) be.map(va + i * g, g, hs[i]);
                     })});
      ops.push_back({kind == 0   ? "access device (1 call/page)"
                     : kind == 1 ? "access host->device (1 call/page)"
                                 : "access host->device+cpu (1 call/page)",
                     per_page([&] {
                       for (std::size_t i = 0; i < np; ++i)
                         kind == 2 ? be.set_access_host(0, pg->host_pool().numa(), va + i * g, g)
                                   : be.set_access(0, va + i * g, g);
                     })});
      ops.push_back({"unmap (1 call/page)", per_page([&] {
                       for (std::size_t i = 0; i < np; ++i) be.unmap(va + i * g, g);
                     })});
      for (std::size_t i = 0; i < np; ++i) be.map(va + i * g, g, hs[i]);
      ops.push_back({"access (1 call for the range)", per_page([&] {
                       kind == 2 ? be.set_access_host(0, pg->host_pool().numa(), va, np * g)
                                 : be.set_access(0, va, np * g);
                     })});
      ops.push_back({"unmap (1 call for the range)", per_page([&] {
                       if (!be.unmap(va, np * g).ok())
                         for (std::size_t i = 0; i < np; ++i) be.unmap(va + i * g, g);
                     })});
    }
    for (auto h : dh) be.release(h);
    for (auto h : hh) be.release(h);
    be.release_va(va, np * g);
  }
  // Whether the driver's mapping calls scale across threads (the question behind a mapping
  // thread off the launch path): T threads, each remapping device chunks on its own VA range
  // (map, grant access, unmap; one page at a time), all at once. Aggregate us per page.
  std::vector<std::pair<int, double>> remap_scaling;
  {
    spillway::prim::Backend& be = alloc->backend();
    const std::size_t g = std::size_t{2} << 20, np = 64;
    for (int threads : {1, 2, 4, 8}) {
      struct Range {
        std::uintptr_t va = 0;
        std::vector<spillway::prim::PhysHandle> h;
      };
      std::vector<Range> rs(static_cast<std::size_t>(threads));
      bool ok = true;
      for (Range& r : rs) {
        ok = ok && be.reserve(0, np * g, g, &r.va).ok();
        r.h.resize(np);
        for (auto& h : r.h)
          ok = ok && be.create({spillway::prim::LocationKind::kDevice, 0}, g, &h).ok();
      }
      if (ok) {
        std::atomic<bool> go{false};
        std::atomic<int> failed{0};
        std::vector<std::thread> ts;
        for (Range& r : rs)
          ts.emplace_back([&be, &go, &failed, &r, g] {
            while (!go.load(std::memory_order_acquire)) {
            }
            for (int round = 0; round < 3; ++round)
              for (std::size_t i = 0; i < r.h.size(); ++i) {
                const std::uintptr_t at = r.va + i * g;
                if (!be.map(at, g, r.h[i]).ok() || !be.set_access(0, at, g).ok() ||
                    !be.unmap(at, g).ok())
                  failed.fetch_add(1);
              }
          });
        const auto t0 = Clock::now();
        go.store(true, std::memory_order_release);
        for (auto& t : ts) t.join();
        const double us = Seconds(t0, Clock::now()) * 1e6 / (3.0 * np * threads);
        if (failed.load() == 0) remap_scaling.push_back({threads, us});
      }
      for (Range& r : rs) {
        for (auto h : r.h)
          if (h != 0) be.release(h);
        if (r.va != 0) be.release_va(r.va, np * g);
      }
    }
  }
  spillway::bench::LaunchRemap lr;
  std::string lr_why;
  const bool lr_ok = spillway::bench::MeasureLaunchWhileRemapping(alloc->backend(), &lr, &lr_why);
  if (!lr_ok) std::fprintf(stderr, "offload_bench: launches while remapping: %s\n", lr_why.c_str());
  std::vector<spillway::bench::ChunkRemapCost> by_chunk;
  std::string bc_why;
  if (!spillway::bench::MeasureRemapByChunkSize(alloc->backend(), &by_chunk, &bc_why))
    std::fprintf(stderr, "offload_bench: remapping by chunk size: %s\n", bc_why.c_str());
  spillway::bench::RemapUnderCopy ruc;
  std::string ruc_why;
  const bool ruc_ok = spillway::bench::MeasureRemapUnderCopy(
      alloc->backend(), pg->host_pool().numa(), &ruc, &ruc_why);
  if (!ruc_ok) std::fprintf(stderr, "offload_bench: remapping under copies: %s\n", ruc_why.c_str());
  const double remap_s = static_cast<double>(pg->counters().remap_ns.load()) / 1e9 / (a.reps + 1);
  const double pcie_d2h = Median(d2h), pcie_h2d = Median(h2d);
  const double host_evict = Median(evict), host_fetch = Median(fetch);

  // ---- NVMe tier
  double nvme_w = 0, nvme_r = 0, raw_w = 0, raw_r = 0;
  if (!a.nvme_dir.empty()) {
    const std::size_t nn = std::min(
        nblocks,
        std::max<std::size_t>(1, static_cast<std::size_t>(a.nvme_gib * 1024) / a.block_mib));
    const double nbytes = static_cast<double>(nn * block);
    // Raw io_uring and the tier alternate, --reps times each, and the medians are compared: the
    // disk's own speed drifts between calls (1.7-2.0 GB/s read on the H200 machine), so a single
    // raw measurement taken before the tier's made ratios above 1 or far below it.
    std::vector<double> rw, rr, tw, tr;
    for (int rep = 0; rep < a.reps; ++rep) {
      double w = 0, r = 0;
      if (!spillway::offload::RawIoThroughput(a.nvme_dir, nn * block, 32, std::size_t{1} << 20, &w,
                                              &r, &err)) {
        std::fprintf(stderr, "offload_bench: raw NVMe I/O failed: %s\n", err.c_str());
        return 1;
      }
      rw.push_back(w);
      rr.push_back(r);
      // Host -> NVMe only (the blocks start on the host), and NVMe -> host -> device: prefetch
      // goes on to the device (the host -> device copies are in the read's time).
      for (std::size_t b = 0; b < nn; ++b)
        SK(pg->offload(reinterpret_cast<std::uintptr_t>(blocks[b]), spillway::trace::kTierHost,
                       true));
      auto t0 = Clock::now();
      for (std::size_t b = 0; b < nn; ++b)
        SK(pg->offload(reinterpret_cast<std::uintptr_t>(blocks[b]), spillway::trace::kTierNvme,
                       true));
      auto t1 = Clock::now();
      for (std::size_t b = 0; b < nn; ++b)
        SK(pg->prefetch(reinterpret_cast<std::uintptr_t>(blocks[b]), s));
      CK(cudaStreamSynchronize(s));
      SK(pg->synchronize());
      auto t2 = Clock::now();
      tw.push_back(nbytes / Seconds(t0, t1) / 1e9);
      tr.push_back(nbytes / Seconds(t1, t2) / 1e9);
    }
    raw_w = Median(rw);
    raw_r = Median(rr);
    nvme_w = Median(tw);
    nvme_r = Median(tr);
  }
  for (void* p : blocks)
    SK(alloc->free(p, spillway::FreeMode::kStreamOrdered, s, spillway::trace::Kind::kApiFree));
  CK(cudaStreamSynchronize(s));

  std::printf("offload_bench: %zu blocks of %zu MiB (%.1f GiB), median of %d; spans %s\n", nblocks,
              a.block_mib, bytes / (1 << 30), a.reps,
              spans_on ? (std::to_string(cfg.span_mib) + " MiB").c_str() : "off");
  std::printf("  %-34s %8.2f GB/s\n", "pinned memcpy device->host", pcie_d2h);
  std::printf("  %-34s %8.2f GB/s  (%.3f of memcpy)\n", "strict: evict (copy+remap)", host_evict,
              host_evict / pcie_d2h);
  std::printf("  %-34s %8.2f GB/s\n", "pinned memcpy host->device", pcie_h2d);
  std::printf("  %-34s %8.2f GB/s  (%.3f of memcpy)\n", "strict: prefetch (remap+copy)", host_fetch,
              host_fetch / pcie_h2d);
  std::printf("  %-34s %8.2f GB/s  (%.3f of memcpy)\n", "tracked: evict (copy+unmap)",
              Median(evict_tr), Median(evict_tr) / pcie_d2h);
  std::printf("  %-34s %8.2f GB/s  (%.3f of memcpy)\n", "tracked: prefetch (map+copy)",
              Median(fetch_tr), Median(fetch_tr) / pcie_h2d);
  std::printf("  %-34s %8.2f s for %.1f GiB\n", "host pool creation", pool_s, bytes / (1 << 30));
  std::printf("  %-34s %8.3f s per round trip (evict + prefetch of all)\n", "remapping (CPU)",
              remap_s);
  for (const OpCost& o : ops) std::printf("    %-40s %8.1f us/page\n", o.what, o.us_per_page);
  for (const auto& [t, us] : remap_scaling)
    std::printf(
        "    remap (map+access+unmap), %d thread%s    %8.1f us/page aggregate (%.2fx one "
        "thread)\n",
        t, t == 1 ? " " : "s", us, remap_scaling.front().second / us);
  if (lr_ok)
    std::printf(
        "    launch of an empty kernel: %.2f us alone, %.2f us (slowest batch %.2f) while "
        "another thread remaps (%.1f us/page meanwhile)\n",
        lr.launch_us_alone, lr.launch_us_remapping, lr.launch_us_max_remapping,
        lr.remap_us_per_page);
  for (const auto& c : by_chunk)
    std::printf(
        "    %3zu MiB chunks: map %.1f, access %.1f, unmap %.1f, create %.1f, release %.1f us per "
        "2 MiB\n",
        c.chunk_bytes >> 20, c.map_us_per_2mib, c.access_us_per_2mib, c.unmap_us_per_2mib,
        c.create_us_per_2mib, c.release_us_per_2mib);
  if (ruc_ok)
    std::printf(
        "    8 MiB chunks, us per 2 MiB, idle / while copying %.0f MiB to the host (%.1f GB/s): "
        "map %.1f / %.1f, access %.1f / %.1f (one call for 256 MiB: %.1f / %.1f; slowest call "
        "%.2f ms), unmap %.1f / %.1f\n",
        4096.0, ruc.copy_gbps, ruc.map_us_idle, ruc.map_us_copying, ruc.access_us_idle,
        ruc.access_us_copying, ruc.access_range_us_idle, ruc.access_range_us_copying,
        ruc.slowest_access_call_ms_copying, ruc.unmap_us_idle, ruc.unmap_us_copying);
  if (ruc_ok)
    std::printf(
        "    access us per 2 MiB while the 4 GiB move in other shapes: to the host in 8 MiB "
        "copies %.1f, in 2 MiB copies %.1f; to the device in 1 GiB copies %.1f, in 8 MiB "
        "copies %.1f\n",
        ruc.access_us_d2h_8m, ruc.access_us_d2h_2m, ruc.access_us_h2d_1g, ruc.access_us_h2d_8m);
  if (ruc_ok)
    std::printf(
        "    access us per 2 MiB while copying to the host, by physical allocation: 2 MiB %.1f, "
        "8 MiB %.1f, 32 MiB %.1f, 128 MiB %.1f\n",
        ruc.access_us_d2h_chunk2, ruc.access_us_copying, ruc.access_us_d2h_chunk32,
        ruc.access_us_d2h_chunk128);
  if (ruc_ok)
    std::printf(
        "    the 4 GiB to the host written by a kernel (no copy engine): %.1f GB/s; access %.1f "
        "us per 2 MiB meanwhile\n",
        ruc.sm_copy_gbps, ruc.access_us_sm_copy);
  if (ruc_ok)
    std::printf(
        "    access us per 2 MiB while 4 GiB move device -> device: copy engine %.1f, copy "
        "kernel %.1f\n",
        ruc.access_us_d2d_ce, ruc.access_us_d2d_sm);
  if (!a.nvme_dir.empty()) {
    std::printf("  %-34s %8.2f GB/s  raw %.2f  (%.3f)\n", "nvme write (host->file)", nvme_w, raw_w,
                nvme_w / raw_w);
    std::printf("  %-34s %8.2f GB/s  raw %.2f  (%.3f)\n", "nvme read (file->host->device)", nvme_r,
                raw_r, nvme_r / raw_r);
  }
  if (!a.json.empty()) {
    std::ofstream j(a.json);
    j << "{\"blocks\": " << nblocks << ", \"block_bytes\": " << block << ", \"reps\": " << a.reps
      << ", \"span_mib\": " << (spans_on ? cfg.span_mib : 0)
      << ",\n \"pcie_gbps\": {\"d2h\": " << pcie_d2h << ", \"h2d\": " << pcie_h2d << "},"
      << "\n \"host_gbps\": {\"evict\": " << host_evict << ", \"prefetch\": " << host_fetch
      << "},\n \"host_gbps_tracked\": {\"evict\": " << Median(evict_tr)
      << ", \"prefetch\": " << Median(fetch_tr)
      << "},\n \"host_over_pcie_tracked\": {\"evict\": " << Median(evict_tr) / pcie_d2h
      << ", \"prefetch\": " << Median(fetch_tr) / pcie_h2d
      << "},\n \"host_over_pcie\": {\"evict\": " << host_evict / pcie_d2h
      << ", \"prefetch\": " << host_fetch / pcie_h2d << "},\n \"host_pool_create_s\": " << pool_s
      << ",\n \"remap_s_per_round_trip\": " << remap_s;
    j << ",\n \"remap_us_per_page_by_threads\": {";
    for (std::size_t i = 0; i < remap_scaling.size(); ++i)
      j << (i ? ", " : "") << "\"" << remap_scaling[i].first << "\": " << remap_scaling[i].second;
    j << "}";
    if (lr_ok)
      j << ",\n \"launch_while_remapping\": {\"launch_us_alone\": " << lr.launch_us_alone
        << ", \"launch_us_remapping\": " << lr.launch_us_remapping
        << ", \"launch_us_max_remapping\": " << lr.launch_us_max_remapping
        << ", \"remap_us_per_page\": " << lr.remap_us_per_page << "}";
    j << ",\n \"remap_us_per_2mib_by_chunk_mib\": {";
    for (std::size_t i = 0; i < by_chunk.size(); ++i)
      j << (i ? ", " : "") << "\"" << (by_chunk[i].chunk_bytes >> 20)
        << "\": {\"map\": " << by_chunk[i].map_us_per_2mib
        << ", \"access\": " << by_chunk[i].access_us_per_2mib
        << ", \"unmap\": " << by_chunk[i].unmap_us_per_2mib
        << ", \"create\": " << by_chunk[i].create_us_per_2mib
        << ", \"release\": " << by_chunk[i].release_us_per_2mib << "}";
    j << "}";
    if (ruc_ok)
      j << ",\n \"remap_us_per_2mib_under_copy\": {\"chunk_mib\": 8, \"copy_ms\": " << ruc.copy_ms
        << ", \"copy_gbps\": " << ruc.copy_gbps << ", \"idle\": {\"map\": " << ruc.map_us_idle
        << ", \"access\": " << ruc.access_us_idle
        << ", \"access_one_call\": " << ruc.access_range_us_idle
        << ", \"unmap\": " << ruc.unmap_us_idle
        << "}, \"copying\": {\"map\": " << ruc.map_us_copying
        << ", \"access\": " << ruc.access_us_copying
        << ", \"access_one_call\": " << ruc.access_range_us_copying
        << ", \"unmap\": " << ruc.unmap_us_copying
        << ", \"slowest_access_call_ms\": " << ruc.slowest_access_call_ms_copying
        << "}, \"access_by_copy_shape\": {\"d2h_8mib\": " << ruc.access_us_d2h_8m
        << ", \"d2h_2mib\": " << ruc.access_us_d2h_2m << ", \"h2d_1gib\": " << ruc.access_us_h2d_1g
        << ", \"h2d_8mib\": " << ruc.access_us_h2d_8m
        << "}, \"access_copying_by_chunk_mib\": {\"2\": " << ruc.access_us_d2h_chunk2
        << ", \"8\": " << ruc.access_us_copying << ", \"32\": " << ruc.access_us_d2h_chunk32
        << ", \"128\": " << ruc.access_us_d2h_chunk128
        << "}, \"sm_copy_gbps\": " << ruc.sm_copy_gbps
        << ", \"access_while_sm_copy\": " << ruc.access_us_sm_copy
        << ", \"access_while_d2d\": {\"copy_engine\": " << ruc.access_us_d2d_ce
        << ", \"copy_kernel\": " << ruc.access_us_d2d_sm << "}}";
    if (!a.nvme_dir.empty())
      j << ",\n \"nvme\": {\"nvme_gbps\": {\"write\": " << nvme_w << ", \"read\": " << nvme_r
        << "}, \"nvme_raw_gbps\": {\"write\": " << raw_w << ", \"read\": " << raw_r
        << "}, \"ratio\": {\"write\": " << nvme_w / raw_w << ", \"read\": " << nvme_r / raw_r
        << "}}";
    j << "\n}\n";
  }
  return 0;
}
