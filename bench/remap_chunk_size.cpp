// remap_chunk_size.cpp — see remap_chunk_size.h.
#include "bench/remap_chunk_size.h"

#include <algorithm>
#include <chrono>

namespace spillway::bench {
namespace {

double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

bool MeasureRemapByChunkSize(prim::Backend& be, std::vector<ChunkRemapCost>* out,
                             std::string* why) {
  using Clock = std::chrono::steady_clock;
  constexpr std::size_t kRange = std::size_t{256} << 20, k2M = std::size_t{2} << 20;
  std::uintptr_t va = 0;
  if (prim::Status s = be.reserve(0, kRange, std::size_t{128} << 20, &va); !s.ok()) {
    *why = "reserving 256 MiB of VA: " + s.message;
    return false;
  }
  bool ok = true;
  for (std::size_t mib : {2, 8, 32, 128}) {
    const std::size_t chunk = mib << 20, n = kRange / chunk;
    std::vector<prim::PhysHandle> hs(n, 0);
    const auto c0 = Clock::now();
    for (auto& h : hs)
      if (prim::Status s = be.create({prim::LocationKind::kDevice, 0}, chunk, &h); !s.ok()) {
        *why = "creating a " + std::to_string(mib) + " MiB device chunk: " + s.message;
        ok = false;
        break;
      }
    const auto c1 = Clock::now();
    std::vector<double> map_us, access_us, unmap_us;
    const double pages = static_cast<double>(kRange / k2M);
    for (int round = 0; ok && round < 3; ++round) {
      auto t0 = Clock::now();
      for (std::size_t i = 0; ok && i < n; ++i) ok = be.map(va + i * chunk, chunk, hs[i]).ok();
      auto t1 = Clock::now();
      for (std::size_t i = 0; ok && i < n; ++i) ok = be.set_access(0, va + i * chunk, chunk).ok();
      auto t2 = Clock::now();
      for (std::size_t i = 0; i < n; ++i) ok = be.unmap(va + i * chunk, chunk).ok() && ok;
      auto t3 = Clock::now();
      if (!ok)
        *why = "mapping, granting access to or unmapping " + std::to_string(mib) + " MiB chunks";
      auto us = [pages](auto a, auto b) {
        return std::chrono::duration<double, std::micro>(b - a).count() / pages;
      };
      map_us.push_back(us(t0, t1));
      access_us.push_back(us(t1, t2));
      unmap_us.push_back(us(t2, t3));
    }
    const auto r0 = Clock::now();
    for (auto h : hs)
      if (h != 0) be.release(h);
    const auto r1 = Clock::now();
    if (!ok) break;
    auto per = [pages](auto a, auto b) {
      return std::chrono::duration<double, std::micro>(b - a).count() / pages;
    };
    out->push_back({chunk, MedianOf(map_us), MedianOf(access_us), MedianOf(unmap_us), per(c0, c1),
                    per(r0, r1)});
  }
  be.release_va(va, kRange);
  return ok;
}

}  // namespace spillway::bench
