// arena.h — one stream's share of a device: its own VA reservation carved at 512-byte
// granularity (best fit with coalescing), the page table saying which 2 MiB pages are mapped,
// slabs for small sizes, exact-size quick bins for freed large blocks, and the deferred frees
// that wait on events. Reuse on the arena's own stream is immediate (stream order); anything
// else waits for events. Every stream-ordered free gets a sequence number; a page remembers the
// latest free of its bytes. Pages with no live bytes are "idle" and may be unmapped (stolen)
// once a fence event recorded on the stream after that free has completed.
//
// Spans: the driver's cost of mapping is per mapping, not per byte (H200: ~25 us to grant
// access and ~17 us to unmap, whether 2 MiB or 128 MiB; docs/offload.md). So an aligned group of
// span_pages() pages (DeviceHeap::span_pages, SPILLWAY_SPAN_MIB) that a large block covers
// entirely is mapped with one physical allocation (a span) instead of one chunk per page. A
// span is mapped, stolen and unmapped whole.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "allocator/detail/extent_set.h"
#include "allocator/detail/flat_map.h"
#include "allocator/detail/size_class.h"
#include "allocator/detail/spin_lock.h"
#include "allocator/prim/backend.h"
#include "allocator/stats.h"
#include "spillway/spillway.h"

namespace spillway {

class DeviceHeap;
struct Slab;

// Spans sit at VA aligned to their size in the arena; their size is the heap's (Config::span_mib).

enum class FreeMode {
  kStreamOrdered,  // cudaFreeAsync on `stream`
  kSynchronous,    // cudaFree: wait for all work enqueued before it on every known stream
};

class Arena {
 public:
  Arena(DeviceHeap& heap, prim::Stream stream, bool sync, std::uintptr_t base, std::size_t size);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  spillway_status allocate(std::size_t n, void** out);
  spillway_status free_block(std::uintptr_t p, FreeMode mode, prim::Stream stream);
  bool contains(std::uintptr_t p) const { return p - base_ < size_; }
  bool is_live(std::uintptr_t p);
  prim::Stream stream() const { return stream_; }
  bool is_sync() const { return sync_; }

  // Gives up to `want` physical chunks of idle pages whose last use has finished, unmapping
  // them. With `block`, waits on this arena's fence events first. Caller holds mu().
  std::size_t steal_idle(std::size_t want, bool block, std::vector<prim::PhysHandle>* out);
  // Waits for fences one at a time, oldest first, only as long as that makes idle pages of
  // this arena stealable, and steals them. Caller holds mu().
  std::size_t steal_idle_waiting(std::size_t want, std::vector<prim::PhysHandle>* out);
  // Gives up to `want` spans all of whose pages are idle and whose last use has finished,
  // unmapping them (one call each). With `block`, waits on this arena's fences first. Caller
  // holds mu(). (steal_idle never takes a page of a span.)
  std::size_t steal_idle_spans(std::size_t want, bool block, std::vector<prim::PhysHandle>* out);
  // Moves cached memory back to the free extents and unmaps every idle page (waiting for the
  // stream): used by trim and at the last step before out-of-memory. Caller holds mu().
  void flush_caches();
  // Waits for every deferred free of this arena and releases it. Caller holds mu().
  void wait_pending();
  detail::SpinLock& mu() { return mu_; }
  const ArenaCounters& counters() const { return counters_; }

  struct Summary {
    std::size_t mapped_bytes, idle_bytes, free_extent_bytes, largest_free_extent, quick_bytes,
        pending_blocks, slab_count;
    std::size_t span_bytes;        // mapped as spans
    std::size_t span_idle_bytes;   // idle pages of spans
    std::size_t span_stuck_bytes;  // idle pages of spans that also hold live bytes (not stealable)
  };
  Summary summary();         // takes mu()
  Summary summary_locked();  // caller holds mu()

  // ---- for the pager (offload/pager.h); the caller holds mu() ----
  // The rounded size of the live large block that starts at p, or 0.
  std::size_t large_size_locked(std::uintptr_t p);
  // The physical chunks of the pages [a, a + n * granularity) (0 = unmapped), appended to *out;
  // with `span`, whether each page is part of a span (whose handle every page of it repeats).
  void page_handles_locked(std::uintptr_t a, std::size_t n, std::vector<prim::PhysHandle>* out,
                           std::vector<std::uint8_t>* span = nullptr) const;
  // Whether the page at a is part of a span (its pages: a's aligned group of span_pages()).
  bool page_in_span_locked(std::uintptr_t a) const {
    return contains(a) && pages_[page_of(a)].span;
  }
  // Widens [*first, *last), the whole pages of the live large block `block`, to the bounds of
  // the spans it covers in part (a span is unmapped whole) where nothing else lives on the rest
  // of the span. The free bytes of those pages are claimed for the block (no allocation takes
  // them) until unclaim_locked (the pager: once the block's copy back, which writes those pages
  // too, is done) or its free. A side that cannot widen stays as it is. Releases the block's
  // earlier claims first: call it only while the block is on the device and no copy of it runs.
  // *after_stream: some of those bytes were freed in this arena's stream order and their work
  // may still run; the move must be ordered after the arena's stream (before its unmap).
  void widen_to_spans_locked(std::uintptr_t block, std::uintptr_t* first, std::uintptr_t* last,
                             bool* after_stream);
  void unclaim_locked(std::uintptr_t block);
  std::size_t span_bytes() const { return gran_ * span_pages_; }
  std::size_t span_pages() const { return span_pages_; }
  // Records that the pager mapped in[0..n) (0: nothing; `host`: host chunks, which the arena
  // never releases) at those pages of the live large block starting at `block`; a block with
  // unmapped pages ("holes") goes to the free extents, not the quick bins, when freed. The pager
  // makes the driver calls itself, without this lock: the pages belong to that live block alone.
  // `span` (or nullptr): which of in[] are spans (the pager maps each span whole).
  spillway_status set_pages_locked(std::uintptr_t block, std::uintptr_t a, std::size_t n,
                                   const prim::PhysHandle* in, bool host,
                                   const std::uint8_t* span = nullptr);
  std::size_t page_bytes() const { return gran_; }
  // Calls fn(address, rounded size) for every live large block.
  template <class F>
  void for_each_large_locked(F&& fn) {
    large_.for_each(
        [&](std::uint64_t p, LargeBlock& b) { fn(static_cast<std::uintptr_t>(p), b.size); });
  }

 private:
  struct Page {
    prim::PhysHandle handle = 0;        // 0 = unmapped
    Slab* slab = nullptr;               // set when the page is a slab
    std::uint32_t live = 0;             // bytes of non-free blocks overlapping the page
    std::int32_t prev = -1, next = -1;  // idle list links
    std::uint64_t free_seq = 0;         // latest stream-ordered free of bytes of this page
    bool host = false;  // handle is a host chunk of the pager (never idle, never ours)
    bool span = false;  // handle is a span mapped at this page's aligned group
  };
  struct LargeBlock {
    std::size_t size = 0;       // rounded
    std::size_t requested = 0;  // asked for
    bool holes = false;         // the pager left some of its pages unmapped
    std::size_t claim_lo = 0;   // free bytes claimed just below the block (widen_to_spans_locked)
    std::size_t claim_hi = 0;   // and just above it
  };
  struct Pending {
    std::uintptr_t p;
    std::size_t large_size;  // 0 for a slab block
    std::uint64_t group;     // fence group that must complete first
    bool holes;              // a large block with unmapped pages: to the extents, not quick bins
  };
  struct Fence {
    std::vector<prim::Event> events;
    std::uint64_t group;
  };
  struct PageFence {
    prim::Event event;
    std::uint64_t covers;  // frees with seq < covers are done once the event completes
  };

  spillway_status alloc_small(std::size_t n, void** out);
  spillway_status alloc_large(std::size_t n, void** out);
  spillway_status free_small(Slab* s, std::uintptr_t p, FreeMode mode, prim::Stream stream);
  spillway_status free_large(std::uintptr_t p, FreeMode mode, prim::Stream stream);
  // Takes [a, a+n) for use: counts live bytes and maps the pages that are not mapped.
  spillway_status carve(std::size_t n, std::size_t align, std::uintptr_t* out);
  void add_live(std::uintptr_t a, std::size_t n);
  // `seq`: the stream-ordered free that released the bytes (0: their work is known done).
  void sub_live(std::uintptr_t a, std::size_t n, std::uint64_t seq);
  void release_extent(std::uintptr_t a, std::size_t n, std::uint64_t seq);  // + to extents
  bool all_mapped(std::uintptr_t a, std::size_t n) const;
  void note_free();    // counts a stream-ordered free; records a fence now and then
  void flush_quick();  // every cached block back to the extents (coalescing)
  void release_small(Slab* s, std::uint32_t i);
  void drop_slab(Slab* s);  // an empty slab on the partial list goes back to the extents
  void release_pending(const Pending& pd);
  void poll_pending();
  spillway_status defer(std::uintptr_t p, std::size_t large_size, FreeMode mode,
                        prim::Stream stream, bool holes = false);
  void poll_page_fences();
  void wait_frees_done();  // waits until every stream-ordered free so far is complete
  void ensure_page_fence();
  prim::Event get_event();
  void idle_push(std::int32_t i);
  void idle_remove(std::int32_t i);
  // Maps `chunks` at the pages `missing` (ascending), whole aligned groups of them as spans
  // when the heap has spans; false with *err on a driver failure (the rest go back to the heap).
  bool map_missing(const std::vector<std::int32_t>& missing, std::size_t request,
                   spillway_status* st);
  std::int32_t page_of(std::uintptr_t p) const {
    return static_cast<std::int32_t>((p - base_) >> page_shift_);
  }
  std::string describe(std::uintptr_t p) const;

  DeviceHeap& heap_;
  prim::Backend& backend_;
  const int device_;
  const prim::Stream stream_;
  const bool sync_;  // the arena of cudaMalloc/cuMemAlloc blocks
  const std::uintptr_t base_;
  const std::size_t size_;
  const std::size_t gran_;
  const int page_shift_;
  const std::size_t span_pages_;  // the heap's, fixed before any arena exists

  detail::SpinLock mu_;
  ArenaCounters counters_;
  detail::ExtentSet free_;
  std::unique_ptr<Page[]> pages_;
  std::int32_t idle_head_ = -1, idle_tail_ = -1;
  std::uint64_t free_seq_ = 0;  // last stream-ordered free's number
  std::uint64_t done_seq_ = 1;  // frees numbered below this are known complete
  unsigned frees_since_fence_ = 0;
  std::deque<PageFence> page_fences_;

  detail::FlatMap<LargeBlock> large_{4096};  // live large blocks by address
  struct Quick {
    std::uintptr_t p;
    std::uint64_t seq;
  };
  detail::FlatMap<std::vector<Quick>> quick_;  // freed large blocks by rounded size
  std::size_t quick_bytes_ = 0;

  Slab* partial_[detail::kNumClasses] = {};  // slabs with free blocks, per class
  int slab_count_[detail::kNumClasses] = {};

  std::deque<Pending> pending_;
  std::deque<Fence> fences_;
  std::uint64_t next_group_ = 1;
  std::vector<prim::Event> event_pool_;
};

}  // namespace spillway
