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

// One kernel's execution on the GPU (SPILLWAY_KERNELS=1), shown in the Chrome trace.
struct KernelRun {
  std::uint64_t t_ns = 0, dur_ns = 0;
  std::uint32_t process = 0, stream = 0, name = 0;  // name: index into Model::kernel_names
  std::int32_t device = 0;
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

// ---- Offload (offload.cpp; definitions in docs/profiler.md, "Offload in reports") ----------
inline constexpr int kTiers = 3;  // trace::Tier: 0 device, 1 host, 2 NVMe

// Bytes of one device's live blocks on each tier at one sample.
struct TierBytes {
  std::uint64_t device = 0;  // allocated - off-device bytes (each block's counted up to its
                             // requested size: moved pages may include its rounding)
  std::uint64_t host = 0;    // bytes of live blocks on the host
  std::uint64_t nvme = 0;    // bytes of live blocks on NVMe
};

// Peaks of the tiers of one device of one process (exact: every record is replayed).
struct TierPeaks {
  std::uint32_t process = 0;
  std::int32_t device = 0;
  std::uint64_t peak_device = 0, peak_device_ns = 0;
  std::uint64_t peak_host = 0, peak_host_ns = 0;
  std::uint64_t peak_nvme = 0, peak_nvme_ns = 0;
};

// Moves in one direction (from one tier to another).
struct Traffic {
  std::uint64_t moves = 0, bytes = 0;
  std::uint64_t timed_moves = 0, timed_bytes = 0, ns = 0;  // moves with a duration (aux > 0)
  double gbps = 0;         // timed_bytes / ns: GB/s (1e9 bytes), 0 when nothing was timed
  double median_gbps = 0;  // median over timed moves of bytes / ns
};

// A launch or access that waited for a block to come back (a demand fetch).
struct Stall {
  std::uint64_t t_ns = 0;     // when the wait ended (the fetch finished)
  std::uint64_t wait_ns = 0;  // the wait: it began at t_ns - wait_ns
  std::uint64_t addr = 0, bytes = 0;
  std::uint32_t process = 0;
  std::int32_t device = 0;
  std::uint32_t from = 0, to = 0;  // tiers
};

// A move that did not happen (kOffloadError).
struct OffloadFailure {
  std::uint64_t t_ns = 0, addr = 0, bytes = 0;
  std::uint32_t process = 0;
  std::int32_t device = 0;
  std::uint32_t reason = 0;  // trace::OffloadErrorReason
  std::uint16_t status = 0;  // spillway_status
};

struct Offload {
  std::uint64_t events = 0;  // kEvict + kFetch + kOffloadError records; 0: no offload section
  std::uint64_t evictions = 0, fetches = 0;
  std::array<std::array<Traffic, kTiers>, kTiers> traffic{};  // [from][to]
  // Prefetch hit rate = prefetches_to_device / fetches_to_device: fetch records that reached
  // the device without a launch waiting for them, over all fetch records that reached it.
  std::uint64_t fetches_to_device = 0, prefetches_to_device = 0;
  double prefetch_hit_rate = 0;  // 0 when no fetch reached the device
  std::uint64_t stalls = 0, stall_ns = 0;
  Stall longest_stall;            // wait_ns 0 when there was none
  std::vector<Stall> stall_list;  // in time order, at most kMaxStalls (the first ones)
  static constexpr std::size_t kMaxStalls = 100000;
  std::uint64_t errors = 0;
  std::array<std::uint64_t, 6> errors_by_reason{};  // by OffloadErrorReason; [0]: any other
  std::vector<OffloadFailure> first_errors;         // the first 10, in time order
  std::uint64_t unknown_block_moves = 0;      // moves of an address with no live block: counted in
                                              // the traffic, not in the tiers
  std::uint64_t bad_moves = 0;                // tiers out of range or equal: ignored
  std::vector<TierPeaks> devices;             // devices[i] matches Model::series[i]
  std::vector<std::vector<TierBytes>> tiers;  // tiers[i][j] matches series[i].samples[j]
};

struct Model {
  std::vector<Process> processes;
  std::vector<Block> blocks;
  std::vector<Series> series;
  std::vector<Mark> marks;
  std::vector<KernelRun> kernels;         // at most kMaxKernels, in log order
  std::vector<std::string> kernel_names;  // distinct names
  std::uint64_t kernels_total = 0;        // kernel records seen (more than kept: counted)
  static constexpr std::size_t kMaxKernels = 1000000;
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
  // Offload to host memory and NVMe: empty (events == 0, no tiers) when the logs have none.
  Offload offload;
};

}  // namespace spillway::report
