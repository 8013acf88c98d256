// trace_writer.cpp — the SPILLWAY_TRACE writer (see trace_writer.h).
#include "profiler/trace_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace spillway::trace {

namespace {
std::uint64_t Now(clockid_t c) {
  timespec ts{};
  clock_gettime(c, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}
constexpr std::size_t kBufferRecords = 4096;
}  // namespace

bool TraceWriter::open(const std::string& path, std::string* error) {
  std::lock_guard<std::mutex> lk(mu_);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    *error = "spillway: cannot open SPILLWAY_TRACE file '" + path + "': " + std::strerror(errno);
    return false;
  }
  path_ = path;
  buf_.reserve(kBufferRecords);
  write_header();
  return true;
}

void TraceWriter::write_header() {
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof h.magic);
  h.version = kVersion;
  h.header_size = sizeof(Header);
  h.record_size = sizeof(Record);
  h.pid = static_cast<std::uint32_t>(getpid());
  h.start_unix_ns = Now(CLOCK_REALTIME);
  start_ns_ = Now(CLOCK_MONOTONIC);
  seq_ = 0;
  if (::write(fd_, &h, sizeof h) != static_cast<ssize_t>(sizeof h)) {
    ::close(fd_);
    fd_ = -1;
  }
}

void TraceWriter::record(Kind kind, int device, const void* stream, std::uint64_t addr,
                         std::uint64_t size, std::uint16_t status) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  Record r{};
  r.t_ns = Now(CLOCK_MONOTONIC) - start_ns_;
  r.addr = addr;
  r.size = size;
  r.stream = reinterpret_cast<std::uint64_t>(stream);
  r.seq = seq_++;
  r.device = device;
  r.kind = static_cast<std::uint16_t>(kind);
  r.status = status;
  buf_.push_back(r);
  if (buf_.size() >= kBufferRecords) flush_locked();
}

void TraceWriter::flush_locked() {
  if (fd_ < 0 || buf_.empty()) return;
  const char* p = reinterpret_cast<const char*>(buf_.data());
  std::size_t left = buf_.size() * sizeof(Record);
  while (left > 0) {
    ssize_t w = ::write(fd_, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      // Disk full or I/O error: say so once and stop tracing; allocation goes on.
      static const char msg[] = "spillway: writing SPILLWAY_TRACE failed; tracing stopped\n";
      (void)!::write(2, msg, sizeof msg - 1);
      ::close(fd_);
      fd_ = -1;
      break;
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  buf_.clear();
}

void TraceWriter::flush() {
  std::lock_guard<std::mutex> lk(mu_);
  flush_locked();
}

void TraceWriter::close() {
  std::lock_guard<std::mutex> lk(mu_);
  flush_locked();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TraceWriter::atfork_child() {
  // The parent's buffered records are not ours.
  mu_.unlock();
  std::lock_guard<std::mutex> lk(mu_);
  buf_.clear();
  if (fd_ < 0) return;
  ::close(fd_);
  path_ += "." + std::to_string(getpid());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ >= 0) write_header();
}

}  // namespace spillway::trace
