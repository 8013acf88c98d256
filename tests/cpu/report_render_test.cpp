// Tests of the HTML report and the PyTorch memory_viz snapshot, on a hand-built Model.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "profiler/report/pickle.h"
#include "profiler/report/render.h"
#include "tests/cpu/report_synthetic.h"

namespace spillway::report {
namespace {

std::size_t Count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/spillway_report_" + std::to_string(::getpid()) + "_" + name;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
  ASSERT_TRUE(f.good()) << path;
}

bool HavePython() { return std::system("python3 -c 'import pickle' >/dev/null 2>&1") == 0; }

// Runs `script` with python3, the pickle file as argv[1]; returns its exit status.
int RunPython(const std::string& script, const std::string& pickle_path) {
  const std::string py = TempPath("check.py");
  WriteFile(py, script);
  const int rc = std::system(("python3 " + py + " " + pickle_path).c_str());
  std::remove(py.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// ---- HTML -----------------------------------------------------------------------------------

TEST(RenderHtml, ShowsThePeaks) {
  const std::string h = RenderHtml(test::SyntheticModel());
  EXPECT_EQ(h.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(h.find("4.40 GiB"), std::string::npos);   // peak allocated, device 0
  EXPECT_NE(h.find("4.84 GiB"), std::string::npos);   // peak reserved, device 0
  EXPECT_NE(h.find("2.70 GiB"), std::string::npos);   // peak allocated, device 1
  EXPECT_NE(h.find("1.200 s"), std::string::npos);    // when
  EXPECT_NE(h.find("2.3%"), std::string::npos);       // internal fragmentation at the peak
  EXPECT_NE(h.find("1.10\xc3\x97"), std::string::npos);  // reserved / allocated
  EXPECT_NE(h.find("GPU 1"), std::string::npos);
  EXPECT_NE(h.find("0x7f0000000000"), std::string::npos);  // a block of the top-ten table
  EXPECT_NE(h.find("out of memory: 6.00 GiB requested"), std::string::npos);
  EXPECT_NE(h.find("forward"), std::string::npos);
  // One plot per series for memory and fragmentation, two histograms, one Gantt chart.
  EXPECT_EQ(Count(h, "<svg"), 2u + 2u + 2u + 1u);
  EXPECT_EQ(Count(h, "<svg"), Count(h, "</svg>"));
  EXPECT_EQ(Count(h, "<table"), Count(h, "</table>"));
}

TEST(RenderHtml, EscapesLabelsAndLoadsNothing) {
  const std::string h = RenderHtml(test::SyntheticModel());
  EXPECT_EQ(h.find(test::kHostileLabel), std::string::npos);
  EXPECT_NE(h.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(h.find("alert(1)</"), std::string::npos);
  EXPECT_EQ(Count(h, "<script"), 1u);  // only the page's own
  EXPECT_NE(h.find("optimizer &quot;step&quot; &amp; &#39;more&#39;"), std::string::npos);
  EXPECT_EQ(h.find("http://"), std::string::npos);
  EXPECT_EQ(h.find("https://"), std::string::npos);
  EXPECT_EQ(h.find(" src="), std::string::npos);
  EXPECT_EQ(h.find("<link"), std::string::npos);
}

TEST(RenderHtml, EscapesProcessPaths) {
  auto m = test::SyntheticModel();
  m.processes[0].path = "/tmp/<img onerror=x>\"'&.bin";
  const std::string h = RenderHtml(m);
  EXPECT_EQ(h.find("<img"), std::string::npos);
  EXPECT_NE(h.find("/tmp/&lt;img onerror=x&gt;&quot;&#39;&amp;.bin"), std::string::npos);
}

TEST(RenderHtml, EmptyModel) {
  const std::string h = RenderHtml(Model{});
  EXPECT_NE(h.find("No device memory activity was recorded"), std::string::npos);
  EXPECT_NE(h.find("</html>"), std::string::npos);
  EXPECT_EQ(h.find("<svg"), std::string::npos);
}

TEST(RenderHtml, DegenerateValues) {
  // Zero-length run, samples of zeros, infinite and NaN ratios: no crash, no "nan"/"inf" text.
  Model m;
  m.processes.push_back({"x", 1, -1, 0, 0});
  Series se;
  Sample s;
  s.overhead = std::numeric_limits<double>::infinity();
  s.external = std::numeric_limits<double>::quiet_NaN();
  se.samples = {s, s};
  m.series.push_back(se);
  DeviceSummary d;
  d.at_peak = s;
  d.largest_at_peak = {7};  // out of range: ignored
  m.devices.push_back(d);
  m.sizes.bucket_floor = {512};
  m.sizes.count = {0};
  m.sizes.bytes = {0};
  const std::string h = RenderHtml(m);
  EXPECT_EQ(h.find("nan"), std::string::npos);
  EXPECT_EQ(h.find("inf\""), std::string::npos);
  EXPECT_EQ(Count(h, "<svg"), Count(h, "</svg>"));
}

// ---- pickle ---------------------------------------------------------------------------------

TEST(Pickle, ValuesRoundTripThroughPython) {
  if (!HavePython()) GTEST_SKIP() << "python3 not found";
  PickleWriter w;
  w.BeginList();
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{255}, std::int64_t{256},
                         std::int64_t{65535}, std::int64_t{65536}, std::int64_t{-1},
                         std::int64_t{-129}, std::int64_t{INT32_MIN}, std::int64_t{INT32_MAX},
                         std::int64_t{1} << 31, std::int64_t{1} << 32,
                         std::int64_t{0x7f0000000000}, INT64_MAX, INT64_MIN}) {
    w.Int(v);
  }
  w.UInt(UINT64_MAX);
  w.UInt(1ull << 63);
  w.Float(1.5);
  w.Float(-0.1);
  w.Bool(true);
  w.Bool(false);
  w.None();
  w.Str("h\xc3\xa9llo");
  w.Str("bad \xff\xfe utf8");
  w.BeginTuple2();
  w.Int(0);
  w.Int(0);
  w.EndTuple2();
  w.BeginList();  // more than one batch
  for (int i = 0; i < 2500; ++i) w.Int(i);
  w.EndList();
  w.BeginDict();
  for (int i = 0; i < 2500; ++i) {
    w.Str("k" + std::to_string(i));
    w.Int(i);
  }
  w.EndDict();
  w.BeginList();
  w.EndList();
  w.BeginDict();
  w.EndDict();
  w.EndList();
  const std::string path = TempPath("values.pickle");
  WriteFile(path, w.Finish());
  const char* script = R"PY(
import pickle, pickletools, sys
data = open(sys.argv[1], 'rb').read()
for op, arg, pos in pickletools.genops(data):
    assert op.proto <= 2, (op.name, op.proto)
v = pickle.loads(data)
want = [0, 255, 256, 65535, 65536, -1, -129, -2**31, 2**31 - 1, 2**31, 2**32, 0x7f0000000000,
        2**63 - 1, -2**63, 2**64 - 1, 2**63, 1.5, -0.1, True, False, None, 'h\u00e9llo',
        'bad \ufffd\ufffd utf8', (0, 0), list(range(2500)),
        {'k%d' % i: i for i in range(2500)}, [], {}]
assert v == want, [(i, a, b) for i, (a, b) in enumerate(zip(v, want)) if a != b or type(a) != type(b)]
for a, b in zip(v, want):
    assert type(a) is type(b), (a, b)
)PY";
  EXPECT_EQ(RunPython(script, path), 0);
  std::remove(path.c_str());
}

// ---- memory_viz snapshot --------------------------------------------------------------------

// Checks what torch.cuda._memory_viz (segsum, trace, trace_plot) and memory_viz.html read.
constexpr const char* kSnapshotCheck = R"PY(
import pickle, pickletools, sys
data = open(sys.argv[1], 'rb').read()
for op, arg, pos in pickletools.genops(data):
    assert op.proto <= 2, (op.name, op.proto)
s = pickle.loads(data)
want_segments, want_traces = int(sys.argv[2]), [int(x) for x in sys.argv[3].split(',') if x]
assert isinstance(s, dict)
assert isinstance(s['segments'], list) and isinstance(s['device_traces'], list)
assert len(s['segments']) == want_segments, len(s['segments'])
assert [len(t) for t in s['device_traces']] == want_traces, [len(t) for t in s['device_traces']]
seg_types = dict(device=int, address=int, total_size=int, allocated_size=int, active_size=int,
                 requested_size=int, stream=int, segment_type=str, segment_pool_id=tuple,
                 is_expandable=bool, frames=list, blocks=list)
blk_types = dict(address=int, size=int, requested_size=int, state=str, frames=list)
active = 0
for seg in s['segments']:
    for k, t in seg_types.items():
        assert type(seg[k]) is t, (k, seg[k])
    assert seg['segment_type'] in ('large', 'small')
    # segsum: the blocks tile the segment and free_internal + free_external + allocated == total.
    addr, total_alloc, free_int, free_ext = seg['address'], 0, 0, 0
    for b in seg['blocks']:
        for k, t in blk_types.items():
            assert type(b[k]) is t, (k, b[k])
        assert b['address'] == addr, (hex(b['address']), hex(addr))
        assert b['size'] > 0
        if b['state'] == 'active_allocated':
            active += 1
            assert 0 < b['requested_size'] <= b['size']
            total_alloc += b['requested_size']
            free_int += b['size'] - b['requested_size']
        else:
            assert b['state'] == 'inactive'
            free_ext += b['size']
        addr += b['size']
    assert addr == seg['address'] + seg['total_size']
    assert total_alloc + free_int + free_ext == seg['total_size']
    assert seg['allocated_size'] == sum(b['size'] for b in seg['blocks'] if b['state'] == 'active_allocated')
assert active == int(sys.argv[4]), active
entry_types = dict(action=str, addr=int, size=int, stream=int, time_us=int, frames=list)
for d, trace in enumerate(s['device_traces']):
    live = {}
    last = 0
    segs = [(g['address'], g['address'] + g['total_size']) for g in s['segments'] if g['device'] == d]
    for e in trace:
        for k, t in entry_types.items():
            assert type(e[k]) is t, (k, e)
        assert e['time_us'] >= last
        last = e['time_us']
        if e['action'] == 'oom':
            assert type(e['device_free']) is int
            continue
        # Every block lies inside a segment of its device (memory_viz's state view needs it).
        assert any(a <= e['addr'] and e['addr'] + e['size'] <= b for a, b in segs), hex(e['addr'])
        if e['action'] == 'alloc':
            assert e['addr'] not in live, hex(e['addr'])
            live[e['addr']] = e['size']
        elif e['action'] == 'free_requested':
            assert live.get(e['addr']) == e['size']
        elif e['action'] == 'free_completed':
            assert live.pop(e['addr']) == e['size']
        else:
            assert False, e['action']
    # What is still live matches the segments' active blocks.
    at_end = {b['address'] for g in s['segments'] if g['device'] == d for b in g['blocks']
              if b['state'] == 'active_allocated'}
    assert set(live) == at_end, (sorted(map(hex, live)), sorted(map(hex, at_end)))
)PY";

TEST(RenderMemviz, LoadsInPythonWithTheExpectedShape) {
  if (!HavePython()) GTEST_SKIP() << "python3 not found";
  const std::string path = TempPath("snapshot.pickle");
  WriteFile(path, RenderMemviz(test::SyntheticModel()));
  // Device 0: two merged address ranges, 45 blocks (6 live): 45 allocs + 39 * 2 frees.
  // Device 1: two ranges, 3 blocks (1 live): 3 allocs + 2 * 2 frees + 1 oom.
  const std::string script = std::string(kSnapshotCheck) + R"PY(
oom = [e for e in s['device_traces'][1] if e['action'] == 'oom']
assert len(oom) == 1 and oom[0]['size'] == 6 << 30 and oom[0]['time_us'] == 1750000
big = [g for g in s['segments'] if g['address'] == 0x7f0000000000][0]
assert big['total_size'] == (4 << 30) + (320 << 20), big['total_size']
assert big['device'] == 0 and big['blocks'][0]['size'] == 3 << 30
d1 = [g for g in s['segments'] if g['device'] == 1]
assert any(g['stream'] == 0x5555aaaa0000 for g in d1)
assert s['spillway_devices'] == [dict(index=0, process=0, pid=4242, rank=0, device=0),
                                 dict(index=1, process=0, pid=4242, rank=0, device=1)]
)PY";
  EXPECT_EQ(RunPython(script, path + " 4 123,8 7"), 0);
  std::remove(path.c_str());
}

// A block's call site goes into its "alloc" entry and its live segment block as PyTorch's frames
// (innermost first: C++, then Python): memory_viz shows where each allocation came from.
TEST(RenderMemviz, CallSitesBecomeFrames) {
  if (!HavePython()) GTEST_SKIP() << "python3 not found";
  auto m = test::SyntheticModel();
  m.callsites.push_back(
      "py /home/u/train.py:42 Model.forward\npy /home/u/my app/run: 2.py:7 <module>\n"
      "c at::empty+0x12 (libtorch_cpu.so)\nc libfoo.so+0x40");
  std::size_t live = m.blocks.size();
  for (std::size_t i = 0; i < m.blocks.size() && live == m.blocks.size(); ++i)
    if (m.blocks[i].live_at_end && m.blocks[i].device == 0) live = i;
  ASSERT_LT(live, m.blocks.size());
  m.blocks[live].callsite = 1;
  const std::string path = TempPath("frames.pickle");
  WriteFile(path, RenderMemviz(m));
  const std::string script = std::string(kSnapshotCheck) + R"PY(
want = [dict(filename='libtorch_cpu.so', line=0, name='at::empty+0x12 (libtorch_cpu.so)'),
        dict(filename='libfoo.so', line=0, name='libfoo.so+0x40'),
        dict(filename='/home/u/train.py', line=42, name='Model.forward'),
        dict(filename='/home/u/my app/run: 2.py', line=7, name='<module>')]
addr = int(sys.argv[5], 16)
allocs = [e for e in s['device_traces'][0] if e['action'] == 'alloc' and e['addr'] == addr]
assert allocs and allocs[-1]['frames'] == want, allocs
blocks = [b for g in s['segments'] for b in g['blocks'] if b['address'] == addr and
          b['state'] == 'active_allocated']
assert len(blocks) == 1 and blocks[0]['frames'] == want, blocks
others = [e for t in s['device_traces'] for e in t if e['addr'] != addr and e['frames']]
assert not others, others[:2]
)PY";
  char hex[32];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(m.blocks[live].addr));
  EXPECT_EQ(RunPython(script, path + " 4 123,8 7 " + hex), 0);
  std::remove(path.c_str());
}

TEST(RenderMemviz, SharedDeviceNumbersGetTheirOwnIndex) {
  if (!HavePython()) GTEST_SKIP() << "python3 not found";
  auto m = test::SyntheticModel();
  m.processes.push_back({"/tmp/run/trace.bin.77", 77, 1, 5, 10});
  Block b = m.blocks[0];  // the same address in another process, on device 0 as well
  b.process = 1;
  m.blocks.push_back(b);
  const std::string path = TempPath("shared.pickle");
  WriteFile(path, RenderMemviz(m));
  const std::string script = std::string(kSnapshotCheck) + R"PY(
assert [(d['process'], d['device'], d['index']) for d in s['spillway_devices']] == \
    [(0, 0, 0), (0, 1, 1), (1, 0, 2)]
)PY";
  EXPECT_EQ(RunPython(script, path + " 5 123,8,1 8"), 0);
  std::remove(path.c_str());
}

TEST(RenderMemviz, EmptyModel) {
  const std::string bytes = RenderMemviz(Model{});
  ASSERT_GE(bytes.size(), 3u);
  EXPECT_EQ(bytes.substr(0, 2), std::string("\x80\x02"));
  EXPECT_EQ(bytes.back(), '.');
  if (!HavePython()) GTEST_SKIP() << "python3 not found";
  const std::string path = TempPath("empty.pickle");
  WriteFile(path, bytes);
  const std::string script = std::string(kSnapshotCheck) + R"PY(
assert s == {'segments': [], 'device_traces': [], 'spillway_devices': []}, s
)PY";
  EXPECT_EQ(RunPython(script, path + " 0 '' 0"), 0);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace spillway::report
