// device_heap.cpp — arenas, the loose chunk pool, budget, trimming and the out-of-memory report
// of one device (see device_heap.h).
#include "allocator/device_heap.h"

#include <cinttypes>
#include <cstdio>

#include "allocator/detail/size_class.h"
#include "allocator/error.h"
#include "profiler/trace_writer.h"

namespace spillway {

namespace {
thread_local bool t_quiet_oom = false;
thread_local AcquireMode t_mode = AcquireMode::kAny;
}  // namespace
void SetQuietOom(bool quiet) {
  t_quiet_oom = quiet;
}
void SetAcquireMode(AcquireMode mode) {
  t_mode = mode;
}

namespace {
// Key of the synchronous arena: never a real stream handle.
prim::Stream const kSyncKey = reinterpret_cast<prim::Stream>(~std::uintptr_t{0});

// Handles (0: none) into a loose pool, each with `tag`; the caller holds the heap's lock.
void PushLoose(const std::vector<prim::PhysHandle>& hs, prim::Event tag,
               std::deque<prim::PhysHandle>* pool, std::deque<prim::Event>* tags) {
  for (prim::PhysHandle h : hs) {
    if (h == 0) continue;
    pool->push_back(h);
    tags->push_back(tag);
  }
}

std::string Bytes(std::uint64_t b) {
  char buf[32];
  if (b >= (std::uint64_t{1} << 30))
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(b) / (1 << 30));
  else if (b >= (std::uint64_t{1} << 20))
    std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(b) / (1 << 20));
  else
    std::snprintf(buf, sizeof buf, "%" PRIu64 " B", b);
  return buf;
}
}  // namespace

DeviceHeap::DeviceHeap(prim::Backend& backend, int device) : backend_(backend), device_(device) {}

DeviceHeap::~DeviceHeap() {
  for (int i = 0; i < n_arenas_.load(); ++i) arenas_[static_cast<std::size_t>(i)].reset();
  for (auto h : loose_) backend_.release(h);
  for (auto h : loose_spans_) backend_.release(h);
}

spillway_status DeviceHeap::init(std::uint64_t budget_bytes, bool compact, bool spans,
                                 std::uint64_t span_bytes) {
  compact_ = compact;
  spans_ = spans;
  prim::MemInfo mi;
  prim::Status s = backend_.mem_info(device_, &mi);
  if (!s.ok())
    return Fail(SPILLWAY_ERR_BACKEND, "spillway: cannot read memory of device " +
                                          std::to_string(device_) + ": " + s.message);
  total_ = mi.total;
  gran_ = backend_.granularity({prim::LocationKind::kDevice, device_});
  const std::uint64_t pages = gran_ != 0 && span_bytes % gran_ == 0 ? span_bytes / gran_ : 0;
  if (pages < 2 || (pages & (pages - 1)) != 0)
    return Fail(SPILLWAY_ERR_CONFIG,
                "spillway: SPILLWAY_SPAN_MIB=" + std::to_string(span_bytes >> 20) +
                    " is not a power-of-two multiple of at least two physical pages of device " +
                    std::to_string(device_) + " (" + std::to_string(gran_ >> 20) + " MiB each)");
  span_pages_ = static_cast<std::size_t>(pages);
  // Each arena may map the whole device, twice over: VA is cheap.
  arena_va_ = detail::RoundUp(2 * total_ + gran_, gran_);
  budget_.store(budget_bytes);
  return SPILLWAY_OK;
}

spillway_status DeviceHeap::arena_for(prim::Stream stream, bool sync, Arena** out) {
  const prim::Stream key = sync ? kSyncKey : stream;
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    if ((a->is_sync() ? kSyncKey : a->stream()) == key) {
      *out = a;
      return SPILLWAY_OK;
    }
  }
  std::lock_guard<std::mutex> lk(mu_);
  const int m = n_arenas_.load(std::memory_order_relaxed);
  for (int i = n; i < m; ++i) {  // created meanwhile by another thread
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    if ((a->is_sync() ? kSyncKey : a->stream()) == key) {
      *out = a;
      return SPILLWAY_OK;
    }
  }
  if (m == kMaxArenas)
    return Fail(SPILLWAY_ERR_OUT_OF_MEMORY, "spillway: more than " + std::to_string(kMaxArenas) +
                                                " streams allocate on device " +
                                                std::to_string(device_) +
                                                "; Spillway keeps one arena per allocating stream");
  std::uintptr_t va = 0;
  // Aligned to a span, so that spans sit at VA aligned to their size.
  prim::Status s = backend_.reserve(device_, arena_va_, span_bytes(), &va);
  if (!s.ok())
    return Fail(SPILLWAY_ERR_OUT_OF_MEMORY,
                "spillway: cannot reserve " + Bytes(arena_va_) + " of address space: " + s.message);
  arenas_[static_cast<std::size_t>(m)] =
      std::make_unique<Arena>(*this, sync ? nullptr : stream, sync, va, arena_va_);
  n_arenas_.store(m + 1, std::memory_order_release);
  *out = arenas_[static_cast<std::size_t>(m)].get();
  return SPILLWAY_OK;
}

Arena* DeviceHeap::find(std::uintptr_t p) const {
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    if (a->contains(p)) return a;
  }
  return nullptr;
}

int DeviceHeap::fence_streams(std::array<prim::Stream, kMaxArenas + 1>* out) const {
  // The legacy stream first: recording on it also waits for every blocking stream.
  int k = 0;
  (*out)[static_cast<std::size_t>(k++)] = nullptr;
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    if (!a->is_sync() && a->stream() != nullptr)
      (*out)[static_cast<std::size_t>(k++)] = a->stream();
  }
  return k;
}

bool DeviceHeap::create_chunk(prim::PhysHandle* h, std::string* why, std::size_t size) {
  if (size == 0) size = gran_;
  std::lock_guard<std::mutex> lk(mu_);
  const std::uint64_t budget = budget_.load(std::memory_order_relaxed);
  if (budget != 0 && stats_.reserved() + size > budget) {
    *why = "the device budget of " + Bytes(budget) + " is reached";
    return false;
  }
  prim::Status s = backend_.create({prim::LocationKind::kDevice, device_}, size, h);
  if (!s.ok()) {
    *why = "the device has no free memory (" + s.message + ")";
    return false;
  }
  stats_.on_reserve(size);
  if (trace_) trace_->physical(trace::Kind::kChunkCreate, device_, 0, size);
  return true;
}

std::uint64_t DeviceHeap::shed_loose(bool spans, std::uint64_t bytes) {
  const std::size_t unit = spans ? span_bytes() : gran_;
  std::vector<prim::PhysHandle> hs;
  std::vector<prim::Event> tags;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto& pool = spans ? loose_spans_ : loose_;
    auto& ptag = spans ? loose_span_tag_ : loose_tag_;
    while (!pool.empty() && hs.size() * unit < bytes) {  // oldest first: least to wait for
      hs.push_back(pool.front());
      tags.push_back(ptag.front());
      pool.pop_front();
      ptag.pop_front();
    }
  }
  // A tagged handle is still read by a copy through another mapping: the driver would keep its
  // memory until then anyway, but the budget must not count it free before that.
  for (prim::Event t : tags)
    if (t != nullptr) backend_.event_synchronize(t);
  std::uint64_t released = 0;
  for (prim::PhysHandle h : hs)
    if (backend_.release(h).ok()) {
      stats_.on_release(unit);
      if (trace_) trace_->physical(trace::Kind::kChunkRelease, device_, 0, unit);
      released += unit;
    }
  return released;
}

void DeviceHeap::steal_spans(Arena* self, std::size_t want, bool block,
                             std::vector<prim::PhysHandle>* out) {
  const std::size_t base = out->size();
  self->steal_idle_spans(want, block, out);
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n && out->size() - base < want; ++i) {
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    if (a == self) continue;
    std::unique_lock<detail::SpinLock> lk(a->mu(), std::try_to_lock);  // never wait: lock order
    if (lk.owns_lock()) a->steal_idle_spans(want - (out->size() - base), block, out);
  }
}

std::uint64_t DeviceHeap::shed_idle_spans(Arena* self, std::size_t want, bool block) {
  std::vector<prim::PhysHandle> got;
  steal_spans(self, want, block, &got);
  return release_spans(got);
}

std::uint64_t DeviceHeap::allowance(std::size_t request_bytes) const {
  const std::uint64_t live_high =
      std::max<std::uint64_t>(stats_.peak_allocated(), stats_.allocated() + request_bytes);
  return live_high + live_high / 64 + 4 * gran_;
}

void DeviceHeap::hand_tags(Arena* self, const std::vector<prim::Event>& tags,
                           std::vector<prim::Event>* tags_out) {
  prim::Event last = nullptr;
  for (prim::Event t : tags)
    if (t != nullptr && t != last) {
      if (tags_out != nullptr)
        tags_out->push_back(t);
      else
        backend_.stream_wait_event(device_, self->stream(), t);
      last = t;
    }
}

std::uint64_t DeviceHeap::release_spans(const std::vector<prim::PhysHandle>& spans) {
  std::uint64_t released = 0;
  for (prim::PhysHandle h : spans)
    if (backend_.release(h).ok()) {
      stats_.on_release(span_bytes());
      if (trace_) trace_->physical(trace::Kind::kChunkRelease, device_, 0, span_bytes());
      released += span_bytes();
    }
  return released;
}

std::size_t DeviceHeap::acquire_spans(Arena* self, std::size_t m,
                                      std::vector<prim::PhysHandle>* out, std::size_t request_bytes,
                                      std::vector<prim::Event>* tags_out) {
  const std::size_t base = out->size();
  std::vector<prim::Event> tags;
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (out->size() - base < m && !loose_spans_.empty()) {  // oldest first
      tags.push_back(loose_span_tag_.front());
      out->push_back(loose_spans_.front());
      loose_spans_.pop_front();
      loose_span_tag_.pop_front();
    }
  }
  auto need = [&] { return m - (out->size() - base); };
  std::string why;
  const std::uint64_t allow = allowance(request_bytes);
  const std::size_t sb = span_bytes();
  while (need() && stats_.reserved() + sb <= allow) {
    prim::PhysHandle h = 0;
    if (!create_chunk(&h, &why, sb)) break;
    out->push_back(h);
  }
  if (need()) {  // idle spans of the arenas, whole
    std::vector<prim::PhysHandle> got;
    steal_spans(self, need(), false, &got);
    if (got.size() < need() && compact_ && t_mode == AcquireMode::kAny)
      self->steal_idle_spans(need() - got.size(), true, &got);
    out->insert(out->end(), got.begin(), got.end());
  }
  while (need()) {  // within the budget, loose chunks released to make room if need be
    prim::PhysHandle h = 0;
    if (create_chunk(&h, &why, sb)) {
      out->push_back(h);
      continue;
    }
    if (t_mode == AcquireMode::kFreeOnly || shed_loose(false, sb) < sb) break;
  }
  hand_tags(self, tags, tags_out);
  return out->size() - base;
}

void DeviceHeap::return_spans(const std::vector<prim::PhysHandle>& spans, prim::Event tag) {
  std::lock_guard<std::mutex> lk(mu_);
  PushLoose(spans, tag, &loose_spans_, &loose_span_tag_);
}

std::size_t DeviceHeap::steal_from_others(Arena* self, std::size_t want, bool block,
                                          std::vector<prim::PhysHandle>* out, bool flush) {
  std::size_t got = 0;
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n && got < want; ++i) {
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    if (a == self) continue;
    std::unique_lock<detail::SpinLock> lk(a->mu(), std::try_to_lock);  // never wait: lock order
    if (!lk.owns_lock()) continue;
    if (block) a->wait_pending();
    if (block || flush) a->flush_caches();
    got += a->steal_idle(want - got, block, out);
  }
  return got;
}

spillway_status DeviceHeap::acquire_chunks(Arena* self, std::size_t k,
                                           std::vector<prim::PhysHandle>* out,
                                           std::size_t request_bytes,
                                           std::vector<prim::Event>* tags_out) {
  out->clear();
  std::vector<prim::Event> tags(k, nullptr);  // of the chunks taken from the loose pool
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (out->size() < k && !loose_.empty()) {  // oldest first
      tags[out->size()] = loose_tag_.front();
      out->push_back(loose_.front());
      loose_.pop_front();
      loose_tag_.pop_front();
    }
  }
  auto need = [&] { return k - out->size(); };
  std::string why;
  // Growing is cheap while reserved memory stays within a small margin of the most that was
  // ever allocated: no remapping then. Past it, idle pages whose work has finished come first.
  const std::uint64_t allow = allowance(request_bytes);
  while (need() && stats_.reserved() + gran_ <= allow) {
    prim::PhysHandle h = 0;
    if (!create_chunk(&h, &why)) break;
    out->push_back(h);
  }
  if (need()) self->steal_idle(need(), false, out);
  if (need()) steal_from_others(self, need(), false, out);
  const bool may_wait = t_mode == AcquireMode::kAny;  // SetAcquireMode
  if (need() && compact_ && may_wait) self->steal_idle_waiting(need(), out);
  if (need() && compact_ && may_wait) {  // the compact policy waits for idle spans too
    std::vector<prim::PhysHandle> spans;
    self->steal_idle_spans(spans_for(need()), true, &spans);
    release_spans(spans);
  }
  // Within the budget; then loose spans and idle spans released to make room for chunks.
  auto create_rest = [&] {
    while (need()) {
      prim::PhysHandle h = 0;
      if (!create_chunk(&h, &why)) break;
      out->push_back(h);
    }
  };
  create_rest();
  if (need() && t_mode == AcquireMode::kFreeOnly) why = "only free memory was to be taken";
  const bool more = t_mode != AcquireMode::kFreeOnly;  // drop caches, release memory
  if (more && need() && shed_loose(true, need() * gran_) > 0) create_rest();
  if (more && need() && shed_idle_spans(self, spans_for(need()), false) > 0) create_rest();
  if (more && need()) {  // cached blocks dropped, idle pages known done: no wait
    self->flush_caches();
    self->steal_idle(need(), false, out);
    if (need()) steal_from_others(self, need(), false, out, true);
    if (need() && shed_idle_spans(self, spans_for(need()), false) > 0) create_rest();
  }
  // Last resort: wait for the streams and steal again. Not when the pager asks to evict first
  // (kNoWait): its tracked evictions make room with no CPU wait (the copies are ordered on the
  // GPU), where waiting here stalls the CPU until the GPU drains, and the GPU then idles.
  if (need() && may_wait) {
    stats_.on_drain();
    self->wait_pending();
    self->flush_caches();
    self->steal_idle(need(), true, out);
    if (need()) steal_from_others(self, need(), true, out);
    if (need() && shed_idle_spans(self, spans_for(need()), true) > 0) create_rest();
  }
  if (need() == 0) {
    hand_tags(self, tags, tags_out);
    return SPILLWAY_OK;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (std::size_t i = out->size(); i-- > 0;) {  // back where they were: oldest at the front
      loose_.push_front((*out)[i]);
      loose_tag_.push_front(i < tags.size() ? tags[i] : nullptr);
    }
  }
  out->clear();
  if (t_quiet_oom)
    return Fail(SPILLWAY_ERR_OUT_OF_MEMORY, "spillway: out of device memory: " + why);
  stats_.on_oom();
  if (trace_) trace_->physical(trace::Kind::kOom, device_, 0, request_bytes);
  std::string msg = "spillway: out of memory on device " + std::to_string(device_) +
                    ": cannot allocate " + Bytes(request_bytes) + ": " + why + "\n" +
                    report(request_bytes, self);
  static std::atomic<int> printed{0};
  if (printed.fetch_add(1) < 8) std::fputs(msg.c_str(), stderr);
  return Fail(SPILLWAY_ERR_OUT_OF_MEMORY, std::move(msg));
}

void DeviceHeap::return_chunks(const std::vector<prim::PhysHandle>& chunks, prim::Event tag) {
  std::lock_guard<std::mutex> lk(mu_);
  PushLoose(chunks, tag, &loose_, &loose_tag_);
}

void DeviceHeap::forget_tags() {
  std::lock_guard<std::mutex> lk(mu_);
  std::fill(loose_tag_.begin(), loose_tag_.end(), nullptr);
}

spillway_status DeviceHeap::trim(std::uint64_t keep_bytes) {
  std::vector<prim::PhysHandle> freed;
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    std::lock_guard<detail::SpinLock> lk(a->mu());
    a->wait_pending();
    a->flush_caches();
    a->steal_idle(SIZE_MAX, true, &freed);
    std::vector<prim::PhysHandle> spans;
    a->steal_idle_spans(SIZE_MAX, true, &spans);
    release_spans(spans);
  }
  shed_loose(true, UINT64_MAX);  // spans are not kept loose by a trim
  std::lock_guard<std::mutex> lk(mu_);
  loose_.insert(loose_.end(), freed.begin(), freed.end());
  loose_tag_.resize(loose_.size(), nullptr);
  std::uint64_t cached = loose_.size() * gran_;
  while (!loose_.empty() && cached > keep_bytes) {
    prim::Status s = backend_.release(loose_.back());
    if (!s.ok())
      return Fail(SPILLWAY_ERR_BACKEND, "spillway: releasing device memory failed: " + s.message);
    loose_.pop_back();
    loose_tag_.pop_back();
    stats_.on_release(gran_);
    if (trace_) trace_->physical(trace::Kind::kChunkRelease, device_, 0, gran_);
    cached -= gran_;
  }
  return SPILLWAY_OK;
}

spillway_status DeviceHeap::set_budget(std::uint64_t bytes) {
  if (bytes != 0 && bytes < stats_.allocated())
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: budget " + Bytes(bytes) + " is below the " + Bytes(stats_.allocated()) +
                    " allocated now on device " + std::to_string(device_));
  const std::uint64_t old = budget_.exchange(bytes);
  if (bytes == 0 || stats_.reserved() <= bytes) return SPILLWAY_OK;
  if (spillway_status s = trim(0); s != SPILLWAY_OK) {
    budget_.store(old);
    return s;
  }
  // Live blocks hold whole physical pages (and spans); what they hold cannot be released. A cap
  // below it could not be kept: refused, and the old one stays. (Found by fuzz_ops: 30.7 MiB
  // allocated in four arenas held 34 MiB of pages, and a 32 MiB cap was taken.)
  if (const std::uint64_t held = stats_.reserved(); held > bytes) {
    budget_.store(old);
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: budget " + Bytes(bytes) + " is below the " + Bytes(held) +
                    " of device memory that live blocks hold on device " +
                    std::to_string(device_) + " (" + Bytes(stats_.allocated()) +
                    " allocated, in whole pages of " + Bytes(gran_) +
                    "); free blocks or move them off the device first");
  }
  return SPILLWAY_OK;
}

void DeviceHeap::snapshot(spillway_stats* s) const {
  *s = spillway_stats{};
  stats_.snapshot(s);
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) arenas_[static_cast<std::size_t>(i)]->counters().add_to(s);
  s->budget_bytes = budget_.load();
  s->granularity_bytes = gran_;
}

DeviceHeap::Held DeviceHeap::held() const {
  Held h{};
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const Arena::Summary s = arenas_[static_cast<std::size_t>(i)]->summary();
    h.arenas.mapped_bytes += s.mapped_bytes;
    h.arenas.idle_bytes += s.idle_bytes;
    h.arenas.quick_bytes += s.quick_bytes;
    h.arenas.span_bytes += s.span_bytes;
    h.arenas.span_idle_bytes += s.span_idle_bytes;
    h.arenas.span_stuck_bytes += s.span_stuck_bytes;
  }
  std::lock_guard<std::mutex> lk(mu_);
  h.loose_chunk_bytes = loose_.size() * gran_;
  h.loose_span_bytes = loose_spans_.size() * span_bytes();
  return h;
}

std::string DeviceHeap::report(std::size_t failed_request, Arena* held) const {
  spillway_stats st;
  snapshot(&st);
  std::string r;
  char line[256];
  std::snprintf(line, sizeof line,
                "spillway: device %d state: allocated %s (peak %s), reserved %s (peak %s), "
                "budget %s, device %s, live blocks %" PRIu64 ", request %s\n",
                device_, Bytes(st.allocated_bytes).c_str(), Bytes(st.peak_allocated_bytes).c_str(),
                Bytes(st.reserved_bytes).c_str(), Bytes(st.peak_reserved_bytes).c_str(),
                st.budget_bytes ? Bytes(st.budget_bytes).c_str() : "none", Bytes(total_).c_str(),
                st.live_blocks, Bytes(failed_request).c_str());
  r += line;
  const int n = n_arenas_.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    Arena* a = arenas_[static_cast<std::size_t>(i)].get();
    Arena::Summary s{};
    if (a == held) {
      s = a->summary_locked();
    } else {
      std::unique_lock<detail::SpinLock> lk(a->mu(), std::try_to_lock);
      if (!lk.owns_lock()) continue;
      s = a->summary_locked();
    }
    std::snprintf(line, sizeof line,
                  "  arena %s%p: mapped %s, idle pages %s, cached blocks %s, largest free VA "
                  "extent %s, %zu slabs, %zu frees waiting on events\n",
                  a->is_sync() ? "sync " : "stream ", a->is_sync() ? nullptr : a->stream(),
                  Bytes(s.mapped_bytes).c_str(), Bytes(s.idle_bytes).c_str(),
                  Bytes(s.quick_bytes).c_str(), Bytes(s.largest_free_extent).c_str(), s.slab_count,
                  s.pending_blocks);
    r += line;
  }
  return r;
}

}  // namespace spillway
