// extent_set.h — free address extents with coalescing and best-fit search: the free space of
// one arena's virtual address range (mapped or not), at 512-byte granularity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

namespace spillway::detail {

class ExtentSet {
 public:
  // Adds [a, a+n), merging with adjacent free extents. The range must not overlap one.
  void insert(std::uintptr_t a, std::size_t n);
  // Best fit: carves n bytes, aligned to `align`, from the smallest extent that holds them.
  bool take(std::size_t n, std::size_t align, std::uintptr_t* out);
  // Like take, but among the `candidates` smallest extents that fit, the first start for which
  // prefer(start) holds wins; without one, the best fit.
  template <class Pred>
  bool take_preferring(std::size_t n, std::size_t align, int candidates, Pred&& prefer,
                       std::uintptr_t* out) {
    std::uintptr_t first = 0;
    bool found = false;
    for (auto it = by_size_.lower_bound({n, 0}); it != by_size_.end() && candidates > 0; ++it) {
      const std::uintptr_t start = (it->second + align - 1) / align * align;
      if (start + n > it->second + it->first) continue;
      if (!found) {
        first = start;
        found = true;
      }
      if (prefer(start)) return carve_at(start, n, out);
      --candidates;
    }
    return found && carve_at(first, n, out);
  }
  // Takes exactly [a, a+n) out of the extent that holds it; false (nothing changes) if no free
  // extent holds all of it.
  bool remove(std::uintptr_t a, std::size_t n) {
    std::uintptr_t out = 0;
    return n == 0 || carve_at(a, n, &out);
  }
  std::size_t total() const { return total_; }
  std::size_t largest() const { return by_size_.empty() ? 0 : by_size_.rbegin()->first; }
  std::size_t count() const { return by_addr_.size(); }
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [a, n] : by_addr_) f(a, n);
  }

 private:
  void erase(std::map<std::uintptr_t, std::size_t>::iterator it);
  bool carve_at(std::uintptr_t start, std::size_t n, std::uintptr_t* out);
  void add(std::uintptr_t a, std::size_t n);
  std::map<std::uintptr_t, std::size_t> by_addr_;
  std::set<std::pair<std::size_t, std::uintptr_t>> by_size_;
  std::size_t total_ = 0;
};

}  // namespace spillway::detail
