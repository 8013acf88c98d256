// fuzz_ops.cpp — libFuzzer target: the input bytes are a sequence of operations on one
// Allocator over a SimBackend with 3 streams (allocate a size drawn from the bytes on a stream,
// stream-ordered free, synchronous free, free on a foreign stream, double free, foreign-pointer
// free, interior-pointer free, trim, budget change). After every operation: no two live blocks
// overlap, every live block still holds the pattern written at allocation, the statistics match
// the live set, reserved <= budget, and misuse returns the documented status (a budget below
// what is allocated, or below the pages live blocks hold, is refused and the old one stays).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "allocator/allocator.h"
#include "allocator/prim/sim_backend.h"

using namespace spillway;

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

#define FUZZ_CHECK(cond, ...)                                  \
  do {                                                          \
    if (!(cond)) {                                              \
      std::fprintf(stderr, "fuzz_ops: check failed: %s: ", #cond); \
      std::fprintf(stderr, __VA_ARGS__);                        \
      std::fprintf(stderr, "\n");                              \
      std::abort();                                             \
    }                                                           \
  } while (0)

struct Reader {
  const std::uint8_t* d;
  std::size_t n, i = 0;
  bool more() const { return i < n; }
  std::uint8_t u8() { return i < n ? d[i++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = v << 8 | u8();
    return v;
  }
};

unsigned char Pat(std::uint64_t tag, std::size_t i) {
  return static_cast<unsigned char>((tag * 131u) ^ (i * 7u) ^ (i >> 9));
}
// Writes/checks the first and last 256 bytes and one byte per 4 KiB.
template <typename F>
void Walk(std::size_t n, F f) {
  for (std::size_t i = 0; i < n && i < 256; ++i) f(i);
  for (std::size_t i = 256; i < n; i += 4096) f(i);
  for (std::size_t i = n > 256 ? n - 256 : 0; i < n; ++i) f(i);
}

struct Block {
  std::size_t n;
  std::uint64_t tag;
  int stream;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  prim::SimOptions o;
  o.device_memory = 256 * kMiB;
  auto b = std::make_unique<prim::SimBackend>(o);
  prim::SimBackend* sim = b.get();
  Allocator a(std::move(b), Config{});
  prim::Stream streams[3] = {sim->create_stream(), sim->create_stream(), nullptr};
  std::map<std::uintptr_t, Block> live;
  std::vector<std::uintptr_t> freed;  // addresses freed and not reallocated since
  std::uint64_t budget = 0, tag = 1, live_bytes = 0;
  int local = 0;
  Reader r{data, size};
  int ops = 0;
  while (r.more() && ops++ < 200) {
    const std::uint8_t op = r.u8() % 10;
    if (op <= 3) {  // allocate
      const int si = r.u8() % 3;
      const bool sync = r.u8() % 4 == 0;
      const std::uint32_t raw = r.u32();
      std::size_t n;
      switch (raw % 4) {
        case 0: n = 1 + (raw >> 2) % 4096; break;
        case 1: n = 1 + (raw >> 2) % (256 << 10); break;
        case 2: n = 1 + (raw >> 2) % (16 * kMiB); break;
        default: n = (raw >> 2) % 2 ? 2 * kMiB * (1 + (raw >> 3) % 4) : 0; break;
      }
      void* p = nullptr;
      spillway_status st = a.allocate(&p, n, 0, streams[si], sync, trace::Kind::kApiMalloc);
      if (n == 0) {
        FUZZ_CHECK(st == SPILLWAY_ERR_INVALID_VALUE, "size 0 gave %d", st);
      } else if (st == SPILLWAY_OK) {
        const auto ad = reinterpret_cast<std::uintptr_t>(p);
        FUZZ_CHECK(ad % 512 == 0, "misaligned %p", p);
        auto it = live.lower_bound(ad);
        FUZZ_CHECK(it == live.end() || it->first >= ad + n, "overlap with next block");
        if (it != live.begin()) {
          auto pr = std::prev(it);
          FUZZ_CHECK(pr->first + pr->second.n <= ad, "overlap with previous block");
        }
        live[ad] = {n, tag, si};
        live_bytes += n;
        Walk(n, [&](std::size_t i) { static_cast<unsigned char*>(p)[i] = Pat(tag, i); });
        ++tag;
        std::erase(freed, ad);
      } else {
        FUZZ_CHECK(st == SPILLWAY_ERR_OUT_OF_MEMORY, "allocation failed with %d", st);
        FUZZ_CHECK(budget != 0 || live_bytes + n > 128 * kMiB,
                   "OOM without a budget at %zu live bytes for %zu", (size_t)live_bytes, n);
      }
    } else if (op <= 6 && !live.empty()) {  // free: own stream, sync, foreign stream
      auto it = live.begin();
      std::advance(it, r.u32() % live.size());
      const auto ad = it->first;
      const Block bl = it->second;
      Walk(bl.n, [&](std::size_t i) {
        FUZZ_CHECK(reinterpret_cast<unsigned char*>(ad)[i] == Pat(bl.tag, i),
                   "block 0x%zx size %zu corrupted at %zu", (size_t)ad, bl.n, i);
      });
      spillway_status st;
      if (op == 4) {
        st = a.free(reinterpret_cast<void*>(ad), FreeMode::kStreamOrdered, streams[bl.stream],
                    trace::Kind::kApiFree);
      } else if (op == 5) {
        st = a.free(reinterpret_cast<void*>(ad), FreeMode::kSynchronous, nullptr,
                    trace::Kind::kApiFreeSync);
      } else {
        st = a.free(reinterpret_cast<void*>(ad), FreeMode::kStreamOrdered,
                    streams[(bl.stream + 1 + r.u8() % 2) % 3], trace::Kind::kApiFree);
      }
      FUZZ_CHECK(st == SPILLWAY_OK, "free failed with %d", st);
      live_bytes -= bl.n;
      live.erase(it);
      freed.push_back(ad);
    } else if (op == 7) {  // misuse: double free, foreign pointer, interior pointer
      const std::uint8_t k = r.u8() % 3;
      if (k == 0 && !freed.empty()) {
        const auto ad = freed[r.u32() % freed.size()];
        spillway_status st = a.free(reinterpret_cast<void*>(ad), FreeMode::kStreamOrdered,
                                    streams[0], trace::Kind::kApiFree);
        FUZZ_CHECK(st == SPILLWAY_ERR_DOUBLE_FREE, "double free gave %d", st);
      } else if (k == 1) {
        spillway_status st = a.free(&local, FreeMode::kSynchronous, nullptr,
                                    trace::Kind::kApiFreeSync);
        FUZZ_CHECK(st == SPILLWAY_ERR_NOT_OWNED, "foreign free gave %d", st);
      } else if (!live.empty()) {
        auto it = live.begin();
        std::advance(it, r.u32() % live.size());
        if (it->second.n > 4096) {
          spillway_status st = a.free(reinterpret_cast<void*>(it->first + 4096),
                                      FreeMode::kStreamOrdered, streams[0], trace::Kind::kApiFree);
          FUZZ_CHECK(st == SPILLWAY_ERR_INVALID_VALUE || st == SPILLWAY_ERR_DOUBLE_FREE,
                     "interior free gave %d", st);
        }
      }
    } else if (op == 8) {  // trim
      FUZZ_CHECK(a.trim(0, (r.u8() % 8) * 2 * kMiB) == SPILLWAY_OK, "trim failed");
    } else {  // budget change
      const std::uint64_t want = (r.u8() % 5) * 32 * kMiB;
      spillway_status st = a.set_budget(0, want);
      if (want != 0 && want < live_bytes) {
        FUZZ_CHECK(st == SPILLWAY_ERR_INVALID_VALUE, "budget below allocated gave %d", st);
      } else if (st == SPILLWAY_ERR_INVALID_VALUE) {
        // Refused only when the pages live blocks hold (after releasing the rest) exceed it.
        spillway_stats h{};
        FUZZ_CHECK(a.stats(0, &h) == SPILLWAY_OK, "stats");
        FUZZ_CHECK(want != 0 && h.reserved_bytes > want,
                   "set_budget(%zu) refused with %zu reserved", (size_t)want,
                   (size_t)h.reserved_bytes);
        FUZZ_CHECK(h.budget_bytes == budget, "a refused budget was applied");
      } else {
        FUZZ_CHECK(st == SPILLWAY_OK, "set_budget(%zu) failed with %d", (size_t)want, st);
        budget = want;
      }
    }
    spillway_stats s{};
    FUZZ_CHECK(a.stats(0, &s) == SPILLWAY_OK, "stats");
    FUZZ_CHECK(s.allocated_bytes == live_bytes, "allocated %zu != live %zu",
               (size_t)s.allocated_bytes, (size_t)live_bytes);
    FUZZ_CHECK(s.live_blocks == live.size(), "live_blocks");
    FUZZ_CHECK(budget == 0 || s.reserved_bytes <= budget, "reserved %zu > budget %zu",
               (size_t)s.reserved_bytes, (size_t)budget);
  }
  for (auto s : streams) sim->synchronize(s);
  return 0;
}
