// span_pieces.cpp — spans split into pieces (see span_pieces.h).
#include "allocator/detail/span_pieces.h"

#include <cassert>

namespace spillway::detail {

void SpanPieces::split(prim::PhysHandle span, std::vector<prim::PhysHandle>* out) {
  assert(!is_piece(span) && span != 0);
  std::size_t s;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else {
    s = slots_.size();
    slots_.emplace_back();
  }
  slots_[s] = Slot{span, 0, false};
  for (std::size_t i = 0; i < pages_; ++i)
    out->push_back(kPieceBit | (prim::PhysHandle{s} << 8) | prim::PhysHandle{i});
}

void SpanPieces::on_loose(prim::PhysHandle h) {
  if (!is_piece(h)) return;
  Slot& sl = slots_[slot(h)];
  assert(sl.loose < pages_);
  if (++sl.loose == pages_) ++whole_;
}

void SpanPieces::on_taken(prim::PhysHandle h) {
  if (!is_piece(h)) return;
  Slot& sl = slots_[slot(h)];
  assert(sl.loose > 0);
  if (sl.loose-- == pages_) --whole_;
}

std::size_t SpanPieces::join(std::size_t max, std::vector<prim::PhysHandle>* pool,
                             std::vector<prim::Event>* tags, std::vector<prim::PhysHandle>* spans,
                             std::vector<prim::Event>* span_tags) {
  if (max == 0 || whole_ == 0) return 0;
  std::size_t n = 0;
  for (std::size_t s = 0; s < slots_.size() && n < max; ++s)
    if (slots_[s].span != 0 && slots_[s].loose == pages_) {
      slots_[s].joining = true;
      ++n;
    }
  std::size_t w = 0;  // compacts the pool in place, keeping its order
  for (std::size_t r = 0; r < pool->size(); ++r) {
    const prim::PhysHandle h = (*pool)[r];
    if (is_piece(h) && slots_[slot(h)].joining) {
      if ((*tags)[r] != nullptr) span_tags->push_back((*tags)[r]);
      continue;
    }
    (*pool)[w] = h;
    (*tags)[w] = (*tags)[r];
    ++w;
  }
  pool->resize(w);
  tags->resize(w);
  for (std::size_t s = 0; s < slots_.size(); ++s)
    if (slots_[s].joining) {
      spans->push_back(slots_[s].span);
      slots_[s] = Slot{};
      free_.push_back(s);
      --whole_;
    }
  return n;
}

std::vector<prim::PhysHandle> SpanPieces::all_spans() const {
  std::vector<prim::PhysHandle> v;
  for (const Slot& s : slots_)
    if (s.span != 0) v.push_back(s.span);
  return v;
}

}  // namespace spillway::detail
