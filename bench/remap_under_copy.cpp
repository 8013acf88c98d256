// remap_under_copy.cpp — see remap_under_copy.h.
#include "bench/remap_under_copy.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace spillway::bench {
namespace {

using Clock = std::chrono::steady_clock;

double MedianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// A range of `n` physical allocations of `chunk` bytes mapped at a new VA (device access, and
// the CPU's too for host memory); everything undone by release().
struct Buffer {
  prim::Backend* be = nullptr;
  std::uintptr_t va = 0;
  std::size_t chunk = 0;
  std::vector<prim::PhysHandle> hs;
  bool mapped = false;
  bool make(prim::Backend& b, prim::Location loc, std::size_t c, std::size_t n, std::string* why) {
    be = &b;
    chunk = c;
    if (prim::Status s = b.reserve(0, c * n, c, &va); !s.ok()) {
      *why = "reserving VA: " + s.message;
      va = 0;
      return false;
    }
    hs.assign(n, 0);
    for (auto& h : hs)
      if (prim::Status s = b.create(loc, c, &h); !s.ok()) {
        *why = "creating memory: " + s.message;
        return false;
      }
    for (std::size_t i = 0; i < n; ++i)
      if (prim::Status s = b.map(va + i * c, c, hs[i]); !s.ok()) {
        for (std::size_t j = 0; j < i; ++j) b.unmap(va + j * c, c);
        *why = "mapping memory: " + s.message;
        return false;
      }
    mapped = true;
    prim::Status s = loc.kind == prim::LocationKind::kDevice
                         ? b.set_access(0, va, c * n)
                         : b.set_access_host(0, loc.id, va, c * n);
    if (!s.ok()) *why = "granting access: " + s.message;
    return s.ok();
  }
  void release() {
    if (be == nullptr) return;
    if (mapped)
      for (std::size_t i = 0; i < hs.size(); ++i) be->unmap(va + i * chunk, chunk);
    for (auto h : hs)
      if (h != 0) be->release(h);
    if (va != 0) be->release_va(va, chunk * hs.size());
    be = nullptr;
  }
};

}  // namespace

bool MeasureRemapUnderCopy(prim::Backend& be, int numa, RemapUnderCopy* out, std::string* why) {
  constexpr std::size_t kMiB = std::size_t{1} << 20, kChunk = 8 * kMiB, kRange = 256 * kMiB;
  constexpr std::size_t kCopyChunk = 128 * kMiB, kCopyChunks = 8, kCopies = 4;  // 4 x 1 GiB
  constexpr std::size_t kN = kRange / kChunk;
  const double pages = static_cast<double>(kRange / (2 * kMiB));
  Buffer dev, host;
  std::uintptr_t va = 0;
  std::vector<prim::PhysHandle> hs(kN, 0);
  prim::Stream st = nullptr;
  prim::Event ev = nullptr;
  bool ok = dev.make(be, {prim::LocationKind::kDevice, 0}, kCopyChunk, kCopyChunks, why) &&
            host.make(be, {prim::LocationKind::kHostNuma, numa}, kCopyChunk, kCopyChunks, why);
  if (ok && !(ok = be.reserve(0, kRange, kChunk, &va).ok())) *why = "reserving VA", va = 0;
  for (std::size_t i = 0; ok && i < kN; ++i)
    if (!(ok = be.create({prim::LocationKind::kDevice, 0}, kChunk, &hs[i]).ok()))
      *why = "creating 8 MiB chunks";
  if (ok && !(ok = be.stream_create(0, &st).ok())) *why = "creating a stream", st = nullptr;
  if (ok && !(ok = be.event_create(0, &ev).ok())) *why = "creating an event", ev = nullptr;
  // 4 GiB between the buffers in copies of `piece` bytes, then the event.
  auto queue_shaped = [&](bool to_host, std::size_t piece) -> bool {
    const std::size_t total = kCopyChunk * kCopyChunks;
    for (std::size_t k = 0; k < kCopies; ++k)
      for (std::size_t off = 0; off < total; off += piece) {
        auto* h = reinterpret_cast<void*>(host.va + off);
        auto* d = reinterpret_cast<void*>(dev.va + off);
        if (!be.copy_async(0, to_host ? h : d, to_host ? d : h, piece, st).ok()) return false;
      }
    return be.event_record(0, ev, st).ok();
  };
  auto queue_copies = [&]() -> bool { return queue_shaped(true, kCopyChunk * kCopyChunks); };
  if (ok) {  // the copies alone (a warm-up first)
    std::vector<double> ms;
    for (int r = 0; ok && r < 3; ++r) {
      const auto t0 = Clock::now();
      ok = queue_copies() && be.event_synchronize(ev).ok();
      ms.push_back(Us(t0, Clock::now()) / 1e3);
    }
    if (!ok) *why = "copying device -> host";
    out->copy_ms = MedianOf({ms.begin() + 1, ms.end()});
    out->copy_gbps = static_cast<double>(kCopyChunk * kCopyChunks * kCopies) / (out->copy_ms * 1e6);
  }
  // One round: map each chunk, grant access per chunk, unmap each; then map again, grant access
  // once for the range, unmap. `copying`: copies are queued first and waited for after.
  auto round = [&](bool copying, double* map_us, double* access_us, double* range_us,
                   double* unmap_us, double* slowest_ms) -> bool {
    if (copying && !queue_copies()) return false;
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < kN; ++i)
      if (!be.map(va + i * kChunk, kChunk, hs[i]).ok()) return false;
    const auto t1 = Clock::now();
    for (std::size_t i = 0; i < kN; ++i) {
      const auto c0 = Clock::now();
      if (!be.set_access(0, va + i * kChunk, kChunk).ok()) return false;
      *slowest_ms = std::max(*slowest_ms, Us(c0, Clock::now()) / 1e3);
    }
    const auto t2 = Clock::now();
    for (std::size_t i = 0; i < kN; ++i)
      if (!be.unmap(va + i * kChunk, kChunk).ok()) return false;
    const auto t3 = Clock::now();
    for (std::size_t i = 0; i < kN; ++i)
      if (!be.map(va + i * kChunk, kChunk, hs[i]).ok()) return false;
    const auto t4 = Clock::now();
    if (!be.set_access(0, va, kRange).ok()) return false;
    const auto t5 = Clock::now();
    if (!be.unmap(va, kRange).ok()) return false;
    *map_us = Us(t0, t1) / pages;
    *access_us = Us(t1, t2) / pages;
    *unmap_us = Us(t2, t3) / pages;
    *range_us = Us(t4, t5) / pages;
    return !copying || be.event_synchronize(ev).ok();
  };
  for (int copying = 0; ok && copying < 2; ++copying) {
    std::vector<double> m, a, r, u;
    double slowest = 0;
    for (int k = 0; ok && k < 3; ++k) {
      double mm = 0, aa = 0, rr = 0, uu = 0;
      if (!(ok = round(copying != 0, &mm, &aa, &rr, &uu, &slowest)))
        *why = "remapping 8 MiB chunks" + std::string(copying ? " while copying" : "");
      m.push_back(mm), a.push_back(aa), r.push_back(rr), u.push_back(uu);
    }
    (copying ? out->map_us_copying : out->map_us_idle) = MedianOf(m);
    (copying ? out->access_us_copying : out->access_us_idle) = MedianOf(a);
    (copying ? out->access_range_us_copying : out->access_range_us_idle) = MedianOf(r);
    (copying ? out->unmap_us_copying : out->unmap_us_idle) = MedianOf(u);
    if (copying) out->slowest_access_call_ms_copying = slowest;
  }
  // The grants alone (map, grant per chunk, unmap) under copies of other shapes.
  struct Shape {
    bool to_host;
    std::size_t piece;
    double* out;
  };
  const Shape shapes[] = {{true, 8 * kMiB, &out->access_us_d2h_8m},
                          {true, 2 * kMiB, &out->access_us_d2h_2m},
                          {false, kCopyChunk * kCopyChunks, &out->access_us_h2d_1g},
                          {false, 8 * kMiB, &out->access_us_h2d_8m}};
  // Median over 3 rounds of the grants alone (map, grant per chunk, unmap) while `queue` has
  // copies in flight; `what` names them in *why on failure.
  auto grants_while = [&](const std::function<bool()>& queue, const std::string& what) {
    std::vector<double> a;
    for (int k = 0; ok && k < 3; ++k) {
      if (!(ok = queue())) {
        *why = "queueing " + what;
        break;
      }
      for (std::size_t i = 0; ok && i < kN; ++i) ok = be.map(va + i * kChunk, kChunk, hs[i]).ok();
      const auto t0 = Clock::now();
      for (std::size_t i = 0; ok && i < kN; ++i)
        ok = be.set_access(0, va + i * kChunk, kChunk).ok();
      a.push_back(Us(t0, Clock::now()) / pages);
      if (ok) ok = be.unmap(va, kRange).ok();
      if (ok) ok = be.event_synchronize(ev).ok();
      if (!ok) *why = "granting access under " + what;
    }
    return MedianOf(a);
  };
  for (const Shape& sh : shapes)
    *sh.out = grants_while([&] { return queue_shaped(sh.to_host, sh.piece); }, "shaped copies");
  // The 4 GiB written to the host by the backend's copy kernel (the pager's evictions under
  // SPILLWAY_OFFLOAD_COPY=kernel) instead of the copy engine. Optional: a failure here is said
  // on stderr and leaves the other results (sm_copy_gbps stays 0).
  if (ok) {
    be.set_kernel_copies_to_host(true);
    auto queue_sm = [&]() -> bool {
      for (std::size_t k = 0; k < kCopies; ++k)
        if (!be.copy_to_host_async(0, reinterpret_cast<void*>(host.va),
                                   reinterpret_cast<void*>(dev.va), kCopyChunk * kCopyChunks, st)
                 .ok())
          return false;
      return be.event_record(0, ev, st).ok();
    };
    bool sm_ok = true;
    const char* sm_why = "";
    std::vector<double> ms, a;
    for (int k = 0; sm_ok && k < 3; ++k) {  // speed alone (the first a warm-up)
      const auto t0 = Clock::now();
      if (!(sm_ok = queue_sm() && be.event_synchronize(ev).ok())) sm_why = "the copy kernel";
      ms.push_back(Us(t0, Clock::now()) / 1e3);
    }
    for (int k = 0; sm_ok && k < 3; ++k) {
      sm_ok = queue_sm();
      std::size_t mapped = 0;
      for (; sm_ok && mapped < kN; ++mapped)
        sm_ok = be.map(va + mapped * kChunk, kChunk, hs[mapped]).ok();
      if (!sm_ok && mapped > 0) --mapped;  // the failed one is not mapped
      const auto t0 = Clock::now();
      for (std::size_t i = 0; sm_ok && i < kN; ++i)
        sm_ok = be.set_access(0, va + i * kChunk, kChunk).ok();
      a.push_back(Us(t0, Clock::now()) / pages);
      for (std::size_t i = 0; i < mapped; ++i) be.unmap(va + i * kChunk, kChunk);
      be.event_synchronize(ev);
      if (!sm_ok) sm_why = "granting access while the copy kernel runs";
    }
    be.set_kernel_copies_to_host(false);
    if (sm_ok) {
      out->sm_copy_gbps = static_cast<double>(kCopyChunk * kCopyChunks * kCopies) /
                          (MedianOf({ms.begin() + 1, ms.end()}) * 1e6);
      out->access_us_sm_copy = MedianOf(a);
    } else {
      std::fprintf(stderr, "remap_under_copy: the kernel-copy part failed: %s\n", sm_why);
    }
  }
  // Grants while the GPU moves bytes within its own memory (no host traffic): 4 GiB as 512 MiB
  // copies between the halves of the device buffer, by the copy engine and by the copy kernel
  // (SMs: what a training step's own kernels look like to the driver). Is a grant slow under any
  // GPU work, or only under writes to the host?
  auto queue_d2d = [&](bool sm) -> bool {
    const std::size_t half = kCopyChunk * kCopyChunks / 2;
    be.set_kernel_copies_to_host(sm);
    bool q = true;
    for (std::size_t k = 0; q && k < 2 * kCopies; ++k) {
      auto* d = reinterpret_cast<void*>(dev.va + (k % 2 == 0 ? half : 0));
      auto* s = reinterpret_cast<void*>(dev.va + (k % 2 == 0 ? 0 : half));
      q = (sm ? be.copy_to_host_async(0, d, s, half, st) : be.copy_async(0, d, s, half, st)).ok();
    }
    be.set_kernel_copies_to_host(false);
    return q && be.event_record(0, ev, st).ok();
  };
  out->access_us_d2d_ce = grants_while([&] { return queue_d2d(false); }, "device -> device copies");
  out->access_us_d2d_sm =
      grants_while([&] { return queue_d2d(true); }, "device -> device kernel copies");
  // Grants under device -> host copies for other sizes of physical allocation.
  struct Size {
    std::size_t chunk;
    double* out;
  };
  const Size sizes[] = {{2 * kMiB, &out->access_us_d2h_chunk2},
                        {32 * kMiB, &out->access_us_d2h_chunk32},
                        {128 * kMiB, &out->access_us_d2h_chunk128}};
  for (const Size& sz : sizes) {
    const std::size_t n = kRange / sz.chunk;
    std::vector<prim::PhysHandle> cs(n, 0);
    for (std::size_t i = 0; ok && i < n; ++i)
      if (!(ok = be.create({prim::LocationKind::kDevice, 0}, sz.chunk, &cs[i]).ok()))
        *why = "creating chunks";
    std::vector<double> a;
    for (int k = 0; ok && k < 3; ++k) {
      if (!(ok = queue_copies())) *why = "queueing copies";
      for (std::size_t i = 0; ok && i < n; ++i)
        ok = be.map(va + i * sz.chunk, sz.chunk, cs[i]).ok();
      const auto t0 = Clock::now();
      for (std::size_t i = 0; ok && i < n; ++i)
        ok = be.set_access(0, va + i * sz.chunk, sz.chunk).ok();
      a.push_back(Us(t0, Clock::now()) / pages);
      for (std::size_t i = 0; i < n; ++i) ok = be.unmap(va + i * sz.chunk, sz.chunk).ok() && ok;
      if (ok) ok = be.event_synchronize(ev).ok();
      if (!ok) *why = "granting access by chunk size under copies";
    }
    for (auto h : cs)
      if (h != 0) be.release(h);
    *sz.out = MedianOf(a);
  }
  if (ev != nullptr) {
    be.event_synchronize(ev);
    be.event_destroy(ev);
  }
  if (st != nullptr) be.stream_destroy(0, st);
  if (!ok && va != 0)  // a round that failed may have left chunks mapped (errors ignored)
    for (std::size_t i = 0; i < kN; ++i) be.unmap(va + i * kChunk, kChunk);
  for (auto h : hs)
    if (h != 0) be.release(h);
  if (va != 0) be.release_va(va, kRange);
  dev.release();
  host.release();
  return ok;
}

}  // namespace spillway::bench
