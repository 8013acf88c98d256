// report_synthetic.h — a hand-built report Model for the renderer tests: one process (rank 0)
// with two devices, blocks (some at addresses above 4 GiB, some live at the end), samples, phase
// marks (one with a hostile label) and an out-of-memory failure on device 1. Also
// SyntheticLog: an event log built in memory, record by record (allocation calls, physical
// memory, offload moves and errors), for the analysis tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "profiler/report/model.h"
#include "profiler/trace_format.h"
#include "profiler/trace_reader.h"

namespace spillway::test {

inline constexpr std::uint64_t kMiB = 1ull << 20;
inline constexpr std::uint64_t kGiB = 1ull << 30;
inline constexpr const char* kHostileLabel = "<script>alert(1)</script>";

inline report::Model SyntheticModel() {
  using namespace spillway::report;
  Model m;
  m.processes.push_back({"/tmp/run/trace.bin", 4242, 0, 0, 123456});
  m.end_ns = 2'500'000'000;  // 2.5 s
  m.events = 123456;

  // Blocks. Device 0 from 0x7f0000000000, device 1 from 0x7e0000000000 (beyond 32 bits).
  auto add = [&](std::int32_t dev, std::uint64_t addr, std::uint64_t req, std::uint64_t rounded,
                 std::uint64_t a, std::uint64_t f, bool live, std::uint16_t call = 1) {
    Block b;
    b.addr = addr;
    b.requested = req;
    b.rounded = rounded;
    b.alloc_ns = a;
    b.free_ns = live ? m.end_ns : f;
    b.live_at_end = live;
    b.stream = dev == 0 ? 0 : 0x5555aaaa0000ull;
    b.device = dev;
    b.process = 0;
    b.call = call;
    m.blocks.push_back(b);
  };
  const std::uint64_t d0 = 0x7f0000000000ull, d1 = 0x7e0000000000ull;
  // Device 0: weights live to the end, activations freed, a reused address.
  add(0, d0, 3 * kGiB, 3 * kGiB, 10'000'000, 0, true);                              // 0
  add(0, d0 + 3 * kGiB, 1000 * kMiB, 1024 * kMiB, 200'000'000, 1'400'000'000, false, 3);  // 1
  add(0, d0 + 4 * kGiB, 300 * kMiB, 320 * kMiB, 300'000'000, 1'300'000'000, false, 3);    // 2
  add(0, d0 + 3 * kGiB, 500 * kMiB, 512 * kMiB, 1'500'000'000, 2'000'000'000, false, 3); // 3
  add(0, d0 + 3 * kGiB + 512 * kMiB, 100 * kMiB, 128 * kMiB, 1'600'000'000, 0, true, 9);  // 4
  // 5..44: many small ones, 4 KiB apart
  for (int i = 0; i < 40; ++i) {  // many small ones, 4 KiB apart
    add(0, d0 + 6 * kGiB + static_cast<std::uint64_t>(i) * 4096, 1000 + 37 * static_cast<std::uint64_t>(i),
        4096, 400'000'000 + static_cast<std::uint64_t>(i) * 1'000'000,
        900'000'000 + static_cast<std::uint64_t>(i) * 2'000'000, i % 10 == 0);
  }
  // Device 1.
  add(1, d1, 2 * kGiB, 2 * kGiB, 50'000'000, 0, true);                                   // 45
  add(1, d1 + 2 * kGiB, 700 * kMiB, 768 * kMiB, 600'000'000, 1'800'000'000, false, 7);   // 46
  add(1, d1 + 4 * kGiB, 3000, 4096, 700'000'000, 700'000'000, false, 11);               // 47

  // Samples, a step every 100 ms, allocated rising to a peak at 1.2 s on device 0.
  for (std::int32_t dev = 0; dev < 2; ++dev) {
    Series se;
    se.process = 0;
    se.device = dev;
    for (int i = 0; i <= 25; ++i) {
      Sample s;
      s.t_ns = static_cast<std::uint64_t>(i) * 100'000'000;
      const double shape = i <= 12 ? i / 12.0 : (25 - i) / 13.0 * 0.6 + 0.4;
      const double top = dev == 0 ? 4.4 * static_cast<double>(kGiB) : 2.7 * static_cast<double>(kGiB);
      s.allocated = static_cast<std::uint64_t>(top * shape);
      s.rounded = s.allocated + s.allocated / 40;
      s.reserved = static_cast<std::uint64_t>(top * 1.1);
      s.mapped = i < 3 ? s.reserved / 2 : s.reserved;
      s.internal = s.reserved ? double(s.rounded - s.allocated) / double(s.reserved) : 0;
      s.external = i % 5 == 0 ? 0.0 : 0.05 * (i % 5);
      s.overhead = s.allocated ? double(s.reserved) / double(s.allocated) : 0;
      se.samples.push_back(s);
    }
    m.series.push_back(se);
  }

  m.marks.push_back({100'000'000, 0, 1, "forward"});
  m.marks.push_back({900'000'000, 0, 2, "forward"});
  m.marks.push_back({1'000'000'000, 0, 0, kHostileLabel});
  m.marks.push_back({1'700'000'000, 0, 0, "optimizer \"step\" & 'more'"});
  m.ooms.push_back({1'750'000'000, 0, 1, 6 * kGiB});

  DeviceSummary a;
  a.process = 0;
  a.device = 0;
  a.allocs = 45;
  a.frees = 39;
  a.peak_allocated = 4'724'464'026;  // 4.40 GiB
  a.peak_allocated_ns = 1'200'000'000;
  a.peak_reserved = 5'196'910'428;
  a.peak_reserved_ns = 300'000'000;
  a.at_peak = m.series[0].samples[12];
  a.at_peak.internal = 0.0227;
  a.at_peak.external = 0.1;
  a.at_peak.overhead = 1.1;
  a.largest_at_peak = {0, 1, 2, 5, 6};
  a.maps = 77;
  a.unmaps = 12;
  a.chunk_creates = 5;
  a.chunk_releases = 1;
  m.devices.push_back(a);
  DeviceSummary b;
  b.process = 0;
  b.device = 1;
  b.allocs = 3;
  b.frees = 2;
  b.failed = 1;
  b.peak_allocated = 2'899'102'924;  // 2.70 GiB
  b.peak_allocated_ns = 1'200'000'000;
  b.peak_reserved = 3'189'013'217;
  b.peak_reserved_ns = 0;
  b.at_peak = m.series[1].samples[12];
  b.largest_at_peak = {45, 46};
  m.devices.push_back(b);

  // Histogram: power-of-two buckets from 512 B.
  std::uint64_t floor = 512;
  for (int i = 0; i < 24; ++i, floor *= 2) {
    m.sizes.bucket_floor.push_back(floor);
    m.sizes.count.push_back(0);
    m.sizes.bytes.push_back(0);
  }
  for (const Block& bl : m.blocks) {
    std::size_t k = 0;
    while (k + 1 < m.sizes.bucket_floor.size() && m.sizes.bucket_floor[k + 1] <= bl.requested) ++k;
    m.sizes.count[k] += 1;
    m.sizes.bytes[k] += bl.requested;
  }
  return m;
}

// An event log built in memory (version 2 unless `version` is set to 1 before use).
struct SyntheticLog {
  trace::Trace t;
  explicit SyntheticLog(std::uint64_t start_unix_ns = 1'000'000'000'000, std::uint32_t pid = 100,
                        std::int32_t rank = -1) {
    std::memcpy(t.header.magic, trace::kMagic, 8);
    t.header.version = 2;
    t.header.header_size = sizeof(trace::Header);
    t.header.record_size = sizeof(trace::Record);
    t.header.pid = pid;
    t.header.rank = rank;
    t.header.start_unix_ns = start_unix_ns;
    t.path = "mem-" + std::to_string(pid);
  }
  trace::Record& Add(std::uint64_t t_ns, trace::Kind kind, int device = 0) {
    trace::Record r{};
    r.t_ns = t_ns;
    r.seq = t.records.size();
    r.kind = static_cast<std::uint16_t>(kind);
    r.device = device;
    t.records.push_back(r);
    return t.records.back();
  }
  void Alloc(std::uint64_t t_ns, std::uint64_t addr, std::uint64_t size, std::uint64_t rounded,
             int device = 0, std::uint16_t status = 0) {
    trace::Record& r = Add(t_ns, trace::Kind::kCudaMalloc, device);
    r.addr = addr;
    r.size = size;
    r.aux = rounded;
    r.status = status;
  }
  void Free(std::uint64_t t_ns, std::uint64_t addr, int device = 0, std::uint16_t status = 0) {
    trace::Record& r = Add(t_ns, trace::Kind::kCudaFree, device);
    r.addr = addr;
    r.status = status;
  }
  void Phys(std::uint64_t t_ns, trace::Kind k, std::uint64_t addr, std::uint64_t size,
            int device = 0) {
    trace::Record& r = Add(t_ns, k, device);
    r.addr = addr;
    r.size = size;
  }
  void Mark(std::uint64_t t_ns, std::uint64_t label, std::uint32_t phase) {
    trace::Record& r = Add(t_ns, trace::Kind::kMark, -1);
    r.addr = label;
    r.aux2 = phase;
  }
  // kEvict / kFetch of `size` bytes of the block at `addr` from tier `from` to `to`, which took
  // (or, for a demand fetch, made a launch wait) `ns`.
  void Move(std::uint64_t t_ns, trace::Kind kind, std::uint64_t addr, std::uint64_t size,
            std::uint32_t from, std::uint32_t to, std::uint64_t ns, bool demand = false,
            int device = 0) {
    trace::Record& r = Add(t_ns, kind, device);
    r.addr = addr;
    r.size = size;
    r.aux = ns;
    r.stream = 0x77;
    r.aux2 = (from << 8) | to | (demand ? trace::kFetchDemand : 0u);
  }
  void Evict(std::uint64_t t_ns, std::uint64_t addr, std::uint64_t size, std::uint32_t from,
             std::uint32_t to, std::uint64_t ns, int device = 0) {
    Move(t_ns, trace::Kind::kEvict, addr, size, from, to, ns, false, device);
  }
  void Fetch(std::uint64_t t_ns, std::uint64_t addr, std::uint64_t size, std::uint32_t from,
             std::uint32_t to, std::uint64_t ns, bool demand = false, int device = 0) {
    Move(t_ns, trace::Kind::kFetch, addr, size, from, to, ns, demand, device);
  }
  void OffloadError(std::uint64_t t_ns, std::uint64_t addr, std::uint64_t size,
                    std::uint32_t reason, std::uint16_t status = 2, int device = 0) {
    trace::Record& r = Add(t_ns, trace::Kind::kOffloadError, device);
    r.addr = addr;
    r.size = size;
    r.aux2 = reason;
    r.status = status;
  }
};

}  // namespace spillway::test
