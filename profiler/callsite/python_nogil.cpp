// python_nogil.cpp — Python frames of a thread without the GIL (see python_nogil.h): the version
// from Py_Version (Py_GetVersion before 3.11), the layout (python_layout.h), then a walk of
// tstate->cframe->current_frame (3.11, 3.12) or tstate->current_frame (3.13) along ->previous,
// the thread state being this thread's own (PyGILState_GetThisThreadState, which reads a
// thread-local and needs no GIL). Lines come from PyCode_Addr2Line, which only reads the code
// object's line table (in 3.11 it may read a line array another thread's tracer is filling:
// at worst a wrong line). Checks on every frame: the code object's and names' types, and on
// 3.12+ the instruction offset against PyUnstable_InterpreterFrame_GetLasti (pure arithmetic
// on the frame with CPython's own offsets).
#include "profiler/callsite/python_nogil.h"

#include <dlfcn.h>

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

namespace spillway::callsite {

namespace {

using pylayout::Load;

// Frames visited per walk at most (skipped ones included): a bound should a chain ever loop.
constexpr int kMaxSteps = 4096;
// Longest file or function name read, in code points; a longer one is shown as "?".
constexpr std::size_t kMaxChars = 4096;

struct NoGil {
  WalkEnv env;
  pylayout::Layout layout313;  // filled from _PyRuntime's debug offsets on 3.13
  void* (*this_thread_state)() = nullptr;
  std::string version;      // "3.12", "3.13 free-threaded", or "(unknown version)"
  std::string unsupported;  // empty when there is a layout; otherwise the line to print
};

std::string VersionBefore311() {
  // Py_Version exists from 3.11; before it, Py_GetVersion() starts with "X.Y.Z ". It formats a
  // static buffer (no Python object, no allocation).
  const char* (*get)() = reinterpret_cast<const char* (*)()>(dlsym(RTLD_DEFAULT, "Py_GetVersion"));
  if (get == nullptr) return "(unknown version)";
  const char* s = get();
  unsigned major = 0, minor = 0;
  if (s == nullptr || std::sscanf(s, "%u.%u", &major, &minor) != 2) return "(unknown version)";
  return std::to_string(major) + "." + std::to_string(minor);
}

NoGil Discover() {
  NoGil g;
  const auto* py_version = static_cast<const unsigned long*>(dlsym(RTLD_DEFAULT, "Py_Version"));
  unsigned minor = 0;
  if (py_version != nullptr) {
    const unsigned major = static_cast<unsigned>(*py_version >> 24);
    minor = static_cast<unsigned>((*py_version >> 16) & 0xff);
    g.version = std::to_string(major) + "." + std::to_string(minor);
    if (major != 3) minor = 0;
  } else {
    g.version = VersionBefore311();
  }
  std::string why;
  if constexpr (sizeof(void*) != 8 || std::endian::native != std::endian::little) {
    minor = 0;  // the layouts are LP64 and the str state bits little-endian
    why = "not an LP64 little-endian build";
  }
  if (minor == 11 || minor == 12) {
    g.env.layout = pylayout::FixedLayout(minor);
  } else if (minor == 13) {
    const void* runtime = dlsym(RTLD_DEFAULT, "_PyRuntime");
    if (runtime == nullptr) {
      why = "no _PyRuntime symbol";
    } else if (pylayout::LayoutFromDebugOffsets(runtime, *py_version, &g.layout313, &why)) {
      g.env.layout = &g.layout313;
    } else if (why == "free-threaded build") {
      g.version += " free-threaded";
      why.clear();
    }
  }
  g.this_thread_state =
      reinterpret_cast<void* (*)()>(dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState"));
  g.env.code_type = dlsym(RTLD_DEFAULT, "PyCode_Type");
  g.env.str_type = dlsym(RTLD_DEFAULT, "PyUnicode_Type");
  g.env.addr2line = reinterpret_cast<int (*)(void*, int)>(dlsym(RTLD_DEFAULT, "PyCode_Addr2Line"));
  if (minor >= 12) {  // 3.12+: a pure read of the frame (prev_instr or instr_ptr - code units)
    g.env.lasti = reinterpret_cast<int (*)(void*)>(
        dlsym(RTLD_DEFAULT, "PyUnstable_InterpreterFrame_GetLasti"));
  }
  if (g.env.layout != nullptr && (g.this_thread_state == nullptr || g.env.code_type == nullptr ||
                                  g.env.str_type == nullptr || g.env.addr2line == nullptr)) {
    g.env.layout = nullptr;
    why = "a C API symbol is missing";
  }
  if (g.env.layout == nullptr) {
    g.unsupported = "spillway: Python frames of allocations made without the GIL are not read "
                    "on CPython " + g.version + " (supported: 3.11, 3.12, 3.13" +
                    (why.empty() ? "" : "; here: " + why) +
                    "); call sites there have C++ frames only\n";
  }
  return g;
}

const NoGil& State() {
  static const NoGil g = Discover();
  return g;
}

std::atomic<bool> g_disabled{false};  // a layout check failed: never walk again
std::atomic<bool> g_said{false};      // the one stderr line has been printed

void SayOnce(const std::string& line) {
  if (!g_said.exchange(true)) std::fputs(line.c_str(), stderr);
}

}  // namespace

WalkStatus WalkFrames(const WalkEnv& env, const void* tstate, PyFrame* out, std::size_t max,
                      std::size_t* n) {
  const pylayout::Layout& l = *env.layout;
  *n = 0;
  const void* frame = nullptr;
  if (l.through_cframe) {
    const void* cframe = Load<const void*>(tstate, l.tstate_frame);
    if (cframe != nullptr) frame = Load<const void*>(cframe, l.cframe_frame);
  } else {
    frame = Load<const void*>(tstate, l.tstate_frame);
  }
  std::string file, fn;
  for (int steps = 0; frame != nullptr && *n < max && steps < kMaxSteps;
       ++steps, frame = Load<const void*>(frame, l.frame_previous)) {
    const char owner = Load<char>(frame, l.frame_owner);
    if (owner == pylayout::kOwnedByCStack) continue;  // an eval loop's entry shim
    const void* code = Load<const void*>(frame, l.frame_code);
    if (code == nullptr || Load<const void*>(code, l.ob_type) != env.code_type)
      return WalkStatus::kBadLayout;
    // Byte offset of the instruction pointer in the code units (prev_instr: the unit before
    // the next instruction, 3.11/3.12; instr_ptr: the current one, 3.13).
    const auto units = reinterpret_cast<std::uintptr_t>(code) + l.code_adaptive;
    const auto offset = static_cast<std::int64_t>(
        Load<std::uintptr_t>(frame, l.frame_instr) - units);  // wraps to negative before
    if (env.lasti != nullptr && env.lasti(const_cast<void*>(frame)) != offset)
      return WalkStatus::kBadLayout;
    const auto first = Load<int>(code, l.code_firsttraceable);
    // A frame pushed but not yet at its first traceable instruction is incomplete
    // (_PyFrame_IsIncomplete); a generator's frame never is.
    if (owner != pylayout::kOwnedByGenerator && offset < 2 * static_cast<std::int64_t>(first))
      continue;
    const void* file_obj = Load<const void*>(code, l.code_filename);
    const void* fn_obj = Load<const void*>(code, l.code_qualname);
    if (file_obj == nullptr || fn_obj == nullptr ||
        Load<const void*>(file_obj, l.ob_type) != env.str_type ||
        Load<const void*>(fn_obj, l.ob_type) != env.str_type)
      return WalkStatus::kBadLayout;
    if (!pylayout::ReadStr(l, file_obj, kMaxChars, &file) || file.empty()) file = "?";
    if (!pylayout::ReadStr(l, fn_obj, kMaxChars, &fn) || fn.empty()) fn = "?";
    const auto code_bytes = 2 * Load<std::int64_t>(code, l.ob_size);
    int line;
    if (env.addr2line != nullptr && offset >= 0 && offset < code_bytes)
      line = env.addr2line(const_cast<void*>(code), static_cast<int>(offset));
    else
      line = Load<int>(code, l.code_firstlineno);
    out[*n].where = InternWhere(file, fn);
    out[*n].line = line;
    ++*n;
  }
  return WalkStatus::kOk;
}

std::size_t PythonFramesWithoutGil(PyFrame* out, std::size_t max) {
  if (max == 0 || g_disabled.load(std::memory_order_relaxed)) return 0;
  const NoGil& g = State();
  // A thread that never ran Python has no thread state (nor frames to want).
  const void* tstate = g.this_thread_state != nullptr ? g.this_thread_state() : nullptr;
  if (tstate == nullptr) return 0;
  if (g.env.layout == nullptr) {
    SayOnce(g.unsupported);
    return 0;
  }
  std::size_t n = 0;
  if (WalkFrames(g.env, tstate, out, max, &n) == WalkStatus::kBadLayout) {
    g_disabled.store(true);
    SayOnce("spillway: the layout check of CPython " + g.version +
            " failed (a frame's code object or name is not of the type the layout expects, or "
            "its instruction offset is not the one CPython computes); "
            "Python frames of allocations made without the GIL are no longer read; call sites "
            "there have C++ frames only\n");
    return 0;
  }
  return n;
}

}  // namespace spillway::callsite
