// preload_program.cu — an ordinary CUDA program, run under LD_PRELOAD=libspillway_preload.so by
// ctest: cudaMalloc/cudaFree, cudaMallocAsync/cudaFreeAsync, cudaMemGetInfo, and the driver's
// cuMemAlloc/cuMemFree reached through cudaGetDriverEntryPointByVersion (cuGetProcAddress);
// kernels write and check every byte, and every pointer must belong to Spillway.
// Exit codes: 0 pass, 1 fail, 77 no GPU (ctest reports it as skipped).
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

__global__ void Fill(unsigned* p, size_t n, unsigned seed) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    p[i] = static_cast<unsigned>(i) * 2654435761u + seed;
}
__global__ void Check(const unsigned* p, size_t n, unsigned seed, unsigned long long* bad) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    if (p[i] != static_cast<unsigned>(i) * 2654435761u + seed) atomicAdd(bad, 1ull);
}

static int failures = 0;
#define EXPECT(c, ...)                              \
  do {                                              \
    if (!(c)) {                                     \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);            \
      std::fprintf(stderr, "\n");                   \
      ++failures;                                   \
    }                                               \
  } while (0)

using OwnsFn = int (*)(const void*);
static OwnsFn owns = nullptr;

static void Verify(void* p, size_t bytes, unsigned seed, cudaStream_t s, unsigned long long* bad,
                   const char* what) {
  size_t n = bytes / sizeof(unsigned);
  cudaMemsetAsync(bad, 0, sizeof *bad, s);
  Fill<<<512, 256, 0, s>>>(static_cast<unsigned*>(p), n, seed);
  Check<<<512, 256, 0, s>>>(static_cast<unsigned*>(p), n, seed, bad);
  unsigned long long h = ~0ull;
  cudaMemcpyAsync(&h, bad, sizeof h, cudaMemcpyDeviceToHost, s);
  cudaError_t e = cudaStreamSynchronize(s);
  EXPECT(e == cudaSuccess, "%s: %s", what, cudaGetErrorString(e));
  EXPECT(h == 0, "%s: %llu bad words", what, h);
  if (owns) EXPECT(owns(p) == 1, "%s: %p not owned by Spillway", what, p);
}

int main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("SKIPPED: no CUDA GPU on this machine\n");
    return 77;
  }
  owns = reinterpret_cast<OwnsFn>(dlsym(RTLD_DEFAULT, "spillway_owns"));
  if (std::getenv("SPILLWAY_EXPECT_PRELOAD") && owns == nullptr) {
    std::fprintf(stderr, "FAIL: libspillway is not loaded (LD_PRELOAD missing?)\n");
    return 1;
  }
  unsigned long long* bad = nullptr;  // itself from cudaMalloc: under the preload, Spillway's
  EXPECT(cudaMalloc(&bad, sizeof *bad) == cudaSuccess, "cudaMalloc bad");
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  std::vector<void*> blocks;
  unsigned seed = 1;
  for (size_t bytes : {size_t{4096}, size_t{1} << 20, size_t{64} << 20}) {
    void* p = nullptr;
    EXPECT(cudaMalloc(&p, bytes) == cudaSuccess, "cudaMalloc %zu", bytes);
    Verify(p, bytes, seed++, s, bad, "cudaMalloc");
    blocks.push_back(p);
    void* q = nullptr;
    EXPECT(cudaMallocAsync(&q, bytes, s) == cudaSuccess, "cudaMallocAsync %zu", bytes);
    Verify(q, bytes, seed++, s, bad, "cudaMallocAsync");
    EXPECT(cudaFreeAsync(q, s) == cudaSuccess, "cudaFreeAsync");
  }
  for (void* p : blocks) EXPECT(cudaFree(p) == cudaSuccess, "cudaFree");
  // Double free and a foreign pointer are reported, not crashes.
  EXPECT(cudaFree(blocks[0]) != cudaSuccess, "double cudaFree must fail");
  cudaGetLastError();

  // Driver API through cuGetProcAddress (what frameworks do).
  void* fn_alloc = nullptr;
  void* fn_free = nullptr;
  cudaDriverEntryPointQueryResult q;
  EXPECT(cudaGetDriverEntryPointByVersion("cuMemAlloc", &fn_alloc, 12000, cudaEnableDefault, &q) ==
             cudaSuccess, "entry point cuMemAlloc");
  EXPECT(cudaGetDriverEntryPointByVersion("cuMemFree", &fn_free, 12000, cudaEnableDefault, &q) ==
             cudaSuccess, "entry point cuMemFree");
  if (fn_alloc && fn_free) {
    CUdeviceptr d = 0;
    auto alloc = reinterpret_cast<CUresult (*)(CUdeviceptr*, size_t)>(fn_alloc);
    auto dfree = reinterpret_cast<CUresult (*)(CUdeviceptr)>(fn_free);
    EXPECT(alloc(&d, 8 << 20) == CUDA_SUCCESS, "cuMemAlloc via entry point");
    Verify(reinterpret_cast<void*>(d), 8 << 20, seed++, s, bad, "cuMemAlloc(entry point)");
    EXPECT(dfree(d) == CUDA_SUCCESS, "cuMemFree via entry point");
  }
  size_t fr = 0, tot = 0;
  EXPECT(cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr <= tot && tot > 0, "cudaMemGetInfo");
  cudaFree(bad);
  cudaStreamDestroy(s);
  if (failures) {
    std::fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  std::printf("preload program: all checks passed\n");
  return 0;
}
