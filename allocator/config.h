// config.h — the SPILLWAY_* environment variables: parsing and validation. A malformed value is
// an error that names the variable and the expected form; nothing is silently ignored.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace spillway {

struct Config {
  // SPILLWAY_DEVICE_BUDGET: bytes (suffix K, M, G, T; binary units) or a percentage of the
  // device's memory ("80%"). Absent: no cap beyond the device itself.
  std::uint64_t budget_bytes = 0;
  double budget_percent = 0;  // > 0 when given as a percentage
  // SPILLWAY_RESERVE_POLICY=fast|compact. Past a small allowance over the most ever allocated,
  // `fast` reserves new memory when no freed page is known to be done on the GPU; `compact`
  // waits for the GPU to finish with freed pages (oldest first) and reuses them instead.
  bool compact = false;
  // SPILLWAY_SPANS=auto|0|1 (default auto: on with SPILLWAY_OFFLOAD=1): map an aligned 32 MiB
  // group of a large block's pages with one physical allocation (a span) instead of 16 chunks,
  // in the arena and when the pager brings a block back (arena.h). The driver's cost is per
  // mapping; docs/offload.md says what it gains and where it loses.
  enum class Spans { kAuto, kOn, kOff } spans = Spans::kAuto;
  // SPILLWAY_SPAN_MIB: the size of a span, a power of two from 4 to 512 MiB and at least two
  // physical pages (default 8). Larger spans cost fewer mappings per byte; smaller ones cover
  // more of a block that is not aligned to them, so fewer chunks, and fewer conversions between
  // spans and chunks (docs/offload.md: 8 against 32 MiB on the H200, 504e427).
  static constexpr std::uint64_t kDefaultSpanMib = 8;
  std::uint64_t span_mib = kDefaultSpanMib;
  // SPILLWAY_TRACE: path of the binary allocation trace (docs/trace-format.md).
  std::string trace_path;
  // SPILLWAY_REPORT: directory of the reports written at exit (created if missing): the event
  // log goes to DIR/spillway-PID.trace unless SPILLWAY_TRACE names one; at exit the text summary
  // is printed on stderr and every format is written into DIR (docs/profiler.md).
  std::string report_dir;
  // SPILLWAY_CALLSITE_MIN: with an event log, allocations of at least this many bytes record
  // their call site (C++ frames, and Python frames when the caller holds the GIL); bytes with an
  // optional K/M/G/T suffix; 0 records none.
  std::uint64_t callsite_min = std::uint64_t{1} << 20;
  // SPILLWAY_STATS=1: print the summary at exit.
  bool print_stats = false;
  // SPILLWAY_TRACK=1: the CUPTI tracker (CUDA backend only): which live blocks each launch,
  // copy and set touches; with a trace, one access summary per block (docs/trace-format.md).
  bool track = false;
  // SPILLWAY_KERNELS=1 (with SPILLWAY_TRACK=1 and an event log): when each kernel ran, from CUPTI
  // activity records, as slices in the Chrome trace.
  bool kernels = false;
  // SPILLWAY_TRACK_LAUNCHES=auto|cupti: how the tracker sees kernel launches. auto: through the
  // preload's launch hooks, with CUPTI's launch callbacks turned off once a check shows no
  // launch bypasses the hooks; cupti: through CUPTI's callbacks alone, no hooks (tracker.h).
  bool track_launches_cupti = false;
  // Offload (offload/pager.h, docs/offload.md).
  // SPILLWAY_OFFLOAD=0|1: when device memory (or the budget) runs out, evict cold blocks to the
  // host instead of failing. The explicit calls (spillway_offload, ...) work either way.
  bool offload = false;
  // SPILLWAY_HOST_LIMIT: pinned host memory the host tier may hold: bytes (K/M/G/T) or a
  // percentage of the machine's RAM. Default 50%.
  std::uint64_t host_limit_bytes = 0;
  double host_limit_percent = 50;
  // SPILLWAY_NVME_PATH: a directory on the disk for the NVMe tier (off when absent);
  // SPILLWAY_NVME_LIMIT: bytes it may hold (0 = the disk's free space); SPILLWAY_NVME_VERIFY=1:
  // a CRC32C of every page checked on every read.
  std::string nvme_path;
  std::uint64_t nvme_limit = 0;
  bool nvme_verify = false;
  // SPILLWAY_OFFLOAD_SAFETY=tracked|strict|auto (default auto: tracked when the tracker runs,
  // SPILLWAY_TRACK=1, else strict). See docs/offload.md.
  enum class Safety { kAuto, kTracked, kStrict } offload_safety = Safety::kAuto;
  // SPILLWAY_OFFLOAD_RETURN_USES: Belady's rule for in-place use (Pager::wanted_back_locked)
  // brings a streamed-only block back only when it will be used this many times before the
  // blocks evicted for it are needed. A tuning knob for benchmarks (0 = the pager's default).
  double offload_return_uses = 0;
  // SPILLWAY_OFFLOAD_LOOKAHEAD: blocks of the learned order brought back ahead of a demanded one
  // (Pager::set_lookahead; 0: no prefetching). A tuning knob for benchmarks (-1 = the pager's
  // default, 4).
  int offload_lookahead = -1;
  // SPILLWAY_OFFLOAD_DRAIN=last|first: when the pager needs device memory, `last` (the default)
  // makes the pager evict first (tracked evictions make no CPU wait) and lets the heap wait for
  // the streams to finish freed memory only if that did not make room, and never for a
  // speculative prefetch; `first` lets the heap wait before the pager evicts. Chosen on the H200
  // (three calls, docs/offload.md): `last` was faster on `activations` and fused-AdamW `ga`,
  // slower on foreach-AdamW `ga`.
  bool offload_drain_last = true;
  // SPILLWAY_OFFLOAD_COPY=engine|kernel: evictions copied to the host by the copy engine
  // (cuMemcpyAsync, the default) or by a kernel of Spillway's (SMs storing to the host chunks).
  // Measured on the H200 (docs/offload.md, "Driver calls under copy traffic"): a cuMemSetAccess
  // took ~1 ms a mapping while the copy engine wrote to the host, ~0.3 ms while a kernel did,
  // ~0.03 ms idle. A tuning knob until the GPU runs say which to default to.
  bool offload_copy_kernel = false;
  // SPILLWAY_BACKEND=cuda|sim. sim runs on the CPU simulator (tests, replay).
  bool use_sim = false;
  // SPILLWAY_SIM_DEVICES, SPILLWAY_SIM_DEVICE_MEMORY: shape of the simulator.
  int sim_devices = 1;
  std::uint64_t sim_device_memory = std::uint64_t{16} << 30;
};

using GetEnv = std::function<const char*(const char*)>;

// Fills *cfg from the environment; false with *error set on a malformed value.
bool ParseConfig(const GetEnv& getenv, Config* cfg, std::string* error);

// "4096", "64K", "1.5G", "2T" -> bytes. False on anything else (empty, negative, junk, overflow).
bool ParseBytes(const std::string& s, std::uint64_t* out);

// The host tier's limit in bytes on a machine with `ram` bytes.
std::uint64_t ResolveHostLimit(const Config& cfg, std::uint64_t ram);

// Budget in bytes for a device of `total` bytes (0 = none).
std::uint64_t ResolveBudget(const Config& cfg, std::uint64_t total);

}  // namespace spillway
