// offload_test.cu — the pager on the real GPU: a kernel reads (and writes) a block evicted to
// pinned host memory through the block's own address; blocks come back byte for byte; the NVMe
// tier round trip; automatic eviction under a budget. Skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "allocator/allocator.h"
#include "allocator/error.h"
#include "allocator/prim/cuda_backend.h"
#include "offload/nvme_store.h"
#include "offload/pager.h"
#include "pattern_kernels.cuh"

namespace spillway {
namespace {

using test::Check;
using test::Fill;

constexpr size_t kMiB = size_t{1} << 20;

class OffloadGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
      GTEST_SKIP() << "no CUDA GPU on this machine: GPU test skipped";
    ASSERT_EQ(cudaMalloc(&bad_, sizeof(unsigned long long)), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    if (s_) cudaStreamSynchronize(s_);
    alloc_.reset();
    if (bad_) cudaFree(bad_);
    if (s_) cudaStreamDestroy(s_);
  }
  void Make(Config cfg) {
    std::string err;
    auto backend = prim::CudaBackend::Create(&err);
    ASSERT_TRUE(backend) << err;
    alloc_ = std::make_unique<Allocator>(std::move(backend), cfg);
  }
  offload::Pager* Pager() {
    offload::Pager* pg = nullptr;
    EXPECT_EQ(alloc_->pager(0, &pg), SPILLWAY_OK) << LastError();
    return pg;
  }
  void* Alloc(size_t n) {
    void* p = nullptr;
    EXPECT_EQ(alloc_->allocate(&p, n, 0, s_, false, trace::Kind::kApiMalloc), SPILLWAY_OK)
        << LastError();
    return p;
  }
  unsigned long long CheckOn(void* p, size_t n, unsigned seed) {
    cudaMemsetAsync(bad_, 0, sizeof *bad_, s_);
    Check<<<1024, 256, 0, s_>>>(static_cast<unsigned char*>(p), n, seed, bad_);
    unsigned long long h = ~0ull;
    cudaMemcpyAsync(&h, bad_, sizeof h, cudaMemcpyDeviceToHost, s_);
    EXPECT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    return h;
  }
  std::unique_ptr<Allocator> alloc_;
  unsigned long long* bad_ = nullptr;
  cudaStream_t s_ = nullptr;
};

TEST_F(OffloadGpu, KernelReadsAndWritesAnEvictedBlock) {
  Config cfg;
  cfg.host_limit_bytes = 1024 * kMiB;
  Make(cfg);
  void* pad = Alloc(3 * kMiB + 512);  // the block below starts inside a page
  const size_t n = 64 * kMiB + 4096;
  void* p = Alloc(n);
  Fill<<<1024, 256, 0, s_>>>(static_cast<unsigned char*>(p), n, 11);
  offload::Pager* pg = Pager();
  ASSERT_NE(pg, nullptr);
  ASSERT_EQ(pg->offload(reinterpret_cast<uintptr_t>(p), trace::kTierHost, true), SPILLWAY_OK)
      << LastError();
  ASSERT_EQ(pg->residency(reinterpret_cast<uintptr_t>(p)), offload::Residency::kHost);
  EXPECT_GE(pg->host_bytes(), 62 * kMiB);
  EXPECT_EQ(CheckOn(p, n, 11), 0u) << "a kernel read the evicted block wrong";
  // A kernel writes the block while it is on the host; the data comes back with it.
  Fill<<<1024, 256, 0, s_>>>(static_cast<unsigned char*>(p), n, 12);
  EXPECT_EQ(CheckOn(p, n, 12), 0u);
  ASSERT_EQ(pg->prefetch(reinterpret_cast<uintptr_t>(p), s_), SPILLWAY_OK) << LastError();
  EXPECT_EQ(pg->residency(reinterpret_cast<uintptr_t>(p)), offload::Residency::kDevice);
  EXPECT_EQ(CheckOn(p, n, 12), 0u) << "the block came back wrong";
  ASSERT_EQ(pg->synchronize(), SPILLWAY_OK);
  EXPECT_EQ(pg->host_pool().in_use_bytes(), 0u);
  EXPECT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, s_, trace::Kind::kApiFree), SPILLWAY_OK);
  EXPECT_EQ(alloc_->free(pad, FreeMode::kStreamOrdered, s_, trace::Kind::kApiFree), SPILLWAY_OK);
}

// SPILLWAY_OFFLOAD_COPY=kernel: evictions are written to the host by Spillway's copy kernel
// (not the copy engine); blocks of several sizes and offsets keep every byte there and back.
TEST_F(OffloadGpu, EvictionByKernelKeepsEveryByte) {
  Config cfg;
  cfg.host_limit_bytes = 1024 * kMiB;
  cfg.offload_copy_kernel = true;
  Make(cfg);
  auto* be = dynamic_cast<prim::CudaBackend*>(&alloc_->backend());
  ASSERT_NE(be, nullptr);
  void* pad = Alloc(5 * kMiB + 4096);  // the blocks below start inside pages
  offload::Pager* pg = Pager();
  ASSERT_NE(pg, nullptr);
  const size_t sizes[] = {6 * kMiB + 512, 40 * kMiB, 129 * kMiB + 4096};
  void* ps[3] = {};
  for (int i = 0; i < 3; ++i) {
    ps[i] = Alloc(sizes[i]);
    Fill<<<1024, 256, 0, s_>>>(static_cast<unsigned char*>(ps[i]), sizes[i], 30u + i);
  }
  const std::uint64_t before = be->kernel_copy_count();
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(pg->offload(reinterpret_cast<uintptr_t>(ps[i]), trace::kTierHost, true), SPILLWAY_OK)
        << LastError();
  EXPECT_GT(be->kernel_copy_count(), before) << "the evictions went through the copy kernel";
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(pg->residency(reinterpret_cast<uintptr_t>(ps[i])), offload::Residency::kHost);
    EXPECT_EQ(CheckOn(ps[i], sizes[i], 30u + i), 0u) << "block " << i << " on the host";
    ASSERT_EQ(pg->prefetch(reinterpret_cast<uintptr_t>(ps[i]), s_), SPILLWAY_OK) << LastError();
    EXPECT_EQ(CheckOn(ps[i], sizes[i], 30u + i), 0u) << "block " << i << " back";
  }
  ASSERT_EQ(pg->synchronize(), SPILLWAY_OK);
  for (void* p : ps)
    EXPECT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, s_, trace::Kind::kApiFree), SPILLWAY_OK);
  EXPECT_EQ(alloc_->free(pad, FreeMode::kStreamOrdered, s_, trace::Kind::kApiFree), SPILLWAY_OK);
}

TEST_F(OffloadGpu, NvmeRoundTrip) {
  const char* env = std::getenv("SPILLWAY_TEST_NVME_DIR");
  std::string dir = env && *env ? env : "/tmp";
  offload::NvmeOptions o;
  o.dir = dir;
  std::string err;
  if (offload::NvmeStore::Open(o, &err) == nullptr)
    GTEST_SKIP() << "no O_DIRECT io_uring file in " << dir << ": " << err;
  Config cfg;
  cfg.host_limit_bytes = 1024 * kMiB;
  cfg.nvme_path = dir;
  cfg.nvme_verify = true;
  Make(cfg);
  const size_t n = 256 * kMiB;
  void* p = Alloc(n);
  Fill<<<1024, 256, 0, s_>>>(static_cast<unsigned char*>(p), n, 21);
  offload::Pager* pg = Pager();
  ASSERT_EQ(pg->offload(reinterpret_cast<uintptr_t>(p), trace::kTierNvme, true), SPILLWAY_OK)
      << LastError();
  EXPECT_EQ(pg->residency(reinterpret_cast<uintptr_t>(p)), offload::Residency::kNvme);
  EXPECT_EQ(pg->host_bytes(), 0u);
  ASSERT_EQ(pg->prefetch(reinterpret_cast<uintptr_t>(p), s_), SPILLWAY_OK) << LastError();
  EXPECT_EQ(CheckOn(p, n, 21), 0u);
  EXPECT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, s_, trace::Kind::kApiFree), SPILLWAY_OK);
}

TEST_F(OffloadGpu, BudgetHeldByAutomaticEviction) {
  Config cfg;
  cfg.budget_bytes = 256 * kMiB;
  cfg.offload = true;
  cfg.host_limit_bytes = 2048 * kMiB;
  Make(cfg);
  std::vector<void*> blocks;
  for (unsigned i = 0; i < 12; ++i) {  // 768 MiB: three times the budget
    void* p = Alloc(64 * kMiB);
    ASSERT_NE(p, nullptr);
    Fill<<<1024, 256, 0, s_>>>(static_cast<unsigned char*>(p), 64 * kMiB, 100 + i);
    blocks.push_back(p);
    spillway_stats st{};
    alloc_->stats(0, &st);
    EXPECT_LE(st.reserved_bytes, 256 * kMiB);
  }
  offload::Pager* pg = alloc_->pager_if_any(0);
  ASSERT_NE(pg, nullptr);
  EXPECT_GT(pg->counters().evictions.load(), 0u);
  for (unsigned i = 0; i < blocks.size(); ++i)  // wherever they are, kernels read them right
    EXPECT_EQ(CheckOn(blocks[i], 64 * kMiB, 100 + i), 0u) << "block " << i;
  for (unsigned i = 0; i < blocks.size(); ++i) {
    ASSERT_EQ(pg->prefetch(reinterpret_cast<uintptr_t>(blocks[i]), s_), SPILLWAY_OK) << LastError();
    EXPECT_EQ(CheckOn(blocks[i], 64 * kMiB, 100 + i), 0u) << "block " << i << " after prefetch";
  }
  for (void* p : blocks)
    EXPECT_EQ(alloc_->free(p, FreeMode::kStreamOrdered, s_, trace::Kind::kApiFree), SPILLWAY_OK);
}

}  // namespace
}  // namespace spillway
