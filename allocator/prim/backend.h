// backend.h — the "prim" layer: the only interface through which Spillway touches GPU memory.
// Two implementations: CudaBackend (driver API, resolved at run time) and SimBackend (CPU:
// memfd + mmap, streams as worker threads). Everything above this layer is plain C++.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "profiler/clock.h"

namespace spillway::prim {

// Opaque handles. A Stream is a cudaStream_t/CUstream value (nullptr = legacy default stream).
using Stream = void*;
using Event = void*;
using PhysHandle = std::uint64_t;  // CUmemGenericAllocationHandle or a sim chunk id

enum class LocationKind { kDevice, kHostNuma };
struct Location {
  LocationKind kind = LocationKind::kDevice;
  int id = 0;  // device ordinal or NUMA node
};

// Result of a backend call: ok, or a driver error code with a message.
struct Status {
  int code = 0;  // 0 = success; otherwise the driver's CUresult (or errno for the sim)
  std::string message;
  bool ok() const { return code == 0; }
  static Status Ok() { return {}; }
};

// True on a thread while Spillway itself calls the driver for work the program did not ask for
// (the pager's copies): the CUPTI tracker ignores those calls (they are not the program's
// accesses, and must not re-enter the pager).
inline thread_local bool t_internal_call = false;
class InternalCall {
 public:
  InternalCall() : prev_(t_internal_call) { t_internal_call = true; }
  ~InternalCall() { t_internal_call = prev_; }
  InternalCall(const InternalCall&) = delete;
  InternalCall& operator=(const InternalCall&) = delete;

 private:
  bool prev_;
};

struct MemInfo {
  std::size_t free = 0;
  std::size_t total = 0;
};

// What a backend's calls cost the calling threads, counted and timed: the CPU's waits for the
// GPU (event_synchronize) and the driver's physical-memory calls (set_access_host counts as an
// access). The SimBackend counts its waits, maps, accesses and unmaps (successful calls).
enum class Call : int { kWait, kCreate, kRelease, kMap, kAccess, kUnmap, kCount };
struct CallTimes {
  std::atomic<std::uint64_t> calls{0}, ns{0};
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Calls of one kind made through this backend, on any device and thread (offload stats).
  const CallTimes& times(Call c) const { return times_[static_cast<int>(c)]; }
  virtual const char* name() const = 0;
  virtual int device_count() = 0;
  // Physical allocation granularity for a location (2 MiB on H200).
  virtual std::size_t granularity(Location loc) = 0;
  virtual Status mem_info(int device, MemInfo* out) = 0;

  // Virtual address space.
  virtual Status reserve(int device, std::size_t size, std::size_t align, std::uintptr_t* va) = 0;
  virtual Status release_va(std::uintptr_t va, std::size_t size) = 0;

  // Physical memory, mapping and access. `map` maps the whole handle at va; `set_access`
  // grants read/write to `device` over [va, va+size); `unmap` removes one mapping.
  virtual Status create(Location loc, std::size_t size, PhysHandle* out) = 0;
  virtual Status release(PhysHandle h) = 0;
  virtual Status map(std::uintptr_t va, std::size_t size, PhysHandle h) = 0;
  virtual Status set_access(int device, std::uintptr_t va, std::size_t size) = 0;
  virtual Status unmap(std::uintptr_t va, std::size_t size) = 0;
  // Grants read/write to `device` and to the CPU over [va, va+size), a range mapped to host
  // memory of NUMA node `numa` (the pager's host tier: the CPU reads it for NVMe writes).
  virtual Status set_access_host(int device, int numa, std::uintptr_t va, std::size_t size) = 0;
  // PCI bus id of a device ("0000:3b:00.0"), to find its nearest NUMA node; "" for the sim.
  virtual std::string pci_bus_id(int device) = 0;

  // Streams and events (events are pooled by the caller).
  virtual Status copy_async(int device, void* dst, const void* src, std::size_t n, Stream s) = 0;
  // A device -> host copy of the pager's (an eviction). By default copy_async; with
  // set_kernel_copies_to_host(true) the CUDA backend writes it with a kernel instead of the copy
  // engine (SPILLWAY_OFFLOAD_COPY=kernel: the driver's access grants wait far less behind it).
  virtual Status copy_to_host_async(int device, void* dst, const void* src, std::size_t n,
                                    Stream s) {
    return copy_async(device, dst, src, n, s);
  }
  virtual void set_kernel_copies_to_host(bool) {}
  virtual Status event_create(int device, Event* out) = 0;
  virtual Status event_destroy(Event e) = 0;
  virtual Status event_record(int device, Event e, Stream s) = 0;
  // *done = true when all work captured by the last record has finished.
  virtual Status event_query(Event e, bool* done) = 0;
  virtual Status event_synchronize(Event e) = 0;
  virtual Status stream_wait_event(int device, Stream s, Event e) = 0;
  // A non-blocking stream of the backend's own (the pager's copy streams).
  virtual Status stream_create(int device, Stream* out) = 0;
  virtual Status stream_destroy(int device, Stream s) = 0;
  // True if `s` is capturing a CUDA graph (allocations then belong to the graph).
  virtual bool stream_is_capturing(int device, Stream s) = 0;

 protected:
  // A call of kind `c` that began at MonotonicNs() == t0 has ended.
  void count(Call c, std::uint64_t t0) {
    CallTimes& t = times_[static_cast<int>(c)];
    t.calls.fetch_add(1, std::memory_order_relaxed);
    t.ns.fetch_add(MonotonicNs() - t0, std::memory_order_relaxed);
  }
  // Runs `call` (returning its result) and counts it as a call of kind `c`, failed or not.
  template <class F>
  auto timed(Call c, F&& call) {
    const std::uint64_t t0 = MonotonicNs();
    auto r = call();
    count(c, t0);
    return r;
  }

 private:
  std::array<CallTimes, static_cast<int>(Call::kCount)> times_;
};

}  // namespace spillway::prim
