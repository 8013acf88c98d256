// span_pieces.h — spans split into pieces. A piece is one page of a span handed out as a chunk
// of its own and mapped at its offset in the span (CUDA 13's cuMemMap takes an offset into a
// physical allocation), so the heap turns spans into chunks and back without the driver:
// cuMemRelease costs ~95-155 us a call and cuMemCreate ~11-22 us on the H200
// (docs/offload.md), and converting was ~1,400 releases a step of the `activations` benchmark.
// A piece's handle has the top bit set (a driver handle never has); it names a slot here and a
// page of that slot's span. A span whose pieces are all loose again can be taken whole.
// Bookkeeping only: the heap's lock guards it, and the heap keeps the loose pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "allocator/prim/backend.h"

namespace spillway::detail {

class SpanPieces {
 public:
  static constexpr prim::PhysHandle kPieceBit = prim::PhysHandle{1} << 63;
  static bool is_piece(prim::PhysHandle h) { return (h & kPieceBit) != 0; }

  explicit SpanPieces(std::size_t pages_per_span) : pages_(pages_per_span) {}

  // Splits `span` (a driver handle of pages_per_span pages): its pieces, in page order, are
  // appended to *out. They count as taken (not loose) until on_loose.
  void split(prim::PhysHandle span, std::vector<prim::PhysHandle>* out);
  // The span of a piece and the piece's page index in it.
  prim::PhysHandle span_of(prim::PhysHandle piece) const { return slots_[slot(piece)].span; }
  static std::size_t page_of(prim::PhysHandle piece) {
    return static_cast<std::size_t>(piece & 0xff);
  }
  // A piece entered / left the loose pool (other handles are ignored).
  void on_loose(prim::PhysHandle h);
  void on_taken(prim::PhysHandle h);
  // Spans whose pieces are all loose.
  std::size_t whole() const { return whole_; }
  // Takes up to `max` spans whose pieces are all loose out of the loose pool `pool` (with the
  // parallel `tags`): appends each span to *spans and the tags of its pieces (non-null) to
  // *span_tags; the pieces leave the pool and the slots are freed. One pass over the pool.
  std::size_t join(std::size_t max, std::vector<prim::PhysHandle>* pool,
                   std::vector<prim::Event>* tags, std::vector<prim::PhysHandle>* spans,
                   std::vector<prim::Event>* span_tags);
  // Every span now split (for the heap's destructor), and how many.
  std::vector<prim::PhysHandle> all_spans() const;
  std::size_t split_spans() const { return slots_.size() - free_.size(); }
  std::size_t pages_per_span() const { return pages_; }

 private:
  struct Slot {
    prim::PhysHandle span = 0;  // 0: free slot
    std::uint32_t loose = 0;    // its pieces in the loose pool
    bool joining = false;       // being taken whole by join()
  };
  static std::size_t slot(prim::PhysHandle piece) {
    return static_cast<std::size_t>((piece & ~kPieceBit) >> 8);
  }
  const std::size_t pages_;
  std::vector<Slot> slots_;
  std::vector<std::size_t> free_;
  std::size_t whole_ = 0;
};

}  // namespace spillway::detail
