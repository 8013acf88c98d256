// next_use.cpp — see next_use.h.
#include "offload/next_use.h"

#include <algorithm>
#include <climits>

namespace spillway::offload {

std::int64_t NextUseDistance(const tracker::BlockSummary& s, std::uint64_t now) {
  if (s.count == 0 || s.last_seq == 0) return INT64_MAX;
  const auto idle = static_cast<std::int64_t>(now - std::min(now, s.last_seq));
  if (const auto gap = static_cast<std::int64_t>(s.gap); gap != 0 && idle <= 2 * gap)
    return gap - idle;
  if (s.period == 0) return idle;
  return static_cast<std::int64_t>(s.period) - idle;
}

}  // namespace spillway::offload
