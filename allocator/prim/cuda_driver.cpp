// cuda_driver.cpp — resolves the real CUDA driver entry points (see cuda_driver.h).
#include "allocator/prim/cuda_driver.h"

#include <dlfcn.h>

#include <mutex>

namespace spillway::prim {

void* RealDlsym(void* handle, const char* symbol) {
  using DlsymFn = void* (*)(void*, const char*);
  static DlsymFn real = [] {
    void* libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
    void* f = nullptr;
    if (libc != nullptr) {
      f = dlvsym(libc, "dlsym", "GLIBC_2.34");
      if (f == nullptr) f = dlvsym(libc, "dlsym", "GLIBC_2.2.5");
    }
    return reinterpret_cast<DlsymFn>(f);
  }();
  return real != nullptr ? real(handle, symbol) : nullptr;
}

std::string CudaErrorString(const CudaDriver* d, CUresult r) {
  const char* s = nullptr;
  if (d != nullptr && d->cuGetErrorString != nullptr) d->cuGetErrorString(r, &s);
  return "CUDA error " + std::to_string(static_cast<int>(r)) + (s ? std::string(" (") + s + ")" : "");
}

namespace {

CudaDriver g_driver;
std::string g_error;

bool Resolve(void** slot, const char* name, int version, bool optional) {
  CUdriverProcAddressQueryResult status{};
  CUresult r = g_driver.cuGetProcAddress(name, slot, version, CU_GET_PROC_ADDRESS_DEFAULT, &status);
  if (r != CUDA_SUCCESS || *slot == nullptr) {
    *slot = nullptr;
    if (!optional) g_error = std::string("spillway: CUDA driver lacks entry point ") + name;
    return optional;
  }
  return true;
}

bool Load() {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (lib == nullptr) {
    const char* e = dlerror();
    g_error = std::string("spillway: cannot load libcuda.so.1 (no NVIDIA driver?): ") +
              (e ? e : "unknown error");
    return false;
  }
  g_driver.cuGetProcAddress = reinterpret_cast<decltype(g_driver.cuGetProcAddress)>(
      RealDlsym(lib, "cuGetProcAddress_v2"));
  if (g_driver.cuGetProcAddress == nullptr) {
    g_error = "spillway: libcuda.so.1 has no cuGetProcAddress_v2 (driver older than CUDA 12)";
    return false;
  }
  const int v = CUDA_VERSION;
  bool ok = true;
#define SPW_RESOLVE(field, name, ver) \
  ok = ok && Resolve(reinterpret_cast<void**>(&g_driver.field), name, ver, false)
  SPW_RESOLVE(cuInit, "cuInit", v);
  SPW_RESOLVE(cuDriverGetVersion, "cuDriverGetVersion", v);
  SPW_RESOLVE(cuDeviceGetCount, "cuDeviceGetCount", v);
  SPW_RESOLVE(cuDeviceGet, "cuDeviceGet", v);
  SPW_RESOLVE(cuDeviceGetName, "cuDeviceGetName", v);
  SPW_RESOLVE(cuDeviceGetAttribute, "cuDeviceGetAttribute", v);
  SPW_RESOLVE(cuDeviceTotalMem, "cuDeviceTotalMem", v);
  SPW_RESOLVE(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", v);
  SPW_RESOLVE(cuCtxGetCurrent, "cuCtxGetCurrent", v);
  SPW_RESOLVE(cuCtxSetCurrent, "cuCtxSetCurrent", v);
  SPW_RESOLVE(cuCtxPushCurrent, "cuCtxPushCurrent", v);
  SPW_RESOLVE(cuCtxPopCurrent, "cuCtxPopCurrent", v);
  // CUDA 13 made cuCtxGetDevice take a context (_v2): ask for the CUDA 12 signature.
  SPW_RESOLVE(cuCtxGetDevice, "cuCtxGetDevice", 12000);
  SPW_RESOLVE(cuMemGetInfo, "cuMemGetInfo", v);
  SPW_RESOLVE(cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity", v);
  SPW_RESOLVE(cuMemAddressReserve, "cuMemAddressReserve", v);
  SPW_RESOLVE(cuMemAddressFree, "cuMemAddressFree", v);
  SPW_RESOLVE(cuMemCreate, "cuMemCreate", v);
  SPW_RESOLVE(cuMemRelease, "cuMemRelease", v);
  SPW_RESOLVE(cuMemMap, "cuMemMap", v);
  SPW_RESOLVE(cuMemSetAccess, "cuMemSetAccess", v);
  SPW_RESOLVE(cuMemUnmap, "cuMemUnmap", v);
  SPW_RESOLVE(cuMemcpyAsync, "cuMemcpyAsync", v);
  SPW_RESOLVE(cuEventCreate, "cuEventCreate", v);
  SPW_RESOLVE(cuEventDestroy, "cuEventDestroy", v);
  SPW_RESOLVE(cuEventRecord, "cuEventRecord", v);
  SPW_RESOLVE(cuEventQuery, "cuEventQuery", v);
  SPW_RESOLVE(cuEventSynchronize, "cuEventSynchronize", v);
  SPW_RESOLVE(cuStreamWaitEvent, "cuStreamWaitEvent", v);
  SPW_RESOLVE(cuStreamIsCapturing, "cuStreamIsCapturing", v);
  SPW_RESOLVE(cuStreamCreate, "cuStreamCreate", v);
  SPW_RESOLVE(cuStreamDestroy, "cuStreamDestroy", v);
  SPW_RESOLVE(cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId", v);
  SPW_RESOLVE(cuGetErrorString, "cuGetErrorString", v);
  SPW_RESOLVE(cuModuleLoadData, "cuModuleLoadData", v);
  SPW_RESOLVE(cuModuleGetFunction, "cuModuleGetFunction", v);
  SPW_RESOLVE(cuLaunchKernel, "cuLaunchKernel", v);
  SPW_RESOLVE(cuMemAlloc, "cuMemAlloc", v);
  SPW_RESOLVE(cuMemFree, "cuMemFree", v);
  SPW_RESOLVE(cuMemAllocAsync, "cuMemAllocAsync", v);
  SPW_RESOLVE(cuMemFreeAsync, "cuMemFreeAsync", v);
#undef SPW_RESOLVE
  if (!ok) return false;
  // Optional entries: nullptr when missing.
  Resolve(reinterpret_cast<void**>(&g_driver.cuKernelGetParamInfo), "cuKernelGetParamInfo", v,
          true);
  Resolve(reinterpret_cast<void**>(&g_driver.cuFuncGetParamInfo), "cuFuncGetParamInfo", v, true);
  Resolve(reinterpret_cast<void**>(&g_driver.cuKernelGetName), "cuKernelGetName", v, true);
  Resolve(reinterpret_cast<void**>(&g_driver.cuFuncGetName), "cuFuncGetName", v, true);
  // Per-thread-default-stream flavours, resolved by their exported names.
  g_driver.cuMemAllocAsync_ptsz = reinterpret_cast<decltype(g_driver.cuMemAllocAsync_ptsz)>(
      RealDlsym(lib, "cuMemAllocAsync_ptsz"));
  g_driver.cuMemFreeAsync_ptsz = reinterpret_cast<decltype(g_driver.cuMemFreeAsync_ptsz)>(
      RealDlsym(lib, "cuMemFreeAsync_ptsz"));
  CUresult r = g_driver.cuInit(0);
  if (r != CUDA_SUCCESS) {
    g_error = "spillway: cuInit failed: " + CudaErrorString(&g_driver, r);
    return false;
  }
  return true;
}

}  // namespace

const CudaDriver* LoadCudaDriver(std::string* error) {
  static std::once_flag once;
  static bool loaded = false;
  std::call_once(once, [] { loaded = Load(); });
  if (!loaded) {
    if (error) *error = g_error;
    return nullptr;
  }
  return &g_driver;
}

}  // namespace spillway::prim
