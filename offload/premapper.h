// premapper.h — maps device memory for the next allocations ahead of need, on a thread of its
// own (SPILLWAY_OFFLOAD_PREMAP=1). Under a budget, each new block of a training step's forward
// needs pages that an eviction has just freed, and mapping them costs the launch thread a
// cuMemSetAccess of ~0.1-1 ms a mapping while evictions copy to the host (docs/offload.md,
// "Driver calls under copy traffic"): time in which the GPU idles. After an allocation that had
// to map pages (Pager::premap_hint), the premapper readies one free block of the same size in
// that arena's quick bins (Arena::prepare), making room first as an allocation would
// (Pager::make_room); the next allocation of that size takes it with no driver call. Launches
// made meanwhile are not held up by its driver calls (offload_bench `launch_while_remapping`).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace spillway {
class Arena;
}

namespace spillway::offload {

class Premapper {
 public:
  // `make_room(bytes)`: evicts until `bytes` of device memory went back to the heap.
  explicit Premapper(std::function<void(std::uint64_t)> make_room);
  ~Premapper();  // stops the thread; a hint being served is finished first
  Premapper(const Premapper&) = delete;
  Premapper& operator=(const Premapper&) = delete;

  // An allocation of rounded size `r` on `arena` had to map pages: ready the next one. Never
  // blocks on the thread's work; a few hints are kept, the oldest dropped.
  void hint(Arena* arena, std::size_t r);

  std::uint64_t readied() const { return readied_.load(std::memory_order_relaxed); }
  std::uint64_t readied_bytes() const { return readied_bytes_.load(std::memory_order_relaxed); }
  std::uint64_t taken() const;  // readied blocks an allocation took (the arenas count them)
  // Drains the hints and waits until the thread is idle (tests).
  void quiesce();

 private:
  struct Hint {
    Arena* arena;
    std::size_t r;
  };
  void run();

  const std::function<void(std::uint64_t)> make_room_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::vector<Hint> hints_;     // newest last
  std::vector<Arena*> arenas_;  // every arena it readied a block for
  bool stop_ = false, busy_ = false;
  std::atomic<std::uint64_t> readied_{0}, readied_bytes_{0};
  std::atomic<bool> said_{false};  // a driver failure was said on stderr
  std::thread thread_;
};

}  // namespace spillway::offload
