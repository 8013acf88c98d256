// graph_program.cu — a CUDA program for the tracker's graph and NVTX support, run by
// graph_check.py under the preload with SPILLWAY_TRACK=1 and SPILLWAY_TRACE. It allocates
// buffers with cudaMalloc, captures a graph on a stream (kernels writing A, reading A into B, a
// kernel on a second stream joined through events writing C, a memset of F), builds a second
// graph with an explicit kernel node writing E, launches each graph N times, checks the
// results (B, E, F read back; A and C are not, D is never touched). NVTX: a pushed range around the
// graph work and an instant mark. It prints "N <n>" and "BUF <name> <address>" lines for the
// checker, then frees all. Exit codes: 0 ran (the checker judges the trace), 1 CUDA failure or
// wrong results, 77 no GPU.
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

__global__ void Fill(float* p, size_t n, float v) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    p[i] = v;
}
__global__ void Twice(const float* in, float* out, size_t n) {
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
    out[i] = 2.0f * in[i];
}

#define CHECK(call)                                                           \
  do {                                                                        \
    cudaError_t e_ = (call);                                                  \
    if (e_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
                   cudaGetErrorString(e_));                                   \
      return 1;                                                               \
    }                                                                         \
  } while (0)

int main(int argc, char** argv) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    std::printf("SKIPPED: no CUDA GPU on this machine\n");
    return 77;
  }
  const int kLaunches = argc > 1 ? std::atoi(argv[1]) : 5;
  const char* inj = std::getenv("NVTX_INJECTION64_PATH");
  std::printf("NVTX_INJECTION64_PATH=%s\n", inj ? inj : "(unset)");
  constexpr size_t kN = 1 << 20;  // floats per buffer (4 MiB)
  const char* names[] = {"A", "B", "C", "D", "E", "F"};
  float* buf[6] = {};
  for (int i = 0; i < 6; ++i) CHECK(cudaMalloc(&buf[i], kN * sizeof(float)));
  float *a = buf[0], *b = buf[1], *c = buf[2], *e = buf[4], *f = buf[5];
  // After the first allocation: the tracker (and its NVTX callbacks) run from then on.
  nvtxRangePushA("spillway graph work");

  cudaStream_t s1, s2;
  CHECK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
  CHECK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
  cudaEvent_t fork, join;
  CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));

  // Graph 1, captured: A = 1, B = 2A on s1; C = 3 on s2 (joined); F = 0 (memset).
  cudaGraph_t g1;
  CHECK(cudaStreamBeginCapture(s1, cudaStreamCaptureModeGlobal));
  Fill<<<256, 256, 0, s1>>>(a, kN, 1.0f);
  Twice<<<256, 256, 0, s1>>>(a, b, kN);
  CHECK(cudaEventRecord(fork, s1));
  CHECK(cudaStreamWaitEvent(s2, fork, 0));
  Fill<<<256, 256, 0, s2>>>(c, kN, 3.0f);
  CHECK(cudaEventRecord(join, s2));
  CHECK(cudaStreamWaitEvent(s1, join, 0));
  CHECK(cudaMemsetAsync(f, 0, kN * sizeof(float), s1));
  CHECK(cudaStreamEndCapture(s1, &g1));
  cudaGraphExec_t x1;
  CHECK(cudaGraphInstantiate(&x1, g1, 0));

  // Graph 2, explicit: one kernel node, E = 5.
  cudaGraph_t g2;
  CHECK(cudaGraphCreate(&g2, 0));
  size_t n = kN;
  float v = 5.0f;
  void* args[] = {&e, &n, &v};
  cudaKernelNodeParams kp = {};
  kp.func = reinterpret_cast<void*>(Fill);
  kp.gridDim = dim3(256);
  kp.blockDim = dim3(256);
  kp.kernelParams = args;
  cudaGraphNode_t node;
  CHECK(cudaGraphAddKernelNode(&node, g2, nullptr, 0, &kp));
  cudaGraphExec_t x2;
  CHECK(cudaGraphInstantiate(&x2, g2, 0));

  for (int i = 0; i < kLaunches; ++i) {
    CHECK(cudaGraphLaunch(x1, s1));
    CHECK(cudaGraphLaunch(x2, s1));
  }
  CHECK(cudaStreamSynchronize(s1));
  nvtxRangePop();
  nvtxMarkA("spillway graph done");

  // Results (these copies read B, E, F once more; A, C and D are not read, so that their
  // access counts are exactly what the graphs did).
  int bad = 0;
  std::vector<float> h(kN);
  const struct {
    float* p;
    float want;
    const char* name;
  } checks[] = {{b, 2.0f, "B"}, {e, 5.0f, "E"}, {f, 0.0f, "F"}};
  for (const auto& k : checks) {
    CHECK(cudaMemcpy(h.data(), k.p, kN * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < kN; ++i)
      if (h[i] != k.want) {
        std::fprintf(stderr, "FAIL: %s[%zu] = %g, want %g\n", k.name, i, h[i], k.want);
        ++bad;
        break;
      }
  }
  std::printf("N %d\n", kLaunches);
  for (int i = 0; i < 6; ++i)
    std::printf("BUF %s 0x%llx\n", names[i],
                static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(buf[i])));
  std::fflush(stdout);

  CHECK(cudaGraphExecDestroy(x1));
  CHECK(cudaGraphExecDestroy(x2));
  CHECK(cudaGraphDestroy(g1));
  CHECK(cudaGraphDestroy(g2));
  CHECK(cudaEventDestroy(fork));
  CHECK(cudaEventDestroy(join));
  CHECK(cudaStreamDestroy(s1));
  CHECK(cudaStreamDestroy(s2));
  for (float* p : buf) CHECK(cudaFree(p));
  return bad == 0 ? 0 : 1;
}
