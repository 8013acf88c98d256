// extent_set.cpp — coalescing best-fit free extents (see extent_set.h).
#include "allocator/detail/extent_set.h"

namespace spillway::detail {

void ExtentSet::erase(std::map<std::uintptr_t, std::size_t>::iterator it) {
  by_size_.erase({it->second, it->first});
  total_ -= it->second;
  by_addr_.erase(it);
}

void ExtentSet::add(std::uintptr_t a, std::size_t n) {
  by_addr_.emplace(a, n);
  by_size_.emplace(n, a);
  total_ += n;
}

void ExtentSet::insert(std::uintptr_t a, std::size_t n) {
  auto next = by_addr_.lower_bound(a);
  if (next != by_addr_.end() && next->first == a + n) {
    n += next->second;
    auto victim = next++;
    erase(victim);
  }
  if (next != by_addr_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == a) {
      a = prev->first;
      n += prev->second;
      erase(prev);
    }
  }
  add(a, n);
}

bool ExtentSet::carve_at(std::uintptr_t start, std::size_t n, std::uintptr_t* out) {
  auto it = by_addr_.upper_bound(start);
  if (it == by_addr_.begin()) return false;
  --it;
  const std::uintptr_t a = it->first;
  const std::size_t len = it->second;
  if (start + n > a + len) return false;
  erase(it);
  if (start > a) add(a, start - a);
  if (start + n < a + len) add(start + n, a + len - start - n);
  *out = start;
  return true;
}

bool ExtentSet::take(std::size_t n, std::size_t align, std::uintptr_t* out) {
  for (auto it = by_size_.lower_bound({n, 0}); it != by_size_.end(); ++it) {
    auto [len, a] = *it;
    std::uintptr_t start = (a + align - 1) / align * align;
    if (start + n > a + len) continue;
    erase(by_addr_.find(a));
    if (start > a) add(a, start - a);
    if (start + n < a + len) add(start + n, a + len - start - n);
    *out = start;
    return true;
  }
  return false;
}

}  // namespace spillway::detail
