// offload_report_test.cpp — offload in the reports (issue 4 item 7): bytes on each tier over
// time and their peaks, traffic, bandwidth, stalls, the prefetch hit rate and errors, from
// synthetic logs with hand-computed figures; a block freed while off the device; NVMe round
// trips; the offload parts of the text, JSON, Chrome trace and HTML (present only with offload
// records); version 1 logs and logs without offload records unchanged.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "profiler/report/analyze.h"
#include "profiler/report/render.h"
#include "profiler/trace_format.h"
#include "profiler/trace_reader.h"
#include "profiler/trace_writer.h"
#include "report_synthetic.h"

namespace spillway::report {
namespace {

using test::SyntheticLog;
using trace::Kind;
constexpr std::uint64_t kM = 1024 * 1024;
constexpr std::uint64_t kMs = 1'000'000;                 // ns
constexpr std::uint64_t kBase = std::uint64_t{1} << 32;  // addresses (0 means a failed call)
constexpr std::uint32_t kDev = trace::kTierDevice, kHost = trace::kTierHost,
                        kNvme = trace::kTierNvme;

Model AnalyzeLogs(const std::vector<trace::Trace>& logs) {
  Model m;
  std::string err;
  EXPECT_TRUE(Analyze(logs, &m, &err)) << err;
  return m;
}
Model AnalyzeLogs(const SyntheticLog& l) {
  return AnalyzeLogs(std::vector<trace::Trace>{l.t});
}

// The tier bytes of series `si` at time `t` (the last sample at or before it).
TierBytes TierAt(const Model& m, std::size_t si, std::uint64_t t) {
  EXPECT_LT(si, m.offload.tiers.size());
  if (si >= m.offload.tiers.size()) return {};
  const std::vector<Sample>& s = m.series[si].samples;
  const std::vector<TierBytes>& ts = m.offload.tiers[si];
  EXPECT_EQ(s.size(), ts.size());
  TierBytes out;
  for (std::size_t i = 0; i < s.size() && i < ts.size(); ++i)
    if (s[i].t_ns <= t) out = ts[i];
  return out;
}

bool Has(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

std::size_t OffloadNotes(const Model& m) {
  std::size_t n = 0;
  for (const std::string& note : m.notes) n += note.rfind("offload:", 0) == 0 ? 1 : 0;
  return n;
}

// Block A (8 MiB at kBase) and B (4 MiB after it), moved about; every record 10 ms apart.
//   t=10 alloc A, t=20 alloc B                     device 12M
//   t=30 evict A 6M device->host (2 GB/s)         device 6M, host 6M
//   t=40 evict B 4M device->host (4 GB/s)         device 2M, host 10M
//   t=50 evict A 2M host->nvme (1 GB/s)           host 8M, nvme 2M
//   t=60 prefetch A 2M nvme->host (0.5 GB/s)      host 10M, nvme 0
//   t=70 prefetch A 6M host->device (1 GB/s)      device 8M, host 4M
//   t=80 demand fetch B 4M host->device, waited 1000 ns: device 12M, host 0
//   t=90 free A, t=100 free B
SyntheticLog Journey() {
  SyntheticLog l;
  const std::uint64_t a = kBase, b = kBase + 8 * kM;
  l.Alloc(10 * kMs, a, 8 * kM, 8 * kM);
  l.Alloc(20 * kMs, b, 4 * kM, 4 * kM);
  l.Evict(30 * kMs, a, 6 * kM, kDev, kHost, 6 * kM / 2);
  l.Evict(40 * kMs, b, 4 * kM, kDev, kHost, 4 * kM / 4);
  l.Evict(50 * kMs, a, 2 * kM, kHost, kNvme, 2 * kM);
  l.Fetch(60 * kMs, a, 2 * kM, kNvme, kHost, 4 * kM);
  l.Fetch(70 * kMs, a, 6 * kM, kHost, kDev, 6 * kM);
  l.Fetch(80 * kMs, b, 4 * kM, kHost, kDev, 1000, /*demand=*/true);
  l.Free(90 * kMs, a);
  l.Free(100 * kMs, b);
  return l;
}

TEST(OffloadReport, TierBytesOverTimeAndPeaks) {
  const Model m = AnalyzeLogs(Journey());
  ASSERT_EQ(m.series.size(), 1u);
  ASSERT_EQ(m.offload.tiers.size(), 1u);
  ASSERT_EQ(m.offload.tiers[0].size(), m.series[0].samples.size());
  struct Want {
    std::uint64_t t, device, host, nvme;
  } const want[] = {{20, 12, 0, 0}, {30, 6, 6, 0},  {40, 2, 10, 0}, {50, 2, 8, 2}, {60, 2, 10, 0},
                    {70, 8, 4, 0},  {80, 12, 0, 0}, {90, 4, 0, 0},  {100, 0, 0, 0}};
  for (const Want& w : want) {
    const TierBytes t = TierAt(m, 0, w.t * kMs);
    EXPECT_EQ(t.device, w.device * kM) << "t=" << w.t;
    EXPECT_EQ(t.host, w.host * kM) << "t=" << w.t;
    EXPECT_EQ(t.nvme, w.nvme * kM) << "t=" << w.t;
  }
  ASSERT_EQ(m.offload.devices.size(), 1u);
  const TierPeaks& p = m.offload.devices[0];
  EXPECT_EQ(p.peak_device, 12 * kM);
  EXPECT_EQ(p.peak_device_ns, 20 * kMs);  // first reached at B's allocation
  EXPECT_EQ(p.peak_host, 10 * kM);
  EXPECT_EQ(p.peak_host_ns, 40 * kMs);
  EXPECT_EQ(p.peak_nvme, 2 * kM);
  EXPECT_EQ(p.peak_nvme_ns, 50 * kMs);
  // The allocation figures are those of the log without offload.
  EXPECT_EQ(m.devices[0].peak_allocated, 12 * kM);
  EXPECT_EQ(m.offload.events, 6u);
  EXPECT_EQ(m.offload.evictions, 3u);
  EXPECT_EQ(m.offload.fetches, 3u);
  EXPECT_EQ(OffloadNotes(m), 0u);
}

TEST(OffloadReport, TrafficAndBandwidth) {
  const Model m = AnalyzeLogs(Journey());
  const auto& tr = m.offload.traffic;
  const Traffic& d2h = tr[kDev][kHost];
  EXPECT_EQ(d2h.moves, 2u);
  EXPECT_EQ(d2h.bytes, 10 * kM);
  EXPECT_EQ(d2h.ns, 3 * kM + kM);
  EXPECT_DOUBLE_EQ(d2h.gbps, 10.0 / 4.0);              // 10M bytes in 4M ns
  EXPECT_DOUBLE_EQ(d2h.median_gbps, (2.0 + 4.0) / 2);  // moves at 2 and 4 GB/s
  const Traffic& h2n = tr[kHost][kNvme];
  EXPECT_EQ(h2n.moves, 1u);
  EXPECT_EQ(h2n.bytes, 2 * kM);
  EXPECT_DOUBLE_EQ(h2n.gbps, 1.0);
  EXPECT_DOUBLE_EQ(h2n.median_gbps, 1.0);
  const Traffic& n2h = tr[kNvme][kHost];
  EXPECT_EQ(n2h.moves, 1u);
  EXPECT_EQ(n2h.bytes, 2 * kM);
  EXPECT_DOUBLE_EQ(n2h.gbps, 0.5);
  const Traffic& h2d = tr[kHost][kDev];
  EXPECT_EQ(h2d.moves, 2u);
  EXPECT_EQ(h2d.bytes, 10 * kM);
  EXPECT_EQ(h2d.ns, 6 * kM + 1000);
  EXPECT_DOUBLE_EQ(h2d.gbps, 10.0 * kM / (6.0 * kM + 1000));
  EXPECT_DOUBLE_EQ(h2d.median_gbps, (1.0 + 4.0 * kM / 1000) / 2);
  EXPECT_EQ(tr[kDev][kNvme].moves, 0u);
  EXPECT_EQ(tr[kNvme][kDev].moves, 0u);
  EXPECT_DOUBLE_EQ(tr[kNvme][kDev].gbps, 0.0);
}

TEST(OffloadReport, StallsAndPrefetchHitRate) {
  const Model m = AnalyzeLogs(Journey());
  const Offload& o = m.offload;
  EXPECT_EQ(o.stalls, 1u);
  EXPECT_EQ(o.stall_ns, 1000u);
  EXPECT_EQ(o.longest_stall.wait_ns, 1000u);
  EXPECT_EQ(o.longest_stall.t_ns, 80 * kMs);
  EXPECT_EQ(o.longest_stall.addr, kBase + 8 * kM);
  EXPECT_EQ(o.longest_stall.bytes, 4 * kM);
  ASSERT_EQ(o.stall_list.size(), 1u);
  // Two fetches reached the device (t=70 prefetch, t=80 demand); nvme->host does not count.
  EXPECT_EQ(o.fetches_to_device, 2u);
  EXPECT_EQ(o.prefetches_to_device, 1u);
  EXPECT_DOUBLE_EQ(o.prefetch_hit_rate, 0.5);
}

TEST(OffloadReport, StallsSumAndLongest) {
  SyntheticLog l;
  l.Alloc(1 * kMs, kBase, 2 * kM, 2 * kM);
  const std::uint64_t took[] = {100, 300, 200, 500};  // three demand fetches, then a prefetch
  for (std::uint64_t i = 0; i < 4; ++i) {             // out and back four times
    l.Evict((10 + 10 * i) * kMs, kBase, 2 * kM, kDev, kHost, 1000);
    l.Fetch((15 + 10 * i) * kMs, kBase, 2 * kM, kHost, kDev, took[i], /*demand=*/i != 3);
  }
  const Model m = AnalyzeLogs(l);
  const Offload& o = m.offload;
  EXPECT_EQ(o.stalls, 3u);
  EXPECT_EQ(o.stall_ns, 600u);
  EXPECT_EQ(o.longest_stall.wait_ns, 300u);
  EXPECT_EQ(o.longest_stall.t_ns, 25 * kMs);
  EXPECT_EQ(o.fetches_to_device, 4u);
  EXPECT_DOUBLE_EQ(o.prefetch_hit_rate, 0.25);
  // Medians of an odd count: device->host all 2M/1000ns; host->device 2M over 100, 200, 300, 500.
  EXPECT_DOUBLE_EQ(o.traffic[kDev][kHost].median_gbps, 2.0 * kM / 1000);
  EXPECT_DOUBLE_EQ(o.traffic[kHost][kDev].median_gbps, (2.0 * kM / 300 + 2.0 * kM / 200) / 2);
}

TEST(OffloadReport, BlockFreedWhileOnHostLeavesTheHost) {
  SyntheticLog l;
  l.Alloc(10 * kMs, kBase, 6 * kM, 6 * kM);
  l.Alloc(20 * kMs, kBase + 6 * kM, 2 * kM, 2 * kM);
  l.Evict(30 * kMs, kBase, 6 * kM, kDev, kHost, kM);
  l.Evict(40 * kMs, kBase + 6 * kM, 2 * kM, kDev, kNvme, kM);
  l.Free(50 * kMs, kBase);                   // 6M on the host disappear
  l.Free(60 * kMs, kBase + 6 * kM);          // 2M on NVMe disappear
  l.Alloc(70 * kMs, kBase, 6 * kM, 6 * kM);  // the address again: a new block, on the device
  const Model m = AnalyzeLogs(l);
  const TierBytes at40 = TierAt(m, 0, 40 * kMs);
  EXPECT_EQ(at40.device, 0u);
  EXPECT_EQ(at40.host, 6 * kM);
  EXPECT_EQ(at40.nvme, 2 * kM);
  const TierBytes at50 = TierAt(m, 0, 50 * kMs);
  EXPECT_EQ(at50.host, 0u);
  EXPECT_EQ(at50.nvme, 2 * kM);
  EXPECT_EQ(at50.device, 0u);
  const TierBytes at60 = TierAt(m, 0, 60 * kMs);
  EXPECT_EQ(at60.nvme, 0u);
  const TierBytes at70 = TierAt(m, 0, 70 * kMs);
  EXPECT_EQ(at70.device, 6 * kM);
  EXPECT_EQ(at70.host, 0u);
  EXPECT_EQ(m.offload.devices[0].peak_host, 6 * kM);
  EXPECT_EQ(m.offload.devices[0].peak_nvme, 2 * kM);
  EXPECT_EQ(m.offload.devices[0].peak_device, 8 * kM);
}

TEST(OffloadReport, NvmeRoundTrip) {
  SyntheticLog l;
  l.Alloc(10 * kMs, kBase, 4 * kM, 4 * kM);
  l.Evict(20 * kMs, kBase, 4 * kM, kDev, kNvme, 2 * kM);               // 2 GB/s
  l.Fetch(30 * kMs, kBase, 4 * kM, kNvme, kDev, kM, /*demand=*/true);  // 4 GB/s, a stall
  l.Evict(40 * kMs, kBase, 4 * kM, kDev, kHost, kM);
  l.Evict(50 * kMs, kBase, 4 * kM, kHost, kNvme, kM);
  l.Fetch(60 * kMs, kBase, 4 * kM, kNvme, kHost, kM);
  l.Fetch(70 * kMs, kBase, 4 * kM, kHost, kDev, kM);
  const Model m = AnalyzeLogs(l);
  const Offload& o = m.offload;
  EXPECT_EQ(o.traffic[kDev][kNvme].moves, 1u);
  EXPECT_DOUBLE_EQ(o.traffic[kDev][kNvme].gbps, 2.0);
  EXPECT_EQ(o.traffic[kNvme][kDev].moves, 1u);
  EXPECT_EQ(o.traffic[kNvme][kDev].bytes, 4 * kM);
  EXPECT_DOUBLE_EQ(o.traffic[kNvme][kDev].gbps, 4.0);
  EXPECT_EQ(o.traffic[kHost][kNvme].moves, 1u);
  EXPECT_EQ(o.traffic[kNvme][kHost].moves, 1u);
  EXPECT_EQ(TierAt(m, 0, 20 * kMs).nvme, 4 * kM);
  EXPECT_EQ(TierAt(m, 0, 20 * kMs).device, 0u);
  EXPECT_EQ(TierAt(m, 0, 30 * kMs).nvme, 0u);
  EXPECT_EQ(TierAt(m, 0, 30 * kMs).device, 4 * kM);
  EXPECT_EQ(TierAt(m, 0, 50 * kMs).nvme, 4 * kM);
  EXPECT_EQ(TierAt(m, 0, 50 * kMs).host, 0u);
  EXPECT_EQ(TierAt(m, 0, 60 * kMs).host, 4 * kM);
  EXPECT_EQ(TierAt(m, 0, 70 * kMs).device, 4 * kM);
  EXPECT_EQ(o.stalls, 1u);
  EXPECT_EQ(o.fetches_to_device, 2u);  // nvme->device (demand) and host->device (prefetch)
  EXPECT_DOUBLE_EQ(o.prefetch_hit_rate, 0.5);
}

TEST(OffloadReport, PartialMovesKeepTheEdgesOnTheDevice) {
  SyntheticLog l;
  // 5M requested in a 6M block: 4M of whole pages move, 1M of requested bytes stay.
  l.Alloc(10 * kMs, kBase, 5 * kM, 6 * kM);
  l.Evict(20 * kMs, kBase, 4 * kM, kDev, kHost, kM);
  // 3M + 1 requested in a 4M block, all 4M moved: nothing of it counts on the device.
  l.Alloc(30 * kMs, kBase + 6 * kM, 3 * kM + 1, 4 * kM);
  l.Evict(40 * kMs, kBase + 6 * kM, 4 * kM, kDev, kHost, kM);
  const Model m = AnalyzeLogs(l);
  EXPECT_EQ(TierAt(m, 0, 20 * kMs).device, kM);
  EXPECT_EQ(TierAt(m, 0, 20 * kMs).host, 4 * kM);
  EXPECT_EQ(TierAt(m, 0, 40 * kMs).device, kM);
  EXPECT_EQ(TierAt(m, 0, 40 * kMs).host, 8 * kM);
}

TEST(OffloadReport, ErrorCountsAndTheFirstOnes) {
  SyntheticLog l;
  l.Alloc(1 * kMs, kBase, 2 * kM, 2 * kM);
  l.OffloadError(10 * kMs, kBase, 2 * kM, trace::kErrHostLimit, 3);
  l.OffloadError(11 * kMs, kBase, 2 * kM, trace::kErrNvmeFull);
  l.OffloadError(12 * kMs, kBase, 2 * kM, trace::kErrHostLimit);
  l.OffloadError(13 * kMs, kBase, 2 * kM, 99);  // unknown reason
  for (int i = 0; i < 10; ++i) l.OffloadError((20 + i) * kMs, kBase, kM, trace::kErrChecksum);
  const Model m = AnalyzeLogs(l);
  const Offload& o = m.offload;
  EXPECT_EQ(o.errors, 14u);
  EXPECT_EQ(o.errors_by_reason[trace::kErrHostLimit], 2u);
  EXPECT_EQ(o.errors_by_reason[trace::kErrNvmeFull], 1u);
  EXPECT_EQ(o.errors_by_reason[trace::kErrChecksum], 10u);
  EXPECT_EQ(o.errors_by_reason[trace::kErrNvmeIo], 0u);
  EXPECT_EQ(o.errors_by_reason[0], 1u);
  ASSERT_EQ(o.first_errors.size(), 10u);
  EXPECT_EQ(o.first_errors[0].t_ns, 10 * kMs);
  EXPECT_EQ(o.first_errors[0].addr, kBase);
  EXPECT_EQ(o.first_errors[0].bytes, 2 * kM);
  EXPECT_EQ(o.first_errors[0].reason, trace::kErrHostLimit);
  EXPECT_EQ(o.first_errors[0].status, 3u);
  EXPECT_EQ(o.first_errors[3].reason, 99u);
  EXPECT_EQ(o.evictions + o.fetches, 0u);
  EXPECT_EQ(TierAt(m, 0, 30 * kMs).device, 2 * kM);  // nothing moved
  const std::string text = RenderText(m);
  EXPECT_TRUE(Has(text, "errors: 14 (host limit 2, NVMe full 1, checksum mismatch 10, other 1)"))
      << text;
  EXPECT_TRUE(Has(text, "... 4 more")) << text;
  const std::string json = RenderJson(m);
  EXPECT_TRUE(Has(json,
                  "\"by_reason\":{\"host_limit\":2,\"nvme_full\":1,\"nvme_io\":0,"
                  "\"checksum\":10,\"device_full\":0,\"other\":1}"))
      << json;
  EXPECT_TRUE(Has(RenderHtml(m), "host limit: 2"));
  EXPECT_TRUE(Has(RenderChromeTrace(m), "offload error: host limit"));
}

TEST(OffloadReport, MovesOfUnknownBlocksAndBadTiers) {
  SyntheticLog l;
  l.Alloc(10 * kMs, kBase, 2 * kM, 2 * kM);
  l.Evict(20 * kMs, kBase + 64 * kM, 2 * kM, kDev, kHost, kM);  // no block there
  l.Evict(30 * kMs, kBase, 2 * kM, kHost, kHost, kM);           // from == to
  l.Evict(40 * kMs, kBase, 2 * kM, 7, kHost, kM);               // no such tier
  const Model m = AnalyzeLogs(l);
  EXPECT_EQ(m.offload.traffic[kDev][kHost].moves, 1u);
  EXPECT_EQ(m.offload.unknown_block_moves, 1u);
  EXPECT_EQ(m.offload.bad_moves, 2u);
  EXPECT_EQ(TierAt(m, 0, 50 * kMs).host, 0u);
  EXPECT_EQ(TierAt(m, 0, 50 * kMs).device, 2 * kM);
  EXPECT_EQ(OffloadNotes(m), 2u);
}

TEST(OffloadReport, TextSectionOnlyWithOffload) {
  SyntheticLog plain;
  plain.Alloc(10 * kMs, kBase, 2 * kM, 2 * kM);
  plain.Free(20 * kMs, kBase);
  const Model pm = AnalyzeLogs(plain);
  EXPECT_EQ(pm.offload.events, 0u);
  EXPECT_TRUE(pm.offload.tiers.empty());
  EXPECT_TRUE(pm.offload.devices.empty());
  EXPECT_FALSE(Has(RenderText(pm), "offload"));  // the path is "mem-100"

  const std::string text = RenderText(AnalyzeLogs(Journey()));
  EXPECT_TRUE(Has(text, "offload: 3 evictions, 3 fetches, 0 errors")) << text;
  EXPECT_TRUE(Has(text,
                  "peak on the device 12.00 MiB at 0.020 s, on the host 10.00 MiB at "
                  "0.040 s, on NVMe 2.00 MiB at 0.050 s"))
      << text;
  EXPECT_TRUE(Has(text, "device->host          2 moves    10.00 MiB  2.50 GB/s (median 3.00 GB/s)"))
      << text;
  EXPECT_TRUE(Has(text, "stalls: 1, waited 1.000 us in all, longest 1.000 us")) << text;
  EXPECT_TRUE(Has(text, "prefetch hit rate: 50.0% (1 of the 2 fetches")) << text;
}

// The text of a log without offload records is what it was before offload existed: the same
// model with every offload figure cleared renders the same text.
TEST(OffloadReport, TextUnchangedWithoutOffload) {
  SyntheticLog l;
  l.Add(1, Kind::kChunkCreate).size = 8 * kM;
  l.Alloc(10 * kMs, kBase, 2 * kM, 2 * kM);
  l.Alloc(20 * kMs, kBase + 2 * kM, 3 * kM, 4 * kM);
  l.Free(30 * kMs, kBase);
  Model m = AnalyzeLogs(l);
  const std::string text = RenderText(m);
  m.offload = Offload{};
  EXPECT_EQ(RenderText(m), text);
  EXPECT_FALSE(Has(RenderHtml(m), "Memory by tier"));
  EXPECT_FALSE(Has(RenderChromeTrace(m), "tier: "));
}

TEST(OffloadReport, JsonHasTheOffloadObject) {
  SyntheticLog plain;
  plain.Alloc(10 * kMs, kBase, 2 * kM, 2 * kM);
  const std::string pj = RenderJson(AnalyzeLogs(plain));
  EXPECT_TRUE(Has(pj, "\"offload\":{\"events\":0,"));
  EXPECT_TRUE(Has(pj, "\"devices\":[],\"tiers\":[]}"));
  EXPECT_TRUE(Has(pj, "\"stalls\":{\"count\":0,\"wait_ns\":0,\"longest\":null}"));

  const Model m = AnalyzeLogs(Journey());
  const std::string j = RenderJson(m);
  for (const char* key :
       {"\"offload\":{\"events\":6,\"evictions\":3,\"fetches\":3",
        "{\"from\":\"device\",\"to\":\"host\",\"moves\":2,\"bytes\":10485760,",
        "\"gbps\":2.5,\"median_gbps\":3}", "{\"from\":\"nvme\",\"to\":\"device\",\"moves\":0,",
        "\"stalls\":{\"count\":1,\"wait_ns\":1000,\"longest\":{\"t_ns\":80000000,"
        "\"wait_ns\":1000,",
        "\"prefetch\":{\"fetches_to_device\":2,\"prefetches\":1,\"demand\":1,"
        "\"hit_rate\":0.5}",
        "\"peak_host\":10485760,\"peak_host_ns\":40000000",
        "\"columns\":[\"t_ns\",\"device\",\"host\",\"nvme\"]", "[40000000,2097152,10485760,0]"})
    EXPECT_TRUE(Has(j, key)) << key;
  if (std::system("python3 -c 'import json' >/dev/null 2>&1") == 0) {
    const std::string path =
        testing::TempDir() + "offload_report_" + std::to_string(getpid()) + ".json";
    std::ofstream(path, std::ios::binary) << j;
    const std::string cmd =
        "python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))[\"offload\"];"
        " assert len(d[\"traffic\"]) == 6 and d[\"stalls\"][\"count\"] == 1;"
        " assert len(d[\"tiers\"][0][\"samples\"]) > 5' '" +
        path + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    std::remove(path.c_str());
  }
}

TEST(OffloadReport, ChromeTraceHasTierCountersAndStallSlices) {
  const std::string c = RenderChromeTrace(AnalyzeLogs(Journey()));
  EXPECT_TRUE(Has(c,
                  "{\"name\":\"tier: device\",\"ph\":\"C\",\"ts\":40000.000,\"pid\":100,"
                  "\"tid\":0,\"args\":{\"MiB\":2}}"))
      << c;
  EXPECT_TRUE(Has(c,
                  "{\"name\":\"tier: host\",\"ph\":\"C\",\"ts\":40000.000,\"pid\":100,"
                  "\"tid\":0,\"args\":{\"MiB\":10}}"));
  EXPECT_TRUE(Has(c,
                  "{\"name\":\"tier: nvme\",\"ph\":\"C\",\"ts\":50000.000,\"pid\":100,"
                  "\"tid\":0,\"args\":{\"MiB\":2}}"));
  // The stall: 1000 ns ending at 80 ms.
  EXPECT_TRUE(Has(c,
                  "{\"name\":\"stall: host->device\",\"cat\":\"stall\",\"ph\":\"X\","
                  "\"ts\":79999.000,\"dur\":1.000,\"pid\":100,\"tid\":2,"))
      << c;
  EXPECT_TRUE(Has(c, "\"args\":{\"name\":\"offload stalls\"}"));

  // Two devices in one process: the tracks name their device.
  SyntheticLog l;
  l.Alloc(10 * kMs, kBase, 2 * kM, 2 * kM, 0);
  l.Alloc(20 * kMs, kBase + 2 * kM, 2 * kM, 2 * kM, 1);
  l.Evict(30 * kMs, kBase + 2 * kM, 2 * kM, kDev, kHost, kM, 1);
  const Model m2 = AnalyzeLogs(l);
  const std::string c2 = RenderChromeTrace(m2);
  EXPECT_TRUE(Has(c2, "\"tier: host (device 1)\""));
  EXPECT_TRUE(Has(c2, "\"tier: host (device 0)\""));
  ASSERT_EQ(m2.offload.devices.size(), 2u);
  EXPECT_EQ(m2.offload.devices[1].device, 1);
  EXPECT_EQ(m2.offload.devices[1].peak_host, 2 * kM);
  EXPECT_EQ(m2.offload.devices[0].peak_host, 0u);
  EXPECT_EQ(m2.offload.devices[0].peak_device, 2 * kM);
}

TEST(OffloadReport, HtmlTierPlotOnlyWithOffload) {
  const std::string h = RenderHtml(AnalyzeLogs(Journey()));
  EXPECT_TRUE(Has(h, "<h2>Memory by tier</h2>"));
  EXPECT_TRUE(Has(h, "aria-label=\"memory by tier, GPU 0\""));
  EXPECT_TRUE(Has(h, "<title>on the host</title>"));
  EXPECT_TRUE(Has(h, "<h2>Offload</h2>"));
  EXPECT_TRUE(Has(h, "device \xe2\x86\x92 host"));
  EXPECT_TRUE(Has(h, "2.50 GB/s"));
  EXPECT_TRUE(Has(h, "50.0% (1 of 2)"));
  // Still self-contained: nothing fetched.
  EXPECT_FALSE(Has(h, "http://"));
  EXPECT_FALSE(Has(h, "https://"));
  EXPECT_FALSE(Has(h, "src=\""));

  SyntheticLog plain;
  plain.Alloc(10 * kMs, kBase, 2 * kM, 2 * kM);
  const std::string hp = RenderHtml(AnalyzeLogs(plain));
  EXPECT_FALSE(Has(hp, "Memory by tier"));
  EXPECT_FALSE(Has(hp, "<h2>Offload</h2>"));
}

std::string TempPath(const std::string& name) {
  return testing::TempDir() + "offload_report_" + std::to_string(getpid()) + "_" + name;
}

// A version 1 log (48-byte records, no aux fields) reads and reports as before: no offload.
TEST(OffloadReport, VersionOneLogsHaveNoOffload) {
  const std::string path = TempPath("v1.trace");
  {
    trace::Header h{};
    std::memcpy(h.magic, trace::kMagic, 8);
    h.version = 1;
    h.header_size = sizeof(trace::Header);
    h.record_size = sizeof(trace::RecordV1);
    h.pid = 7;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&h), sizeof h);
    trace::RecordV1 a{10, kBase, kM, 0, 0, 0, 1, 0};
    trace::RecordV1 f{20, kBase, 0, 0, 1, 0, 2, 0};
    out.write(reinterpret_cast<const char*>(&a), sizeof a);
    out.write(reinterpret_cast<const char*>(&f), sizeof f);
  }
  trace::Trace t;
  std::string err;
  ASSERT_TRUE(trace::ReadTrace(path, &t, &err)) << err;
  std::remove(path.c_str());
  const Model m = AnalyzeLogs(std::vector<trace::Trace>{t});
  EXPECT_EQ(m.devices[0].peak_allocated, kM);
  EXPECT_EQ(m.offload.events, 0u);
  EXPECT_TRUE(m.offload.tiers.empty());
  EXPECT_FALSE(Has(RenderText(m), "\noffload:"));
  EXPECT_TRUE(Has(RenderJson(m), "\"offload\":{\"events\":0,"));
}

// The real writer (TraceWriter::offload) to a file, read back and reported.
TEST(OffloadReport, FromTheTraceWriter) {
  const std::string path = TempPath("w.trace");
  {
    trace::TraceWriter w;
    std::string err;
    ASSERT_TRUE(w.open(path, &err)) << err;
    w.record(Kind::kApiMalloc, 0, nullptr, kBase, 4 * kM, 0, 4 * kM);
    w.offload(Kind::kEvict, 0, kBase, 4 * kM, 2000, 0x9, (kDev << 8) | kHost);
    w.offload(Kind::kFetch, 0, kBase, 4 * kM, 500, 0x9, (kHost << 8) | kDev | trace::kFetchDemand);
    w.offload(Kind::kOffloadError, 0, kBase, 4 * kM, 0, 0, trace::kErrDeviceFull, 2);
    w.record(Kind::kApiFree, 0, nullptr, kBase, 0, 0);
    w.close();
  }
  trace::Trace t;
  std::string err;
  ASSERT_TRUE(trace::ReadTrace(path, &t, &err)) << err;
  std::remove(path.c_str());
  const Model m = AnalyzeLogs(std::vector<trace::Trace>{t});
  const Offload& o = m.offload;
  EXPECT_EQ(o.events, 3u);
  EXPECT_EQ(o.traffic[kDev][kHost].bytes, 4 * kM);
  EXPECT_EQ(o.traffic[kHost][kDev].bytes, 4 * kM);
  EXPECT_EQ(o.stalls, 1u);
  EXPECT_EQ(o.stall_ns, 500u);
  EXPECT_EQ(o.errors_by_reason[trace::kErrDeviceFull], 1u);
  EXPECT_EQ(o.devices[0].peak_host, 4 * kM);
  EXPECT_DOUBLE_EQ(o.prefetch_hit_rate, 0.0);
  EXPECT_TRUE(Has(RenderText(m), "device full"));
}

}  // namespace
}  // namespace spillway::report
