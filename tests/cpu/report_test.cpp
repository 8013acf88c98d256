// report_test.cpp — the profiler's reports from event logs: fragmentation figures against
// hand-computed cases, peaks and their times, the largest blocks at the peak, the time series
// bound, merging processes with different start times, version 1 logs (no chunk events), marks
// with labels, OOMs, counting of failed / passed-through / unknown records, JSON and Chrome trace
// output that parses, `spillway report` on written logs and on bad ones, and SPILLWAY_REPORT=DIR
// at exit.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "profiler/report/analyze.h"
#include "report_synthetic.h"
#include "profiler/report/output.h"
#include "profiler/report/render.h"
#include "cli_util.h"
#include "profiler/trace_format.h"
#include "profiler/trace_reader.h"
#include "profiler/trace_writer.h"
#include "spillway/spillway.h"


namespace spillway::report {
namespace {

using spillway::test::ReadAll;
using spillway::test::RunCli;
using spillway::test::RunResult;
using spillway::test::WriteAll;

using trace::Kind;
constexpr std::uint64_t kK = 1024, kM = 1024 * 1024;
constexpr std::uint64_t kBase = std::uint64_t{1} << 32;  // addresses (0 means a failed call)

using Log = test::SyntheticLog;  // a log built in memory

Model AnalyzeLogs(const std::vector<trace::Trace>& logs) {
  Model m;
  std::string err;
  EXPECT_TRUE(Analyze(logs, &m, &err)) << err;
  return m;
}
Model AnalyzeLogs(const Log& l) { return AnalyzeLogs(std::vector<trace::Trace>{l.t}); }

// Two 2 MiB pages mapped at [0, 4M) (relative to kBase), one 4 MiB chunk.
Log TwoPages() {
  Log l;
  l.Phys(1, Kind::kChunkCreate, 0, 4 * kM);
  l.Phys(2, Kind::kMap, kBase, 2 * kM);
  l.Phys(3, Kind::kMap, kBase + 2 * kM, 2 * kM);
  return l;
}

TEST(ReportFragmentation, FreeSpaceInOneRunIsNotExternal) {
  Log l = TwoPages();
  l.Alloc(10, kBase, kM, kM);
  l.Alloc(11, kBase + 3 * kM, kM, kM);
  Model m = AnalyzeLogs(l);
  ASSERT_EQ(m.devices.size(), 1u);
  const Sample& s = m.devices[0].at_peak;
  EXPECT_EQ(s.t_ns, 11u);
  EXPECT_EQ(s.allocated, 2 * kM);
  EXPECT_EQ(s.reserved, 4 * kM);
  EXPECT_EQ(s.mapped, 4 * kM);
  EXPECT_DOUBLE_EQ(s.external, 0.0);  // free [1M, 3M): one run across the page boundary
  EXPECT_DOUBLE_EQ(s.internal, 0.0);
  EXPECT_DOUBLE_EQ(s.overhead, 2.0);
}

TEST(ReportFragmentation, TwoEqualRunsAreHalfExternal) {
  Log l = TwoPages();
  l.Alloc(10, kBase, kM, kM);
  l.Alloc(11, kBase + 2 * kM, kM, kM);
  Model m = AnalyzeLogs(l);
  const Sample& s = m.devices[0].at_peak;
  EXPECT_DOUBLE_EQ(s.external, 0.5);  // free [1M, 2M) and [3M, 4M): 1 - 1M / 2M
  EXPECT_DOUBLE_EQ(s.overhead, 2.0);
}

TEST(ReportFragmentation, UnevenRunsAndUnmappedGap) {
  // Pages [0, 2M) and [4M, 6M) (not adjacent); a block at [0, 512K): free runs 1.5M and 2M.
  Log l;
  l.Phys(1, Kind::kChunkCreate, 0, 4 * kM);
  l.Phys(2, Kind::kMap, kBase, 2 * kM);
  l.Phys(3, Kind::kMap, kBase + 4 * kM, 2 * kM);
  l.Alloc(10, kBase, 512 * kK, 512 * kK);
  Model m = AnalyzeLogs(l);
  const Sample& s = m.devices[0].at_peak;
  EXPECT_NEAR(s.external, 1.0 - 2.0 / 3.5, 1e-12);
  EXPECT_EQ(s.mapped, 4 * kM);
}

TEST(ReportFragmentation, NothingFreeIsZeroExternal) {
  Log l = TwoPages();
  l.Alloc(10, kBase, 4 * kM, 4 * kM);
  Model m = AnalyzeLogs(l);
  EXPECT_DOUBLE_EQ(m.devices[0].at_peak.external, 0.0);
  EXPECT_DOUBLE_EQ(m.devices[0].at_peak.overhead, 1.0);
}

TEST(ReportFragmentation, InternalIsRoundingWasteOverReserved) {
  // 768 KiB requested, rounded to 1 MiB, 2 MiB reserved: internal = 256K / 2M = 0.125.
  Log l;
  l.Phys(1, Kind::kChunkCreate, 0, 2 * kM);
  l.Phys(2, Kind::kMap, kBase, 2 * kM);
  l.Alloc(10, kBase, 768 * kK, kM);
  Model m = AnalyzeLogs(l);
  const Sample& s = m.devices[0].at_peak;
  EXPECT_EQ(s.rounded, kM);
  EXPECT_DOUBLE_EQ(s.internal, 0.125);
  EXPECT_DOUBLE_EQ(s.overhead, 2.0 * kM / (768.0 * kK));
  EXPECT_DOUBLE_EQ(s.external, 0.0);  // the free 1M at [1M, 2M) is one run
  EXPECT_DOUBLE_EQ(InternalFragmentation(0, 0, 0), 0.0);
  EXPECT_DOUBLE_EQ(ExternalFragmentation(0, 0), 0.0);
  EXPECT_DOUBLE_EQ(Overhead(5, 0), 0.0);
}

TEST(ReportFragmentation, UnmapShrinksFreeSpace) {
  Log l = TwoPages();
  l.Alloc(10, kBase, kM, kM);
  l.Phys(11, Kind::kUnmap, kBase + 2 * kM, 2 * kM);
  l.Phys(12, Kind::kChunkRelease, 0, 2 * kM);
  l.Alloc(13, kBase + kM, kM / 2, kM / 2);  // the peak: 1.5M allocated
  Model m = AnalyzeLogs(l);
  const Sample& s = m.devices[0].at_peak;
  EXPECT_EQ(s.mapped, 2 * kM);
  EXPECT_EQ(s.reserved, 2 * kM);
  EXPECT_DOUBLE_EQ(s.external, 0.0);  // one run [1.5M, 2M)
  EXPECT_EQ(m.devices[0].peak_reserved, 4 * kM);
  EXPECT_EQ(m.devices[0].peak_reserved_ns, 1u);
}

TEST(ReportPeaks, PeaksTimesAndLargestBlocks) {
  Log l;
  l.Phys(5, Kind::kChunkCreate, 0, 4 * kM);
  l.Alloc(10, kBase, kM, kM);                            // A
  l.Alloc(20, kBase + 4 * kM, 2 * kM, 2 * kM);           // B: 3M
  l.Free(30, kBase);                                     // 2M
  l.Phys(35, Kind::kChunkCreate, 0, 4 * kM);             // reserved 8M
  l.Alloc(40, kBase + 8 * kM, 3 * kM / 2, 3 * kM / 2);   // C: 3.5M, the peak
  l.Free(50, kBase + 4 * kM);                            // 1.5M
  l.Phys(60, Kind::kChunkRelease, 0, 4 * kM);
  Model m = AnalyzeLogs(l);
  ASSERT_EQ(m.devices.size(), 1u);
  const DeviceSummary& d = m.devices[0];
  EXPECT_EQ(d.peak_allocated, 7 * kM / 2);
  EXPECT_EQ(d.peak_allocated_ns, 40u);
  EXPECT_EQ(d.peak_reserved, 8 * kM);
  EXPECT_EQ(d.peak_reserved_ns, 35u);
  EXPECT_FALSE(d.reserved_estimated);
  EXPECT_EQ(d.at_peak.t_ns, 40u);
  EXPECT_EQ(d.at_peak.allocated, 7 * kM / 2);
  EXPECT_EQ(d.at_peak.reserved, 8 * kM);
  EXPECT_EQ(d.allocs, 3u);
  EXPECT_EQ(d.frees, 2u);
  ASSERT_EQ(d.largest_at_peak.size(), 2u);  // A was freed before the peak
  EXPECT_EQ(m.blocks[d.largest_at_peak[0]].addr, kBase + 4 * kM);
  EXPECT_EQ(m.blocks[d.largest_at_peak[1]].addr, kBase + 8 * kM);
  // Blocks: free times, and live at end.
  ASSERT_EQ(m.blocks.size(), 3u);
  EXPECT_EQ(m.blocks[0].free_ns, 30u);
  EXPECT_FALSE(m.blocks[0].live_at_end);
  EXPECT_TRUE(m.blocks[2].live_at_end);
  EXPECT_EQ(m.blocks[2].free_ns, 60u);  // the end of the log
  EXPECT_EQ(m.end_ns, 60u);
  // The series holds the peak instant, in time order.
  const auto& ss = m.series.at(0).samples;
  bool found = false;
  for (std::size_t i = 0; i < ss.size(); ++i) {
    if (i) {
      EXPECT_LE(ss[i - 1].t_ns, ss[i].t_ns);
    }
    found = found || (ss[i].t_ns == 40 && ss[i].allocated == 7 * kM / 2);
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(ss.back().allocated, 3 * kM / 2);
  EXPECT_EQ(ss.back().reserved, 4 * kM);
}

TEST(ReportPeaks, TenLargestAtThePeak) {
  Log l;
  for (std::uint64_t i = 0; i < 30; ++i) l.Alloc(i + 1, kBase + i * 64 * kM, (i + 1) * kM, (i + 1) * kM);
  for (std::uint64_t i = 0; i < 30; ++i) l.Free(100 + i, kBase + i * 64 * kM);
  Model m = AnalyzeLogs(l);
  const DeviceSummary& d = m.devices[0];
  EXPECT_EQ(d.peak_allocated_ns, 30u);
  ASSERT_EQ(d.largest_at_peak.size(), 10u);
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(m.blocks[d.largest_at_peak[i]].requested, (30 - i) * kM);
}

TEST(ReportSeries, BoundedAndHoldsTheExactPeak) {
  Log l;
  l.Phys(0, Kind::kChunkCreate, 0, 1024 * kM);
  // 200k records over 1 s; a one-record spike in the middle.
  std::uint64_t t = 1;
  for (int i = 0; i < 50000; ++i) {
    l.Alloc(t, kBase + 4096 * static_cast<std::uint64_t>(i % 100), 1000, 1024);
    t += 5000;
    l.Free(t, kBase + 4096 * static_cast<std::uint64_t>(i % 100));
    t += 5000;
    if (i == 25000) {
      l.Alloc(t, kBase + 64 * kM, 100 * kM, 100 * kM);
      l.Free(t + 1, kBase + 64 * kM);
      t += 2;
    }
  }
  Model m = AnalyzeLogs(l);
  ASSERT_EQ(m.series.size(), 1u);
  const auto& ss = m.series[0].samples;
  EXPECT_LE(ss.size(), 4100u);
  EXPECT_GE(ss.size(), 1000u);
  const DeviceSummary& d = m.devices[0];
  EXPECT_EQ(d.peak_allocated, 100 * kM);
  bool found = false;
  for (const Sample& s : ss) found = found || (s.t_ns == d.peak_allocated_ns && s.allocated == 100 * kM);
  EXPECT_TRUE(found) << "the exact peak must be a sample";
}

TEST(ReportMerge, ProcessesAlignedOnWallClock) {
  Log a(5'000'000'000, 11, 0), b(5'000'500'000, 22, 1);  // b starts 0.5 ms later
  a.Alloc(100, kBase, kM, kM);
  a.Free(2'000'000, kBase);
  b.Alloc(100, kBase, 2 * kM, 2 * kM, 1);
  b.Phys(200, Kind::kOom, 0, 64 * kM, 1);
  // b listed first: the earliest start is still t = 0.
  Model m = AnalyzeLogs(std::vector<trace::Trace>{b.t, a.t});
  ASSERT_EQ(m.processes.size(), 2u);
  EXPECT_EQ(m.processes[0].pid, 22u);
  EXPECT_EQ(m.processes[0].offset_ns, 500'000u);
  EXPECT_EQ(m.processes[0].rank, 1);
  EXPECT_EQ(m.processes[1].offset_ns, 0u);
  ASSERT_EQ(m.devices.size(), 2u);
  EXPECT_EQ(m.devices[0].process, 0u);
  EXPECT_EQ(m.devices[0].device, 1);
  EXPECT_EQ(m.devices[0].peak_allocated_ns, 500'100u);
  EXPECT_EQ(m.devices[1].peak_allocated_ns, 100u);
  EXPECT_EQ(m.end_ns, 2'000'000u);
  ASSERT_EQ(m.ooms.size(), 1u);
  EXPECT_EQ(m.ooms[0].t_ns, 500'200u);
  EXPECT_EQ(m.ooms[0].process, 0u);
  EXPECT_EQ(m.ooms[0].device, 1);
  EXPECT_EQ(m.ooms[0].bytes, 64 * kM);
  EXPECT_EQ(m.events, 4u);
  // Blocks of b end at b's end of log (its last record), on the common axis.
  for (const Block& blk : m.blocks)
    if (blk.process == 0) {
      EXPECT_EQ(blk.free_ns, 500'200u);
    }
}

TEST(ReportVersion1, NoChunkEventsReservedIsRounded) {
  Log l;
  l.t.header.version = 1;
  l.Alloc(10, kBase, 1000, 0);  // v1: aux is 0, rounded = requested
  l.Alloc(20, kBase + kM, 3000, 0);
  l.Free(30, kBase);
  Model m = AnalyzeLogs(l);
  const DeviceSummary& d = m.devices[0];
  EXPECT_TRUE(d.reserved_estimated);
  EXPECT_EQ(d.peak_allocated, 4000u);
  EXPECT_EQ(d.peak_reserved, 4000u);
  EXPECT_EQ(d.peak_reserved_ns, 20u);
  EXPECT_EQ(d.at_peak.reserved, 4000u);
  EXPECT_EQ(d.at_peak.rounded, 4000u);
  EXPECT_DOUBLE_EQ(d.at_peak.internal, 0.0);
  EXPECT_DOUBLE_EQ(d.at_peak.overhead, 1.0);
  EXPECT_EQ(m.blocks[0].rounded, 1000u);
  ASSERT_FALSE(m.notes.empty());
  EXPECT_NE(m.notes[0].find("no chunk events"), std::string::npos);
  EXPECT_NE(RenderText(m).find("estimated"), std::string::npos);
}

TEST(ReportCounts, FailedPassedThroughAndUnknownFrees) {
  Log l;
  l.Alloc(1, 0, kM, 0, 0, 2);                        // failed (status 2)
  l.Alloc(2, kBase + 8 * kM, kM, kM, 0, trace::kStatusPassedThrough);
  l.Free(3, kBase + 8 * kM, 0, trace::kStatusPassedThrough);
  l.Free(4, kBase + 99 * kM);                        // unknown address
  l.Alloc(5, kBase, kM, kM);
  l.Free(6, kBase);
  l.Free(7, kBase);                                  // twice: the second is unknown
  Model m = AnalyzeLogs(l);
  const DeviceSummary& d = m.devices[0];
  EXPECT_EQ(d.allocs, 1u);
  EXPECT_EQ(d.frees, 1u);
  EXPECT_EQ(d.failed, 1u);
  EXPECT_EQ(d.passed_through, 2u);
  EXPECT_EQ(d.unknown_frees, 2u);
  EXPECT_EQ(d.peak_allocated, kM);
  EXPECT_EQ(m.blocks.size(), 1u);
  EXPECT_EQ(m.series[0].samples.back().allocated, 0u);
}

TEST(ReportMarks, LabelsPhasesAndHistogram) {
  Log l;
  l.t.labels[1] = "forward";
  l.t.labels[2] = "step \"1\"\n\x01\xff";
  l.Mark(10, 1, 1);
  l.Alloc(11, kBase, 100, 512);
  l.Alloc(12, kBase + kM, 512, 512);
  l.Alloc(13, kBase + 2 * kM, 3000, 4096);
  l.Mark(20, 1, 2);
  l.Mark(30, 2, 0);
  l.Mark(40, 7, 0);  // no label record
  Model m = AnalyzeLogs(l);
  ASSERT_EQ(m.marks.size(), 4u);
  EXPECT_EQ(m.marks[0].label, "forward");
  EXPECT_EQ(m.marks[0].phase, 1u);
  EXPECT_EQ(m.marks[1].phase, 2u);
  EXPECT_EQ(m.marks[2].label, l.t.labels[2]);
  EXPECT_EQ(m.marks[3].label, "#7");
  EXPECT_EQ(m.marks[3].t_ns, 40u);
  // Histogram: <512: 1 (100), [512, 1K): 1, [2K, 4K): 1.
  ASSERT_GE(m.sizes.count.size(), 4u);
  EXPECT_EQ(m.sizes.bucket_floor[0], 0u);
  EXPECT_EQ(m.sizes.bucket_floor[1], 512u);
  EXPECT_EQ(m.sizes.bucket_floor[3], 2048u);
  EXPECT_EQ(m.sizes.count[0], 1u);
  EXPECT_EQ(m.sizes.count[1], 1u);
  EXPECT_EQ(m.sizes.count[2], 0u);
  EXPECT_EQ(m.sizes.count[3], 1u);
  EXPECT_EQ(m.sizes.bytes[3], 3000u);
  const std::string text = RenderText(m);
  EXPECT_NE(text.find("forward"), std::string::npos);
  EXPECT_NE(text.find("peak allocated"), std::string::npos);
}

TEST(ReportInput, UnsortedRecordsAreOrderedByTime) {
  Log l;
  l.Alloc(20, kBase + kM, kM, kM);
  l.Alloc(10, kBase, kM, kM);
  l.Free(15, kBase);
  Model m = AnalyzeLogs(l);
  EXPECT_EQ(m.devices[0].peak_allocated, kM);
  EXPECT_EQ(m.devices[0].peak_allocated_ns, 10u);
  Model empty;
  std::string err;
  EXPECT_FALSE(Analyze({}, &empty, &err));
  EXPECT_FALSE(err.empty());
}

// ---- output files, JSON validity, the CLI --------------------------------------------------

std::string TempDir(const std::string& name) {
  std::string d = testing::TempDir() + "spillway_report_" + std::to_string(getpid()) + "_" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}


bool HavePython() { return std::system("python3 -c 'import json' >/dev/null 2>&1") == 0; }

// Exit status of python's json.load on the file (0 = valid JSON).
int JsonCheck(const std::string& path, const std::string& extra = "") {
  const std::string cmd = "python3 -c 'import json,sys; d=json.load(open(sys.argv[1], encoding=\"utf-8\"))" +
                          extra + "' '" + path + "'";
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

Log Rich() {
  Log a(7'000'000'000, 300, 0);
  a.t.labels[1] = "train \"step\"\t\x02 \xc3\xa9\xff";
  a.Phys(1, Kind::kChunkCreate, 0, 4 * kM);
  a.Phys(2, Kind::kMap, kBase, 4 * kM);
  a.Mark(3, 1, 1);
  a.Alloc(4, kBase, 700 * kK, kM);
  a.Alloc(5, kBase + 2 * kM, kM, kM);
  a.Phys(6, Kind::kOom, 0, 1 << 30);
  a.Mark(7, 1, 2);
  a.Mark(8, 1, 0);
  a.Free(9, kBase);
  return a;
}

TEST(ReportOutput, JsonAndChromeTraceParse) {
  if (!HavePython()) GTEST_SKIP() << "python3 not available";
  Log b(7'000'100'000, 301, 1);
  b.Alloc(10, kBase, kM, kM, 1);
  Model m = AnalyzeLogs(std::vector<trace::Trace>{Rich().t, b.t});
  const std::string dir = TempDir("json");
  std::vector<std::string> written;
  std::string err;
  Formats f;
  f.text = f.json = f.chrome = true;
  ASSERT_TRUE(WriteReports(m, dir, f, &written, &err)) << err;
  EXPECT_EQ(written.size(), 3u);
  EXPECT_EQ(JsonCheck(dir + "/report.json",
                      "; assert d[\"devices\"][0][\"peak_allocated\"] == 1765376;"
                      " assert isinstance(d[\"series\"][0][\"samples\"][0][\"allocated\"], int);"
                      " assert d[\"marks\"][0][\"label\"].startswith(\"train \\\"step\\\"\\t\\x02 \\xe9\");"
                      " assert len(d[\"ooms\"]) == 1 and len(d[\"processes\"]) == 2;"
                      " assert d[\"devices\"][0][\"largest_at_peak\"][0][\"requested\"] == 1048576;"
                      " assert sum(h[\"count\"] for h in d[\"histogram\"]) == 3"),
            0)
      << ReadAll(dir + "/report.json");
  EXPECT_EQ(JsonCheck(dir + "/trace.json",
                      "; e=d[\"traceEvents\"]; ph=[x[\"ph\"] for x in e];"
                      " assert d[\"displayTimeUnit\"] == \"ms\";"
                      " assert \"M\" in ph and \"C\" in ph and \"B\" in ph and \"E\" in ph and \"i\" in ph;"
                      " c=[x for x in e if x[\"ph\"] == \"C\" and \"allocated\" in x[\"args\"]];"
                      " assert max(x[\"args\"][\"allocated\"] for x in c) > 1.6;"
                      " names=[x[\"args\"][\"name\"] for x in e if x[\"name\"] == \"process_name\"];"
                      " assert \"pid 300 rank 0\" in names and \"pid 301 rank 1\" in names;"
                      " o=[x for x in e if x.get(\"cat\") == \"oom\"]; assert o[0][\"ts\"] == 0.006"),
            0)
      << ReadAll(dir + "/trace.json");
  EXPECT_NE(ReadAll(dir + "/summary.txt").find("peak allocated"), std::string::npos);
}

// SPILLWAY_KERNELS=1: kernel records from the real writer (names interned once) become one
// Chrome slice each, on a thread per stream, at the kernel's own start time.
TEST(ReportOutput, KernelTimesInTheChromeTrace) {
  const std::string dir = TempDir("kernels");
  {
    trace::TraceWriter w;
    std::string err;
    ASSERT_TRUE(w.open(dir + "/k.trace", &err)) << err;
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const std::uint64_t now = static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull +
                              static_cast<std::uint64_t>(ts.tv_nsec);
    w.record(Kind::kCudaMalloc, 0, nullptr, kBase, kM, 0, kM);
    w.kernel(0, now + 1'000'000, now + 1'500'000, 7, 41, "gemm_kernel<float>");
    w.kernel(0, now + 2'000'000, now + 2'250'000, 7, 42, "gemm_kernel<float>");
    w.kernel(0, now + 2'100'000, now + 2'200'000, 9, 43, "");
    w.close();
  }
  std::vector<trace::Trace> logs(1);
  std::string err;
  ASSERT_TRUE(trace::ReadTrace(dir + "/k.trace", &logs[0], &err)) << err;
  std::size_t strings = 0;
  for (const trace::Record& r : logs[0].records) strings += r.kind == static_cast<std::uint16_t>(Kind::kString);
  EXPECT_EQ(strings, 2u) << "each name once, in one 24-byte chunk";
  Model m = AnalyzeLogs(logs);
  ASSERT_EQ(m.kernels.size(), 3u);
  EXPECT_EQ(m.kernels_total, 3u);
  EXPECT_EQ(m.kernel_names.size(), 2u);
  EXPECT_EQ(m.kernels[0].dur_ns, 500'000u);
  EXPECT_EQ(m.kernels[1].t_ns - m.kernels[0].t_ns, 1'000'000u);
  EXPECT_EQ(m.kernels[2].stream, 9u);
  EXPECT_EQ(m.kernel_names[m.kernels[2].name], "(unnamed kernel)");
  if (!HavePython()) GTEST_SKIP() << "python3 not available to parse the Chrome trace";
  Formats f;
  f.chrome = true;
  std::vector<std::string> written;
  ASSERT_TRUE(WriteReports(m, dir, f, &written, &err)) << err;
  EXPECT_EQ(JsonCheck(dir + "/trace.json",
                      "; e=d[\"traceEvents\"]; k=[x for x in e if x.get(\"cat\") == \"kernel\"];"
                      " assert len(k) == 3, k;"
                      " assert k[0][\"name\"] == \"gemm_kernel<float>\" and abs(k[0][\"dur\"] - 500) < 1e-3;"
                      " assert abs(k[1][\"ts\"] - k[0][\"ts\"] - 1000) < 1e-3;"
                      " t=[x[\"args\"][\"name\"] for x in e if x[\"name\"] == \"thread_name\"];"
                      " assert \"kernels, stream 7\" in t and \"kernels, stream 9\" in t, t"),
            0)
      << ReadAll(dir + "/trace.json");
}

// A log written by the real writer: chunks, pages, blocks, a mark, an OOM.
void WriteLog(const std::string& path) {
  trace::TraceWriter w;
  std::string err;
  ASSERT_TRUE(w.open(path, &err)) << err;
  w.physical(Kind::kChunkCreate, 0, 0, 4 * kM);
  w.physical(Kind::kMap, 0, kBase, 4 * kM);
  w.mark("warmup", 1);
  w.record(Kind::kCudaMalloc, 0, nullptr, kBase, 3 * kM, 0, 3 * kM);
  w.record(Kind::kCudaMalloc, 0, nullptr, kBase + 3 * kM, 1000, 0, 1024);
  w.mark("warmup", 2);
  w.physical(Kind::kOom, 0, 0, 8 * kM);
  w.record(Kind::kCudaFree, 0, nullptr, kBase, 0, 0);
  w.close();
}

TEST(ReportCli, WritesAllFormatsAndPrintsTheSummary) {
  const std::string dir = TempDir("cli");
  WriteLog(dir + "/a.trace");
  WriteLog(dir + "/b.trace");
  RunResult r = RunCli("report " + dir + "/a.trace " + dir + "/b.trace -o " + dir + "/out --format all");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("peak allocated  3.00 MiB"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 processes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("warmup"), std::string::npos) << r.output;
  for (const char* f : {"summary.txt", "report.json", "trace.json", "report.html", "snapshot.pickle"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/out/" + f)) << f;
  EXPECT_NE(ReadAll(dir + "/out/summary.txt").find("peak allocated"), std::string::npos);
  if (HavePython()) {
    EXPECT_EQ(JsonCheck(dir + "/out/report.json"), 0);
    EXPECT_EQ(JsonCheck(dir + "/out/trace.json"), 0);
  }
  // Default formats: no memviz snapshot.
  r = RunCli("report " + dir + "/a.trace -o " + dir + "/def");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/def/report.html"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/def/trace.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/def/snapshot.pickle"));
  // Only JSON.
  r = RunCli("report " + dir + "/a.trace -o " + dir + "/j --format json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/j/report.json"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/j/summary.txt"));
  EXPECT_NE(r.output.find("peak allocated"), std::string::npos) << "always printed";
}

TEST(ReportCli, RejectsBadLogsWithTheReadersMessage) {
  const std::string dir = TempDir("bad");
  WriteLog(dir + "/good.trace");
  const std::string good = ReadAll(dir + "/good.trace");
  WriteAll(dir + "/truncated.trace", good.substr(0, good.size() - 10));
  std::string wrong = good;
  wrong[8] = 9;  // version 9
  WriteAll(dir + "/version.trace", wrong);
  WriteAll(dir + "/garbage.trace", std::string(300, 'x'));
  WriteAll(dir + "/short.trace", "SPW");
  struct Case {
    const char* file;
    const char* message;
  } cases[] = {{"truncated.trace", "truncated"},
               {"version.trace", "version 9"},
               {"garbage.trace", "bad magic"},
               {"short.trace", "shorter than a trace header"},
               {"missing.trace", "cannot open"}};
  for (const Case& c : cases) {
    RunResult r = RunCli("report " + dir + "/good.trace " + dir + "/" + c.file + " -o " + dir + "/out");
    EXPECT_EQ(r.status, 1) << c.file << ": " << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.file << ": " << r.output;
    EXPECT_NE(r.output.find(c.file), std::string::npos) << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/out"));
}

TEST(ReportCli, BadArgumentsExitTwo) {
  const std::string dir = TempDir("args");
  WriteLog(dir + "/a.trace");
  EXPECT_EQ(RunCli("report").status, 2);
  EXPECT_EQ(RunCli("report " + dir + "/a.trace --format pdf").status, 2);
  EXPECT_EQ(RunCli("report " + dir + "/a.trace -o").status, 2);
  EXPECT_EQ(RunCli("report " + dir + "/a.trace --bogus").status, 2);
  RunResult r = RunCli("report " + dir + "/a.trace --format text,pdf");
  EXPECT_NE(r.output.find("pdf"), std::string::npos) << r.output;
}

TEST(ReportCli, ProgressBarOnLargeInput) {
  const std::string dir = TempDir("big");
  {
    trace::TraceWriter w;
    std::string err;
    ASSERT_TRUE(w.open(dir + "/big.trace", &err)) << err;
    for (int i = 0; i < 110000; ++i) {
      w.record(Kind::kCudaMalloc, 0, nullptr, kBase + static_cast<std::uint64_t>(i % 64) * kM, 4096, 0, 4096);
      w.record(Kind::kCudaFree, 0, nullptr, kBase + static_cast<std::uint64_t>(i % 64) * kM, 0, 0);
    }
  }
  RunResult r = RunCli("report " + dir + "/big.trace -o " + dir + "/out --format text");
  ASSERT_EQ(r.status, 0) << r.output.substr(0, 2000);
  EXPECT_NE(r.output.find("\rspillway report: analyzing"), std::string::npos);
  EXPECT_NE(r.output.find("100%\n"), std::string::npos);
  EXPECT_NE(r.output.find("220000 events"), std::string::npos);
}

TEST(ReportAtExit, SpillwayReportWritesEverythingAtExit) {
  const std::string dir = TempDir("atexit") + "/sub";  // created by Spillway
  const std::string log = TempDir("atexit_log");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child: a fresh process-wide allocator on the simulator, reports at exit.
    std::freopen((log + "/stderr.txt").c_str(), "w", stderr);
    setenv("SPILLWAY_BACKEND", "sim", 1);
    setenv("SPILLWAY_SIM_DEVICE_MEMORY", "256M", 1);
    setenv("SPILLWAY_REPORT", dir.c_str(), 1);
    unsetenv("SPILLWAY_TRACE");
    unsetenv("RANK");
    unsetenv("LOCAL_RANK");
    unsetenv("OMPI_COMM_WORLD_RANK");
    unsetenv("SLURM_PROCID");
    spillway_mark("phase one");
    void* p = spillway_malloc(3 << 20, 0, nullptr);
    void* q = spillway_malloc(1000, 0, nullptr);
    if (p == nullptr || q == nullptr) _exit(3);
    spillway_free(p, 3 << 20, 0, nullptr);
    std::exit(0);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  const std::string err = ReadAll(log + "/stderr.txt");
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << err;
  EXPECT_NE(err.find("peak allocated"), std::string::npos) << err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/spillway-" + std::to_string(pid) + ".trace"));
  for (const char* f : {"summary.txt", "report.json", "trace.json", "report.html", "snapshot.pickle"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f << "\n" << err;
  const std::string text = ReadAll(dir + "/summary.txt");
  EXPECT_NE(text.find("peak allocated  3.00 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("phase one"), std::string::npos) << text;
  if (HavePython()) {
    EXPECT_EQ(JsonCheck(dir + "/report.json"), 0);
  }
}

// Access summaries (kAccess, from the tracker) attach to their blocks; "idle longest" ranks
// tracked blocks by size x (free - last access), a block never touched counting from its
// allocation; untracked blocks are left out.
TEST(ReportIdle, RanksTrackedBlocksByIdleByteTime) {
  Log l = TwoPages();
  auto access = [&](std::uint64_t t_ns, std::uint64_t addr, std::uint64_t count,
                    std::uint64_t first, std::uint64_t last) {
    trace::Record& r = l.Add(t_ns, Kind::kAccess);
    r.addr = addr;
    r.size = count;
    r.aux = first;
    r.stream = last;
    r.aux2 = 1;
  };
  l.Alloc(10, kBase, 1 * kM, 1 * kM);           // A: 1 MiB, used until 20, freed at 1000
  l.Alloc(11, kBase + kM, 1 * kM, 1 * kM);      // B: 1 MiB, used until 900, freed at 1000
  l.Alloc(12, kBase + 2 * kM, 2 * kM, 2 * kM);  // C: 2 MiB, never used, freed at 500
  l.Alloc(13, kBase + 3 * kM + kM / 2, kK, kK); // D: untracked
  access(999, kBase, 5, 15, 20);
  l.Free(1000, kBase);
  access(999, kBase + kM, 7, 15, 900);
  l.Free(1000, kBase + kM);
  access(499, kBase + 2 * kM, 0, 0, 0);
  l.Free(500, kBase + 2 * kM);
  l.Free(1001, kBase + 3 * kM + kM / 2);
  Model m = AnalyzeLogs(l);
  ASSERT_EQ(m.idle_longest.size(), 3u);  // D has no summary
  // Idle byte-time: A 1M x 980, C 2M x 488, B 1M x 100.
  EXPECT_EQ(m.blocks[m.idle_longest[0]].addr, kBase);
  EXPECT_EQ(m.blocks[m.idle_longest[1]].addr, kBase + 2 * kM);
  EXPECT_EQ(m.blocks[m.idle_longest[2]].addr, kBase + kM);
  const Block& a = m.blocks[m.idle_longest[0]];
  EXPECT_TRUE(a.tracked);
  EXPECT_EQ(a.accesses, 5u);
  EXPECT_EQ(IdleNs(a), 980u);
  EXPECT_EQ(IdleNs(m.blocks[m.idle_longest[1]]), 488u);
  const std::string text = RenderText(m);
  EXPECT_NE(text.find("idle longest"), std::string::npos) << text;
  EXPECT_NE(text.find("never used"), std::string::npos) << text;
  const std::string json = RenderJson(m);
  EXPECT_NE(json.find("\"idle_longest\":[{"), std::string::npos);
  EXPECT_NE(json.find("\"idle_ns\":980"), std::string::npos);
  EXPECT_NE(RenderHtml(m).find("Idle longest"), std::string::npos);
  // Without access summaries there is no such list (and no section).
  Model plain = AnalyzeLogs(TwoPages());
  EXPECT_TRUE(plain.idle_longest.empty());
  EXPECT_EQ(RenderHtml(plain).find("Idle longest"), std::string::npos);
}

}  // namespace
}  // namespace spillway::report
