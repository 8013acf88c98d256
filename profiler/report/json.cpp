// json.cpp — report.json: the summary figures, the time series, marks, OOMs, the size
// histogram and the largest blocks at each device's peak (with their call sites). Times in ns on the common time axis,
// sizes in bytes, fractions in 0..1.
#include "profiler/report/callsites.h"
#include "profiler/report/json_util.h"
#include "profiler/report/offload.h"
#include "profiler/report/render.h"

namespace spillway::report {

namespace {

using json::Double;
using json::Int;
using json::String;
using json::Uint;

void Key(std::string* o, const char* k) {
  String(o, k);
  o->push_back(':');
}

void SampleObj(std::string* o, const Sample& s) {
  o->append("{\"t_ns\":");
  Uint(o, s.t_ns);
  o->append(",\"allocated\":");
  Uint(o, s.allocated);
  o->append(",\"rounded\":");
  Uint(o, s.rounded);
  o->append(",\"reserved\":");
  Uint(o, s.reserved);
  o->append(",\"mapped\":");
  Uint(o, s.mapped);
  o->append(",\"internal\":");
  Double(o, s.internal);
  o->append(",\"external\":");
  Double(o, s.external);
  o->append(",\"overhead\":");
  Double(o, s.overhead);
  o->push_back('}');
}

void BlockObj(std::string* o, const Model& m, const Block& b, std::uint32_t index) {
  o->append("{\"index\":");
  Uint(o, index);
  o->append(",\"addr\":");
  Uint(o, b.addr);
  o->append(",\"requested\":");
  Uint(o, b.requested);
  o->append(",\"rounded\":");
  Uint(o, b.rounded);
  o->append(",\"alloc_ns\":");
  Uint(o, b.alloc_ns);
  o->append(",\"free_ns\":");
  Uint(o, b.free_ns);
  o->append(",\"live_at_end\":");
  o->append(b.live_at_end ? "true" : "false");
  o->append(",\"stream\":");
  Uint(o, b.stream);
  o->append(",\"device\":");
  Int(o, b.device);
  o->append(",\"process\":");
  Uint(o, b.process);
  o->append(",\"call\":");
  Uint(o, b.call);
  if (b.tracked) {  // the tracker's access summary
    o->append(",\"accesses\":");
    Uint(o, b.accesses);
    o->append(",\"first_access_ns\":");
    Uint(o, b.first_access_ns);
    o->append(",\"last_access_ns\":");
    Uint(o, b.last_access_ns);
    o->append(",\"access_streams\":");
    Uint(o, b.access_streams);
    o->append(",\"idle_ns\":");
    Uint(o, IdleNs(b));
  }
  if (b.kind != TensorKind::kUnknown) {
    o->append(",\"kind\":");
    String(o, KindName(b.kind));
  }
  CallSiteJson(o, m, b);  // ,"callsite":{...} when recorded
  o->push_back('}');
}

void StallObj(std::string* o, const Stall& s) {
  o->append("{\"t_ns\":");
  Uint(o, s.t_ns);
  o->append(",\"wait_ns\":");
  Uint(o, s.wait_ns);
  o->append(",\"addr\":");
  Uint(o, s.addr);
  o->append(",\"bytes\":");
  Uint(o, s.bytes);
  o->append(",\"process\":");
  Uint(o, s.process);
  o->append(",\"device\":");
  Int(o, s.device);
  o->append(",\"from\":");
  String(o, TierName(s.from));
  o->append(",\"to\":");
  String(o, TierName(s.to));
  o->push_back('}');
}

// "offload": always present; zeros and empty lists when the logs have no offload records.
void OffloadObj(std::string* o, const Offload& f, const std::vector<Series>& series) {
  o->append("{\"events\":");
  Uint(o, f.events);
  o->append(",\"evictions\":");
  Uint(o, f.evictions);
  o->append(",\"fetches\":");
  Uint(o, f.fetches);
  o->append(",\"unknown_block_moves\":");
  Uint(o, f.unknown_block_moves);
  o->append(",\"bad_moves\":");
  Uint(o, f.bad_moves);
  o->append(",\"traffic\":[");  // every direction, zeros included; gbps = bytes / ns (1e9)
  bool first = true;
  for (std::uint32_t from = 0; from < kTiers; ++from) {
    for (std::uint32_t to = 0; to < kTiers; ++to) {
      if (from == to) continue;
      const Traffic& t = f.traffic[from][to];
      if (!first) o->push_back(',');
      first = false;
      o->append("{\"from\":");
      String(o, TierName(from));
      o->append(",\"to\":");
      String(o, TierName(to));
      const std::pair<const char*, std::uint64_t> counts[] = {{"moves", t.moves},
                                                              {"bytes", t.bytes},
                                                              {"timed_moves", t.timed_moves},
                                                              {"timed_bytes", t.timed_bytes},
                                                              {"ns", t.ns}};
      for (const auto& [k, v] : counts) {
        o->push_back(',');
        Key(o, k);
        Uint(o, v);
      }
      o->append(",\"gbps\":");
      Double(o, t.gbps);
      o->append(",\"median_gbps\":");
      Double(o, t.median_gbps);
      o->push_back('}');
    }
  }
  o->append("],\"stalls\":{\"count\":");
  Uint(o, f.stalls);
  o->append(",\"wait_ns\":");
  Uint(o, f.stall_ns);
  o->append(",\"longest\":");
  if (f.stalls)
    StallObj(o, f.longest_stall);
  else
    o->append("null");
  o->append("},\"prefetch\":{\"fetches_to_device\":");
  Uint(o, f.fetches_to_device);
  o->append(",\"prefetches\":");
  Uint(o, f.prefetches_to_device);
  o->append(",\"demand\":");
  Uint(o, f.fetches_to_device - f.prefetches_to_device);
  o->append(",\"hit_rate\":");
  Double(o, f.prefetch_hit_rate);
  o->append("},\"errors\":{\"count\":");
  Uint(o, f.errors);
  o->append(",\"by_reason\":{");
  for (std::uint32_t r = 1; r <= 6; ++r) {  // reasons 1..5, then 0 ("other")
    if (r > 1) o->push_back(',');
    Key(o, OffloadErrorKey(r % 6));
    Uint(o, f.errors_by_reason[r % 6]);
  }
  o->append("},\"first\":[");
  for (std::size_t i = 0; i < f.first_errors.size(); ++i) {
    const OffloadFailure& e = f.first_errors[i];
    if (i) o->push_back(',');
    o->append("{\"t_ns\":");
    Uint(o, e.t_ns);
    o->append(",\"addr\":");
    Uint(o, e.addr);
    o->append(",\"bytes\":");
    Uint(o, e.bytes);
    o->append(",\"process\":");
    Uint(o, e.process);
    o->append(",\"device\":");
    Int(o, e.device);
    o->append(",\"reason\":");
    String(o, OffloadErrorKey(e.reason));
    o->append(",\"status\":");
    Uint(o, e.status);
    o->push_back('}');
  }
  o->append("]},\"devices\":[");
  for (std::size_t i = 0; i < f.devices.size(); ++i) {
    const TierPeaks& d = f.devices[i];
    if (i) o->push_back(',');
    o->append("{\"process\":");
    Uint(o, d.process);
    o->append(",\"device\":");
    Int(o, d.device);
    const std::pair<const char*, std::uint64_t> peaks[] = {
        {"peak_device", d.peak_device}, {"peak_device_ns", d.peak_device_ns},
        {"peak_host", d.peak_host},     {"peak_host_ns", d.peak_host_ns},
        {"peak_nvme", d.peak_nvme},     {"peak_nvme_ns", d.peak_nvme_ns}};
    for (const auto& [k, v] : peaks) {
      o->push_back(',');
      Key(o, k);
      Uint(o, v);
    }
    o->push_back('}');
  }
  o->append("],\"tiers\":[");  // tiers[i] is series[i]: its sample times, bytes on each tier
  for (std::size_t i = 0; i < f.tiers.size(); ++i) {
    if (i) o->push_back(',');
    const TierPeaks* d = i < f.devices.size() ? &f.devices[i] : nullptr;
    o->append("{\"process\":");
    Uint(o, d ? d->process : 0);
    o->append(",\"device\":");
    Int(o, d ? d->device : 0);
    o->append(",\"columns\":[\"t_ns\",\"device\",\"host\",\"nvme\"],\"samples\":[");
    const std::vector<TierBytes>& ts = f.tiers[i];
    for (std::size_t j = 0; j < ts.size(); ++j) {
      if (j) o->push_back(',');
      o->push_back('[');
      Uint(o, i < series.size() && j < series[i].samples.size() ? series[i].samples[j].t_ns : 0);
      o->push_back(',');
      Uint(o, ts[j].device);
      o->push_back(',');
      Uint(o, ts[j].host);
      o->push_back(',');
      Uint(o, ts[j].nvme);
      o->push_back(']');
    }
    o->append("]}");
  }
  o->append("]}");
}

}  // namespace

std::string RenderJson(const Model& m) {
  std::string o;
  std::size_t samples = 0;
  for (const Series& s : m.series) samples += s.samples.size();
  o.reserve(4096 + samples * 200 + m.marks.size() * 128);
  o.append("{\"format\":\"spillway-report\",\"version\":1,");
  Key(&o, "events");
  Uint(&o, m.events);
  o.append(",");
  Key(&o, "end_ns");
  Uint(&o, m.end_ns);
  o.append(",");
  Key(&o, "blocks");
  Uint(&o, m.blocks.size());

  o.append(",\"processes\":[");
  for (std::size_t i = 0; i < m.processes.size(); ++i) {
    const Process& p = m.processes[i];
    if (i) o.push_back(',');
    o.append("{\"path\":");
    String(&o, p.path);
    o.append(",\"pid\":");
    Uint(&o, p.pid);
    o.append(",\"rank\":");
    Int(&o, p.rank);
    o.append(",\"offset_ns\":");
    Uint(&o, p.offset_ns);
    o.append(",\"records\":");
    Uint(&o, p.records);
    o.push_back('}');
  }

  o.append("],\"devices\":[");
  for (std::size_t i = 0; i < m.devices.size(); ++i) {
    const DeviceSummary& d = m.devices[i];
    if (i) o.push_back(',');
    o.append("{\"process\":");
    Uint(&o, d.process);
    o.append(",\"device\":");
    Int(&o, d.device);
    const std::pair<const char*, std::uint64_t> counts[] = {
        {"allocs", d.allocs},
        {"frees", d.frees},
        {"failed", d.failed},
        {"passed_through", d.passed_through},
        {"unknown_frees", d.unknown_frees},
        {"maps", d.maps},
        {"unmaps", d.unmaps},
        {"chunk_creates", d.chunk_creates},
        {"chunk_releases", d.chunk_releases},
        {"peak_allocated", d.peak_allocated},
        {"peak_allocated_ns", d.peak_allocated_ns},
        {"peak_reserved", d.peak_reserved},
        {"peak_reserved_ns", d.peak_reserved_ns},
        {"first_ns", d.first_ns},
        {"last_ns", d.last_ns}};
    for (const auto& [k, v] : counts) {
      o.push_back(',');
      Key(&o, k);
      Uint(&o, v);
    }
    o.append(",\"reserved_estimated\":");
    o.append(d.reserved_estimated ? "true" : "false");
    o.append(",\"at_peak\":");
    SampleObj(&o, d.at_peak);
    if (!m.kinds_method.empty()) {  // requested bytes of each kind at the peak
      o.append(",\"kinds_at_peak\":{");
      for (int k = 1; k < kTensorKinds; ++k) {
        if (k > 1) o.push_back(',');
        Key(&o, KindName(static_cast<TensorKind>(k)));
        Uint(&o, d.kinds_at_peak[static_cast<std::size_t>(k)]);
      }
      o.push_back('}');
    }
    o.append(",\"largest_at_peak\":[");
    bool first = true;
    for (std::uint32_t bi : d.largest_at_peak) {
      if (bi >= m.blocks.size()) continue;
      if (!first) o.push_back(',');
      first = false;
      BlockObj(&o, m, m.blocks[bi], bi);
    }
    o.append("]}");
  }

  o.append("],\"series\":[");
  for (std::size_t i = 0; i < m.series.size(); ++i) {
    const Series& s = m.series[i];
    if (i) o.push_back(',');
    o.append("{\"process\":");
    Uint(&o, s.process);
    o.append(",\"device\":");
    Int(&o, s.device);
    o.append(",\"samples\":[");
    for (std::size_t j = 0; j < s.samples.size(); ++j) {
      if (j) o.push_back(',');
      SampleObj(&o, s.samples[j]);
    }
    o.push_back(']');
    if (i < m.kind_series.size()) {  // per sample: bytes of each kind, in "kinds" order
      o.append(",\"kind_bytes\":[");
      const auto& ks = m.kind_series[i];
      for (std::size_t j = 0; j < ks.size(); ++j) {
        if (j) o.push_back(',');
        o.push_back('[');
        for (int k = 1; k < kTensorKinds; ++k) {
          if (k > 1) o.push_back(',');
          Uint(&o, ks[j][static_cast<std::size_t>(k)]);
        }
        o.push_back(']');
      }
      o.push_back(']');
    }
    o.push_back('}');
  }

  o.append("],\"marks\":[");
  for (std::size_t i = 0; i < m.marks.size(); ++i) {
    const Mark& mk = m.marks[i];
    if (i) o.push_back(',');
    o.append("{\"t_ns\":");
    Uint(&o, mk.t_ns);
    o.append(",\"process\":");
    Uint(&o, mk.process);
    o.append(",\"phase\":");
    String(&o, mk.phase == 1 ? "begin" : mk.phase == 2 ? "end" : "instant");
    o.append(",\"label\":");
    String(&o, mk.label);
    o.push_back('}');
  }

  o.append("],\"ooms\":[");
  for (std::size_t i = 0; i < m.ooms.size(); ++i) {
    const Oom& e = m.ooms[i];
    if (i) o.push_back(',');
    o.append("{\"t_ns\":");
    Uint(&o, e.t_ns);
    o.append(",\"process\":");
    Uint(&o, e.process);
    o.append(",\"device\":");
    Int(&o, e.device);
    o.append(",\"bytes\":");
    Uint(&o, e.bytes);
    o.push_back('}');
  }

  o.append("],\"histogram\":[");
  for (std::size_t i = 0; i < m.sizes.count.size(); ++i) {
    if (i) o.push_back(',');
    o.append("{\"floor\":");
    Uint(&o, i < m.sizes.bucket_floor.size() ? m.sizes.bucket_floor[i] : 0);
    o.append(",\"count\":");
    Uint(&o, m.sizes.count[i]);
    o.append(",\"bytes\":");
    Uint(&o, i < m.sizes.bytes.size() ? m.sizes.bytes[i] : 0);
    o.push_back('}');
  }

  o.append("],\"idle_longest\":[");
  for (std::size_t i = 0; i < m.idle_longest.size(); ++i) {
    if (i) o.push_back(',');
    BlockObj(&o, m, m.blocks[m.idle_longest[i]], m.idle_longest[i]);
  }
  o.append("],\"kinds\":");
  if (m.kinds_method.empty()) {
    o.append("null");
  } else {
    // How kinds were inferred, their names, and every tracked block as
    // [process, addr, requested, alloc_ns, free_ns, kind index, accesses] (alloc/free on
    // this report's time axis; add origin_unix_ns for wall-clock time).
    o.append("{\"method\":");
    String(&o, m.kinds_method);
    o.append(",\"optimizer_steps\":");
    Uint(&o, m.iterations);
    o.append(",\"names\":[");
    for (int k = 1; k < kTensorKinds; ++k) {
      if (k > 1) o.push_back(',');
      String(&o, KindName(static_cast<TensorKind>(k)));
    }
    o.append("],\"blocks\":[");
    bool first_block = true;
    for (const Block& b : m.blocks) {
      if (b.kind == TensorKind::kUnknown) continue;
      if (!first_block) o.push_back(',');
      first_block = false;
      o.push_back('[');
      Uint(&o, b.process);
      o.push_back(',');
      Uint(&o, b.addr);
      o.push_back(',');
      Uint(&o, b.requested);
      o.push_back(',');
      Uint(&o, b.alloc_ns);
      o.push_back(',');
      Uint(&o, b.free_ns);
      o.push_back(',');
      Uint(&o, static_cast<std::uint64_t>(b.kind) - 1);
      o.push_back(',');
      Uint(&o, b.accesses);
      o.push_back(']');
    }
    o.append("]}");
  }
  o.append(",\"offload\":");
  OffloadObj(&o, m.offload, m.series);
  o.append(",\"origin_unix_ns\":");
  Uint(&o, m.origin_unix_ns);
  o.append(",\"notes\":[");
  for (std::size_t i = 0; i < m.notes.size(); ++i) {
    if (i) o.push_back(',');
    String(&o, m.notes[i]);
  }
  o.append("]}\n");
  return o;
}

}  // namespace spillway::report
