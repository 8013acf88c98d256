// trace_writer.h — appends allocation events to the SPILLWAY_TRACE file: buffered, thread-safe,
// flushed when the buffer fills and at exit; a forked child writes its own file (path.PID).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "profiler/trace_format.h"

namespace spillway::trace {

class TraceWriter {
 public:
  // Opens (truncates) `path`. False with *error on failure.
  bool open(const std::string& path, std::string* error);
  void record(Kind kind, int device, const void* stream, std::uint64_t addr, std::uint64_t size,
              std::uint16_t status);
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
  std::mutex mu_;
  std::string path_;
  int fd_ = -1;
  std::uint64_t start_ns_ = 0;
  std::uint64_t seq_ = 0;
  std::vector<Record> buf_;
};

}  // namespace spillway::trace
