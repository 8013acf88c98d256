// bad_input_test.cpp — misuse must give the documented status and a message, never a crash or
// a state change: size 0, absurd sizes (SIZE_MAX, 1<<62, more than the device), double frees
// of small and large blocks, pointers inside a live block, foreign pointers (heap, stack),
// invalid devices, NULL out-pointers. Configuration: ParseBytes accepted/rejected forms,
// ParseConfig's rejection of malformed SPILLWAY_* values with a message naming the variable and
// the expected form, and ResolveBudget of a percentage.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "allocator/config.h"
#include "test_util.h"

namespace spillway::test {
namespace {

void ExpectSameStats(const spillway_stats& a, const spillway_stats& b) {
  EXPECT_EQ(a.allocated_bytes, b.allocated_bytes);
  EXPECT_EQ(a.peak_allocated_bytes, b.peak_allocated_bytes);
  EXPECT_EQ(a.reserved_bytes, b.reserved_bytes);
  EXPECT_EQ(a.peak_reserved_bytes, b.peak_reserved_bytes);
  EXPECT_EQ(a.internal_waste_bytes, b.internal_waste_bytes);
  EXPECT_EQ(a.live_blocks, b.live_blocks);
  EXPECT_EQ(a.alloc_count, b.alloc_count);
  EXPECT_EQ(a.free_count, b.free_count);
  EXPECT_EQ(a.chunk_create_count, b.chunk_create_count);
  EXPECT_EQ(a.chunk_release_count, b.chunk_release_count);
  EXPECT_EQ(a.map_count, b.map_count);
  EXPECT_EQ(a.unmap_count, b.unmap_count);
  EXPECT_EQ(a.budget_bytes, b.budget_bytes);
}

TEST(BadInput, SizeZero) {
  SimAlloc a;
  void* p = reinterpret_cast<void*>(0x1);
  ClearError();
  EXPECT_EQ(a.alloc_on(&p, 0, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(p, nullptr);
  EXPECT_STRNE(LastError(), "");
  EXPECT_EQ(a.alloc_on(&p, 0, nullptr, true), SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(a.stats().live_blocks, 0u);
}

TEST(BadInput, AbsurdSizesAreOutOfMemoryWithoutStateChange) {
  SimAlloc a(256 * kMiB);
  prim::Stream s = a.stream();
  void* keep = nullptr;
  ASSERT_EQ(a.alloc_on(&keep, 3 * kMiB, s), SPILLWAY_OK);
  Fill(keep, 3 * kMiB, 9);
  for (std::size_t n : {SIZE_MAX, SIZE_MAX - 511, std::size_t{1} << 62, 256 * kMiB + 1,
                        512 * kMiB}) {
    for (bool sync : {false, true}) {
      spillway_stats before = a.stats();
      ClearError();
      void* p = reinterpret_cast<void*>(0x1);
      EXPECT_EQ(a.alloc_on(&p, n, s, sync), SPILLWAY_ERR_OUT_OF_MEMORY) << n;
      EXPECT_EQ(p, nullptr);
      EXPECT_NE(std::string(LastError()).find("bytes"), std::string::npos) << LastError();
      spillway_stats after = a.stats();
      ExpectSameStats(before, after);
      EXPECT_EQ(after.oom_count, before.oom_count + 1);
    }
  }
  // More than the device has left (but not more than the device): fails after trying.
  void* big = nullptr;
  ClearError();
  EXPECT_EQ(a.alloc_on(&big, 255 * kMiB, s), SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(LastError()).find("out of memory"), std::string::npos) << LastError();
  EXPECT_EQ(Check(keep, 3 * kMiB, 9), SIZE_MAX);
  EXPECT_EQ(a.stats().live_blocks, 1u);
  EXPECT_EQ(a.stats().allocated_bytes, 3 * kMiB);
  ASSERT_EQ(a.free_on(keep, s), SPILLWAY_OK);
}

TEST(BadInput, DoubleFree) {
  SimAlloc a;
  prim::Stream s = a.stream();
  for (std::size_t n : {std::size_t{64}, std::size_t{3000}, std::size_t{200 << 10}, 3 * kMiB}) {
    for (int mode = 0; mode < 3; ++mode) {
      void* p = nullptr;
      ASSERT_EQ(a.alloc_on(&p, n, s), SPILLWAY_OK);
      ASSERT_EQ(a.free_on(p, s), SPILLWAY_OK);
      spillway_stats before = a.stats();
      ClearError();
      spillway_status st = mode == 0   ? a.free_on(p, s)
                           : mode == 1 ? a.free_sync(p)
                                       : a.free_on(p, nullptr);
      EXPECT_EQ(st, SPILLWAY_ERR_DOUBLE_FREE) << "size " << n << " mode " << mode;
      EXPECT_NE(std::string(LastError()).find("free"), std::string::npos) << LastError();
      ExpectSameStats(before, a.stats());
    }
  }
  // A block freed on another stream (pending) is also not live any more.
  prim::Stream s2 = a.stream();
  void* p = nullptr;
  ASSERT_EQ(a.alloc_on(&p, 5 * kMiB, s), SPILLWAY_OK);
  ASSERT_EQ(a.free_on(p, s2), SPILLWAY_OK);
  EXPECT_EQ(a.free_on(p, s), SPILLWAY_ERR_DOUBLE_FREE);
  EXPECT_EQ(a.free_sync(p), SPILLWAY_ERR_DOUBLE_FREE);
}

TEST(BadInput, InteriorPointerIsRejectedAndBlockStaysUsable) {
  SimAlloc a;
  prim::Stream s = a.stream();
  struct Case {
    std::size_t n, offset;
  };
  for (Case c : {Case{2048, 512}, Case{4000, 512}, Case{100 << 10, 4096}, Case{3 * kMiB, 4096},
                 Case{3 * kMiB, 512}}) {
    void* p = nullptr;
    ASSERT_EQ(a.alloc_on(&p, c.n, s), SPILLWAY_OK);
    Fill(p, c.n, c.n);
    spillway_stats before = a.stats();
    void* inner = static_cast<char*>(p) + c.offset;
    ClearError();
    spillway_status st = a.free_on(inner, s);
    EXPECT_TRUE(st == SPILLWAY_ERR_INVALID_VALUE || st == SPILLWAY_ERR_DOUBLE_FREE)
        << "size " << c.n << ": " << spillway_status_string(st);
    EXPECT_STRNE(LastError(), "");
    EXPECT_NE(a.free_sync(inner), SPILLWAY_OK);
    ExpectSameStats(before, a.stats());
    EXPECT_TRUE(a.alloc->is_live(p));
    EXPECT_FALSE(a.alloc->is_live(inner));
    EXPECT_EQ(Check(p, c.n, c.n), SIZE_MAX);
    Fill(p, c.n, c.n + 1);
    EXPECT_EQ(Check(p, c.n, c.n + 1), SIZE_MAX);
    EXPECT_EQ(a.free_on(p, s), SPILLWAY_OK);
  }
}

TEST(BadInput, ForeignPointersAreNotOwned) {
  SimAlloc a;
  prim::Stream s = a.stream();
  void* mine = nullptr;
  ASSERT_EQ(a.alloc_on(&mine, 1000, s), SPILLWAY_OK);  // heaps and arenas exist
  void* heap = std::malloc(4096);
  int on_stack = 0;
  for (void* p : {heap, static_cast<void*>(&on_stack), static_cast<void*>(nullptr),
                  reinterpret_cast<void*>(0x1000)}) {
    spillway_stats before = a.stats();
    ClearError();
    EXPECT_EQ(a.free_on(p, s), SPILLWAY_ERR_NOT_OWNED) << p;
    EXPECT_EQ(a.free_sync(p), SPILLWAY_ERR_NOT_OWNED) << p;
    EXPECT_NE(std::string(LastError()).find("not allocated by Spillway"), std::string::npos);
    EXPECT_FALSE(a.alloc->owns_range(p));
    EXPECT_FALSE(a.alloc->is_live(p));
    ExpectSameStats(before, a.stats());
  }
  std::free(heap);
  EXPECT_EQ(a.free_on(mine, s), SPILLWAY_OK);
}

TEST(BadInput, InvalidDeviceAndNullOut) {
  SimAlloc a(1024 * kMiB, 2);
  for (int d : {-1, 2, 99, 64, 1 << 30}) {
    void* p = reinterpret_cast<void*>(0x1);
    ClearError();
    EXPECT_EQ(a.alloc->allocate(&p, 4096, d, nullptr, false, trace::Kind::kApiMalloc),
              SPILLWAY_ERR_INVALID_VALUE)
        << d;
    EXPECT_EQ(p, nullptr);
    EXPECT_NE(std::string(LastError()).find("device"), std::string::npos) << LastError();
    spillway_stats st;
    EXPECT_EQ(a.alloc->stats(d, &st), SPILLWAY_ERR_INVALID_VALUE);
    EXPECT_EQ(a.alloc->set_budget(d, 64 * kMiB), SPILLWAY_ERR_INVALID_VALUE);
    EXPECT_EQ(a.alloc->trim(d, 0), SPILLWAY_ERR_INVALID_VALUE);
    EXPECT_EQ(a.alloc->reset_peak_stats(d), SPILLWAY_ERR_INVALID_VALUE);
  }
  EXPECT_EQ(a.alloc->allocate(nullptr, 4096, 0, nullptr, false, trace::Kind::kApiMalloc),
            SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(a.alloc->allocate(nullptr, 4096, 0, nullptr, true, trace::Kind::kApiMallocSync),
            SPILLWAY_ERR_INVALID_VALUE);
  EXPECT_EQ(a.alloc->stats(0, nullptr), SPILLWAY_ERR_INVALID_VALUE);
  // Device 1 works and is separate from device 0.
  void* p = nullptr;
  ASSERT_EQ(a.alloc->allocate(&p, 4096, 1, nullptr, false, trace::Kind::kApiMalloc), SPILLWAY_OK);
  spillway_stats s0, s1;
  ASSERT_EQ(a.alloc->stats(0, &s0), SPILLWAY_OK);
  ASSERT_EQ(a.alloc->stats(1, &s1), SPILLWAY_OK);
  EXPECT_EQ(s0.live_blocks, 0u);
  EXPECT_EQ(s1.live_blocks, 1u);
  EXPECT_EQ(a.alloc->free(p, FreeMode::kStreamOrdered, nullptr, trace::Kind::kApiFree),
            SPILLWAY_OK);
}

TEST(Config, ParseBytesAccepts) {
  const std::pair<const char*, std::uint64_t> ok[] = {
      {"4096", 4096},
      {"64K", 64ull << 10},
      {"1.5G", 3ull << 29},
      {"2T", 2ull << 40},
      {"512MiB", 512ull << 20},
      {"10GB", 10ull << 30},
      {"1", 1},
      {"16g", 16ull << 30},
  };
  for (auto [s, v] : ok) {
    std::uint64_t out = 0;
    EXPECT_TRUE(ParseBytes(s, &out)) << s;
    EXPECT_EQ(out, v) << s;
  }
}

TEST(Config, ParseBytesRejects) {
  for (const char* s : {"", "-1", "abc", "10X", "1e400", "0", "0.1", "K", "10KK", "10 G", " 10",
                        "nan", "inf", "99999999999T", "1.5.5G"}) {
    std::uint64_t out = 12345;
    EXPECT_FALSE(ParseBytes(s, &out)) << "'" << s << "'";
    EXPECT_EQ(out, 12345u) << "'" << s << "': output written on failure";
  }
}

struct Env {
  std::map<std::string, std::string> vars;
  GetEnv fn() const {
    return [this](const char* n) -> const char* {
      auto it = vars.find(n);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

void ExpectRejected(const char* var, const char* value, const char* form_hint) {
  Env e;
  e.vars[var] = value;
  Config cfg;
  std::string err;
  EXPECT_FALSE(ParseConfig(e.fn(), &cfg, &err)) << var << "=" << value;
  EXPECT_NE(err.find(var), std::string::npos) << err;
  EXPECT_NE(err.find(value), std::string::npos) << err;
  EXPECT_NE(err.find("expected"), std::string::npos) << err;
  EXPECT_NE(err.find(form_hint), std::string::npos) << err;
}

TEST(Config, ParseConfigRejectsMalformed) {
  for (const char* v : {"lots", "150%", "0%", "-5G", "%", "abc%", "0"})
    ExpectRejected("SPILLWAY_DEVICE_BUDGET", v, "%");
  ExpectRejected("SPILLWAY_STATS", "yes", "0 or 1");
  ExpectRejected("SPILLWAY_STATS", "2", "0 or 1");
  ExpectRejected("SPILLWAY_BACKEND", "opencl", "cuda or sim");
  ExpectRejected("SPILLWAY_TRACK", "yes", "0 or 1");
  for (const char* v : {"0", "x", "65", "-1", "1x"})
    ExpectRejected("SPILLWAY_SIM_DEVICES", v, "1..64");
  ExpectRejected("SPILLWAY_SIM_DEVICE_MEMORY", "1M", "64M");
  ExpectRejected("SPILLWAY_RESERVE_POLICY", "tight", "fast or compact");
  ExpectRejected("SPILLWAY_SPANS", "yes", "auto, 0 or 1");
  ExpectRejected("SPILLWAY_REPORT", "", "directory");
  ExpectRejected("SPILLWAY_REPORT", "/dev/null", "directory");  // exists, not a directory
  // Offload (issue 4) and kernel times.
  ExpectRejected("SPILLWAY_OFFLOAD", "on", "0 or 1");
  for (const char* v : {"lots", "0", "0%", "101%", "-1G"})
    ExpectRejected("SPILLWAY_HOST_LIMIT", v, "percentage of RAM");
  ExpectRejected("SPILLWAY_NVME_PATH", "/nonexistent/spillway-nvme", "existing directory");
  ExpectRejected("SPILLWAY_NVME_PATH", "/dev/null", "existing directory");
  ExpectRejected("SPILLWAY_NVME_PATH", "", "existing directory");
  ExpectRejected("SPILLWAY_NVME_LIMIT", "big", "bytes");
  ExpectRejected("SPILLWAY_NVME_LIMIT", "0", "bytes");
  ExpectRejected("SPILLWAY_NVME_VERIFY", "yes", "0 or 1");
  ExpectRejected("SPILLWAY_OFFLOAD_SAFETY", "loose", "tracked, strict or auto");
  for (const char* v : {"0", "-1", "three", "3x", "1e9", "nan"})
    ExpectRejected("SPILLWAY_OFFLOAD_RETURN_USES", v, "a number in (0, 1000]");
  for (const char* v : {"-1", "257", "four", "4x", "1.5"})
    ExpectRejected("SPILLWAY_OFFLOAD_LOOKAHEAD", v, "an integer in 0..256 (0: no prefetching)");
  for (const char* v : {"0", "1", "early", "FIRST"})
    ExpectRejected("SPILLWAY_OFFLOAD_DRAIN", v, "first or last");
  for (const char* v : {"0", "1", "sm", "Kernel"})
    ExpectRejected("SPILLWAY_OFFLOAD_COPY", v, "engine or kernel");
  for (const char* v : {"0", "2", "3", "24", "1024", "-32", "32M", "x"})
    ExpectRejected("SPILLWAY_SPAN_MIB", v, "a power of two from 4 to 512");
  ExpectRejected("SPILLWAY_KERNELS", "yes", "0 or 1");
  ExpectRejected("SPILLWAY_KERNELS", "1", "SPILLWAY_TRACK=1");  // without the tracker
  ExpectRejected("SPILLWAY_TRACK_LAUNCHES", "hooks", "auto or cupti");
}

TEST(Config, TrackLaunches) {
  Env e;
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_FALSE(cfg.track_launches_cupti) << "default: auto (the preload's hooks)";
  e.vars = {{"SPILLWAY_TRACK_LAUNCHES", "cupti"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_TRUE(cfg.track_launches_cupti);
  e.vars = {{"SPILLWAY_TRACK_LAUNCHES", "auto"}};
  Config again;
  ASSERT_TRUE(ParseConfig(e.fn(), &again, &err)) << err;
  EXPECT_FALSE(again.track_launches_cupti);
}

TEST(Config, OffloadSettings) {
  Env e;
  e.vars = {{"SPILLWAY_OFFLOAD", "1"},        {"SPILLWAY_HOST_LIMIT", "25%"},
            {"SPILLWAY_NVME_PATH", "/tmp"},    {"SPILLWAY_NVME_LIMIT", "100G"},
            {"SPILLWAY_NVME_VERIFY", "1"},     {"SPILLWAY_OFFLOAD_SAFETY", "strict"},
            {"SPILLWAY_TRACK", "1"},           {"SPILLWAY_KERNELS", "1"},
            {"SPILLWAY_OFFLOAD_RETURN_USES", "2.5"}, {"SPILLWAY_OFFLOAD_LOOKAHEAD", "16"}};
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_TRUE(cfg.offload);
  EXPECT_EQ(ResolveHostLimit(cfg, 64ull << 30), 16ull << 30);
  EXPECT_EQ(cfg.nvme_path, "/tmp");
  EXPECT_EQ(cfg.nvme_limit, 100ull << 30);
  EXPECT_TRUE(cfg.nvme_verify);
  EXPECT_EQ(cfg.offload_safety, Config::Safety::kStrict);
  EXPECT_TRUE(cfg.kernels);
  EXPECT_DOUBLE_EQ(cfg.offload_return_uses, 2.5);
  EXPECT_EQ(cfg.offload_lookahead, 16);
  e.vars = {{"SPILLWAY_HOST_LIMIT", "8G"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(ResolveHostLimit(cfg, 64ull << 30), 8ull << 30);
  Config def;
  EXPECT_EQ(ResolveHostLimit(def, 64ull << 30), 32ull << 30) << "default: half the RAM";
  EXPECT_EQ(def.offload_safety, Config::Safety::kAuto);
  EXPECT_FALSE(def.offload);
  EXPECT_EQ(def.offload_return_uses, 0.0) << "default: the pager's own factor";
  EXPECT_EQ(def.offload_lookahead, -1) << "default: the pager's own depth";
  e.vars = {{"SPILLWAY_OFFLOAD_LOOKAHEAD", "0"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(cfg.offload_lookahead, 0) << "0: no prefetching";
}

TEST(Config, ReservePolicy) {
  Env e;
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_FALSE(cfg.compact) << "fast is the default";
  e.vars = {{"SPILLWAY_RESERVE_POLICY", "compact"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_TRUE(cfg.compact);
}

TEST(Config, Spans) {
  Env e;
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(cfg.spans, Config::Spans::kAuto) << "default: on with offload";
  e.vars = {{"SPILLWAY_SPANS", "0"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(cfg.spans, Config::Spans::kOff);
  e.vars = {{"SPILLWAY_SPANS", "1"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(cfg.spans, Config::Spans::kOn);
  EXPECT_EQ(cfg.span_mib, 8u) << "default: 8 MiB";
  e.vars = {{"SPILLWAY_SPAN_MIB", "8"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(cfg.span_mib, 8u);
  EXPECT_TRUE(cfg.offload_drain_last) << "default: last";
  e.vars = {{"SPILLWAY_OFFLOAD_DRAIN", "first"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_FALSE(cfg.offload_drain_last);
  e.vars = {{"SPILLWAY_OFFLOAD_DRAIN", "last"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_TRUE(cfg.offload_drain_last);
  e.vars = {};
  Config fresh;
  ASSERT_TRUE(ParseConfig(e.fn(), &fresh, &err)) << err;
  EXPECT_FALSE(fresh.offload_copy_kernel) << "default: the copy engine";
  e.vars = {{"SPILLWAY_OFFLOAD_COPY", "kernel"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_TRUE(cfg.offload_copy_kernel);
  e.vars = {{"SPILLWAY_OFFLOAD_COPY", "engine"}};
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_FALSE(cfg.offload_copy_kernel);
}

TEST(Config, ParseConfigAccepts) {
  Env e;
  e.vars = {{"SPILLWAY_DEVICE_BUDGET", "40G"}, {"SPILLWAY_STATS", "1"},
            {"SPILLWAY_BACKEND", "sim"},       {"SPILLWAY_SIM_DEVICES", "3"},
            {"SPILLWAY_SIM_DEVICE_MEMORY", "2G"}, {"SPILLWAY_TRACE", "/tmp/x.trace"},
            {"SPILLWAY_REPORT", "/tmp/spillway-report-not-yet-created"}};
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(cfg.budget_bytes, 40ull << 30);
  EXPECT_TRUE(cfg.print_stats);
  EXPECT_TRUE(cfg.use_sim);
  EXPECT_EQ(cfg.sim_devices, 3);
  EXPECT_EQ(cfg.sim_device_memory, 2ull << 30);
  EXPECT_EQ(cfg.trace_path, "/tmp/x.trace");
  EXPECT_EQ(cfg.report_dir, "/tmp/spillway-report-not-yet-created");
  Env empty;
  Config def;
  ASSERT_TRUE(ParseConfig(empty.fn(), &def, &err));
  EXPECT_EQ(def.budget_bytes, 0u);
  EXPECT_FALSE(def.use_sim);
}

TEST(Config, ResolveBudget) {
  Env e;
  e.vars["SPILLWAY_DEVICE_BUDGET"] = "50%";
  Config cfg;
  std::string err;
  ASSERT_TRUE(ParseConfig(e.fn(), &cfg, &err)) << err;
  EXPECT_EQ(ResolveBudget(cfg, 80ull << 30), 40ull << 30);
  Config bytes;
  bytes.budget_bytes = 12345;
  EXPECT_EQ(ResolveBudget(bytes, 80ull << 30), 12345u);
  EXPECT_EQ(ResolveBudget(Config{}, 80ull << 30), 0u);
}

TEST(Config, PercentBudgetAppliesToSimDevice) {
  Config cfg;
  cfg.budget_percent = 25;
  SimAlloc a(256 * kMiB, 1, cfg);
  EXPECT_EQ(a.stats().budget_bytes, 64 * kMiB);
  void* p = nullptr;
  EXPECT_EQ(a.alloc_on(&p, 65 * kMiB, nullptr), SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(LastError()).find("budget"), std::string::npos) << LastError();
}

}  // namespace
}  // namespace spillway::test
