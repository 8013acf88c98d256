// sim_backend_test.cpp — the CPU simulator backend (allocator/prim/sim_backend.h) on its own:
// VA reservation, physical create/map/set_access/unmap semantics (data lives in the physical
// handle and survives an unmap and a remap at another address; an unmapped range faults),
// stream FIFO order, events (record behind a slow task, query, synchronize, stream_wait_event
// ordering two streams), the device-memory limit (create fails with code 2, the CUDA
// out-of-memory value) and the fail_next_creates injection hook.
#include "allocator/prim/sim_backend.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace spillway::prim {
namespace {

constexpr std::size_t kGran = std::size_t{2} << 20;

SimOptions Small(std::size_t mem = std::size_t{64} << 20) {
  SimOptions o;
  o.devices = 2;
  o.device_memory = mem;
  o.granularity = kGran;
  return o;
}

TEST(SimBackend, BasicInfo) {
  SimBackend b(Small());
  EXPECT_STREQ(b.name(), "sim");
  EXPECT_EQ(b.device_count(), 2);
  EXPECT_EQ(b.granularity({LocationKind::kDevice, 0}), kGran);
  MemInfo mi;
  ASSERT_TRUE(b.mem_info(0, &mi).ok());
  EXPECT_EQ(mi.total, std::size_t{64} << 20);
  EXPECT_EQ(mi.free, mi.total);
  EXPECT_FALSE(b.mem_info(2, &mi).ok());
  EXPECT_FALSE(b.mem_info(-1, &mi).ok());
}

TEST(SimBackend, ReserveIsAligned) {
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 8 * kGran, kGran, &va).ok());
  EXPECT_NE(va, 0u);
  EXPECT_EQ(va % kGran, 0u);
  EXPECT_TRUE(b.release_va(va, 8 * kGran).ok());
}

TEST(SimBackend, MapWriteUnmapRemapKeepsData) {
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 4 * kGran, kGran, &va).ok());
  PhysHandle h = 0;
  ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h).ok());
  MemInfo mi;
  ASSERT_TRUE(b.mem_info(0, &mi).ok());
  EXPECT_EQ(mi.free, mi.total - kGran);

  ASSERT_TRUE(b.map(va, kGran, h).ok());
  ASSERT_TRUE(b.set_access(0, va, kGran).ok());
  auto* p = reinterpret_cast<unsigned char*>(va);
  for (std::size_t i = 0; i < kGran; i += 4096) p[i] = static_cast<unsigned char>(i / 4096 + 1);
  p[kGran - 1] = 0x5a;

  ASSERT_TRUE(b.unmap(va, kGran).ok());
  // Remap the same handle at another VA (third page of the reservation): same bytes.
  const std::uintptr_t va2 = va + 2 * kGran;
  ASSERT_TRUE(b.map(va2, kGran, h).ok());
  ASSERT_TRUE(b.set_access(0, va2, kGran).ok());
  auto* q = reinterpret_cast<unsigned char*>(va2);
  for (std::size_t i = 0; i < kGran; i += 4096)
    ASSERT_EQ(q[i], static_cast<unsigned char>(i / 4096 + 1)) << "offset " << i;
  EXPECT_EQ(q[kGran - 1], 0x5a);

  ASSERT_TRUE(b.unmap(va2, kGran).ok());
  ASSERT_TRUE(b.release(h).ok());
  ASSERT_TRUE(b.mem_info(0, &mi).ok());
  EXPECT_EQ(mi.free, mi.total);
  EXPECT_FALSE(b.release(h).ok()) << "releasing a handle twice must fail";
  EXPECT_TRUE(b.release_va(va, 4 * kGran).ok());
}

TEST(SimBackend, MapRejectsUnknownHandleAndWrongSize) {
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 4 * kGran, kGran, &va).ok());
  EXPECT_FALSE(b.map(va, kGran, 12345).ok());
  PhysHandle h = 0;
  ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h).ok());
  EXPECT_FALSE(b.map(va, 2 * kGran, h).ok());
  PhysHandle bad = 0;
  EXPECT_FALSE(b.create({LocationKind::kDevice, 0}, kGran + 4096, &bad).ok());
  EXPECT_FALSE(b.create({LocationKind::kDevice, 0}, 0, &bad).ok());
  EXPECT_FALSE(b.create({LocationKind::kDevice, 5}, kGran, &bad).ok());
  EXPECT_TRUE(b.release(h).ok());
  EXPECT_TRUE(b.release_va(va, 4 * kGran).ok());
}

TEST(SimBackend, TwoHandlesAreDistinctMemory) {
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 2 * kGran, kGran, &va).ok());
  PhysHandle h1 = 0, h2 = 0;
  ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h1).ok());
  ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h2).ok());
  ASSERT_TRUE(b.map(va, kGran, h1).ok());
  ASSERT_TRUE(b.map(va + kGran, kGran, h2).ok());
  ASSERT_TRUE(b.set_access(0, va, 2 * kGran).ok());
  std::memset(reinterpret_cast<void*>(va), 0x11, kGran);
  std::memset(reinterpret_cast<void*>(va + kGran), 0x22, kGran);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(va)[kGran - 1], 0x11);
  EXPECT_EQ(reinterpret_cast<unsigned char*>(va + kGran)[0], 0x22);
  b.unmap(va, kGran);
  b.unmap(va + kGran, kGran);
  b.release(h1);
  b.release(h2);
  b.release_va(va, 2 * kGran);
}

using SimBackendDeathTest = ::testing::Test;

TEST(SimBackendDeathTest, WriteToReservedButUnmappedFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 2 * kGran, kGran, &va).ok());
  volatile char* p = reinterpret_cast<volatile char*>(va + 100);
  EXPECT_DEATH({ *p = 1; }, "");
  b.release_va(va, 2 * kGran);
}

TEST(SimBackendDeathTest, WriteAfterUnmapFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 2 * kGran, kGran, &va).ok());
  PhysHandle h = 0;
  ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h).ok());
  ASSERT_TRUE(b.map(va, kGran, h).ok());
  ASSERT_TRUE(b.set_access(0, va, kGran).ok());
  volatile char* p = reinterpret_cast<volatile char*>(va + 4096);
  *p = 7;  // mapped: fine
  EXPECT_EQ(*p, 7);
  ASSERT_TRUE(b.unmap(va, kGran).ok());
  EXPECT_DEATH({ *p = 1; }, "");
  b.release(h);
  b.release_va(va, 2 * kGran);
}

TEST(SimBackendDeathTest, MappedWithoutAccessFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, kGran, kGran, &va).ok());
  PhysHandle h = 0;
  ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h).ok());
  ASSERT_TRUE(b.map(va, kGran, h).ok());  // no set_access yet
  volatile char* p = reinterpret_cast<volatile char*>(va);
  EXPECT_DEATH({ *p = 1; }, "");
  b.unmap(va, kGran);
  b.release(h);
  b.release_va(va, kGran);
}

TEST(SimBackend, StreamRunsTasksInOrder) {
  SimBackend b(Small());
  Stream s = b.create_stream();
  std::vector<int> order;
  for (int i = 0; i < 100; ++i) b.enqueue(s, [&order, i] { order.push_back(i); });
  b.synchronize(s);
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
  b.destroy_stream(s);
}

TEST(SimBackend, EventBehindSlowTaskIsNotDoneUntilTaskEnds) {
  SimBackend b(Small());
  Stream s = b.create_stream();
  Event e = nullptr;
  ASSERT_TRUE(b.event_create(0, &e).ok());
  bool done = false;
  ASSERT_TRUE(b.event_query(e, &done).ok());
  EXPECT_TRUE(done) << "a never-recorded event is complete (as in CUDA)";

  std::atomic<bool> release{false}, finished{false};
  b.enqueue(s, [&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    finished = true;
  });
  ASSERT_TRUE(b.event_record(0, e, s).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(b.event_query(e, &done).ok());
  EXPECT_FALSE(done) << "event recorded behind a running task reported complete";
  release = true;
  ASSERT_TRUE(b.event_synchronize(e).ok());
  EXPECT_TRUE(finished.load());
  ASSERT_TRUE(b.event_query(e, &done).ok());
  EXPECT_TRUE(done);
  // Re-recording makes it pending again, and complete after the stream drains.
  std::atomic<bool> release2{false};
  b.enqueue(s, [&] {
    while (!release2.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  ASSERT_TRUE(b.event_record(0, e, s).ok());
  ASSERT_TRUE(b.event_query(e, &done).ok());
  EXPECT_FALSE(done);
  release2 = true;
  b.synchronize(s);
  ASSERT_TRUE(b.event_query(e, &done).ok());
  EXPECT_TRUE(done);
  b.event_destroy(e);
  b.destroy_stream(s);
}

TEST(SimBackend, StreamWaitEventOrdersTwoStreams) {
  SimBackend b(Small());
  Stream s1 = b.create_stream(), s2 = b.create_stream();
  std::atomic<int> step{0};
  int seen_by_s2 = -1;
  Event e = nullptr;
  ASSERT_TRUE(b.event_create(0, &e).ok());
  b.enqueue(s1, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    step = 1;
  });
  ASSERT_TRUE(b.event_record(0, e, s1).ok());
  ASSERT_TRUE(b.stream_wait_event(0, s2, e).ok());
  b.enqueue(s2, [&] { seen_by_s2 = step.load(); });
  b.synchronize(s2);
  EXPECT_EQ(seen_by_s2, 1) << "s2 ran past the event it waits on";

  // Without the wait, s2 does not wait for s1.
  std::atomic<bool> release{false};
  b.enqueue(s1, [&] {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  bool s2_ran = false;
  b.enqueue(s2, [&] { s2_ran = true; });
  b.synchronize(s2);
  EXPECT_TRUE(s2_ran);
  release = true;
  b.synchronize(s1);
  b.event_destroy(e);
}

// CUDA allows destroying an event whose record has not completed yet (cudaEventDestroy returns
// at once; resources are released when the work completes). The allocator relies on that when
// an Arena is destroyed with fences in flight. Run in a child: a use-after-free aborts it.
TEST(SimBackendDeathTest, DestroyingPendingEventIsSafe) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        alarm(10);  // a hang (waiting on freed memory) fails too
        SimBackend b(Small());
        Stream s = b.create_stream();
        Event e = nullptr;
        if (!b.event_create(0, &e).ok()) std::_Exit(3);
        b.enqueue(s, [] { std::this_thread::sleep_for(std::chrono::milliseconds(100)); });
        if (!b.event_record(0, e, s).ok()) std::_Exit(4);
        b.event_destroy(e);  // still pending
        b.synchronize(s);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(SimBackend, CopyAsyncIsStreamOrdered) {
  SimBackend b(Small());
  Stream s = b.create_stream();
  std::vector<char> src(4096, 'a'), dst(4096, 'z');
  b.enqueue(s, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::fill(src.begin(), src.end(), 'b');
  });
  ASSERT_TRUE(b.copy_async(0, dst.data(), src.data(), src.size(), s).ok());
  b.synchronize(s);
  EXPECT_EQ(dst[0], 'b');
  EXPECT_EQ(dst[4095], 'b');
}

TEST(SimBackend, DeviceMemoryLimit) {
  SimBackend b(Small(std::size_t{8} << 20));  // 4 chunks per device
  std::vector<PhysHandle> hs(4);
  for (auto& h : hs) ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &h).ok());
  PhysHandle extra = 0;
  Status s = b.create({LocationKind::kDevice, 0}, kGran, &extra);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code, 2) << s.message;
  EXPECT_NE(s.message.find("out of memory"), std::string::npos) << s.message;
  // The other device has its own memory; host memory is not counted against a device.
  EXPECT_TRUE(b.create({LocationKind::kDevice, 1}, kGran, &extra).ok());
  PhysHandle host = 0;
  EXPECT_TRUE(b.create({LocationKind::kHostNuma, 0}, kGran, &host).ok());
  MemInfo mi;
  ASSERT_TRUE(b.mem_info(0, &mi).ok());
  EXPECT_EQ(mi.free, 0u);
  // Releasing one makes room again.
  ASSERT_TRUE(b.release(hs[0]).ok());
  EXPECT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &hs[0]).ok());
  for (auto h : hs) b.release(h);
  b.release(extra);
  b.release(host);
}

TEST(SimBackend, FailNextCreatesInjection) {
  SimBackend b(Small());
  b.fail_next_creates(2);
  PhysHandle h = 0;
  Status s1 = b.create({LocationKind::kDevice, 0}, kGran, &h);
  Status s2 = b.create({LocationKind::kDevice, 0}, kGran, &h);
  EXPECT_EQ(s1.code, 2);
  EXPECT_EQ(s2.code, 2);
  MemInfo mi;
  ASSERT_TRUE(b.mem_info(0, &mi).ok());
  EXPECT_EQ(mi.free, mi.total) << "a failed create must not count as used";
  Status s3 = b.create({LocationKind::kDevice, 0}, kGran, &h);
  EXPECT_TRUE(s3.ok()) << s3.message;
  b.release(h);
}

// As cuMemSetAccess: one grant may cover several neighbouring mappings; a range with any part
// unmapped is refused (and the hook refuses the next grants).
TEST(SimBackend, AccessCoversMappedRangesOnly) {
  SimBackend b(Small());
  std::uintptr_t va = 0;
  ASSERT_TRUE(b.reserve(0, 8 * kGran, kGran, &va).ok());
  PhysHandle h[3] = {};
  for (PhysHandle& x : h) ASSERT_TRUE(b.create({LocationKind::kDevice, 0}, kGran, &x).ok());
  ASSERT_TRUE(b.map(va, kGran, h[0]).ok());
  ASSERT_TRUE(b.map(va + kGran, kGran, h[1]).ok());
  ASSERT_TRUE(b.map(va + 3 * kGran, kGran, h[2]).ok());  // page 2 left unmapped
  EXPECT_TRUE(b.set_access(0, va, 2 * kGran).ok()) << "two mappings, one grant";
  static_cast<volatile unsigned char*>(reinterpret_cast<void*>(va))[2 * kGran - 1] = 1;
  EXPECT_FALSE(b.set_access(0, va, 4 * kGran).ok()) << "a hole in the range";
  EXPECT_FALSE(b.set_access(0, va + 2 * kGran, kGran).ok()) << "nothing mapped";
  EXPECT_EQ(b.times(Call::kAccess).calls.load(), 1u) << "successful grants are counted";
  b.fail_next_accesses(1);
  EXPECT_FALSE(b.set_access(0, va + 3 * kGran, kGran).ok());
  EXPECT_TRUE(b.set_access(0, va + 3 * kGran, kGran).ok());
  ASSERT_TRUE(b.unmap(va, 2 * kGran).ok());
  ASSERT_TRUE(b.unmap(va + 3 * kGran, kGran).ok());
  for (PhysHandle x : h) b.release(x);
  b.release_va(va, 8 * kGran);
}

}  // namespace
}  // namespace spillway::prim
