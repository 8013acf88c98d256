// sim_backend.cpp — implementation of the CPU simulator backend (see sim_backend.h).
#include "allocator/prim/sim_backend.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <set>
#include <thread>

namespace spillway::prim {

namespace {
Status Errno(const char* what) {
  int e = errno;
  return {e == 0 ? EIO : e, std::string("sim: ") + what + ": " + std::strerror(e)};
}
constexpr int kSimOutOfMemory = 2;  // same value as CUDA_ERROR_OUT_OF_MEMORY
}  // namespace

// A stream: one worker thread running tasks in FIFO order.
class SimStream {
 public:
  SimStream() : worker_([this] { run(); }) {}
  ~SimStream() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  void push(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      q_.push_back(std::move(fn));
      ++pushed_;
    }
    cv_.notify_all();
  }
  void drain() {
    std::unique_lock<std::mutex> lk(mu_);
    std::uint64_t target = pushed_;
    done_cv_.wait(lk, [&] { return done_ >= target; });
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;  // stop_ with nothing left
      auto fn = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
      ++done_;
      done_cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<void()>> q_;
  std::uint64_t pushed_ = 0, done_ = 0;
  bool stop_ = false;
  std::thread worker_;  // last: starts after the members it uses exist
};

struct SimEvent {
  // Records are numbered; each completes on its own stream, so they may complete out of order
  // (an event re-recorded on another stream). As in CUDA, a wait or query refers to one record:
  // `done_upto` covers every record up to it, `done_above` the ones completed early.
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t recorded = 0;
  std::uint64_t done_upto = 0;
  std::set<std::uint64_t> done_above;
  bool is_done(std::uint64_t v) const { return v <= done_upto || done_above.count(v) != 0; }
  void complete(std::uint64_t v) {
    // Notified under the lock: a waiter that sees the record done (and may then destroy the
    // event) takes the lock after this call has stopped touching the condition variable.
    std::lock_guard<std::mutex> lk(mu);
    done_above.insert(v);
    while (!done_above.empty() && *done_above.begin() == done_upto + 1) {
      ++done_upto;
      done_above.erase(done_above.begin());
    }
    cv.notify_all();
  }
  void wait_for(std::uint64_t v) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return is_done(v); });
  }
};

SimBackend::SimBackend(SimOptions opt) : opt_(opt), device_used_(opt.devices, 0) {
  fd_ = memfd_create("spillway-sim", MFD_CLOEXEC);
  default_stream_ = std::make_unique<SimStream>();
}

SimBackend::~SimBackend() {
  streams_.clear();
  default_stream_.reset();
  if (fd_ >= 0) close(fd_);
}

SimStream* SimBackend::resolve(Stream s) {
  return s == nullptr ? default_stream_.get() : static_cast<SimStream*>(s);
}

Status SimBackend::mem_info(int device, MemInfo* out) {
  if (device < 0 || device >= opt_.devices) return {EINVAL, "sim: no such device"};
  std::lock_guard<std::mutex> lk(mu_);
  out->total = opt_.device_memory;
  out->free = opt_.device_memory - device_used_[device];
  return Status::Ok();
}

Status SimBackend::reserve(int, std::size_t size, std::size_t align, std::uintptr_t* va) {
  if (fd_ < 0) return {EIO, "sim: memfd_create failed at start"};
  std::size_t span = size + align;
  void* p = mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Errno("reserve mmap");
  auto base = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t aligned = (base + align - 1) / align * align;
  if (aligned > base) munmap(p, aligned - base);
  std::uintptr_t end = aligned + size;
  if (base + span > end) munmap(reinterpret_cast<void*>(end), base + span - end);
  *va = aligned;
  return Status::Ok();
}

Status SimBackend::release_va(std::uintptr_t va, std::size_t size) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    mapped_.erase(mapped_.lower_bound(va), mapped_.lower_bound(va + size));
  }
  if (munmap(reinterpret_cast<void*>(va), size) != 0) return Errno("release_va munmap");
  return Status::Ok();
}

Status SimBackend::create(Location loc, std::size_t size, PhysHandle* out) {
  if (size == 0 || size % opt_.granularity != 0) return {EINVAL, "sim: size not granular"};
  std::lock_guard<std::mutex> lk(mu_);
  if (fail_creates_ > 0) {
    --fail_creates_;
    return {kSimOutOfMemory, "sim: out of memory (injected)"};
  }
  if (loc.kind == LocationKind::kDevice) {
    if (loc.id < 0 || loc.id >= opt_.devices) return {EINVAL, "sim: no such device"};
    if (device_used_[loc.id] + size > opt_.device_memory)
      return {kSimOutOfMemory, "sim: out of memory"};
  }
  std::size_t offset;
  auto& fl = free_offsets_[size];
  if (!fl.empty()) {
    offset = fl.back();
    fl.pop_back();
  } else {
    offset = file_end_;
    if (ftruncate(fd_, static_cast<off_t>(offset + size)) != 0) return Errno("ftruncate");
    file_end_ += size;
  }
  if (loc.kind == LocationKind::kDevice) device_used_[loc.id] += size;
  *out = next_handle_++;
  chunks_[*out] = Chunk{offset, size, loc};
  return Status::Ok();
}

Status SimBackend::release(PhysHandle h) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = chunks_.find(h);
  if (it == chunks_.end()) return {EINVAL, "sim: release of unknown handle"};
  Chunk c = it->second;
  chunks_.erase(it);
  // Give the pages back so released memory costs nothing, as on the device.
  fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(c.offset),
            static_cast<off_t>(c.size));
  free_offsets_[c.size].push_back(c.offset);
  if (c.loc.kind == LocationKind::kDevice) device_used_[c.loc.id] -= c.size;
  return Status::Ok();
}

Status SimBackend::map(std::uintptr_t va, std::size_t size, PhysHandle h) {
  const std::uint64_t t0 = MonotonicNs();
  std::size_t offset;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = chunks_.find(h);
    if (it == chunks_.end()) return {EINVAL, "sim: map of unknown handle"};
    if (it->second.size != size) return {EINVAL, "sim: map size differs from handle size"};
    offset = it->second.offset;
    auto next = mapped_.lower_bound(va);
    if (next != mapped_.end() && next->first < va + size)
      return {EINVAL, "sim: map over a mapped range"};
    if (next != mapped_.begin() && std::prev(next)->first + std::prev(next)->second > va)
      return {EINVAL, "sim: map over a mapped range"};
    mapped_[va] = size;
  }
  void* p = mmap(reinterpret_cast<void*>(va), size, PROT_NONE, MAP_SHARED | MAP_FIXED, fd_,
                 static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    Status e = Errno("map mmap");
    std::lock_guard<std::mutex> lk(mu_);
    mapped_.erase(va);
    return e;
  }
  count(Call::kMap, t0);
  return Status::Ok();
}

Status SimBackend::set_access(int, std::uintptr_t va, std::size_t size) {
  const std::uint64_t t0 = MonotonicNs();
  {
    // As with cuMemSetAccess: the range may cover several mappings, all of it mapped.
    std::lock_guard<std::mutex> lk(mu_);
    if (fail_accesses_ > 0) {
      --fail_accesses_;
      return {EINVAL, "sim: access refused (injected)"};
    }
    auto it = mapped_.upper_bound(va);
    if (it == mapped_.begin()) return {EINVAL, "sim: access to an unmapped range"};
    --it;
    for (std::uintptr_t at = va; at < va + size; ++it) {
      if (it == mapped_.end() || it->first > at || it->first + it->second <= at)
        return {EINVAL, "sim: access to an unmapped range"};
      at = it->first + it->second;
    }
  }
  if (mprotect(reinterpret_cast<void*>(va), size, PROT_READ | PROT_WRITE) != 0)
    return Errno("set_access mprotect");
  count(Call::kAccess, t0);
  return Status::Ok();
}

Status SimBackend::unmap(std::uintptr_t va, std::size_t size) {
  const std::uint64_t t0 = MonotonicNs();
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = mapped_.lower_bound(va);
    if (it != mapped_.begin() && std::prev(it)->first + std::prev(it)->second > va)
      return {EINVAL, "sim: unmap of part of a mapping"};
    auto end = it;
    for (; end != mapped_.end() && end->first < va + size; ++end)
      if (end->first + end->second > va + size) return {EINVAL, "sim: unmap of part of a mapping"};
    if (it == end) return {EINVAL, "sim: unmap of a range with nothing mapped"};
    mapped_.erase(it, end);
  }
  void* p = mmap(reinterpret_cast<void*>(va), size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return Errno("unmap mmap");
  count(Call::kUnmap, t0);
  return Status::Ok();
}

Status SimBackend::copy_async(int, void* dst, const void* src, std::size_t n, Stream s) {
  resolve(s)->push([dst, src, n] { std::memcpy(dst, src, n); });
  return Status::Ok();
}

Status SimBackend::event_create(int, Event* out) {
  *out = new SimEvent();
  return Status::Ok();
}

Status SimBackend::event_destroy(Event e) {
  // A record still queued on a stream would touch the event: let it run first (CUDA allows
  // destroying an event whose work is pending).
  event_synchronize(e);
  delete static_cast<SimEvent*>(e);
  return Status::Ok();
}

Status SimBackend::event_record(int, Event e, Stream s) {
  auto* ev = static_cast<SimEvent*>(e);
  std::uint64_t v;
  {
    std::lock_guard<std::mutex> lk(ev->mu);
    v = ++ev->recorded;
  }
  resolve(s)->push([ev, v] { ev->complete(v); });
  return Status::Ok();
}

Status SimBackend::event_query(Event e, bool* done) {
  auto* ev = static_cast<SimEvent*>(e);
  std::lock_guard<std::mutex> lk(ev->mu);
  *done = ev->is_done(ev->recorded);
  return Status::Ok();
}

Status SimBackend::event_synchronize(Event e) {
  const std::uint64_t t0 = MonotonicNs();
  auto* ev = static_cast<SimEvent*>(e);
  std::uint64_t target;
  {
    std::lock_guard<std::mutex> lk(ev->mu);
    target = ev->recorded;
  }
  ev->wait_for(target);
  count(Call::kWait, t0);
  return Status::Ok();
}

Status SimBackend::stream_wait_event(int, Stream s, Event e) {
  auto* ev = static_cast<SimEvent*>(e);
  std::uint64_t target;
  {
    std::lock_guard<std::mutex> lk(ev->mu);
    target = ev->recorded;
  }
  resolve(s)->push([ev, target] { ev->wait_for(target); });
  return Status::Ok();
}

Stream SimBackend::create_stream() {
  std::lock_guard<std::mutex> lk(mu_);
  streams_.push_back(std::make_unique<SimStream>());
  return streams_.back().get();
}

void SimBackend::destroy_stream(Stream s) {
  std::unique_ptr<SimStream> victim;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto it = streams_.begin(); it != streams_.end(); ++it) {
      if (it->get() == s) {
        victim = std::move(*it);
        streams_.erase(it);
        break;
      }
    }
  }
  // victim's destructor drains and joins outside the lock.
}

void SimBackend::enqueue(Stream s, std::function<void()> fn) {
  resolve(s)->push(std::move(fn));
}

void SimBackend::synchronize(Stream s) {
  resolve(s)->drain();
}

void SimBackend::fail_next_accesses(int n) {
  std::lock_guard<std::mutex> lk(mu_);
  fail_accesses_ = n;
}

void SimBackend::fail_next_creates(int n) {
  std::lock_guard<std::mutex> lk(mu_);
  fail_creates_ = n;
}

}  // namespace spillway::prim
