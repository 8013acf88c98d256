// spin_lock.h — the arena lock: an atomic flag that spins briefly, then yields the CPU. An
// uncontended lock/unlock is two atomic operations and no call into the C library (a
// pthread mutex pair costs about 50 instructions more on the allocation hot path).
#pragma once

#include <sched.h>

#include <atomic>

namespace spillway::detail {

class SpinLock {
 public:
  void lock() noexcept {
    for (int spins = 0; locked_.exchange(true, std::memory_order_acquire); ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (spins < 64) {
          __builtin_ia32_pause();
          ++spins;
        } else {
          sched_yield();  // the holder may be in a driver call: let it run
        }
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace spillway::detail
