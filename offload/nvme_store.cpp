// nvme_store.cpp — the NVMe tier's storage engine (see nvme_store.h): the hidden O_DIRECT backing
// file, first-fit space in 2 MiB units, transfers through one io_uring with short-transfer
// continuation and error injection, CRC32C per 1 MiB of a slot, and the raw throughput anchor.
#include "offload/nvme_store.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <random>

#include "offload/crc32c.h"

namespace spillway::offload {
namespace {

constexpr unsigned kMaxQueueDepth = 4096;
constexpr std::size_t kMaxRequestBytes = std::size_t{64} << 20;
constexpr int kMaxRetries = 8;  // EINTR/EAGAIN or no progress, per request

std::string Errno(int e) {
  return std::strerror(e);
}

std::string Bytes(std::uint64_t b) {
  if (b != 0 && b % (std::uint64_t{1} << 30) == 0) return std::to_string(b >> 30) + " GiB";
  if (b != 0 && b % (std::uint64_t{1} << 20) == 0) return std::to_string(b >> 20) + " MiB";
  return std::to_string(b) + " bytes";
}

bool Aligned(std::uint64_t v) {
  return v % kNvmeAlign == 0;
}

// The backing file: O_TMPFILE, or created and unlinked at once where O_TMPFILE is missing.
struct Backing {
  int fd = -1;
  bool tmpfile = false;
  std::string unlinked_name;
};

std::string NoDirectIo(const std::string& dir) {
  return "SPILLWAY_NVME_PATH '" + dir + "': the filesystem does not support O_DIRECT (open " +
         "with O_DIRECT fails with EINVAL, without it succeeds); use a directory on a disk " +
         "filesystem such as ext4 or xfs";
}

bool OpenBacking(const std::string& dir, Backing* out, std::string* error) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    *error = "SPILLWAY_NVME_PATH '" + dir + "': " + Errno(errno);
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    *error = "SPILLWAY_NVME_PATH '" + dir + "': not a directory";
    return false;
  }
  const int rw = O_RDWR | O_CLOEXEC;
  int fd = ::open(dir.c_str(), O_TMPFILE | rw | O_DIRECT, 0600);
  if (fd >= 0) {
    out->fd = fd;
    out->tmpfile = true;
    return true;
  }
  int e = errno;
  if (e == EINVAL) {  // O_DIRECT refused, or (old kernels) O_TMPFILE unknown: tell which
    int probe = ::open(dir.c_str(), O_TMPFILE | rw, 0600);
    if (probe >= 0) {
      ::close(probe);
      *error = NoDirectIo(dir);
      return false;
    }
    if (errno == EOPNOTSUPP || errno == EISDIR) e = errno;
  }
  if (e != EOPNOTSUPP && e != EISDIR) {  // EISDIR: a kernel without O_TMPFILE
    *error = "SPILLWAY_NVME_PATH '" + dir + "': cannot create the backing file: " + Errno(e);
    return false;
  }
  // No O_TMPFILE here: create a file with a fresh name and unlink it at once.
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(rd()));
    std::string name =
        dir + "/.spillway-nvme-" + std::to_string(::getpid()) + "-" + suffix + ".tmp";
    fd = ::open(name.c_str(), O_CREAT | O_EXCL | rw | O_DIRECT, 0600);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0 && errno == EINVAL) {
      int probe = ::open(name.c_str(), O_CREAT | O_EXCL | rw, 0600);
      if (probe >= 0) {
        ::unlink(name.c_str());
        ::close(probe);
        *error = NoDirectIo(dir);
        return false;
      }
      errno = EINVAL;
    }
    if (fd < 0) {
      *error = "SPILLWAY_NVME_PATH '" + dir + "': cannot create '" + name + "': " + Errno(errno);
      return false;
    }
    if (::unlink(name.c_str()) != 0) {
      e = errno;
      ::close(fd);
      *error = "SPILLWAY_NVME_PATH '" + dir + "': cannot unlink '" + name + "': " + Errno(e);
      return false;
    }
    out->fd = fd;
    out->tmpfile = false;
    out->unlinked_name = name;
    return true;
  }
  *error = "SPILLWAY_NVME_PATH '" + dir + "': no free name for the backing file after 100 tries";
  return false;
}

bool InitRing(io_uring* ring, unsigned depth, std::string* error) {
  int rc = io_uring_queue_init(depth, ring, 0);
  if (rc == 0) return true;
  *error = "io_uring_queue_init(" + std::to_string(depth) + ") failed: " + Errno(-rc);
  if (rc == -EPERM || rc == -ENOSYS)
    *error +=
        " (io_uring is disabled: /proc/sys/kernel/io_uring_disabled, or a seccomp filter "
        "such as a container's blocks it)";
  else if (rc == -ENOMEM)
    *error += " (on kernels before 5.12 the ring counts against RLIMIT_MEMLOCK: ulimit -l)";
  return false;
}

// Submits what is queued and waits for one completion; EINTR/EAGAIN/EBUSY are retried.
int SubmitAndWait(io_uring* ring) {
  for (;;) {
    int rc = io_uring_submit_and_wait(ring, 1);
    if (rc >= 0) return 0;
    if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) return rc;
  }
}

std::string Hint(int e) {
  if (e == EFAULT) return " (the memory cannot be used for direct I/O)";
  if (e == EINVAL) return " (direct I/O refused the request's alignment)";
  return "";
}

struct UringHolder {
  io_uring ring{};
  bool ready = false;
  UringHolder() = default;
  UringHolder(const UringHolder&) = delete;
  UringHolder& operator=(const UringHolder&) = delete;
  ~UringHolder() {
    if (ready) io_uring_queue_exit(&ring);
  }
};

struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t n) {
    if (::posix_memalign(&p, kNvmeAlign, n) != 0) p = nullptr;
  }
  ~AlignedBuffer() { std::free(p); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  void* p = nullptr;
};

spillway_status CheckSegments(const NvmeSegment* segs, std::size_t n, std::uint64_t* total,
                              std::string* error) {
  if (segs == nullptr || n == 0) {
    *error = "no segments given";
    return SPILLWAY_ERR_INVALID_VALUE;
  }
  *total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto addr = reinterpret_cast<std::uintptr_t>(segs[i].ptr);
    if (segs[i].ptr == nullptr || !Aligned(addr) || segs[i].len == 0 || !Aligned(segs[i].len)) {
      char ptr[32];
      std::snprintf(ptr, sizeof ptr, "%p", segs[i].ptr);
      *error = "segment " + std::to_string(i) + " (ptr " + ptr + ", " +
               std::to_string(segs[i].len) +
               " bytes): direct I/O needs a non-null pointer aligned to 4096 bytes and a length "
               "that is a non-zero multiple of 4096";
      return SPILLWAY_ERR_INVALID_VALUE;
    }
    *total += segs[i].len;
  }
  return SPILLWAY_OK;
}

}  // namespace

struct NvmeStore::Ring : UringHolder {};

// One write or read: the requests (pieces of segments within extents, at most request_bytes
// each, in stream order) and the checksum walk over the stream.
class NvmeStore::Transfer {
 public:
  struct Piece {
    char* mem;
    std::uint64_t off;  // file offset
    std::uint32_t len;
    std::uint64_t stream_end;  // offset in the slot just past this piece
  };

  Transfer(bool is_write, Slot slot_id, const std::vector<Extent>& ext, const NvmeSegment* segs,
           std::size_t /*n*/, std::uint64_t total, std::size_t request_bytes,
           std::vector<std::uint32_t>* crcs)
      : write(is_write), slot(slot_id), segs_(segs), total_(total), crcs_(crcs) {
    std::size_t si = 0, ei = 0;
    std::uint64_t so = 0, eo = 0, pos = 0;  // offsets within segment / extent (bytes)
    while (pos < total) {
      std::uint64_t ext_left = ext[ei].count * kNvmeUnit - eo;
      std::uint64_t len = std::min<std::uint64_t>({segs[si].len - so, ext_left, request_bytes});
      pos += len;
      pieces.push_back({static_cast<char*>(segs[si].ptr) + so, ext[ei].unit * kNvmeUnit + eo,
                        static_cast<std::uint32_t>(len), pos});
      so += len;
      eo += len;
      if (so == segs[si].len) ++si, so = 0;
      if (eo == ext[ei].count * kNvmeUnit) ++ei, eo = 0;
    }
    if (crcs_ != nullptr && write) crcs_->clear();
  }

  // Checksums the stream up to `end`: a write records one CRC per chunk, a read compares and
  // keeps the first mismatch.
  void crc_through(std::uint64_t end) {
    if (crcs_ == nullptr) return;
    while (pos_ < end) {
      std::uint64_t chunk_end = std::min(total_, (chunk_ + 1) * kNvmeCrcChunk);
      std::uint64_t take = std::min({segs_[si_].len - so_, chunk_end - pos_, end - pos_});
      crc_ = Crc32c(static_cast<char*>(segs_[si_].ptr) + so_, take, crc_);
      pos_ += take;
      so_ += take;
      if (so_ == segs_[si_].len) ++si_, so_ = 0;
      if (pos_ != chunk_end) continue;
      if (write) {
        crcs_->push_back(crc_);
      } else if (!mismatch && (chunk_ >= crcs_->size() || (*crcs_)[chunk_] != crc_)) {
        mismatch = true;
        mismatch_offset = chunk_ * kNvmeCrcChunk;
        mismatch_len = chunk_end - mismatch_offset;
        expected = chunk_ < crcs_->size() ? (*crcs_)[chunk_] : 0;
        actual = crc_;
      }
      crc_ = 0;
      ++chunk_;
    }
  }

  const bool write;
  const Slot slot;  // 0 while writing (no name yet)
  std::vector<Piece> pieces;
  bool mismatch = false;
  std::uint64_t mismatch_offset = 0, mismatch_len = 0;
  std::uint32_t expected = 0, actual = 0;

 private:
  const NvmeSegment* segs_;
  std::uint64_t total_;
  std::vector<std::uint32_t>* crcs_;
  std::size_t si_ = 0;
  std::uint64_t so_ = 0, pos_ = 0, chunk_ = 0;
  std::uint32_t crc_ = 0;
};

bool NvmeStore::Fault::take(int* err_out) {
  int c = count.load();
  while (c > 0 && !count.compare_exchange_weak(c, c - 1)) {
  }
  if (c <= 0) return false;
  *err_out = err.load();
  return true;
}

std::unique_ptr<NvmeStore> NvmeStore::Open(const NvmeOptions& opt, std::string* error) {
  std::string scratch;
  if (error == nullptr) error = &scratch;
  if (opt.dir.empty()) {
    *error = "SPILLWAY_NVME_PATH is empty: it must name a directory on the disk";
    return nullptr;
  }
  if (opt.queue_depth == 0 || opt.queue_depth > kMaxQueueDepth) {
    *error = "NVMe queue depth " + std::to_string(opt.queue_depth) + ": expected 1.." +
             std::to_string(kMaxQueueDepth);
    return nullptr;
  }
  if (opt.request_bytes == 0 || !Aligned(opt.request_bytes) ||
      opt.request_bytes > kMaxRequestBytes) {
    *error = "NVMe request size " + std::to_string(opt.request_bytes) +
             " bytes: expected a multiple of 4096 up to 64 MiB";
    return nullptr;
  }
  if (opt.limit != 0 && opt.limit < kNvmeUnit) {
    *error = "SPILLWAY_NVME_LIMIT " + std::to_string(opt.limit) +
             " bytes: less than one 2 MiB unit (0 means no limit)";
    return nullptr;
  }
  Backing b;
  if (!OpenBacking(opt.dir, &b, error)) return nullptr;
  std::unique_ptr<NvmeStore> s(new NvmeStore());
  s->opt_ = opt;
  s->owner_pid_ = ::getpid();
  s->fd_ = b.fd;
  s->tmpfile_ = b.tmpfile;
  s->unlinked_name_ = b.unlinked_name;
  s->ring_ = std::make_unique<Ring>();
  if (!InitRing(&s->ring_->ring, opt.queue_depth, error)) return nullptr;
  s->ring_->ready = true;

  // One 4 KiB write and read through the ring: direct I/O really works here.
  AlignedBuffer out(kNvmeAlign), in(kNvmeAlign);
  if (out.p == nullptr || in.p == nullptr) {
    *error = "out of host memory for the direct I/O check";
    return nullptr;
  }
  std::memset(out.p, 0x5A, kNvmeAlign);
  std::memset(in.p, 0, kNvmeAlign);
  std::vector<Extent> first{{0, 1}};
  NvmeSegment wseg{out.p, kNvmeAlign}, rseg{in.p, kNvmeAlign};
  Transfer w(true, 0, first, &wseg, 1, kNvmeAlign, kNvmeAlign, nullptr);
  Transfer r(false, 0, first, &rseg, 1, kNvmeAlign, kNvmeAlign, nullptr);
  std::string why;
  if (s->run(w, &why) != SPILLWAY_OK || s->run(r, &why) != SPILLWAY_OK) {
    *error = "SPILLWAY_NVME_PATH '" + opt.dir + "': direct I/O check failed: " + why;
    return nullptr;
  }
  if (std::memcmp(out.p, in.p, kNvmeAlign) != 0) {
    *error = "SPILLWAY_NVME_PATH '" + opt.dir + "': direct I/O check read back other bytes";
    return nullptr;
  }
  if (::ftruncate(s->fd_, 0) != 0) {
    *error = "SPILLWAY_NVME_PATH '" + opt.dir + "': ftruncate of the backing file: " + Errno(errno);
    return nullptr;
  }
  return s;
}

NvmeStore::~NvmeStore() {
  ring_.reset();
  if (fd_ >= 0) ::close(fd_);
}

std::string NvmeStore::file_desc() const {
  return tmpfile_ ? "the O_TMPFILE backing file in " + opt_.dir
                  : "the unlinked backing file " + unlinked_name_;
}

bool NvmeStore::forked(std::string* error) const {
  if (::getpid() == owner_pid_) return false;
  *error = "the NVMe store was opened by process " + std::to_string(owner_pid_) +
           "; a forked child (process " + std::to_string(::getpid()) + ") cannot use it";
  return true;
}

spillway_status NvmeStore::allocate(std::uint64_t units, std::vector<Extent>* out,
                                    std::string* error) {
  std::lock_guard<std::mutex> lock(space_mu_);
  if (opt_.limit != 0 && (used_units_ + units) * kNvmeUnit > opt_.limit) {
    *error = "SPILLWAY_NVME_LIMIT of " + Bytes(opt_.limit) +
             " reached: " + Bytes(used_units_ * kNvmeUnit) + " in use, " +
             Bytes(units * kNvmeUnit) + " more requested";
    return SPILLWAY_ERR_OUT_OF_MEMORY;
  }
  out->clear();
  std::uint64_t need = units;
  for (auto it = free_.begin(); it != free_.end() && need > 0;) {  // first fit, lowest first
    std::uint64_t take = std::min(need, it->second);
    out->push_back({it->first, take});
    need -= take;
    if (take == it->second) {
      it = free_.erase(it);
    } else {
      std::uint64_t start = it->first + take, left = it->second - take;
      free_.erase(it);
      free_.emplace(start, left);
      break;
    }
  }
  if (need > 0) {  // grow the file by what free space lacks
    std::uint64_t old_bytes = file_units_ * kNvmeUnit, grow = need * kNvmeUnit;
    int rc = sparse_growth_
                 ? -1
                 : ::fallocate(fd_, 0, static_cast<off_t>(old_bytes), static_cast<off_t>(grow));
    int e = rc == 0 ? 0 : errno;
    if (rc != 0 && (sparse_growth_ || e == EOPNOTSUPP)) {
      sparse_growth_ = true;  // reported by info()
      rc = ::ftruncate(fd_, static_cast<off_t>(old_bytes + grow));
      e = rc == 0 ? 0 : errno;
    }
    if (rc != 0) {
      if (::ftruncate(fd_, static_cast<off_t>(old_bytes)) != 0) {
        // The file keeps some of the failed growth; it is reused by the next growth.
      }
      for (const Extent& x : *out) free_.emplace(x.unit, x.count);
      out->clear();
      *error = std::string(e == ENOSPC || e == EDQUOT ? "disk full: " : "") + "growing " +
               file_desc() + " from " + std::to_string(old_bytes) + " to " +
               std::to_string(old_bytes + grow) + " bytes failed: " + Errno(e);
      return SPILLWAY_ERR_IO;
    }
    if (!out->empty() && out->back().unit + out->back().count == file_units_)
      out->back().count += need;
    else
      out->push_back({file_units_, need});
    file_units_ += need;
  }
  used_units_ += units;
  return SPILLWAY_OK;
}

void NvmeStore::free_extents(const std::vector<Extent>& ext) {
  for (const Extent& x : ext) {
    std::uint64_t start = x.unit, count = x.count;
    auto next = free_.lower_bound(start);
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == start) {
        start = prev->first;
        count += prev->second;
        free_.erase(prev);
      }
    }
    if (next != free_.end() && start + count == next->first) {
      count += next->second;
      free_.erase(next);
    }
    free_.emplace(start, count);
    used_units_ -= x.count;
  }
}

spillway_status NvmeStore::run(Transfer& t, std::string* error) {
  if (!ring_broken_.empty()) {
    *error = "the NVMe store's io_uring failed earlier: " + ring_broken_;
    return SPILLWAY_ERR_IO;
  }
  io_uring* ring = &ring_->ring;
  struct Req {
    std::size_t piece;
    char* mem;
    std::uint64_t off;
    std::uint32_t len;
    int retries;
    int injected;  // errno to report instead of doing the request (test hook); 0 = real
  };
  const unsigned depth = opt_.queue_depth;
  std::vector<Req> reqs(depth);
  std::vector<unsigned> idle(depth);
  for (unsigned i = 0; i < depth; ++i) idle[i] = depth - 1 - i;
  std::deque<unsigned> again;  // requests to continue (short transfer) or retry
  std::vector<char> done(t.pieces.size(), 0);
  std::size_t next = 0, done_prefix = 0;
  unsigned inflight = 0;
  Fault& fault = t.write ? write_faults_ : read_faults_;
  struct {
    bool set = false;
    int err = 0;
    Req req{};
    const char* what = "";
  } fail;

  for (;;) {
    while (!fail.set && inflight < depth) {
      unsigned id;
      if (!again.empty()) {
        id = again.front();
        again.pop_front();
      } else if (next < t.pieces.size()) {
        const Transfer::Piece& p = t.pieces[next];
        if (t.write) t.crc_through(p.stream_end);  // overlaps the requests in flight
        id = idle.back();
        idle.pop_back();
        reqs[id] = {next, p.mem, p.off, p.len, 0, 0};
        fault.take(&reqs[id].injected);
        ++next;
      } else {
        break;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(ring);  // never null: at most `depth` queued
      const Req& r = reqs[id];
      if (r.injected != 0)
        io_uring_prep_nop(sqe);
      else if (t.write)
        io_uring_prep_write(sqe, fd_, r.mem, r.len, r.off);
      else
        io_uring_prep_read(sqe, fd_, r.mem, r.len, r.off);
      io_uring_sqe_set_data64(sqe, id);
      ++inflight;
    }
    if (inflight == 0) break;
    if (int rc = SubmitAndWait(ring); rc < 0) {
      // The kernel may still hold requests into the caller's memory: this ring is not used again.
      std::lock_guard<std::mutex> lock(space_mu_);  // info() reads it under space_mu_
      ring_broken_ = "io_uring_submit_and_wait: " + Errno(-rc);
      *error = "the NVMe store's " + ring_broken_;
      return SPILLWAY_ERR_IO;
    }
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++seen;
      --inflight;
      unsigned id = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
      Req& r = reqs[id];
      int res = r.injected != 0 ? -r.injected : cqe->res;
      if (res == static_cast<int>(r.len)) {
        done[r.piece] = 1;
        idle.push_back(id);
        if (!t.write) {
          while (done_prefix < done.size() && done[done_prefix]) ++done_prefix;
          if (done_prefix > 0) t.crc_through(t.pieces[done_prefix - 1].stream_end);
        }
        continue;
      }
      std::uint32_t progress = res > 0 ? static_cast<std::uint32_t>(res) & ~(kNvmeAlign - 1) : 0;
      bool transient = res == -EINTR || res == -EAGAIN || res >= 0;
      if (r.injected == 0 && transient && (progress > 0 || r.retries < kMaxRetries)) {
        r.retries = progress > 0 ? 0 : r.retries + 1;
        r.mem += progress;  // short transfer: continue from the last whole 4 KiB block
        r.off += progress;
        r.len -= progress;
        again.push_back(id);
        continue;
      }
      idle.push_back(id);
      if (!fail.set) {
        fail.set = true;
        fail.req = r;
        fail.err = res < 0 ? -res : 0;
        fail.what = res < 0 ? "" : "made no progress";
      }
    }
    io_uring_cq_advance(ring, seen);
  }

  if (fail.set) {
    const Req& r = fail.req;
    std::string op = t.write ? "write" : "read";
    std::string where = " of " + std::to_string(r.len) + " bytes at offset " +
                        std::to_string(r.off) + " of " + file_desc();
    std::string tail = r.injected != 0 ? " (injected for test)" : "";
    if (fail.err == 0)
      *error = op + where + " made no progress after " + std::to_string(kMaxRetries) + " tries";
    else if (fail.err == ENOSPC || fail.err == EDQUOT)
      *error = "disk full: " + op + where + " failed: " + Errno(fail.err) + tail;
    else
      *error = "I/O error: " + op + where + " failed: " + Errno(fail.err) + Hint(fail.err) + tail;
    return SPILLWAY_ERR_IO;
  }
  if (t.mismatch) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " (stored CRC32C 0x%08x, read 0x%08x)", t.expected, t.actual);
    *error = "checksum mismatch in slot " + std::to_string(t.slot) + " at byte offset " +
             std::to_string(t.mismatch_offset) + ": the " + std::to_string(t.mismatch_len) +
             " bytes from there read back differently from what was written" + buf + " in " +
             file_desc();
    return SPILLWAY_ERR_IO;
  }
  return SPILLWAY_OK;
}

spillway_status NvmeStore::write(const NvmeSegment* segs, std::size_t n, Slot* slot,
                                 std::string* error) {
  std::string scratch;
  if (error == nullptr) error = &scratch;
  if (slot == nullptr) {
    *error = "NvmeStore::write: slot is null";
    return SPILLWAY_ERR_INVALID_VALUE;
  }
  if (forked(error)) return SPILLWAY_ERR_IO;
  std::uint64_t total = 0;
  if (spillway_status st = CheckSegments(segs, n, &total, error); st != SPILLWAY_OK) return st;
  auto rec = std::make_shared<SlotRec>();
  rec->bytes = total;
  rec->units = (total + kNvmeUnit - 1) / kNvmeUnit;
  if (spillway_status st = allocate(rec->units, &rec->extents, error); st != SPILLWAY_OK) return st;
  Transfer t(true, 0, rec->extents, segs, n, total, opt_.request_bytes,
             opt_.verify ? &rec->crcs : nullptr);
  spillway_status st;
  {
    std::lock_guard<std::mutex> io(io_mu_);
    st = run(t, error);
  }
  std::lock_guard<std::mutex> lock(space_mu_);
  if (st != SPILLWAY_OK) {
    free_extents(rec->extents);
    return st;
  }
  *slot = next_slot_++;
  slots_.emplace(*slot, std::move(rec));
  return SPILLWAY_OK;
}

spillway_status NvmeStore::read(Slot slot, const NvmeSegment* segs, std::size_t n,
                                std::string* error) {
  std::string scratch;
  if (error == nullptr) error = &scratch;
  if (forked(error)) return SPILLWAY_ERR_IO;
  std::uint64_t total = 0;
  if (spillway_status st = CheckSegments(segs, n, &total, error); st != SPILLWAY_OK) return st;
  std::shared_ptr<SlotRec> rec;
  {
    std::lock_guard<std::mutex> lock(space_mu_);
    auto it = slots_.find(slot);
    if (it == slots_.end()) {
      *error = "NvmeStore::read: unknown slot " + std::to_string(slot);
      return SPILLWAY_ERR_INVALID_VALUE;
    }
    if (it->second->bytes != total) {
      *error = "NvmeStore::read: slot " + std::to_string(slot) + " holds " +
               std::to_string(it->second->bytes) + " bytes, the segments " + std::to_string(total);
      return SPILLWAY_ERR_INVALID_VALUE;
    }
    rec = it->second;
    ++rec->readers;
  }
  Transfer t(false, slot, rec->extents, segs, n, total, opt_.request_bytes,
             opt_.verify ? &rec->crcs : nullptr);
  spillway_status st;
  {
    std::lock_guard<std::mutex> io(io_mu_);
    st = run(t, error);
  }
  std::lock_guard<std::mutex> lock(space_mu_);
  if (--rec->readers == 0 && rec->released) free_extents(rec->extents);
  return st;
}

bool NvmeStore::release(Slot slot) {
  std::lock_guard<std::mutex> lock(space_mu_);
  auto it = slots_.find(slot);
  if (it == slots_.end()) return false;
  std::shared_ptr<SlotRec> rec = std::move(it->second);
  slots_.erase(it);
  if (rec->readers > 0)
    rec->released = true;  // the last reader gives the space back
  else
    free_extents(rec->extents);
  return true;
}

std::uint64_t NvmeStore::used_bytes() const {
  std::lock_guard<std::mutex> lock(space_mu_);
  return used_units_ * kNvmeUnit;
}

std::uint64_t NvmeStore::file_bytes() const {
  std::lock_guard<std::mutex> lock(space_mu_);
  return file_units_ * kNvmeUnit;
}

std::uint64_t NvmeStore::limit() const {
  return opt_.limit;
}

std::string NvmeStore::info() const {
  std::lock_guard<std::mutex> lock(space_mu_);
  std::string s =
      "nvme store: " + (tmpfile_ ? opt_.dir + " (O_TMPFILE backing file)"
                                 : unlinked_name_ + " (created and unlinked: no O_TMPFILE here)");
  s += ", limit " + (opt_.limit ? Bytes(opt_.limit) : std::string("none (disk free space)"));
  s += ", verify " + std::string(opt_.verify ? "on (CRC32C" : "off");
  if (opt_.verify) s += Crc32cUsesSse42() ? ", SSE4.2)" : ", table)";
  s += ", queue depth " + std::to_string(opt_.queue_depth) + ", requests of " +
       Bytes(opt_.request_bytes) + ", file " + Bytes(file_units_ * kNvmeUnit) + ", in use " +
       Bytes(used_units_ * kNvmeUnit);
  if (sparse_growth_) s += ", fallocate unsupported (file grows sparse)";
  if (!ring_broken_.empty()) s += ", io_uring failed: " + ring_broken_;
  return s;
}

void NvmeStore::inject_write_errors(int n, int err) {
  write_faults_.err = err;
  write_faults_.count = n;
}

void NvmeStore::inject_read_errors(int n, int err) {
  read_faults_.err = err;
  read_faults_.count = n;
}

bool NvmeStore::corrupt_for_test(Slot slot, std::uint64_t byte_offset) {
  std::uint64_t file_off = 0;
  {
    std::lock_guard<std::mutex> lock(space_mu_);
    auto it = slots_.find(slot);
    if (it == slots_.end() || byte_offset >= it->second->bytes) return false;
    std::uint64_t left = byte_offset;
    for (const Extent& x : it->second->extents) {
      if (left < x.count * kNvmeUnit) {
        file_off = x.unit * kNvmeUnit + left;
        break;
      }
      left -= x.count * kNvmeUnit;
    }
  }
  std::lock_guard<std::mutex> io(io_mu_);
  AlignedBuffer block(kNvmeAlign);
  if (block.p == nullptr) return false;
  off_t at = static_cast<off_t>(file_off & ~std::uint64_t{kNvmeAlign - 1});
  if (::pread(fd_, block.p, kNvmeAlign, at) != static_cast<ssize_t>(kNvmeAlign)) return false;
  static_cast<unsigned char*>(block.p)[file_off - at] ^= 0xFF;
  return ::pwrite(fd_, block.p, kNvmeAlign, at) == static_cast<ssize_t>(kNvmeAlign);
}

// ---- raw throughput anchor --------------------------------------------------------------------

namespace {

// Writes or reads [0, bytes) of fd with up to `depth` requests of `req` bytes in flight, each
// with its own part of buf. Returns seconds, or -1 with *error.
double RawPass(io_uring* ring, int fd, bool write, char* buf, std::uint64_t bytes, unsigned depth,
               std::size_t req, std::string* error) {
  struct R {
    std::uint64_t off;
    std::uint32_t len, done;
  };
  std::vector<R> rs(depth);
  std::vector<unsigned> idle, again;
  for (unsigned i = 0; i < depth; ++i) idle.push_back(i);
  std::uint64_t next = 0;
  unsigned inflight = 0;
  int err = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto prep = [&](unsigned id) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    char* mem = buf + std::size_t{id} * req + rs[id].done;
    if (write)
      io_uring_prep_write(sqe, fd, mem, rs[id].len - rs[id].done, rs[id].off + rs[id].done);
    else
      io_uring_prep_read(sqe, fd, mem, rs[id].len - rs[id].done, rs[id].off + rs[id].done);
    io_uring_sqe_set_data64(sqe, id);
    ++inflight;
  };
  for (;;) {
    while (err == 0 && !again.empty()) {
      prep(again.back());
      again.pop_back();
    }
    while (err == 0 && !idle.empty() && next < bytes) {
      unsigned id = idle.back();
      idle.pop_back();
      rs[id] = {next, static_cast<std::uint32_t>(std::min<std::uint64_t>(req, bytes - next)), 0};
      next += rs[id].len;
      prep(id);
    }
    if (inflight == 0) break;
    if (int rc = SubmitAndWait(ring); rc < 0) {
      *error = "io_uring_submit_and_wait: " + Errno(-rc);
      return -1;
    }
    io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe) {
      ++seen;
      --inflight;
      unsigned id = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
      R& r = rs[id];
      if (cqe->res <= 0 ||
          (cqe->res % kNvmeAlign != 0 && r.done + static_cast<std::uint32_t>(cqe->res) != r.len)) {
        if (err == 0) {
          err = cqe->res < 0 ? -cqe->res : EIO;
          *error = std::string(write ? "write" : "read") + " at offset " +
                   std::to_string(r.off + r.done) + ": " +
                   (cqe->res < 0 ? Errno(-cqe->res) : "short transfer");
        }
        continue;
      }
      r.done += static_cast<std::uint32_t>(cqe->res);
      (r.done == r.len ? idle : again).push_back(id);
    }
    io_uring_cq_advance(ring, seen);
  }
  if (err != 0) return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

bool RawIoThroughput(const std::string& dir, std::uint64_t bytes, unsigned queue_depth,
                     std::size_t request_bytes, double* write_gbps, double* read_gbps,
                     std::string* error) {
  std::string scratch;
  if (error == nullptr) error = &scratch;
  if (bytes == 0 || !Aligned(bytes) || queue_depth == 0 || queue_depth > kMaxQueueDepth ||
      request_bytes == 0 || !Aligned(request_bytes) || request_bytes > kMaxRequestBytes) {
    *error =
        "RawIoThroughput: bytes and request size must be non-zero multiples of 4096 "
        "(request up to 64 MiB), queue depth 1..4096";
    return false;
  }
  Backing b;
  if (!OpenBacking(dir, &b, error)) return false;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{b.fd};
  if (::fallocate(b.fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
    *error = std::string(errno == ENOSPC ? "disk full: " : "") + "fallocate of " +
             std::to_string(bytes) + " bytes in " + dir + ": " + Errno(errno);
    return false;
  }
  UringHolder ring;
  if (!InitRing(&ring.ring, queue_depth, error)) return false;
  ring.ready = true;
  AlignedBuffer buf(std::size_t{queue_depth} * request_bytes);
  if (buf.p == nullptr) {
    *error = "RawIoThroughput: out of host memory for the buffers";
    return false;
  }
  auto* p = static_cast<unsigned char*>(buf.p);
  for (std::size_t i = 0; i < std::size_t{queue_depth} * request_bytes; ++i)
    p[i] = static_cast<unsigned char>(i * 131 + (i >> 12));
  double w = RawPass(&ring.ring, b.fd, true, static_cast<char*>(buf.p), bytes, queue_depth,
                     request_bytes, error);
  if (w < 0) return false;
  double r = RawPass(&ring.ring, b.fd, false, static_cast<char*>(buf.p), bytes, queue_depth,
                     request_bytes, error);
  if (r < 0) return false;
  if (write_gbps) *write_gbps = static_cast<double>(bytes) / w / 1e9;
  if (read_gbps) *read_gbps = static_cast<double>(bytes) / r / 1e9;
  return true;
}

}  // namespace spillway::offload
