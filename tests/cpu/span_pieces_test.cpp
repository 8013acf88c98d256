// span_pieces_test.cpp — the bookkeeping of spans split into pieces (allocator/detail/
// span_pieces.h): piece handles, loose counting, and joining a span whose pieces are all loose,
// which takes them out of the pool (keeping the order of the rest) with their tags.
#include "allocator/detail/span_pieces.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace spillway::detail {
namespace {

constexpr std::size_t kPages = 4;

prim::Event Ev(std::uintptr_t v) {
  return reinterpret_cast<prim::Event>(v);
}

TEST(SpanPieces, PiecesNameTheirSpanAndPage) {
  SpanPieces sp(kPages);
  std::vector<prim::PhysHandle> a, b;
  sp.split(0x1234, &a);
  sp.split(0x99, &b);
  ASSERT_EQ(a.size(), kPages);
  ASSERT_EQ(b.size(), kPages);
  for (std::size_t i = 0; i < kPages; ++i) {
    EXPECT_TRUE(SpanPieces::is_piece(a[i]));
    EXPECT_NE(a[i], 0u);
    EXPECT_EQ(sp.span_of(a[i]), 0x1234u);
    EXPECT_EQ(sp.span_of(b[i]), 0x99u);
    EXPECT_EQ(SpanPieces::page_of(a[i]), i);
    EXPECT_EQ(std::count(b.begin(), b.end(), a[i]), 0) << "pieces of two spans differ";
  }
  EXPECT_FALSE(SpanPieces::is_piece(0x1234));
  EXPECT_EQ(sp.split_spans(), 2u);
  EXPECT_EQ(sp.whole(), 0u) << "split pieces count as taken until they are loose";
}

TEST(SpanPieces, JoinTakesOnlySpansWhosePiecesAreAllLoose) {
  SpanPieces sp(kPages);
  std::vector<prim::PhysHandle> a, b;
  sp.split(0xa0, &a);
  sp.split(0xb0, &b);
  // The pool: a chunk that is no piece, all of a's pieces, three of b's, interleaved.
  std::vector<prim::PhysHandle> pool = {0x77, a[0], b[0], a[1], a[2], b[1], a[3], b[2]};
  std::vector<prim::Event> tags = {Ev(1), nullptr, Ev(2), Ev(3), nullptr, nullptr, Ev(4), nullptr};
  for (prim::PhysHandle h : pool) sp.on_loose(h);  // 0x77 is ignored
  EXPECT_EQ(sp.whole(), 1u);
  std::vector<prim::PhysHandle> spans;
  std::vector<prim::Event> span_tags;
  EXPECT_EQ(sp.join(8, &pool, &tags, &spans, &span_tags), 1u);
  EXPECT_EQ(spans, std::vector<prim::PhysHandle>{0xa0});
  EXPECT_EQ(span_tags, (std::vector<prim::Event>{Ev(3), Ev(4)})) << "a's pieces' tags";
  EXPECT_EQ(pool, (std::vector<prim::PhysHandle>{0x77, b[0], b[1], b[2]})) << "order kept";
  EXPECT_EQ(tags, (std::vector<prim::Event>{Ev(1), Ev(2), nullptr, nullptr}));
  EXPECT_EQ(sp.whole(), 0u);
  EXPECT_EQ(sp.split_spans(), 1u) << "a's slot is free again";
  // b's last piece comes back: b is whole; a piece taken out again makes it not whole.
  pool.push_back(b[3]);
  tags.push_back(nullptr);
  sp.on_loose(b[3]);
  EXPECT_EQ(sp.whole(), 1u);
  sp.on_taken(b[3]);
  EXPECT_EQ(sp.whole(), 0u);
  pool.pop_back();
  tags.pop_back();
  spans.clear();
  EXPECT_EQ(sp.join(8, &pool, &tags, &spans, &span_tags), 0u);
  EXPECT_EQ(pool.size(), 4u);
  // A new split reuses the free slot; its pieces name the new span.
  std::vector<prim::PhysHandle> c;
  sp.split(0xc0, &c);
  EXPECT_EQ(sp.span_of(c[2]), 0xc0u);
  EXPECT_EQ(sp.split_spans(), 2u);
  const std::vector<prim::PhysHandle> all = sp.all_spans();
  EXPECT_EQ(std::count(all.begin(), all.end(), 0xb0u), 1);
  EXPECT_EQ(std::count(all.begin(), all.end(), 0xc0u), 1);
  EXPECT_EQ(all.size(), 2u);
}

TEST(SpanPieces, JoinStopsAtMax) {
  SpanPieces sp(kPages);
  std::vector<prim::PhysHandle> pool;
  sp.split(0x10, &pool);
  sp.split(0x20, &pool);
  std::vector<prim::Event> tags(pool.size(), nullptr);
  for (prim::PhysHandle h : pool) sp.on_loose(h);
  EXPECT_EQ(sp.whole(), 2u);
  std::vector<prim::PhysHandle> spans;
  std::vector<prim::Event> span_tags;
  EXPECT_EQ(sp.join(1, &pool, &tags, &spans, &span_tags), 1u);
  EXPECT_EQ(spans.size(), 1u);
  EXPECT_EQ(pool.size(), kPages) << "the other span's pieces stay loose";
  EXPECT_EQ(sp.whole(), 1u);
  EXPECT_EQ(sp.join(0, &pool, &tags, &spans, &span_tags), 0u);
}

}  // namespace
}  // namespace spillway::detail
