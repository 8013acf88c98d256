// nvtx_marks.h — NVTX ranges and marks turned into the event log's marks (kMark: phase 0
// instant, 1 begin, 2 end): nvtxMark* gives an instant mark, nvtxRangePush* / nvtxRangeStart* a
// begin, nvtxRangePop / nvtxRangeEnd an end carrying the label of the range it closes (a Pop
// names no label: a per-thread stack of pushed labels supplies it; an End names a range id: a
// process-wide map from id to label does). A Pop with nothing pushed (pushed before tracking
// started) and an End of an unknown id write nothing and are counted.
// Plain C++ (the CUPTI glue in tracker.cpp decodes the NVTX parameters), tested on the CPU.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace spillway::tracker {

// Where marks go: label (not NUL-terminated), its length, phase. `ctx` is passed back.
using MarkSink = void (*)(void* ctx, const char* label, std::size_t n, std::uint32_t phase);

class NvtxMarks {
 public:
  static constexpr std::size_t kMaxLabel = 4096;  // longer labels are cut (spillway_mark's limit)
  static constexpr std::size_t kMaxOpenRanges = 65536;  // start/end ranges remembered at once
  static constexpr std::size_t kMaxDepth = 4096;        // pushed labels remembered per thread

  NvtxMarks(MarkSink sink, void* ctx) : sink_(sink), ctx_(ctx) {}

  // `label` nullptr or empty: "nvtx" is written instead.
  void mark(const char* label);
  void push(const char* label);
  void pop();
  void start(std::uint64_t id, const char* label);
  void end(std::uint64_t id);

  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t unmatched() const { return unmatched_.load(std::memory_order_relaxed); }

 private:
  void write(const std::string& label, std::uint32_t phase);
  static std::string Label(const char* label);

  MarkSink sink_;
  void* ctx_;
  std::mutex mu_;  // ranges_
  std::unordered_map<std::uint64_t, std::string> ranges_;
  std::atomic<std::uint64_t> written_{0}, unmatched_{0};
};

}  // namespace spillway::tracker
