// trace_writer.h — appends events to the SPILLWAY_TRACE file (allocation calls, physical memory,
// marks, out-of-memory, call sites): buffered, thread-safe, bounded in memory (flushed every 4096 records
// and at exit); a forked child writes its own file (path.PID).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "profiler/trace_format.h"

namespace spillway::trace {

class TraceWriter {
 public:
  // Opens (truncates) `path`. False with *error on failure.
  bool open(const std::string& path, std::string* error);
  // An allocation call; `rounded` is the block size after rounding (0 if none was made).
  void record(Kind kind, int device, const void* stream, std::uint64_t addr, std::uint64_t size,
              std::uint16_t status, std::uint64_t rounded = 0);
  // Physical memory (kMap, kUnmap, kChunkCreate, kChunkRelease) and kOom.
  void physical(Kind kind, int device, std::uint64_t addr, std::uint64_t size);
  // A block's access summary (kAccess). `first_ns`, `last_ns`: CLOCK_MONOTONIC ns (converted
  // to the trace's t_ns); ignored when `count` is 0.
  void access(int device, std::uint64_t addr, std::uint64_t count, std::uint64_t first_ns,
              std::uint64_t last_ns, std::uint32_t streams);
  // A tracked access that starts a touch epoch (kTouch): `t_ns` CLOCK_MONOTONIC ns.
  void touch(int device, std::uint64_t addr, std::uint64_t t_ns, std::uint64_t op,
             std::uint64_t stream);
  // A kernel's execution (kKernel): CLOCK_MONOTONIC ns of its start and end on the GPU.
  void kernel(int device, std::uint64_t start_ns, std::uint64_t end_ns, std::uint32_t stream,
              std::uint32_t correlation, const char* name);
  // An offload event (kEvict, kFetch, kOffloadError): fields as trace_format.h lays out.
  void offload(Kind kind, int device, std::uint64_t addr, std::uint64_t size, std::uint64_t aux,
               std::uint64_t stream, std::uint32_t aux2, std::uint16_t status = 0);
  // A mark: phase 0 instant, 1 begin, 2 end. The label is written once, as kString records.
  void mark(const std::string& label, std::uint32_t phase);
  // The call site of the block just allocated at `addr` (kCallSite). `text` (at most 4096 bytes)
  // must outlive the writer: it is interned by address, written as kString records once.
  void callsite(int device, std::uint64_t addr, const std::string* text);
  void flush();
  void close();
  ~TraceWriter() { close(); }
  // pthread_atfork handlers: hold the lock across fork; the child re-opens as path.PID.
  void atfork_prepare() { mu_.lock(); }
  void atfork_parent() { mu_.unlock(); }
  void atfork_child();

 private:
  void write_header();
  void flush_locked();
  Record& next_locked(Kind kind, int device);  // appends a record stamped with time and seq
  std::mutex mu_;
  std::string path_;
  int fd_ = -1;
  std::uint64_t start_ns_ = 0;
  std::uint64_t seq_ = 0;
  std::vector<Record> buf_;
  std::uint64_t intern_locked(const std::string& text);  // writes kString records, returns id
  std::unordered_map<std::string, std::uint64_t> label_ids_;
  std::unordered_map<const std::string*, std::uint64_t> callsite_ids_;
  std::uint64_t next_string_id_ = 1;  // ids of labels and call sites share one space
};

}  // namespace spillway::trace
