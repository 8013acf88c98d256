// cuda_driver.h — the CUDA driver entry points Spillway uses, resolved at run time: libcuda.so.1
// is dlopen'ed and every function comes from the real cuGetProcAddress, looked up with the real
// dlsym, so the preload's own hooks (which replace dlsym and cuGetProcAddress) never intercept
// Spillway's calls. No link-time dependency on libcuda.
#pragma once

#include <cuda.h>

#include <string>

namespace spillway::prim {

struct CudaDriver {
  CUresult (*cuInit)(unsigned int);
  CUresult (*cuDriverGetVersion)(int*);
  CUresult (*cuDeviceGetCount)(int*);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetName)(char*, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int*, CUdevice_attribute, CUdevice);
  CUresult (*cuDeviceTotalMem)(size_t*, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxPushCurrent)(CUcontext);
  CUresult (*cuCtxPopCurrent)(CUcontext*);
  CUresult (*cuCtxGetDevice)(CUdevice*);
  CUresult (*cuMemGetInfo)(size_t*, size_t*);
  CUresult (*cuMemGetAllocationGranularity)(size_t*, const CUmemAllocationProp*,
                                            CUmemAllocationGranularity_flags);
  CUresult (*cuMemAddressReserve)(CUdeviceptr*, size_t, size_t, CUdeviceptr, unsigned long long);
  CUresult (*cuMemAddressFree)(CUdeviceptr, size_t);
  CUresult (*cuMemCreate)(CUmemGenericAllocationHandle*, size_t, const CUmemAllocationProp*,
                          unsigned long long);
  CUresult (*cuMemRelease)(CUmemGenericAllocationHandle);
  CUresult (*cuMemMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
                       unsigned long long);
  CUresult (*cuMemSetAccess)(CUdeviceptr, size_t, const CUmemAccessDesc*, size_t);
  CUresult (*cuMemUnmap)(CUdeviceptr, size_t);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuEventCreate)(CUevent*, unsigned int);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventQuery)(CUevent);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned int);
  CUresult (*cuStreamIsCapturing)(CUstream, CUstreamCaptureStatus*);
  CUresult (*cuStreamCreate)(CUstream*, unsigned int);
  CUresult (*cuStreamDestroy)(CUstream);
  CUresult (*cuDeviceGetPCIBusId)(char*, int, CUdevice);
  CUresult (*cuGetErrorString)(CUresult, const char**);
  // The pager's copy kernel (CudaBackend::copy_to_host_async).
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void**, void**);
  // Real versions of the calls the preload interposes (pass-through for foreign pointers).
  CUresult (*cuMemAlloc)(CUdeviceptr*, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemAllocAsync)(CUdeviceptr*, size_t, CUstream);
  CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream);
  CUresult (*cuMemAllocAsync_ptsz)(CUdeviceptr*, size_t, CUstream);
  CUresult (*cuMemFreeAsync_ptsz)(CUdeviceptr, CUstream);
  CUresult (*cuGetProcAddress)(const char*, void**, int, cuuint64_t,
                               CUdriverProcAddressQueryResult*);
  // Optional (nullptr when the driver lacks them; CUDA 12.4+): parameter layouts of kernels,
  // for the profiler's tracker. In CUPTI launch callbacks the handle is a CUkernel (use
  // cuKernelGetParamInfo); cuFuncGetParamInfo is for real CUfunctions.
  CUresult (*cuKernelGetParamInfo)(CUkernel, size_t, size_t*, size_t*);
  // Optional (CUDA 12.3+): kernel names, for the tracker's check of kernels that keep device
  // pointers where it cannot see them (NCCL).
  CUresult (*cuKernelGetName)(const char**, CUkernel);
  CUresult (*cuFuncGetName)(const char**, CUfunction);
  CUresult (*cuFuncGetParamInfo)(CUfunction, size_t, size_t*, size_t*);
};

// Loads the driver once (thread-safe). Returns nullptr and sets *error if libcuda.so.1 cannot be
// loaded or an entry point is missing.
const CudaDriver* LoadCudaDriver(std::string* error);

// The C library's own dlsym (never an interposed one).
void* RealDlsym(void* handle, const char* symbol);

// "CUDA_ERROR_X (text)" for a driver result.
std::string CudaErrorString(const CudaDriver* d, CUresult r);

}  // namespace spillway::prim
