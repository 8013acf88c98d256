// size_class.h — the size classes of slab (small) allocations: 512-byte steps up to 4 KiB,
// then 8 classes per doubling up to kSmallMax, so rounding wastes at most 12.5%.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

namespace spillway::detail {

inline constexpr std::size_t kMinAlign = 512;  // every block starts 512-byte aligned
inline constexpr std::size_t kSmallMax = std::size_t{256} << 10;
inline constexpr int kNumClasses = 56;

inline constexpr std::size_t RoundUp(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

// Class index of a small request (1 <= n <= kSmallMax).
inline constexpr int SizeClass(std::size_t n) {
  std::size_t m = RoundUp(n, kMinAlign);
  if (m <= 4096) return static_cast<int>(m / kMinAlign) - 1;
  int e = 63 - std::countl_zero(static_cast<std::uint64_t>(m - 1));  // m in (2^e, 2^(e+1)]
  std::size_t spacing = std::size_t{1} << (e - 3);
  int k = static_cast<int>(RoundUp(m, spacing) / spacing) - 8;  // 1..8
  return 8 + (e - 12) * 8 + (k - 1);
}

// Block size of a class.
inline constexpr std::size_t ClassSize(int c) {
  if (c < 8) return static_cast<std::size_t>(c + 1) * kMinAlign;
  int e = 12 + (c - 8) / 8;
  int k = (c - 8) % 8 + 1;
  return (std::size_t{1} << e) + static_cast<std::size_t>(k) * (std::size_t{1} << (e - 3));
}

// Size of the block that serves a request of n bytes (n >= 1).
inline constexpr std::size_t BlockSize(std::size_t n) {
  return n <= kSmallMax ? ClassSize(SizeClass(n)) : RoundUp(n, kMinAlign);
}

static_assert(SizeClass(1) == 0 && ClassSize(0) == 512);
static_assert(SizeClass(4096) == 7 && ClassSize(7) == 4096);
static_assert(SizeClass(4097) == 8 && ClassSize(8) == 4608);
static_assert(SizeClass(kSmallMax) == kNumClasses - 1 && ClassSize(kNumClasses - 1) == kSmallMax);

}  // namespace spillway::detail
