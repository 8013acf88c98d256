// trace_replay_test.cpp — the SPILLWAY_TRACE file format end to end: records written with
// spillway::trace::TraceWriter are replayed by `spillway replay` (the CLI, run through popen),
// whose output must report the right allocation/free/skip counts; a truncated file, a wrong
// magic, a wrong version and a missing file are each rejected with a clear message and a
// non-zero exit status.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli_util.h"
#include "profiler/trace_format.h"
#include "profiler/trace_reader.h"
#include "profiler/trace_writer.h"
#include "spillway/spillway.h"


namespace spillway::trace {
namespace {

using spillway::test::ReadAll;
using spillway::test::RunCli;
using spillway::test::RunResult;
using spillway::test::WriteAll;

std::string TempPath(const char* name) {
  return testing::TempDir() + "spillway_" + std::to_string(getpid()) + "_" + name;
}


// A small trace: 3 allocations (one sync, one on a stream), 2 frees, 1 failed allocation,
// 1 pass-through, 1 free of an unknown address.
std::string WriteSampleTrace(const char* name) {
  const std::string path = TempPath(name);
  TraceWriter w;
  std::string err;
  EXPECT_TRUE(w.open(path, &err)) << err;
  const void* s1 = reinterpret_cast<const void*>(0x7000);
  w.record(Kind::kCudaMallocAsync, 0, s1, 0x1000000, 4096, SPILLWAY_OK);
  w.record(Kind::kCudaMalloc, 0, nullptr, 0x2000000, 3 << 20, SPILLWAY_OK);
  w.record(Kind::kApiMalloc, 0, nullptr, 0x3000000, 100, SPILLWAY_OK);
  w.record(Kind::kCudaMallocAsync, 0, s1, 0, std::uint64_t{1} << 50, SPILLWAY_ERR_OUT_OF_MEMORY);
  w.record(Kind::kCudaMalloc, 0, nullptr, 0x9000000, 64, kStatusPassedThrough);
  w.record(Kind::kCudaFreeAsync, 0, s1, 0x1000000, 0, SPILLWAY_OK);
  w.record(Kind::kCudaFree, 0, nullptr, 0x2000000, 0, SPILLWAY_OK);
  w.record(Kind::kApiFree, 0, nullptr, 0x4444000, 0, SPILLWAY_OK);  // never allocated
  w.close();
  return path;
}

TEST(TraceWriter, FileLayout) {
  const std::string path = WriteSampleTrace("layout.trace");
  const std::string data = ReadAll(path);
  ASSERT_EQ(data.size(), sizeof(Header) + 8 * sizeof(Record));
  Header h;
  std::memcpy(&h, data.data(), sizeof h);
  EXPECT_EQ(std::memcmp(h.magic, kMagic, 8), 0);
  EXPECT_EQ(h.version, kVersion);
  EXPECT_EQ(h.header_size, 64u);
  EXPECT_EQ(h.record_size, 64u);
  EXPECT_EQ(h.pid, static_cast<std::uint32_t>(getpid()));
  Record r[8];
  std::memcpy(r, data.data() + sizeof h, sizeof r);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(r[i].seq, static_cast<std::uint64_t>(i));
  for (int i = 1; i < 8; ++i) EXPECT_GE(r[i].t_ns, r[i - 1].t_ns);
  EXPECT_EQ(r[0].stream, 0x7000u);
  EXPECT_EQ(r[1].size, 3u << 20);
  EXPECT_EQ(r[1].kind, static_cast<std::uint16_t>(Kind::kCudaMalloc));
  EXPECT_EQ(r[3].status, SPILLWAY_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(r[4].status, kStatusPassedThrough);
  EXPECT_TRUE(IsAlloc(r[0].kind));
  EXPECT_FALSE(IsAlloc(r[5].kind));
  EXPECT_TRUE(IsSyncKind(r[1].kind));
  EXPECT_FALSE(IsSyncKind(r[0].kind));
  std::remove(path.c_str());
}

// Marks, labels (longer than one 24-byte chunk), physical events, rounded sizes: written by the
// writer, read back by the reader.
TEST(TraceReader, RoundTripsEveryKind) {
  const std::string path = TempPath("kinds.trace");
  const std::string long_label = "backward pass of layer 11 (attention + mlp)";
  {
    TraceWriter w;
    std::string err;
    ASSERT_TRUE(w.open(path, &err)) << err;
    w.mark("forward", 0);
    w.record(Kind::kCudaMallocAsync, 1, nullptr, 0x7000000, 1000, SPILLWAY_OK, 1024);
    w.physical(Kind::kChunkCreate, 1, 0, 2 << 20);
    w.physical(Kind::kMap, 1, 0x7000000, 2 << 20);
    w.mark(long_label, 1);
    w.mark("forward", 0);  // the label is defined once
    w.physical(Kind::kUnmap, 1, 0x7000000, 2 << 20);
    w.physical(Kind::kChunkRelease, 1, 0, 2 << 20);
    w.physical(Kind::kOom, 1, 0, 1ull << 40);
    w.mark(long_label, 2);
  }
  Trace t;
  std::string err;
  ASSERT_TRUE(ReadTrace(path, &t, &err)) << err;
  std::vector<Record> events;
  for (const Record& r : t.records)
    if (r.kind != static_cast<std::uint16_t>(Kind::kString)) events.push_back(r);
  ASSERT_EQ(events.size(), 10u);
  ASSERT_EQ(t.labels.size(), 2u);
  EXPECT_EQ(t.labels.at(events[0].addr), "forward");
  EXPECT_EQ(events[1].aux, 1024u);
  EXPECT_EQ(events[1].device, 1);
  EXPECT_EQ(events[3].kind, static_cast<std::uint16_t>(Kind::kMap));
  EXPECT_EQ(events[3].addr, 0x7000000u);
  EXPECT_EQ(t.labels.at(events[4].addr), long_label);
  EXPECT_EQ(events[4].aux2, 1u);
  EXPECT_EQ(events[5].addr, events[0].addr);
  EXPECT_EQ(events[8].kind, static_cast<std::uint16_t>(Kind::kOom));
  EXPECT_EQ(events[8].size, 1ull << 40);
  EXPECT_EQ(events[9].aux2, 2u);
  std::remove(path.c_str());
}

// Version 1 files (48-byte records, as in examples/traces) are still read and replayed.
TEST(TraceReader, ReadsVersionOne) {
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = 1;
  h.header_size = 64;
  h.record_size = 48;
  RecordV1 r[2] = {{10, 0x5000000, 3 << 20, 0, 0, 0, 3, 0}, {20, 0x5000000, 0, 0, 1, 0, 4, 0}};
  std::string data(reinterpret_cast<const char*>(&h), sizeof h);
  data.append(reinterpret_cast<const char*>(r), sizeof r);
  const std::string path = TempPath("v1.trace");
  WriteAll(path, data);
  Trace t;
  std::string err;
  ASSERT_TRUE(ReadTrace(path, &t, &err)) << err;
  ASSERT_EQ(t.records.size(), 2u);
  EXPECT_EQ(t.header.rank, -1);
  EXPECT_EQ(t.records[0].size, 3u << 20);
  EXPECT_EQ(t.records[1].t_ns, 20u);
  EXPECT_EQ(t.records[0].aux, 0u);
  RunResult res = RunCli("replay " + path);
  EXPECT_EQ(res.status, 0) << res.output;
  EXPECT_NE(res.output.find("1 allocations, 1 frees"), std::string::npos) << res.output;
  WriteAll(path, data.substr(0, data.size() - 8));
  EXPECT_FALSE(ReadTrace(path, &t, &err));
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
  std::remove(path.c_str());
}

TEST(Replay, ReportsCounts) {
  const std::string path = WriteSampleTrace("ok.trace");
  RunResult r = RunCli("replay " + path + " --device-memory 1G");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("8 records"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 allocations"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("2 frees"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("3 skipped"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0 failed"), std::string::npos) << r.output;
  // The summary of the replayed allocator: 3 allocations, 2 frees, 1 live.
  EXPECT_NE(r.output.find("allocations       3 (frees 2, live 1"), std::string::npos)
      << r.output;
  std::remove(path.c_str());
}

TEST(Replay, EmptyTraceIsValid) {
  const std::string path = TempPath("empty.trace");
  {
    TraceWriter w;
    std::string err;
    ASSERT_TRUE(w.open(path, &err)) << err;
  }
  RunResult r = RunCli("replay " + path);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("0 records"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("0 allocations"), std::string::npos) << r.output;
  std::remove(path.c_str());
}

TEST(Replay, RejectsTruncatedFile) {
  const std::string good = ReadAll(WriteSampleTrace("src.trace"));
  const std::string path = TempPath("trunc.trace");
  WriteAll(path, good.substr(0, good.size() - 20));  // cut inside the last record
  RunResult r = RunCli("replay " + path);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("truncated"), std::string::npos) << r.output;
  WriteAll(path, good.substr(0, 30));  // cut inside the header
  r = RunCli("replay " + path);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("shorter than a trace header"), std::string::npos) << r.output;
  std::remove(path.c_str());
  std::remove(TempPath("src.trace").c_str());
}

TEST(Replay, RejectsWrongMagic) {
  std::string data = ReadAll(WriteSampleTrace("src2.trace"));
  data[0] = 'X';
  const std::string path = TempPath("magic.trace");
  WriteAll(path, data);
  RunResult r = RunCli("replay " + path);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("not a Spillway trace"), std::string::npos) << r.output;
  std::remove(path.c_str());
  std::remove(TempPath("src2.trace").c_str());
}

TEST(Replay, RejectsWrongVersion) {
  std::string data = ReadAll(WriteSampleTrace("src3.trace"));
  const std::uint32_t v = kVersion + 1;
  std::memcpy(&data[offsetof(Header, version)], &v, sizeof v);
  const std::string path = TempPath("version.trace");
  WriteAll(path, data);
  RunResult r = RunCli("replay " + path);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("version " + std::to_string(v)), std::string::npos) << r.output;
  std::remove(path.c_str());
  std::remove(TempPath("src3.trace").c_str());
}

TEST(Replay, RejectsMissingFileAndBadArgs) {
  RunResult r = RunCli("replay " + TempPath("does-not-exist.trace"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("cannot open"), std::string::npos) << r.output;
  r = RunCli("replay");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("usage"), std::string::npos) << r.output;
  r = RunCli("replay x.trace --device-memory lots");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--device-memory"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace spillway::trace
