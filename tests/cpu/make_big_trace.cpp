// make_big_trace.cpp — writes a synthetic SPILLWAY_TRACE log for scripts/report-speed.sh:
// `make_big_trace PATH [EVENTS] [--touches]` (default 1,000,000 records). Allocations of
// power-of-two classes from 512 B to 8 MiB reuse freed addresses of their class or take new
// address space, mapped in 2 MiB pages with chunk records; a few thousand blocks are live at any
// time, with phase marks every 50,000 events and an out-of-memory record now and then. With
// --touches, as a SPILLWAY_TRACK=1 run writes: a touch of a live block after most records (the
// kinds of tensor are inferred from them) and an access summary at each free.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "profiler/clock.h"
#include "profiler/trace_format.h"
#include "profiler/trace_writer.h"

using spillway::trace::Kind;

int main(int argc, char** argv) {
  if (argc < 2 || (argc > 3 && std::string(argv[3]) != "--touches") || argc > 4) {
    std::fprintf(stderr, "usage: make_big_trace PATH [EVENTS] [--touches]\n");
    return 2;
  }
  const std::uint64_t events = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1000000;
  const bool touches = argc > 3;
  spillway::trace::TraceWriter w;
  std::string err;
  if (!w.open(argv[1], &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  constexpr std::uint64_t kPage = 2 << 20;
  constexpr int kClasses = 15;  // 512 B .. 8 MiB
  std::mt19937_64 rng(42);
  std::vector<std::vector<std::uint64_t>> free_addrs(kClasses);
  struct Live {
    std::uint64_t addr;
    int cls;
  };
  std::vector<Live> live;
  std::uint64_t top = std::uint64_t{1} << 40, mapped_end = top;
  std::uint64_t n = 0;
  auto* stream = reinterpret_cast<const void*>(std::uintptr_t{0x1000});
  while (n < events) {
    if (n % 50000 == 0) {
      w.mark("step " + std::to_string(n / 50000), 1);
      ++n;
    }
    const bool alloc = live.size() < 500 || (live.size() < 5000 && rng() % 2 == 0);
    if (alloc) {
      // Small classes are more common.
      int cls = static_cast<int>(rng() % kClasses);
      cls = static_cast<int>(rng() % static_cast<std::uint64_t>(cls + 1));
      const std::uint64_t rounded = std::uint64_t{512} << cls;
      const std::uint64_t req = rounded - rng() % (rounded / 2);
      std::uint64_t addr;
      if (!free_addrs[static_cast<std::size_t>(cls)].empty()) {
        addr = free_addrs[static_cast<std::size_t>(cls)].back();
        free_addrs[static_cast<std::size_t>(cls)].pop_back();
      } else {
        addr = top;
        top += rounded;
        while (mapped_end < top) {
          w.physical(Kind::kChunkCreate, 0, 0, kPage);
          w.physical(Kind::kMap, 0, mapped_end, kPage);
          mapped_end += kPage;
          n += 2;
        }
      }
      w.record(Kind::kCudaMallocAsync, 0, stream, addr, req, 0, rounded);
      live.push_back({addr, cls});
    } else {
      const std::size_t i = rng() % live.size();
      const Live l = live[i];
      live[i] = live.back();
      live.pop_back();
      if (touches) {
        const std::uint64_t now = spillway::MonotonicNs();
        w.access(0, l.addr, 1 + rng() % 64, now - 1000 - rng() % 1000000, now, 1);
        ++n;
      }
      w.record(Kind::kCudaFreeAsync, 0, stream, l.addr, 0, 0);
      free_addrs[static_cast<std::size_t>(l.cls)].push_back(l.addr);
    }
    ++n;
    if (touches && !live.empty() && rng() % 4 != 0) {  // a launch touched a live block
      w.touch(0, live[rng() % live.size()].addr, spillway::MonotonicNs(), n,
              reinterpret_cast<std::uintptr_t>(stream));
      ++n;
    }
    if (n % 100000 == 99999) {
      w.physical(Kind::kOom, 0, 0, std::uint64_t{1} << 40);
      ++n;
    }
  }
  w.close();
  std::printf("%s: %llu records\n", argv[1], static_cast<unsigned long long>(n));
  return 0;
}
