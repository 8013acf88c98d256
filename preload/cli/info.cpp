// info.cpp — `spillway info`: what this machine offers Spillway: the CUDA driver, each GPU with
// its memory and VMM support (device and host-NUMA), CUPTI, and io_uring.
#include <dlfcn.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "allocator/prim/cuda_driver.h"
#include "preload/cli/commands.h"

namespace spillway::cli {

namespace {

void CheckCupti() {
  void* h = nullptr;
  const char* found = nullptr;
  for (const char* name : {"libcupti.so.13", "libcupti.so.12", "libcupti.so",
                           "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so"}) {
    if ((h = dlopen(name, RTLD_LAZY | RTLD_LOCAL)) != nullptr) {
      found = name;
      break;
    }
  }
  if (h == nullptr) {
    std::printf("CUPTI: not found (libcupti.so.13 not on the library path)\n");
    return;
  }
  void* sub = prim::RealDlsym(h, "cuptiSubscribe_v2");
  if (sub == nullptr) sub = prim::RealDlsym(h, "cuptiSubscribe");
  std::printf("CUPTI: %s loaded, subscribe API %s\n", found, sub ? "present" : "MISSING");
}

void CheckIoUring() {
#ifdef __NR_io_uring_setup
  struct {
    unsigned sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd,
        resv[3];
    unsigned long long sq_off[5], cq_off[5];
  } params{};
  long fd = syscall(__NR_io_uring_setup, 4, &params);
  if (fd >= 0) {
    close(static_cast<int>(fd));
    std::printf("io_uring: available\n");
  } else {
    std::printf("io_uring: unavailable (%s)\n", std::strerror(errno));
  }
#else
  std::printf("io_uring: unavailable (kernel headers lack it)\n");
#endif
}

}  // namespace

int Info(int, char**) {
  std::string err;
  const prim::CudaDriver* d = prim::LoadCudaDriver(&err);
  if (d == nullptr) {
    std::printf("CUDA driver: unavailable: %s\n", err.c_str());
  } else {
    int version = 0, n = 0;
    d->cuDriverGetVersion(&version);
    d->cuDeviceGetCount(&n);
    std::printf("CUDA driver: version %d.%d, %d device(s)\n", version / 1000, (version % 1000) / 10, n);
    for (int i = 0; i < n; ++i) {
      CUdevice dev;
      d->cuDeviceGet(&dev, i);
      char name[256] = {};
      d->cuDeviceGetName(name, sizeof name, dev);
      std::size_t total = 0;
      d->cuDeviceTotalMem(&total, dev);
      int vmm = 0, numa = 0, numa_id = -1, pools = 0;
      d->cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);
      d->cuDeviceGetAttribute(
          &numa, CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev);
      d->cuDeviceGetAttribute(&numa_id, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, dev);
      d->cuDeviceGetAttribute(&pools, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, dev);
      CUmemAllocationProp p{};
      p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
      p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
      p.location.id = i;
      std::size_t gran = 0;
      if (vmm) d->cuMemGetAllocationGranularity(&gran, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED);
      std::printf(
          "GPU %d: %s, %.1f GiB; VMM %s (granularity %zu KiB); host-NUMA VMM %s (node %d); "
          "memory pools %s\n",
          i, name, static_cast<double>(total) / (1 << 30), vmm ? "yes" : "NO", gran >> 10,
          numa ? "yes" : "no", numa_id, pools ? "yes" : "no");
    }
  }
  CheckCupti();
  CheckIoUring();
  return 0;
}

}  // namespace spillway::cli
