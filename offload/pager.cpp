// pager.cpp — residency and moves of one device's blocks (see pager.h for the model).
#include "offload/pager.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <ctime>

#include "allocator/device_heap.h"
#include "allocator/error.h"
#include "offload/numa.h"
#include "profiler/clock.h"
#include "profiler/trace_writer.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/tracker.h"

namespace spillway::offload {

namespace {
std::string Hex(std::uintptr_t p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, p);
  return buf;
}
}  // namespace

Pager::Pager(DeviceHeap& heap, PagerOptions opt)
    : heap_(heap),
      backend_(heap.backend()),
      device_(heap.device()),
      gran_(heap.granularity()),
      opt_(opt) {
  if (opt_.index == nullptr) opt_.safety = Safety::kStrict;
}

spillway_status Pager::init(std::string* error) {
  const int numa = NearestNumaNode(backend_.pci_bus_id(device_), &numa_note_);
  host_ = std::make_unique<HostPool>(backend_, device_, numa, gran_, opt_.host_limit);
  prim::Status s = backend_.stream_create(device_, &copy_);
  if (s.ok()) s = backend_.stream_create(device_, &out_);
  if (!s.ok()) {
    *error = "spillway: the pager's copy stream could not be created: " + s.message;
    return SPILLWAY_ERR_BACKEND;
  }
  return SPILLWAY_OK;
}

Pager::~Pager() {
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(true);
  // Live blocks keep their VA; their host pages go (the pool is about to release them).
  for (auto& [p, e] : entries_) {
    if (e.state != Residency::kHost || !e.mapped) continue;
    unmap_pages_locked(e);
  }
  for (auto& [p, e] : entries_)
    if (e.state == Residency::kNvme && opt_.nvme) opt_.nvme->release(e.slot);
  entries_.clear();
  heap_.forget_tags();  // every copy is done: the tags are spent
  for (const Progress& pr : progress_) backend_.event_synchronize(pr.ev);
  for (const Progress& pr : progress_) backend_.event_destroy(pr.ev);
  for (prim::Event ev : events_) backend_.event_destroy(ev);
  for (prim::Event ev : copy_events_) backend_.event_destroy(ev);
  for (prim::Event ev : out_events_) backend_.event_destroy(ev);
  if (copy_ != nullptr) backend_.stream_destroy(device_, copy_);
  if (out_ != nullptr) backend_.stream_destroy(device_, out_);
}

// ---------------------------------------------------------------- helpers

prim::Event Pager::take_event(std::vector<prim::Event>& pool) {
  if (!pool.empty()) {
    prim::Event e = pool.back();
    pool.pop_back();
    return e;
  }
  prim::Event e = nullptr;
  if (!backend_.event_create(device_, &e).ok()) return nullptr;
  return e;
}

prim::Event Pager::get_event() {
  return take_event(events_);
}
prim::Event Pager::get_copy_event() {
  return take_event(copy_events_);
}
prim::Event Pager::get_out_event() {
  return take_event(out_events_);
}

void Pager::put_event(prim::Event e) {
  if (e != nullptr) events_.push_back(e);
}

void Pager::put_copy_event(prim::Event e) {
  if (e != nullptr) copy_events_.push_back(e);
}

void Pager::put_move_event(const Move& m) {
  if (m.done == nullptr) return;
  (m.out ? out_events_ : copy_events_).push_back(m.done);
}

void Pager::order_after_fetch_locked(std::uintptr_t p) {
  for (const Move& m : moves_)
    if (!m.out && m.p == p) backend_.stream_wait_event(device_, out_, m.done);
}

void Pager::set_active_locked() {
  active_.store(entries_.empty() && moves_.empty() ? 0 : 1, std::memory_order_release);
}

void Pager::trace_move(trace::Kind k, std::uintptr_t p, std::uint64_t bytes, std::uint64_t ns,
                       std::uint32_t from, std::uint32_t to, bool demand) {
  if (auto* t = heap_.trace())
    t->offload(k, device_, p, bytes, ns, reinterpret_cast<std::uint64_t>(copy_),
               (from << 8) | to | (demand ? trace::kFetchDemand : 0));
}

void Pager::error_locked(std::uintptr_t p, std::uint64_t bytes, std::uint32_t reason,
                         spillway_status st, const std::string& msg) {
  counters_.errors.fetch_add(1, std::memory_order_relaxed);
  if (auto* t = heap_.trace())
    t->offload(trace::Kind::kOffloadError, device_, p, bytes, 0, 0, reason,
               static_cast<std::uint16_t>(st));
  if ((reason == trace::kErrNvmeFull || reason == trace::kErrNvmeIo) && !warned_nvme_) {
    warned_nvme_ = true;  // said once: the data stays on the host
    std::fprintf(stderr, "%s (the data stays on the host; further NVMe errors are counted)\n",
                 msg.c_str());
  }
}

spillway_status Pager::not_owned(std::uintptr_t p) const {
  return Fail(SPILLWAY_ERR_NOT_OWNED, "spillway: " + Hex(p) +
                                          " is not memory Spillway allocated on device " +
                                          std::to_string(device_));
}

prim::Status Pager::copy_pages(std::uintptr_t first, std::size_t pages,
                               const std::vector<HostChunk>& chunks, bool to_host,
                               prim::Event done) {
  const prim::Stream s = to_host ? out_ : copy_;
  prim::Status st = prim::Status::Ok();
  for (std::size_t i = 0; i < pages && st.ok();) {  // runs of neighbouring chunks: one copy
    std::size_t j = i + 1;
    while (j < pages && chunks[j].window == chunks[j - 1].window + gran_) ++j;
    auto* block = reinterpret_cast<void*>(first + i * gran_);
    auto* host = reinterpret_cast<void*>(chunks[i].window);
    st = to_host ? backend_.copy_to_host_async(device_, host, block, (j - i) * gran_, s)
                 : backend_.copy_async(device_, block, host, (j - i) * gran_, s);
    i = j;
  }
  return st.ok() ? backend_.event_record(device_, done, s) : st;
}

spillway_status Pager::unmap_pages_locked(Entry& e) {
  std::vector<prim::PhysHandle> zeros(e.pages, 0), old;
  return swap_locked(e, zeros.data(), false, &old);
}

spillway_status Pager::geometry(std::uintptr_t p, Geometry* g, bool widen) {
  Arena* a = heap_.find(p);
  if (a == nullptr) return not_owned(p);
  std::size_t size = 0;
  bool after_arena = false;
  std::uintptr_t first = 0, last = 0;  // the whole pages; a span covered in part stays, as
                                       // edge pages do, unless the block can take all of it
  {
    std::lock_guard<detail::SpinLock> lk(a->mu());
    size = a->large_size_locked(p);
    first = (p + gran_ - 1) / gran_ * gran_;
    last = (p + size) / gran_ * gran_;
    if (widen && size != 0 && heap_.spans())
      a->widen_to_spans_locked(p, &first, &last, &after_arena);
    const std::uintptr_t sb = a->span_bytes();
    if (last > first && first % sb != 0 && a->page_in_span_locked(first))
      first = (first / sb + 1) * sb;
    if (last > first && last % sb != 0 && a->page_in_span_locked(last - gran_))
      last = last / sb * sb;
  }
  if (size == 0) {
    if (a->is_live(p))
      return Fail(SPILLWAY_ERR_INVALID_VALUE,
                  "spillway: " + Hex(p) +
                      " is a small block (it shares its page with others); "
                      "only blocks that span a whole " +
                      std::to_string(gran_ >> 20) + " MiB page can move");
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: " + Hex(p) + " is not the start of a live block");
  }
  if (last <= first && widen) {  // a claim on one side alone moves nothing
    std::lock_guard<detail::SpinLock> lk(a->mu());
    a->unclaim_locked(p);
  }
  if (last <= first)
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: the block at " + Hex(p) + " (" + std::to_string(size) +
                    " bytes) spans no whole page of " + std::to_string(gran_ >> 20) +
                    " MiB: nothing of it can move");
  const bool widened = first < (p + gran_ - 1) / gran_ * gran_ || last > (p + size) / gran_ * gran_;
  *g = {a, first, (last - first) / gran_, widened, widened && after_arena};
  return SPILLWAY_OK;
}

tracker::BlockSummary Pager::summary_of(std::uintptr_t p) const {
  if (opt_.index == nullptr) return {};
  auto lk = opt_.index->read_lock();
  const tracker::Block* b = opt_.index->find(p);
  return b ? b->summary() : tracker::BlockSummary{};
}

std::uint64_t Pager::access_count(std::uintptr_t p) const {
  return summary_of(p).count;
}

void Pager::mark_away(std::uintptr_t p, bool away) const {
  if (opt_.index == nullptr) return;
  auto lk = opt_.index->read_lock();
  if (tracker::Block* b = opt_.index->find(p); b != nullptr && b->addr() == p) b->set_away(away);
}

int Pager::block_streams(std::uintptr_t p, Arena* arena, prim::Stream* out, int cap) const {
  // Strict (or unknown): every stream the heap knows, the legacy stream first.
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 1> all;
  if (opt_.safety == Safety::kStrict || opt_.index == nullptr) {
    const int n = std::min(heap_.fence_streams(&all), cap);
    std::copy(all.begin(), all.begin() + n, out);
    return n;
  }
  tracker::BlockSummary s;
  {
    auto lk = opt_.index->read_lock();
    const tracker::Block* b = opt_.index->find(p);
    if (b == nullptr || b->summary().more_streams) {  // cannot say: every stream
      const int n = std::min(heap_.fence_streams(&all), cap);
      std::copy(all.begin(), all.begin() + n, out);
      return n;
    }
    s = b->summary();
  }
  int n = 0;
  out[n++] = arena->is_sync() ? nullptr : arena->stream();  // where it was allocated
  for (std::uint32_t i = 0; i < s.nstreams && n < cap; ++i) {
    auto st = reinterpret_cast<prim::Stream>(s.streams[i]);
    if (std::find(out, out + n, st) == out + n) out[n++] = st;
  }
  return n;
}

spillway_status Pager::order_after_users_locked(std::uintptr_t p, Arena* arena, prim::Stream s) {
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 1> streams;
  const int n = block_streams(p, arena, streams.data(), static_cast<int>(streams.size()));
  for (int i = 0; i < n; ++i) {
    if (streams[static_cast<std::size_t>(i)] == s) continue;
    prim::Event ev = get_event();
    if (ev == nullptr) return Fail(SPILLWAY_ERR_BACKEND, "spillway: no event for the pager");
    prim::Status st = backend_.event_record(device_, ev, streams[static_cast<std::size_t>(i)]);
    if (st.ok()) st = backend_.stream_wait_event(device_, s, ev);
    put_event(ev);  // reusable at once: a later record does not disturb the wait enqueued
    if (!st.ok()) return Fail(SPILLWAY_ERR_BACKEND, "spillway: ordering a move: " + st.message);
  }
  return SPILLWAY_OK;
}

spillway_status Pager::fence_cpu_locked(const Entry& e, prim::Stream extra, bool all) {
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 1> all_streams;
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 2> streams;
  int n = 0;
  if (all || opt_.safety == Safety::kStrict) {
    n = heap_.fence_streams(&all_streams);
    std::copy(all_streams.begin(), all_streams.begin() + n, streams.begin());
  } else {
    // Tracked: only if the tracker saw the block used since its data was copied out.
    if (access_count(e.p) != e.access_mark)
      n = block_streams(e.p, e.arena, streams.data(), DeviceHeap::kMaxArenas + 1);
  }
  if (extra != nullptr || n == 0) streams[static_cast<std::size_t>(n++)] = extra;
  const std::uint64_t t0 = MonotonicNs();
  for (int i = 0; i < n; ++i) {
    prim::Event ev = get_event();
    if (ev == nullptr) return Fail(SPILLWAY_ERR_BACKEND, "spillway: no event for the pager");
    prim::Status st = backend_.event_record(device_, ev, streams[static_cast<std::size_t>(i)]);
    if (st.ok()) st = backend_.event_synchronize(ev);
    put_event(ev);
    if (!st.ok()) return Fail(SPILLWAY_ERR_BACKEND, "spillway: fencing a block: " + st.message);
  }
  counters_.fence_waits.fetch_add(1, std::memory_order_relaxed);
  counters_.fence_wait_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  return SPILLWAY_OK;
}

// ---------------------------------------------------------------- moves

spillway_status Pager::evict_host_locked(std::uintptr_t p, Entry* e) {
  std::string why;
  std::vector<HostChunk> chunks;
  if (spillway_status s = acquire_host_locked(p, e->pages, &chunks, &why); s != SPILLWAY_OK) {
    error_locked(p, e->pages * gran_, trace::kErrHostLimit, s, why);
    return Fail(s, why);
  }
  // The copy runs after every use of the block enqueued so far.
  order_after_fetch_locked(p);
  if (spillway_status s = order_after_users_locked(p, e->arena, out_); s != SPILLWAY_OK) {
    host_->release(chunks);
    return s;
  }
  prim::Event done = get_out_event();
  if (done == nullptr) {
    host_->release(chunks);
    return Fail(SPILLWAY_ERR_BACKEND, "spillway: no event for the pager");
  }
  e->access_mark = access_count(p);
  if (prim::Status st = copy_pages(e->first, e->pages, chunks, true, done);
      !st.ok()) {  // copies may be queued: the chunks cannot be reused safely; keep them out
    out_events_.push_back(done);
    return Fail(SPILLWAY_ERR_BACKEND, "spillway: eviction copy failed: " + st.message);
  }
  Move m;
  m.id = next_move_++;
  m.out = true;
  m.p = p;
  m.bytes = e->pages * gran_;
  m.t0 = MonotonicNs();
  m.done = done;
  e->host = std::move(chunks);
  e->state = Residency::kMovingOut;
  mark_away(p, true);
  e->move = m.id;
  moves_.push_back(std::move(m));
  return SPILLWAY_OK;
}

void Pager::complete_locked(Move& m) {
  const std::uint64_t ns = MonotonicNs() - m.t0;
  if (!m.out) {  // a fetch: its host chunks are free now
    host_->release(m.host);
    // The copy wrote every page it brought back, the free rest of a span the block took with it
    // too (Arena::widen_to_spans_locked): only now may those bytes go to another block. (Freed
    // at the unmapping before, a block allocated there could be overwritten by the copy; a
    // speculative prefetch's copy is ordered before no stream.) Not when a block at this address
    // is away again (freed and allocated anew meanwhile, then evicted: its own claims).
    if (auto it = entries_.find(m.p);
        it == entries_.end() || it->second.state == Residency::kDevice)
      if (Arena* a = heap_.find(m.p)) {
        std::lock_guard<detail::SpinLock> lk(a->mu());
        a->unclaim_locked(m.p);
      }
    counters_.bytes_from_host.fetch_add(m.bytes, std::memory_order_relaxed);
    trace_move(trace::Kind::kFetch, m.p, m.bytes, ns, trace::kTierHost, trace::kTierDevice,
               m.demand);
    return;
  }
  auto it = entries_.find(m.p);
  Entry* e = it != entries_.end() && it->second.move == m.id ? &it->second : nullptr;
  if (m.fast) {  // the copy is done: the VA lets go of the chunks it handed to the heap
    if (e != nullptr && e->state == Residency::kHost) {
      std::vector<prim::PhysHandle> cur;
      {
        std::lock_guard<detail::SpinLock> lk(e->arena->mu());
        e->arena->page_handles_locked(e->first, e->pages, &cur);
      }
      if (cur == m.dev) {
        unmap_pages_locked(*e);
      }
    }
    counters_.evictions.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_to_host.fetch_add(m.bytes, std::memory_order_relaxed);
    trace_move(trace::Kind::kEvict, m.p, m.bytes, ns, trace::kTierDevice, trace::kTierHost, false);
    return;
  }
  if (m.cancelled || e == nullptr || e->state != Residency::kMovingOut) {
    if (e == nullptr || e->state != Residency::kMovingOut) host_->release(m.host);
    counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Used again after the copy started (tracker)? The copy may be stale: the block stays.
  if (opt_.safety == Safety::kTracked && access_count(m.p) != e->access_mark) {
    host_->release(e->host);
    entries_.erase(it);
    mark_away(m.p, false);
    counters_.cancelled.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (opt_.safety == Safety::kStrict) fence_cpu_locked(*e, nullptr, true);
  // Strict: the host chunks are mapped at the block's VA (a kernel the tracker cannot see still
  // reads the right data). Tracked: the VA is left unmapped; a launch that names the block
  // brings it back first, and both remaps (costlier than the copy) are saved.
  std::vector<prim::PhysHandle> in(e->pages, 0), old;
  std::vector<std::uint8_t> old_span;
  if (eager_host_map())
    for (std::size_t k = 0; k < e->pages; ++k) in[k] = e->host[k].handle;
  spillway_status s = swap_locked(*e, in.data(), true, &old, nullptr, &old_span);
  if (s != SPILLWAY_OK) {
    const std::string msg = LastError();
    host_->release(e->host);
    entries_.erase(it);
    mark_away(m.p, false);
    error_locked(m.p, m.bytes, trace::kErrHostLimit, s, msg);
    return;
  }
  return_device(old, old_span);
  e->state = Residency::kHost;
  e->mapped = eager_host_map();
  host_bytes_.fetch_add(m.bytes, std::memory_order_relaxed);
  counters_.evictions.fetch_add(1, std::memory_order_relaxed);
  counters_.bytes_to_host.fetch_add(m.bytes, std::memory_order_relaxed);
  trace_move(trace::Kind::kEvict, m.p, m.bytes, ns, trace::kTierDevice, trace::kTierHost, false);
}

void Pager::finish_fast_eviction_locked(std::uint64_t move) {
  // Copies finish in order, so polling completes it and those before.
  for (const Move& m : moves_)
    if (m.fast && m.id == move) {
      backend_.event_synchronize(m.done);
      poll_locked(false);
      return;
    }
}

void Pager::poll_locked(bool block) {
  while (!moves_.empty()) {
    Move& m = moves_.front();
    if (block) {
      backend_.event_synchronize(m.done);
    } else {
      bool done = false;
      if (!backend_.event_query(m.done, &done).ok() || !done) break;
    }
    Move done = std::move(m);
    moves_.pop_front();
    put_move_event(done);
    complete_locked(done);
  }
  set_active_locked();
}

spillway_status Pager::swap_locked(Entry& e, const prim::PhysHandle* in, bool host,
                                   std::vector<prim::PhysHandle>* old, const std::uint8_t* in_span,
                                   std::vector<std::uint8_t>* old_span) {
  const std::uint64_t t0 = MonotonicNs();
  std::vector<prim::PhysHandle> cur;
  std::vector<std::uint8_t> cur_span;
  {
    std::lock_guard<detail::SpinLock> lk(e.arena->mu());
    e.arena->page_handles_locked(e.first, e.pages, &cur, &cur_span);
  }
  const std::size_t n = e.pages;
  auto va = [&](std::size_t k) { return e.first + k * gran_; };
  // The driver calls, without the arena's lock (the pages belong to this live block alone and
  // the pager's lock keeps its free out). Their cost is per mapping, not per byte (on the H200
  // ~17 us to unmap and ~25 us to grant access, whether 2 MiB or 128 MiB): a span is one
  // mapping of the heap's span_pages() pages. Unmap what is there (one call when all of it is
  // mapped), map the new handles, then grant the device access per run of mapped pages.
  auto unit = [&](const std::uint8_t* sp, std::size_t k) {  // pages of the mapping at page k
    return sp != nullptr && sp[k] != 0 ? heap_.span_pages() : std::size_t{1};
  };
  auto unmap_all = [&](const std::vector<prim::PhysHandle>& hs) -> prim::Status {
    if (std::all_of(hs.begin(), hs.end(), [](prim::PhysHandle h) { return h != 0; }) &&
        backend_.unmap(e.first, n * gran_).ok())
      return prim::Status::Ok();
    for (std::size_t k = 0; k < n; k += unit(cur_span.data(), k))
      if (hs[k] != 0)
        if (prim::Status s = backend_.unmap(va(k), unit(cur_span.data(), k) * gran_); !s.ok())
          return s;
    return prim::Status::Ok();
  };
  auto map_all = [&](const prim::PhysHandle* hs, const std::uint8_t* sp) -> prim::Status {
    std::vector<std::size_t> made;  // pages where this call made a mapping
    prim::Status s = prim::Status::Ok();
    for (std::size_t k = 0; k < n && s.ok(); k += unit(sp, k))
      if (hs[k] != 0) {
        s = backend_.map(va(k), unit(sp, k) * gran_, hs[k]);
        if (s.ok()) made.push_back(k);
      }
    for (std::size_t r = 0; s.ok() && r < n;) {
      if (hs[r] == 0) {
        ++r;
        continue;
      }
      std::size_t end = r;
      while (end < n && hs[end] != 0) ++end;
      s = backend_.set_access(device_, va(r), (end - r) * gran_);
      r = end;
    }
    if (!s.ok())  // undo: unmap what this call mapped
      for (std::size_t k : made) backend_.unmap(va(k), unit(sp, k) * gran_);
    else
      counters_.pager_maps.fetch_add(made.size(), std::memory_order_relaxed);
    return s;
  };
  prim::Status s = unmap_all(cur);
  if (s.ok()) {
    s = map_all(in, in_span);
    if (!s.ok()) map_all(cur.data(), cur_span.data());  // the old memory goes back
  }
  counters_.remap_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  if (!s.ok())
    return Fail(SPILLWAY_ERR_BACKEND, "spillway: remapping " + Hex(e.p) + " failed: " + s.message);
  {
    std::lock_guard<detail::SpinLock> lk(e.arena->mu());
    e.arena->set_pages_locked(e.p, e.first, e.pages, in, host, in_span);
  }
  old->insert(old->end(), cur.begin(), cur.end());
  if (old_span != nullptr) old_span->insert(old_span->end(), cur_span.begin(), cur_span.end());
  return SPILLWAY_OK;
}

void Pager::return_device(const std::vector<prim::PhysHandle>& hs,
                          const std::vector<std::uint8_t>& span, prim::Event tag) {
  std::vector<prim::PhysHandle> chunks, spans;
  for (std::size_t k = 0; k < hs.size(); ++k) {
    if (hs[k] == 0) continue;
    if (k < span.size() && span[k] != 0) {
      if (spans.empty() || spans.back() != hs[k]) spans.push_back(hs[k]);  // once per span
    } else {
      chunks.push_back(hs[k]);
    }
  }
  if (!chunks.empty()) heap_.return_chunks(chunks, tag);
  if (!spans.empty()) heap_.return_spans(spans, tag);
}

spillway_status Pager::host_to_device_locked(Entry& e, prim::Stream s, bool demand, bool fenced,
                                             bool retried, bool speculative) {
  const std::uint64_t t0 = MonotonicNs();
  finish_fast_eviction_locked(e.move);  // its VA is about to be remapped
  // The host pages are about to be unmapped: no queued work may still read them.
  if (e.mapped && !fenced && !retried)
    if (spillway_status st = fence_cpu_locked(e, nullptr, false); st != SPILLWAY_OK) return st;
  // Spans for the aligned groups of span_pages() pages inside the block (one mapping each), chunks
  // for the other pages and for groups the heap has no span for.
  std::vector<prim::PhysHandle> dev(e.pages, 0), old;
  std::vector<std::uint8_t> span(e.pages, 0);
  std::vector<prim::Event> tags;  // evictions still reading chunks we were given
  spillway_status st = SPILLWAY_OK;
  {
    const std::uintptr_t sb = heap_.span_bytes();
    std::vector<std::size_t> heads;
    for (std::size_t k = 0; k + heap_.span_pages() <= e.pages; ++k)
      if ((e.first + k * gran_) % sb == 0) {
        heads.push_back(k);
        k += heap_.span_pages() - 1;
      }
    std::lock_guard<detail::SpinLock> lk(e.arena->mu());
    std::vector<prim::PhysHandle> spans, chunks;
    // SPILLWAY_OFFLOAD_DRAIN=last: a guess takes only free memory; otherwise evict first (the
    // retry below) before the heap waits for the GPU.
    SetAcquireMode(!drain_last_  ? AcquireMode::kAny
                   : speculative ? AcquireMode::kFreeOnly
                   : retried     ? AcquireMode::kAny
                                 : AcquireMode::kNoWait);
    if (!heads.empty() && heap_.spans())
      heap_.acquire_spans(e.arena, heads.size(), &spans, e.pages * gran_, &tags);
    for (std::size_t h = 0; h < spans.size(); ++h)
      for (std::size_t j = 0; j < heap_.span_pages(); ++j) {
        dev[heads[h] + j] = spans[h];
        span[heads[h] + j] = 1;
      }
    const auto rest = static_cast<std::size_t>(std::count(span.begin(), span.end(), 0));
    SetQuietOom(true);
    if (rest != 0) st = heap_.acquire_chunks(e.arena, rest, &chunks, rest * gran_, &tags);
    SetAcquireMode(AcquireMode::kAny);
    SetQuietOom(false);
    if (st == SPILLWAY_OK) {
      for (std::size_t k = 0, c = 0; k < e.pages; ++k)
        if (span[k] == 0) dev[k] = chunks[c++];
    } else {
      heap_.return_spans(spans);
    }
  }
  if (st == SPILLWAY_OK) {
    st = swap_locked(e, dev.data(), false, &old, span.data());
    if (st != SPILLWAY_OK) return_device(dev, span);
  }
  if (st == SPILLWAY_ERR_OUT_OF_MEMORY && speculative) return Fail(st, "no room to prefetch");
  if (st == SPILLWAY_ERR_OUT_OF_MEMORY && !retried) {  // make room, once
    // The evictions may need host chunks: this block's must not spill to NVMe meanwhile.
    const std::uintptr_t outer = no_spill_;
    no_spill_ = e.p;
    make_room_locked(e.pages * gran_, e.p);
    no_spill_ = outer;
    return host_to_device_locked(e, s, demand, fenced, true, speculative);
  }
  if (st == SPILLWAY_ERR_OUT_OF_MEMORY) {
    const std::string msg = "spillway: no device memory to bring " + Hex(e.p) + " back (" +
                            std::to_string(e.pages * gran_ >> 20) + " MiB): it stays on the host";
    error_locked(e.p, e.pages * gran_, trace::kErrDeviceFull, st, msg);
    return Fail(st, msg);
  }
  if (st != SPILLWAY_OK) return st;
  // Copy the data in (the host chunks keep it in the pool's window) on the copy stream, after
  // the evictions still reading the device chunks it was given.
  for (prim::Event t : tags) backend_.stream_wait_event(device_, copy_, t);
  Move m;
  m.id = next_move_++;
  m.p = e.p;
  m.bytes = e.pages * gran_;
  m.demand = demand;
  m.t0 = t0;
  m.done = get_copy_event();
  prim::Status cs = m.done ? copy_pages(e.first, e.pages, e.host, false, m.done)
                           : prim::Status{1, "no event could be created"};
  if (!cs.ok()) {  // the block is mapped to device memory whose content is wrong: say so
    std::fprintf(stderr, "spillway: copying %s back to the device failed: %s\n", Hex(e.p).c_str(),
                 cs.message.c_str());
    return Fail(SPILLWAY_ERR_BACKEND, "spillway: prefetch copy failed: " + cs.message);
  }
  // The users wait for the data: `s`, and the block's streams (tracked) or all (strict). A
  // speculative prefetch makes nobody wait now: the block stays marked away, and the launch that
  // names it next makes its stream wait for this copy (prefetch()).
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 2> streams;
  int n = speculative ? 0 : block_streams(e.p, e.arena, streams.data(), DeviceHeap::kMaxArenas + 1);
  if (!speculative && std::find(streams.begin(), streams.begin() + n, s) == streams.begin() + n)
    streams[static_cast<std::size_t>(n++)] = s;
  for (int i = 0; i < n; ++i)
    backend_.stream_wait_event(device_, streams[static_cast<std::size_t>(i)], m.done);
  m.host = std::move(e.host);
  host_bytes_.fetch_sub(m.bytes, std::memory_order_relaxed);
  counters_.fetches.fetch_add(1, std::memory_order_relaxed);
  if (demand)
    counters_.stalls.fetch_add(1, std::memory_order_relaxed);
  else
    counters_.prefetches.fetch_add(1, std::memory_order_relaxed);
  moves_.push_back(std::move(m));
  return SPILLWAY_OK;
}

// ---------------------------------------------------------------- public operations

spillway_status Pager::offload(std::uintptr_t p, trace::Tier to, bool wait) {
  if (to == trace::kTierDevice) {
    spillway_status s = prefetch(p, nullptr);
    if (s == SPILLWAY_OK && wait) s = synchronize();
    return s;
  }
  if (to != trace::kTierHost && to != trace::kTierNvme)
    return Fail(SPILLWAY_ERR_INVALID_VALUE, "spillway: unknown tier " + std::to_string(to));
  if (to == trace::kTierNvme && opt_.nvme == nullptr)
    return Fail(
        SPILLWAY_ERR_CONFIG,
        "spillway: the NVMe tier is off: set SPILLWAY_NVME_PATH to a directory on the disk");
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(false);
  auto it = entries_.find(p);
  Geometry g{};
  // A block on the device may take the rest of the spans it covers in part; one that is away
  // keeps the pages it left with, and so does one whose copy back is still writing its claimed
  // pages (widening would release the claim first: complete_locked releases it).
  const bool widen =
      (it == entries_.end() || it->second.state == Residency::kDevice) && !fetching_locked(p);
  if (spillway_status s = geometry(p, &g, widen); s != SPILLWAY_OK) return s;
  return offload_locked(p, g, to, wait);
}

void Pager::release_claim_locked(std::uintptr_t p, const Geometry& g) {
  if (!g.widened) return;  // geometry(widen) made no claim
  std::lock_guard<detail::SpinLock> lk(g.arena->mu());
  g.arena->unclaim_locked(p);
}

spillway_status Pager::offload_locked(std::uintptr_t p, const Geometry& g, trace::Tier to,
                                      bool wait) {
  auto it = entries_.find(p);
  if (it != entries_.end() && it->second.advice == Advice::kKeepOnDevice &&
      it->second.state == Residency::kDevice) {
    release_claim_locked(p, g);
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: " + Hex(p) + " was advised to stay on the device");
  }
  if (it == entries_.end()) it = entries_.emplace(p, Entry{}).first;
  Entry& e = it->second;
  e.p = p;
  if (e.state == Residency::kDevice) {  // away: the pages it left with
    e.arena = g.arena;
    e.first = g.first;
    e.pages = g.pages;
  }
  spillway_status s = SPILLWAY_OK;
  if (e.state == Residency::kDevice) {
    s = evict_host_locked(p, &e);
    if (s != SPILLWAY_OK) release_claim_locked(p, g);  // it stays: the rest of its spans too
    if (s == SPILLWAY_OK && g.widened) counters_.widened.fetch_add(1, std::memory_order_relaxed);
  }
  if (s == SPILLWAY_OK && e.state == Residency::kMovingOut && (wait || to == trace::kTierNvme)) {
    // Complete this eviction now (and those queued before it).
    while (e.state == Residency::kMovingOut && !moves_.empty()) {
      Move m = std::move(moves_.front());
      moves_.pop_front();
      backend_.event_synchronize(m.done);
      put_move_event(m);
      complete_locked(m);
      if (entries_.find(p) == entries_.end()) break;  // cancelled (used meanwhile)
    }
    if (entries_.find(p) == entries_.end()) {
      set_active_locked();
      return Fail(SPILLWAY_ERR_BUSY, "spillway: " + Hex(p) +
                                         " was used while it was being "
                                         "evicted; it stays on the device");
    }
  }
  if (s == SPILLWAY_OK && to == trace::kTierNvme && e.state == Residency::kHost)
    s = host_to_nvme_locked(e);
  if (e.state == Residency::kDevice && e.advice == Advice::kNone) entries_.erase(p);
  set_active_locked();
  return s;
}

spillway_status Pager::prefetch(std::uintptr_t p, prim::Stream stream, bool demand) {
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(false);
  // A copy back already in flight (a speculative prefetch): the user's stream waits for it.
  bool arriving = false;
  for (const Move& m : moves_)
    if (!m.out && m.p == p) {
      backend_.stream_wait_event(device_, stream, m.done);
      arriving = true;
    }
  if (demand && speculated_.erase(p) != 0)  // brought back ahead of this use: a hit
    counters_.prefetch_hits.fetch_add(1, std::memory_order_relaxed);
  if (demand && opt_.safety == Safety::kTracked) learn_and_prefetch_locked(p);
  auto it = entries_.find(p);
  if (it == entries_.end() || it->second.state == Residency::kDevice) {
    if (heap_.find(p) == nullptr) return not_owned(p);
    (void)arriving;
    mark_away(p, false);
    return SPILLWAY_OK;  // already there (or arriving, in order for `stream`)
  }
  Entry& e = it->second;
  const std::uint64_t t0 = MonotonicNs();
  spillway_status s = SPILLWAY_OK;
  if (e.state == Residency::kMovingOut) cancel_eviction_locked(e, stream);
  if (e.state == Residency::kNvme) s = nvme_to_host_locked(e, true);
  if (s == SPILLWAY_OK && e.state == Residency::kHost) {
    s = host_to_device_locked(e, stream, demand);
    if (s == SPILLWAY_OK) e.state = Residency::kDevice;
  }
  if (s != SPILLWAY_OK && demand && e.state == Residency::kHost && !e.mapped) {
    // The launch runs either way: it gets the host pages at the block's VA (read over the
    // link, as in strict mode) rather than an unmapped range.
    map_host_locked(e);
  }
  keep_strict_mapping_locked(e);
  if (e.state == Residency::kDevice) mark_away(p, false);
  if (demand && s == SPILLWAY_OK)
    counters_.stall_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  if (e.state == Residency::kDevice && e.advice == Advice::kNone) entries_.erase(p);
  set_active_locked();
  return s;
}

spillway_status Pager::access_in_place(std::uintptr_t p, prim::Stream stream) {
  const tracker::BlockSummary sum = summary_of(p);
  if (opt_.safety != Safety::kTracked || !sum.streamed_only) return prefetch(p, stream, true);
  std::unique_lock<std::mutex> lk(mu_);
  poll_locked(false);
  auto it = entries_.find(p);
  if (it != entries_.end() && it->second.state == Residency::kHost &&
      wanted_back_locked(sum, it->second.pages * gran_)) {
    counters_.in_place_returns.fetch_add(1, std::memory_order_relaxed);
    lk.unlock();
    return prefetch(p, stream, true);
  }
  if (it == entries_.end() || it->second.state != Residency::kHost) {
    // On the device, arriving or leaving: as a demand. On NVMe too: it would hold host chunks
    // for as long as the launch runs, and a launch's blocks may not all fit in the host tier
    // (found on the H200 with a 4 GiB host tier: a foreach launch's states pushed each other
    // back to disk); through the host to the device, the chunks are released as each copy ends.
    lk.unlock();
    return prefetch(p, stream, true);
  }
  if (!it->second.mapped) {  // map the host chunks at the VA (the launch waits: a stall)
    const std::uint64_t t0 = MonotonicNs();
    finish_fast_eviction_locked(it->second.move);  // it unmaps the device chunks there
    it = entries_.find(p);
    if (it == entries_.end() || it->second.state != Residency::kHost) {
      lk.unlock();
      return prefetch(p, stream, true);
    }
    map_host_locked(it->second);
    if (!it->second.mapped) {
      lk.unlock();
      return prefetch(p, stream, true);  // said by swap_locked's failure; a copy back instead
    }
    counters_.in_place_maps.fetch_add(1, std::memory_order_relaxed);
    counters_.stalls.fetch_add(1, std::memory_order_relaxed);
    counters_.stall_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  }
  it->second.in_place = true;
  // The kernel about to be enqueued writes the host pages, and its access is already counted:
  // a mark that no count equals makes every later unmap or copy of them wait for the block's
  // streams (fence_cpu_locked), whatever was marked before.
  it->second.access_mark = ~std::uint64_t{0};
  counters_.in_place.fetch_add(1, std::memory_order_relaxed);
  set_active_locked();
  return SPILLWAY_OK;  // still marked away: every launch that names it asks again
}

void Pager::cancel_eviction_locked(Entry& e, prim::Stream stream) {
  // Not gone yet: the block stays. Its copy still reads it, so the streams that may write it
  // next (`stream`, and the block's users) wait for that copy first; its result is dropped.
  for (Move& m : moves_) {
    if (m.id != e.move) continue;
    m.cancelled = true;
    m.host = std::move(e.host);
    std::array<prim::Stream, DeviceHeap::kMaxArenas + 2> streams;
    int n = block_streams(e.p, e.arena, streams.data(), DeviceHeap::kMaxArenas + 1);
    streams[static_cast<std::size_t>(n++)] = stream;
    for (int i = 0; i < n; ++i)
      backend_.stream_wait_event(device_, streams[static_cast<std::size_t>(i)], m.done);
  }
  e.host.clear();
  e.state = Residency::kDevice;
}

spillway_status Pager::prefetch_many(const std::uintptr_t* ps, std::size_t n, prim::Stream stream) {
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(false);
  spillway_status first_error = SPILLWAY_OK;
  auto note = [&](spillway_status st) {
    if (first_error == SPILLWAY_OK) first_error = st;
  };
  std::vector<Entry*> back;
  for (std::size_t i = 0; i < n; ++i) {
    auto it = entries_.find(ps[i]);
    if (it == entries_.end()) {
      if (heap_.find(ps[i]) == nullptr) note(not_owned(ps[i]));
      continue;
    }
    Entry& e = it->second;
    if (e.state == Residency::kMovingOut) cancel_eviction_locked(e, stream);
    if (e.state == Residency::kNvme)
      if (spillway_status st = nvme_to_host_locked(e, true); st != SPILLWAY_OK) note(st);
    if (e.state == Residency::kHost) back.push_back(&e);
  }
  // One fence for all (strict); tracked mode fences each block only if it was used meanwhile.
  bool fenced = false;
  if (!back.empty() && opt_.safety == Safety::kStrict) {
    if (spillway_status st = fence_cpu_locked(*back.front(), nullptr, true); st != SPILLWAY_OK) {
      for (Entry* e : back) keep_strict_mapping_locked(*e);  // they stay on the host
      return st;
    }
    fenced = true;
  }
  for (Entry* e : back) {
    spillway_status st = host_to_device_locked(*e, stream, false, fenced);
    if (st == SPILLWAY_OK)
      e->state = Residency::kDevice;
    else
      note(st);
    keep_strict_mapping_locked(*e);
  }
  for (std::size_t i = 0; i < n; ++i)
    if (auto it = entries_.find(ps[i]);
        it == entries_.end() || it->second.state == Residency::kDevice)
      mark_away(ps[i], false);
  std::erase_if(entries_, [](const auto& kv) {
    return kv.second.state == Residency::kDevice && kv.second.advice == Advice::kNone;
  });
  set_active_locked();
  return first_error;
}

void Pager::go_strict() {
  std::lock_guard<std::mutex> lk(mu_);
  if (opt_.safety == Safety::kStrict) return;
  poll_locked(true);
  opt_.safety = Safety::kStrict;
  std::fprintf(stderr,
               "spillway: a kernel launch's pointers are unknown to the tracker (arguments it "
               "could not decode, or an NCCL kernel): offload safety is strict from now on\n");
  for (auto& [p, e] : entries_) {
    if (e.state != Residency::kHost || e.mapped) continue;
    map_host_locked(e);
  }
}

void Pager::map_host_locked(Entry& e) {
  std::vector<prim::PhysHandle> in, old;
  for (const HostChunk& c : e.host) in.push_back(c.handle);
  if (swap_locked(e, in.data(), true, &old) == SPILLWAY_OK) e.mapped = true;
}

void Pager::keep_strict_mapping_locked(Entry& e) {
  if (eager_host_map() && e.state == Residency::kHost && !e.mapped) map_host_locked(e);
}

spillway_status Pager::advise(std::uintptr_t p, Advice a) {
  if (a != Advice::kNone && a != Advice::kKeepOnDevice && a != Advice::kEvictFirst)
    return Fail(SPILLWAY_ERR_INVALID_VALUE,
                "spillway: unknown advice " + std::to_string(static_cast<int>(a)));
  Geometry g{};
  if (spillway_status s = geometry(p, &g); s != SPILLWAY_OK) return s;
  std::lock_guard<std::mutex> lk(mu_);
  auto it = entries_.find(p);
  if (it == entries_.end()) {
    if (a == Advice::kNone) return SPILLWAY_OK;
    Entry e;
    e.p = p;
    e.arena = g.arena;
    e.first = g.first;
    e.pages = g.pages;
    it = entries_.emplace(p, std::move(e)).first;
  }
  it->second.advice = a;
  if (a == Advice::kNone && it->second.state == Residency::kDevice) entries_.erase(it);
  set_active_locked();
  return SPILLWAY_OK;
}

Residency Pager::residency(std::uintptr_t p) {
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(false);
  auto it = entries_.find(p);
  return it == entries_.end() ? Residency::kDevice : it->second.state;
}

bool Pager::readable(std::uintptr_t p) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = entries_.find(p);
  if (it == entries_.end()) return true;
  const Entry& e = it->second;
  return e.state == Residency::kDevice || e.state == Residency::kMovingOut ||
         (e.state == Residency::kHost && e.mapped);
}

spillway_status Pager::free_block(Arena* arena, std::uintptr_t p, FreeMode mode,
                                  prim::Stream stream) {
  std::lock_guard<std::mutex> lk(mu_);
  if (spillway_status s = before_free_locked(p, mode, stream); s != SPILLWAY_OK) return s;
  return arena->free_block(p, mode, stream);
}

spillway_status Pager::before_free_locked(std::uintptr_t p, FreeMode mode, prim::Stream stream) {
  speculated_.erase(p);
  // A copy back still writing the block: the free (and so any reuse) comes after it.
  for (Move& m : moves_) {
    if (m.out || m.p != p) continue;
    if (mode == FreeMode::kStreamOrdered)
      backend_.stream_wait_event(device_, stream, m.done);
    else
      backend_.event_synchronize(m.done);
  }
  auto it = entries_.find(p);
  if (it == entries_.end()) return SPILLWAY_OK;
  if (it->second.state == Residency::kHost && !it->second.mapped) {
    // A fast eviction's copy may still read the VA, which still maps chunks the heap handed on:
    // let it finish (and the VA let go of them) before the arena sees the block free.
    for (const Move& m : moves_)
      if (m.fast && m.id == it->second.move) {
        poll_locked(true);
        break;
      }
    it = entries_.find(p);
    if (it == entries_.end()) return SPILLWAY_OK;
  }
  Entry& e = it->second;
  const std::uint64_t bytes = e.pages * gran_;
  switch (e.state) {
    case Residency::kDevice:
      break;
    case Residency::kMovingOut:  // the copy's result is not wanted, but it still reads the
      for (Move& m : moves_)     // block: whoever reuses the memory comes after it
        if (m.id == e.move) {
          m.cancelled = true;
          m.host = std::move(e.host);
          if (mode == FreeMode::kStreamOrdered)
            backend_.stream_wait_event(device_, stream, m.done);
          else
            backend_.event_synchronize(m.done);
        }
      break;
    case Residency::kHost: {
      if (e.mapped) {
        // Work enqueued before the free may still read the host pages: wait for it.
        Entry fence = e;
        fence.access_mark = ~std::uint64_t{0};  // tracked: always fence the block's streams
        fence_cpu_locked(fence, mode == FreeMode::kStreamOrdered ? stream : nullptr,
                         mode == FreeMode::kSynchronous);
        spillway_status s = unmap_pages_locked(e);
        if (s != SPILLWAY_OK) return s;  // the block stays allocated: nothing is lost
      }
      host_->release(e.host);
      host_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
      break;
    }
    case Residency::kNvme:
      opt_.nvme->release(e.slot);
      nvme_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
      break;
  }
  entries_.erase(it);
  set_active_locked();
  return SPILLWAY_OK;
}

spillway_status Pager::synchronize() {
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(true);
  return SPILLWAY_OK;
}

void Pager::poll() {
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(false);
}

}  // namespace spillway::offload
