// premapper.cpp — see premapper.h.
#include "offload/premapper.h"

#include <algorithm>
#include <cstdio>

#include "allocator/arena.h"
#include "allocator/device_heap.h"
#include "allocator/error.h"

namespace spillway::offload {
namespace {
constexpr std::size_t kMaxHints = 4;
}

Premapper::Premapper(std::function<void(std::uint64_t)> make_room)
    : make_room_(std::move(make_room)), thread_([this] { run(); }) {}

Premapper::~Premapper() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Premapper::hint(Arena* arena, std::size_t r) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (const Hint& h : hints_)
      if (h.arena == arena && h.r == r) return;  // already asked for
    if (hints_.size() >= kMaxHints) hints_.erase(hints_.begin());
    hints_.push_back({arena, r});
  }
  cv_.notify_one();
}

std::uint64_t Premapper::taken() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::uint64_t n = 0;
  for (const Arena* a : arenas_) n += a->prepared_taken();
  return n;
}

void Premapper::quiesce() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_cv_.wait(lk, [&] { return hints_.empty() && !busy_; });
}

void Premapper::run() {
  // Only memory that costs nothing to take (loose, new within the budget, idle and known
  // done): the premapper never waits for the GPU and never drops cached blocks; what is not
  // free it makes with evictions, as an allocation would.
  SetQuietOom(true);
  SetAcquireMode(AcquireMode::kFreeOnly);
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return stop_ || !hints_.empty(); });
    if (stop_) return;
    const Hint h = hints_.back();  // the newest: the likeliest next
    hints_.pop_back();
    busy_ = true;
    if (std::find(arenas_.begin(), arenas_.end(), h.arena) == arenas_.end())
      arenas_.push_back(h.arena);
    lk.unlock();
    bool made = false;
    spillway_status s = h.arena->prepare(h.r, &made);
    if (s == SPILLWAY_ERR_OUT_OF_MEMORY) {
      make_room_(h.r);
      s = h.arena->prepare(h.r, &made);
    }
    if (s != SPILLWAY_OK && s != SPILLWAY_ERR_OUT_OF_MEMORY && !said_.exchange(true))
      std::fprintf(stderr,
                   "spillway: mapping memory ahead of an allocation failed (%s); allocations "
                   "map their own memory as before\n",
                   LastError());
    lk.lock();
    if (made) {
      readied_.fetch_add(1, std::memory_order_relaxed);
      readied_bytes_.fetch_add(h.r, std::memory_order_relaxed);
    }
    busy_ = false;
    if (hints_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace spillway::offload
