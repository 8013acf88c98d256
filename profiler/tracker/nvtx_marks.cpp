// nvtx_marks.cpp — NVTX ranges and marks as event-log marks (see nvtx_marks.h).
#include "profiler/tracker/nvtx_marks.h"

#include <cstring>
#include <vector>

namespace spillway::tracker {

namespace {
// The calling thread's pushed labels (for one NvtxMarks: another instance starts afresh).
struct Stack {
  const NvtxMarks* owner = nullptr;
  std::vector<std::string> labels;
  std::size_t hidden = 0;  // pushes beyond kMaxDepth: neither written nor remembered
};
thread_local Stack t_stack;

Stack& StackFor(const NvtxMarks* owner) {
  Stack& s = t_stack;
  if (s.owner != owner) {
    s.owner = owner;
    s.labels.clear();
    s.hidden = 0;
  }
  return s;
}
}  // namespace

std::string NvtxMarks::Label(const char* label) {
  if (label == nullptr || *label == '\0') return "nvtx";
  return std::string(label, strnlen(label, kMaxLabel));
}

void NvtxMarks::write(const std::string& label, std::uint32_t phase) {
  if (sink_ != nullptr) sink_(ctx_, label.data(), label.size(), phase);
  written_.fetch_add(1, std::memory_order_relaxed);
}

void NvtxMarks::mark(const char* label) {
  write(Label(label), 0);
}

void NvtxMarks::push(const char* label) {
  Stack& s = StackFor(this);
  if (s.labels.size() >= kMaxDepth) {
    ++s.hidden;
    return;
  }
  s.labels.push_back(Label(label));
  write(s.labels.back(), 1);
}

void NvtxMarks::pop() {
  Stack& s = StackFor(this);
  if (s.hidden > 0) {
    --s.hidden;
    return;
  }
  if (s.labels.empty()) {
    unmatched_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  write(s.labels.back(), 2);
  s.labels.pop_back();
}

void NvtxMarks::start(std::uint64_t id, const char* label) {
  std::string l = Label(label);
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (ranges_.size() >= kMaxOpenRanges && ranges_.find(id) == ranges_.end()) {
      unmatched_.fetch_add(1, std::memory_order_relaxed);
      return;  // neither written nor remembered: its end is skipped as unknown
    }
    ranges_[id] = l;
  }
  write(l, 1);
}

void NvtxMarks::end(std::uint64_t id) {
  std::string l;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = ranges_.find(id);
    if (it == ranges_.end()) {
      unmatched_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    l = std::move(it->second);
    ranges_.erase(it);
  }
  write(l, 2);
}

}  // namespace spillway::tracker
