// tracker_test.cpp — the tracker's CPU-testable parts: the live-block index (lookups, removal,
// concurrency), argument scanning (kernelParams, extra buffers), the access bookkeeping, the
// launch decoding with its counters, the "CUPTI unavailable" path, and the kAccess records an
// Allocator writes at free and at exit. No CUPTI callback runs here (no GPU).
#include "profiler/tracker/tracker.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "profiler/trace_reader.h"
#include "profiler/tracker/arg_scan.h"
#include "profiler/tracker/block_index.h"
#include "test_util.h"

namespace spillway {
namespace {

using tracker::Access;
using tracker::BlockIndex;
using tracker::Counters;
using tracker::Decoded;
using tracker::ParamLayout;

std::uint64_t P(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

TEST(BlockIndex, InteriorPointersAndBoundaries) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x10000, 256, 0));
  ASSERT_TRUE(ix.add(0x20000, 1, 1));
  EXPECT_EQ(ix.find(0x10000)->addr(), 0x10000u);
  EXPECT_EQ(ix.find(0x10000 + 100)->addr(), 0x10000u);  // interior
  EXPECT_EQ(ix.find(0x10000 + 255)->addr(), 0x10000u);  // last byte
  EXPECT_EQ(ix.find(0x10000 + 256), nullptr);           // one past the end
  EXPECT_EQ(ix.find(0x10000 - 1), nullptr);
  EXPECT_EQ(ix.find(0x20000)->device(), 1);
  EXPECT_EQ(ix.find(0x20001), nullptr);
  EXPECT_EQ(ix.find(0), nullptr);
  EXPECT_EQ(ix.find(~std::uint64_t{0}), nullptr);
  EXPECT_EQ(ix.find(0x18000), nullptr);  // the gap between blocks
}

TEST(BlockIndex, AddRejectsOverlapAndEmpty) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(1000, 100, 0));
  EXPECT_FALSE(ix.add(1000, 10, 0));
  EXPECT_FALSE(ix.add(1099, 10, 0));
  EXPECT_FALSE(ix.add(990, 11, 0));
  EXPECT_FALSE(ix.add(2000, 0, 0));
  EXPECT_FALSE(ix.add(~std::uint64_t{0} - 3, 10, 0));  // wraps
  EXPECT_TRUE(ix.add(990, 10, 0));    // ends exactly where the next begins
  EXPECT_TRUE(ix.add(1100, 10, 0));   // begins exactly where the previous ends
  EXPECT_EQ(ix.live(), 3u);
}

TEST(BlockIndex, Removal) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x1000, 0x100, 0));
  ASSERT_TRUE(ix.add(0x2000, 0x100, 0));
  EXPECT_FALSE(ix.remove(0x1001).has_value());  // not a block's start
  auto s = ix.remove(0x1000);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->addr, 0x1000u);
  EXPECT_EQ(s->size, 0x100u);
  EXPECT_EQ(ix.find(0x1000), nullptr);
  EXPECT_EQ(ix.find(0x10ff), nullptr);
  EXPECT_NE(ix.find(0x2000), nullptr);
  EXPECT_FALSE(ix.remove(0x1000).has_value());  // twice
  ASSERT_TRUE(ix.remove(0x2000).has_value());
  EXPECT_EQ(ix.live(), 0u);
  EXPECT_EQ(ix.find(0x2000), nullptr);  // empty index: the range check rejects everything
  EXPECT_EQ(ix.find(0), nullptr);
  ASSERT_TRUE(ix.add(0x1000, 0x100, 0));  // the same address again
  EXPECT_NE(ix.find(0x1080), nullptr);
}

TEST(BlockIndex, ManyBlocksMatchBruteForce) {
  BlockIndex ix;
  std::mt19937_64 rng(7);
  struct B {
    std::uint64_t a, n;
  };
  std::vector<B> live;
  std::uint64_t next = 0x7f0000000000;
  for (int i = 0; i < 5000; ++i) {
    next += 1 + rng() % 512;  // gaps, sometimes of one byte
    const std::uint64_t n = 1 + rng() % 4096;
    ASSERT_TRUE(ix.add(next, n, 0));
    live.push_back({next, n});
    next += n;
  }
  std::shuffle(live.begin(), live.end(), rng);
  for (std::size_t i = 0; i < live.size() / 2; ++i) ASSERT_TRUE(ix.remove(live[i].a));
  live.erase(live.begin(), live.begin() + static_cast<std::ptrdiff_t>(live.size() / 2));
  std::sort(live.begin(), live.end(), [](const B& x, const B& y) { return x.a < y.a; });
  EXPECT_EQ(ix.live(), live.size());
  const std::uint64_t lo = 0x7f0000000000 - 10, hi = next + 10;
  for (int i = 0; i < 200000; ++i) {
    const std::uint64_t w = lo + rng() % (hi - lo);
    auto it = std::upper_bound(live.begin(), live.end(), w,
                               [](std::uint64_t v, const B& b) { return v < b.a; });
    const B* want = (it != live.begin() && w < std::prev(it)->a + std::prev(it)->n)
                        ? &*std::prev(it) : nullptr;
    tracker::Block* got = ix.find(w);
    ASSERT_EQ(got == nullptr, want == nullptr) << std::hex << w;
    if (got) {
      ASSERT_EQ(got->addr(), want->a);
    }
  }
}

TEST(BlockIndex, AccessBookkeeping) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x1000, 64, 2));
  auto none = ix.snapshot();
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].count, 0u);
  EXPECT_EQ(none[0].first_t_ns, 0u);
  EXPECT_EQ(none[0].nstreams, 0u);
  const std::uint64_t w[] = {0x1000, 0x1008, 0x2000, 7};  // two hits, two misses
  EXPECT_EQ(ix.record(w, 4, Access{500, 5, 0}), 2u);          // legacy stream 0 counts
  EXPECT_EQ(ix.record(w, 1, Access{300, 3, 0x11}), 1u);       // earlier time, other stream
  EXPECT_EQ(ix.record(w, 1, Access{900, 9, 0x11}), 1u);
  auto s = ix.snapshot()[0];
  EXPECT_EQ(s.count, 4u);
  EXPECT_EQ(s.first_t_ns, 300u);
  EXPECT_EQ(s.last_t_ns, 900u);
  EXPECT_EQ(s.first_seq, 3u);
  EXPECT_EQ(s.last_seq, 9u);
  EXPECT_EQ(s.device, 2);
  ASSERT_EQ(s.nstreams, 2u);
  EXPECT_EQ(s.streams[0], 0u);
  EXPECT_EQ(s.streams[1], 0x11u);
  EXPECT_FALSE(s.more_streams);
  for (std::uint64_t st : {0x22, 0x33, 0x44, 0x55})
    ix.record(w, 1, Access{1000, 10, st});
  s = *ix.remove(0x1000);
  EXPECT_EQ(s.nstreams, 4u);  // 0, 0x11, 0x22, 0x33 remembered
  EXPECT_TRUE(s.more_streams);  // 0x44, 0x55 seen
  EXPECT_EQ(s.count, 8u);
  EXPECT_EQ(s.last_t_ns, 1000u);
}

// Periods: accesses closer than kBurstGap operations are one burst; the period is the gap
// before the latest burst, longest_period the longest such gap. A foreach optimizer's state:
// five passes a step (short gaps), steps far apart.
TEST(BlockIndex, PeriodsOfBursts) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x1000, 64, 0));
  const std::uint64_t w[] = {0x1000};
  auto at = [&](std::uint64_t seq) { ix.record(w, 1, Access{seq, seq, 0}); };
  at(1);
  at(1 + tracker::kBurstGap);  // one burst
  auto s = ix.snapshot()[0];
  EXPECT_EQ(s.period, 0u);
  EXPECT_EQ(s.longest_period, 0u);
  std::uint64_t seq = 1 + tracker::kBurstGap;
  for (int step = 0; step < 3; ++step) {
    seq += 5000;  // the next optimizer step
    for (int pass = 0; pass < 5; ++pass, seq += 100) at(seq);
    seq -= 100;
  }
  s = ix.snapshot()[0];
  EXPECT_EQ(s.period, 100u) << "the gap between the last two passes";
  EXPECT_EQ(s.longest_period, 5000u) << "the gap between steps";
  EXPECT_EQ(s.gap, 100u);
}

// Readers (launch threads) record accesses while writers (alloc/free threads) add and remove
// blocks: run under TSan by scripts/test.sh (the name matches its "Thread" filter).
TEST(BlockIndex, ThreadedReadersAndWriters) {
  BlockIndex ix;
  constexpr int kWriters = 2, kReaders = 4, kPerWriter = 64;
  constexpr std::uint64_t kBase = 0x100000, kStride = 0x1000, kSize = 0x800;
  // A stable block every reader hits (never removed).
  ASSERT_TRUE(ix.add(kBase - kStride, kSize, 0));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> stable_hits{0};
  std::atomic<int> readers_started{0};  // writers wait for every reader's first record
  std::vector<std::thread> ts;
  for (int w = 0; w < kWriters; ++w) {
    ts.emplace_back([&, w] {
      while (readers_started.load() < kReaders) std::this_thread::yield();
      for (int round = 0; round < 300; ++round) {
        for (int i = 0; i < kPerWriter; ++i)
          EXPECT_TRUE(ix.add(kBase + (static_cast<std::uint64_t>(w * kPerWriter + i)) * kStride,
                             kSize, w));
        for (int i = 0; i < kPerWriter; ++i) {
          auto s = ix.remove(kBase + (static_cast<std::uint64_t>(w * kPerWriter + i)) * kStride);
          EXPECT_TRUE(s.has_value());
        }
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    ts.emplace_back([&, r] {
      std::vector<std::uint64_t> words;
      for (int i = 0; i < kWriters * kPerWriter; ++i)
        words.push_back(kBase + static_cast<std::uint64_t>(i) * kStride + 8);
      words.push_back(kBase - kStride + 16);
      std::uint64_t seq = 0;
      while (!stop.load()) {
        ix.record(words.data(), words.size(),
                  Access{++seq, seq, static_cast<std::uint64_t>(r)});
        {
          auto lk = ix.read_lock();
          if (tracker::Block* b = ix.find(kBase - kStride + 1)) {
            b->record(Access{seq, seq, static_cast<std::uint64_t>(r)});
            stable_hits.fetch_add(1);
          }
        }
        if (seq == 1) readers_started.fetch_add(1);
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) ts[static_cast<std::size_t>(w)].join();
  stop.store(true);
  for (std::size_t i = kWriters; i < ts.size(); ++i) ts[i].join();
  EXPECT_EQ(ix.live(), 1u);
  auto s = ix.snapshot();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].count, 2 * stable_hits.load());
  EXPECT_EQ(s[0].nstreams, static_cast<std::uint32_t>(kReaders));
}

// The two-level index under random adds and removes (leaf splits and merges, addresses reused,
// a block at address 0), checked against a brute-force map after every step's lookups.
TEST(BlockIndex, RandomAddRemoveMatchesBruteForce) {
  BlockIndex ix;
  std::mt19937_64 rng(11);
  std::map<std::uint64_t, std::uint64_t> live;             // addr -> size
  auto want = [&live](std::uint64_t w) -> std::uint64_t {  // block start, or ~0
    auto it = live.upper_bound(w);
    if (it == live.begin()) return ~std::uint64_t{0};
    --it;
    return w < it->first + it->second ? it->first : ~std::uint64_t{0};
  };
  constexpr std::uint64_t kSlots = 6000, kSlot = 0x1000;
  for (int step = 0; step < 40000; ++step) {
    const std::uint64_t slot = rng() % kSlots;
    const std::uint64_t addr = slot * kSlot + (rng() % 2 == 0 ? 0 : 8 * (rng() % 64));
    // Mostly adds until ~3000 live, then balanced: splits, then merges as it drains.
    const bool drain = step > 30000;
    if (!drain && (live.size() < 3000 || rng() % 2 == 0)) {
      const std::uint64_t size = 1 + rng() % (rng() % 8 == 0 ? 3 * kSlot : kSlot / 2);
      bool overlaps = false;
      auto it = live.lower_bound(addr);
      if (it != live.end() && it->first < addr + size) overlaps = true;
      if (it != live.begin() && std::prev(it)->first + std::prev(it)->second > addr)
        overlaps = true;
      ASSERT_EQ(ix.add(addr, size, 0), !overlaps) << std::hex << addr;
      if (!overlaps) live.emplace(addr, size);
    } else if (!live.empty()) {
      auto it = live.lower_bound(addr);
      if (it == live.end()) it = live.begin();
      ASSERT_FALSE(ix.remove(it->first + 1).has_value());
      auto sum = ix.remove(it->first);
      ASSERT_TRUE(sum.has_value());
      ASSERT_EQ(sum->addr, it->first);
      ASSERT_EQ(sum->size, it->second);
      live.erase(it);
    }
    for (int q = 0; q < 8; ++q) {
      std::uint64_t w = rng() % (kSlots * kSlot + 4 * kSlot);
      if (q == 0 && !live.empty())
        w = live.lower_bound(w) != live.end() ? live.lower_bound(w)->first : 0;
      const tracker::Block* b = ix.find(w);
      const std::uint64_t exp = want(w);
      ASSERT_EQ(b == nullptr, exp == ~std::uint64_t{0}) << std::hex << w;
      if (b != nullptr) {
        ASSERT_EQ(b->addr(), exp);
      }
      // Through the starts table and the search (record's path).
      const std::uint64_t one[] = {w};
      ASSERT_EQ(ix.record(one, 1, Access{1, 1, 0}), exp == ~std::uint64_t{0} ? 0u : 1u);
    }
  }
  EXPECT_EQ(ix.live(), live.size());
  const auto snap = ix.snapshot();
  ASSERT_EQ(snap.size(), live.size());
  auto it = live.begin();
  for (const auto& b : snap) {
    EXPECT_EQ(b.addr, it->first);
    ++it;
  }
}

// Nothing found for a freed block's bytes (by its start or inside): after the block is freed,
// a new block over the same bytes (another start) is the one recorded.
TEST(BlockIndex, NoStaleLookupAfterRemove) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x10000, 0x1000, 0));
  const std::uint64_t interior[] = {0x10800};
  EXPECT_EQ(ix.record(interior, 1, Access{1, 1, 0}), 1u);
  EXPECT_EQ(ix.record(interior, 1, Access{2, 2, 0}), 1u);
  ASSERT_EQ(ix.remove(0x10000)->count, 2u);
  EXPECT_EQ(ix.record(interior, 1, Access{3, 3, 0}), 0u);  // nothing there
  ASSERT_TRUE(ix.add(0xF000, 0x2000, 1));                  // over the old bytes
  EXPECT_EQ(ix.record(interior, 1, Access{4, 4, 0}), 1u);
  auto s = ix.remove(0xF000);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->count, 1u);
  EXPECT_EQ(s->first_seq, 4u);
  ASSERT_TRUE(ix.add(0x10000, 0x1000, 0));  // the same start again: a fresh block
  const std::uint64_t start[] = {0x10000};
  EXPECT_EQ(ix.record(start, 1, Access{5, 5, 0}), 1u);
  EXPECT_EQ(ix.remove(0x10000)->count, 1u);
}

// Several words of one launch in one block count once each, with one touch; touches reach a
// batch sink once per call, a plain sink once per block.
TEST(BlockIndex, WordsOfOneLaunchAndTouchSinks) {
  struct Got {
    std::vector<std::uint64_t> blocks;
    int calls = 0;
  } got;
  BlockIndex ix;
  ix.set_touch_batch_sink(
      [](void* ctx, const tracker::Block* const* b, std::size_t n, const Access& a) {
        auto* g = static_cast<Got*>(ctx);
        ++g->calls;
        for (std::size_t i = 0; i < n; ++i) g->blocks.push_back(b[i]->addr());
        EXPECT_EQ(a.seq, 40u);
      },
      &got);
  ASSERT_TRUE(ix.add(0x1000, 0x100, 0));
  ASSERT_TRUE(ix.add(0x2000, 0x100, 0));
  const std::uint64_t w[] = {0x1000, 0x1010, 0x2000, 0x1000, 7, 0x3000};
  EXPECT_EQ(ix.record(w, 6, Access{100, 40, 3}), 4u);
  EXPECT_EQ(got.calls, 1);
  EXPECT_EQ(got.blocks, (std::vector<std::uint64_t>{0x1000, 0x2000}));
  EXPECT_EQ(ix.record(w, 6, Access{101, 41, 3}), 4u);  // same epoch (41 >> 5 == 40 >> 5)
  EXPECT_EQ(got.calls, 1);
  const auto snap = ix.snapshot();
  EXPECT_EQ(snap[0].count, 6u);
  EXPECT_EQ(snap[1].count, 2u);
  EXPECT_EQ(snap[0].last_seq, 41u);

  BlockIndex plain;  // the per-touch sink
  int touches = 0;
  plain.set_touch_sink(
      [](void* ctx, const tracker::Block&, const Access&) { ++*static_cast<int*>(ctx); }, &touches);
  ASSERT_TRUE(plain.add(0x1000, 0x100, 0));
  ASSERT_TRUE(plain.add(0x2000, 0x100, 0));
  plain.record(w, 6, Access{100, 40, 3});
  EXPECT_EQ(touches, 2);
  plain.record(w, 6, Access{200, 64, 3});  // next epoch
  EXPECT_EQ(touches, 4);
}

TEST(ArgScan, KernelParamsMixedSizes) {
  int i32 = 7;
  void* ptr = reinterpret_cast<void*>(0xA000);
  struct Two {
    void* a;
    void* b;
  } two{reinterpret_cast<void*>(0xB000), reinterpret_cast<void*>(0xC000)};
  int small = 3;
  void* after = reinterpret_cast<void*>(0xD000);
  double d = 1.5;
  void* params[] = {&i32, &ptr, &two, &small, &after, &d};
  // Device-side layout: int@0, ptr@8, struct@16 (16 bytes), int@32, ptr@40, double@48.
  const ParamLayout layout = {{0, 4}, {8, 8}, {16, 16}, {32, 4}, {40, 8}, {48, 8}};
  std::vector<std::uint64_t> w;
  EXPECT_EQ(tracker::CollectKernelParams(layout, params, &w), 5u);
  std::uint64_t dbits;
  std::memcpy(&dbits, &d, 8);
  EXPECT_EQ(w, (std::vector<std::uint64_t>{0xA000, 0xB000, 0xC000, 0xD000, dbits}));
  // A null params array, a null entry.
  EXPECT_EQ(tracker::CollectKernelParams(layout, nullptr, &w), 0u);
  void* with_null[] = {&i32, nullptr, &two, &small, &after, &d};
  w.clear();
  EXPECT_EQ(tracker::CollectKernelParams(layout, with_null, &w), 4u);
}

TEST(ArgScan, LargeStructScannedWordByWord) {
  struct Big {
    int n;          // 0..3 (+4 padding)
    void* p[3];     // 8, 16, 24
    char tail[5];   // 32..36: the word at 32 is 8 bytes, fits in 40
  } big{};
  big.p[0] = reinterpret_cast<void*>(0x1);
  big.p[1] = reinterpret_cast<void*>(0x2);
  big.p[2] = reinterpret_cast<void*>(0x3);
  static_assert(sizeof(Big) == 40);
  void* params[] = {&big};
  std::vector<std::uint64_t> w;
  EXPECT_EQ(tracker::CollectKernelParams({{0, sizeof(Big)}}, params, &w), 5u);
  EXPECT_EQ(w[1], 1u);
  EXPECT_EQ(w[2], 2u);
  EXPECT_EQ(w[3], 3u);
  w.clear();
  EXPECT_EQ(tracker::CollectKernelParams({{0, 15}}, params, &w), 1u);  // 15 bytes: one word
}

TEST(ArgScan, ExtraBuffer) {
  // Packed like the device layout: int@0, ptr@8, int@16, ptr@24.
  alignas(8) unsigned char buf[32] = {};
  const std::uint32_t a = 42, c = 43;
  const std::uint64_t b = 0xAAA0, d = 0xDDD0;
  std::memcpy(buf + 0, &a, 4);
  std::memcpy(buf + 8, &b, 8);
  std::memcpy(buf + 16, &c, 4);
  std::memcpy(buf + 24, &d, 8);
  std::size_t size = sizeof buf;
  void* extra[] = {reinterpret_cast<void*>(std::uintptr_t{1}), buf,
                   reinterpret_cast<void*>(std::uintptr_t{2}), &size, nullptr};
  const void* got = nullptr;
  std::size_t got_size = 0;
  ASSERT_TRUE(tracker::ParseExtra(extra, &got, &got_size));
  EXPECT_EQ(got, buf);
  EXPECT_EQ(got_size, 32u);
  const ParamLayout layout = {{0, 4}, {8, 8}, {16, 4}, {24, 8}};
  std::vector<std::uint64_t> w;
  EXPECT_EQ(tracker::CollectPacked(&layout, got, got_size, &w), 2u);
  EXPECT_EQ(w, (std::vector<std::uint64_t>{0xAAA0, 0xDDD0}));
  w.clear();  // no layout: every word of the buffer
  EXPECT_EQ(tracker::CollectPacked(nullptr, got, got_size, &w), 4u);
  EXPECT_EQ(w[1], 0xAAA0u);
  EXPECT_EQ(w[3], 0xDDD0u);
  w.clear();  // a layout reaching past the buffer is cut
  EXPECT_EQ(tracker::CollectPacked(&layout, got, 28, &w), 1u);
  // Keys in the other order work too.
  void* extra2[] = {reinterpret_cast<void*>(std::uintptr_t{2}), &size,
                    reinterpret_cast<void*>(std::uintptr_t{1}), buf, nullptr};
  EXPECT_TRUE(tracker::ParseExtra(extra2, &got, &got_size));
}

TEST(ArgScan, ParseExtraRejects) {
  const void* b = nullptr;
  std::size_t n = 0;
  std::size_t size = 8;
  unsigned char buf[8] = {};
  EXPECT_FALSE(tracker::ParseExtra(nullptr, &b, &n));
  void* no_size[] = {reinterpret_cast<void*>(std::uintptr_t{1}), buf, nullptr};
  EXPECT_FALSE(tracker::ParseExtra(no_size, &b, &n));
  void* no_ptr[] = {reinterpret_cast<void*>(std::uintptr_t{2}), &size, nullptr};
  EXPECT_FALSE(tracker::ParseExtra(no_ptr, &b, &n));
  void* unknown[] = {reinterpret_cast<void*>(std::uintptr_t{9}), buf, nullptr};
  EXPECT_FALSE(tracker::ParseExtra(unknown, &b, &n));
}

TEST(ArgScan, UnalignedOffset) {
  // A 4-aligned argument of 8 bytes (e.g. struct {int x, y;}) at offset 4 of the packed buffer,
  // in a buffer that is itself misaligned: read with memcpy (UBSan checks this).
  alignas(8) unsigned char storage[40] = {};
  unsigned char* buf = storage + 1;
  const std::uint64_t v = 0x123456789A, p = 0xF000;
  std::memcpy(buf + 4, &v, 8);
  std::memcpy(buf + 16, &p, 8);
  const ParamLayout layout = {{0, 4}, {4, 8}, {12, 4}, {16, 8}};
  std::vector<std::uint64_t> w;
  EXPECT_EQ(tracker::CollectPacked(&layout, buf, 24, &w), 2u);
  EXPECT_EQ(w, (std::vector<std::uint64_t>{v, p}));
  // The same argument in kernelParams form, from an unaligned host copy.
  void* params[] = {buf, buf + 4, buf + 12, buf + 16};
  w.clear();
  EXPECT_EQ(tracker::CollectKernelParams(layout, params, &w), 2u);
  EXPECT_EQ(w, (std::vector<std::uint64_t>{v, p}));
}

TEST(Tracker, ScanLaunchDecodesAndCounts) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x5000, 0x100, 0));
  Counters c;
  void* in = reinterpret_cast<void*>(0x5010);   // interior pointer
  void* out = reinterpret_cast<void*>(0x9000);  // not ours
  int n = 4;
  void* params[] = {&in, &out, &n};
  const ParamLayout layout = {{0, 8}, {8, 8}, {16, 4}};
  EXPECT_EQ(tracker::ScanLaunch(ix, &layout, params, nullptr, Access{10, 1, 0x7}, c),
            Decoded::kParamInfo);
  alignas(8) unsigned char buf[24] = {};
  const std::uint64_t inv = 0x50ff;  // last byte
  std::memcpy(buf, &inv, 8);
  std::size_t size = sizeof buf;
  void* extra[] = {reinterpret_cast<void*>(std::uintptr_t{1}), buf,
                   reinterpret_cast<void*>(std::uintptr_t{2}), &size, nullptr};
  EXPECT_EQ(tracker::ScanLaunch(ix, &layout, nullptr, extra, Access{20, 2, 0x8}, c),
            Decoded::kExtra);
  EXPECT_EQ(tracker::ScanLaunch(ix, nullptr, params, nullptr, Access{30, 3, 0x7}, c),
            Decoded::kUndecodable);  // kernelParams without a layout: sizes unknown
  const ParamLayout empty;
  EXPECT_EQ(tracker::ScanLaunch(ix, &empty, nullptr, nullptr, Access{40, 4, 0x7}, c),
            Decoded::kParamInfo);  // no arguments
  EXPECT_EQ(tracker::ScanLaunch(ix, nullptr, nullptr, nullptr, Access{50, 5, 0x7}, c),
            Decoded::kUndecodable);
  const std::uint64_t copy[] = {0x5080, 0};
  tracker::ScanDirect(ix, copy, 2, Access{60, 6, 0x9}, c);
  const tracker::CounterValues v = tracker::Read(c);
  EXPECT_EQ(v.launches, 5u);
  EXPECT_EQ(v.by_param_info, 2u);
  EXPECT_EQ(v.by_extra, 1u);
  EXPECT_EQ(v.undecodable, 2u);
  EXPECT_EQ(v.copies, 1u);
  EXPECT_EQ(v.words, 2u + 2u + 2u);  // params: 2 (the int skipped); extra by layout: 2; copy: 2
  EXPECT_EQ(v.hits, 3u);
  auto s = *ix.remove(0x5000);
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.first_t_ns, 10u);
  EXPECT_EQ(s.last_t_ns, 60u);
  EXPECT_EQ(s.first_seq, 1u);
  EXPECT_EQ(s.last_seq, 6u);
  EXPECT_EQ(s.nstreams, 3u);
}

// The compiled plan gives the same words, hits and counters as the layout, for both forms.
TEST(Tracker, ScanLaunchPlanMatchesScanLaunch) {
  std::mt19937_64 rng(5);
  BlockIndex a, b;
  for (std::uint64_t i = 0; i < 64; ++i) {
    ASSERT_TRUE(a.add(0x100000 + i * 0x1000, 0x800, 0));
    ASSERT_TRUE(b.add(0x100000 + i * 0x1000, 0x800, 0));
  }
  Counters ca, cb;
  for (int launch = 0; launch < 2000; ++launch) {
    ParamLayout layout;
    std::size_t off = 0;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      const std::size_t size = rng() % 3 == 0   ? 4
                               : rng() % 3 == 0 ? 8 * (1 + rng() % 8) + rng() % 8
                                                : 8;
      const std::size_t align = size % 8 == 0 ? 8 : 4;
      off = (off + align - 1) / align * align;
      layout.push_back({off, size});
      off += size;
    }
    std::vector<unsigned char> buf(off + 8);
    for (std::size_t w = 0; w + 8 <= buf.size(); w += 8) {
      const std::uint64_t v = rng() % 2 == 0 ? 0x100000 + rng() % 0x40000 : rng() % 100;
      std::memcpy(buf.data() + w, &v, 8);
    }
    std::vector<void*> params;
    for (const auto& slot : layout)
      params.push_back(rng() % 10 == 0 ? nullptr : buf.data() + slot.offset);
    std::size_t size = rng() % 4 == 0 ? off / 2 : off;  // extra buffers cut short sometimes
    void* extra[] = {reinterpret_cast<void*>(std::uintptr_t{1}), buf.data(),
                     reinterpret_cast<void*>(std::uintptr_t{2}), &size, nullptr};
    tracker::KernelLayout k{layout, tracker::CompileScanPlan(layout)};
    const bool use_extra = rng() % 3 == 0;
    const bool known = rng() % 8 != 0;
    const Access acc{static_cast<std::uint64_t>(launch), static_cast<std::uint64_t>(launch), 1};
    EXPECT_EQ(tracker::ScanLaunch(a, known ? &layout : nullptr, use_extra ? nullptr : params.data(),
                                  use_extra ? extra : nullptr, acc, ca),
              tracker::ScanLaunchPlan(b, known ? &k : nullptr, use_extra ? nullptr : params.data(),
                                      use_extra ? extra : nullptr, acc, cb));
  }
  const auto va = tracker::Read(ca), vb = tracker::Read(cb);
  EXPECT_EQ(va.launches, vb.launches);
  EXPECT_EQ(va.by_param_info, vb.by_param_info);
  EXPECT_EQ(va.by_extra, vb.by_extra);
  EXPECT_EQ(va.undecodable, vb.undecodable);
  EXPECT_EQ(va.words, vb.words);
  EXPECT_EQ(va.hits, vb.hits);
  EXPECT_GT(va.hits, 1000u);
  const auto sa = a.snapshot(), sb = b.snapshot();
  ASSERT_EQ(sa.size(), sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].count, sb[i].count);
    EXPECT_EQ(sa[i].last_seq, sb[i].last_seq);
  }
}

// Layouts are queried once per handle, whatever the threads; an unknown layout is nullptr.
// (Run under TSan by scripts/test.sh: the name matches its "Thread" filter.)
// Pausing works until an offload pager in tracked mode needs every launch; then it is refused
// and the tracker runs again. (KeepCuptiLaunchCallbacks is for good: last in this process.)
TEST(Tracker, PauseIsRefusedOnceThePagerNeedsEveryLaunch) {
  ASSERT_TRUE(tracker::SetPaused(true));
  EXPECT_TRUE(tracker::Paused());
  ASSERT_TRUE(tracker::SetPaused(false));
  EXPECT_FALSE(tracker::Paused());
  ASSERT_TRUE(tracker::SetPaused(true));
  tracker::KeepCuptiLaunchCallbacks();  // no CUPTI here: only the pause state changes
  EXPECT_FALSE(tracker::Paused()) << "resumed by the pager";
  EXPECT_FALSE(tracker::SetPaused(true));
  EXPECT_FALSE(tracker::Paused());
  EXPECT_TRUE(tracker::SetPaused(false));
}

TEST(Tracker, NcclKernelsHidePointers) {
  for (const char* n : {"ncclDevKernel_AllReduce_Sum_f32_RING_LL",
                        "_Z39ncclDevKernel_AllReduce_Sum_f32_RING_LL24ncclDevKernelArgsStorageILm4096EE",
                        "ncclKernel_AllReduce_RING_LL_Sum_float", "ncclDevKernel_Generic"})
    EXPECT_TRUE(tracker::KernelHidesPointers(n)) << n;
  for (const char* n : {"_Z10add_kernelPfS_S_i", "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_tn",
                        "nccl", "", "_ZN2at6native29vectorized_elementwise_kernelILi4E"})
    EXPECT_FALSE(tracker::KernelHidesPointers(n)) << n;
  EXPECT_FALSE(tracker::KernelHidesPointers(nullptr));
}

TEST(Tracker, StreamingKernelsByName) {
  for (const char* n :
       {"_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_11FillFunctorIfEESt5arrayIPcLm1EEEEviT0_T1_",
        "_ZN2at6native27unrolled_elementwise_kernelINS0_13BinaryFunctorIfffNS0_15binary_internal10MulFunctorIfEEEE",
        "_ZN2at6native18elementwise_kernelILi128ELi4EZNS0_22gpu_kernel_impl_nocastINS0_13BUnaryFunctorIfffNS0_10AddFunctorIfEEEEEEvRNS_18TensorIteratorBaseERKT_EUliE_EEviT1_",
        "_ZN2at6native12_GLOBAL__N_125multi_tensor_apply_kernelINS1_18TensorListMetadataILi3EEENS1_14LerpFunctorIfEEJfEEEvT_T0_DpT1_"})
    EXPECT_TRUE(tracker::KernelStreams(n)) << n;
  for (const char* n : {"ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_tn", "_Z10add_kernelPfS_S_i",
                        "_ZN2at6native13reduce_kernelILi512ELi1ENS0_8ReduceOpIfNS0_7MeanOpsIffEEjfLi4EEEEEvT1_",
                        "flash_fwd_kernel", "ncclDevKernel_AllReduce_Sum_f32_RING_LL",
                        "_ZN2at6native24index_elementwise_kernelILi128ELi4EZNS0_16gpu_index_kernel", ""})
    EXPECT_FALSE(tracker::KernelStreams(n)) << n;
  EXPECT_FALSE(tracker::KernelStreams(nullptr));
  const tracker::KernelTraits t = tracker::KernelTraitsOf("ncclDevKernel_Generic");
  EXPECT_TRUE(t.hides);
  EXPECT_FALSE(t.streams);
}

// A kernel's traits are asked once per handle and kept with the layout; launches of such a
// kernel say so (LaunchPath::launch), and are still scanned. A block is "streamed only" while
// every launch that named it was a streaming kernel's.
TEST(Tracker, LayoutCacheKeepsTheTraits) {
  static std::atomic<int> asked{0};
  asked = 0;
  tracker::BlockIndex index;
  tracker::LaunchPath path(
      &index,
      [](void*, const void*, ParamLayout* out) {
        out->assign(1, tracker::ParamSlot{0, 8});
        return true;
      },
      nullptr,
      [](void*, const void* h) {
        asked.fetch_add(1);
        const auto v = reinterpret_cast<std::uintptr_t>(h);
        return tracker::KernelTraits{v == 2, v == 3};  // kernel 2 is "NCCL", 3 streams
      });
  ASSERT_TRUE(index.add(0x10000, 4096, 0));
  ASSERT_TRUE(index.add(0x20000, 4096, 0));
  std::uint64_t arg = 0x20010;
  void* params[] = {&arg};
  auto launch = [&](std::uintptr_t h, tracker::KernelTraits* t) {
    return path.launch(reinterpret_cast<const void*>(h), 0, params, nullptr, t);
  };
  tracker::KernelTraits t;
  EXPECT_EQ(launch(3, &t), tracker::Decoded::kParamInfo);
  EXPECT_TRUE(t.streams);
  EXPECT_FALSE(t.hides);
  {
    auto lk = index.read_lock();
    EXPECT_TRUE(index.find(0x20000)->summary().streamed_only) << "one streaming launch so far";
    EXPECT_FALSE(index.find(0x10000)->summary().streamed_only) << "never accessed";
  }
  arg = 0x10010;
  for (int round = 0; round < 3; ++round) {
    for (std::uintptr_t h : {std::uintptr_t{1}, std::uintptr_t{2}}) {
      t = {h != 2, true};
      EXPECT_EQ(launch(h, &t), tracker::Decoded::kParamInfo);
      EXPECT_EQ(t.hides, h == 2) << "kernel " << h;
      EXPECT_FALSE(t.streams) << "kernel " << h;
    }
  }
  arg = 0x20010;
  EXPECT_EQ(launch(1, nullptr), tracker::Decoded::kParamInfo);
  {
    auto lk = index.read_lock();
    EXPECT_FALSE(index.find(0x20000)->summary().streamed_only) << "a non-streaming launch named it";
  }
  EXPECT_EQ(asked.load(), 3) << "once per handle";
  auto s = index.remove(0x10000);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->count, 6u) << "both kernels' launches are recorded";
  EXPECT_FALSE(s->streamed_only);
}

TEST(Tracker, ThreadedLayoutCacheQueriesOncePerHandle) {
  static std::atomic<int> queries{0};
  queries = 0;
  tracker::LayoutCache cache(
      [](void*, const void* h, ParamLayout* out) {
        queries.fetch_add(1);
        const auto v = reinterpret_cast<std::uintptr_t>(h);
        if (v % 7 == 0) return false;  // cannot be known
        out->assign(v % 5, tracker::ParamSlot{0, 8});
        for (std::size_t i = 0; i < out->size(); ++i) (*out)[i].offset = 8 * i;
        return true;
      },
      nullptr);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&cache] {
      for (int round = 0; round < 50; ++round) {
        for (std::uintptr_t h = 1; h <= 600; ++h) {
          const tracker::KernelLayout* k = cache.get(reinterpret_cast<const void*>(h));
          if (h % 7 == 0) {
            EXPECT_EQ(k, nullptr);
          } else {
            ASSERT_NE(k, nullptr);
            EXPECT_EQ(k->slots.size(), h % 5);
            EXPECT_EQ(k->plan.args.size(), h % 5);
          }
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(cache.size(), 600u);
  EXPECT_GE(queries.load(), 600);
  EXPECT_LE(queries.load(), 4 * 600);  // two threads may ask at once for a new handle
}

TEST(Tracker, CuptiUnavailablePrintsOnceAndReturnsFalse) {
  ASSERT_EQ(setenv("SPILLWAY_CUPTI_LIB", "/nonexistent/libcupti-for-test.so", 1), 0);
  BlockIndex ix;
  testing::internal::CaptureStderr();
  const bool first = tracker::StartTracking(&ix);
  const bool second = tracker::StartTracking(&ix);
  const std::string err = testing::internal::GetCapturedStderr();
  unsetenv("SPILLWAY_CUPTI_LIB");
  EXPECT_FALSE(first);
  EXPECT_FALSE(second);
  EXPECT_FALSE(tracker::TrackingActive());
  EXPECT_EQ(tracker::TrackingSummary(), "");
  const std::string msg = "spillway: CUPTI unavailable (";
  const auto at = err.find(msg);
  ASSERT_NE(at, std::string::npos) << err;
  EXPECT_EQ(err.find(msg, at + 1), std::string::npos) << "printed twice: " << err;
  EXPECT_NE(err.find("libcupti-for-test.so"), std::string::npos) << err;
  EXPECT_NE(err.find("running without tracking"), std::string::npos) << err;
}

std::string TempTrace(const char* name) {
  return ::testing::TempDir() + "/" + name + "-" + std::to_string(getpid()) + ".trace";
}

TEST(Tracker, AccessRecordWrittenAtFreeAndExit) {
  const std::string path = TempTrace("tracker-access");
  std::uint64_t a_addr = 0, b_addr = 0;
  {
    test::SimAlloc sa;
    ASSERT_EQ(sa.alloc->open_trace(path), SPILLWAY_OK);
    sa.alloc->enable_access_tracking();
    BlockIndex* ix = sa.alloc->block_index();
    ASSERT_NE(ix, nullptr);
    void* a = nullptr;
    void* b = nullptr;
    void* untouched = nullptr;
    ASSERT_EQ(sa.alloc_on(&a, 1000, nullptr), SPILLWAY_OK);
    ASSERT_EQ(sa.alloc_on(&b, 3 * test::kMiB, nullptr), SPILLWAY_OK);
    ASSERT_EQ(sa.alloc_on(&untouched, 64, nullptr), SPILLWAY_OK);
    a_addr = P(a);
    b_addr = P(b);
    EXPECT_EQ(ix->live(), 3u);
    // Launches as the CUPTI callback would record them (times in CLOCK_MONOTONIC ns).
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const std::uint64_t now = static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
                              static_cast<std::uint64_t>(ts.tv_nsec);
    const std::uint64_t w1[] = {a_addr + 999, b_addr + 16};  // last byte of a, inside b
    ix->record(w1, 2, Access{now + 1000, 1, 0x70});
    const std::uint64_t w2[] = {a_addr};
    ix->record(w2, 1, Access{now + 5000, 2, 0x71});
    const std::uint64_t miss[] = {a_addr + 1000};  // one past a's requested end
    ix->record(miss, 1, Access{now + 6000, 3, 0x72});
    ASSERT_EQ(sa.free_on(a, nullptr), SPILLWAY_OK);
    EXPECT_EQ(ix->live(), 2u);
    EXPECT_EQ(ix->find(a_addr), nullptr);
    EXPECT_EQ(sa.free_on(a, nullptr), SPILLWAY_ERR_DOUBLE_FREE);  // no second summary
    ASSERT_EQ(sa.free_on(untouched, nullptr), SPILLWAY_OK);
    // b stays live: its summary is written when the allocator goes away (at exit).
  }
  trace::Trace t;
  std::string err;
  ASSERT_TRUE(trace::ReadTrace(path, &t, &err)) << err;
  std::vector<trace::Record> acc;
  std::size_t free_of_a = 0, access_of_a = 0;
  for (std::size_t i = 0; i < t.records.size(); ++i) {
    const trace::Record& r = t.records[i];
    if (r.kind == static_cast<std::uint16_t>(trace::Kind::kAccess)) acc.push_back(r);
    if (r.kind == static_cast<std::uint16_t>(trace::Kind::kAccess) && r.addr == a_addr)
      access_of_a = i;
    if (r.kind == static_cast<std::uint16_t>(trace::Kind::kApiFree) && r.addr == a_addr &&
        r.status == 0)
      free_of_a = i;
  }
  ASSERT_EQ(acc.size(), 3u);
  EXPECT_LT(access_of_a, free_of_a) << "the summary comes just before the free record";
  const trace::Record& ra = acc[0];
  EXPECT_EQ(ra.addr, a_addr);
  EXPECT_EQ(ra.size, 2u);  // accesses
  EXPECT_EQ(ra.aux2, 2u);  // streams 0x70, 0x71
  EXPECT_EQ(ra.device, 0);
  EXPECT_GT(ra.aux, 0u);                  // first access, trace time
  EXPECT_EQ(ra.stream - ra.aux, 4000u);   // last - first
  const trace::Record& ru = acc[1];       // freed untouched: zero accesses
  EXPECT_EQ(ru.size, 0u);
  EXPECT_EQ(ru.aux, 0u);
  EXPECT_EQ(ru.stream, 0u);
  EXPECT_EQ(ru.aux2, 0u);
  const trace::Record& rb = acc[2];  // live at exit
  EXPECT_EQ(rb.addr, b_addr);
  EXPECT_EQ(rb.size, 1u);
  EXPECT_EQ(rb.aux, rb.stream);
  EXPECT_EQ(rb.aux2, 1u);
  std::remove(path.c_str());
}

TEST(Tracker, ConfigSpillwayTrack) {
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig([](const char*) -> const char* { return nullptr; }, &cfg, &err));
  EXPECT_FALSE(cfg.track) << "off by default";
  ASSERT_TRUE(ParseConfig(
      [](const char* n) -> const char* {
        return std::string(n) == "SPILLWAY_TRACK" ? "1" : nullptr;
      },
      &cfg, &err)) << err;
  EXPECT_TRUE(cfg.track);
}

TEST(Tracker, OffByDefault) {
  test::SimAlloc sa;
  EXPECT_EQ(sa.alloc->block_index(), nullptr);
  void* p = nullptr;
  ASSERT_EQ(sa.alloc_on(&p, 100, nullptr), SPILLWAY_OK);
  ASSERT_EQ(sa.free_on(p, nullptr), SPILLWAY_OK);
}

}  // namespace
}  // namespace spillway
