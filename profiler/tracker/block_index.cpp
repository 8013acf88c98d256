// block_index.cpp — the live-block index of the tracker (see block_index.h).
//
// The launch path (record() and what it calls) uses inline and file-local functions only:
// libspillway is built -fPIC with default visibility, so a call to an exported function of the
// library goes through the PLT and cannot be inlined.
#include "profiler/tracker/block_index.h"

#include <sched.h>

#include <algorithm>
#include <mutex>

namespace spillway::tracker {

namespace {
constexpr std::size_t kSlabBlocks = 256;  // Blocks allocated at once for the pool
constexpr std::size_t kMaxDistinct = 32;  // distinct blocks gathered before recording

std::size_t StartHash(std::uint64_t addr, unsigned shift) {
  return static_cast<std::size_t>((addr * 0x9E3779B97F4A7C15ull) >> shift);
}
}  // namespace

RwLock::RwLock() {
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&l_, &a);
  pthread_rwlockattr_destroy(&a);
}

// ---- Block -------------------------------------------------------------------------------------

void Block::reset(std::uint64_t addr, std::uint64_t size, int device) {
  more_streams_ = false;
  nonstreaming_ = false;
  count_ = 0;
  last_t_ = last_seq_ = period_ = longest_period_ = gap_ = 0;
  touch_epoch_ = first_t_ = first_seq_ = ~std::uint64_t{0};
  for (auto& s : streams_) s = kNoStream;
  away_.store(0, std::memory_order_relaxed);
  addr_ = addr;
  size_ = size;
  device_ = device;
}

void Block::lock_slow() const {
  for (unsigned spins = 0; lock_.exchange(1, std::memory_order_acquire) != 0;) {
    while (lock_.load(std::memory_order_relaxed) != 0) {
      if (++spins % 256 == 0) {
        sched_yield();  // the holder may have been preempted: let it run
      } else {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      }
    }
  }
}

inline bool Block::record_inline(const Access& a, std::uint64_t n, bool* away) {
  const std::uint64_t epoch = a.seq >> kTouchEpochShift;
  lock();
  count_ += n;
  nonstreaming_ = nonstreaming_ || !a.streaming;
  const bool touch = touch_epoch_ != epoch;
  touch_epoch_ = epoch;
  last_t_ = std::max(last_t_, a.t_ns);
  if (last_seq_ != 0 && a.seq > last_seq_) {
    gap_ = a.seq - last_seq_;
    if (gap_ > kBurstGap) {
      period_ = gap_;
      longest_period_ = std::max(longest_period_, gap_);
    }
  }
  last_seq_ = std::max(last_seq_, a.seq);
  first_t_ = std::min(first_t_, a.t_ns);
  first_seq_ = std::min(first_seq_, a.seq);
  if (a.stream != kNoStream) {  // (never a stream: not remembered)
    int i = 0;
    while (i < kMaxStreams && streams_[i] != a.stream && streams_[i] != kNoStream) ++i;
    if (i == kMaxStreams) {
      more_streams_ = true;
    } else {
      streams_[i] = a.stream;
    }
  }
  *away = away_.load(std::memory_order_relaxed) != 0;
  unlock();
  return touch;
}

bool Block::record(const Access& a, std::uint64_t n) {
  bool away = false;
  return record_inline(a, n, &away);
}

bool Block::record(const Access& a, std::uint64_t n, bool* away) {
  return record_inline(a, n, away);
}

BlockSummary Block::summary() const {
  BlockSummary s;
  s.addr = addr_;
  s.size = size_;
  s.device = device_;
  lock();
  s.count = count_;
  if (s.count != 0) {
    s.first_t_ns = first_t_;
    s.last_t_ns = last_t_;
    s.first_seq = first_seq_;
    s.last_seq = last_seq_;
    s.period = period_;
    s.longest_period = longest_period_;
    s.gap = gap_;
    s.streamed_only = !nonstreaming_;
  }
  for (std::uint64_t v : streams_)
    if (v != kNoStream) s.streams[s.nstreams++] = v;
  s.more_streams = more_streams_;
  unlock();
  return s;
}

// ---- BlockIndex: lookups -----------------------------------------------------------------------

BlockIndex::BlockIndex() = default;
BlockIndex::~BlockIndex() = default;

inline Block* BlockIndex::find_start(std::uint64_t word) const {
  if (starts_.empty()) return nullptr;
  const std::size_t mask = starts_.size() - 1;
  for (std::size_t i = StartHash(word, start_shift_);; i = (i + 1) & mask) {
    const StartSlot& s = starts_[i];
    if (s.addr == word) return s.block;
    if (s.addr == 0) return nullptr;
  }
}

inline Block* BlockIndex::search(std::uint64_t word) const {
  // The last leaf starting at or before `word`, then its last entry starting at or before it:
  // the only candidate. Both searches are branchless (conditional moves): the words looked up
  // are unpredictable, and a mispredicted branch per step cost more than the loads.
  const std::size_t nleaves = firsts_.size();
  if (nleaves == 0 || word < firsts_[0]) return nullptr;
  const std::uint64_t* f = firsts_.data();
  for (std::size_t n = nleaves; n > 1;) {  // invariant: f[0] <= word
    const std::size_t half = n / 2;
    f = f[half] <= word ? f + half : f;
    n -= half;
  }
  const Leaf& l = *leaves_[static_cast<std::size_t>(f - firsts_.data())];
  const Entry* e = l.e;  // l.e[0].addr == *f <= word
  for (std::size_t n = l.n; n > 1;) {
    const std::size_t half = n / 2;
    e = e[half].addr <= word ? e + half : e;
    n -= half;
  }
  return word < e->end ? e->block : nullptr;
}

Block* BlockIndex::find_slow(std::uint64_t word) const {
  return search(word);
}

namespace {
thread_local std::vector<std::uint64_t> t_away;
}

void BlockIndex::NoteAway(std::uint64_t addr) {
  if (std::find(t_away.begin(), t_away.end(), addr) == t_away.end()) t_away.push_back(addr);
}

bool BlockIndex::TakeAway(std::vector<std::uint64_t>* out) {
  if (t_away.empty()) [[likely]]
    return false;
  out->swap(t_away);
  t_away.clear();
  return true;
}

void BlockIndex::report_touches(const Block* const* blocks, std::size_t n, const Access& a) const {
  if (n == 0) return;
  if (const TouchBatchSink batch = touch_batch_sink_.load(std::memory_order_acquire)) {
    batch(touch_ctx_, blocks, n, a);
  } else if (const TouchSink sink = touch_sink_.load(std::memory_order_acquire)) {
    for (std::size_t i = 0; i < n; ++i) sink(touch_ctx_, *blocks[i], a);
  }
}

std::size_t BlockIndex::record(const std::uint64_t* words, std::size_t n, const Access& a) {
  if (n == 0) return 0;
  struct Hit {
    Block* block;
    std::uint64_t n;
  };
  Hit hits[kMaxDistinct];
  const Block* touched[kMaxTouches];
  std::size_t nhits = 0, ntouched = 0, total = 0;
  std::shared_lock<RwLock> lk(mu_);
  // Records the gathered blocks (each once, with its number of words), collecting touches.
  auto flush = [&] {
    for (std::size_t i = 0; i < nhits; ++i) {
      bool away = false;
      const bool touch = hits[i].block->record_inline(a, hits[i].n, &away);
      if (away) [[unlikely]]
        NoteAway(hits[i].block->addr());
      if (!touch) continue;
      if (ntouched == kMaxTouches) {
        report_touches(touched, ntouched, a);
        ntouched = 0;
      }
      touched[ntouched++] = hits[i].block;
    }
    nhits = 0;
  };
  std::uint64_t lo = 0, hi = 0;
  range(&lo, &hi);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t w = words[i];
    if (w < lo || w >= hi) continue;
    Block* b = find_start(w);
    if (b == nullptr && (b = search(w)) == nullptr) continue;
    ++total;
    std::size_t j = 0;
    while (j < nhits && hits[j].block != b) ++j;
    if (j < nhits) {
      ++hits[j].n;
      continue;
    }
    if (nhits == kMaxDistinct) flush();
    hits[nhits++] = Hit{b, 1};
  }
  flush();
  report_touches(touched, ntouched, a);
  return total;
}

std::size_t BlockIndex::live() const {
  std::shared_lock<RwLock> lk(mu_);
  return live_;
}

std::vector<BlockSummary> BlockIndex::snapshot() const {
  std::shared_lock<RwLock> lk(mu_);
  std::vector<BlockSummary> r;
  r.reserve(live_);
  for (const auto& l : leaves_)
    for (std::uint32_t i = 0; i < l->n; ++i) r.push_back(l->e[i].block->summary());
  return r;
}

// ---- BlockIndex: changes (under the exclusive lock) --------------------------------------------

void BlockIndex::update_range() {
  if (leaves_.empty()) {
    lo_.store(1, std::memory_order_relaxed);
    hi_.store(0, std::memory_order_relaxed);
  } else {
    // Sorted and non-overlapping: the last block ends highest.
    const Leaf& last = *leaves_.back();
    lo_.store(firsts_.front(), std::memory_order_relaxed);
    hi_.store(last.e[last.n - 1].end, std::memory_order_relaxed);
  }
}

Block* BlockIndex::new_block(std::uint64_t addr, std::uint64_t size, int device) {
  if (free_blocks_.empty()) {
    slabs_.push_back(std::make_unique<Block[]>(kSlabBlocks));
    Block* slab = slabs_.back().get();
    for (std::size_t i = kSlabBlocks; i-- > 0;) free_blocks_.push_back(&slab[i]);
  }
  Block* b = free_blocks_.back();
  free_blocks_.pop_back();
  b->reset(addr, size, device);
  return b;
}

void BlockIndex::free_block(Block* b) {
  free_blocks_.push_back(b);
}

void BlockIndex::insert_leaf(std::size_t at, std::unique_ptr<Leaf> leaf) {
  firsts_.insert(firsts_.begin() + static_cast<std::ptrdiff_t>(at), leaf->e[0].addr);
  leaves_.insert(leaves_.begin() + static_cast<std::ptrdiff_t>(at), std::move(leaf));
}

void BlockIndex::erase_leaf(std::size_t at) {
  firsts_.erase(firsts_.begin() + static_cast<std::ptrdiff_t>(at));
  leaves_.erase(leaves_.begin() + static_cast<std::ptrdiff_t>(at));
}

void BlockIndex::start_insert(std::uint64_t addr, Block* b) {
  if (addr == 0) return;
  if (2 * (live_ + 1) > starts_.size()) {  // grow (and rehash) to keep the load <= 1/2
    std::vector<StartSlot> old = std::move(starts_);
    const std::size_t cap = std::max<std::size_t>(64, 2 * old.size());
    starts_.assign(cap, StartSlot{0, nullptr});
    start_shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(cap));
    for (const StartSlot& s : old)
      if (s.addr != 0) start_insert(s.addr, s.block);
  }
  std::size_t i = StartHash(addr, start_shift_);
  while (starts_[i].addr != 0) i = (i + 1) & (starts_.size() - 1);
  starts_[i] = StartSlot{addr, b};
}

void BlockIndex::start_erase(std::uint64_t addr) {
  if (addr == 0 || starts_.empty()) return;
  const std::size_t mask = starts_.size() - 1;
  std::size_t i = StartHash(addr, start_shift_);
  while (starts_[i].addr != addr) {
    if (starts_[i].addr == 0) return;
    i = (i + 1) & mask;
  }
  // Backward-shift deletion: move back every later entry of the run whose home slot is not
  // between the hole and it, so that no probe sequence meets an empty slot it should not.
  for (std::size_t j = (i + 1) & mask; starts_[j].addr != 0; j = (j + 1) & mask) {
    const std::size_t home = StartHash(starts_[j].addr, start_shift_);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      starts_[i] = starts_[j];
      i = j;
    }
  }
  starts_[i] = StartSlot{0, nullptr};
}

bool BlockIndex::add(std::uint64_t addr, std::uint64_t size, int device) {
  if (size == 0 || addr + size < addr) return false;
  const std::uint64_t end = addr + size;
  std::unique_lock<RwLock> lk(mu_);
  if (leaves_.empty()) {
    auto leaf = std::make_unique<Leaf>();
    leaf->e[0] = Entry{addr, end, new_block(addr, size, device)};
    leaf->n = 1;
    start_insert(addr, leaf->e[0].block);
    insert_leaf(0, std::move(leaf));
    ++live_;
    update_range();
    return true;
  }
  // The leaf to insert into: the last one starting at or before addr (the first if none does).
  std::size_t li = static_cast<std::size_t>(std::upper_bound(firsts_.begin(), firsts_.end(), addr) -
                                            firsts_.begin());
  if (li > 0) --li;
  Leaf* l = leaves_[li].get();
  std::size_t pos = static_cast<std::size_t>(
      std::lower_bound(l->e, l->e + l->n, addr,
                       [](const Entry& x, std::uint64_t v) { return x.addr < v; }) -
      l->e);
  const Entry* next = pos < l->n                ? &l->e[pos]
                      : li + 1 < leaves_.size() ? &leaves_[li + 1]->e[0]
                                                : nullptr;
  const Entry* prev = pos > 0  ? &l->e[pos - 1]
                      : li > 0 ? &leaves_[li - 1]->e[leaves_[li - 1]->n - 1]
                               : nullptr;
  if (next != nullptr && next->addr < end) return false;  // overlaps next
  if (prev != nullptr && prev->end > addr) return false;  // overlaps previous
  Block* b = new_block(addr, size, device);
  if (l->n == kLeafCap) {  // split in halves
    constexpr std::uint32_t kHalf = kLeafCap / 2;
    auto r = std::make_unique<Leaf>();
    std::copy(l->e + kHalf, l->e + kLeafCap, r->e);
    r->n = kLeafCap - kHalf;
    l->n = kHalf;
    insert_leaf(li + 1, std::move(r));
    if (pos > kHalf) {
      ++li;
      pos -= kHalf;
      l = leaves_[li].get();
    }
  }
  std::copy_backward(l->e + pos, l->e + l->n, l->e + l->n + 1);
  l->e[pos] = Entry{addr, end, b};
  ++l->n;
  if (pos == 0) firsts_[li] = addr;
  start_insert(addr, b);
  ++live_;
  update_range();
  return true;
}

std::optional<BlockSummary> BlockIndex::remove(std::uint64_t addr) {
  std::unique_lock<RwLock> lk(mu_);
  if (leaves_.empty() || addr < firsts_.front()) return std::nullopt;
  const std::size_t li = static_cast<std::size_t>(
      std::upper_bound(firsts_.begin(), firsts_.end(), addr) - firsts_.begin() - 1);
  Leaf& l = *leaves_[li];
  Entry* e = std::lower_bound(l.e, l.e + l.n, addr,
                              [](const Entry& x, std::uint64_t v) { return x.addr < v; });
  if (e == l.e + l.n || e->addr != addr) return std::nullopt;
  Block* b = e->block;
  const BlockSummary s = b->summary();  // exclusive: no reader can touch it now
  std::copy(e + 1, l.e + l.n, e);
  --l.n;
  if (l.n == 0) {
    erase_leaf(li);
  } else {
    firsts_[li] = l.e[0].addr;
    // Merge a small leaf with a neighbour so that leaves stay reasonably full.
    if (l.n < kLeafCap / 4) {
      if (li + 1 < leaves_.size() && l.n + leaves_[li + 1]->n <= kLeafCap / 2) {
        Leaf& r = *leaves_[li + 1];
        std::copy(r.e, r.e + r.n, l.e + l.n);
        l.n += r.n;
        erase_leaf(li + 1);
      } else if (li > 0 && leaves_[li - 1]->n + l.n <= kLeafCap / 2) {
        Leaf& p = *leaves_[li - 1];
        std::copy(l.e, l.e + l.n, p.e + p.n);
        p.n += l.n;
        erase_leaf(li);
      }
    }
  }
  start_erase(addr);
  --live_;
  free_block(b);
  update_range();
  return s;
}

}  // namespace spillway::tracker
