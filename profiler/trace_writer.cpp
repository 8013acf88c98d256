// trace_writer.cpp — the SPILLWAY_TRACE writer (see trace_writer.h).
#include "profiler/trace_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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
  h.rank = -1;
  for (const char* var : {"RANK", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"}) {
    const char* v = std::getenv(var);
    char* end = nullptr;
    if (v != nullptr && *v != '\0') {
      long r = std::strtol(v, &end, 10);
      if (*end == '\0' && r >= 0 && r < (1L << 30)) {
        h.rank = static_cast<std::int32_t>(r);
        break;
      }
    }
  }
  start_ns_ = Now(CLOCK_MONOTONIC);
  seq_ = 0;
  if (::write(fd_, &h, sizeof h) != static_cast<ssize_t>(sizeof h)) {
    ::close(fd_);
    fd_ = -1;
  }
}

Record& TraceWriter::next_locked(Kind kind, int device) {
  if (buf_.size() >= kBufferRecords) flush_locked();
  Record& r = buf_.emplace_back();
  r.t_ns = Now(CLOCK_MONOTONIC) - start_ns_;
  r.seq = seq_++;
  r.device = device;
  r.kind = static_cast<std::uint16_t>(kind);
  return r;
}

void TraceWriter::touch(int device, std::uint64_t addr, std::uint64_t t_ns, std::uint64_t op,
                        std::uint64_t stream) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  Record& r = next_locked(Kind::kTouch, device);
  r.t_ns = t_ns > start_ns_ ? t_ns - start_ns_ : 0;  // the operation's time, not the write's
  r.addr = addr;
  r.aux = op;
  r.stream = stream;
}

void TraceWriter::kernel(int device, std::uint64_t start_ns, std::uint64_t end_ns,
                         std::uint32_t stream, std::uint32_t correlation, const char* name) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  std::string label = name != nullptr && *name ? name : "(unnamed kernel)";
  if (label.size() > 4096) label.resize(4096);
  auto it = label_ids_.find(label);
  if (it == label_ids_.end()) it = label_ids_.emplace(label, intern_locked(label)).first;
  const std::uint64_t id = it->second;
  Record& r = next_locked(Kind::kKernel, device);
  r.t_ns = start_ns > start_ns_ ? start_ns - start_ns_ : 0;  // the kernel's time, not the write's
  r.addr = id;
  r.aux = end_ns > start_ns ? end_ns - start_ns : 0;
  r.stream = stream;
  r.aux2 = correlation;
}

void TraceWriter::offload(Kind kind, int device, std::uint64_t addr, std::uint64_t size,
                          std::uint64_t aux, std::uint64_t stream, std::uint32_t aux2,
                          std::uint16_t status) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  Record& r = next_locked(kind, device);
  r.addr = addr;
  r.size = size;
  r.aux = aux;
  r.stream = stream;
  r.aux2 = aux2;
  r.status = status;
}

void TraceWriter::access(int device, std::uint64_t addr, std::uint64_t count,
                         std::uint64_t first_ns, std::uint64_t last_ns, std::uint32_t streams) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  Record& r = next_locked(Kind::kAccess, device);
  auto rel = [this](std::uint64_t t) { return t > start_ns_ ? t - start_ns_ : 0; };
  r.addr = addr;
  r.size = count;
  r.aux = count != 0 ? rel(first_ns) : 0;
  r.stream = count != 0 ? rel(last_ns) : 0;
  r.aux2 = streams;
}

void TraceWriter::record(Kind kind, int device, const void* stream, std::uint64_t addr,
                         std::uint64_t size, std::uint16_t status, std::uint64_t rounded) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  Record& r = next_locked(kind, device);
  r.addr = addr;
  r.size = size;
  r.stream = reinterpret_cast<std::uint64_t>(stream);
  r.status = status;
  r.aux = rounded;
}

void TraceWriter::physical(Kind kind, int device, std::uint64_t addr, std::uint64_t size) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  Record& r = next_locked(kind, device);
  r.addr = addr;
  r.size = size;
}

void TraceWriter::mark(const std::string& label, std::uint32_t phase) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return;
  auto it = label_ids_.find(label);
  if (it == label_ids_.end()) it = label_ids_.emplace(label, intern_locked(label)).first;
  Record& r = next_locked(Kind::kMark, -1);
  r.addr = it->second;
  r.aux2 = phase;
}

void TraceWriter::callsite(int device, std::uint64_t addr, const std::string* text) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0 || text->empty() || text->size() > 4096) return;
  auto it = callsite_ids_.find(text);
  if (it == callsite_ids_.end()) it = callsite_ids_.emplace(text, intern_locked(*text)).first;
  Record& r = next_locked(Kind::kCallSite, device);
  r.addr = addr;
  r.aux = it->second;
}

std::uint64_t TraceWriter::intern_locked(const std::string& label) {
  const std::uint64_t id = next_string_id_++;
  for (std::size_t off = 0, chunk = 0; off < label.size(); off += 24, ++chunk) {
    char text[24] = {};
    std::memcpy(text, label.data() + off, std::min<std::size_t>(24, label.size() - off));
    Record& r = next_locked(Kind::kString, static_cast<int>(label.size()));
    r.addr = id;
    r.aux2 = static_cast<std::uint32_t>(chunk);
    std::memcpy(&r.size, text, 8);
    std::memcpy(&r.stream, text + 8, 8);
    std::memcpy(&r.aux, text + 16, 8);
  }
  return id;
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
  label_ids_.clear();  // the child's file defines its labels and call sites again
  callsite_ids_.clear();
  next_string_id_ = 1;
  if (fd_ < 0) return;
  ::close(fd_);
  path_ += "." + std::to_string(getpid());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ >= 0) write_header();
}

}  // namespace spillway::trace
