// pager.h — the pager of one device (DESIGN.md "Offload"): the residency of each block that is
// not simply on the device (moving out, on the host, on NVMe), the moves between tiers, and the
// rules that keep them safe.
//
// A block moves by whole pages (the pages only it uses: a block shares its first and last page
// with neighbours, those stay on the device; so does a span, mapped and unmapped whole, that it
// covers in part, unless nothing else lives on the rest of it: then the block takes the span
// whole, its free bytes claimed until the copy back is done, Arena::widen_to_spans_locked).
// Eviction to the host copies those pages into host
// chunks (HostPool) on the pager's copy stream, after the work that may use the block (see
// Safety), then remaps the block's own VA onto the host chunks: a kernel that touches it reads
// the right data over PCIe. The device chunks go back to the heap's pool. Bringing it back maps
// device chunks at the VA and copies the data in on the copy stream; the streams that will use
// the block wait for that copy (an event), the CPU does not. To NVMe: the host chunks are written
// to a file (NvmeStore) and the VA is left unmapped (a stray access faults loudly).
//
// Safety (SPILLWAY_OFFLOAD_SAFETY): a range is never unmapped while queued GPU work may touch it.
// `tracked`: that work is what the tracker saw referencing the block (its streams); a launch that
// names a block which is moving out cancels the move, one that names a block on the host or NVMe
// brings it back first (a stall, counted and timed). `strict`: every stream is fenced before each
// unmap; meant for code whose pointers the tracker cannot see. Without a tracker the pager is
// strict.
//
// Thread safety: one mutex per pager; lock order pager -> arena -> heap.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "allocator/arena.h"
#include "allocator/prim/backend.h"
#include "offload/host_pool.h"
#include "offload/nvme_store.h"
#include "profiler/trace_format.h"
#include "profiler/tracker/block_index.h"
#include "spillway/spillway.h"

namespace spillway {
class DeviceHeap;
namespace tracker {
class BlockIndex;
}
}  // namespace spillway

namespace spillway::offload {

enum class Residency : std::uint8_t { kDevice, kMovingOut, kHost, kNvme };
enum class Safety : std::uint8_t { kTracked, kStrict };
enum class Advice : std::uint8_t { kNone = 0, kKeepOnDevice = 1, kEvictFirst = 2 };

struct PagerOptions {
  std::uint64_t host_limit = std::uint64_t{16} << 30;
  Safety safety = Safety::kStrict;  // kTracked needs `index`
  NvmeStore* nvme = nullptr;        // the NVMe tier, shared by the pagers of a process
  tracker::BlockIndex* index = nullptr;
};

struct PagerCounters {
  std::atomic<std::uint64_t> evictions{0}, fetches{0}, prefetches{0}, stalls{0}, stall_ns{0},
      cancelled{0}, errors{0}, bytes_to_host{0}, bytes_from_host{0}, bytes_to_nvme{0},
      bytes_from_nvme{0}, fence_waits{0}, fence_wait_ns{0}, remap_ns{0}, fast_evictions{0},
      prefetch_hits{0}, spills{0},  // host blocks moved on to NVMe because the host tier was full
      in_place{0},          // blocks a streaming launch used where they lay (access_in_place)
      in_place_maps{0},     // of those, host blocks whose chunks were mapped at their VA for it
      in_place_returns{0};  // streamed-only blocks brought back instead (wanted back sooner
                            // than a block on the device: Pager::wanted_back_locked)
  // Of the fast evictions, those ordered after users still queued (fast_evict_locked's
  // after_users).
  std::atomic<std::uint64_t> ordered_evictions{0};
  // Evictions that took the rest of a span the block covers in part (Arena::widen_to_spans_locked).
  std::atomic<std::uint64_t> widened{0};
  // CPU time on the callers' threads (spillway_offload_stats): allocations of the device while
  // offload is on (the Allocator times them), of it make_room for them, frees while blocks are
  // off the device, launches naming blocks off the device (Allocator::on_away).
  std::atomic<std::uint64_t> alloc_ns{0}, make_room_ns{0}, free_ns{0}, launch_ns{0};
  // Mappings swap_locked made (each needs an access grant: ~0.2-1 ms on a busy H200).
  std::atomic<std::uint64_t> pager_maps{0};
};

class Pager {
 public:
  Pager(DeviceHeap& heap, PagerOptions opt);
  ~Pager();  // waits for the moves in flight; the host pages of live blocks are unmapped
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;
  // Creates the copy stream and finds the NUMA node; *error on failure.
  spillway_status init(std::string* error);

  // Moves the whole pages of the live block at p to `to` (kTierHost: queued, completes
  // asynchronously; kTierNvme: through the host, returns when written; kTierDevice: as
  // prefetch on the legacy stream). `wait`: return only when the block has arrived.
  spillway_status offload(std::uintptr_t p, trace::Tier to, bool wait);
  // Brings the block back to the device; `stream` (and in strict mode every stream) waits for
  // the copy, the CPU does not. A block already on the device: nothing to do.
  spillway_status prefetch(std::uintptr_t p, prim::Stream stream, bool demand = false);
  // Several blocks at once: one fence (strict mode) for all, then every remap and copy queued
  // back to back, so the CPU's remapping of one block overlaps the copy of the one before.
  // The first failure is returned; the other blocks are still brought back.
  spillway_status prefetch_many(const std::uintptr_t* ps, std::size_t n, prim::Stream stream);
  // A streaming kernel's launch (tracker::KernelStreams) on `stream` names p, which is not on
  // the device. Tracked mode, for a block that only streaming operations have used
  // (BlockSummary::streamed_only: an optimizer state, which only a foreach optimizer's kernels
  // and fills touch): it stays off the device, and the kernel reads and writes it over the link,
  // which is what a copy back would cost, without the remaps, the device room and the copy back
  // out. On the host, its chunks are mapped at its VA (once: they stay mapped, so later steps pay
  // nothing). Unless it is wanted back (wanted_back_locked: it will be used again sooner than
  // the device blocks that would make room for it; an fp32 parameter that autocast casts at
  // every micro-batch, evicted at the first optimizer step while the states were new). Any other
  // block (and every block in strict mode, one moving out, or one on NVMe) is brought back as
  // prefetch(demand).
  spillway_status access_in_place(std::uintptr_t p, prim::Stream stream);
  spillway_status advise(std::uintptr_t p, Advice a);
  // Belady's rule for in-place use (wanted_back_locked) brings a block back when the victims
  // that make room for it are needed later than `uses` times its longest period (default 1).
  // A tuning hook for bench/offload_policy_sim; not a user knob.
  void set_return_uses(double uses) {
    std::lock_guard<std::mutex> lk(mu_);
    return_uses_ = uses;
  }
  // How many blocks of the learned order are brought back ahead of a demanded one (default 4;
  // 0: none).
  // A tuning hook for benchmarks, like set_return_uses.
  void set_lookahead(int blocks) {
    std::lock_guard<std::mutex> lk(mu_);
    lookahead_ = blocks;
  }
  // Whether the heap may wait for the streams only after the pager evicted, and a speculative
  // prefetch takes only free memory (true, the default: SPILLWAY_OFFLOAD_DRAIN=last), or the heap
  // waits before the pager evicts (false: first). DeviceHeap's SetAcquireMode. A tuning hook.
  void set_drain_last(bool last) {
    std::lock_guard<std::mutex> lk(mu_);
    drain_last_ = last;
  }
  // Tracked -> strict, for good (a launch the tracker could not decode): blocks on the host get
  // their VA mapped to the host chunks again. Said once on stderr.
  void go_strict();
  Residency residency(std::uintptr_t p);
  // Whether the block's own address maps its data now: on the device (or still being copied
  // out), or on the host with the host pages mapped there. False on NVMe, or on the host with
  // the address unmapped (tracked mode).
  bool readable(std::uintptr_t p);
  // Frees p in `arena` (the Allocator's free path while a pager exists). First the pager's part:
  // a block off the device loses its off-device pages (they become holes); one whose copy back
  // is in flight orders the free after it; this never fails for a block the pager does not
  // know. Both parts under the pager's lock: no eviction made meanwhile on another thread can
  // pick the block between them (it would hand the heap pages the freed range still maps).
  spillway_status free_block(Arena* arena, std::uintptr_t p, FreeMode mode, prim::Stream stream);
  // Evicts cold blocks (tracker: least recently used first; otherwise largest first; advice
  // kEvictFirst before all, kKeepOnDevice never) until `bytes` of device memory were given back
  // to the heap's pool, waiting for the copies. Returns the bytes freed.
  std::uint64_t make_room(std::uint64_t bytes, std::uintptr_t except);
  // Completes the moves whose copies finished (non-blocking) / every move (blocking).
  void poll();
  spillway_status synchronize();
  // True while some block is off the device or moving (the allocator's free path asks).
  bool active() const { return active_.load(std::memory_order_acquire) != 0; }

  const PagerCounters& counters() const { return counters_; }
  PagerCounters& counters() { return counters_; }  // the Allocator adds its call times
  std::uint64_t host_bytes() const { return host_bytes_.load(std::memory_order_relaxed); }
  std::uint64_t nvme_bytes() const { return nvme_bytes_.load(std::memory_order_relaxed); }
  HostPool& host_pool() { return *host_; }
  Safety safety() const { return opt_.safety; }
  const std::string& numa_note() const { return numa_note_; }

 private:
  struct Entry {  // a block that is not plainly on the device
    std::uintptr_t p = 0;
    Arena* arena = nullptr;
    std::uintptr_t first = 0;  // first whole page
    std::size_t pages = 0;
    Residency state = Residency::kDevice;
    std::vector<HostChunk> host;    // kMovingOut, kHost
    NvmeStore::Slot slot = 0;       // kNvme
    std::uint64_t access_mark = 0;  // tracker access count when its data was copied
    std::uint64_t move = 0;         // id of the eviction in flight (kMovingOut)
    Advice advice = Advice::kNone;
    bool mapped = false;    // kHost: the host chunks are mapped at the block's VA
    bool in_place = false;  // used where it lies (access_in_place): never speculated back
  };
  struct Move {  // a copy in flight on the copy stream
    std::uint64_t id = 0;
    bool out = false;  // eviction (device -> host) or fetch (host -> device)
    bool demand = false;
    bool cancelled = false;
    std::uintptr_t p = 0;
    std::uint64_t bytes = 0;
    prim::Event done = nullptr;
    std::uint64_t t0 = 0;
    std::vector<HostChunk> host;  // fetch: chunks to give back once the copy is done
    // A fast eviction: the device chunks went back to the heap at once (tagged with `done`);
    // the block's VA still maps them until the copy is done, then they are unmapped.
    bool fast = false;
    std::vector<prim::PhysHandle> dev;
  };
  struct Progress {  // an event on a user stream: operations up to `seq` issued before it
    prim::Event ev;
    prim::Stream stream;
    std::uint64_t seq;
  };
  struct Geometry {
    Arena* arena;
    std::uintptr_t first;
    std::size_t pages;
    bool widened;      // it takes pages beyond the block's own (geometry's `widen`)
    bool after_arena;  // and its copy must be ordered after the arena's stream (frees there)
  };

  // The pages of block p that can move. `widen` (the block is on the device, about to move):
  // it may take the rest of the spans it covers in part (Arena::widen_to_spans_locked).
  spillway_status geometry(std::uintptr_t p, Geometry* g, bool widen = false);
  spillway_status not_owned(std::uintptr_t p) const;  // NOT_OWNED, with the message
  // Queues the copies between the `pages` pages at `first` and `chunks` (to_host: out of the
  // block on the eviction stream; else into it on the copy stream), one per run of neighbouring
  // chunks, then records `done` after them.
  prim::Status copy_pages(std::uintptr_t first, std::size_t pages,
                          const std::vector<HostChunk>& chunks, bool to_host, prim::Event done);
  // Leaves the block's moved pages unmapped (holes).
  spillway_status unmap_pages_locked(Entry& e);
  spillway_status evict_host_locked(std::uintptr_t p, Entry* e);  // kDevice -> kMovingOut
  // `pages` host chunks for block `p`; when the host tier is full and NVMe is on, host blocks
  // (other than p) needed last are first moved on to NVMe.
  spillway_status acquire_host_locked(std::uintptr_t p, std::size_t pages,
                                      std::vector<HostChunk>* chunks, std::string* why);
  std::uintptr_t no_spill_ = 0;  // a host block being brought back: never spilled (under mu_)
  spillway_status host_to_nvme_locked(Entry& e);
  // NVMe -> host chunks. `through`: the caller brings the block on to the device at once, so
  // strict mode's mapping of the host chunks at the VA is skipped (it costs ~20 ms per 256 MiB
  // in driver calls, and the device chunks replace it right after); a caller whose copy back
  // fails must then map them (keep_strict_mapping_locked) before the block is left on the host.
  spillway_status nvme_to_host_locked(Entry& e, bool through = false);
  // Maps a host block's chunks at its own VA (strict mode's view; a launch's last resort).
  void map_host_locked(Entry& e);
  // Strict mode keeps a host block's VA mapped on its chunks: a block read through from NVMe
  // (nvme_to_host_locked's `through`) that stayed on the host gets the mapping it skipped.
  void keep_strict_mapping_locked(Entry& e);
  // The tier counters and the trace record of a finished move between the host and NVMe.
  void count_nvme_move(const Entry& e, bool to_nvme, std::uint64_t t0);
  // `fenced`: the caller already made sure no queued work reads the host pages.
  // `speculative`: a guess (learn_and_prefetch_locked): no eviction to make room, nobody waits.
  spillway_status host_to_device_locked(Entry& e, prim::Stream s, bool demand, bool fenced = false,
                                        bool retried = false, bool speculative = false);
  void learn_and_prefetch_locked(std::uintptr_t p);
  // Whether a copy back of the block at p is in flight (not yet completed by poll_locked).
  bool fetching_locked(std::uintptr_t p) const {
    return std::any_of(moves_.begin(), moves_.end(),
                       [p](const Move& m) { return !m.out && m.p == p; });
  }
  void cancel_eviction_locked(Entry& e, prim::Stream stream);
  int lookahead_ = 4;       // blocks brought back ahead of a demanded one (set_lookahead)
  bool drain_last_ = true;  // set_drain_last (SPILLWAY_OFFLOAD_DRAIN; default last)
  std::unordered_map<std::uintptr_t, std::uintptr_t> next_after_;
  std::uintptr_t last_demand_ = 0;
  std::unordered_set<std::uintptr_t> speculated_;  // brought back ahead, not yet asked for
  // The victims make_room would take, in order (advised first, then furthest next use); `except`
  // and, inside a launch being issued, its own blocks left out. *newest: the newest operation.
  struct Victim {
    std::uintptr_t p;
    std::uint64_t size;
    std::uint64_t last;  // last access (tracker's operation number); 0 = never / unknown
    bool first;          // advised kEvictFirst
    tracker::BlockSummary sum;
    std::int64_t dist = 0;  // NextUseDistance
  };
  std::vector<Victim> victims_locked(std::uintptr_t except, std::uint64_t* newest);
  // Belady's rule at a streaming use of a block off the device: true when making room for its
  // `bytes` would evict only blocks needed later than it is needed again (its longest period).
  // The victims' order is cached for kBurstGap / 2 operations (a guess either way: it changes
  // speed, never what a kernel reads).
  bool wanted_back_locked(const tracker::BlockSummary& s, std::uint64_t bytes);
  std::vector<std::pair<std::uint64_t, std::int64_t>> victim_order_;  // (bytes so far, dist)
  double return_uses_ = 1.0;                                          // set_return_uses
  std::uint64_t victim_order_seq_ = 0;
  // Remaps the block's pages onto in[] (0: unmapped; `host`: host chunks; in_span[k]: in[k] is a
  // span, mapped whole at its aligned group). The old handles go to *old (*old_span: spans).
  // One driver call per mapping: a span costs what a 2 MiB chunk does (docs/offload.md).
  spillway_status swap_locked(Entry& e, const prim::PhysHandle* in, bool host,
                              std::vector<prim::PhysHandle>* old,
                              const std::uint8_t* in_span = nullptr,
                              std::vector<std::uint8_t>* old_span = nullptr);
  // Device memory a block let go of back to the heap: chunks to its loose pool, spans (once
  // each) to its loose spans; `tag` as DeviceHeap::return_chunks.
  void return_device(const std::vector<prim::PhysHandle>& hs, const std::vector<std::uint8_t>& span,
                     prim::Event tag = nullptr);
  spillway_status offload_locked(std::uintptr_t p, const Geometry& g, trace::Tier to, bool wait);
  std::uint64_t make_room_locked(std::uint64_t bytes, std::uintptr_t except);
  // Marks the block at p away unless a use was counted since `count` was read (then it stays
  // unmarked: false). A victim is taken only so: a launch either sees the mark and waits for
  // the block, or was counted and the block is skipped.
  bool mark_unless_used_locked(std::uintptr_t p, std::uint64_t count);
  // A block that geometry(widen) widened but that stays on the device (not a victim after all,
  // or its eviction failed) gives back the free rest of its spans it claimed.
  void release_claim_locked(std::uintptr_t p, const Geometry& g);
  spillway_status before_free_locked(std::uintptr_t p, FreeMode mode,
                                     prim::Stream stream);  // free_block's part
  void complete_locked(Move& m);
  void poll_locked(bool block);
  // The fast eviction `move` of a block still copying out of the block's VA (about to be
  // remapped): waits for its copy and completes it (which unmaps its device chunks there).
  void finish_fast_eviction_locked(std::uint64_t move);
  // Waits (CPU) until no queued work may touch the block's pages: its streams (tracked) or
  // every stream (strict) after the ones named in `extra`.
  spillway_status fence_cpu_locked(const Entry& e, prim::Stream extra, bool all);
  // Makes `s` wait for the work that may use the block (tracked) / all work (strict).
  spillway_status order_after_users_locked(std::uintptr_t p, Arena* arena, prim::Stream s);
  std::uint64_t access_count(std::uintptr_t p) const;
  // The tracker's bookkeeping of the block at p (empty without a tracker or block).
  tracker::BlockSummary summary_of(std::uintptr_t p) const;
  // The tracker's away mark of the block (Block::set_away): launches naming it call back.
  void mark_away(std::uintptr_t p, bool away) const;
  int block_streams(std::uintptr_t p, Arena* arena, prim::Stream* out, int cap) const;
  prim::Event take_event(std::vector<prim::Event>& pool);  // from the pool, or a new one
  prim::Event get_event();                                 // for user streams
  void put_event(prim::Event e);
  // Events recorded only on the copy stream (move completions, chunk tags): a later record of
  // one waits longer, never less, so a tag handed to the heap stays safe when it is reused.
  prim::Event get_copy_event();
  void put_copy_event(prim::Event e);
  prim::Event get_out_event();
  // A move's completion event back to the pool it came from.
  void put_move_event(const Move& m);
  // The eviction stream waits for a copy back of p still in flight (its pages are being written).
  void order_after_fetch_locked(std::uintptr_t p);
  // Progress fences: events on the users' streams that say which tracked operations finished
  // (tracked mode), so that an eviction whose block's last use is done needs no wait at all.
  void poll_progress_locked();
  void record_progress_locked(std::uint64_t seq);
  bool users_done_locked(const tracker::BlockSummary& s) const;
  // Tracked mode, users done: copy out, hand the device chunks to the heap at once (tagged),
  // unmap the VA when the copy is done. False (nothing changed) when it cannot.
  // `after_users`: the users are not known done, but every use of the block is enqueued (the
  // tracker's issued watermark): the copy is ordered after them on the GPU (the eviction stream
  // waits for their streams), so the CPU does not wait either; whoever takes the chunks waits
  // for the copy, which waits for the users.
  bool fast_evict_locked(std::uintptr_t p, const Geometry& g, std::uint64_t count,
                         bool after_users = false);
  void error_locked(std::uintptr_t p, std::uint64_t bytes, std::uint32_t reason, spillway_status st,
                    const std::string& msg);
  void set_active_locked();
  // Whether a block on the host keeps its VA mapped to the host chunks (strict) or unmapped
  // until it comes back (tracked: the tracker brings it back before a launch that names it).
  bool eager_host_map() const { return opt_.safety == Safety::kStrict; }
  void trace_move(trace::Kind k, std::uintptr_t p, std::uint64_t bytes, std::uint64_t ns,
                  std::uint32_t from, std::uint32_t to, bool demand);

  DeviceHeap& heap_;
  prim::Backend& backend_;
  const int device_;
  const std::size_t gran_;
  PagerOptions opt_;
  std::string numa_note_;
  std::unique_ptr<HostPool> host_;
  prim::Stream copy_ = nullptr;  // copies back to the device (and NVMe staging)
  prim::Stream out_ = nullptr;   // eviction copies: the other direction of the link, at once
  std::vector<prim::Event> out_events_;  // recorded only on out_ (chunk tags among them)

  std::mutex mu_;
  std::unordered_map<std::uintptr_t, Entry> entries_;
  std::deque<Move> moves_;
  std::uint64_t next_move_ = 1;
  std::vector<prim::Event> events_;
  std::vector<prim::Event> copy_events_;
  std::deque<Progress> progress_;
  std::unordered_map<prim::Stream, std::uint64_t> done_seq_;
  std::atomic<int> active_{0};
  std::atomic<std::uint64_t> host_bytes_{0}, nvme_bytes_{0};
  PagerCounters counters_;
  bool warned_nvme_ = false;
};

}  // namespace spillway::offload
