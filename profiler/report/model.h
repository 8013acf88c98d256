// model.h — what a report knows, computed once from one or more event logs (analyze.cpp) and
// rendered by each writer (text, JSON, Chrome trace, HTML, memory_viz snapshot). Times are ns
// since the earliest log's start (logs of several processes are aligned on wall-clock time).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace spillway::report {

// A process whose log was read.
struct Process {
  std::string path;  // the log file
  std::uint32_t pid = 0;
  std::int32_t rank = -1;
  std::uint64_t offset_ns = 0;  // its t = 0 on the common time axis
  std::uint64_t records = 0;
};

// What a block holds, inferred from its lifetime and accesses (kinds.cpp; docs/profiler.md).
enum class TensorKind : std::uint8_t {
  kUnknown = 0,  // no access information (SPILLWAY_TRACK was off)
  kParameter,
  kGradient,
  kOptimizerState,
  kActivation,
  kTemporary,    // temporaries and workspaces: everything else that was tracked
};
inline constexpr int kTensorKinds = 6;
const char* KindName(TensorKind k);  // "parameter", ..., "unknown"

// A tracked access that started one of the block's touch epochs (kTouch).
struct Touch {
  std::uint32_t block = 0;  // index into Model::blocks
  std::uint64_t t_ns = 0;
  std::uint64_t op = 0;     // the tracker's operation number within the process
};

// One allocation, from its allocation record to its free (or the end of the log).
struct Block {
  std::uint64_t addr = 0;
  std::uint64_t requested = 0;  // bytes asked for
  std::uint64_t rounded = 0;    // block size after rounding (== requested when unknown, v1)
  std::uint64_t alloc_ns = 0;
  std::uint64_t free_ns = 0;    // end of the log if never freed (then live_at_end)
  bool live_at_end = false;
  std::uint64_t stream = 0;
  std::int32_t device = 0;
  std::uint32_t process = 0;    // index into Model::processes
  std::uint16_t call = 0;       // trace::Kind of the allocation call
  // From the tracker's access summary (kAccess), when the log has one for this block.
  bool tracked = false;
  std::uint64_t accesses = 0;   // launches, copies and sets that referenced the block
  std::uint64_t first_access_ns = 0, last_access_ns = 0;  // valid when accesses > 0
  std::uint32_t access_streams = 0;
  TensorKind kind = TensorKind::kUnknown;
  std::uint32_t callsite = 0;   // 1 + index into Model::callsites; 0: none recorded (kCallSite)
};

// How long a tracked block sat unused before its free (or the end): from its last access, or
// from its allocation when nothing touched it.
inline std::uint64_t IdleNs(const Block& b) {
  const std::uint64_t from = b.accesses ? b.last_access_ns : b.alloc_ns;
  return b.free_ns > from ? b.free_ns - from : 0;
}

// The state of one device of one process at an instant.
struct Sample {
  std::uint64_t t_ns = 0;
  std::uint64_t allocated = 0;  // requested bytes of live blocks
  std::uint64_t rounded = 0;    // rounded bytes of live blocks
  std::uint64_t reserved = 0;   // chunks created - released (v1 logs: equal to `rounded`)
  std::uint64_t mapped = 0;     // bytes of mapped pages
  // Fragmentation (docs/profiler.md): internal = (rounded - allocated) / reserved; external = 1 -
  // largest free extent / total free, where free = mapped bytes outside live blocks (0 when
  // nothing is free); overhead = reserved / allocated.
  double internal = 0, external = 0, overhead = 0;
};

struct Series {  // one device of one process, in time order, at most ~4000 points
  std::uint32_t process = 0;
  std::int32_t device = 0;
  std::vector<Sample> samples;
};

struct Mark {
  std::uint64_t t_ns = 0;
  std::uint32_t process = 0;
  std::uint32_t phase = 0;  // 0 instant, 1 begin, 2 end
  std::string label;
};

struct Oom {
  std::uint64_t t_ns = 0;
  std::uint32_t process = 0;
  std::int32_t device = 0;
  std::uint64_t bytes = 0;
};

// Peak figures of one device of one process.
struct DeviceSummary {
  std::uint32_t process = 0;
  std::int32_t device = 0;
  std::uint64_t allocs = 0, frees = 0, failed = 0, passed_through = 0;
  std::uint64_t peak_allocated = 0, peak_allocated_ns = 0;
  std::uint64_t peak_reserved = 0, peak_reserved_ns = 0;
  Sample at_peak;                        // the state when allocated peaked
  std::vector<std::uint32_t> largest_at_peak;  // indices into Model::blocks, largest first (10)
  std::uint64_t maps = 0, unmaps = 0, chunk_creates = 0, chunk_releases = 0;
  // Added fields (defaults keep older writers valid):
  std::uint64_t unknown_frees = 0;  // frees of addresses with no live block: counted, ignored
  bool reserved_estimated = false;  // no chunk events (e.g. version 1 logs): reserved = rounded
  std::uint64_t first_ns = 0, last_ns = 0;  // time of the device's first and last event
  // Requested bytes of each kind (TensorKind order) when allocated peaked (kinds.cpp).
  std::array<std::uint64_t, kTensorKinds> kinds_at_peak{};
};

struct Histogram {  // sizes of all allocations, power-of-two buckets from 512 B
  std::vector<std::uint64_t> bucket_floor;  // bytes
  std::vector<std::uint64_t> count;
  std::vector<std::uint64_t> bytes;
};

struct Model {
  std::vector<Process> processes;
  std::vector<Block> blocks;
  std::vector<Series> series;
  std::vector<Mark> marks;
  std::vector<Oom> ooms;
  std::vector<DeviceSummary> devices;
  Histogram sizes;
  std::uint64_t end_ns = 0;
  std::uint64_t origin_unix_ns = 0;  // wall clock (ns since 1970) of t = 0
  std::uint64_t events = 0;
  // Tracked blocks that held the most idle byte-seconds (size x IdleNs), largest first (10);
  // empty when the logs have no access summaries (SPILLWAY_TRACK was off).
  std::vector<std::uint32_t> idle_longest;
  std::vector<std::string> notes;  // caveats for readers (estimated figures, ignored records)
  // Touches of all processes, in each process's time order (empty without SPILLWAY_TRACK).
  std::vector<Touch> touches;
  // Kinds of tensor (kinds.cpp): how iterations were found, and per device series the bytes of
  // each kind at each sample (kind_series[i] matches series[i]; empty when no kinds).
  std::string kinds_method;  // "" when no kinds were inferred
  std::uint32_t iterations = 0;  // optimizer steps found
  std::vector<std::vector<std::array<std::uint64_t, kTensorKinds>>> kind_series;
  // Distinct call-site texts (one frame a line, innermost first; callsites.h parses them).
  std::vector<std::string> callsites;
};

}  // namespace spillway::report
