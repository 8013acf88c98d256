// stats.h — per-device allocation statistics, updated with relaxed atomics on the hot path and
// read as a spillway_stats snapshot.
#pragma once

#include <atomic>
#include <cstdint>

#include "spillway/spillway.h"

namespace spillway {

class DeviceStats {
 public:
  // Hot path: one atomic add per allocation and per free; counts live per arena (ArenaCounters).
  void on_alloc(std::uint64_t requested) {
    const std::uint64_t v = allocated_.fetch_add(requested, kR) + requested;
    if (v > peak_allocated_.load(kR)) bump_peak(peak_allocated_, v);
  }
  void on_free(std::uint64_t requested) { allocated_.fetch_sub(requested, kR); }
  void on_reserve(std::uint64_t bytes) {
    bump_peak(peak_reserved_, reserved_.fetch_add(bytes, kR) + bytes);
    creates_.fetch_add(1, kR);
  }
  void on_release(std::uint64_t bytes) {
    reserved_.fetch_sub(bytes, kR);
    releases_.fetch_add(1, kR);
  }
  void on_map() { maps_.fetch_add(1, kR); }
  void on_unmap() { unmaps_.fetch_add(1, kR); }
  void on_oom() { ooms_.fetch_add(1, kR); }
  // The heap's last resort: the CPU waited for the streams to reclaim freed memory.
  void on_drain() { drains_.fetch_add(1, kR); }
  std::uint64_t drains() const { return drains_.load(kR); }
  std::uint64_t allocated() const { return allocated_.load(kR); }
  std::uint64_t reserved() const { return reserved_.load(kR); }
  std::uint64_t peak_allocated() const { return peak_allocated_.load(kR); }
  void reset_peaks() {
    peak_allocated_.store(allocated_.load(kR), kR);
    peak_reserved_.store(reserved_.load(kR), kR);
  }
  // Device-wide figures; the per-arena counts are added by DeviceHeap::snapshot.
  void snapshot(spillway_stats* s) const {
    s->allocated_bytes = allocated_.load(kR);
    s->peak_allocated_bytes = peak_allocated_.load(kR);
    s->reserved_bytes = reserved_.load(kR);
    s->peak_reserved_bytes = peak_reserved_.load(kR);
    s->oom_count = ooms_.load(kR);
    s->chunk_create_count = creates_.load(kR);
    s->chunk_release_count = releases_.load(kR);
    s->map_count = maps_.load(kR);
    s->unmap_count = unmaps_.load(kR);
  }

 private:
  static constexpr auto kR = std::memory_order_relaxed;
  static void bump_peak(std::atomic<std::uint64_t>& peak, std::uint64_t v) {
    std::uint64_t p = peak.load(kR);
    while (v > p && !peak.compare_exchange_weak(p, v, kR)) {
    }
  }
  std::atomic<std::uint64_t> allocated_{0}, peak_allocated_{0}, reserved_{0}, peak_reserved_{0},
      ooms_{0}, creates_{0}, releases_{0}, maps_{0}, unmaps_{0}, drains_{0};
};

// Per-arena counters, written under the arena's lock (no read-modify-write atomics on the hot
// path) and read without it for statistics.
struct ArenaCounters {
  void on_alloc(std::uint64_t waste) {
    add(waste_, waste);
    add(live_, 1);
    add(allocs_, 1);
  }
  void on_free(std::uint64_t waste) {
    sub(waste_, waste);
    sub(live_, 1);
    add(frees_, 1);
  }
  void add_to(spillway_stats* s) const {
    s->internal_waste_bytes += waste_.load(std::memory_order_relaxed);
    s->live_blocks += live_.load(std::memory_order_relaxed);
    s->alloc_count += allocs_.load(std::memory_order_relaxed);
    s->free_count += frees_.load(std::memory_order_relaxed);
  }

 private:
  static void add(std::atomic<std::uint64_t>& a, std::uint64_t d) {
    a.store(a.load(std::memory_order_relaxed) + d, std::memory_order_relaxed);
  }
  static void sub(std::atomic<std::uint64_t>& a, std::uint64_t d) {
    a.store(a.load(std::memory_order_relaxed) - d, std::memory_order_relaxed);
  }
  std::atomic<std::uint64_t> waste_{0}, live_{0}, allocs_{0}, frees_{0};
};

}  // namespace spillway
