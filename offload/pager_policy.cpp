// pager_policy.cpp — what the pager moves and when (see pager.h): progress fences and fast
// eviction, the choice of victims (make_room, by offload/next_use.h) and the learned prefetch
// order. The mechanism of each move is in pager.cpp.
#include <algorithm>
#include <array>
#include <cinttypes>
#include <climits>
#include <cstdio>

#include "allocator/device_heap.h"
#include "allocator/error.h"
#include "offload/next_use.h"
#include "offload/pager.h"
#include "profiler/clock.h"
#include "profiler/trace_writer.h"
#include "profiler/tracker/block_index.h"
#include "profiler/tracker/tracker.h"

namespace spillway::offload {

void Pager::poll_progress_locked() {
  while (!progress_.empty()) {
    bool done = false;
    if (!backend_.event_query(progress_.front().ev, &done).ok() || !done) return;
    std::uint64_t& d = done_seq_[progress_.front().stream];
    d = std::max(d, progress_.front().seq);
    put_event(progress_.front().ev);
    progress_.pop_front();
  }
}

void Pager::record_progress_locked(std::uint64_t seq) {
  if (seq == 0 || progress_.size() >= 256) return;
  std::array<prim::Stream, DeviceHeap::kMaxArenas + 1> streams;
  const int n = heap_.fence_streams(&streams);
  for (int i = 0; i < n; ++i) {
    const prim::Stream s = streams[static_cast<std::size_t>(i)];
    prim::Event ev = get_event();
    if (ev == nullptr) return;
    if (!backend_.event_record(device_, ev, s).ok()) {
      put_event(ev);
      return;
    }
    progress_.push_back({ev, s, seq});
  }
}

bool Pager::users_done_locked(const tracker::BlockSummary& s) const {
  if (s.more_streams) return false;
  for (std::uint32_t i = 0; i < s.nstreams; ++i) {
    auto it = done_seq_.find(reinterpret_cast<prim::Stream>(s.streams[i]));
    if (it == done_seq_.end() || it->second < s.last_seq) return false;
  }
  return true;
}

bool Pager::mark_unless_used_locked(std::uintptr_t p, std::uint64_t count) {
  // Mark first, then look at the count (under the block's lock, as launches record): a launch
  // either saw the mark (and will wait for the block to come back) or is counted here.
  mark_away(p, true);
  if (access_count(p) == count) return true;
  mark_away(p, false);
  return false;
}

bool Pager::fast_evict_locked(std::uintptr_t p, const Geometry& g, std::uint64_t count,
                              bool after_users) {
  if (entries_.count(p) != 0) return false;
  std::string why;
  std::vector<HostChunk> chunks;
  if (acquire_host_locked(p, g.pages, &chunks, &why) != SPILLWAY_OK) {
    error_locked(p, g.pages * gran_, trace::kErrHostLimit, SPILLWAY_ERR_OUT_OF_MEMORY, why);
    return false;
  }
  if (!mark_unless_used_locked(p, count)) {
    host_->release(chunks);
    return false;
  }
  // Ordered after the users: a launch that names the block from now on sees the mark and
  // brings it back after this copy (host_to_device_locked finishes it first).
  if ((after_users || g.after_arena) && order_after_users_locked(p, g.arena, out_) != SPILLWAY_OK) {
    mark_away(p, false);
    host_->release(chunks);
    return false;
  }
  prim::Event done = get_out_event();
  if (done == nullptr) {
    mark_away(p, false);
    host_->release(chunks);
    return false;
  }
  order_after_fetch_locked(p);
  if (!copy_pages(g.first, g.pages, chunks, true, done)
           .ok()) {  // copies may be queued: keep the chunks out of circulation
    mark_away(p, false);
    out_events_.push_back(done);
    return false;
  }
  std::vector<prim::PhysHandle> dev;
  std::vector<std::uint8_t> span;
  {
    std::lock_guard<detail::SpinLock> lk(g.arena->mu());
    g.arena->page_handles_locked(g.first, g.pages, &dev, &span);
  }
  return_device(dev, span, done);  // reusable now: whoever takes them waits for the copy
  Entry e;
  e.p = p;
  e.arena = g.arena;
  e.first = g.first;
  e.pages = g.pages;
  e.state = Residency::kHost;
  e.mapped = false;
  e.host = std::move(chunks);
  e.access_mark = count;
  Move m;
  m.id = next_move_++;
  m.out = true;
  m.fast = true;
  m.p = p;
  m.bytes = g.pages * gran_;
  m.t0 = MonotonicNs();
  m.done = done;
  m.dev = std::move(dev);
  e.move = m.id;
  entries_.emplace(p, std::move(e));
  moves_.push_back(std::move(m));
  host_bytes_.fetch_add(g.pages * gran_, std::memory_order_relaxed);
  counters_.fast_evictions.fetch_add(1, std::memory_order_relaxed);
  if (after_users) counters_.ordered_evictions.fetch_add(1, std::memory_order_relaxed);
  if (g.widened) counters_.widened.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Pager::learn_and_prefetch_locked(std::uintptr_t p) {
  // Launches ask for evicted blocks in the order of the last iteration (the caching of
  // addresses makes an iteration's blocks reappear at the same addresses): remember which block
  // was asked for after which, and bring the next few back ahead, with memory that is free
  // (no eviction for a guess).
  if (last_demand_ != 0 && last_demand_ != p) next_after_[last_demand_] = p;
  last_demand_ = p;
  std::uintptr_t q = p;
  for (int k = 0; k < lookahead_; ++k) {
    auto n = next_after_.find(q);
    if (n == next_after_.end()) break;
    q = n->second;
    if (q == p) break;
    auto it = entries_.find(q);
    // A block used where it lies (access_in_place) is not wanted back.
    if (it == entries_.end() || it->second.state != Residency::kHost || it->second.in_place)
      continue;
    Entry& e = it->second;
    if (host_to_device_locked(e, nullptr, false, false, false, true) != SPILLWAY_OK) break;
    e.state = Residency::kDevice;  // arriving; still marked away until a launch names it
    entries_.erase(it);
    speculated_.insert(q);
  }
}

std::uint64_t Pager::make_room(std::uint64_t bytes, std::uintptr_t except) {
  const std::uint64_t t0 = MonotonicNs();
  std::lock_guard<std::mutex> lk(mu_);
  poll_locked(false);
  const std::uint64_t got = make_room_locked(bytes, except);
  counters_.make_room_ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  return got;
}

std::vector<Pager::Victim> Pager::victims_locked(std::uintptr_t except, std::uint64_t* newest_out) {
  std::vector<Victim> cands;
  heap_.for_each_large_block([&](std::uintptr_t p, std::size_t size) {
    if (p != except && size >= 2 * gran_) cands.push_back({p, size, 0, false, {}});
  });
  if (opt_.index != nullptr) {
    auto lk = opt_.index->read_lock();
    // Tracked: a block the index does not hold cannot be brought back by a launch (no away
    // mark reaches it); one being allocated on another thread is in that state until the
    // Allocator adds it. Not a victim.
    const bool tracked = opt_.safety == Safety::kTracked;
    std::erase_if(cands, [&](Victim& c) {
      const tracker::Block* b = opt_.index->find(c.p);
      if (b == nullptr) return tracked;
      c.sum = b->summary();
      c.last = c.sum.last_seq;
      return false;
    });
  }
  // Inside an operation being issued (a launch whose other blocks are being brought back), its
  // blocks (the newest access) must stay: it is not enqueued yet, and an eviction ordered after
  // the work enqueued so far would not wait for it. Outside one (an allocation), the newest
  // operation is enqueued and its blocks may go like any other (the copy waits for it): a launch
  // naming more than the budget (a foreach optimizer's) must not pin everything it named.
  std::uint64_t newest = 0;
  for (const Victim& c : cands) newest = std::max(newest, c.last);
  if (newest != 0 && tracker::Issuing())
    std::erase_if(cands, [&](const Victim& c) { return c.last == newest; });
  for (Victim& c : cands)
    if (auto it = entries_.find(c.p); it != entries_.end())
      c.first = it->second.advice == Advice::kEvictFirst;
  std::erase_if(cands, [&](const Victim& c) {
    if (fetching_locked(c.p)) return true;  // being brought back (a prefetch): not a victim
    auto it = entries_.find(c.p);
    return it != entries_.end() &&
           (it->second.state != Residency::kDevice || it->second.advice == Advice::kKeepOnDevice);
  });
  // Advised first; then the block whose next use is furthest away (NextUseDistance), largest
  // first among equals (and without a tracker, where nothing is known).
  for (Victim& c : cands) c.dist = NextUseDistance(c.sum, newest);
#ifdef SPILLWAY_DIAG_VICTIM_LRU  // diagnostic builds only: least recently used, as before
  for (Victim& c : cands)
    c.dist = c.last == 0 ? INT64_MAX : static_cast<std::int64_t>(newest - c.last);
#endif
  std::sort(cands.begin(), cands.end(), [](const Victim& a, const Victim& b) {
    if (a.first != b.first) return a.first;
    if (a.dist != b.dist) return a.dist > b.dist;
    return a.size > b.size;
  });
  if (newest_out != nullptr) *newest_out = newest;
  return cands;
}

bool Pager::wanted_back_locked(const tracker::BlockSummary& s, std::uint64_t bytes) {
  if (s.longest_period == 0 || s.last_seq == 0) return false;  // used in one burst so far
  if (victim_order_.empty() || s.last_seq < victim_order_seq_ ||
      s.last_seq - victim_order_seq_ > tracker::kBurstGap / 2) {
    victim_order_.clear();
    std::uint64_t sum = 0;
    for (const Victim& v : victims_locked(s.addr, nullptr)) {
      if (v.first) continue;  // advised: gone first either way, says nothing of next uses
      sum += v.size;
      victim_order_.emplace_back(sum, v.dist);
    }
    victim_order_seq_ = s.last_seq;
  }
  // The victim that would complete the room: needed later than this block is needed again
  // (return_uses_ times)?
  for (const auto& [so_far, dist] : victim_order_)
    if (so_far >= bytes)
      return static_cast<double>(dist) > return_uses_ * static_cast<double>(s.longest_period);
  return false;  // not enough to evict: it stays where it lies
}

std::uint64_t Pager::make_room_locked(std::uint64_t bytes, std::uintptr_t except) {
  victim_order_.clear();  // residency changes below
  std::uint64_t newest = 0;
  std::vector<Victim> cands = victims_locked(except, &newest);
  // Tracked mode: a victim whose last use is known done (progress fences) is evicted without any
  // wait: its chunks go to the heap at once, tagged with the copy. So is one whose uses are all
  // enqueued (the issued watermark), with its copy ordered after them on the GPU: the CPU does
  // not wait for the GPU to drain (which left the GPU idle while the CPU then remapped). Every
  // other victim's copy is queued after its users, then all of those are completed at once (one
  // wait, not one each).
  const bool tracked = opt_.safety == Safety::kTracked && opt_.index != nullptr;
  std::uint64_t issued = 0;
  bool have_issued = false;
  if (tracked) {
    poll_progress_locked();
    // Tagged with the newest operation known to be enqueued, not `newest`: that one (the launch
    // being issued) is enqueued after the fence, so the fence says nothing of it.
    have_issued = tracker::IssuedWatermark(&issued);
    if (have_issued) record_progress_locked(issued);
  }
  std::uint64_t freed = 0, queued = 0;
  std::vector<std::uintptr_t> victims;
  auto evict_from = [&](const std::vector<Victim>& cs) {
    for (const Victim& c : cs) {
      if (freed + queued >= bytes) return;
      // Every use enqueued (the block's own operations are at or below the watermark; the one
      // being issued on this thread is never a victim, victims_locked).
      const bool done = tracked && users_done_locked(c.sum);
      const bool enqueued =
          tracked && have_issued && c.sum.last_seq != 0 && c.sum.last_seq <= issued;
      // A use recorded but perhaps not enqueued yet (another thread's launch between its record
      // and its enqueue): the slow path's copy would be ordered before it, and the completion's
      // count check would not see it (it was counted before). Not a victim now; decided before
      // geometry() widens the block, which claims the free rest of its spans.
      if (tracked && !done && !enqueued) continue;
      Geometry g{};
      if (geometry(c.p, &g, true) != SPILLWAY_OK) continue;
      if (tracked) {
        if (fast_evict_locked(c.p, g, c.sum.count, !done)) {
          freed += g.pages * gran_;
          continue;
        }
        // The fast path failed, perhaps because a use was counted since the candidates were read
        // (a launch on another thread, perhaps not enqueued yet): the slow path would order its
        // copy before that launch. So it takes the block under the same protocol.
        if (!mark_unless_used_locked(c.p, c.sum.count)) {
          release_claim_locked(c.p, g);
          continue;
        }
      }
      if (offload_locked(c.p, g, trace::kTierHost, false) == SPILLWAY_OK) {
        queued += g.pages * gran_;
        victims.push_back(c.p);
      } else if (tracked) {
        mark_away(c.p, false);
      }
    }
  };
  evict_from(cands);
  // Short of room while copies back are in flight: their blocks were no victims (speculative
  // prefetches take free memory, maybe just before this allocation). Complete those copies (a
  // CPU wait, on this rare path) and look once more, rather than fail the allocation.
  if (freed + queued < bytes &&
      std::any_of(moves_.begin(), moves_.end(), [](const Move& m) { return !m.out; })) {
    poll_locked(true);
    if (tracked) {
      poll_progress_locked();
      have_issued = tracker::IssuedWatermark(&issued);
    }
    evict_from(victims_locked(except, &newest));
  }
  if (victims.empty()) return freed;
  poll_locked(true);
  for (std::uintptr_t p : victims)
    if (auto it = entries_.find(p); it != entries_.end() && it->second.state == Residency::kHost)
      freed += it->second.pages * gran_;
  return freed;
}

}  // namespace spillway::offload
