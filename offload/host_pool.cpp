// host_pool.cpp — the pinned host chunk pool of the host tier (see host_pool.h).
#include "offload/host_pool.h"

#include <algorithm>
#include <functional>

namespace spillway::offload {

HostPool::HostPool(prim::Backend& backend, int device, int numa, std::size_t chunk,
                   std::uint64_t limit)
    : backend_(backend),
      device_(device),
      numa_(numa),
      chunk_(chunk),
      limit_(limit / chunk * chunk) {}

HostPool::~HostPool() {
  for (std::size_t i = 0; i < handles_.size(); ++i) {
    backend_.unmap(window_ + i * chunk_, chunk_);
    backend_.release(handles_[i]);
  }
  if (window_ != 0) backend_.release_va(window_, window_chunks_ * chunk_);
}

std::uint64_t HostPool::created_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return handles_.size() * chunk_;
}

std::uint64_t HostPool::in_use_bytes() const {
  std::lock_guard<std::mutex> lk(mu_);
  return (handles_.size() - free_.size()) * chunk_;
}

spillway_status HostPool::grow_locked(std::size_t k, std::string* why) {
  const std::size_t cap = limit_ / chunk_;
  if (handles_.size() + k > cap) {
    *why = "spillway: SPILLWAY_HOST_LIMIT (" + std::to_string(limit_ >> 20) +
           " MiB) reached: the host tier holds " + std::to_string(handles_.size() * chunk_ >> 20) +
           " MiB and needs " + std::to_string(k * chunk_ >> 20) + " MiB more";
    return SPILLWAY_ERR_OUT_OF_MEMORY;
  }
  if (window_ == 0) {  // the window spans the limit: chunks never move
    window_chunks_ = std::max<std::size_t>(cap, 1);
    prim::Status s = backend_.reserve(device_, window_chunks_ * chunk_, chunk_, &window_);
    if (!s.ok()) {
      window_ = 0;
      *why = "spillway: reserving the host tier's address window failed: " + s.message;
      return SPILLWAY_ERR_BACKEND;
    }
  }
  const std::size_t want = std::min(cap - handles_.size(), std::max(k, grow_batch_));
  for (std::size_t made = 0; made < want; ++made) {
    prim::PhysHandle h = 0;
    prim::Status s = backend_.create({prim::LocationKind::kHostNuma, numa_}, chunk_, &h);
    const std::uintptr_t va = window_ + handles_.size() * chunk_;
    if (s.ok()) {
      s = backend_.map(va, chunk_, h);
      if (s.ok()) {
        s = backend_.set_access_host(device_, numa_, va, chunk_);
        if (!s.ok()) backend_.unmap(va, chunk_);
      }
      if (!s.ok()) backend_.release(h);
    }
    if (!s.ok()) {
      if (made >= k) return SPILLWAY_OK;  // the batch's extra chunks are optional
      *why = "spillway: creating pinned host memory on NUMA node " + std::to_string(numa_) +
             " failed after " + std::to_string(handles_.size() * chunk_ >> 20) +
             " MiB: " + s.message;
      return SPILLWAY_ERR_OUT_OF_MEMORY;
    }
    free_.push_back(static_cast<std::uint32_t>(handles_.size()));
    handles_.push_back(h);
  }
  std::sort(free_.begin(), free_.end(), std::greater<>());
  return SPILLWAY_OK;
}

spillway_status HostPool::acquire(std::size_t k, std::vector<HostChunk>* out, std::string* why) {
  std::lock_guard<std::mutex> lk(mu_);
  if (free_.size() < k) {
    if (spillway_status s = grow_locked(k - free_.size(), why); s != SPILLWAY_OK) return s;
  }
  for (std::size_t i = 0; i < k; ++i) {
    const std::uint32_t slot = free_.back();
    free_.pop_back();
    out->push_back({handles_[slot], window_ + std::uintptr_t{slot} * chunk_});
  }
  return SPILLWAY_OK;
}

void HostPool::release(const std::vector<HostChunk>& chunks) {
  if (chunks.empty()) return;
  std::lock_guard<std::mutex> lk(mu_);
  for (const HostChunk& c : chunks)
    free_.push_back(static_cast<std::uint32_t>((c.window - window_) / chunk_));
  std::sort(free_.begin(), free_.end(), std::greater<>());
}

spillway_status HostPool::reserve(std::uint64_t bytes, std::string* why) {
  std::lock_guard<std::mutex> lk(mu_);
  const std::size_t want = static_cast<std::size_t>((bytes + chunk_ - 1) / chunk_);
  if (want <= handles_.size()) return SPILLWAY_OK;
  return grow_locked(want - handles_.size(), why);
}

}  // namespace spillway::offload
