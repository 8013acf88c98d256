// stress_test.cpp — multi-threaded randomized stress of one Allocator over the SimBackend:
// 8 threads (six with their own sim stream, two sharing one stream), random small and large
// sizes up to 8 MiB, stream-ordered and synchronous allocations, each block filled with a
// pattern of (thread, op index) and verified before its free; frees in random order with a mix
// of stream-ordered, synchronous and foreign-stream frees. At the end the statistics must be
// consistent (no live blocks, 0 bytes allocated, counts balanced) and trim(0) must give back
// everything. Also built and run under ThreadSanitizer (-DSPILLWAY_SANITIZE=thread).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "test_util.h"

namespace spillway::test {
namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kOpsPerThread = 6000;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kOpsPerThread = 6000;
#else
constexpr int kOpsPerThread = 20000;
#endif
#else
constexpr int kOpsPerThread = 20000;
#endif
constexpr int kThreads = 8;
constexpr std::size_t kMaxLive = 24;

struct Block {
  void* p;
  std::size_t n;
  std::uint64_t tag;
};

TEST(Stress, EightThreadsRandomOps) {
  SimAlloc a(8192 * kMiB);
  std::vector<prim::Stream> streams;
  for (int i = 0; i < 6; ++i) streams.push_back(a.stream());
  prim::Stream shared = a.stream();
  std::atomic<int> failures{0};
  std::atomic<std::uint64_t> ops_done{0};
  const auto t0 = std::chrono::steady_clock::now();

  auto worker = [&](int tid) {
    prim::Stream mine = tid < 6 ? streams[static_cast<std::size_t>(tid)] : shared;
    prim::Stream other = streams[static_cast<std::size_t>((tid + 1) % 6)];
    std::mt19937_64 rng(1000 + static_cast<std::uint64_t>(tid));
    std::vector<Block> live;
    auto fail = [&](const char* what, const Block* b) {
      if (failures.fetch_add(1) < 10)
        ADD_FAILURE() << "thread " << tid << ": " << what
                      << (b ? " (size " + std::to_string(b->n) + ")" : std::string()) << " "
                      << LastError();
    };
    auto release = [&](std::size_t k) {
      Block b = live[k];
      live[k] = live.back();
      live.pop_back();
      if (Check(b.p, b.n, b.tag, b.n <= 8192) != SIZE_MAX) fail("pattern corrupted", &b);
      spillway_status st;
      const unsigned m = static_cast<unsigned>(rng() % 10);
      if (m < 6) st = a.free_on(b.p, mine);
      else if (m < 8) st = a.free_sync(b.p);
      else st = a.free_on(b.p, other);  // foreign-stream free: deferred on `other`
      if (st != SPILLWAY_OK) fail("free failed", &b);
    };
    for (int op = 0; op < kOpsPerThread && failures.load() == 0; ++op) {
      if (live.size() >= kMaxLive || (!live.empty() && rng() % 2 == 0)) {
        release(rng() % live.size());
        continue;
      }
      std::size_t n;
      const unsigned r = static_cast<unsigned>(rng() % 100);
      if (r < 70) n = 1 + rng() % 4096;
      else if (r < 92) n = 4097 + rng() % (256 << 10);
      else n = (256 << 10) + 1 + rng() % (8 * kMiB - (256 << 10));
      const bool sync = rng() % 8 == 0;
      Block b{nullptr, n, (static_cast<std::uint64_t>(tid) << 32) | static_cast<std::uint64_t>(op)};
      if (a.alloc_on(&b.p, n, mine, sync) != SPILLWAY_OK || b.p == nullptr) {
        fail("allocation failed", &b);
        break;
      }
      if (reinterpret_cast<std::uintptr_t>(b.p) % 512 != 0) fail("misaligned", &b);
      Fill(b.p, n, b.tag, n <= 8192);
      live.push_back(b);
      if (op % 512 == 0) a.sim->enqueue(mine, [] {});  // some stream work in flight
    }
    while (!live.empty()) release(rng() % live.size());
    ops_done.fetch_add(kOpsPerThread);
  };

  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) ts.emplace_back(worker, t);
  for (auto& t : ts) t.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("stress: %d threads x %d ops in %.2f s\n", kThreads, kOpsPerThread, secs);
  ASSERT_EQ(failures.load(), 0);

  for (auto s : a.streams) a.sim->synchronize(s);
  a.sim->synchronize(nullptr);
  spillway_stats st = a.stats();
  EXPECT_EQ(st.live_blocks, 0u);
  EXPECT_EQ(st.allocated_bytes, 0u);
  EXPECT_EQ(st.internal_waste_bytes, 0u);
  EXPECT_EQ(st.alloc_count, st.free_count);
  EXPECT_GT(st.alloc_count, static_cast<std::uint64_t>(kThreads) * kOpsPerThread / 3);
  EXPECT_GE(st.reserved_bytes, 0u);
  EXPECT_GE(st.peak_reserved_bytes, st.peak_allocated_bytes);
  ASSERT_EQ(a.alloc->trim(0, 0), SPILLWAY_OK);
  st = a.stats();
  DeviceHeap* heap = nullptr;
  ASSERT_EQ(a.alloc->heap(0, &heap), SPILLWAY_OK);
  EXPECT_EQ(st.reserved_bytes, 0u) << heap->report(0, nullptr);
  EXPECT_EQ(st.chunk_create_count, st.chunk_release_count);
}

}  // namespace
}  // namespace spillway::test
