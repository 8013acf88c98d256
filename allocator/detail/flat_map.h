// flat_map.h — open-addressing hash map from a 64-bit key to a small value, for the arena's
// hot path (block address -> size, size -> cached blocks): linear probing in a power-of-two
// table, backward-shift deletion (no tombstones), no allocation unless it grows. Key 0 is
// reserved as "empty"; callers never use it (no block starts at address 0, no size is 0).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace spillway::detail {

template <class V>
class FlatMap {
 public:
  explicit FlatMap(std::size_t capacity = 64) { rehash(capacity); }

  V* find(std::uint64_t k) {
    for (std::size_t i = slot(k);; i = (i + 1) & mask_) {
      if (keys_[i] == k) return &vals_[i];
      if (keys_[i] == 0) return nullptr;
    }
  }
  // The value of k, default-constructed if absent.
  V& operator[](std::uint64_t k) {
    if ((size_ + 1) * 4 > keys_.size() * 3) rehash(keys_.size() * 2);
    std::size_t i = slot(k);
    for (; keys_[i] != 0; i = (i + 1) & mask_)
      if (keys_[i] == k) return vals_[i];
    keys_[i] = k;
    vals_[i] = V{};
    ++size_;
    return vals_[i];
  }
  // Removes k; returns false if absent.
  bool erase(std::uint64_t k) {
    std::size_t i = slot(k);
    for (;; i = (i + 1) & mask_) {
      if (keys_[i] == 0) return false;
      if (keys_[i] == k) break;
    }
    // Backward shift: move later entries of the probe run into the hole.
    for (std::size_t j = (i + 1) & mask_; keys_[j] != 0; j = (j + 1) & mask_) {
      const std::size_t home = slot(keys_[j]);
      // j's entry may move to i if its home is not in (i, j] (cyclically).
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        keys_[i] = keys_[j];
        vals_[i] = std::move(vals_[j]);
        i = j;
      }
    }
    keys_[i] = 0;
    vals_[i] = V{};
    --size_;
    return true;
  }
  std::size_t size() const { return size_; }
  void clear() {
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] != 0) {
        keys_[i] = 0;
        vals_[i] = V{};
      }
    size_ = 0;
  }
  template <class F>
  void for_each(F&& f) {
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] != 0) f(keys_[i], vals_[i]);
  }

 private:
  std::size_t slot(std::uint64_t k) const {
    return static_cast<std::size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void rehash(std::size_t cap) {
    std::size_t n = 16;
    while (n < cap) n *= 2;
    std::vector<std::uint64_t> old_keys(n, 0);
    std::vector<V> old_vals(n);
    old_keys.swap(keys_);
    old_vals.swap(vals_);
    mask_ = n - 1;
    shift_ = 64 - __builtin_ctzll(n);
    size_ = 0;
    for (std::size_t i = 0; i < old_keys.size(); ++i)
      if (old_keys[i] != 0) (*this)[old_keys[i]] = std::move(old_vals[i]);
  }
  std::vector<std::uint64_t> keys_;
  std::vector<V> vals_;
  std::size_t mask_ = 0;
  int shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace spillway::detail
