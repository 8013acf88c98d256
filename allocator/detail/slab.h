// slab.h — a slab: one physical-chunk-sized page carved into equal blocks of one size class,
// with a free stack and a live bitmap (which catches double frees and interior pointers).
#pragma once

#include <cstdint>
#include <vector>

namespace spillway {

struct Slab {
  Slab(std::uintptr_t b, std::uint32_t bs, std::uint32_t cap, int c)
      : base(b), block_size(bs), capacity(cap), cls(c), bits((cap + 63) / 64, 0), requested(cap) {
    free_idx.reserve(cap);
    for (std::uint32_t i = cap; i > 0; --i) free_idx.push_back(i - 1);
  }
  bool live(std::uint32_t i) const { return (bits[i >> 6] >> (i & 63)) & 1; }
  void set(std::uint32_t i) { bits[i >> 6] |= std::uint64_t{1} << (i & 63); }
  void clear(std::uint32_t i) { bits[i >> 6] &= ~(std::uint64_t{1} << (i & 63)); }

  std::uintptr_t base;
  std::uint32_t block_size;
  std::uint32_t capacity;
  std::uint32_t used = 0;  // blocks not on the free stack (live or pending)
  std::uint64_t max_free_seq = 0;  // latest stream-ordered free of a block (arena free_seq_)
  int cls;
  std::vector<std::uint32_t> free_idx;
  std::vector<std::uint64_t> bits;
  std::vector<std::uint32_t> requested;
  Slab* prev = nullptr;  // partial-list links
  Slab* next = nullptr;
  bool listed = false;
};

}  // namespace spillway
