// cuda_backend.cpp — the CUDA driver implementation of the backend (see cuda_backend.h).
#include "allocator/prim/cuda_backend.h"

#include <algorithm>
#include <cstdio>

namespace spillway::prim {

class CudaBackend::CtxScope {
 public:
  CtxScope(const CudaBackend* b, int device) : d_(b->d_) {
    CUcontext cur = nullptr;
    d_->cuCtxGetCurrent(&cur);
    CUcontext want = b->ctx_[static_cast<std::size_t>(device)];
    if (cur != want) pushed_ = d_->cuCtxPushCurrent(want) == CUDA_SUCCESS;
  }
  ~CtxScope() {
    if (pushed_) {
      CUcontext dummy;
      d_->cuCtxPopCurrent(&dummy);
    }
  }
  CtxScope(const CtxScope&) = delete;
  CtxScope& operator=(const CtxScope&) = delete;

 private:
  const CudaDriver* d_;
  bool pushed_ = false;
};

namespace {
CUmemAllocationProp Prop(Location loc) {
  CUmemAllocationProp p{};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  if (loc.kind == LocationKind::kDevice) {
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  } else {
    p.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  }
  p.location.id = loc.id;
  return p;
}
}  // namespace

std::unique_ptr<CudaBackend> CudaBackend::Create(std::string* error) {
  const CudaDriver* d = LoadCudaDriver(error);
  if (d == nullptr) return nullptr;
  int n = 0;
  CUresult r = d->cuDeviceGetCount(&n);
  if (r != CUDA_SUCCESS || n == 0) {
    *error = "spillway: no CUDA device" + (r ? ": " + CudaErrorString(d, r) : std::string());
    return nullptr;
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(d));
  for (int i = 0; i < n; ++i) {
    CUdevice dev;
    CUcontext ctx;
    int vmm = 0;
    if ((r = d->cuDeviceGet(&dev, i)) != CUDA_SUCCESS ||
        (r = d->cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                                     dev)) != CUDA_SUCCESS) {
      *error = "spillway: device query failed: " + CudaErrorString(d, r);
      return nullptr;
    }
    if (!vmm) {
      *error = "spillway: device " + std::to_string(i) +
               " does not support CUDA virtual memory management";
      return nullptr;
    }
    if ((r = d->cuDevicePrimaryCtxRetain(&ctx, dev)) != CUDA_SUCCESS) {
      *error = "spillway: cuDevicePrimaryCtxRetain failed: " + CudaErrorString(d, r);
      return nullptr;
    }
    b->dev_.push_back(dev);
    b->ctx_.push_back(ctx);
  }
  return b;
}

Status CudaBackend::check(CUresult r, const char* what) const {
  if (r == CUDA_SUCCESS) return Status::Ok();
  return {static_cast<int>(r), std::string(what) + ": " + CudaErrorString(d_, r)};
}

std::size_t CudaBackend::granularity(Location loc) {
  CUmemAllocationProp p = Prop(loc);
  std::size_t g = 0;
  if (d_->cuMemGetAllocationGranularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) !=
          CUDA_SUCCESS ||
      g == 0)
    g = std::size_t{2} << 20;
  return g;
}

Status CudaBackend::mem_info(int device, MemInfo* out) {
  CtxScope scope(this, device);
  return check(d_->cuMemGetInfo(&out->free, &out->total), "cuMemGetInfo");
}

Status CudaBackend::reserve(int device, std::size_t size, std::size_t align, std::uintptr_t* va) {
  CtxScope scope(this, device);
  CUdeviceptr p = 0;
  Status s = check(d_->cuMemAddressReserve(&p, size, align, 0, 0), "cuMemAddressReserve");
  *va = static_cast<std::uintptr_t>(p);
  return s;
}

Status CudaBackend::release_va(std::uintptr_t va, std::size_t size) {
  return check(d_->cuMemAddressFree(static_cast<CUdeviceptr>(va), size), "cuMemAddressFree");
}

Status CudaBackend::create(Location loc, std::size_t size, PhysHandle* out) {
  CUmemAllocationProp p = Prop(loc);
  CUmemGenericAllocationHandle h = 0;
  Status s =
      check(timed(Call::kCreate, [&] { return d_->cuMemCreate(&h, size, &p, 0); }), "cuMemCreate");
  *out = static_cast<PhysHandle>(h);
  return s;
}

Status CudaBackend::release(PhysHandle h) {
  return check(
      timed(Call::kRelease,
            [&] { return d_->cuMemRelease(static_cast<CUmemGenericAllocationHandle>(h)); }),
      "cuMemRelease");
}

Status CudaBackend::map(std::uintptr_t va, std::size_t size, PhysHandle h) {
  return check(timed(Call::kMap,
                     [&] {
                       return d_->cuMemMap(static_cast<CUdeviceptr>(va), size, 0,
                                           static_cast<CUmemGenericAllocationHandle>(h), 0);
                     }),
               "cuMemMap");
}

Status CudaBackend::set_access(int device, std::uintptr_t va, std::size_t size) {
  CUmemAccessDesc a{};
  a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  a.location.id = device;
  a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return check(timed(Call::kAccess,
                     [&] { return d_->cuMemSetAccess(static_cast<CUdeviceptr>(va), size, &a, 1); }),
               "cuMemSetAccess");
}

Status CudaBackend::set_access_host(int device, int numa, std::uintptr_t va, std::size_t size) {
  CUmemAccessDesc a[2] = {};
  a[0].location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  a[0].location.id = device;
  a[0].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  a[1].location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
  a[1].location.id = numa;
  a[1].flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return check(timed(Call::kAccess,
                     [&] { return d_->cuMemSetAccess(static_cast<CUdeviceptr>(va), size, a, 2); }),
               "cuMemSetAccess (device and host)");
}

std::string CudaBackend::pci_bus_id(int device) {
  char buf[32] = {};
  if (device < 0 || static_cast<std::size_t>(device) >= dev_.size() ||
      d_->cuDeviceGetPCIBusId(buf, sizeof buf, dev_[device]) != CUDA_SUCCESS)
    return {};
  return buf;
}

Status CudaBackend::stream_create(int device, Stream* out) {
  CtxScope scope(this, device);
  CUstream s = nullptr;
  Status st = check(d_->cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  *out = s;
  return st;
}

Status CudaBackend::stream_destroy(int device, Stream s) {
  CtxScope scope(this, device);
  return check(d_->cuStreamDestroy(static_cast<CUstream>(s)), "cuStreamDestroy");
}

Status CudaBackend::unmap(std::uintptr_t va, std::size_t size) {
  return check(
      timed(Call::kUnmap, [&] { return d_->cuMemUnmap(static_cast<CUdeviceptr>(va), size); }),
      "cuMemUnmap");
}

Status CudaBackend::copy_async(int device, void* dst, const void* src, std::size_t n, Stream s) {
  CtxScope scope(this, device);
  InternalCall internal;  // not the program's access: the tracker skips it
  return check(d_->cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(dst),
                                 reinterpret_cast<CUdeviceptr>(src), n, static_cast<CUstream>(s)),
               "cuMemcpyAsync");
}

namespace {

// dst[i] = src[i] over 16-byte elements, a grid-stride loop (JIT-compiled for the device).
constexpr const char* kCopyPtx =
    ".version 8.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".visible .entry spillway_copy16(.param .u64 dst, .param .u64 src, .param .u64 n)\n"
    "{\n"
    "  .reg .u64 %rd<12>;\n"
    "  .reg .u32 %r<5>;\n"
    "  .reg .b32 %v<4>;\n"
    "  .reg .pred %p;\n"
    "  ld.param.u64 %rd1, [dst];\n"
    "  ld.param.u64 %rd2, [src];\n"
    "  ld.param.u64 %rd3, [n];\n"
    "  mov.u32 %r1, %ctaid.x;\n"
    "  mov.u32 %r2, %ntid.x;\n"
    "  mov.u32 %r3, %tid.x;\n"
    "  mov.u32 %r4, %nctaid.x;\n"
    "  cvt.u64.u32 %rd4, %r1;\n"
    "  cvt.u64.u32 %rd5, %r2;\n"
    "  cvt.u64.u32 %rd6, %r3;\n"
    "  cvt.u64.u32 %rd7, %r4;\n"
    "  mul.lo.u64 %rd8, %rd4, %rd5;\n"
    "  add.u64 %rd8, %rd8, %rd6;\n"
    "  mul.lo.u64 %rd9, %rd7, %rd5;\n"
    "LOOP:\n"
    "  setp.ge.u64 %p, %rd8, %rd3;\n"
    "  @%p bra DONE;\n"
    "  shl.b64 %rd10, %rd8, 4;\n"
    "  add.u64 %rd11, %rd2, %rd10;\n"
    "  ld.global.v4.u32 {%v0, %v1, %v2, %v3}, [%rd11];\n"
    "  add.u64 %rd11, %rd1, %rd10;\n"
    "  st.global.v4.u32 [%rd11], {%v0, %v1, %v2, %v3};\n"
    "  add.u64 %rd8, %rd8, %rd9;\n"
    "  bra LOOP;\n"
    "DONE:\n"
    "  ret;\n"
    "}\n";

}  // namespace

CUfunction CudaBackend::copy_kernel(int device, std::string* error) {
  std::lock_guard<std::mutex> lk(kernel_mu_);
  const auto d = static_cast<std::size_t>(device);
  if (copy_fn_.size() <= d) {
    copy_fn_.resize(d + 1, nullptr);
    copy_failed_.resize(d + 1, 0);
  }
  if (copy_fn_[d] != nullptr || copy_failed_[d]) return copy_fn_[d];
  CUmodule mod = nullptr;
  CUfunction fn = nullptr;
  CUresult r = d_->cuModuleLoadData(&mod, kCopyPtx);
  if (r == CUDA_SUCCESS) r = d_->cuModuleGetFunction(&fn, mod, "spillway_copy16");
  if (r != CUDA_SUCCESS) {
    copy_failed_[d] = 1;
    *error = "loading the copy kernel: " + CudaErrorString(d_, r);
    return nullptr;
  }
  copy_fn_[d] = fn;  // the module stays loaded with the context
  return fn;
}

Status CudaBackend::copy_to_host_async(int device, void* dst, const void* src, std::size_t n,
                                       Stream s) {
  const bool aligned =
      (reinterpret_cast<std::uintptr_t>(dst) | reinterpret_cast<std::uintptr_t>(src) | n) % 16 == 0;
  if (!kernel_copies_.load(std::memory_order_relaxed) || !aligned)
    return copy_async(device, dst, src, n, s);
  CtxScope scope(this, device);
  InternalCall internal;  // not the program's launch: the tracker skips it
  std::string why;
  CUfunction fn = copy_kernel(device, &why);
  if (fn == nullptr) {
    if (!why.empty())  // the first failure on this device
      std::fprintf(stderr,
                   "spillway: SPILLWAY_OFFLOAD_COPY=kernel: %s; evictions use the copy engine "
                   "on device %d\n",
                   why.c_str(), device);
    return copy_async(device, dst, src, n, s);
  }
  std::uint64_t pd = reinterpret_cast<std::uintptr_t>(dst),
                ps = reinterpret_cast<std::uintptr_t>(src), pn = n / 16;
  void* args[] = {&pd, &ps, &pn};
  // 512 threads a block, one 16-byte element each per pass; at most 264 blocks (two per SM of
  // an H200) so that the copy leaves room for the program's kernels.
  const std::uint64_t blocks = std::min<std::uint64_t>(264, (pn + 511) / 512);
  kernel_copy_count_.fetch_add(1, std::memory_order_relaxed);
  return check(d_->cuLaunchKernel(fn, static_cast<unsigned>(blocks), 1, 1, 512, 1, 1, 0,
                                  static_cast<CUstream>(s), args, nullptr),
               "cuLaunchKernel (copy to the host)");
}

Status CudaBackend::event_create(int device, Event* out) {
  CtxScope scope(this, device);
  CUevent e = nullptr;
  Status s = check(d_->cuEventCreate(&e, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
  *out = e;
  return s;
}

Status CudaBackend::event_destroy(Event e) {
  return check(d_->cuEventDestroy(static_cast<CUevent>(e)), "cuEventDestroy");
}

Status CudaBackend::event_record(int device, Event e, Stream s) {
  CtxScope scope(this, device);
  return check(d_->cuEventRecord(static_cast<CUevent>(e), static_cast<CUstream>(s)),
               "cuEventRecord");
}

Status CudaBackend::event_query(Event e, bool* done) {
  CUresult r = d_->cuEventQuery(static_cast<CUevent>(e));
  *done = r == CUDA_SUCCESS;
  if (r == CUDA_SUCCESS || r == CUDA_ERROR_NOT_READY) return Status::Ok();
  return check(r, "cuEventQuery");
}

Status CudaBackend::event_synchronize(Event e) {
  return check(timed(Call::kWait, [&] { return d_->cuEventSynchronize(static_cast<CUevent>(e)); }),
               "cuEventSynchronize");
}

Status CudaBackend::stream_wait_event(int device, Stream s, Event e) {
  CtxScope scope(this, device);
  return check(d_->cuStreamWaitEvent(static_cast<CUstream>(s), static_cast<CUevent>(e), 0),
               "cuStreamWaitEvent");
}

bool CudaBackend::stream_is_capturing(int device, Stream s) {
  CtxScope scope(this, device);
  CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
  CUresult r = d_->cuStreamIsCapturing(static_cast<CUstream>(s), &st);
  // An error here means the legacy stream is unusable because another stream captures in
  // global mode: treat as capturing so the call goes to CUDA, which reports it properly.
  return r != CUDA_SUCCESS || st != CU_STREAM_CAPTURE_STATUS_NONE;
}

}  // namespace spillway::prim
