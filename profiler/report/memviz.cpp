// memviz.cpp — the Model as a PyTorch memory snapshot (the pickle `torch.cuda.memory._snapshot()`
// returns), for `python -m torch.cuda._memory_viz stats|trace|trace_plot|segment_plot FILE` and
// for https://pytorch.org/memory_viz (drag the file in; nothing is uploaded).
//
// The layout follows torch/cuda/memory.py (`_snapshot`) and c10's TraceEntry:
//   {"segments": [Segment], "device_traces": [[TraceEntry] per device], "spillway_devices": [..]}
//   Segment: device, address, total_size, allocated_size, active_size, requested_size, stream,
//            segment_type ("large" | "small"), segment_pool_id (0, 0), is_expandable, frames [],
//            blocks: [{address, size, requested_size, state, frames []}]
//   TraceEntry: action, addr, size, stream, time_us, frames [] (an "oom" entry adds device_free)
//   Frames: {filename, line, name}; an "alloc" entry and a live block carry the block's call
//   site (SPILLWAY_CALLSITE_MIN; WriteFrames), everything else an empty list.
//
// What the readers use:
//   _memory_viz.segsum (stats): segments[].total_size, .stream, .blocks[].state, .size,
//     .requested_size, .frames; it asserts that the blocks of a segment add up to its total_size.
//   _memory_viz.trace: device_traces[d][].action, .addr, .size (and .device_free for "oom");
//     segments[].address, .allocated_size, .total_size.
//   trace_plot / memory_viz.html ("Active Memory Timeline", "Allocator State History"):
//     device_traces[d][].action, .addr, .size, .stream, .frames; segments[].device, .address,
//     .total_size, .stream, .blocks[] tiled from .address (block i starts where i-1 ends); every
//     block the trace ever touches must lie inside a segment, or the state view fails.
//
// How Spillway's model maps onto that:
//   - Segments: for each (process, device), the address ranges of all blocks ever allocated
//     ([addr, addr + max(rounded, requested))) are merged where they overlap or touch; each merged
//     range is one segment (so it is "address space Spillway handed out", not the physical
//     reservation, which the model has only as totals). The blocks live at the end of the log are
//     its "active_allocated" blocks (size = rounded, requested_size = requested); the gaps between
//     them are "inactive" blocks. Segments holding no live block are kept (all inactive), so the
//     state view can replay the trace backwards.
//   - device_traces: every block gives an "alloc" at alloc_ns and, unless live at the end, a
//     "free_requested" immediately followed by a "free_completed" at free_ns; sizes are the
//     requested bytes (as PyTorch records them). OOMs are "oom" entries (device_free 0: unknown).
//     Entries are in time order; at equal times frees of older blocks come before allocations.
//   - Device index: the CUDA device number, unless two processes used the same device number;
//     then each (process, device) pair gets its own index in order. "spillway_devices" lists the
//     mapping. Blocks of size 0, at address 0 or on a negative device are left out.
#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "profiler/report/callsites.h"
#include "profiler/report/model.h"
#include "profiler/report/pickle.h"
#include "profiler/report/render.h"

namespace spillway::report {
namespace {

using Pair = std::pair<std::uint32_t, std::int32_t>;  // (process, device)

std::uint64_t Footprint(const Block& b) { return std::max(b.rounded, b.requested); }
bool Usable(const Block& b) { return b.addr != 0 && Footprint(b) != 0 && b.device >= 0; }
std::uint64_t End(const Block& b) {
  const std::uint64_t sz = Footprint(b);
  return b.addr > UINT64_MAX - sz ? UINT64_MAX : b.addr + sz;
}
std::uint64_t TraceSize(const Block& b) { return b.requested != 0 ? b.requested : Footprint(b); }

struct Extent {
  std::uint64_t begin = 0, end = 0;
};

struct Event {
  std::uint64_t t_ns = 0;
  int order = 0;            // 0 free of an older block, 1 alloc, 2 free of a block born now, 3 oom
  std::size_t index = 0;    // into Model::blocks or Model::ooms
  std::uint64_t seq = 0;    // tie-break: generation order
};

// `"frames": [...]`: the block's call site (SPILLWAY_CALLSITE_MIN), as PyTorch's snapshots
// hold one, innermost first: the C++ frames ({"filename": MODULE or "??", "line": 0, "name":
// SYMBOL+0xOFF}), then the Python frames ({"filename", "line", "name"}, from "FILE:LINE
// FUNCTION"); an empty list when none was recorded.
void WriteFrames(PickleWriter& w, const Model* m = nullptr, const Block* b = nullptr) {
  w.Str("frames");
  w.BeginList();
  if (m != nullptr && b != nullptr && b->callsite != 0 && b->callsite <= m->callsites.size()) {
    const std::vector<CallFrame> frames = ParseCallSite(m->callsites[b->callsite - 1]);
    auto one = [&w](const std::string& file, std::int64_t line, const std::string& name) {
      w.BeginDict();
      w.Str("filename");
      w.Str(file);
      w.Str("line");
      w.Int(line);
      w.Str("name");
      w.Str(name);
      w.EndDict();
    };
    for (const CallFrame& f : frames)
      if (!f.python) one(f.module.empty() ? "??" : f.module, 0, f.text);
    for (const CallFrame& f : frames) {
      if (!f.python) continue;
      const std::size_t sp = f.text.rfind(' ');
      const std::string where = sp == std::string::npos ? f.text : f.text.substr(0, sp);
      const std::string name = sp == std::string::npos ? "?" : f.text.substr(sp + 1);
      const std::size_t colon = where.rfind(':');
      std::int64_t line = 0;
      bool digits = colon != std::string::npos && colon + 1 < where.size();
      for (std::size_t i = colon + 1; digits && i < where.size(); ++i) {
        if (where[i] < '0' || where[i] > '9' || line > (INT64_MAX - 9) / 10) {
          digits = false;
          break;
        }
        line = line * 10 + (where[i] - '0');
      }
      one(digits ? where.substr(0, colon) : where, digits ? line : 0, name);
    }
  }
  w.EndList();
}

void WriteEntry(PickleWriter& w, const char* action, std::uint64_t addr, std::uint64_t size,
                std::uint64_t stream, std::uint64_t t_ns, const Model* m = nullptr,
                const Block* b = nullptr) {
  w.BeginDict();
  w.Str("action");
  w.Str(action);
  w.Str("addr");
  w.UInt(addr);
  w.Str("size");
  w.UInt(size);
  w.Str("stream");
  w.UInt(stream);
  w.Str("time_us");
  w.UInt(t_ns / 1000);
  WriteFrames(w, m, b);
  w.EndDict();
}

}  // namespace

std::string RenderMemviz(const Model& m) {
  // (process, device) pairs and their snapshot device index.
  std::set<Pair> pairs;
  for (const Block& b : m.blocks) {
    if (Usable(b)) pairs.insert({b.process, b.device});
  }
  for (const Oom& o : m.ooms) {
    if (o.device >= 0) pairs.insert({o.process, o.device});
  }
  for (const DeviceSummary& d : m.devices) {
    if (d.device >= 0) pairs.insert({d.process, d.device});
  }
  std::map<std::int32_t, int> users;  // device number -> processes using it
  for (const Pair& p : pairs) ++users[p.second];
  bool shared = false;
  for (const auto& [dev, n] : users) shared = shared || n > 1;
  std::map<Pair, std::size_t> index;
  std::size_t n_devices = 0;
  for (const Pair& p : pairs) {
    const std::size_t i = shared ? index.size() : static_cast<std::size_t>(p.second);
    index[p] = i;
    n_devices = std::max(n_devices, i + 1);
  }

  // Blocks by pair, for the segments.
  std::map<Pair, std::vector<std::size_t>> by_pair;
  for (std::size_t i = 0; i < m.blocks.size(); ++i) {
    const Block& b = m.blocks[i];
    if (Usable(b)) by_pair[{b.process, b.device}].push_back(i);
  }

  PickleWriter w;
  w.BeginDict();

  // ---- segments ----
  w.Str("segments");
  w.BeginList();
  std::vector<std::pair<std::size_t, const std::vector<std::size_t>*>> ordered;
  for (const auto& [p, list] : by_pair) ordered.push_back({index[p], &list});
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [dev, list_ptr] : ordered) {
    std::vector<std::size_t> list = *list_ptr;
    std::sort(list.begin(), list.end(), [&](std::size_t a, std::size_t b) {
      return m.blocks[a].addr != m.blocks[b].addr ? m.blocks[a].addr < m.blocks[b].addr : a < b;
    });
    std::vector<Extent> extents;
    for (std::size_t i : list) {
      const Block& b = m.blocks[i];
      if (!extents.empty() && b.addr <= extents.back().end) {
        extents.back().end = std::max(extents.back().end, End(b));
      } else {
        extents.push_back({b.addr, End(b)});
      }
    }
    std::size_t next = 0;  // into list: blocks are sorted by address like the extents
    for (const Extent& e : extents) {
      std::vector<const Block*> live;
      std::uint64_t cursor = e.begin;
      for (; next < list.size() && m.blocks[list[next]].addr < e.end; ++next) {
        const Block& b = m.blocks[list[next]];
        if (!b.live_at_end || b.addr < cursor) continue;  // (overlap: impossible in a sane log)
        live.push_back(&b);
        cursor = End(b);
      }
      std::uint64_t allocated = 0, requested = 0, stream = 0;
      for (const Block* b : live) {
        allocated += Footprint(*b);
        requested += std::min(b->requested, Footprint(*b));
      }
      if (!live.empty()) stream = live.front()->stream;
      const std::uint64_t total = e.end - e.begin;
      w.BeginDict();
      w.Str("device");
      w.UInt(dev);
      w.Str("address");
      w.UInt(e.begin);
      w.Str("total_size");
      w.UInt(total);
      w.Str("allocated_size");
      w.UInt(allocated);
      w.Str("active_size");
      w.UInt(allocated);
      w.Str("requested_size");
      w.UInt(requested);
      w.Str("stream");
      w.UInt(stream);
      w.Str("segment_type");
      w.Str(total > (1u << 20) ? "large" : "small");
      w.Str("segment_pool_id");
      w.BeginTuple2();
      w.Int(0);
      w.Int(0);
      w.EndTuple2();
      w.Str("is_expandable");
      w.Bool(true);
      WriteFrames(w);
      w.Str("blocks");
      w.BeginList();
      auto inactive = [&](std::uint64_t at, std::uint64_t size) {
        w.BeginDict();
        w.Str("address");
        w.UInt(at);
        w.Str("size");
        w.UInt(size);
        w.Str("requested_size");
        w.Int(0);
        w.Str("state");
        w.Str("inactive");
        WriteFrames(w);
        w.EndDict();
      };
      cursor = e.begin;
      for (const Block* b : live) {
        if (b->addr > cursor) inactive(cursor, b->addr - cursor);
        w.BeginDict();
        w.Str("address");
        w.UInt(b->addr);
        w.Str("size");
        w.UInt(Footprint(*b));
        w.Str("requested_size");
        w.UInt(std::min(b->requested, Footprint(*b)));
        w.Str("state");
        w.Str("active_allocated");
        WriteFrames(w, &m, b);
        w.EndDict();
        cursor = End(*b);
      }
      if (cursor < e.end) inactive(cursor, e.end - cursor);
      w.EndList();
      w.EndDict();
    }
  }
  w.EndList();

  // ---- device_traces ----
  std::vector<std::vector<Event>> traces(n_devices);
  std::uint64_t seq = 0;
  for (std::size_t i = 0; i < m.blocks.size(); ++i) {
    const Block& b = m.blocks[i];
    if (!Usable(b)) continue;
    auto& t = traces[index[{b.process, b.device}]];
    t.push_back({b.alloc_ns, 1, i, seq++});
    if (!b.live_at_end) t.push_back({b.free_ns, b.free_ns == b.alloc_ns ? 2 : 0, i, seq++});
  }
  for (std::size_t i = 0; i < m.ooms.size(); ++i) {
    const Oom& o = m.ooms[i];
    if (o.device < 0) continue;
    traces[index[{o.process, o.device}]].push_back({o.t_ns, 3, i, seq++});
  }
  w.Str("device_traces");
  w.BeginList();
  for (auto& t : traces) {
    std::sort(t.begin(), t.end(), [](const Event& a, const Event& b) {
      if (a.t_ns != b.t_ns) return a.t_ns < b.t_ns;
      if (a.order != b.order) return a.order < b.order;
      return a.seq < b.seq;
    });
    w.BeginList();
    for (const Event& e : t) {
      if (e.order == 3) {
        const Oom& o = m.ooms[e.index];
        w.BeginDict();
        w.Str("action");
        w.Str("oom");
        w.Str("addr");
        w.Int(0);
        w.Str("size");
        w.UInt(o.bytes);
        w.Str("stream");
        w.Int(0);
        w.Str("device_free");
        w.Int(0);
        w.Str("time_us");
        w.UInt(o.t_ns / 1000);
        WriteFrames(w);
        w.EndDict();
        continue;
      }
      const Block& b = m.blocks[e.index];
      if (e.order == 1) {
        WriteEntry(w, "alloc", b.addr, TraceSize(b), b.stream, e.t_ns, &m, &b);
      } else {
        WriteEntry(w, "free_requested", b.addr, TraceSize(b), b.stream, e.t_ns);
        WriteEntry(w, "free_completed", b.addr, TraceSize(b), b.stream, e.t_ns);
      }
    }
    w.EndList();
  }
  w.EndList();

  // ---- which (process, device) each index is ----
  w.Str("spillway_devices");
  w.BeginList();
  for (const auto& [p, i] : index) {
    w.BeginDict();
    w.Str("index");
    w.UInt(i);
    w.Str("process");
    w.UInt(p.first);
    w.Str("pid");
    w.UInt(p.first < m.processes.size() ? m.processes[p.first].pid : 0);
    w.Str("rank");
    w.Int(p.first < m.processes.size() ? m.processes[p.first].rank : -1);
    w.Str("device");
    w.Int(p.second);
    w.EndDict();
  }
  w.EndList();

  w.EndDict();
  return w.Finish();
}

}  // namespace spillway::report
