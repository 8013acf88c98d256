// python_layout_test.cpp — the GIL-free Python frame reader (profiler/callsite/python_layout.*,
// python_nogil.*) on objects built in memory: str contents of every kind (ASCII, latin-1,
// UCS-2, UCS-4, a lone surrogate) and the strs it refuses; a frame chain with an entry shim, a
// frame not yet started, a generator's frame, an instruction outside the code, walked in the
// 3.11, 3.12 and 3.13 layouts; the layout check stopping at a wrong type or an instruction
// offset CPython computes otherwise; the 3.13 debug table's checks. Then the numbers themselves against offsetof() in the headers of each CPython 3.11-3.13
// found at configure time (python_layout_probe.c, one object per version; none found: those
// tests are not built).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "profiler/callsite/python_layout.h"
#include "profiler/callsite/python_nogil.h"
#include "python_layout_probe.h"

namespace spillway::callsite {
namespace {

using pylayout::DebugOffsets313;
using pylayout::Layout;

// Zeroed, 8-byte aligned memory for one fake object, kept alive by the test's arena.
struct Arena {
  std::vector<std::unique_ptr<std::uint64_t[]>> blocks;
  char* Get(std::size_t bytes) {
    blocks.emplace_back(new std::uint64_t[(bytes + 7) / 8]());
    return reinterpret_cast<char*>(blocks.back().get());
  }
};

template <typename T>
void Put(char* base, std::size_t off, T v) {
  std::memcpy(base + off, &v, sizeof v);
}

// Stand-ins for PyCode_Type and PyUnicode_Type: only their addresses matter.
char g_code_type, g_str_type, g_other_type;

// A compact str of `kind` (1, 2, 4) holding `text`; ascii: the compact ASCII form.
char* MakeStr(Arena& a, const Layout& l, const std::u32string& text, unsigned kind, bool ascii,
              bool compact = true) {
  const std::size_t data = ascii ? l.ascii_data : l.compact_data;
  char* s = a.Get(data + kind * (text.size() + 1));
  Put<const void*>(s, l.ob_type, &g_str_type);
  Put<std::int64_t>(s, l.str_length, static_cast<std::int64_t>(text.size()));
  Put<std::uint32_t>(s, l.str_state, (kind << 2) | (compact ? 1u << 5 : 0u) |
                                         (ascii ? 1u << 6 : 0u));
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (kind == 1) Put<std::uint8_t>(s, data + i, static_cast<std::uint8_t>(text[i]));
    if (kind == 2) Put<std::uint16_t>(s, data + 2 * i, static_cast<std::uint16_t>(text[i]));
    if (kind == 4) Put<std::uint32_t>(s, data + 4 * i, static_cast<std::uint32_t>(text[i]));
  }
  return s;
}

char* AsciiStr(Arena& a, const Layout& l, const std::string& text) {
  return MakeStr(a, l, std::u32string(text.begin(), text.end()), 1, true);
}

struct FakeCode {
  char* obj;
  char* units;  // co_code_adaptive
};

FakeCode MakeCode(Arena& a, const Layout& l, char* file, char* qualname, int firstlineno,
                  int firsttraceable, std::int64_t nunits = 32) {
  char* c = a.Get(l.code_adaptive + 2 * static_cast<std::size_t>(nunits));
  Put<const void*>(c, l.ob_type, &g_code_type);
  Put<std::int64_t>(c, l.ob_size, nunits);
  Put<const void*>(c, l.code_filename, file);
  Put<const void*>(c, l.code_qualname, qualname);
  Put<int>(c, l.code_firstlineno, firstlineno);
  Put<int>(c, l.code_firsttraceable, firsttraceable);
  return {c, c + l.code_adaptive};
}

char* MakeFrame(Arena& a, const Layout& l, const void* code, const void* instr, char owner,
                const void* previous) {
  char* f = a.Get(128);
  Put<const void*>(f, l.frame_code, code);
  Put<const void*>(f, l.frame_instr, instr);
  Put<char>(f, l.frame_owner, owner);
  Put<const void*>(f, l.frame_previous, previous);
  return f;
}

char* MakeThreadState(Arena& a, const Layout& l, const void* innermost) {
  char* ts = a.Get(512);
  if (l.through_cframe) {
    char* cframe = a.Get(64);
    Put<const void*>(cframe, l.cframe_frame, innermost);
    Put<const void*>(ts, l.tstate_frame, cframe);
  } else {
    Put<const void*>(ts, l.tstate_frame, innermost);
  }
  return ts;
}

int FakeAddr2Line(void* /*code*/, int byte_offset) { return 1000 + byte_offset; }

// PyUnstable_InterpreterFrame_GetLasti over the fake frames of g_lasti_layout, off by
// g_lasti_shift bytes (0: what CPython would answer).
const Layout* g_lasti_layout = nullptr;
int g_lasti_shift = 0;
int FakeLasti(void* frame) {
  const Layout& l = *g_lasti_layout;
  char* code;
  char* instr;
  std::memcpy(&code, static_cast<char*>(frame) + l.frame_code, sizeof code);
  std::memcpy(&instr, static_cast<char*>(frame) + l.frame_instr, sizeof instr);
  return static_cast<int>(instr - (code + l.code_adaptive)) + g_lasti_shift;
}

// 3.13's debug offsets table with the values CPython 3.13.0 fills in (x86-64 GIL build,
// checked against its headers below where they are installed).
DebugOffsets313 Table313() {
  DebugOffsets313 d;
  std::memset(&d, 0, sizeof d);
  std::memcpy(d.cookie, "xdebugpy", 8);
  d.version = 0x030D00F0;
  d.thread_state.current_frame = 72;
  d.interpreter_frame.previous = 8;
  d.interpreter_frame.executable = 0;
  d.interpreter_frame.instr_ptr = 56;
  d.interpreter_frame.owner = 70;
  d.pyobject.ob_type = 8;
  d.tuple_object.ob_size = 16;
  d.code_object.filename = 112;
  d.code_object.qualname = 128;
  d.code_object.firstlineno = 68;
  d.code_object.co_code_adaptive = 200;
  d.unicode_object.state = 32;
  d.unicode_object.length = 16;
  d.unicode_object.asciiobject_size = 40;
  return d;
}

Layout Layout313() {
  const DebugOffsets313 d = Table313();
  Layout l;
  std::string why;
  EXPECT_TRUE(pylayout::LayoutFromDebugOffsets(&d, 0x030D05F0, &l, &why)) << why;
  return l;
}

std::vector<Layout> AllLayouts() {
  return {*pylayout::FixedLayout(11), *pylayout::FixedLayout(12), Layout313()};
}

std::string Read(const Layout& l, const void* s, std::size_t max = 100) {
  std::string out;
  return pylayout::ReadStr(l, s, max, &out) ? out : "<refused>";
}

TEST(PythonLayout, OnlyTheKnownVersionsHaveFixedLayouts) {
  EXPECT_EQ(pylayout::FixedLayout(10), nullptr);
  EXPECT_EQ(pylayout::FixedLayout(13), nullptr);
  ASSERT_NE(pylayout::FixedLayout(11), nullptr);
  ASSERT_NE(pylayout::FixedLayout(12), nullptr);
  EXPECT_EQ(pylayout::FixedLayout(11)->minor, 11u);
  EXPECT_EQ(pylayout::FixedLayout(12)->minor, 12u);
}

TEST(PythonLayout, ReadsStrsOfEveryKindAsUtf8) {
  for (const Layout& l : AllLayouts()) {
    SCOPED_TRACE(l.minor);
    Arena a;
    EXPECT_EQ(Read(l, AsciiStr(a, l, "train.py")), "train.py");
    EXPECT_EQ(Read(l, AsciiStr(a, l, "")), "");
    EXPECT_EQ(Read(l, MakeStr(a, l, U"größe", 1, false)), "größe");
    EXPECT_EQ(Read(l, MakeStr(a, l, U"размер €", 2, false)), "размер €");
    EXPECT_EQ(Read(l, MakeStr(a, l, U"𠀀é😀x", 4, false)), "𠀀é😀x");
    // A lone surrogate (legal in a str, not in UTF-8) becomes U+FFFD.
    EXPECT_EQ(Read(l, MakeStr(a, l, std::u32string{U'a', char32_t{0xD800}, U'b'}, 2, false)),
              "a\xEF\xBF\xBD" "b");
    // Not compact (a legacy str), an unknown kind, longer than the limit: refused.
    EXPECT_EQ(Read(l, MakeStr(a, l, U"legacy", 1, false, /*compact=*/false)), "<refused>");
    EXPECT_EQ(Read(l, MakeStr(a, l, U"odd", 3, false)), "<refused>");
    EXPECT_EQ(Read(l, AsciiStr(a, l, "abcdef"), 5), "<refused>");
    EXPECT_EQ(Read(l, AsciiStr(a, l, "abcde"), 5), "abcde");
  }
}

TEST(PythonLayout, WalksAChainAcrossFrameKinds) {
  for (const Layout& l : AllLayouts()) {
    SCOPED_TRACE(l.minor);
    Arena a;
    const FakeCode outer = MakeCode(a, l, AsciiStr(a, l, "main.py"), AsciiStr(a, l, "main"),
                                    1, 0);
    const FakeCode gen = MakeCode(a, l, AsciiStr(a, l, "main.py"), AsciiStr(a, l, "gen"), 20, 2);
    const FakeCode fresh = MakeCode(a, l, AsciiStr(a, l, "main.py"), AsciiStr(a, l, "fresh"),
                                    30, 3);
    const FakeCode inner = MakeCode(a, l, MakeStr(a, l, U"/tmp/dätei.py", 1, false),
                                    MakeStr(a, l, U"Класс.größe", 2, false), 40, 1, 8);
    // Outermost first: main (at unit 5), a shim (3.12+), a generator's frame whose pointer is
    // before its first traceable unit (a generator's frame is never incomplete), a frame
    // pushed but not started (before its first traceable unit: skipped), another shim, and
    // the innermost frame with its pointer past its code (the first line is used).
    char* f_main = MakeFrame(a, l, outer.obj, outer.units + 10, 0, nullptr);
    char* f_shim1 = MakeFrame(a, l, nullptr, nullptr, pylayout::kOwnedByCStack, f_main);
    char* f_gen = MakeFrame(a, l, gen.obj, gen.units + 2, pylayout::kOwnedByGenerator, f_shim1);
    char* f_fresh = MakeFrame(a, l, fresh.obj, fresh.units + 4, 0, f_gen);
    char* f_shim2 = MakeFrame(a, l, nullptr, nullptr, pylayout::kOwnedByCStack, f_fresh);
    char* f_inner = MakeFrame(a, l, inner.obj, inner.units + 16, 0, f_shim2);
    char* ts = MakeThreadState(a, l, f_inner);

    WalkEnv env;
    env.layout = &l;
    env.code_type = &g_code_type;
    env.str_type = &g_str_type;
    env.addr2line = &FakeAddr2Line;
    PyFrame out[8];
    std::size_t n = 99;
    ASSERT_EQ(WalkFrames(env, ts, out, 8, &n), WalkStatus::kOk);
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(*out[0].where, "/tmp/dätei.py Класс.größe");
    EXPECT_EQ(out[0].line, 40);  // byte offset 16 = 8 units: outside the code's 8 units
    EXPECT_EQ(*out[1].where, "main.py gen");
    EXPECT_EQ(out[1].line, 1002);
    EXPECT_EQ(*out[2].where, "main.py main");
    EXPECT_EQ(out[2].line, 1010);
    // Texts are interned by content: the same pointer for the same text, whichever path.
    EXPECT_EQ(out[2].where, InternWhere("main.py", "main"));

    // At most `max` frames.
    ASSERT_EQ(WalkFrames(env, ts, out, 2, &n), WalkStatus::kOk);
    EXPECT_EQ(n, 2u);
    // Without PyCode_Addr2Line every frame gets its first line.
    env.addr2line = nullptr;
    ASSERT_EQ(WalkFrames(env, ts, out, 8, &n), WalkStatus::kOk);
    ASSERT_EQ(n, 3u);
    EXPECT_EQ(out[1].line, 20);
    EXPECT_EQ(out[2].line, 1);
    env.addr2line = &FakeAddr2Line;

    // The instruction offsets agree with CPython's own (GetLasti, 3.12+); one that does not
    // is a layout that does not fit.
    g_lasti_layout = &l;
    env.lasti = &FakeLasti;
    g_lasti_shift = 0;
    ASSERT_EQ(WalkFrames(env, ts, out, 8, &n), WalkStatus::kOk);
    EXPECT_EQ(n, 3u);
    g_lasti_shift = 2;
    EXPECT_EQ(WalkFrames(env, ts, out, 8, &n), WalkStatus::kBadLayout);
    EXPECT_EQ(n, 0u);
    env.lasti = nullptr;

    // A thread state with no frame (a thread back in C for good): nothing.
    ASSERT_EQ(WalkFrames(env, MakeThreadState(a, l, nullptr), out, 8, &n), WalkStatus::kOk);
    EXPECT_EQ(n, 0u);
  }
}

TEST(PythonLayout, StopsAtAnObjectOfTheWrongType) {
  for (const Layout& l : AllLayouts()) {
    SCOPED_TRACE(l.minor);
    Arena a;
    WalkEnv env;
    env.layout = &l;
    env.code_type = &g_code_type;
    env.str_type = &g_str_type;
    env.addr2line = &FakeAddr2Line;
    const FakeCode good = MakeCode(a, l, AsciiStr(a, l, "a.py"), AsciiStr(a, l, "f"), 1, 0);
    PyFrame out[8];
    std::size_t n = 0;

    // A code object that is not one (its type is another), below a good frame.
    FakeCode bad = MakeCode(a, l, AsciiStr(a, l, "a.py"), AsciiStr(a, l, "g"), 1, 0);
    Put<const void*>(bad.obj, l.ob_type, &g_other_type);
    char* outer = MakeFrame(a, l, bad.obj, bad.units + 2, 0, nullptr);
    char* inner = MakeFrame(a, l, good.obj, good.units + 2, 0, outer);
    EXPECT_EQ(WalkFrames(env, MakeThreadState(a, l, inner), out, 8, &n), WalkStatus::kBadLayout);
    EXPECT_EQ(n, 1u);  // what came before

    // A file name that is not a str; a function name that is not one; no code object at all.
    char* not_str = AsciiStr(a, l, "x");
    Put<const void*>(not_str, l.ob_type, &g_other_type);
    const FakeCode bad_file = MakeCode(a, l, not_str, AsciiStr(a, l, "f"), 1, 0);
    const FakeCode bad_name = MakeCode(a, l, AsciiStr(a, l, "a.py"), not_str, 1, 0);
    for (const void* code : {static_cast<const void*>(bad_file.obj),
                             static_cast<const void*>(bad_name.obj), static_cast<const void*>(nullptr)}) {
      char* f = MakeFrame(a, l, code, nullptr, pylayout::kOwnedByGenerator, nullptr);
      EXPECT_EQ(WalkFrames(env, MakeThreadState(a, l, f), out, 8, &n), WalkStatus::kBadLayout);
      EXPECT_EQ(n, 0u);
    }
  }
}

TEST(PythonLayout, DebugOffsetsTableIsChecked) {
  Layout l;
  std::string why;
  DebugOffsets313 d = Table313();
  ASSERT_TRUE(pylayout::LayoutFromDebugOffsets(&d, 0x030D00F0, &l, &why)) << why;
  EXPECT_EQ(l.minor, 13u);
  EXPECT_FALSE(l.through_cframe);
  EXPECT_EQ(l.tstate_frame, 72u);
  EXPECT_EQ(l.code_firsttraceable, 184u);  // co_code_adaptive - 16
  EXPECT_EQ(l.ascii_data, 40u);
  EXPECT_EQ(l.compact_data, 56u);

  EXPECT_FALSE(pylayout::LayoutFromDebugOffsets(&d, 0x030E00F0, &l, &why));  // 3.14
  EXPECT_EQ(why, "debug offsets of another version");
  d.version = 0x030E00A1;
  EXPECT_FALSE(pylayout::LayoutFromDebugOffsets(&d, 0x030D00F0, &l, &why));
  EXPECT_EQ(why, "debug offsets of another version");
  d = Table313();
  d.free_threaded = 1;
  EXPECT_FALSE(pylayout::LayoutFromDebugOffsets(&d, 0x030D00F0, &l, &why));
  EXPECT_EQ(why, "free-threaded build");
  d = Table313();
  d.cookie[0] = 'y';
  EXPECT_FALSE(pylayout::LayoutFromDebugOffsets(&d, 0x030D00F0, &l, &why));
  EXPECT_EQ(why, "no debug offsets cookie at _PyRuntime");
  d = Table313();
  d.code_object.qualname = 1u << 20;
  EXPECT_FALSE(pylayout::LayoutFromDebugOffsets(&d, 0x030D00F0, &l, &why));
  EXPECT_EQ(why, "an offset out of range in the debug offsets");
}

// ---- the numbers against the installed headers ------------------------------------------

[[maybe_unused]] void CheckAgainstHeaders(void (*probe)(PyLayoutProbe*)) {
  PyLayoutProbe p;
  probe(&p);
  const unsigned minor = (p.version >> 16) & 0xff;
  SCOPED_TRACE("CPython 3." + std::to_string(minor));
  ASSERT_EQ(p.version >> 24, 3u);
  ASSERT_EQ(p.free_threaded, 0);
  // The str state bits ReadStr decodes: kind bits 2-4, compact bit 5, ascii bit 6.
  EXPECT_EQ(p.state_kind_mask, 7u << 2);
  EXPECT_EQ(p.state_compact_mask, 1u << 5);
  EXPECT_EQ(p.state_ascii_mask, 1u << 6);
  EXPECT_EQ(p.owner_generator, pylayout::kOwnedByGenerator);
  if (minor >= 12) {
    EXPECT_EQ(p.owner_cstack, pylayout::kOwnedByCStack);
  }
  Layout l;
  if (minor == 13) {
    // Our mirror of _Py_DebugOffsets has the header's offsets for every field read.
    const std::size_t mine[17] = {
        offsetof(DebugOffsets313, version),
        offsetof(DebugOffsets313, free_threaded),
        offsetof(DebugOffsets313, thread_state.current_frame),
        offsetof(DebugOffsets313, interpreter_frame.previous),
        offsetof(DebugOffsets313, interpreter_frame.executable),
        offsetof(DebugOffsets313, interpreter_frame.instr_ptr),
        offsetof(DebugOffsets313, interpreter_frame.owner),
        offsetof(DebugOffsets313, code_object.filename),
        offsetof(DebugOffsets313, code_object.qualname),
        offsetof(DebugOffsets313, code_object.firstlineno),
        offsetof(DebugOffsets313, code_object.co_code_adaptive),
        offsetof(DebugOffsets313, pyobject.ob_type),
        offsetof(DebugOffsets313, tuple_object.ob_size),
        offsetof(DebugOffsets313, unicode_object.state),
        offsetof(DebugOffsets313, unicode_object.length),
        offsetof(DebugOffsets313, unicode_object.asciiobject_size),
        sizeof(DebugOffsets313)};
    for (int i = 0; i < 17; ++i) EXPECT_EQ(mine[i], p.debug[i]) << "debug offsets field " << i;
    // The table CPython fills in holds these headers' offsets; the layout derived from such a
    // table (with _co_firsttraceable and the compact str size, which it lacks) must match.
    DebugOffsets313 d;
    std::memset(&d, 0, sizeof d);
    std::memcpy(d.cookie, "xdebugpy", 8);
    d.version = p.version;
    d.thread_state.current_frame = p.tstate_frame;
    d.interpreter_frame.previous = p.frame_previous;
    d.interpreter_frame.executable = p.frame_code;
    d.interpreter_frame.instr_ptr = p.frame_instr;
    d.interpreter_frame.owner = p.frame_owner;
    d.pyobject.ob_type = p.ob_type;
    d.tuple_object.ob_size = p.ob_size;
    d.code_object.filename = p.code_filename;
    d.code_object.qualname = p.code_qualname;
    d.code_object.firstlineno = p.code_firstlineno;
    d.code_object.co_code_adaptive = p.code_adaptive;
    d.unicode_object.state = p.str_state;
    d.unicode_object.length = p.str_length;
    d.unicode_object.asciiobject_size = p.ascii_size;
    std::string why;
    ASSERT_TRUE(pylayout::LayoutFromDebugOffsets(&d, p.version, &l, &why)) << why;
    // And Table313() above holds these values (3.13.x keeps one layout).
    EXPECT_EQ(Layout313(), l);
  } else {
    ASSERT_TRUE(minor == 11 || minor == 12);
    l = *pylayout::FixedLayout(minor);
    EXPECT_TRUE(l.through_cframe);
    EXPECT_EQ(l.cframe_frame, p.cframe_frame);
  }
  EXPECT_EQ(l.minor, minor);
  EXPECT_EQ(l.tstate_frame, p.tstate_frame);
  EXPECT_EQ(l.frame_code, p.frame_code);
  EXPECT_EQ(l.frame_previous, p.frame_previous);
  EXPECT_EQ(l.frame_instr, p.frame_instr);
  EXPECT_EQ(l.frame_owner, p.frame_owner);
  EXPECT_EQ(l.ob_type, p.ob_type);
  EXPECT_EQ(l.ob_size, p.ob_size);
  EXPECT_EQ(l.code_filename, p.code_filename);
  EXPECT_EQ(l.code_qualname, p.code_qualname);
  EXPECT_EQ(l.code_firstlineno, p.code_firstlineno);
  EXPECT_EQ(l.code_firsttraceable, p.code_firsttraceable);
  EXPECT_EQ(l.code_adaptive, p.code_adaptive);
  EXPECT_EQ(l.str_length, p.str_length);
  EXPECT_EQ(l.str_state, p.str_state);
  EXPECT_EQ(l.ascii_data, p.ascii_size);
  EXPECT_EQ(l.compact_data, p.compact_size);
}

#ifdef SPILLWAY_PROBE_PY311
extern "C" void spillway_probe_py311(PyLayoutProbe*);
TEST(PythonLayoutHeaders, Matches311) { CheckAgainstHeaders(&spillway_probe_py311); }
#endif
#ifdef SPILLWAY_PROBE_PY312
extern "C" void spillway_probe_py312(PyLayoutProbe*);
TEST(PythonLayoutHeaders, Matches312) { CheckAgainstHeaders(&spillway_probe_py312); }
#endif
#ifdef SPILLWAY_PROBE_PY313
extern "C" void spillway_probe_py313(PyLayoutProbe*);
TEST(PythonLayoutHeaders, Matches313) { CheckAgainstHeaders(&spillway_probe_py313); }
#endif

}  // namespace
}  // namespace spillway::callsite
