// arena.cpp — allocation, free, slabs, quick bins, deferred frees and idle-page fences of one
// stream's arena (see arena.h for the model).
#include "allocator/arena.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cinttypes>
#include <cstdio>

#include "allocator/detail/slab.h"
#include "allocator/device_heap.h"
#include "allocator/error.h"
#include "profiler/trace_writer.h"

namespace spillway {

using detail::kMinAlign;
using detail::kSmallMax;
using detail::RoundUp;

Arena::Arena(DeviceHeap& heap, prim::Stream stream, bool sync, std::uintptr_t base,
             std::size_t size)
    : heap_(heap),
      backend_(heap.backend()),
      device_(heap.device()),
      stream_(stream),
      sync_(sync),
      base_(base),
      size_(size),
      gran_(heap.granularity()),
      page_shift_(std::countr_zero(heap.granularity())),
      span_pages_(heap.span_pages()),
      pages_(new Page[size / heap.granularity()]()) {
  free_.insert(base, size);
}

Arena::~Arena() {
  // Only the simulator's tests destroy heaps; the process-wide allocator is never destroyed
  // (the CUDA context may be gone at exit).
  for (std::size_t i = 0; i < size_ / gran_; ++i) {
    Page& pg = pages_[i];
    if (pg.slab != nullptr && static_cast<std::size_t>(page_of(pg.slab->base)) == i) delete pg.slab;
    if (pg.handle != 0 && pg.span) {  // one mapping and one handle for the whole group
      if (i % span_pages_ == 0) {
        backend_.unmap(base_ + i * gran_, gran_ * span_pages_);
        backend_.release(pg.handle);
      }
    } else if (pg.handle != 0) {
      backend_.unmap(base_ + i * gran_, gran_);
      if (!pg.host) backend_.release(pg.handle);  // host chunks belong to the pager's pool
    }
  }
  for (auto& f : fences_)
    for (auto e : f.events) backend_.event_destroy(e);
  for (auto& f : page_fences_) backend_.event_destroy(f.event);
  for (auto e : event_pool_) backend_.event_destroy(e);
  backend_.release_va(base_, size_);
}

std::string Arena::describe(std::uintptr_t p) const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR " (device %d, arena of stream %p)", p, device_,
                stream_);
  return buf;
}

// ---------------------------------------------------------------- allocation

spillway_status Arena::allocate(std::size_t n, void** out) {
  std::lock_guard<detail::SpinLock> lk(mu_);
  if (!pending_.empty()) poll_pending();
  return n <= kSmallMax ? alloc_small(n, out) : alloc_large(n, out);
}

spillway_status Arena::alloc_large(std::size_t n, void** out) {
  const std::size_t r = RoundUp(n, kMinAlign);
  std::uintptr_t a = 0;
  std::vector<Quick>* q = quick_.find(r);
  if (q != nullptr && !q->empty()) {
    a = q->back().p;
    q->pop_back();
    quick_bytes_ -= r;
  } else {
    spillway_status s = carve(r, kMinAlign, &a);
    if (s != SPILLWAY_OK) return s;
  }
  large_[a] = LargeBlock{r, n};
  heap_.stats().on_alloc(n);
  counters_.on_alloc(r - n);
  *out = reinterpret_cast<void*>(a);
  return SPILLWAY_OK;
}

spillway_status Arena::alloc_small(std::size_t n, void** out) {
  const int c = detail::SizeClass(n);
  Slab* s = partial_[c];
  if (s == nullptr) {
    std::uintptr_t a = 0;
    spillway_status st = carve(gran_, gran_, &a);
    if (st != SPILLWAY_OK) return st;
    const auto bs = static_cast<std::uint32_t>(detail::ClassSize(c));
    s = new Slab(a, bs, static_cast<std::uint32_t>(gran_ / bs), c);
    pages_[page_of(a)].slab = s;
    ++slab_count_[c];
    s->listed = true;
    partial_[c] = s;
  }
  const std::uint32_t i = s->free_idx.back();
  s->free_idx.pop_back();
  s->set(i);
  s->requested[i] = static_cast<std::uint32_t>(n);
  ++s->used;
  if (s->free_idx.empty()) {  // full: leave the partial list
    partial_[c] = s->next;
    if (s->next) s->next->prev = nullptr;
    s->next = s->prev = nullptr;
    s->listed = false;
  }
  heap_.stats().on_alloc(n);
  counters_.on_alloc(s->block_size - n);
  *out = reinterpret_cast<void*>(s->base + std::uintptr_t{i} * s->block_size);
  return SPILLWAY_OK;
}

spillway_status Arena::carve(std::size_t n, std::size_t align, std::uintptr_t* out) {
  // A miss in the quick bins: coalesce every cached block first, so best fit sees whole holes
  // and cached memory is reused before more is mapped (on the GPU-lag model this took the
  // bundled trace from 1.087 to 1.065).
  flush_quick();
  std::uintptr_t a = 0;
  // Among the few best fits, one already backed by memory avoids mapping (and growing).
  if (!free_.take_preferring(
          n, align, 16, [&](std::uintptr_t st) { return all_mapped(st, n); }, &a)) {
    heap_.stats().on_oom();
    return Fail(SPILLWAY_ERR_OUT_OF_MEMORY,
                "spillway: virtual address space of the arena exhausted for " + std::to_string(n) +
                    " bytes\n" + heap_.report(n, this));
  }
  add_live(a, n);
  std::vector<std::int32_t> missing;  // pages of the range that are not mapped yet
  for (std::int32_t i = page_of(a), e = page_of(a + n - 1); i <= e; ++i)
    if (pages_[i].handle == 0) missing.push_back(i);
  if (!missing.empty()) {
    spillway_status s = SPILLWAY_OK;
    if (!map_missing(missing, n, &s)) {  // nothing of it stays mapped
      release_extent(a, n, 0);
      return s;
    }
  }
  *out = a;
  return SPILLWAY_OK;
}

bool Arena::map_missing(const std::vector<std::int32_t>& missing, std::size_t request,
                        spillway_status* st) {
  // Aligned groups of span_pages_ missing pages become spans; the other pages take chunks.
  const auto S = static_cast<std::int32_t>(span_pages_);
  std::vector<std::int32_t> heads, singles;
  for (std::size_t k = 0; k < missing.size();) {
    const std::int32_t i = missing[k];
    if (i % S == 0 && k + span_pages_ <= missing.size() &&
        missing[k + span_pages_ - 1] == i + S - 1) {
      heads.push_back(i);
      k += span_pages_;
    } else {
      singles.push_back(i);
      ++k;
    }
  }
  std::vector<prim::PhysHandle> spans, chunks;
  if (!heads.empty() && heap_.spans()) heap_.acquire_spans(this, heads.size(), &spans, request);
  for (std::size_t h = spans.size(); h < heads.size(); ++h)  // no span for these: chunks
    for (std::int32_t j = 0; j < S; ++j) singles.push_back(heads[h] + j);
  heads.resize(spans.size());
  if (!singles.empty()) {
    *st = heap_.acquire_chunks(this, singles.size(), &chunks, request);
    if (*st != SPILLWAY_OK) {
      heap_.return_spans(spans);
      return false;
    }
  }
  // Every handle is mapped first, then the device is granted access once per run of
  // neighbouring pages this call mapped: fewer driver calls. (The grant's cost on the H200 is
  // per mapping even within one call: ~1 ms each while the copy engine writes to the host,
  // docs/offload.md "Driver calls under copy traffic".)
  auto va_of = [&](std::int32_t i) {
    return base_ + (std::uintptr_t{static_cast<std::uint32_t>(i)} << page_shift_);
  };
  struct Made {
    std::int32_t first;
    std::size_t pages;
  };
  std::vector<Made> made;  // mappings this call made, to undo on failure
  made.reserve(heads.size() + singles.size());
  prim::Status ms = prim::Status::Ok();
  for (std::size_t h = 0; h < heads.size() && ms.ok(); ++h)
    if ((ms = backend_.map(va_of(heads[h]), span_pages_ * gran_, spans[h])).ok())
      made.push_back({heads[h], span_pages_});
  for (std::size_t k = 0; k < singles.size() && ms.ok(); ++k)
    if ((ms = backend_.map(va_of(singles[k]), gran_, chunks[k])).ok())
      made.push_back({singles[k], 1});
  std::sort(made.begin(), made.end(),
            [](const Made& x, const Made& y) { return x.first < y.first; });
  for (std::size_t r = 0; r < made.size() && ms.ok();) {
    std::size_t end = r + 1;
    std::size_t pages = made[r].pages;
    while (end < made.size() && made[end].first == made[r].first + static_cast<std::int32_t>(pages))
      pages += made[end++].pages;
    ms = backend_.set_access(device_, va_of(made[r].first), pages * gran_);
    r = end;
  }
  if (!ms.ok()) {  // nothing of this call stays mapped; the memory goes back to the heap
    for (const Made& m : made) backend_.unmap(va_of(m.first), m.pages * gran_);
    heap_.return_spans(spans);
    heap_.return_chunks(chunks);
    *st = Fail(SPILLWAY_ERR_BACKEND, "spillway: mapping device memory failed: " + ms.message);
    return false;
  }
  for (const Made& m : made) {
    heap_.stats().on_map();
    if (auto* t = heap_.trace())
      t->physical(trace::Kind::kMap, device_, va_of(m.first), m.pages * gran_);
  }
  for (std::size_t h = 0; h < heads.size(); ++h)
    for (std::int32_t j = 0; j < S; ++j) {
      pages_[heads[h] + j].handle = spans[h];
      pages_[heads[h] + j].span = true;
    }
  for (std::size_t k = 0; k < singles.size(); ++k) pages_[singles[k]].handle = chunks[k];
  return true;
}

// ---------------------------------------------------------------- page accounting

void Arena::add_live(std::uintptr_t a, std::size_t n) {
  const std::uintptr_t end = a + n;
  for (std::int32_t i = page_of(a), e = page_of(end - 1); i <= e; ++i) {
    const std::uintptr_t ps =
        base_ + (std::uintptr_t{static_cast<std::uint32_t>(i)} << page_shift_);
    const std::uintptr_t lo = a > ps ? a : ps, hi = end < ps + gran_ ? end : ps + gran_;
    Page& pg = pages_[i];
    if (pg.live == 0 && pg.handle != 0) idle_remove(i);
    pg.live += static_cast<std::uint32_t>(hi - lo);
  }
}

bool Arena::all_mapped(std::uintptr_t a, std::size_t n) const {
  for (std::int32_t i = page_of(a), e = page_of(a + n - 1); i <= e; ++i)
    if (pages_[i].handle == 0) return false;
  return true;
}

void Arena::sub_live(std::uintptr_t a, std::size_t n, std::uint64_t seq) {
  const std::uintptr_t end = a + n;
  for (std::int32_t i = page_of(a), e = page_of(end - 1); i <= e; ++i) {
    const std::uintptr_t ps =
        base_ + (std::uintptr_t{static_cast<std::uint32_t>(i)} << page_shift_);
    const std::uintptr_t lo = a > ps ? a : ps, hi = end < ps + gran_ ? end : ps + gran_;
    Page& pg = pages_[i];
    pg.live -= static_cast<std::uint32_t>(hi - lo);
    if (seq > pg.free_seq) pg.free_seq = seq;
    if (pg.live == 0 && pg.handle != 0) idle_push(i);
  }
}

void Arena::release_extent(std::uintptr_t a, std::size_t n, std::uint64_t seq) {
  sub_live(a, n, seq);
  free_.insert(a, n);
}

void Arena::idle_push(std::int32_t i) {
  Page& pg = pages_[i];
  pg.prev = idle_tail_;
  pg.next = -1;
  if (idle_tail_ >= 0)
    pages_[idle_tail_].next = i;
  else
    idle_head_ = i;
  idle_tail_ = i;
}

void Arena::idle_remove(std::int32_t i) {
  Page& pg = pages_[i];
  if (pg.prev >= 0)
    pages_[pg.prev].next = pg.next;
  else
    idle_head_ = pg.next;
  if (pg.next >= 0)
    pages_[pg.next].prev = pg.prev;
  else
    idle_tail_ = pg.prev;
  pg.prev = pg.next = -1;
}

void Arena::flush_quick() {
  if (quick_bytes_ == 0) return;
  quick_.for_each([&](std::uint64_t r, std::vector<Quick>& v) {
    for (const Quick& q : v) release_extent(q.p, r, q.seq);
  });
  quick_.clear();  // sizes seen once do not linger
  quick_bytes_ = 0;
}

// ---------------------------------------------------------------- idle pages and fences

prim::Event Arena::get_event() {
  if (!event_pool_.empty()) {
    prim::Event e = event_pool_.back();
    event_pool_.pop_back();
    return e;
  }
  prim::Event e = nullptr;
  prim::Status s = backend_.event_create(device_, &e);
  if (!s.ok()) {
    std::fprintf(stderr, "spillway: event creation failed: %s\n", s.message.c_str());
    return nullptr;
  }
  return e;
}

void Arena::poll_page_fences() {
  while (!page_fences_.empty()) {
    bool done = false;
    if (!backend_.event_query(page_fences_.front().event, &done).ok() || !done) return;
    done_seq_ = page_fences_.front().covers;
    event_pool_.push_back(page_fences_.front().event);
    page_fences_.pop_front();
  }
}

void Arena::ensure_page_fence() {
  if (done_seq_ > free_seq_) return;  // every free is known complete
  if (!page_fences_.empty() && page_fences_.back().covers > free_seq_) return;
  prim::Event e = get_event();
  if (e == nullptr) return;
  if (!backend_.event_record(device_, e, stream_).ok()) {
    event_pool_.push_back(e);
    return;
  }
  page_fences_.push_back({e, free_seq_ + 1});
}

void Arena::wait_frees_done() {
  if (done_seq_ > free_seq_) return;  // every free is known complete
  ensure_page_fence();
  while (!page_fences_.empty()) {
    backend_.event_synchronize(page_fences_.front().event);
    poll_page_fences();
  }
}

std::size_t Arena::steal_idle(std::size_t want, bool block, std::vector<prim::PhysHandle>* out) {
  if (idle_head_ < 0 || want == 0) return 0;
  poll_page_fences();
  if (block) wait_frees_done();
  std::size_t got = 0;
  for (std::int32_t i = idle_head_; i >= 0 && got < want;) {
    Page& pg = pages_[i];
    const std::int32_t next = pg.next;
    if (pg.free_seq < done_seq_ && !pg.span) {  // spans: steal_idle_spans, whole
      const std::uintptr_t va =
          base_ + (std::uintptr_t{static_cast<std::uint32_t>(i)} << page_shift_);
      if (!backend_.unmap(va, gran_).ok()) break;
      heap_.stats().on_unmap();
      if (auto* t = heap_.trace()) t->physical(trace::Kind::kUnmap, device_, va, gran_);
      idle_remove(i);
      out->push_back(pg.handle);
      pg.handle = 0;
      ++got;
    }
    i = next;
  }
  if (got < want) ensure_page_fence();  // so that the next attempt finds more pages done
  return got;
}

std::size_t Arena::steal_idle_spans(std::size_t want, bool block,
                                    std::vector<prim::PhysHandle>* out) {
  if (idle_head_ < 0 || want == 0) return 0;
  poll_page_fences();
  if (block) wait_frees_done();
  // The heads of idle spans first (stealing one takes several pages out of the idle list).
  const auto S = static_cast<std::int32_t>(span_pages_);
  std::vector<std::int32_t> heads;
  for (std::int32_t i = idle_head_; i >= 0; i = pages_[i].next)
    if (pages_[i].span && i % S == 0) heads.push_back(i);
  std::size_t got = 0;
  for (std::int32_t h : heads) {
    if (got >= want) break;
    bool idle = true;
    for (std::int32_t j = 0; j < S && idle; ++j) {
      const Page& pg = pages_[h + j];
      idle = pg.span && pg.live == 0 && pg.free_seq < done_seq_;
    }
    if (!idle) continue;
    const std::uintptr_t va =
        base_ + (std::uintptr_t{static_cast<std::uint32_t>(h)} << page_shift_);
    if (!backend_.unmap(va, gran_ * span_pages_).ok()) break;
    heap_.stats().on_unmap();
    if (auto* t = heap_.trace()) t->physical(trace::Kind::kUnmap, device_, va, gran_ * span_pages_);
    out->push_back(pages_[h].handle);
    for (std::int32_t j = 0; j < S; ++j) {
      idle_remove(h + j);
      pages_[h + j].handle = 0;
      pages_[h + j].span = false;
    }
    ++got;
  }
  if (got < want) ensure_page_fence();
  return got;
}

std::size_t Arena::steal_idle_waiting(std::size_t want, std::vector<prim::PhysHandle>* out) {
  std::size_t got = 0;
  ensure_page_fence();
  while (got < want && !page_fences_.empty()) {
    // The oldest idle page not yet known done: wait for the first fence that covers it.
    std::uint64_t oldest = UINT64_MAX;
    for (std::int32_t i = idle_head_; i >= 0; i = pages_[i].next)
      if (pages_[i].free_seq >= done_seq_ && pages_[i].free_seq < oldest)
        oldest = pages_[i].free_seq;
    if (oldest == UINT64_MAX) break;  // no idle page would become free by waiting
    while (!page_fences_.empty() && page_fences_.front().covers <= oldest) {
      backend_.event_synchronize(page_fences_.front().event);
      poll_page_fences();
    }
    if (page_fences_.empty()) break;
    backend_.event_synchronize(page_fences_.front().event);
    poll_page_fences();
    got += steal_idle(want - got, false, out);
  }
  return got;
}

void Arena::note_free() {
  ++free_seq_;
  // A fence now and then lets idle pages become stealable without ever waiting.
  if (++frees_since_fence_ >= 4096) {
    frees_since_fence_ = 0;
    poll_page_fences();
    ensure_page_fence();
  }
}

void Arena::flush_caches() {
  flush_quick();
  // Empty slabs go back to the extents.
  for (int c = 0; c < detail::kNumClasses; ++c) {
    for (Slab* s = partial_[c]; s != nullptr;) {
      Slab* next = s->next;
      if (s->used == 0) drop_slab(s);
      s = next;
    }
  }
}

// ---------------------------------------------------------------- free

bool Arena::is_live(std::uintptr_t p) {
  std::lock_guard<detail::SpinLock> lk(mu_);
  if (!contains(p)) return false;
  if (Slab* s = pages_[page_of(p)].slab) {
    const std::uintptr_t off = p - s->base;
    return off % s->block_size == 0 && off / s->block_size < s->capacity &&
           s->live(static_cast<std::uint32_t>(off / s->block_size));
  }
  return large_.find(p) != nullptr;
}

spillway_status Arena::free_block(std::uintptr_t p, FreeMode mode, prim::Stream stream) {
  std::lock_guard<detail::SpinLock> lk(mu_);
  if (Slab* s = pages_[page_of(p)].slab) return free_small(s, p, mode, stream);
  return free_large(p, mode, stream);
}

spillway_status Arena::free_small(Slab* s, std::uintptr_t p, FreeMode mode, prim::Stream stream) {
  const std::uintptr_t off = p - s->base;
  const auto i = static_cast<std::uint32_t>(off / s->block_size);
  if (off % s->block_size != 0 || i >= s->capacity)
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: free of " + describe(p) + ": not the start of a block");
  if (!s->live(i))
    return Fail(SPILLWAY_ERR_DOUBLE_FREE,
                "spillway: double free of " + describe(p) + ": the block is not allocated");
  s->clear(i);
  heap_.stats().on_free(s->requested[i]);
  counters_.on_free(s->block_size - s->requested[i]);
  if (mode == FreeMode::kStreamOrdered && stream == stream_ && !sync_) {
    note_free();
    s->max_free_seq = free_seq_;
    release_small(s, i);
    return SPILLWAY_OK;
  }
  return defer(p, 0, mode, stream);
}

spillway_status Arena::free_large(std::uintptr_t p, FreeMode mode, prim::Stream stream) {
  const LargeBlock* it = large_.find(p);
  if (it == nullptr)
    return Fail(SPILLWAY_ERR_DOUBLE_FREE, "spillway: free of " + describe(p) +
                                              ": not a live block (double free, or an address "
                                              "inside a block)");
  const LargeBlock b = *it;
  large_.erase(p);
  // Bytes claimed for the pager's moves (widen_to_spans_locked) go with the block, in the same
  // order (a copy back may still write them), to the extents.
  const std::uintptr_t lo = p - b.claim_lo;
  const std::size_t len = b.claim_lo + b.size + b.claim_hi;
  const bool holes = b.holes || len != b.size;
  heap_.stats().on_free(b.requested);
  counters_.on_free(b.size - b.requested);
  if (mode == FreeMode::kStreamOrdered && stream == stream_ && !sync_) {
    note_free();
    if (holes) {  // pages the pager left unmapped: the extents map them again when needed
      release_extent(lo, len, free_seq_);
      return SPILLWAY_OK;
    }
    quick_[b.size].push_back({p, free_seq_});
    quick_bytes_ += b.size;
    return SPILLWAY_OK;
  }
  return defer(lo, len, mode, stream, holes);
}

void Arena::release_small(Slab* s, std::uint32_t i) {
  s->free_idx.push_back(i);
  --s->used;
  const int c = s->cls;
  if (!s->listed) {  // was full: back on the partial list
    s->prev = nullptr;
    s->next = partial_[c];
    if (s->next) s->next->prev = s;
    partial_[c] = s;
    s->listed = true;
  } else if (s->used == 0 && slab_count_[c] > 1) {  // keep one empty slab per class
    drop_slab(s);
  }
}

void Arena::drop_slab(Slab* s) {
  const int c = s->cls;
  if (s->prev)
    s->prev->next = s->next;
  else
    partial_[c] = s->next;
  if (s->next) s->next->prev = s->prev;
  pages_[page_of(s->base)].slab = nullptr;
  --slab_count_[c];
  release_extent(s->base, gran_, s->max_free_seq);
  delete s;
}

void Arena::release_pending(const Pending& pd) {
  if (pd.large_size != 0 && pd.holes) {
    release_extent(pd.p, pd.large_size, 0);
    return;
  }
  if (pd.large_size != 0) {
    quick_[pd.large_size].push_back({pd.p, 0});  // its fence has completed
    quick_bytes_ += pd.large_size;
    return;
  }
  Slab* s = pages_[page_of(pd.p)].slab;
  release_small(s, static_cast<std::uint32_t>((pd.p - s->base) / s->block_size));
}

spillway_status Arena::defer(std::uintptr_t p, std::size_t large_size, FreeMode mode,
                             prim::Stream stream, bool holes) {
  Fence f{{}, next_group_++};
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 1> streams;
  int n = 1;
  streams[0] = stream;
  if (mode == FreeMode::kSynchronous) n = heap_.fence_streams(&streams);
  for (int k = 0; k < n; ++k) {
    prim::Event e = get_event();
    prim::Status s = e ? backend_.event_record(device_, e, streams[k])
                       : prim::Status{1, "no event could be created"};
    if (!s.ok()) {
      if (e) event_pool_.push_back(e);
      // The block cannot be proven idle: keep it out of circulation rather than risk reuse.
      std::fprintf(stderr, "spillway: cannot fence free of %s, block leaked: %s\n",
                   describe(p).c_str(), s.message.c_str());
      for (auto ev : f.events) event_pool_.push_back(ev);
      return SPILLWAY_OK;
    }
    f.events.push_back(e);
  }
  pending_.push_back({p, large_size, f.group, holes});
  fences_.push_back(std::move(f));
  return SPILLWAY_OK;
}

void Arena::poll_pending() {
  while (!fences_.empty()) {
    Fence& f = fences_.front();
    while (!f.events.empty()) {
      bool done = false;
      if (!backend_.event_query(f.events.back(), &done).ok() || !done) return;
      event_pool_.push_back(f.events.back());
      f.events.pop_back();
    }
    const std::uint64_t g = f.group;
    fences_.pop_front();
    while (!pending_.empty() && pending_.front().group <= g) {
      release_pending(pending_.front());
      pending_.pop_front();
    }
  }
}

void Arena::wait_pending() {
  for (auto& f : fences_)
    for (auto e : f.events) backend_.event_synchronize(e);
  poll_pending();
}

// ---------------------------------------------------------------- the pager's access

std::size_t Arena::large_size_locked(std::uintptr_t p) {
  if (!contains(p) || pages_[page_of(p)].slab != nullptr) return 0;
  const LargeBlock* b = large_.find(p);
  return b ? b->size : 0;
}

void Arena::page_handles_locked(std::uintptr_t a, std::size_t n, std::vector<prim::PhysHandle>* out,
                                std::vector<std::uint8_t>* span) const {
  const std::int32_t first = page_of(a);
  for (std::size_t k = 0; k < n; ++k) {
    const Page& pg = pages_[first + static_cast<std::int32_t>(k)];
    out->push_back(pg.handle);
    if (span != nullptr) span->push_back(pg.span ? 1 : 0);
  }
}

spillway_status Arena::set_pages_locked(std::uintptr_t block, std::uintptr_t a, std::size_t n,
                                        const prim::PhysHandle* in, bool host,
                                        const std::uint8_t* span) {
  LargeBlock* b = large_.find(block);
  if (b == nullptr)
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: " + describe(block) + " is not a live block");
  const std::int32_t first = page_of(a);
  for (std::size_t k = 0; k < n; ++k) {
    Page& pg = pages_[first + static_cast<std::int32_t>(k)];
    pg.handle = in[k];
    pg.host = in[k] != 0 && host;
    pg.span = in[k] != 0 && span != nullptr && span[k] != 0;
  }
  bool holes = false;
  for (std::int32_t i = page_of(block), e = page_of(block + b->size - 1); i <= e; ++i)
    holes = holes || pages_[i].handle == 0;
  b->holes = holes;
  return SPILLWAY_OK;
}

void Arena::unclaim_locked(std::uintptr_t block) {
  LargeBlock* b = large_.find(block);
  if (b == nullptr) return;
  if (b->claim_lo != 0) release_extent(block - b->claim_lo, b->claim_lo, 0);
  if (b->claim_hi != 0) release_extent(block + b->size, b->claim_hi, 0);
  b->claim_lo = b->claim_hi = 0;
}

void Arena::widen_to_spans_locked(std::uintptr_t block, std::uintptr_t* first, std::uintptr_t* last,
                                  bool* after_stream) {
  LargeBlock* b = large_.find(block);
  if (b == nullptr || span_pages_ < 2) return;
  unclaim_locked(block);
  poll_page_fences();
  const std::uintptr_t end = block + b->size, sb = gran_ * span_pages_;
  // A page of the rest of the span may go with the block: mapped on the device as that span,
  // with no live bytes but the block's own. Bytes freed there whose work may still run were
  // freed in this arena's stream order (other frees stay live until their fences complete).
  bool pending = false;
  auto movable = [&](std::uintptr_t a) {
    const Page& pg = pages_[page_of(a)];
    const std::uintptr_t lo = std::max(a, block), hi = std::min(a + gran_, end);
    const std::size_t own = hi > lo ? hi - lo : 0;
    return pg.handle != 0 && pg.span && !pg.host && pg.slab == nullptr && pg.live == own;
  };
  auto all_movable = [&](std::uintptr_t a, std::uintptr_t z) {
    bool side_pending = false;
    for (std::uintptr_t q = a; q < z; q += gran_) {
      if (!movable(q)) return false;
      side_pending = side_pending || pages_[page_of(q)].free_seq >= done_seq_;
    }
    pending = pending || side_pending;
    return true;
  };
  // The span of the block's first page, from its head to the first whole page (the block's
  // edge page included).
  const std::uintptr_t lo_page = block / gran_ * gran_, head = lo_page / sb * sb;
  if (head < *first && pages_[page_of(lo_page)].span && all_movable(head, *first) &&
      free_.remove(head, block - head)) {
    if (block > head) add_live(head, block - head);
    b->claim_lo = block - head;
    *first = head;
  }
  // The span of its last page, from the end of its last whole page to the span's end.
  const std::uintptr_t hi_page = (end - 1) / gran_ * gran_, tail = (hi_page / sb + 1) * sb;
  if (tail > *last && pages_[page_of(hi_page)].span && all_movable(*last, tail) &&
      free_.remove(end, tail - end)) {
    if (tail > end) add_live(end, tail - end);
    b->claim_hi = tail - end;
    *last = tail;
  }
  *after_stream = pending && !sync_;
}

Arena::Summary Arena::summary() {
  std::lock_guard<detail::SpinLock> lk(mu_);
  return summary_locked();
}

Arena::Summary Arena::summary_locked() {
  Summary s{};
  for (std::size_t i = 0; i < size_ / gran_; ++i) {
    if (pages_[i].handle == 0 || pages_[i].host) continue;
    s.mapped_bytes += gran_;
    if (pages_[i].live == 0) s.idle_bytes += gran_;
    if (!pages_[i].span) continue;
    s.span_bytes += gran_;
    if (pages_[i].live != 0) continue;
    s.span_idle_bytes += gran_;
    const std::size_t h = i - i % span_pages_;
    for (std::size_t j = h; j < h + span_pages_; ++j)
      if (pages_[j].live != 0) {
        s.span_stuck_bytes += gran_;
        break;
      }
  }
  s.free_extent_bytes = free_.total();
  s.largest_free_extent = free_.largest();
  s.quick_bytes = quick_bytes_;
  s.pending_blocks = pending_.size();
  for (int c = 0; c < detail::kNumClasses; ++c)
    s.slab_count += static_cast<std::size_t>(slab_count_[c]);
  return s;
}

}  // namespace spillway
