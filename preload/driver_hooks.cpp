// driver_hooks.cpp — interposers of the CUDA driver's allocation calls (cuMemAlloc_v2,
// cuMemFree_v2, cuMemAllocAsync, cuMemFreeAsync, cuMemGetInfo_v2), which frameworks and cudart
// reach by symbol, through dlsym and through cuGetProcAddress; and the cuGetProcAddress hooks.
#include <cstdio>
#include <cstring>

#include "allocator/error.h"
#include "preload/preload.h"

using spillway::Allocator;
using spillway::FreeMode;
namespace trace = spillway::trace;
namespace pl = spillway::preload;

namespace {

CUresult ToDriver(spillway_status s) {
  switch (s) {
    case SPILLWAY_OK: return CUDA_SUCCESS;
    case SPILLWAY_ERR_OUT_OF_MEMORY: return CUDA_ERROR_OUT_OF_MEMORY;
    case SPILLWAY_ERR_NO_DEVICE: return CUDA_ERROR_NO_DEVICE;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
}

CUresult Complain(spillway_status s) {
  if (s != SPILLWAY_ERR_OUT_OF_MEMORY) std::fprintf(stderr, "%s\n", spillway::LastError());
  return ToDriver(s);
}

// Device of the current context, as the driver's allocation calls use.
CUresult ContextDevice(int* dev) {
  CUdevice d = 0;
  CUresult r = pl::Driver()->cuCtxGetDevice(&d);
  *dev = static_cast<int>(d);
  return r;
}

CUresult AllocAsync(CUdeviceptr* p, size_t n, CUstream s, bool ptsz) {
  Allocator* a = pl::Instance();
  const spillway::prim::CudaDriver* d = pl::Driver();
  auto real = ptsz ? d->cuMemAllocAsync_ptsz : d->cuMemAllocAsync;
  if (ptsz && s == nullptr) s = CU_STREAM_PER_THREAD;
  int dev = 0;
  if (a == nullptr || p == nullptr || n == 0) return real(p, n, s);  // CUDA's own errors
  CUresult r = ContextDevice(&dev);
  if (r != CUDA_SUCCESS) return r;
  if (a->backend().stream_is_capturing(dev, s)) return real(p, n, s);
  void* out = nullptr;
  spillway_status st = a->allocate(&out, n, dev, s, false, trace::Kind::kCuMemAllocAsync);
  *p = reinterpret_cast<CUdeviceptr>(out);
  return st == SPILLWAY_OK ? CUDA_SUCCESS : Complain(st);
}

CUresult FreeAsync(CUdeviceptr p, CUstream s, bool ptsz) {
  Allocator* a = pl::Instance();
  const spillway::prim::CudaDriver* d = pl::Driver();
  if (ptsz && s == nullptr) s = CU_STREAM_PER_THREAD;
  void* ptr = reinterpret_cast<void*>(p);
  if (a != nullptr && p != 0 && a->owns_range(ptr)) {
    int dev = 0;
    if (ContextDevice(&dev) == CUDA_SUCCESS && a->backend().stream_is_capturing(dev, s)) {
      pl::RetainForGraph(ptr);
      return CUDA_SUCCESS;
    }
    spillway_status st = a->free(ptr, FreeMode::kStreamOrdered, s, trace::Kind::kCuMemFreeAsync);
    return st == SPILLWAY_OK ? CUDA_SUCCESS : Complain(st);
  }
  return (ptsz ? d->cuMemFreeAsync_ptsz : d->cuMemFreeAsync)(p, s);
}

}  // namespace

extern "C" {

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
  Allocator* a = pl::Instance();
  if (a == nullptr || p == nullptr || n == 0) {
    const spillway::prim::CudaDriver* d = pl::Driver();
    return d ? d->cuMemAlloc(p, n) : CUDA_ERROR_NOT_INITIALIZED;
  }
  int dev = 0;
  CUresult r = ContextDevice(&dev);
  if (r != CUDA_SUCCESS) return r;
  void* out = nullptr;
  spillway_status st = a->allocate(&out, n, dev, nullptr, true, trace::Kind::kCuMemAlloc);
  *p = reinterpret_cast<CUdeviceptr>(out);
  return st == SPILLWAY_OK ? CUDA_SUCCESS : Complain(st);
}

CUresult cuMemFree_v2(CUdeviceptr p) {
  Allocator* a = pl::Instance();
  void* ptr = reinterpret_cast<void*>(p);
  if (a != nullptr && p != 0 && a->owns_range(ptr)) {
    spillway_status st = a->free(ptr, FreeMode::kSynchronous, nullptr, trace::Kind::kCuMemFree);
    return st == SPILLWAY_OK ? CUDA_SUCCESS : Complain(st);
  }
  const spillway::prim::CudaDriver* d = pl::Driver();
  return d ? d->cuMemFree(p) : CUDA_ERROR_NOT_INITIALIZED;
}

CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, CUstream s) { return AllocAsync(p, n, s, false); }
CUresult cuMemAllocAsync_ptsz(CUdeviceptr* p, size_t n, CUstream s) {
  return AllocAsync(p, n, s, true);
}
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) { return FreeAsync(p, s, false); }
CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s) { return FreeAsync(p, s, true); }

CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total_bytes) {
  const spillway::prim::CudaDriver* d = pl::Driver();
  if (d == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = d->cuMemGetInfo(free_bytes, total_bytes);
  int dev = 0;
  if (r == CUDA_SUCCESS && ContextDevice(&dev) == CUDA_SUCCESS)
    pl::ApplyBudget(pl::Instance(), dev, *free_bytes, free_bytes, total_bytes);
  return r;
}

CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                             CUdriverProcAddressQueryResult* status) {
  const spillway::prim::CudaDriver* d = pl::Driver();
  if (d == nullptr) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = d->cuGetProcAddress(symbol, pfn, version, flags, status);
  if (r == CUDA_SUCCESS && pfn != nullptr && *pfn != nullptr && symbol != nullptr) {
    if (void* hook = pl::DriverHookFor(symbol, version, flags)) *pfn = hook;
    else if (void* launch = pl::LaunchHookFor(symbol, *pfn)) *pfn = launch;
  }
  return r;
}

// The pre-CUDA-12 signature, still exported by the driver under the plain name (cuda.h maps
// that name to _v2, hence the assembler label).
CUresult GetProcAddressV1(const char* symbol, void** pfn, int version, cuuint64_t flags) __asm__(
    "cuGetProcAddress");
CUresult GetProcAddressV1(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  return cuGetProcAddress_v2(symbol, pfn, version, flags, nullptr);
}

}  // extern "C"

namespace spillway::preload {

void* DriverHookFor(const char* symbol, int version, cuuint64_t flags) {
  const bool ptsz = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
  // Only the versions whose signatures our hooks have.
  if (std::strcmp(symbol, "cuGetProcAddress") == 0)
    return version >= 12000 ? reinterpret_cast<void*>(&cuGetProcAddress_v2)
                            : reinterpret_cast<void*>(&GetProcAddressV1);
  if (version < 3020) return nullptr;
  if (std::strcmp(symbol, "cuMemAlloc") == 0) return reinterpret_cast<void*>(&cuMemAlloc_v2);
  if (std::strcmp(symbol, "cuMemFree") == 0) return reinterpret_cast<void*>(&cuMemFree_v2);
  if (std::strcmp(symbol, "cuMemGetInfo") == 0) return reinterpret_cast<void*>(&cuMemGetInfo_v2);
  if (std::strcmp(symbol, "cuMemAllocAsync") == 0)
    return ptsz ? reinterpret_cast<void*>(&cuMemAllocAsync_ptsz)
                : reinterpret_cast<void*>(&cuMemAllocAsync);
  if (std::strcmp(symbol, "cuMemFreeAsync") == 0)
    return ptsz ? reinterpret_cast<void*>(&cuMemFreeAsync_ptsz)
                : reinterpret_cast<void*>(&cuMemFreeAsync);
  return nullptr;
}

}  // namespace spillway::preload
