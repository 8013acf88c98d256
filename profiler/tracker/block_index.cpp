// block_index.cpp — the live-block index of the tracker (see block_index.h).
#include "profiler/tracker/block_index.h"

#include <algorithm>
#include <mutex>

namespace spillway::tracker {

namespace {
void AtomicMin(std::atomic<std::uint64_t>& a, std::uint64_t v) {
  std::uint64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}
void AtomicMax(std::atomic<std::uint64_t>& a, std::uint64_t v) {
  std::uint64_t cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}
}  // namespace

RwLock::RwLock() {
  pthread_rwlockattr_t a;
  pthread_rwlockattr_init(&a);
  pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&l_, &a);
  pthread_rwlockattr_destroy(&a);
}

bool Block::record(const Access& a) {
  count_.fetch_add(1, std::memory_order_relaxed);
  const std::uint64_t epoch = a.seq >> kTouchEpochShift;
  const bool touch = touch_epoch_.load(std::memory_order_relaxed) != epoch &&
                     touch_epoch_.exchange(epoch, std::memory_order_relaxed) != epoch;
  AtomicMin(first_t_, a.t_ns);
  AtomicMax(last_t_, a.t_ns);
  AtomicMin(first_seq_, a.seq);
  AtomicMax(last_seq_, a.seq);
  for (auto& slot : streams_) {
    std::uint64_t cur = slot.load(std::memory_order_relaxed);
    if (cur == a.stream) return touch;
    if (cur == kNoStream) {
      if (slot.compare_exchange_strong(cur, a.stream, std::memory_order_relaxed)) return touch;
      if (cur == a.stream) return touch;  // another thread put the same stream there
    }
  }
  if (a.stream != kNoStream) more_streams_.store(true, std::memory_order_relaxed);
  return touch;
}

BlockSummary Block::summary() const {
  BlockSummary s;
  s.addr = addr_;
  s.size = size_;
  s.device = device_;
  s.count = count_.load(std::memory_order_relaxed);
  if (s.count != 0) {
    s.first_t_ns = first_t_.load(std::memory_order_relaxed);
    s.last_t_ns = last_t_.load(std::memory_order_relaxed);
    s.first_seq = first_seq_.load(std::memory_order_relaxed);
    s.last_seq = last_seq_.load(std::memory_order_relaxed);
  }
  for (const auto& slot : streams_) {
    std::uint64_t v = slot.load(std::memory_order_relaxed);
    if (v != kNoStream) s.streams[s.nstreams++] = v;
  }
  s.more_streams = more_streams_.load(std::memory_order_relaxed);
  return s;
}

Block* BlockIndex::find_slow(std::uint64_t word) const {
  // First entry starting after `word`; the one before it is the only candidate.
  auto it = std::upper_bound(entries_.begin(), entries_.end(), word,
                             [](std::uint64_t w, const Entry& e) { return w < e.addr; });
  if (it == entries_.begin()) return nullptr;
  --it;
  return word < it->end ? it->block.get() : nullptr;
}

void BlockIndex::update_range() {
  if (entries_.empty()) {
    lo_ = 1;
    hi_ = 0;
  } else {
    lo_ = entries_.front().addr;
    hi_ = entries_.back().end;  // non-overlapping and sorted: the last block ends highest
  }
}

bool BlockIndex::add(std::uint64_t addr, std::uint64_t size, int device) {
  if (size == 0 || addr + size < addr) return false;
  const std::uint64_t end = addr + size;
  std::unique_lock<RwLock> lk(mu_);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), addr,
                             [](const Entry& e, std::uint64_t a) { return e.addr < a; });
  if (it != entries_.end() && it->addr < end) return false;                  // overlaps next
  if (it != entries_.begin() && std::prev(it)->end > addr) return false;     // overlaps previous
  entries_.insert(it, Entry{addr, end, std::make_unique<Block>(addr, size, device)});
  update_range();
  return true;
}

std::optional<BlockSummary> BlockIndex::remove(std::uint64_t addr) {
  std::unique_ptr<Block> b;
  {
    std::unique_lock<RwLock> lk(mu_);
    auto it = std::lower_bound(entries_.begin(), entries_.end(), addr,
                               [](const Entry& e, std::uint64_t a) { return e.addr < a; });
    if (it == entries_.end() || it->addr != addr) return std::nullopt;
    b = std::move(it->block);
    entries_.erase(it);
    update_range();
  }
  // No reader can hold it now: they find blocks only under the shared lock.
  return b->summary();
}

std::size_t BlockIndex::record(const std::uint64_t* words, std::size_t n, const Access& a) {
  std::size_t hits = 0;
  std::shared_lock<RwLock> lk(mu_);
  const TouchSink sink = touch_sink_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    if (Block* b = find(words[i])) {
      if (b->record(a) && sink != nullptr) sink(touch_ctx_, *b, a);
      ++hits;
    }
  }
  return hits;
}

std::size_t BlockIndex::live() const {
  std::shared_lock<RwLock> lk(mu_);
  return entries_.size();
}

std::vector<BlockSummary> BlockIndex::snapshot() const {
  std::shared_lock<RwLock> lk(mu_);
  std::vector<BlockSummary> r;
  r.reserve(entries_.size());
  for (const auto& e : entries_) r.push_back(e.block->summary());
  return r;
}

}  // namespace spillway::tracker
