// host_pool.h — the host tier's pinned memory: 2 MiB physical chunks created on the GPU's nearest
// NUMA node (Backend::create at kHostNuma), each mapped once into the pool's own VA window with
// device and CPU access, and pooled (creating pinned memory is slow: ~0.25 ms per MiB on the
// H200 machine). The window mapping is where eviction copies land, where prefetch copies read
// from and where the NVMe tier does its I/O; the pager also maps the same chunks at a block's own
// VA. Capped by SPILLWAY_HOST_LIMIT. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "allocator/prim/backend.h"
#include "spillway/spillway.h"

namespace spillway::offload {

struct HostChunk {
  prim::PhysHandle handle = 0;
  std::uintptr_t window = 0;  // the chunk's address in the pool's window
};

class HostPool {
 public:
  // `limit`: bytes of pinned host memory the pool may create (rounded down to chunks).
  HostPool(prim::Backend& backend, int device, int numa, std::size_t chunk, std::uint64_t limit);
  ~HostPool();  // unmaps and releases every chunk (none may be in use)
  HostPool(const HostPool&) = delete;
  HostPool& operator=(const HostPool&) = delete;

  // `k` chunks, lowest window addresses first (runs of neighbours make long copies). Creates
  // chunks as needed, in batches of at least `grow_batch`. All or nothing: OUT_OF_MEMORY with
  // *why when the limit or the machine's pinned memory runs out.
  spillway_status acquire(std::size_t k, std::vector<HostChunk>* out, std::string* why);
  void release(const std::vector<HostChunk>& chunks);
  // Creates chunks up to `bytes` in the pool ahead of need (warm-up).
  spillway_status reserve(std::uint64_t bytes, std::string* why);

  std::size_t chunk_bytes() const { return chunk_; }
  int numa() const { return numa_; }
  std::uint64_t limit() const { return limit_; }
  std::uint64_t created_bytes() const;
  std::uint64_t in_use_bytes() const;

 private:
  spillway_status grow_locked(std::size_t k, std::string* why);
  prim::Backend& backend_;
  const int device_;
  const int numa_;
  const std::size_t chunk_;
  const std::uint64_t limit_;
  const std::size_t grow_batch_ = 16;  // 32 MiB
  mutable std::mutex mu_;
  std::uintptr_t window_ = 0;
  std::size_t window_chunks_ = 0;
  std::vector<prim::PhysHandle> handles_;  // by window slot
  std::vector<std::uint32_t> free_;        // free slots, sorted descending (back = lowest)
};

}  // namespace spillway::offload
