// cuda_backend_test.cu — the allocator on the real GPU (CudaBackend): kernels write and check
// every byte of blocks of many sizes on several streams, stream-ordered reuse, the cudaFree
// fence against a running kernel, budget and out-of-memory, and bad input. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <vector>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "allocator/prim/cuda_backend.h"
#include "pattern_kernels.cuh"

namespace spillway {
namespace {

using test::Check;
using test::Fill;
// Spins for about `ns` nanoseconds, then writes `value` into *flag.
__global__ void SpinThenWrite(int* flag, int value, unsigned long long ns) {
  unsigned long long start;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  unsigned long long now = start;
  while (now - start < ns) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  *flag = value;
}

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
      GTEST_SKIP() << "no CUDA GPU on this machine: GPU test skipped";
    std::string err;
    auto backend = prim::CudaBackend::Create(&err);
    ASSERT_TRUE(backend) << err;
    alloc_ = std::make_unique<Allocator>(std::move(backend), Config{});
    ASSERT_EQ(cudaMalloc(&bad_, sizeof(unsigned long long)), cudaSuccess);
  }
  void TearDown() override {
    if (bad_) cudaFree(bad_);
  }
  // Fills on `s`, checks on `s`, returns mismatching bytes.
  unsigned long long FillCheck(void* p, size_t n, unsigned seed, cudaStream_t s) {
    cudaMemsetAsync(bad_, 0, sizeof *bad_, s);
    Fill<<<1024, 256, 0, s>>>(static_cast<unsigned char*>(p), n, seed);
    Check<<<1024, 256, 0, s>>>(static_cast<unsigned char*>(p), n, seed, bad_);
    unsigned long long h = ~0ull;
    cudaMemcpyAsync(&h, bad_, sizeof h, cudaMemcpyDeviceToHost, s);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    return h;
  }
  std::unique_ptr<Allocator> alloc_;
  unsigned long long* bad_ = nullptr;
};

TEST_F(GpuTest, EveryByteOfManySizes) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  const size_t sizes[] = {1, 511, 512, 4097, 65536, 262144, 262145, 1 << 20, (2 << 20) + 1,
                          16 << 20, 256 << 20};
  std::vector<void*> live;
  unsigned seed = 1;
  for (size_t n : sizes) {
    void* p = nullptr;
    ASSERT_EQ(alloc_->allocate(&p, n, 0, s, false, trace::Kind::kApiMalloc), SPILLWAY_OK)
        << LastError();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 512, 0u);
    EXPECT_EQ(FillCheck(p, n, seed++, s), 0u) << "size " << n;
    live.push_back(p);
  }
  // Earlier blocks are intact after later ones were written.
  seed = 1;
  for (size_t i = 0; i < live.size(); ++i) {
    cudaMemsetAsync(bad_, 0, sizeof *bad_, s);
    Check<<<1024, 256, 0, s>>>(static_cast<unsigned char*>(live[i]), sizes[i], seed++, bad_);
    unsigned long long h = ~0ull;
    cudaMemcpyAsync(&h, bad_, sizeof h, cudaMemcpyDeviceToHost, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(h, 0u) << "block " << i << " was overwritten";
  }
  for (void* p : live)
    EXPECT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree), SPILLWAY_OK);
  cudaStreamDestroy(s);
}

TEST_F(GpuTest, RandomizedSeveralStreams) {
  cudaStream_t st[3];
  for (auto& s : st) ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  std::mt19937 rng(7);
  struct Block {
    void* p;
    size_t n;
    int s;
    unsigned seed;
  };
  std::vector<Block> live;
  for (int op = 0; op < 600; ++op) {
    if (live.empty() || rng() % 100 < 55) {
      size_t n = 1 + rng() % (rng() % 2 ? 300000 : (24 << 20));
      int s = static_cast<int>(rng() % 3);
      void* p = nullptr;
      ASSERT_EQ(alloc_->allocate(&p, n, 0, st[s], false, trace::Kind::kApiMalloc), SPILLWAY_OK)
          << LastError();
      unsigned seed = static_cast<unsigned>(op);
      Fill<<<256, 256, 0, st[s]>>>(static_cast<unsigned char*>(p), n, seed);
      live.push_back({p, n, s, seed});
    } else {
      size_t k = rng() % live.size();
      Block b = live[k];
      cudaMemsetAsync(bad_, 0, sizeof *bad_, st[b.s]);
      Check<<<256, 256, 0, st[b.s]>>>(static_cast<unsigned char*>(b.p), b.n, b.seed, bad_);
      unsigned long long h = ~0ull;
      cudaMemcpyAsync(&h, bad_, sizeof h, cudaMemcpyDeviceToHost, st[b.s]);
      ASSERT_EQ(cudaStreamSynchronize(st[b.s]), cudaSuccess);
      ASSERT_EQ(h, 0u) << "block of " << b.n << " bytes corrupted";
      ASSERT_EQ(alloc_->free(b.p, FreeMode::kStreamOrdered, st[b.s], trace::Kind::kApiFree),
                SPILLWAY_OK);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (auto& b : live) alloc_->free(b.p, FreeMode::kStreamOrdered, st[b.s], trace::Kind::kApiFree);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (auto& s : st) cudaStreamDestroy(s);
}

TEST_F(GpuTest, StreamOrderedReuseIsImmediate) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  for (size_t n : {size_t{4096}, size_t{8} << 20}) {
    void *a = nullptr, *b = nullptr;
    ASSERT_EQ(alloc_->allocate(&a, n, 0, s, false, trace::Kind::kApiMalloc), SPILLWAY_OK);
    ASSERT_EQ(alloc_->free(a, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree), SPILLWAY_OK);
    ASSERT_EQ(alloc_->allocate(&b, n, 0, s, false, trace::Kind::kApiMalloc), SPILLWAY_OK);
    EXPECT_EQ(a, b) << "same stream, same size: the freed block comes back at once";
    alloc_->free(b, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree);
  }
  cudaStreamDestroy(s);
}

TEST_F(GpuTest, CudaFreeFenceWaitsForRunningKernel) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  void* warm = nullptr;  // make the allocator know stream s
  ASSERT_EQ(alloc_->allocate(&warm, 4096, 0, s, false, trace::Kind::kApiMalloc), SPILLWAY_OK);
  void* a = nullptr;
  const size_t n = 4 << 20;
  ASSERT_EQ(alloc_->allocate(&a, n, 0, nullptr, true, trace::Kind::kApiMallocSync), SPILLWAY_OK);
  // A kernel on s that writes into the block after 300 ms.
  SpinThenWrite<<<1, 1, 0, s>>>(static_cast<int*>(a), 42, 300000000ull);
  ASSERT_EQ(alloc_->free(a, FreeMode::kSynchronous, nullptr, trace::Kind::kApiFreeSync),
            SPILLWAY_OK);
  void* b = nullptr;
  ASSERT_EQ(alloc_->allocate(&b, n, 0, nullptr, true, trace::Kind::kApiMallocSync), SPILLWAY_OK);
  EXPECT_NE(a, b) << "a block freed with cudaFree semantics was reused while a kernel still ran";
  EXPECT_EQ(cudaStreamQuery(s), cudaErrorNotReady) << "the kernel should still be running";
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  void* c = nullptr;
  ASSERT_EQ(alloc_->allocate(&c, n, 0, nullptr, true, trace::Kind::kApiMallocSync), SPILLWAY_OK);
  EXPECT_EQ(c, a) << "after the stream finished, the block is reused";
  alloc_->free(b, FreeMode::kSynchronous, nullptr, trace::Kind::kApiFreeSync);
  alloc_->free(c, FreeMode::kSynchronous, nullptr, trace::Kind::kApiFreeSync);
  alloc_->free(warm, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree);
  cudaStreamDestroy(s);
}

TEST_F(GpuTest, BudgetAndOutOfMemory) {
  ASSERT_EQ(alloc_->set_budget(0, 256 << 20), SPILLWAY_OK);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  std::vector<void*> live;
  for (int i = 0; i < 7; ++i) {
    void* p = nullptr;
    ASSERT_EQ(alloc_->allocate(&p, 32 << 20, 0, s, false, trace::Kind::kApiMalloc), SPILLWAY_OK)
        << LastError();
    EXPECT_EQ(FillCheck(p, 32 << 20, 100 + i, s), 0u);
    live.push_back(p);
  }
  void* p = nullptr;
  EXPECT_EQ(alloc_->allocate(&p, 64 << 20, 0, s, false, trace::Kind::kApiMalloc),
            SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(LastError()).find("out of memory"), std::string::npos) << LastError();
  spillway_stats st;
  ASSERT_EQ(alloc_->stats(0, &st), SPILLWAY_OK);
  EXPECT_LE(st.reserved_bytes, 256u << 20);
  // Live blocks are intact after the failure.
  cudaMemsetAsync(bad_, 0, sizeof *bad_, s);
  Check<<<1024, 256, 0, s>>>(static_cast<unsigned char*>(live[0]), 32 << 20, 100, bad_);
  unsigned long long h = ~0ull;
  cudaMemcpyAsync(&h, bad_, sizeof h, cudaMemcpyDeviceToHost, s);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(h, 0u);
  for (void* q : live) alloc_->free(q, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree);
  ASSERT_EQ(alloc_->allocate(&p, 64 << 20, 0, s, false, trace::Kind::kApiMalloc), SPILLWAY_OK);
  alloc_->free(p, FreeMode::kStreamOrdered, s, trace::Kind::kApiFree);
  ASSERT_EQ(alloc_->trim(0, 0), SPILLWAY_OK);
  ASSERT_EQ(alloc_->stats(0, &st), SPILLWAY_OK);
  EXPECT_EQ(st.reserved_bytes, 0u);
  cudaStreamDestroy(s);
}

TEST_F(GpuTest, BadInput) {
  void* p = nullptr;
  EXPECT_EQ(alloc_->allocate(&p, 0, 0, nullptr, false, trace::Kind::kApiMalloc),
            SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(alloc_->allocate(&p, size_t{1} << 62, 0, nullptr, false, trace::Kind::kApiMalloc),
            SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(alloc_->allocate(&p, 64, 99, nullptr, false, trace::Kind::kApiMalloc),
            SPILLWAY_ERR_INVALID_VALUE);
  void* foreign = nullptr;
  ASSERT_EQ(cudaMalloc(&foreign, 1 << 20), cudaSuccess);
  EXPECT_EQ(alloc_->free(foreign, FreeMode::kStreamOrdered, nullptr, trace::Kind::kApiFree),
            SPILLWAY_ERR_NOT_OWNED);
  cudaFree(foreign);
  ASSERT_EQ(alloc_->allocate(&p, 8 << 20, 0, nullptr, false, trace::Kind::kApiMalloc), SPILLWAY_OK);
  ASSERT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, nullptr, trace::Kind::kApiFree), SPILLWAY_OK);
  EXPECT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, nullptr, trace::Kind::kApiFree),
            SPILLWAY_ERR_DOUBLE_FREE);
}

}  // namespace
}  // namespace spillway
