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

// Budget in bytes for a device of `total` bytes (0 = none).
std::uint64_t ResolveBudget(const Config& cfg, std::uint64_t total);

}  // namespace spillway
