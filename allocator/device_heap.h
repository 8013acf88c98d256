// device_heap.h — everything Spillway holds for one device: its arenas (one per stream, plus
// the synchronous arena of cudaMalloc), the pool of loose physical chunks, the budget on
// reserved memory, statistics, and the out-of-memory report.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "allocator/arena.h"
#include "allocator/prim/backend.h"
#include "allocator/stats.h"

namespace spillway {

namespace trace {
class TraceWriter;
}

// While set on a thread, running out of memory in acquire_chunks neither prints the state
// report nor counts an OOM: the pager asks first and evicts before the allocation fails.
void SetQuietOom(bool quiet);
// What acquire_chunks / acquire_spans may do on this thread to find memory (the pager sets it
// with SPILLWAY_OFFLOAD_DRAIN=last): kAny, everything, up to waiting for the streams (the last
// resort); kNoWait, everything but that wait (the pager evicts first, with no CPU wait, and asks
// again with kAny); kFreeOnly, only memory that costs nothing to take (loose, new within the
// budget, idle pages known done): no cached block dropped, nothing released, no wait (a
// speculative prefetch).
enum class AcquireMode { kAny, kNoWait, kFreeOnly };
void SetAcquireMode(AcquireMode mode);

class DeviceHeap {
 public:
  static constexpr int kMaxArenas = 64;

  DeviceHeap(prim::Backend& backend, int device);
  ~DeviceHeap();
  DeviceHeap(const DeviceHeap&) = delete;
  DeviceHeap& operator=(const DeviceHeap&) = delete;

  // Reads device size and granularity and applies the budget (0 = none) and the reserve
  // policy (Config::compact).
  // `spans`: map aligned groups of pages of `span_bytes` with spans (Config::spans, span_mib;
  // a power-of-two multiple of at least two pages, else SPILLWAY_ERR_CONFIG).
  spillway_status init(std::uint64_t budget_bytes, bool compact, bool spans,
                       std::uint64_t span_bytes);
  bool spans() const { return spans_; }

  // The arena of a stream (created on first use), or the synchronous arena.
  spillway_status arena_for(prim::Stream stream, bool sync, Arena** out);
  // The arena whose VA range holds p, or nullptr.
  Arena* find(std::uintptr_t p) const;

  // Physical chunks for `self` (whose lock the caller holds): loose pool; new chunks within the
  // growth allowance; idle pages of this device whose last use finished; with the compact
  // policy, idle pages of `self` after waiting for their fences; new chunks within the budget;
  // then the arenas' cached blocks dropped and their idle pages known done; then waiting for
  // every stream. All or nothing. SetAcquireMode stops it earlier.
  // Chunks from the loose pool may carry tags (return_chunks): self's stream waits for them, or,
  // with `tags_out`, they are handed to the caller instead (who orders its own stream).
  spillway_status acquire_chunks(Arena* self, std::size_t k, std::vector<prim::PhysHandle>* out,
                                 std::size_t request_bytes,
                                 std::vector<prim::Event>* tags_out = nullptr);
  // `tag`: an event that must complete before the chunks' contents may change (the pager's copy
  // still reading them): whoever takes them makes its stream wait for it (no CPU wait). Tags are
  // events recorded only on the pager's copy stream, so a later record of the same event waits
  // longer, never less.
  void return_chunks(const std::vector<prim::PhysHandle>& chunks, prim::Event tag = nullptr);
  void forget_tags();  // every tagged copy is known done (the pager is going away)
  // Spans (arena.h: span_pages() pages in one physical allocation, mapped with one call): up to
  // `m` of them for `self` (whose lock the caller holds): loose spans; new ones within the growth
  // allowance; idle spans of the arenas; new ones within the budget, after releasing loose
  // chunks to make room for them. Never fails: returns how many it got (the caller maps the rest
  // with chunks). Tags as acquire_chunks.
  std::size_t acquire_spans(Arena* self, std::size_t m, std::vector<prim::PhysHandle>* out,
                            std::size_t request_bytes,
                            std::vector<prim::Event>* tags_out = nullptr);
  void return_spans(const std::vector<prim::PhysHandle>& spans, prim::Event tag = nullptr);
  std::size_t span_bytes() const { return gran_ * span_pages_; }
  std::size_t span_pages() const { return span_pages_; }
  // fn(address, rounded size) for every live large block of every arena (each arena's lock is
  // taken in turn; the pager's choice of victims).
  template <class F>
  void for_each_large_block(F&& fn) {
    const int n = n_arenas_.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
      Arena* a = arenas_[static_cast<std::size_t>(i)].get();
      std::lock_guard<detail::SpinLock> lk(a->mu());
      a->for_each_large_locked(fn);
    }
  }
  // Streams to fence for cudaFree semantics (legacy stream first). Returns the count.
  int fence_streams(std::array<prim::Stream, kMaxArenas + 1>* out) const;

  spillway_status set_budget(std::uint64_t bytes);
  spillway_status trim(std::uint64_t keep_bytes);
  // One-screen state; `held` is an arena whose lock the caller holds (or nullptr).
  std::string report(std::size_t failed_request, Arena* held) const;

  prim::Backend& backend() { return backend_; }
  int device() const { return device_; }
  std::size_t granularity() const { return gran_; }
  std::uint64_t budget() const { return budget_.load(std::memory_order_relaxed); }
  std::uint64_t total_memory() const { return total_; }
  DeviceStats& stats() { return stats_; }
  // Where physical-memory events go (SPILLWAY_TRACE), or nullptr. Set before first use.
  void set_trace(trace::TraceWriter* t) { trace_ = t; }
  trace::TraceWriter* trace() const { return trace_; }
  const DeviceStats& stats() const { return stats_; }
  void snapshot(spillway_stats* s) const;
  // What the reserved memory is made of, summed over the arenas (each arena's lock taken in
  // turn), and the loose pools' bytes.
  struct Held {
    Arena::Summary arenas;  // the byte counts of every arena added up (mapped, idle, cached,
                            // spans); the extent, pending and slab fields are left 0
    std::uint64_t loose_chunk_bytes, loose_span_bytes;
  };
  Held held() const;

 private:
  bool create_chunk(prim::PhysHandle* h, std::string* why, std::size_t size = 0);  // 0: gran_
  // Releases loose memory of the other kind to make room under the budget: `bytes` of loose
  // chunks (for a span) or of loose spans (for chunks), waiting for their tags. Returns bytes
  // released. Caller holds no heap lock.
  std::uint64_t shed_loose(bool spans, std::uint64_t bytes);
  // Idle spans of `self` and then of the other arenas (try-locked), released to the driver so
  // that chunks can be created in their place. Returns bytes released.
  std::uint64_t shed_idle_spans(Arena* self, std::size_t want, bool block);
  std::uint64_t release_spans(const std::vector<prim::PhysHandle>& spans);  // to the driver
  // Up to `want` idle spans of `self`, then of the other arenas (try-locked), appended to *out.
  void steal_spans(Arena* self, std::size_t want, bool block, std::vector<prim::PhysHandle>* out);
  // Spans whose pages cover `chunks` chunks.
  std::size_t spans_for(std::size_t chunks) const {
    return (chunks + span_pages_ - 1) / span_pages_;
  }
  // Reserved memory may grow without reusing idle pages while it stays under this (a small
  // margin over the most ever allocated, or over what is allocated plus the request).
  std::uint64_t allowance(std::size_t request_bytes) const;
  // Tags of pooled memory handed to `self`: to *tags_out, or else `self`'s stream waits for them.
  void hand_tags(Arena* self, const std::vector<prim::Event>& tags,
                 std::vector<prim::Event>* tags_out);
  // Idle pages of the other arenas (try-locked); `block`: after waiting for their frees and
  // dropping their caches; `flush`: after dropping their caches only.
  std::size_t steal_from_others(Arena* self, std::size_t want, bool block,
                                std::vector<prim::PhysHandle>* out, bool flush = false);

  prim::Backend& backend_;
  const int device_;
  std::size_t gran_ = 0;
  std::uint64_t total_ = 0;
  std::size_t arena_va_ = 0;
  std::atomic<std::uint64_t> budget_{0};
  bool compact_ = false;
  bool spans_ = true;
  std::size_t span_pages_ = 0;  // set by init
  trace::TraceWriter* trace_ = nullptr;
  DeviceStats stats_;

  mutable std::mutex mu_;  // arenas_ growth, loose_
  std::array<std::unique_ptr<Arena>, kMaxArenas> arenas_;
  std::atomic<int> n_arenas_{0};
  // Loose pools, oldest at the front: memory is taken (and released) oldest first, so that a
  // block coming back gets memory whose eviction copy was queued earliest (done, or ahead on the
  // eviction stream), not the one being queued now: its copy then need not wait for that one.
  std::deque<prim::PhysHandle> loose_;
  std::deque<prim::Event> loose_tag_;  // parallel to loose_ (nullptr: none)
  std::deque<prim::PhysHandle> loose_spans_;
  std::deque<prim::Event> loose_span_tag_;  // parallel to loose_spans_
};

}  // namespace spillway
