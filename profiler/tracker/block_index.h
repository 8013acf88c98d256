// block_index.h — the live blocks the tracker looks kernel arguments up in: fed by the allocator
// (add at allocation, remove at free), asked for the 8-byte words of every launch's arguments
// ("is this an address inside a live block?", interior pointers included), and the per-block
// access bookkeeping (first and last access, count, streams).
//
// Layout: a range pre-check against [lowest addr, highest end) rejects most non-pointer words
// (ints, sizes, floats) without a search; maybe_inside() does it without the lock. A word that
// is a block's start (a tensor's data pointer: the common case) is found in a hash table of
// starts with one probe. Any other word is searched in a two-level sorted array: leaves of at
// most kLeafCap {addr, end, Block*} entries, sorted and non-overlapping, and a directory of each
// leaf's first address (branchless binary searches of the directory, then of one leaf). An add
// or remove moves at most one leaf's entries (the flat array it replaces moved half the index:
// ~1.4 us per free+allocation pair at 2000 live blocks). Blocks come from a pool owned by the
// index (no allocation per add once warm). Addresses are unique process-wide, so one index
// serves every device.
//
// Thread safety: a reader-writer lock. Launches (any thread) take it shared once per launch and
// look up all of that launch's words under it; alloc/free take it exclusive. Recording an
// access under the shared lock takes only the Block's own spinlock, so readers never serialize
// on each other unless they record on the same block at once. A Block* is valid only while the
// lock that found it is held. The lock is a pthread rwlock that prefers writers:
// std::shared_mutex (glibc's default rwlock) prefers readers, and threads launching back to back
// starved alloc/free in the threaded test. Shared holds must not nest (a waiting writer would
// deadlock them).
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <vector>

namespace spillway::tracker {

// One access: when (CLOCK_MONOTONIC ns, the trace's clock), which tracked operation (global
// sequence number of launches, copies and sets), on which stream (the CUstream value).
struct Access {
  std::uint64_t t_ns = 0;
  std::uint64_t seq = 0;
  std::uint64_t stream = 0;
  // The operation reads and writes each byte it names at most once, in order (a streaming
  // kernel: KernelStreams; a copy or a set): such an operation can work on a block where it lies,
  // over the link, as well as anywhere (BlockSummary::streamed_only).
  bool streaming = false;
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
// Accesses of a block closer than this many tracked operations are one burst (a tensor used by
// consecutive kernels); the gap from the end of one burst to the start of the next is its period.
inline constexpr std::uint64_t kBurstGap = 64;

// A plain copy of a block's bookkeeping.
struct BlockSummary {
  std::uint64_t addr = 0, size = 0;
  int device = -1;
  std::uint64_t count = 0;                      // accesses recorded
  std::uint64_t first_t_ns = 0, last_t_ns = 0;  // 0 when count == 0
  std::uint64_t first_seq = 0, last_seq = 0;    // 0 when count == 0
  // Operations between the block's last two bursts of accesses (kBurstGap); 0 while it has had
  // one burst. For a block used once per iteration, the iteration's length: the pager predicts
  // its next use as last_seq + period.
  std::uint64_t period = 0;
  // The longest period seen (0 while it has had one burst): an iteration for an optimizer state
  // that foreach AdamW sweeps in several passes (its latest period is then the gap between two
  // passes), a micro-batch for a parameter that autocast casts at each one.
  std::uint64_t longest_period = 0;
  // Operations between the block's last two accesses (any gap; 0 while it has had one).
  std::uint64_t gap = 0;
  std::uint32_t nstreams = 0;                   // distinct streams remembered (<= kMaxStreams)
  bool more_streams = false;                    // a further distinct stream was seen
  // Every access so far was a streaming one (Access::streaming): e.g. an optimizer state, which
  // only a foreach optimizer's kernels and fills touch. False while the block has none.
  bool streamed_only = false;
  std::uint64_t streams[kMaxStreams] = {};
};

// A block's bookkeeping. record() takes a per-block spinlock (one atomic exchange; two threads
// rarely record on one block at once) and updates plain fields, instead of one atomic
// read-modify-write per field (count, first/last time and sequence number, touch epoch): what
// record() touches sits in the first cache line.
class alignas(64) Block {
 public:
  Block() = default;
  Block(std::uint64_t addr, std::uint64_t size, int device) { reset(addr, size, device); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  std::uint64_t addr() const { return addr_; }
  std::uint64_t size() const { return size_; }
  int device() const { return device_; }
  // Thread-safe. True when `a` is the block's first access in its touch epoch
  // (a.seq >> kTouchEpochShift): the caller then reports a touch (BlockIndex::TouchSink).
  bool record(const Access& a) { return record(a, 1); }
  // `n` accesses made by one operation (`n` words of one launch inside the block): the same
  // result as n calls of record(a).
  bool record(const Access& a, std::uint64_t n);
  bool record(const Access& a, std::uint64_t n, bool* away);
  BlockSummary summary() const;  // thread-safe
  // The pager's mark: the block is not (wholly) on the device. An access to a block so marked
  // is noted for the calling thread (TakeAway), so that the tracker can have it brought back
  // before the operation runs.
  bool away() const { return away_.load(std::memory_order_relaxed) != 0; }
  void set_away(bool v) { away_.store(v ? 1 : 0, std::memory_order_relaxed); }

 private:
  friend class BlockIndex;
  // Not thread-safe: the block must not be reachable (BlockIndex: under its exclusive lock).
  void reset(std::uint64_t addr, std::uint64_t size, int device);
  // *away: the pager's mark, read under the block's lock (so that a pager that sets the mark and
  // then reads the count under the lock either sees this access or is seen by it).
  inline bool record_inline(const Access& a, std::uint64_t n, bool* away);  // block_index.cpp only
  void lock() const {
    if (lock_.exchange(1, std::memory_order_acquire) != 0) [[unlikely]]
      lock_slow();
  }
  void lock_slow() const;
  void unlock() const { lock_.store(0, std::memory_order_release); }
  static constexpr std::uint64_t kNoStream = ~std::uint64_t{0};  // never a CUstream value
  // First cache line: written by record(), under lock_.
  mutable std::atomic<std::uint8_t> lock_{0};
  std::atomic<std::uint8_t> away_{0};
  bool more_streams_ = false;  // a further distinct stream was seen
  bool nonstreaming_ = false;  // some access was not a streaming one (Access::streaming)
  std::uint64_t count_ = 0;
  std::uint64_t last_t_ = 0, last_seq_ = 0;
  std::uint64_t touch_epoch_ = ~std::uint64_t{0};  // epoch of the last touch
  std::uint64_t first_t_ = ~std::uint64_t{0}, first_seq_ = ~std::uint64_t{0};
  std::uint64_t period_ = 0;  // BlockSummary::period
  std::uint64_t longest_period_ = 0;  // BlockSummary::longest_period
  std::uint64_t gap_ = 0;     // BlockSummary::gap
  std::uint64_t streams_[kMaxStreams] = {kNoStream, kNoStream, kNoStream, kNoStream};
  // Written only when the block is not reachable (reset).
  std::uint64_t addr_ = 0, size_ = 0;
  int device_ = -1;
};

class BlockIndex {
 public:
  static constexpr std::uint32_t kLeafCap = 64;   // entries per leaf
  static constexpr std::size_t kMaxTouches = 64;  // touches handed to the sink at once

  BlockIndex();
  ~BlockIndex();
  BlockIndex(const BlockIndex&) = delete;
  BlockIndex& operator=(const BlockIndex&) = delete;

  // Called, under the index's shared lock, for a block's first access in each touch epoch.
  // Must not call back into the index. Set once, before any access is recorded.
  using TouchSink = void (*)(void* ctx, const Block& block, const Access& a);
  void set_touch_sink(TouchSink sink, void* ctx) {
    touch_ctx_ = ctx;
    touch_sink_.store(sink, std::memory_order_release);
  }
  // The same, for all the touches of one record() call at once (every block shares `a`): one
  // call per launch instead of one per touch, for a sink that can write them under one lock.
  // Used instead of the TouchSink when set. Blocks are valid during the call only.
  using TouchBatchSink = void (*)(void* ctx, const Block* const* blocks, std::size_t n,
                                  const Access& a);
  void set_touch_batch_sink(TouchBatchSink sink, void* ctx) {
    touch_ctx_ = ctx;
    touch_batch_sink_.store(sink, std::memory_order_release);
  }

  // A live block [addr, addr + size). False (nothing changed) for size 0 or an overlap with a
  // live block.
  bool add(std::uint64_t addr, std::uint64_t size, int device);
  // Removes the block starting at `addr`; its bookkeeping, or nothing if there is none.
  std::optional<BlockSummary> remove(std::uint64_t addr);

  // The block holding `word` (any byte of it), or nullptr. The caller holds read_lock() (or is
  // the only thread using the index).
  Block* find(std::uint64_t word) const {
    if (!maybe_inside(word)) return nullptr;  // cheap pre-check: outside every block
    return find_slow(word);
  }
  // Without the lock: false when `word` cannot be inside a live block (a block being added by
  // another thread meanwhile may be missed, as if the launch came first). find() decides.
  bool maybe_inside(std::uint64_t word) const {
    return word >= lo_.load(std::memory_order_relaxed) &&
           word < hi_.load(std::memory_order_relaxed);
  }
  // The range maybe_inside() checks, read once: [*lo, *hi) (empty when *hi <= *lo).
  void range(std::uint64_t* lo, std::uint64_t* hi) const {
    *lo = lo_.load(std::memory_order_relaxed);
    *hi = hi_.load(std::memory_order_relaxed);
  }
  std::shared_lock<RwLock> read_lock() const { return std::shared_lock<RwLock>(mu_); }
  // Records `a` on a block found under read_lock() (still held), reporting a touch as
  // record() does.
  void record_on(Block& b, const Access& a) const {
    bool away = false;
    const bool touch = b.record(a, 1, &away);
    if (away) [[unlikely]]
      NoteAway(b.addr());
    if (touch) {
      const Block* one = &b;
      report_touches(&one, 1, a);
    }
  }
  // Looks up each word under one shared lock and records `a` on every block hit (a block named
  // by several words of one launch counts once per word, in one update). Touches go to the sink
  // once for the call (TouchBatchSink) or once per block (TouchSink). Returns the number of
  // hits (words).
  std::size_t record(const std::uint64_t* words, std::size_t n, const Access& a);

  // Blocks marked away (Block::set_away) that this thread's recorded operations named since the
  // last call, moved to *out; false (cheaply) when there are none.
  static bool TakeAway(std::vector<std::uint64_t>* out);
  static void NoteAway(std::uint64_t addr);

  std::size_t live() const;
  std::vector<BlockSummary> snapshot() const;  // every live block, by address

 private:
  struct Entry {
    std::uint64_t addr, end;
    Block* block;
  };
  struct Leaf {
    std::uint32_t n = 0;
    Entry e[kLeafCap];
  };
  // Blocks by start address (open addressing, linear probing, load <= 1/2). Address 0 is not
  // kept (0 marks an empty slot): such a block is found by the search.
  struct StartSlot {
    std::uint64_t addr;
    Block* block;
  };
  Block* find_slow(std::uint64_t word) const;          // the search (exported: find() is inline)
  inline Block* search(std::uint64_t word) const;      // block_index.cpp only
  inline Block* find_start(std::uint64_t word) const;  // block_index.cpp only
  void report_touches(const Block* const* blocks, std::size_t n, const Access& a) const;
  // Under the exclusive lock.
  void update_range();
  Block* new_block(std::uint64_t addr, std::uint64_t size, int device);
  void free_block(Block* b);
  void insert_leaf(std::size_t at, std::unique_ptr<Leaf> leaf);
  void erase_leaf(std::size_t at);
  void start_insert(std::uint64_t addr, Block* b);
  void start_erase(std::uint64_t addr);

  mutable RwLock mu_;
  std::vector<std::unique_ptr<Leaf>> leaves_;  // sorted by address, none empty
  std::vector<std::uint64_t> firsts_;          // firsts_[i] == leaves_[i]->e[0].addr
  std::vector<StartSlot> starts_;              // power of two in size, or empty
  unsigned start_shift_ = 64;                  // 64 - log2(starts_.size())
  std::size_t live_ = 0;
  std::vector<std::unique_ptr<Block[]>> slabs_;  // the pool of Blocks
  std::vector<Block*> free_blocks_;
  // [lo_, hi_) covers every block; empty when hi_ <= lo_. Written under the exclusive lock.
  std::atomic<std::uint64_t> lo_{1}, hi_{0};
  std::atomic<TouchSink> touch_sink_{nullptr};
  std::atomic<TouchBatchSink> touch_batch_sink_{nullptr};
  void* touch_ctx_ = nullptr;
};

}  // namespace spillway::tracker
