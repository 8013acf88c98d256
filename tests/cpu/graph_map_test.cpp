// graph_map_test.cpp — the tracker's CUDA-graph and NVTX bookkeeping on the CPU: captures kept
// per stream and carried to graphs and execs (GraphMap), graph launches recording one access
// per live block (RecordGraphLaunch), capture-time lookups that record nothing (CollectHits),
// and NVTX pushes, pops, starts and ends as marks (NvtxMarks). No CUPTI callback runs here.
#include "profiler/tracker/graph_map.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "profiler/tracker/block_index.h"
#include "profiler/tracker/nvtx_marks.h"
#include "profiler/tracker/tracker.h"

namespace spillway {
namespace {

using tracker::Access;
using tracker::BlockIndex;
using tracker::Counters;
using tracker::GraphMap;
using tracker::NvtxMarks;
using Words = std::vector<std::uint64_t>;

TEST(GraphMap, CaptureGoesToGraphThenExec) {
  GraphMap g;
  EXPECT_FALSE(g.any_capturing());
  const Words a = {0x1000, 0x2000};
  EXPECT_FALSE(g.capture(7, a.data(), a.size()));  // stream 7 is not capturing
  g.begin_capture(7);
  EXPECT_TRUE(g.any_capturing());
  EXPECT_TRUE(g.capturing(7));
  EXPECT_FALSE(g.capturing(8));
  EXPECT_TRUE(g.capture(7, a.data(), a.size()));
  const Words b = {0x2000, 0x3000, 0x1000};
  EXPECT_TRUE(g.capture(7, b.data(), b.size()));
  g.end_capture(7, /*graph=*/100);
  EXPECT_FALSE(g.any_capturing());
  EXPECT_EQ(g.captures(), 0u);
  EXPECT_EQ(g.graph_addrs(100), (Words{0x1000, 0x2000, 0x3000}));
  EXPECT_EQ(g.exec_addrs(200), nullptr);  // not instantiated yet
  g.instantiate(100, 200);
  ASSERT_NE(g.exec_addrs(200), nullptr);
  EXPECT_EQ(*g.exec_addrs(200), (Words{0x1000, 0x2000, 0x3000}));
  // The exec keeps its copy after the graph is destroyed (as in CUDA).
  g.destroy_graph(100);
  EXPECT_TRUE(g.graph_addrs(100).empty());
  ASSERT_NE(g.exec_addrs(200), nullptr);
  EXPECT_EQ(g.exec_addrs(200)->size(), 3u);
  g.destroy_exec(200);
  EXPECT_EQ(g.exec_addrs(200), nullptr);
  EXPECT_EQ(g.graphs(), 0u);
  EXPECT_EQ(g.execs(), 0u);
}

TEST(GraphMap, FailedCaptureIsDroppedAndStreamsAreSeparate) {
  GraphMap g;
  g.begin_capture(1);
  g.begin_capture(2);
  const Words a = {0x10}, b = {0x20};
  EXPECT_TRUE(g.capture(1, a.data(), 1));
  EXPECT_TRUE(g.capture(2, b.data(), 1));
  EXPECT_FALSE(g.capture_sole(a.data(), 1));  // two captures: nothing to join
  g.end_capture(1, 0);                        // invalidated: no graph
  EXPECT_EQ(g.graphs(), 0u);
  EXPECT_TRUE(g.any_capturing());
  EXPECT_TRUE(g.capture_sole(a.data(), 1));  // only stream 2's capture remains
  g.end_capture(2, 50);
  EXPECT_EQ(g.graph_addrs(50), (Words{0x10, 0x20}));
  g.end_capture(3, 60);  // never began: nothing
  EXPECT_EQ(g.graphs(), 1u);
}

TEST(GraphMap, CaptureIntoExistingGraphCloneAndChild) {
  GraphMap g;
  const Words n1 = {0x500}, c = {0x600};
  g.add_to_graph(10, n1.data(), 1);  // an explicit node
  g.begin_capture(4);                // cuStreamBeginCaptureToGraph(…, graph 10)
  EXPECT_TRUE(g.capture(4, c.data(), 1));
  g.end_capture(4, 10);
  EXPECT_EQ(g.graph_addrs(10), (Words{0x500, 0x600}));
  g.add_graph_to_graph(10, 11);  // a clone
  EXPECT_EQ(g.graph_addrs(11), (Words{0x500, 0x600}));
  const Words p = {0x700};
  g.add_to_graph(12, p.data(), 1);
  g.add_graph_to_graph(11, 12);  // child graph node
  EXPECT_EQ(g.graph_addrs(12), (Words{0x500, 0x600, 0x700}));
  g.instantiate(99, 300);  // unknown graph: an empty set, not "unknown exec"
  ASSERT_NE(g.exec_addrs(300), nullptr);
  EXPECT_TRUE(g.exec_addrs(300)->empty());
}

TEST(GraphMap, BoundedAndDeduplicated) {
  GraphMap g;
  g.begin_capture(1);
  Words w;
  for (std::uint64_t i = 0; i < GraphMap::kMaxAddrs + 10; ++i) w.push_back(i * 8);
  EXPECT_TRUE(g.capture(1, w.data(), w.size()));
  EXPECT_TRUE(g.capture(1, w.data(), 100));  // duplicates: not dropped, not added
  g.end_capture(1, 5);
  EXPECT_EQ(g.graph_addrs(5).size(), GraphMap::kMaxAddrs);
  EXPECT_EQ(g.dropped(), 10u);
}

TEST(GraphMap, ConcurrentCaptures) {
  GraphMap g;
  constexpr int kThreads = 4, kOps = 2000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&g, t] {
      const std::uint64_t s = 100 + static_cast<std::uint64_t>(t);
      g.begin_capture(s);
      for (int i = 0; i < kOps; ++i) {
        const std::uint64_t w = s * 0x100000 + static_cast<std::uint64_t>(i % 500) * 8;
        g.capture(s, &w, 1);
      }
      g.end_capture(s, s + 1000);
      g.instantiate(s + 1000, s + 2000);
    });
  }
  for (auto& th : ts) th.join();
  for (int t = 0; t < kThreads; ++t) {
    const std::uint64_t s = 100 + static_cast<std::uint64_t>(t);
    ASSERT_NE(g.exec_addrs(s + 2000), nullptr);
    EXPECT_EQ(g.exec_addrs(s + 2000)->size(), 500u);
  }
  EXPECT_FALSE(g.any_capturing());
}

TEST(GraphLaunch, OneAccessPerLiveBlockAndFreedSkipped) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x10000, 0x1000, 0));
  ASSERT_TRUE(ix.add(0x20000, 0x1000, 0));
  ASSERT_TRUE(ix.add(0x30000, 0x1000, 0));
  Counters c;
  // Capture: hits are collected, nothing is recorded.
  const Words args = {0x10000, 0x10008 /* interior, same block */, 0x20010, 42, 0x40000};
  Words hits;
  EXPECT_EQ(tracker::CollectHits(ix, args.data(), args.size(), &hits, c), 3u);
  EXPECT_EQ(hits, (Words{0x10000, 0x10008, 0x20010}));
  for (const auto& b : ix.snapshot()) EXPECT_EQ(b.count, 0u) << b.addr;
  EXPECT_EQ(tracker::Read(c).words, args.size());
  EXPECT_EQ(tracker::Read(c).hits, 0u);

  GraphMap g;
  g.begin_capture(9);
  g.capture(9, hits.data(), hits.size());
  g.end_capture(9, 1);
  g.instantiate(1, 2);
  const GraphMap::Addrs addrs = g.exec_addrs(2);
  ASSERT_NE(addrs, nullptr);
  constexpr int kLaunches = 5;
  for (int i = 1; i <= kLaunches; ++i) {
    const Access a{static_cast<std::uint64_t>(1000 * i), static_cast<std::uint64_t>(i), 9};
    EXPECT_EQ(tracker::RecordGraphLaunch(ix, addrs.get(), a, c), 2u);  // blocks, not words
  }
  auto count = [&ix](std::uint64_t addr) {
    for (const auto& b : ix.snapshot())
      if (b.addr == addr) return b.count;
    return ~std::uint64_t{0};
  };
  EXPECT_EQ(count(0x10000), static_cast<std::uint64_t>(kLaunches));
  EXPECT_EQ(count(0x20000), static_cast<std::uint64_t>(kLaunches));
  EXPECT_EQ(count(0x30000), 0u);  // not in the graph
  // A freed block is skipped; the others still count.
  auto freed = ix.remove(0x20000);
  ASSERT_TRUE(freed.has_value());
  EXPECT_EQ(freed->count, static_cast<std::uint64_t>(kLaunches));
  EXPECT_EQ(freed->first_seq, 1u);
  EXPECT_EQ(freed->last_seq, static_cast<std::uint64_t>(kLaunches));
  EXPECT_EQ(tracker::RecordGraphLaunch(ix, addrs.get(), Access{9000, 9, 9}, c), 1u);
  EXPECT_EQ(count(0x10000), kLaunches + 1u);
  EXPECT_EQ(tracker::RecordGraphLaunch(ix, nullptr, Access{9100, 10, 9}, c), 0u);  // unknown
  const tracker::CounterValues v = tracker::Read(c);
  EXPECT_EQ(v.graph_launches, kLaunches + 2u);
  EXPECT_EQ(v.graph_hits, 2u * kLaunches + 1u);
  EXPECT_EQ(v.launches, 0u);
}

TEST(GraphLaunch, DecodeLaunchMatchesScanLaunch) {
  BlockIndex ix;
  ASSERT_TRUE(ix.add(0x50000, 0x100, 0));
  std::uint64_t p0 = 0x50010;
  int p1 = 3;
  void* params[] = {&p0, &p1};
  const tracker::ParamLayout layout = {{0, 8}, {8, 4}};
  Counters c;
  Words w;
  EXPECT_EQ(tracker::DecodeLaunch(&layout, params, nullptr, &w, c), tracker::Decoded::kParamInfo);
  EXPECT_EQ(w, (Words{0x50010}));
  EXPECT_EQ(tracker::Read(c).launches, 1u);
  EXPECT_EQ(tracker::Read(c).by_param_info, 1u);
  EXPECT_EQ(ix.snapshot()[0].count, 0u);  // decoding records nothing
  EXPECT_EQ(tracker::ScanLaunch(ix, &layout, params, nullptr, Access{1, 1, 0}, c),
            tracker::Decoded::kParamInfo);
  EXPECT_EQ(ix.snapshot()[0].count, 1u);
}

// NVTX: marks through a sink that records (label, phase).
struct Sink {
  std::vector<std::tuple<std::string, std::uint32_t>> got;
  static void Write(void* ctx, const char* label, std::size_t n, std::uint32_t phase) {
    static_cast<Sink*>(ctx)->got.emplace_back(std::string(label, n), phase);
  }
};
using Mark = std::tuple<std::string, std::uint32_t>;

TEST(NvtxMarks, PushPopNestsPerThread) {
  Sink s;
  NvtxMarks m(&Sink::Write, &s);
  m.push("outer");
  m.push("inner");
  m.mark("here");
  m.pop();
  m.pop();
  m.pop();  // nothing open: not written, counted
  EXPECT_EQ(s.got, (std::vector<Mark>{
                       {"outer", 1}, {"inner", 1}, {"here", 0}, {"inner", 2}, {"outer", 2}}));
  EXPECT_EQ(m.written(), 5u);
  EXPECT_EQ(m.unmatched(), 1u);
  // Another thread has its own stack: its pop does not close this thread's range.
  m.push("main");
  std::thread([&m] { m.pop(); }).join();
  EXPECT_EQ(m.unmatched(), 2u);
  m.pop();
  EXPECT_EQ(s.got.back(), (Mark{"main", 2}));
}

TEST(NvtxMarks, StartEndByIdAcrossThreads) {
  Sink s;
  NvtxMarks m(&Sink::Write, &s);
  m.start(7, "load");
  m.start(8, "");                          // empty label: "nvtx"
  std::thread([&m] { m.end(7); }).join();  // ranges may end on another thread
  m.end(8);
  m.end(8);  // already ended: counted, not written
  m.mark(nullptr);
  EXPECT_EQ(s.got,
            (std::vector<Mark>{{"load", 1}, {"nvtx", 1}, {"load", 2}, {"nvtx", 2}, {"nvtx", 0}}));
  EXPECT_EQ(m.unmatched(), 1u);
}

TEST(NvtxMarks, LongLabelsAreCut) {
  Sink s;
  NvtxMarks m(&Sink::Write, &s);
  const std::string big(NvtxMarks::kMaxLabel + 100, 'x');
  m.mark(big.c_str());
  ASSERT_EQ(s.got.size(), 1u);
  EXPECT_EQ(std::get<0>(s.got[0]).size(), NvtxMarks::kMaxLabel);
}

}  // namespace
}  // namespace spillway
