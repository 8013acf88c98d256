// spillway.hpp — C++ interface over the C API of spillway.h: errors as exceptions, RAII
// blocks, and a memory resource with allocate/deallocate on a stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "spillway/spillway.h"

namespace spillway {

class Error : public std::runtime_error {
 public:
  explicit Error(spillway_status s)
      : std::runtime_error(std::string(spillway_status_string(s)) + ": " + spillway_last_error()),
        status_(s) {}
  spillway_status status() const noexcept { return status_; }

 private:
  spillway_status status_;
};

inline void check(spillway_status s) {
  if (s != SPILLWAY_OK) throw Error(s);
}

// Stream-ordered device memory of one device (cudaMallocAsync semantics).
class DeviceResource {
 public:
  explicit DeviceResource(int device = 0) : device_(device) {}
  void* allocate(std::size_t bytes, void* stream = nullptr) const {
    void* p = nullptr;
    check(spillway_malloc_async(&p, bytes, device_, stream));
    return p;
  }
  void deallocate(void* p, void* stream = nullptr) const { check(spillway_free_async(p, stream)); }
  spillway_stats stats() const {
    spillway_stats s{};
    check(spillway_get_stats(device_, &s));
    return s;
  }
  void set_budget(std::uint64_t bytes) const { check(spillway_set_budget(device_, bytes)); }
  spillway_offload_stats offload_stats() const {
    spillway_offload_stats s{};
    check(spillway_get_offload_stats(device_, &s));
    return s;
  }
  void offload_synchronize() const { check(spillway_offload_synchronize(device_)); }
  void trim(std::uint64_t keep_bytes = 0) const { check(spillway_trim(device_, keep_bytes)); }
  int device() const noexcept { return device_; }

 private:
  int device_;
};

// Offload of one block (docs/offload.md); errors throw spillway::Error.
inline void offload(void* p, spillway_tier tier = SPILLWAY_TIER_HOST) {
  check(spillway_offload(p, tier));
}
inline void prefetch(void* p, void* stream = nullptr) { check(spillway_prefetch(p, stream)); }
inline void advise(void* p, spillway_hint hint) { check(spillway_advise(p, hint)); }
inline spillway_tier residency(const void* p) {
  spillway_tier t = SPILLWAY_TIER_DEVICE;
  check(spillway_residency(p, &t));
  return t;
}

// A device block that is freed (stream-ordered, on its stream) when it goes out of scope.
class DeviceBuffer {
 public:
  DeviceBuffer(std::size_t bytes, int device = 0, void* stream = nullptr)
      : ptr_(DeviceResource(device).allocate(bytes, stream)), size_(bytes), stream_(stream) {}
  ~DeviceBuffer() {
    if (ptr_) spillway_free_async(ptr_, stream_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), size_(o.size_), stream_(o.stream_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (ptr_) spillway_free_async(ptr_, stream_);
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = o.size_;
      stream_ = o.stream_;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return size_; }

 private:
  void* ptr_;
  std::size_t size_;
  void* stream_;
};

}  // namespace spillway
