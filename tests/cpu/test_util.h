// test_util.h — shared helpers of the CPU tests: an Allocator over its own SimBackend, a
// pattern writer/checker, and stats helpers.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "allocator/prim/sim_backend.h"

namespace spillway::test {

inline constexpr std::size_t kMiB = std::size_t{1} << 20;
inline constexpr std::size_t kGran = 2 * kMiB;

struct SimAlloc {
  explicit SimAlloc(std::size_t device_memory = 1024 * kMiB, int devices = 1,
                    Config cfg = Config{}) {
    prim::SimOptions o;
    o.devices = devices;
    o.device_memory = device_memory;
    o.granularity = kGran;
    auto b = std::make_unique<prim::SimBackend>(o);
    sim = b.get();
    alloc = std::make_unique<Allocator>(std::move(b), cfg);
  }
  ~SimAlloc() {
    // Let every stream finish before the allocator (and its events) go away.
    for (auto s : streams) sim->synchronize(s);
    sim->synchronize(nullptr);
  }
  prim::Stream stream() {
    prim::Stream s = sim->create_stream();
    streams.push_back(s);
    return s;
  }
  spillway_status alloc_on(void** p, std::size_t n, prim::Stream s, bool sync = false) {
    return alloc->allocate(p, n, 0, s, sync, sync ? trace::Kind::kApiMallocSync
                                                  : trace::Kind::kApiMalloc);
  }
  spillway_status free_on(void* p, prim::Stream s) {
    return alloc->free(p, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree);
  }
  spillway_status free_sync(void* p) {
    return alloc->free(p, FreeMode::kSynchronous, nullptr, trace::Kind::kApiFreeSync);
  }
  spillway_stats stats() {
    spillway_stats s{};
    EXPECT_EQ(alloc->stats(0, &s), SPILLWAY_OK);
    return s;
  }
  prim::SimBackend* sim = nullptr;
  std::unique_ptr<Allocator> alloc;
  std::vector<prim::Stream> streams;
};

// Byte i of a block with tag t.
inline unsigned char PatternByte(std::uint64_t tag, std::size_t i) {
  std::uint64_t x = tag * 0x9E3779B97F4A7C15ull + (i / 8) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return static_cast<unsigned char>(x >> ((i % 8) * 8));
}

// Fills [p, p+n) (every byte when `every` is true, else a sparse sample: first/last pages and
// one byte per 4 KiB).
inline void Fill(void* p, std::size_t n, std::uint64_t tag, bool every = true) {
  auto* c = static_cast<unsigned char*>(p);
  if (every) {
    for (std::size_t i = 0; i < n; ++i) c[i] = PatternByte(tag, i);
    return;
  }
  for (std::size_t i = 0; i < n && i < 4096; ++i) c[i] = PatternByte(tag, i);
  for (std::size_t i = 4096; i < n; i += 4096) c[i] = PatternByte(tag, i);
  for (std::size_t i = n > 512 ? n - 512 : 0; i < n; ++i) c[i] = PatternByte(tag, i);
}

// Index of the first byte that differs from the pattern, or SIZE_MAX.
inline std::size_t Check(const void* p, std::size_t n, std::uint64_t tag, bool every = true) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (every) {
    for (std::size_t i = 0; i < n; ++i)
      if (c[i] != PatternByte(tag, i)) return i;
    return SIZE_MAX;
  }
  for (std::size_t i = 0; i < n && i < 4096; ++i)
    if (c[i] != PatternByte(tag, i)) return i;
  for (std::size_t i = 4096; i < n; i += 4096)
    if (c[i] != PatternByte(tag, i)) return i;
  for (std::size_t i = n > 512 ? n - 512 : 0; i < n; ++i)
    if (c[i] != PatternByte(tag, i)) return i;
  return SIZE_MAX;
}

}  // namespace spillway::test
