// text.cpp — the text summary (summary.txt, and stderr at exit with SPILLWAY_REPORT).
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <string>

#include "profiler/report/callsites.h"
#include "profiler/report/offload.h"
#include "profiler/report/render.h"
#include "profiler/trace_format.h"

namespace spillway::report {

namespace {

std::string Bytes(std::uint64_t b) {
  char buf[64];
  const double v = static_cast<double>(b);
  if (b >= (std::uint64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", v / 0x1p30);
  else if (b >= (std::uint64_t{1} << 20)) std::snprintf(buf, sizeof buf, "%.2f MiB", v / 0x1p20);
  else if (b >= (std::uint64_t{1} << 10)) std::snprintf(buf, sizeof buf, "%.2f KiB", v / 0x1p10);
  else std::snprintf(buf, sizeof buf, "%" PRIu64 " B", b);
  return buf;
}

std::string Secs(std::uint64_t ns) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(ns) / 1e9);
  return buf;
}

std::string Pct(double f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", f * 100);
  return buf;
}

const char* CallName(std::uint16_t k) {
  switch (static_cast<trace::Kind>(k)) {
    case trace::Kind::kCudaMalloc: return "cudaMalloc";
    case trace::Kind::kCudaMallocAsync: return "cudaMallocAsync";
    case trace::Kind::kCuMemAlloc: return "cuMemAlloc";
    case trace::Kind::kCuMemAllocAsync: return "cuMemAllocAsync";
    case trace::Kind::kApiMalloc: return "spillway_malloc";
    case trace::Kind::kApiMallocSync: return "spillway_malloc_sync";
    default: return "?";
  }
}

__attribute__((format(printf, 2, 3))) void Add(std::string* out, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  out->append(buf);
}

std::string ProcessName(const Process& p) {
  std::string s = "pid " + std::to_string(p.pid);
  if (p.rank >= 0) s += " rank " + std::to_string(p.rank);
  return s;
}

std::string Dur(std::uint64_t ns) {
  char buf[48];
  const double v = static_cast<double>(ns);
  if (ns >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.3f s", v / 1e9);
  else if (ns >= 1'000'000)
    std::snprintf(buf, sizeof buf, "%.3f ms", v / 1e6);
  else if (ns >= 1'000)
    std::snprintf(buf, sizeof buf, "%.3f us", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%" PRIu64 " ns", ns);
  return buf;
}

// The offload section: only when the logs have offload records.
void OffloadText(const Model& m, std::string* out) {
  const Offload& f = m.offload;
  if (f.events == 0) return;
  std::string& o = *out;
  Add(&o, "offload: %" PRIu64 " evictions, %" PRIu64 " fetches, %" PRIu64 " errors\n", f.evictions,
      f.fetches, f.errors);
  for (const TierPeaks& d : f.devices) {
    if (d.peak_host == 0 && d.peak_nvme == 0) continue;
    const std::string who =
        d.process < m.processes.size() ? ProcessName(m.processes[d.process]) : "?";
    Add(&o, "  %s device %d: peak on the device %s at %s, on the host %s at %s, on NVMe %s at %s\n",
        who.c_str(), d.device, Bytes(d.peak_device).c_str(), Secs(d.peak_device_ns).c_str(),
        Bytes(d.peak_host).c_str(), Secs(d.peak_host_ns).c_str(), Bytes(d.peak_nvme).c_str(),
        Secs(d.peak_nvme_ns).c_str());
  }
  o += "  traffic (bandwidth = bytes / time spent moving; median of the moves):\n";
  for (std::uint32_t from = 0; from < kTiers; ++from) {
    for (std::uint32_t to = 0; to < kTiers; ++to) {
      const Traffic& t = f.traffic[from][to];
      if (t.moves == 0) continue;
      const std::string dir = std::string(TierName(from)) + "->" + TierName(to);
      Add(&o, "    %-14s %8" PRIu64 " moves %12s", dir.c_str(), t.moves, Bytes(t.bytes).c_str());
      if (t.timed_moves) Add(&o, "  %.2f GB/s (median %.2f GB/s)", t.gbps, t.median_gbps);
      o += "\n";
    }
  }
  Add(&o, "  stalls: %" PRIu64 ", waited %s in all", f.stalls, Dur(f.stall_ns).c_str());
  if (f.stalls) {
    const Stall& s = f.longest_stall;
    Add(&o, ", longest %s (%s of 0x%" PRIx64 " from %s, ended at %s)", Dur(s.wait_ns).c_str(),
        Bytes(s.bytes).c_str(), s.addr, TierName(s.from), Secs(s.t_ns).c_str());
  }
  o += "\n";
  if (f.fetches_to_device)
    Add(&o,
        "  prefetch hit rate: %s (%" PRIu64 " of the %" PRIu64
        " fetches that reached the device were prefetches)\n",
        Pct(f.prefetch_hit_rate).c_str(), f.prefetches_to_device, f.fetches_to_device);
  else
    o += "  prefetch hit rate: - (no fetch reached the device)\n";
  if (f.errors) {
    Add(&o, "  errors: %" PRIu64 " (", f.errors);
    bool first = true;
    for (std::uint32_t r = 1; r <= 6; ++r) {  // 6 = index 0, any other reason, last
      const std::uint64_t n = f.errors_by_reason[r % 6];
      if (n == 0) continue;
      Add(&o, "%s%s %" PRIu64, first ? "" : ", ", OffloadErrorName(r % 6), n);
      first = false;
    }
    o += ")\n";
    for (const OffloadFailure& e : f.first_errors)
      Add(&o, "    %s  device %d, 0x%" PRIx64 ", %s: %s (status %u)\n", Secs(e.t_ns).c_str(),
          e.device, e.addr, Bytes(e.bytes).c_str(), OffloadErrorName(e.reason),
          static_cast<unsigned>(e.status));
    if (f.errors > f.first_errors.size())
      Add(&o, "    ... %" PRIu64 " more\n", f.errors - f.first_errors.size());
  }
}

}  // namespace

std::string RenderText(const Model& m) {
  std::string o;
  Add(&o, "spillway report: %zu process%s, %" PRIu64 " events, %s\n", m.processes.size(),
      m.processes.size() == 1 ? "" : "es", m.events, Secs(m.end_ns).c_str());
  for (std::size_t pi = 0; pi < m.processes.size(); ++pi) {
    const Process& p = m.processes[pi];
    Add(&o, "%s: %s (%" PRIu64 " records, starts at %s)\n", ProcessName(p).c_str(),
        p.path.c_str(), p.records, Secs(p.offset_ns).c_str());
    for (const DeviceSummary& d : m.devices) {
      if (d.process != pi) continue;
      Add(&o, "  device %d: %" PRIu64 " allocations, %" PRIu64 " frees, %" PRIu64
              " failed, %" PRIu64 " passed to CUDA",
          d.device, d.allocs, d.frees, d.failed, d.passed_through);
      if (d.unknown_frees) Add(&o, ", %" PRIu64 " frees of unknown addresses", d.unknown_frees);
      o += "\n";
      Add(&o, "    peak allocated  %s at %s\n", Bytes(d.peak_allocated).c_str(),
          Secs(d.peak_allocated_ns).c_str());
      Add(&o, "    peak reserved   %s at %s%s\n", Bytes(d.peak_reserved).c_str(),
          Secs(d.peak_reserved_ns).c_str(),
          d.reserved_estimated ? " (estimated: no chunk events; reserved = rounded)" : "");
      const Sample& s = d.at_peak;
      Add(&o, "    at the peak: allocated %s, rounded %s, reserved %s, mapped %s\n",
          Bytes(s.allocated).c_str(), Bytes(s.rounded).c_str(), Bytes(s.reserved).c_str(),
          Bytes(s.mapped).c_str());
      Add(&o, "    fragmentation at the peak: internal %s (rounding waste / reserved), external "
              "%s (1 - largest free extent / free), reserved/allocated %.3f\n",
          Pct(s.internal).c_str(), Pct(s.external).c_str(), s.overhead);
      if (!m.kinds_method.empty()) {
        o += "    kinds at the peak:";
        for (int k = 1; k < kTensorKinds; ++k)
          Add(&o, "%s %s %s", k > 1 ? "," : "", KindName(static_cast<TensorKind>(k)),
              Bytes(d.kinds_at_peak[static_cast<std::size_t>(k)]).c_str());
        o += "\n";
      }
      if (!d.largest_at_peak.empty()) {
        o += "    largest live blocks at the peak:\n";
        int rank = 0;
        for (std::uint32_t bi : d.largest_at_peak) {
          if (bi >= m.blocks.size()) continue;
          const Block& b = m.blocks[bi];
          Add(&o, "      %2d. %12s (rounded %s) at 0x%" PRIx64 ", allocated at %s by %s, stream 0x%" PRIx64 "%s%s%s\n",
              ++rank, Bytes(b.requested).c_str(), Bytes(b.rounded).c_str(), b.addr,
              Secs(b.alloc_ns).c_str(), CallName(b.call), b.stream,
              b.live_at_end ? ", never freed" : "", b.kind != TensorKind::kUnknown ? ", " : "",
              b.kind != TensorKind::kUnknown ? KindName(b.kind) : "");
          if (const std::string site = CallSiteLine(m, b); !site.empty())
            o += "          at " + site + "\n";
        }
      }
    }
  }
  if (!m.kinds_method.empty())
    Add(&o, "kinds of tensor: %s (rules: docs/profiler.md)\n", m.kinds_method.c_str());
  if (!m.marks.empty()) {
    Add(&o, "marks: %zu\n", m.marks.size());
    std::size_t shown = 0;
    for (const Mark& mk : m.marks) {
      if (++shown > 20) {
        Add(&o, "  ... %zu more\n", m.marks.size() - 20);
        break;
      }
      const char* phase = mk.phase == 1 ? "begin" : mk.phase == 2 ? "end" : "mark";
      Add(&o, "  %s  %-5s %s (%s)\n", Secs(mk.t_ns).c_str(), phase, mk.label.c_str(),
          mk.process < m.processes.size() ? ProcessName(m.processes[mk.process]).c_str() : "?");
    }
  }
  if (!m.ooms.empty()) {
    Add(&o, "out of memory: %zu\n", m.ooms.size());
    std::size_t shown = 0;
    for (const Oom& e : m.ooms) {
      if (++shown > 10) {
        Add(&o, "  ... %zu more\n", m.ooms.size() - 10);
        break;
      }
      Add(&o, "  %s  device %d, %s requested (%s)\n", Secs(e.t_ns).c_str(), e.device,
          Bytes(e.bytes).c_str(),
          e.process < m.processes.size() ? ProcessName(m.processes[e.process]).c_str() : "?");
    }
  }
  OffloadText(m, &o);
  if (!m.idle_longest.empty()) {
    o += "idle longest (tracked blocks, by size x time since last access until free or end):\n";
    int rank = 0;
    for (std::uint32_t bi : m.idle_longest) {
      const Block& b = m.blocks[bi];
      Add(&o, "  %2d. %12s idle %s (%s), %" PRIu64 " accesses, at 0x%" PRIx64 " on device %d\n",
          ++rank, Bytes(b.requested).c_str(), Secs(IdleNs(b)).c_str(),
          b.accesses ? ("last used at " + Secs(b.last_access_ns)).c_str() : "never used",
          b.accesses, b.addr, b.device);
    }
  }
  for (const std::string& n : m.notes) o += "note: " + n + "\n";
  return o;
}

}  // namespace spillway::report
