// allocator_test.cpp — the caching allocator (allocator/allocator.h, arena.h, device_heap.h) on
// the SimBackend: 512-byte alignment; live blocks never overlap and the statistics account for
// every byte (allocated == sum of live requests, reserved >= allocated, all back to 0 after
// free + trim(0)); sizes across the small/large classes with every byte written and verified;
// stream-ordered reuse on the same stream; the cross-stream rule (another stream's arena only
// gets the physical memory of a freed block once the freeing stream's work is done); the
// cudaFree fence of FreeMode::kSynchronous; frees on a foreign stream deferred until that
// stream's event completes; the budget (OOM status and message, no corruption, recovery,
// reserved never above the budget, set_budget below allocated rejected); a fragmentation bound.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>

#include "test_util.h"

namespace spillway::test {
namespace {

using Clock = std::chrono::steady_clock;

// Live blocks by address; checks that a new block overlaps none of them.
struct LiveSet {
  std::map<std::uintptr_t, std::pair<std::size_t, std::uint64_t>> blocks;  // addr -> (size, tag)
  std::uint64_t bytes = 0;
  void add(void* p, std::size_t n, std::uint64_t tag) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    auto it = blocks.lower_bound(a);
    if (it != blocks.end()) {
      ASSERT_GE(it->first, a + n) << "overlaps the next live block";
    }
    if (it != blocks.begin()) {
      auto pr = std::prev(it);
      ASSERT_LE(pr->first + pr->second.first, a) << "overlaps the previous live block";
    }
    blocks[a] = {n, tag};
    bytes += n;
  }
  void remove(void* p) {
    auto it = blocks.find(reinterpret_cast<std::uintptr_t>(p));
    ASSERT_NE(it, blocks.end());
    bytes -= it->second.first;
    blocks.erase(it);
  }
};

TEST(Allocator, EveryPointerIs512Aligned) {
  SimAlloc a;
  prim::Stream s = a.stream();
  std::mt19937_64 rng(7);
  std::vector<void*> ps;
  for (int i = 0; i < 400; ++i) {
    std::size_t n = i % 3 == 0 ? 1 + rng() % (4 * kMiB) : 1 + rng() % 70000;
    void* p = nullptr;
    ASSERT_EQ(a.alloc_on(&p, n, i % 2 ? s : nullptr, i % 5 == 0), SPILLWAY_OK) << n;
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % 512, 0u) << "size " << n;
    ps.push_back(p);
  }
  for (void* p : ps) ASSERT_EQ(a.free_sync(p), SPILLWAY_OK);
}

TEST(Allocator, NoOverlapAndExactAccounting) {
  SimAlloc a;
  prim::Stream s = a.stream();
  std::mt19937_64 rng(11);
  LiveSet live;
  std::vector<void*> order;
  std::uint64_t tag = 1;
  for (int op = 0; op < 3000; ++op) {
    const bool do_alloc = order.empty() || rng() % 100 < 55;
    if (do_alloc) {
      std::size_t n;
      switch (rng() % 4) {
        case 0: n = 1 + rng() % 4096; break;
        case 1: n = 1 + rng() % (256 << 10); break;
        case 2: n = (256 << 10) + 1 + rng() % (3 * kMiB); break;
        default: n = 1 + rng() % 1024; break;
      }
      void* p = nullptr;
      ASSERT_EQ(a.alloc_on(&p, n, s), SPILLWAY_OK);
      ASSERT_NO_FATAL_FAILURE(live.add(p, n, tag));
      Fill(p, n, tag, false);
      ++tag;
      order.push_back(p);
    } else {
      std::size_t k = rng() % order.size();
      void* p = order[k];
      order[k] = order.back();
      order.pop_back();
      auto& b = live.blocks[reinterpret_cast<std::uintptr_t>(p)];
      ASSERT_EQ(Check(p, b.first, b.second, false), SIZE_MAX) << "block corrupted";
      ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
      ASSERT_NO_FATAL_FAILURE(live.remove(p));
    }
    spillway_stats st = a.stats();
    ASSERT_EQ(st.allocated_bytes, live.bytes) << "op " << op;
    ASSERT_EQ(st.live_blocks, live.blocks.size());
    ASSERT_GE(st.reserved_bytes, st.allocated_bytes);
    ASSERT_GE(st.peak_allocated_bytes, st.allocated_bytes);
    ASSERT_GE(st.peak_reserved_bytes, st.reserved_bytes);
  }
  for (void* p : order) ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
  spillway_stats st = a.stats();
  EXPECT_EQ(st.allocated_bytes, 0u);
  EXPECT_EQ(st.live_blocks, 0u);
  EXPECT_EQ(st.internal_waste_bytes, 0u);
  EXPECT_EQ(st.alloc_count, st.free_count);
  ASSERT_EQ(a.alloc->trim(0, 0), SPILLWAY_OK);
  st = a.stats();
  EXPECT_EQ(st.reserved_bytes, 0u);
  EXPECT_EQ(st.live_blocks, 0u);
  EXPECT_EQ(st.chunk_create_count, st.chunk_release_count);
  EXPECT_EQ(st.map_count, st.unmap_count);
}

TEST(Allocator, SizesAcrossClassesEveryByte) {
  SimAlloc a;
  prim::Stream s = a.stream();
  const std::size_t sizes[] = {1,        511,          512,         4097,        256 << 10,
                               (256 << 10) + 1, 2 * kMiB, 2 * kMiB + 1, 64 * kMiB};
  std::vector<void*> ps;
  LiveSet live;
  std::uint64_t sum = 0, waste_min = 0;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    void* p = nullptr;
    ASSERT_EQ(a.alloc_on(&p, sizes[i], s), SPILLWAY_OK) << sizes[i];
    ASSERT_NO_FATAL_FAILURE(live.add(p, sizes[i], 100 + i));
    Fill(p, sizes[i], 100 + i);
    ps.push_back(p);
    sum += sizes[i];
    waste_min += (512 - sizes[i] % 512) % 512;
  }
  for (std::size_t i = 0; i < ps.size(); ++i)
    EXPECT_EQ(Check(ps[i], sizes[i], 100 + i), SIZE_MAX) << "size " << sizes[i];
  spillway_stats st = a.stats();
  EXPECT_EQ(st.allocated_bytes, sum);
  EXPECT_EQ(st.live_blocks, std::size(sizes));
  EXPECT_GE(st.internal_waste_bytes, waste_min);
  // Rounding of these sizes wastes little: at most 12.5% of a small block, 511 B of a large.
  EXPECT_LE(st.internal_waste_bytes, 4096u + 511u * 4);
  for (void* p : ps) ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
  EXPECT_EQ(a.stats().allocated_bytes, 0u);
}

TEST(Allocator, StreamOrderedReuseOnSameStreamIsImmediate) {
  SimAlloc a;
  prim::Stream s = a.stream();
  // Keep the stream busy: same-stream reuse must not wait for it.
  std::atomic<bool> release{false};
  a.sim->enqueue(s, [&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  for (std::size_t n : {std::size_t{700}, std::size_t{100 << 10}, 3 * kMiB + 5, 8 * kMiB}) {
    void* p = nullptr;
    ASSERT_EQ(a.alloc_on(&p, n, s), SPILLWAY_OK);
    ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
    void* q = nullptr;
    ASSERT_EQ(a.alloc_on(&q, n, s), SPILLWAY_OK);
    EXPECT_EQ(q, p) << "size " << n << ": stream-ordered free on the same stream not reused";
    ASSERT_EQ(a.free_on(q, s), SPILLWAY_OK);
  }
  // Also on the legacy stream (nullptr).
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, 5 * kMiB, nullptr), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(p, nullptr), SPILLWAY_OK);
  void* q = nullptr;
  ASSERT_EQ(a.alloc_on(&q, 5 * kMiB, nullptr), SPILLWAY_OK);
  EXPECT_EQ(q, p);
  ASSERT_EQ(a.free_on(q, nullptr), SPILLWAY_OK);
  release = true;
}

// Arenas are per stream: B never gets A's addresses through a free list. What B can get is
// A's physical memory, and only once A's work enqueued before the free has finished. With a
// budget of two chunks, B's second allocation must wait for A's slow task.
TEST(Allocator, CrossStreamReuseWaitsForFreeingStream) {
  SimAlloc a;
  ASSERT_EQ(a.alloc->set_budget(0, 2 * kGran), SPILLWAY_OK);
  prim::Stream sa = a.stream(), sb = a.stream();
  void* x = nullptr;
  ASSERT_EQ(a.alloc_on(&x, kGran, sa), SPILLWAY_OK);
  Fill(x, kGran, 1, false);
  std::atomic<bool> task_done{false};
  a.sim->enqueue(sa, [&] {  // a "kernel" on A still writing x after the free is issued
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    Fill(x, kGran, 2, false);
    task_done = true;
  });
  ASSERT_EQ(a.free_on(x, sa), SPILLWAY_OK);

  void* y = nullptr;
  ASSERT_EQ(a.alloc_on(&y, kGran, sb), SPILLWAY_OK);  // a fresh chunk: within the budget
  const auto xa = reinterpret_cast<std::uintptr_t>(x), ya = reinterpret_cast<std::uintptr_t>(y);
  EXPECT_TRUE(ya + kGran <= xa || xa + kGran <= ya) << "B got A's address range";
  EXPECT_FALSE(task_done.load()) << "test premise: A's task should still be running";
  Fill(y, kGran, 3, false);

  void* z = nullptr;
  ASSERT_EQ(a.alloc_on(&z, kGran, sb), SPILLWAY_OK) << LastError();
  EXPECT_TRUE(task_done.load())
      << "B was given A's physical memory while A's work on it was still running";
  const auto za = reinterpret_cast<std::uintptr_t>(z);
  EXPECT_TRUE(za + kGran <= xa || xa + kGran <= za) << "B got A's address range";
  Fill(z, kGran, 4, false);
  EXPECT_EQ(Check(y, kGran, 3, false), SIZE_MAX);
  EXPECT_EQ(Check(z, kGran, 4, false), SIZE_MAX);
  EXPECT_LE(a.stats().reserved_bytes, 2 * kGran);
  ASSERT_EQ(a.free_on(y, sb), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(z, sb), SPILLWAY_OK);
}

// cudaFree semantics: a block freed with kSynchronous is reused only after the work enqueued
// before the free, on every stream the allocator knows, has finished.
void SyncFenceCase(std::size_t n) {
  SimAlloc a;
  prim::Stream s = a.stream();
  void* on_s = nullptr;
  ASSERT_EQ(a.alloc_on(&on_s, 4096, s), SPILLWAY_OK);  // the allocator now knows s
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, n, nullptr, true), SPILLWAY_OK);
  std::atomic<bool> release{false};
  a.sim->enqueue(s, [&] {
    const auto t0 = Clock::now();
    while (!release.load() && Clock::now() - t0 < std::chrono::seconds(10))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  ASSERT_EQ(a.free_sync(p), SPILLWAY_OK);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the legacy stream is idle
  void* q = nullptr;
  ASSERT_EQ(a.alloc_on(&q, n, nullptr, true), SPILLWAY_OK);
  EXPECT_NE(q, p) << "size " << n << ": cudaFree'd block reused while stream work still runs";
  release = true;
  a.sim->synchronize(s);
  a.sim->synchronize(nullptr);
  void* r = nullptr;
  ASSERT_EQ(a.alloc_on(&r, n, nullptr, true), SPILLWAY_OK);
  EXPECT_EQ(r, p) << "size " << n << ": block not reused once the streams finished";
  ASSERT_EQ(a.free_sync(q), SPILLWAY_OK);
  ASSERT_EQ(a.free_sync(r), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(on_s, s), SPILLWAY_OK);
}

TEST(Allocator, SyncFreeFencesAllKnownStreamsLarge) { SyncFenceCase(4 * kMiB); }
TEST(Allocator, SyncFreeFencesAllKnownStreamsSmall) { SyncFenceCase(1000); }

// A block of arena A freed stream-ordered on stream B is reused only after B's event.
void ForeignStreamFreeCase(std::size_t n) {
  SimAlloc a;
  prim::Stream sa = a.stream(), sb = a.stream();
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, n, sa), SPILLWAY_OK);
  std::atomic<bool> release{false};
  a.sim->enqueue(sb, [&] {
    const auto t0 = Clock::now();
    while (!release.load() && Clock::now() - t0 < std::chrono::seconds(10))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  ASSERT_EQ(a.free_on(p, sb), SPILLWAY_OK);
  EXPECT_FALSE(a.alloc->is_live(p));
  EXPECT_EQ(a.stats().live_blocks, 0u);
  void* q = nullptr;
  ASSERT_EQ(a.alloc_on(&q, n, sa), SPILLWAY_OK);
  EXPECT_NE(q, p) << "block freed on a busy foreign stream reused before its event";
  release = true;
  a.sim->synchronize(sb);
  void* r = nullptr;
  ASSERT_EQ(a.alloc_on(&r, n, sa), SPILLWAY_OK);
  EXPECT_EQ(r, p) << "deferred free not released after the foreign stream finished";
  ASSERT_EQ(a.free_on(q, sa), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(r, sa), SPILLWAY_OK);
}

TEST(Allocator, ForeignStreamFreeDeferredLarge) { ForeignStreamFreeCase(3 * kMiB); }
TEST(Allocator, ForeignStreamFreeDeferredSmall) { ForeignStreamFreeCase(2048); }

TEST(Allocator, BudgetEnforcedAndRecoverable) {
  SimAlloc a(256 * kMiB);
  const std::uint64_t budget = 64 * kMiB;
  ASSERT_EQ(a.alloc->set_budget(0, budget), SPILLWAY_OK);
  EXPECT_EQ(a.stats().budget_bytes, budget);
  prim::Stream sa = a.stream(), sb = a.stream();
  std::vector<std::pair<void*, prim::Stream>> blocks;
  auto check_reserved = [&] { ASSERT_LE(a.stats().reserved_bytes, budget); };
  for (int i = 0; i < 32; ++i) {
    prim::Stream s = i % 2 ? sb : sa;
    void* p = nullptr;
    ASSERT_EQ(a.alloc_on(&p, kGran, s), SPILLWAY_OK) << "block " << i << ": " << LastError();
    Fill(p, kGran, 1000 + static_cast<std::uint64_t>(i), false);
    blocks.push_back({p, s});
    ASSERT_NO_FATAL_FAILURE(check_reserved());
  }
  EXPECT_EQ(a.stats().allocated_bytes, budget);
  for (prim::Stream s : {sa, sb, static_cast<prim::Stream>(nullptr)}) {
    ClearError();
    void* p = reinterpret_cast<void*>(0x1);
    EXPECT_EQ(a.alloc_on(&p, kGran, s), SPILLWAY_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(p, nullptr);
    EXPECT_NE(std::string(LastError()).find("out of memory"), std::string::npos) << LastError();
    ASSERT_NO_FATAL_FAILURE(check_reserved());
    // A small request needs a slab page too: also out of memory.
    EXPECT_EQ(a.alloc_on(&p, 100, s), SPILLWAY_ERR_OUT_OF_MEMORY);
    ASSERT_NO_FATAL_FAILURE(check_reserved());
  }
  EXPECT_GE(a.stats().oom_count, 6u);
  for (std::size_t i = 0; i < blocks.size(); ++i)
    ASSERT_EQ(Check(blocks[i].first, kGran, 1000 + i, false), SIZE_MAX) << "block " << i;
  // Free one block on A: B may now allocate (A's idle memory moves to B).
  ASSERT_EQ(a.free_on(blocks[0].first, sa), SPILLWAY_OK);
  ASSERT_NO_FATAL_FAILURE(check_reserved());
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, kGran, sb), SPILLWAY_OK) << LastError();
  ASSERT_NO_FATAL_FAILURE(check_reserved());
  Fill(p, kGran, 77, false);
  for (std::size_t i = 1; i < blocks.size(); ++i)
    ASSERT_EQ(Check(blocks[i].first, kGran, 1000 + i, false), SIZE_MAX) << "block " << i;
  EXPECT_EQ(Check(p, kGran, 77, false), SIZE_MAX);
  blocks[0] = {p, sb};
  // Free half synchronously, then many small blocks fit.
  for (std::size_t i = 0; i < 16; ++i) ASSERT_EQ(a.free_sync(blocks[i].first), SPILLWAY_OK);
  std::vector<void*> small;
  for (int i = 0; i < 2000; ++i) {
    void* q = nullptr;
    ASSERT_EQ(a.alloc_on(&q, 4000, sa), SPILLWAY_OK) << i << ": " << LastError();
    small.push_back(q);
    if (i % 100 == 0) {
      ASSERT_NO_FATAL_FAILURE(check_reserved());
    }
  }
  ASSERT_NO_FATAL_FAILURE(check_reserved());
  for (void* q : small) ASSERT_EQ(a.free_on(q, sa), SPILLWAY_OK);
  for (std::size_t i = 16; i < blocks.size(); ++i)
    ASSERT_EQ(a.free_on(blocks[i].first, blocks[i].second), SPILLWAY_OK);
  ASSERT_NO_FATAL_FAILURE(check_reserved());
  EXPECT_EQ(a.stats().allocated_bytes, 0u);
}

TEST(Allocator, SetBudgetBelowAllocatedFails) {
  SimAlloc a;
  prim::Stream s = a.stream();
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, 10 * kMiB, s), SPILLWAY_OK);
  EXPECT_EQ(a.alloc->set_budget(0, 8 * kMiB), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(std::string(LastError()).find("budget"), std::string::npos) << LastError();
  EXPECT_EQ(a.stats().budget_bytes, 0u) << "a rejected budget must not be applied";
  EXPECT_EQ(a.alloc->set_budget(0, 4096), SPILLWAY_ERR_INVALID_VALUE);  // below one chunk
  EXPECT_EQ(a.alloc->set_budget(0, 12 * kMiB), SPILLWAY_OK);
  EXPECT_EQ(a.stats().budget_bytes, 12 * kMiB);
  EXPECT_LE(a.stats().reserved_bytes, 12 * kMiB);
  EXPECT_EQ(a.alloc->set_budget(0, 0), SPILLWAY_OK);  // removes the cap
  EXPECT_EQ(a.stats().budget_bytes, 0u);
  ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
}

// A cap above what is allocated but below the pages live blocks hold (each holds whole pages,
// per arena) cannot be kept: refused with a reason, the old cap stays, nothing is lost. Found by
// fuzz_ops (four arenas: 30.7 MiB allocated held 34 MiB of pages; a 32 MiB cap was taken and
// reserved stayed above it).
TEST(Allocator, SetBudgetBelowHeldPagesFails) {
  SimAlloc a;
  prim::Stream s0 = a.stream(), s1 = a.stream();
  void* p = nullptr;
  void* q = nullptr;
  // 5 MiB + 1 byte on two streams: 3 pages each (12 MiB held) for ~10 MiB allocated.
  ASSERT_EQ(a.alloc_on(&p, 5 * kMiB + 1, s0), SPILLWAY_OK);
  ASSERT_EQ(a.alloc_on(&q, 5 * kMiB + 1, s1), SPILLWAY_OK);
  Fill(p, 5 * kMiB + 1, 1);
  Fill(q, 5 * kMiB + 1, 2);
  ASSERT_EQ(a.stats().reserved_bytes, 12 * kMiB);
  EXPECT_EQ(a.alloc->set_budget(0, 11 * kMiB), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(std::string(LastError()).find("live blocks hold"), std::string::npos) << LastError();
  EXPECT_EQ(a.stats().budget_bytes, 0u) << "a refused budget must not be applied";
  EXPECT_EQ(a.alloc->set_budget(0, 12 * kMiB), SPILLWAY_OK);
  EXPECT_EQ(a.stats().budget_bytes, 12 * kMiB);
  EXPECT_LE(a.stats().reserved_bytes, 12 * kMiB);
  EXPECT_EQ(a.alloc->set_budget(0, 11 * kMiB), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(a.stats().budget_bytes, 12 * kMiB) << "the old cap stays";
  a.sim->synchronize(s0);
  a.sim->synchronize(s1);
  EXPECT_EQ(Check(p, 5 * kMiB + 1, 1), SIZE_MAX);
  EXPECT_EQ(Check(q, 5 * kMiB + 1, 2), SIZE_MAX);
  ASSERT_EQ(a.free_on(p, s0), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(q, s1), SPILLWAY_OK);
}

TEST(Allocator, TrimKeepsRequestedCache) {
  SimAlloc a;
  prim::Stream s = a.stream();
  std::vector<void*> ps(8);
  for (auto& p : ps) ASSERT_EQ(a.alloc_on(&p, kGran, s), SPILLWAY_OK);
  for (auto p : ps) ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
  EXPECT_EQ(a.stats().reserved_bytes, 8 * kGran) << "freed blocks stay cached";
  ASSERT_EQ(a.alloc->trim(0, 3 * kGran), SPILLWAY_OK);
  EXPECT_EQ(a.stats().reserved_bytes, 3 * kGran);
  ASSERT_EQ(a.alloc->trim(0, 0), SPILLWAY_OK);
  EXPECT_EQ(a.stats().reserved_bytes, 0u);
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, kGran, s), SPILLWAY_OK);
  Fill(p, kGran, 5);
  EXPECT_EQ(Check(p, kGran, 5), SIZE_MAX);
  ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
}

// A block of the synchronous (cudaMalloc) arena freed stream-ordered on the legacy stream while
// a kernel on that stream still writes it: trimming must not unmap the memory under the kernel.
// Run in a child so that a fault is reported as a failure of this test only.
TEST(Allocator, SyncArenaStreamOrderedFreeIsFencedBeforeUnmap) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        SimAlloc a;
        void* p = nullptr;
        if (a.alloc_on(&p, kGran, nullptr, true) != SPILLWAY_OK) std::_Exit(3);
        a.sim->enqueue(nullptr, [p] {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          std::memset(p, 0x5a, kGran);  // the kernel, still running after the free
        });
        if (a.free_on(p, nullptr) != SPILLWAY_OK) std::_Exit(4);
        if (a.alloc->trim(0, 0) != SPILLWAY_OK) std::_Exit(5);
        a.sim->synchronize(nullptr);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// trim(0) must unmap every idle page, also when the oldest idle pages are already known to be
// done and newer ones are not yet fenced (steal_idle in blocking mode has to wait for those).
TEST(Allocator, TrimReleasesAllIdlePages) {
  SimAlloc a;
  prim::Stream s = a.stream();
  void *x = nullptr, *y = nullptr, *z = nullptr;
  ASSERT_EQ(a.alloc_on(&x, kGran, s), SPILLWAY_OK);
  ASSERT_EQ(a.alloc_on(&y, kGran, s), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(x, s), SPILLWAY_OK);                // cached in the arena
  ASSERT_EQ(a.alloc_on(&z, 3 * kMiB, s), SPILLWAY_OK);    // x's page becomes idle, fenced
  a.sim->synchronize(s);                                  // that fence completes
  ASSERT_EQ(a.free_on(y, s), SPILLWAY_OK);
  ASSERT_EQ(a.alloc->trim(0, 0), SPILLWAY_OK);
  // Only z's two pages are in use: everything else must have gone back.
  DeviceHeap* heap = nullptr;
  ASSERT_EQ(a.alloc->heap(0, &heap), SPILLWAY_OK);
  EXPECT_EQ(a.stats().reserved_bytes, 2 * kGran) << heap->report(0, nullptr);
  ASSERT_EQ(a.free_on(z, s), SPILLWAY_OK);
  ASSERT_EQ(a.alloc->trim(0, 0), SPILLWAY_OK);
  EXPECT_EQ(a.stats().reserved_bytes, 0u) << heap->report(0, nullptr);
}

TEST(Allocator, FragmentationBound) {
  SimAlloc a(4096 * kMiB);
  prim::Stream s = a.stream();
  std::mt19937_64 rng(2024);
  std::vector<std::pair<void*, std::size_t>> live;
  std::uint64_t live_bytes = 0;
  for (int it = 0; it < 3000; ++it) {
    if (live_bytes < 256 * kMiB && (live.empty() || rng() % 2 == 0)) {
      // Large sizes from 300 KiB to 24 MiB, odd multiples of 512 and unaligned sizes.
      std::size_t n = (300 << 10) + rng() % (24 * kMiB);
      void* p = nullptr;
      ASSERT_EQ(a.alloc_on(&p, n, s), SPILLWAY_OK);
      live.push_back({p, n});
      live_bytes += n;
    } else {
      std::size_t k = rng() % live.size();
      ASSERT_EQ(a.free_on(live[k].first, s), SPILLWAY_OK);
      live_bytes -= live[k].second;
      live[k] = live.back();
      live.pop_back();
    }
  }
  spillway_stats st = a.stats();
  const double ratio = static_cast<double>(st.peak_reserved_bytes) /
                       static_cast<double>(st.peak_allocated_bytes);
  std::printf("fragmentation: peak reserved %.1f MiB / peak allocated %.1f MiB = %.4f\n",
              static_cast<double>(st.peak_reserved_bytes) / kMiB,
              static_cast<double>(st.peak_allocated_bytes) / kMiB, ratio);
  // Regression guard on today's behaviour (1.25 measured on 2026-11-28). The product target
  // (1.05, below every PyTorch allocator) is a benchmark figure (bench/results/allocator.json)
  // and is NOT met yet: pages made idle by flushing the quick bins are not stealable until a
  // fence event completes, so the slow path creates chunks instead (docs/allocator.md).
  EXPECT_LT(ratio, 1.30);
  for (auto& [p, n] : live) ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
}

}  // namespace
}  // namespace spillway::test

// The reserve policy (SPILLWAY_RESERVE_POLICY). Pages freed on a stream that is still busy are
// not known to be done: `fast` reserves new memory past the allowance, `compact` waits for the
// stream to pass the free and reuses those pages instead.
namespace {
struct PolicyRun {
  std::uint64_t reserved;
  double seconds;
};
PolicyRun RunPolicy(bool compact) {
  spillway::Config cfg;
  cfg.compact = compact;
  spillway::test::SimAlloc a(4096 * spillway::test::kMiB, 1, cfg);
  using spillway::test::kMiB;
  spillway::prim::Stream s = a.stream();
  void *x = nullptr, *z = nullptr, *y = nullptr;
  EXPECT_EQ(a.alloc_on(&x, 64 * kMiB, s), SPILLWAY_OK);
  EXPECT_EQ(a.alloc_on(&z, 2 * kMiB, s), SPILLWAY_OK);  // keeps x's hole from growing
  a.sim->enqueue(s, [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
  EXPECT_EQ(a.free_on(x, s), SPILLWAY_OK);  // x's pages: idle, but the stream is busy
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(a.alloc_on(&y, 128 * kMiB, s), SPILLWAY_OK);  // does not fit in x's hole
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::memset(y, 0x3c, 128 * kMiB);  // every byte of y is mapped and writable
  const std::uint64_t reserved = a.stats().reserved_bytes;
  EXPECT_EQ(a.free_on(y, s), SPILLWAY_OK);
  EXPECT_EQ(a.free_on(z, s), SPILLWAY_OK);
  return {reserved, secs};
}
}  // namespace

TEST(ReservePolicy, FastGrowsCompactWaitsAndReuses) {
  using spillway::test::kMiB;
  const PolicyRun fast = RunPolicy(false);
  const PolicyRun compact = RunPolicy(true);
  std::printf("fast: reserved %.0f MiB in %.3f s; compact: reserved %.0f MiB in %.3f s\n",
              fast.reserved / double(kMiB), fast.seconds, compact.reserved / double(kMiB),
              compact.seconds);
  // fast: x's 64 MiB stay reserved beside y's 128 MiB and z.
  EXPECT_EQ(fast.reserved, (64 + 2 + 128) * kMiB);
  EXPECT_LT(fast.seconds, 0.2) << "fast must not wait for the stream";
  // compact: y reuses x's pages once the stream passed the free; only the allowance was added.
  EXPECT_LE(compact.reserved, 142 * kMiB);
  EXPECT_GE(compact.seconds, 0.1) << "compact waited for the stream";
}

// Several devices: each has its own heap, statistics and budget; a free finds the right device
// from the pointer alone; a block of one device is never handed out on another.
TEST(Allocator, SeveralDevicesAreIndependent) {
  using spillway::test::kMiB;
  spillway::test::SimAlloc a(1024 * kMiB, 3);
  spillway::prim::Stream s = a.stream();
  std::vector<std::pair<void*, int>> blocks;
  for (int round = 0; round < 3; ++round) {
    for (int d = 0; d < 3; ++d) {
      void* p = nullptr;
      const std::size_t n = (d + 1) * 3 * kMiB + 100;
      ASSERT_EQ(a.alloc->allocate(&p, n, d, s, false, spillway::trace::Kind::kApiMalloc),
                SPILLWAY_OK)
          << spillway::LastError();
      std::memset(p, d + 1, n);
      for (auto& [q, dq] : blocks) ASSERT_NE(q, p);
      blocks.push_back({p, d});
    }
  }
  ASSERT_EQ(a.alloc->set_budget(1, 64 * kMiB), SPILLWAY_OK);
  for (int d = 0; d < 3; ++d) {
    spillway_stats st{};
    ASSERT_EQ(a.alloc->stats(d, &st), SPILLWAY_OK);
    EXPECT_EQ(st.live_blocks, 3u) << "device " << d;
    EXPECT_EQ(st.allocated_bytes, 3 * ((d + 1) * 3 * kMiB + 100)) << "device " << d;
    EXPECT_EQ(st.budget_bytes, d == 1 ? 64 * kMiB : 0u);
  }
  void* big = nullptr;  // over device 1's budget, fine on device 2
  EXPECT_EQ(a.alloc->allocate(&big, 100 * kMiB, 1, s, false, spillway::trace::Kind::kApiMalloc),
            SPILLWAY_ERR_OUT_OF_MEMORY);
  ASSERT_EQ(a.alloc->allocate(&big, 100 * kMiB, 2, s, false, spillway::trace::Kind::kApiMalloc),
            SPILLWAY_OK);
  ASSERT_EQ(a.free_on(big, s), SPILLWAY_OK);
  for (auto& [p, d] : blocks) ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK) << "device " << d;
  for (int d = 0; d < 3; ++d) {
    spillway_stats st{};
    ASSERT_EQ(a.alloc->stats(d, &st), SPILLWAY_OK);
    EXPECT_EQ(st.live_blocks, 0u);
    EXPECT_EQ(st.allocated_bytes, 0u);
  }
}
