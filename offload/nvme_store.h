// nvme_store.h — the NVMe tier's storage engine: one hidden O_DIRECT file on a disk, written and
// read through io_uring in 2 MiB units, with an optional CRC32C check of every stored byte.
//
// Thread safety: write, read and release may be called from any thread. One io_uring per store,
// used by one write or read at a time (a mutex around the ring: a disk is saturated by one
// queue of requests). Space (free extents, slots, file size) has its own mutex, so release,
// used_bytes and the space bookkeeping of other calls never wait behind a transfer. Releasing a
// slot while another thread reads it is allowed: its space is given back when the read ends.
// The segments' memory must not be freed (nor, for a write, changed) until the call returns.
// Destroy the store only when no call is in progress. A forked child cannot use its parent's
// store (the ring is the parent's): its calls fail with SPILLWAY_ERR_IO, saying so.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "spillway/spillway.h"

namespace spillway::offload {

// Direct I/O needs this alignment of memory addresses, lengths and file offsets.
inline constexpr std::size_t kNvmeAlign = 4096;
// Space in the file is managed in units of this many bytes.
inline constexpr std::uint64_t kNvmeUnit = std::uint64_t{2} << 20;
// With verify, one CRC32C covers this many bytes of a slot (a mismatch names the chunk's start).
inline constexpr std::uint64_t kNvmeCrcChunk = std::uint64_t{1} << 20;

struct NvmeSegment {
  void* ptr;        // 4096-aligned
  std::size_t len;  // a multiple of 4096, not 0
};

struct NvmeOptions {
  std::string dir;                      // SPILLWAY_NVME_PATH: a directory on the disk
  std::uint64_t limit = 0;              // SPILLWAY_NVME_LIMIT bytes; 0 = only the disk's space
  bool verify = false;                  // SPILLWAY_NVME_VERIFY=1: CRC32C checked on read
  unsigned queue_depth = 32;            // requests in flight (1..4096)
  std::size_t request_bytes = 1 << 20;  // bytes per request: a multiple of 4096, up to 64 MiB
};

class NvmeStore {
 public:
  using Slot = std::uint64_t;

  // Opens the backing file in opt.dir with O_DIRECT: O_TMPFILE, or where the filesystem lacks
  // it, a file created and unlinked at once (info() says which). Checks direct I/O with one
  // 4 KiB write and read. On error: nullptr, and *error names the path and the reason.
  static std::unique_ptr<NvmeStore> Open(const NvmeOptions& opt, std::string* error);
  ~NvmeStore();
  NvmeStore(const NvmeStore&) = delete;
  NvmeStore& operator=(const NvmeStore&) = delete;

  // Writes the segments one after another into free space of the file (first fit in 2 MiB
  // units, growing the file with fallocate when free space is short), with up to queue_depth
  // requests in flight; blocks until all are done. On success *slot names the stored bytes. On
  // failure nothing is kept: SPILLWAY_ERR_IO ("disk full: ..." for ENOSPC/EDQUOT, I/O errors),
  // SPILLWAY_ERR_OUT_OF_MEMORY ("SPILLWAY_NVME_LIMIT ... reached"), SPILLWAY_ERR_INVALID_VALUE
  // (misaligned or empty segments). Short transfers are continued, never taken as success.
  spillway_status write(const NvmeSegment* segs, std::size_t n, Slot* slot, std::string* error);
  // Reads a slot back into segments whose lengths add up to what was written (else
  // SPILLWAY_ERR_INVALID_VALUE). With verify, a CRC mismatch is SPILLWAY_ERR_IO "checksum
  // mismatch in slot S at byte offset O ...". The slot stays valid after a read.
  spillway_status read(Slot slot, const NvmeSegment* segs, std::size_t n, std::string* error);
  // Gives the slot's space back; false for an unknown (or already released) slot.
  bool release(Slot slot);

  std::uint64_t used_bytes() const;  // bytes held by live slots (whole 2 MiB units)
  std::uint64_t file_bytes() const;  // size of the backing file (never shrinks)
  std::uint64_t limit() const;
  std::string info() const;  // one line: path, O_TMPFILE or unlinked, limit, verify, queue depth

  // Test hooks: the next n write (read) requests complete with -err (EIO, ENOSPC, ...).
  void inject_write_errors(int n, int err);
  void inject_read_errors(int n, int err);
  // Test hook: flips one byte of the stored data of `slot` on disk (to test verify).
  bool corrupt_for_test(Slot slot, std::uint64_t byte_offset);

 private:
  struct Ring;  // the io_uring (nvme_store.cpp), kept out of this header
  struct Extent {
    std::uint64_t unit;   // first unit
    std::uint64_t count;  // units
  };
  struct SlotRec {
    std::vector<Extent> extents;
    std::uint64_t bytes = 0;
    std::uint64_t units = 0;
    std::vector<std::uint32_t> crcs;  // with verify: one per kNvmeCrcChunk bytes
    int readers = 0;                  // reads in progress
    bool released = false;            // released while read: freed by the last reader
  };
  struct Fault {
    std::atomic<int> count{0};
    std::atomic<int> err{0};
    bool take(int* err_out);
  };
  class Transfer;  // one write or read: its requests and checksums (nvme_store.cpp)

  NvmeStore() = default;
  spillway_status allocate(std::uint64_t units, std::vector<Extent>* out, std::string* error);
  void free_extents(const std::vector<Extent>& ext);     // space_mu_ held
  spillway_status run(Transfer& t, std::string* error);  // io_mu_ held
  std::string file_desc() const;
  bool forked(std::string* error) const;  // called in a child of the process that opened it

  NvmeOptions opt_;
  int owner_pid_ = 0;  // the process that opened the store
  int fd_ = -1;
  bool tmpfile_ = false;        // O_TMPFILE, else created and unlinked
  std::string unlinked_name_;   // the name the file had, when not O_TMPFILE
  bool sparse_growth_ = false;  // fallocate unsupported here: the file grows with ftruncate

  mutable std::mutex io_mu_;  // the ring: one transfer at a time
  std::unique_ptr<Ring> ring_;
  std::string ring_broken_;  // io_uring_submit failed hard: later calls fail (set under both)

  mutable std::mutex space_mu_;
  std::map<std::uint64_t, std::uint64_t> free_;  // first unit -> units, coalesced
  std::uint64_t file_units_ = 0;
  std::uint64_t used_units_ = 0;
  std::unordered_map<Slot, std::shared_ptr<SlotRec>> slots_;
  Slot next_slot_ = 1;

  Fault write_faults_;
  Fault read_faults_;
};

// Plain io_uring O_DIRECT throughput on a file in `dir` (no NvmeStore logic): writes then reads
// `bytes` with `queue_depth` requests of `request_bytes` in flight; GB/s (1e9 bytes/s) each way.
// The file is an O_TMPFILE (or unlinked) file, allocated with fallocate before timing.
bool RawIoThroughput(const std::string& dir, std::uint64_t bytes, unsigned queue_depth,
                     std::size_t request_bytes, double* write_gbps, double* read_gbps,
                     std::string* error);

}  // namespace spillway::offload
