// clock.h — the event log's clock: CLOCK_MONOTONIC in nanoseconds. The tracker's access times,
// the pager's move times and CUPTI's converted kernel times are all read from it.
#pragma once

#include <cstdint>
#include <ctime>

namespace spillway {

inline std::uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace spillway
