// block_index.h — the live blocks the tracker looks kernel arguments up in: fed by the allocator
// (add at allocation, remove at free), asked for every 8-byte word of every launch's arguments
// ("is this an address inside a live block?", interior pointers included), and the per-block
// access bookkeeping (first and last access, count, streams).
//
// Layout: one vector of {addr, end, Block*} sorted by address (blocks never overlap), searched
// with upper_bound after a range pre-check against [lowest addr, highest end) that rejects most
// non-pointer words (ints, sizes, floats) without a search. Addresses are unique process-wide,
// so one index serves every device.
//
// Thread safety: a reader-writer lock. Launches (any thread) take it shared once per launch and
// look up all of that launch's words under it; alloc/free take it exclusive (an O(live blocks)
// memmove at worst, small next to the allocator's own work). Recording an access under the
// shared lock writes only the Block's atomics (CAS min/max, fetch_add), so readers never
// serialize on each other. A Block* is valid only while the lock that found it is held.
// The lock is a pthread rwlock that prefers writers: std::shared_mutex (glibc's default
// rwlock) prefers readers, and threads launching back to back starved alloc/free in the
// threaded test. Shared holds must not nest (a waiting writer would deadlock them).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>

#include <pthread.h>
#include <vector>

namespace spillway::tracker {

// One access: when (CLOCK_MONOTONIC ns, the trace's clock), which tracked operation (global
// sequence number of launches, copies and sets), on which stream (the CUstream value).
struct Access {
  std::uint64_t t_ns = 0;
  std::uint64_t seq = 0;
  std::uint64_t stream = 0;
};

// A writer-preferring reader-writer lock (usable with std::shared_lock / std::unique_lock).
class RwLock {
 public:
  RwLock();
  ~RwLock() { pthread_rwlock_destroy(&l_); }
  RwLock(const RwLock&) = delete;
  RwLock& operator=(const RwLock&) = delete;
  void lock() { pthread_rwlock_wrlock(&l_); }
  void unlock() { pthread_rwlock_unlock(&l_); }
  void lock_shared() { pthread_rwlock_rdlock(&l_); }
  void unlock_shared() { pthread_rwlock_unlock(&l_); }

 private:
  pthread_rwlock_t l_;
};

inline constexpr int kMaxStreams = 4;  // distinct streams remembered per block
// Touches: a block reports at most one access per epoch of 32 tracked operations (launches,
// copies, sets), so that the event log holds each block's access pattern over an iteration
// (forward, backward, optimizer) at a bounded cost: a few records per block per iteration.
inline constexpr int kTouchEpochShift = 5;

// A plain copy of a block's bookkeeping.
struct BlockSummary {
  std::uint64_t addr = 0, size = 0;
  int device = -1;
  std::uint64_t count = 0;                  // accesses recorded
  std::uint64_t first_t_ns = 0, last_t_ns = 0;  // 0 when count == 0
  std::uint64_t first_seq = 0, last_seq = 0;    // 0 when count == 0
  std::uint32_t nstreams = 0;               // distinct streams remembered (<= kMaxStreams)
  bool more_streams = false;                // a further distinct stream was seen
  std::uint64_t streams[kMaxStreams] = {};
};

class Block {
 public:
  Block(std::uint64_t addr, std::uint64_t size, int device)
      : addr_(addr), size_(size), device_(device) {
    for (auto& s : streams_) s.store(kNoStream, std::memory_order_relaxed);
  }
  std::uint64_t addr() const { return addr_; }
  std::uint64_t size() const { return size_; }
  int device() const { return device_; }
  // Thread-safe (lock-free). True when `a` is the block's first access in its touch epoch
  // (a.seq >> kTouchEpochShift): the caller then reports a touch (BlockIndex::TouchSink).
  bool record(const Access& a);
  BlockSummary summary() const;

 private:
  static constexpr std::uint64_t kNoStream = ~std::uint64_t{0};  // never a CUstream value
  const std::uint64_t addr_, size_;
  const int device_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> first_t_{~std::uint64_t{0}}, last_t_{0};
  std::atomic<std::uint64_t> first_seq_{~std::uint64_t{0}}, last_seq_{0};
  std::atomic<std::uint64_t> streams_[kMaxStreams];
  std::atomic<bool> more_streams_{false};
  std::atomic<std::uint64_t> touch_epoch_{~std::uint64_t{0}};  // epoch of the last touch
};

class BlockIndex {
 public:
  // Called, under the index's shared lock, for a block's first access in each touch epoch.
  // Must not call back into the index. Set once, before any access is recorded.
  using TouchSink = void (*)(void* ctx, const Block& block, const Access& a);
  void set_touch_sink(TouchSink sink, void* ctx) {
    touch_ctx_ = ctx;
    touch_sink_.store(sink, std::memory_order_release);
  }

  // A live block [addr, addr + size). False (nothing changed) for size 0 or an overlap with a
  // live block.
  bool add(std::uint64_t addr, std::uint64_t size, int device);
  // Removes the block starting at `addr`; its bookkeeping, or nothing if there is none.
  std::optional<BlockSummary> remove(std::uint64_t addr);

  // The block holding `word` (any byte of it), or nullptr. The caller holds read_lock() (or is
  // the only thread using the index).
  Block* find(std::uint64_t word) const {
    if (word < lo_ || word >= hi_) return nullptr;  // cheap pre-check: outside every block
    return find_slow(word);
  }
  std::shared_lock<RwLock> read_lock() const { return std::shared_lock<RwLock>(mu_); }
  // Records `a` on a block found under read_lock() (still held), reporting a touch as
  // record() does.
  void record_on(Block& b, const Access& a) const {
    if (b.record(a))
      if (const TouchSink sink = touch_sink_.load(std::memory_order_acquire)) sink(touch_ctx_, b, a);
  }
  // Looks up each word under one shared lock and records `a` on every block hit (a block named
  // by several words of one launch is recorded once per word). Returns the number of hits.
  std::size_t record(const std::uint64_t* words, std::size_t n, const Access& a);

  std::size_t live() const;
  std::vector<BlockSummary> snapshot() const;  // every live block, by address

 private:
  struct Entry {
    std::uint64_t addr, end;
    std::unique_ptr<Block> block;
  };
  Block* find_slow(std::uint64_t word) const;
  void update_range();  // under the exclusive lock
  mutable RwLock mu_;
  std::vector<Entry> entries_;  // sorted by addr, non-overlapping
  std::uint64_t lo_ = 1, hi_ = 0;  // [lo_, hi_) covers every block; empty when hi_ <= lo_
  std::atomic<TouchSink> touch_sink_{nullptr};
  void* touch_ctx_ = nullptr;
};

}  // namespace spillway::tracker
