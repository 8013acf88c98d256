// chrome.cpp — trace.json in the Trace Event Format (opens in Perfetto and chrome://tracing):
// one process per log (named by pid and rank), counter tracks per device (allocated, reserved,
// mapped in MiB; fragmentation in %; bytes of each kind of tensor when known), phase slices from
// begin/end marks, instants for instant marks and out-of-memory failures. With offload records:
// counter tracks "tier: device", "tier: host", "tier: nvme" (MiB; " (device N)" appended when a
// process has several devices), one slice per stall spanning the wait (thread "offload stalls") and
// instants for offload errors. Timestamps in microseconds.
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <utility>

#include "profiler/report/json_util.h"
#include "profiler/report/offload.h"
#include "profiler/report/render.h"

namespace spillway::report {

namespace {

using json::Fixed;
using json::Int;
using json::String;
using json::Uint;

constexpr int kMarkTid = 1;
constexpr int kStallTid = 2;
constexpr std::int64_t kKernelTidBase = 1000;  // + CUPTI stream id: the kernels of a stream

void Us(std::string* o, std::uint64_t ns) { Fixed(o, static_cast<double>(ns) / 1e3, 3); }
void MiB(std::string* o, std::uint64_t b) { json::Double(o, static_cast<double>(b) / 0x1p20, 9); }
std::string Hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

}  // namespace

std::string RenderChromeTrace(const Model& m) {
  // Real pids, unless two logs share one (several hosts): then the log's number.
  std::set<std::uint32_t> pids;
  for (const Process& p : m.processes) pids.insert(p.pid);
  const bool unique = pids.size() == m.processes.size();
  auto pid_of = [&](std::uint32_t process) -> std::uint64_t {
    if (process >= m.processes.size()) return 0;
    return unique ? m.processes[process].pid : process + 1;
  };

  std::string o;
  std::size_t samples = 0;
  for (const Series& s : m.series) samples += s.samples.size();
  o.reserve(4096 + samples * 320 + m.marks.size() * 160);
  o.append("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
  bool first = true;
  auto begin = [&]() {
    if (!first) o.append(",\n");
    first = false;
  };
  // Opens one counter event, up to its args object: {"name":..,"ph":"C",..,"args":{
  // A thread's name (metadata event).
  auto thread_name = [&](std::uint32_t process, std::int64_t tid, const std::string& name) {
    begin();
    o.append("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":");
    Uint(&o, pid_of(process));
    o.append(",\"tid\":");
    Int(&o, tid);
    o.append(",\"args\":{\"name\":");
    String(&o, name);
    o.append("}}");
  };
  // Opens one slice, up to its args object: {"name":..,"cat":..,"ph":"X",..,"args":{
  auto slice = [&](const std::string& name, const char* cat, std::uint64_t t_ns,
                   std::uint64_t dur_ns, std::uint32_t process, std::int64_t tid) {
    begin();
    o.append("{\"name\":");
    String(&o, name);
    o.append(",\"cat\":\"");
    o.append(cat);
    o.append("\",\"ph\":\"X\",\"ts\":");
    Us(&o, t_ns);
    o.append(",\"dur\":");
    Us(&o, dur_ns);
    o.append(",\"pid\":");
    Uint(&o, pid_of(process));
    o.append(",\"tid\":");
    Int(&o, tid);
    o.append(",\"args\":{");
  };
  auto counter = [&](const std::string& name, std::uint64_t t_ns, std::uint32_t process) {
    begin();
    o.append("{\"name\":");
    String(&o, name);
    o.append(",\"ph\":\"C\",\"ts\":");
    Us(&o, t_ns);
    o.append(",\"pid\":");
    Uint(&o, pid_of(process));
    o.append(",\"tid\":0,\"args\":{");
  };

  for (std::size_t i = 0; i < m.processes.size(); ++i) {
    const Process& p = m.processes[i];
    std::string name = "pid " + std::to_string(p.pid);
    if (p.rank >= 0) name += " rank " + std::to_string(p.rank);
    begin();
    o.append("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":");
    Uint(&o, pid_of(static_cast<std::uint32_t>(i)));
    o.append(",\"tid\":0,\"args\":{\"name\":");
    String(&o, name);
    o.append("}}");
    begin();
    o.append("{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":");
    Uint(&o, pid_of(static_cast<std::uint32_t>(i)));
    o.append(",\"tid\":0,\"args\":{\"sort_index\":");
    Int(&o, p.rank >= 0 ? p.rank : static_cast<std::int64_t>(i));
    o.append("}}");
    begin();
    o.append("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":");
    Uint(&o, pid_of(static_cast<std::uint32_t>(i)));
    o.append(",\"tid\":");
    Int(&o, kMarkTid);
    o.append(",\"args\":{\"name\":\"phases\"}}");
  }

  for (std::size_t si = 0; si < m.series.size(); ++si) {
    const Series& s = m.series[si];
    const std::string mem = "device " + std::to_string(s.device) + " memory (MiB)";
    const std::string kinds = "device " + std::to_string(s.device) + " bytes by kind (MiB)";
    const auto* ks = si < m.kind_series.size() ? &m.kind_series[si] : nullptr;
    const std::string frag = "device " + std::to_string(s.device) + " fragmentation (%)";
    for (std::size_t j = 0; j < s.samples.size(); ++j) {
      const Sample& x = s.samples[j];
      if (ks != nullptr && j < ks->size()) {  // a stacked counter track, one series per kind
        counter(kinds, x.t_ns, s.process);
        for (int k = 1; k < kTensorKinds; ++k) {
          if (k > 1) o.push_back(',');
          String(&o, KindName(static_cast<TensorKind>(k)));
          o.push_back(':');
          MiB(&o, (*ks)[j][static_cast<std::size_t>(k)]);
        }
        o.append("}}");
      }
      counter(mem, x.t_ns, s.process);
      o.append("\"allocated\":");
      MiB(&o, x.allocated);
      o.append(",\"reserved\":");
      MiB(&o, x.reserved);
      o.append(",\"mapped\":");
      MiB(&o, x.mapped);
      o.append("}}");
      counter(frag, x.t_ns, s.process);
      o.append("\"internal\":");
      json::Double(&o, x.internal * 100);
      o.append(",\"external\":");
      json::Double(&o, x.external * 100);
      o.append("}}");
    }
  }

  // Offload: bytes on each tier (tiers[i] matches series[i]; empty without offload records).
  std::map<std::uint32_t, int> devices_of;  // series per process
  for (const Series& s : m.series) ++devices_of[s.process];
  for (std::size_t si = 0; si < m.series.size() && si < m.offload.tiers.size(); ++si) {
    const Series& s = m.series[si];
    const std::vector<TierBytes>& ts = m.offload.tiers[si];
    const std::string suffix =
        devices_of[s.process] > 1 ? " (device " + std::to_string(s.device) + ")" : "";
    const std::string names[kTiers] = {"tier: device" + suffix, "tier: host" + suffix,
                                       "tier: nvme" + suffix};
    for (std::size_t j = 0; j < s.samples.size() && j < ts.size(); ++j) {
      const std::uint64_t v[kTiers] = {ts[j].device, ts[j].host, ts[j].nvme};
      for (int k = 0; k < kTiers; ++k) {
        counter(names[k], s.samples[j].t_ns, s.process);
        o.append("\"MiB\":");
        MiB(&o, v[k]);
        o.append("}}");
      }
    }
  }
  // Kernels (SPILLWAY_KERNELS=1): one slice each, on a thread per (process, stream).
  std::set<std::pair<std::uint32_t, std::uint32_t>> kernel_threads;
  for (const KernelRun& k : m.kernels) {
    const std::int64_t tid = kKernelTidBase + static_cast<std::int64_t>(k.stream);
    if (kernel_threads.insert({k.process, k.stream}).second)
      thread_name(k.process, tid, "kernels, stream " + std::to_string(k.stream));
    slice(m.kernel_names[k.name], "kernel", k.t_ns, k.dur_ns, k.process, tid);
    o.append("\"device\":");
    Int(&o, k.device);
    o.append("}}");
  }
  std::set<std::uint32_t> stalled;
  for (const Stall& st : m.offload.stall_list) {
    if (stalled.insert(st.process).second) thread_name(st.process, kStallTid, "offload stalls");
    const std::uint64_t start = st.t_ns > st.wait_ns ? st.t_ns - st.wait_ns : 0;
    slice(std::string("stall: ") + TierName(st.from) + "->" + TierName(st.to), "stall", start,
          st.t_ns - start, st.process, kStallTid);
    o.append("\"device\":");
    Int(&o, st.device);
    o.append(",\"addr\":");
    String(&o, Hex(st.addr));
    o.append(",\"bytes\":");
    Uint(&o, st.bytes);
    o.append(",\"wait_ns\":");
    Uint(&o, st.wait_ns);
    o.append("}}");
  }
  for (const OffloadFailure& e : m.offload.first_errors) {
    begin();
    o.append("{\"name\":");
    String(&o, std::string("offload error: ") + OffloadErrorName(e.reason));
    o.append(",\"cat\":\"offload_error\",\"ph\":\"i\",\"s\":\"p\",\"ts\":");
    Us(&o, e.t_ns);
    o.append(",\"pid\":");
    Uint(&o, pid_of(e.process));
    o.append(",\"tid\":");
    Int(&o, kMarkTid);
    o.append(",\"args\":{\"device\":");
    Int(&o, e.device);
    o.append(",\"addr\":");
    String(&o, Hex(e.addr));
    o.append(",\"bytes\":");
    Uint(&o, e.bytes);
    o.append(",\"status\":");
    Uint(&o, e.status);
    o.append("}}");
  }

  for (const Mark& mk : m.marks) {
    begin();
    o.append("{\"name\":");
    String(&o, mk.label);
    o.append(",\"cat\":\"mark\",\"ph\":");
    o.append(mk.phase == 1 ? "\"B\"" : mk.phase == 2 ? "\"E\"" : "\"i\",\"s\":\"p\"");
    o.append(",\"ts\":");
    Us(&o, mk.t_ns);
    o.append(",\"pid\":");
    Uint(&o, pid_of(mk.process));
    o.append(",\"tid\":");
    Int(&o, kMarkTid);
    o.append("}");
  }

  for (const Oom& e : m.ooms) {
    begin();
    o.append("{\"name\":");
    String(&o, "out of memory on device " + std::to_string(e.device));
    o.append(",\"cat\":\"oom\",\"ph\":\"i\",\"s\":\"p\",\"ts\":");
    Us(&o, e.t_ns);
    o.append(",\"pid\":");
    Uint(&o, pid_of(e.process));
    o.append(",\"tid\":");
    Int(&o, kMarkTid);
    o.append(",\"args\":{\"device\":");
    Int(&o, e.device);
    o.append(",\"bytes\":");
    Uint(&o, e.bytes);
    o.append("}}");
  }
  o.append("]}\n");
  return o;
}

}  // namespace spillway::report
