// api_test.cpp — the public C API (spillway.h) and the C++ header (spillway.hpp) end to end,
// through the process-wide allocator configured from the environment: SPILLWAY_BACKEND=sim is
// set before the first call, so everything runs on the CPU simulator. Covers the PyTorch
// pluggable-allocator entry points, status codes and messages, stats, budget, trim, summary.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "spillway/spillway.h"
#include "spillway/spillway.hpp"

namespace {

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Before the first call: the global allocator reads its configuration once.
    setenv("SPILLWAY_BACKEND", "sim", 1);
    setenv("SPILLWAY_SIM_DEVICE_MEMORY", "1G", 1);
    unsetenv("SPILLWAY_DEVICE_BUDGET");
    unsetenv("SPILLWAY_TRACE");
  }
};

TEST_F(ApiTest, PluggableAllocatorSignatures) {
  ASSERT_EQ(spillway_device_count(), 1);
  void* p = spillway_malloc(1000, 0, nullptr);
  ASSERT_NE(p, nullptr) << spillway_last_error();
  std::memset(p, 0x5a, 1000);  // simulator memory is host memory
  EXPECT_EQ(spillway_owns(p), 1);
  spillway_free(p, 1000, 0, nullptr);
  EXPECT_EQ(spillway_owns(p), 0);
  EXPECT_EQ(spillway_malloc(0, 0, nullptr), nullptr);  // size 0: no memory, no error
  EXPECT_EQ(spillway_malloc(-5, 0, nullptr), nullptr);
  EXPECT_NE(std::string(spillway_last_error()).find("negative"), std::string::npos);
  EXPECT_EQ(spillway_malloc(64, 7, nullptr), nullptr);  // no device 7
  EXPECT_NE(std::string(spillway_last_error()).find("invalid device"), std::string::npos);
}

TEST_F(ApiTest, StatusCodesAndMessages) {
  void* p = nullptr;
  EXPECT_EQ(spillway_malloc_async(&p, 0, 0, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_malloc_async(&p, std::size_t{1} << 50, 0, nullptr),
            SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(spillway_last_error()).find("exceeds"), std::string::npos);
  ASSERT_EQ(spillway_malloc_sync(&p, 3 << 20, 0), SPILLWAY_OK);
  ASSERT_EQ(spillway_free_sync(p), SPILLWAY_OK);
  EXPECT_EQ(spillway_free_sync(p), SPILLWAY_ERR_DOUBLE_FREE);
  int on_stack = 0;
  EXPECT_EQ(spillway_free_async(&on_stack, nullptr), SPILLWAY_ERR_NOT_OWNED);
  EXPECT_EQ(spillway_free_async(nullptr, nullptr), SPILLWAY_OK);
  EXPECT_STREQ(spillway_status_string(SPILLWAY_ERR_DOUBLE_FREE), "SPILLWAY_ERR_DOUBLE_FREE");
  EXPECT_EQ(spillway_get_stats(0, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_mark("step 1"), SPILLWAY_OK);  // no trace here: checked, not recorded
  EXPECT_EQ(spillway_mark(""), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_mark(nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(std::string(spillway_last_error()).find("label"), std::string::npos);
  // No tracker in this process (SimBackend): pausing it is refused with the reason.
  EXPECT_EQ(spillway_set_tracking(0), SPILLWAY_ERR_CONFIG);
  EXPECT_NE(std::string(spillway_last_error()).find("SPILLWAY_TRACK=1"), std::string::npos);
  EXPECT_EQ(spillway_set_tracking(2), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_NE(std::string(spillway_last_error()).find("0 or 1"), std::string::npos);
}

TEST_F(ApiTest, OffloadCalls) {
  void* p = nullptr;
  ASSERT_EQ(spillway_malloc_async(&p, 12 << 20, 0, nullptr), SPILLWAY_OK);
  std::memset(p, 0x5a, 12 << 20);  // sim device memory is host memory
  spillway_tier t = SPILLWAY_TIER_NVME;
  ASSERT_EQ(spillway_residency(p, &t), SPILLWAY_OK);
  EXPECT_EQ(t, SPILLWAY_TIER_DEVICE);
  ASSERT_EQ(spillway_offload(p, SPILLWAY_TIER_HOST), SPILLWAY_OK) << spillway_last_error();
  ASSERT_EQ(spillway_offload_synchronize(0), SPILLWAY_OK);
  ASSERT_EQ(spillway_residency(p, &t), SPILLWAY_OK);
  EXPECT_EQ(t, SPILLWAY_TIER_HOST);
  spillway_offload_stats os{};
  ASSERT_EQ(spillway_get_offload_stats(0, &os), SPILLWAY_OK);
  EXPECT_GE(os.evictions, 1u);
  EXPECT_GE(os.host_bytes, 10u << 20);
  EXPECT_GE(os.host_pool_bytes, os.host_bytes);
  for (int i = 0; i < (12 << 20); i += 4096) ASSERT_EQ(static_cast<unsigned char*>(p)[i], 0x5a);
  ASSERT_EQ(spillway_prefetch(p, nullptr), SPILLWAY_OK);
  ASSERT_EQ(spillway_offload_synchronize(0), SPILLWAY_OK);
  ASSERT_EQ(spillway_residency(p, &t), SPILLWAY_OK);
  EXPECT_EQ(t, SPILLWAY_TIER_DEVICE);
  for (int i = 0; i < (12 << 20); i += 4096) ASSERT_EQ(static_cast<unsigned char*>(p)[i], 0x5a);
  EXPECT_EQ(spillway_advise(p, SPILLWAY_ADVISE_KEEP_ON_DEVICE), SPILLWAY_OK);
  EXPECT_EQ(spillway_offload(p, SPILLWAY_TIER_HOST), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_advise(p, static_cast<spillway_hint>(5)), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_advise(p, SPILLWAY_ADVISE_NONE), SPILLWAY_OK);
  EXPECT_EQ(spillway_offload(p, static_cast<spillway_tier>(3)), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_offload(p, SPILLWAY_TIER_NVME), SPILLWAY_ERR_CONFIG);
  int on_stack = 0;
  EXPECT_EQ(spillway_offload(&on_stack, SPILLWAY_TIER_HOST), SPILLWAY_ERR_NOT_OWNED);
  EXPECT_EQ(spillway_prefetch(nullptr, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_residency(p, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_get_offload_stats(0, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_get_offload_stats(99, &os), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(spillway_offload_synchronize(-1), SPILLWAY_ERR_INVALID_VALUE);
  ASSERT_EQ(spillway_free_async(p, nullptr), SPILLWAY_OK);
}

TEST_F(ApiTest, StatsBudgetTrimSummary) {
  spillway_stats before{};
  ASSERT_EQ(spillway_get_stats(0, &before), SPILLWAY_OK);
  void* p = nullptr;
  ASSERT_EQ(spillway_malloc_async(&p, 10 << 20, 0, nullptr), SPILLWAY_OK);
  spillway_stats st{};
  ASSERT_EQ(spillway_get_stats(0, &st), SPILLWAY_OK);
  EXPECT_EQ(st.allocated_bytes, before.allocated_bytes + (10u << 20));
  EXPECT_EQ(st.live_blocks, before.live_blocks + 1);
  EXPECT_GE(st.reserved_bytes, st.allocated_bytes);
  EXPECT_EQ(st.granularity_bytes, 2u << 20);
  EXPECT_EQ(spillway_set_budget(0, 1 << 20), SPILLWAY_ERR_INVALID_VALUE);  // below one chunk
  ASSERT_EQ(spillway_set_budget(0, 64 << 20), SPILLWAY_OK);
  void* q = nullptr;
  EXPECT_EQ(spillway_malloc_async(&q, 60 << 20, 0, nullptr), SPILLWAY_ERR_OUT_OF_MEMORY);
  ASSERT_EQ(spillway_free_async(p, nullptr), SPILLWAY_OK);
  ASSERT_EQ(spillway_trim(0, 0), SPILLWAY_OK);
  ASSERT_EQ(spillway_get_stats(0, &st), SPILLWAY_OK);
  EXPECT_EQ(st.budget_bytes, 64u << 20);
  EXPECT_LE(st.reserved_bytes, before.reserved_bytes + (2u << 20));
  ASSERT_EQ(spillway_set_budget(0, 0), SPILLWAY_OK);
  ASSERT_EQ(spillway_reset_peak_stats(0), SPILLWAY_OK);
  ASSERT_EQ(spillway_get_stats(0, &st), SPILLWAY_OK);
  EXPECT_EQ(st.peak_allocated_bytes, st.allocated_bytes);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(spillway_print_summary(fds[1]), SPILLWAY_OK);
  close(fds[1]);
  char buf[4096] = {};
  ASSERT_GT(read(fds[0], buf, sizeof buf - 1), 0);
  close(fds[0]);
  EXPECT_NE(std::string(buf).find("spillway summary (backend sim)"), std::string::npos) << buf;
  EXPECT_NE(std::string(buf).find("fragmentation"), std::string::npos);
}

TEST_F(ApiTest, CppHeader) {
  spillway::DeviceResource r(0);
  void* p = r.allocate(4096);
  std::memset(p, 1, 4096);
  r.deallocate(p);
  try {
    r.deallocate(p);
    FAIL() << "double free must throw";
  } catch (const spillway::Error& e) {
    EXPECT_EQ(e.status(), SPILLWAY_ERR_DOUBLE_FREE);
    EXPECT_NE(std::string(e.what()).find("double free"), std::string::npos) << e.what();
  }
  EXPECT_THROW(r.allocate(0), spillway::Error);
  const std::uint64_t live = r.stats().live_blocks;
  {
    spillway::DeviceBuffer a(1 << 20);
    spillway::DeviceBuffer b(std::move(a));
    EXPECT_EQ(a.data(), nullptr);
    ASSERT_NE(b.data(), nullptr);
    std::memset(b.data(), 2, b.size());
    EXPECT_EQ(r.stats().live_blocks, live + 1);
  }
  EXPECT_EQ(r.stats().live_blocks, live);  // freed by the destructor
}

}  // namespace
