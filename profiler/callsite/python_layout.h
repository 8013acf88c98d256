// python_layout.h — the struct layouts of CPython 3.11, 3.12 and 3.13 that a thread's own Python
// frames are read through without the GIL (python_nogil.cpp): where the thread state keeps the
// innermost frame, a frame's code object, previous frame, instruction pointer and owner, a code
// object's file and qualified name, and a str's characters. 3.11 and 3.12: fixed offsets (LP64:
// x86-64, aarch64), taken from those versions' headers; 3.13: the _Py_DebugOffsets table CPython
// keeps at the start of _PyRuntime for out-of-process debuggers. python_layout_test checks the
// numbers against the real headers of every interpreter it finds at configure time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace spillway::callsite::pylayout {

// _PyInterpreterFrame.owner (enum _frameowner, pycore_frame.h; the same in 3.11-3.13; 3.11 has
// no shim frames).
inline constexpr char kOwnedByGenerator = 1;
inline constexpr char kOwnedByCStack = 3;  // 3.12+: the entry shim of an eval loop, not Python

// Byte offsets, all from the start of the object named.
struct Layout {
  unsigned minor = 0;  // CPython 3.minor
  // Thread state -> innermost _PyInterpreterFrame*. through_cframe (3.11, 3.12):
  // tstate->cframe (at tstate_frame) ->current_frame (at cframe_frame); otherwise (3.13):
  // tstate->current_frame at tstate_frame.
  std::size_t tstate_frame = 0;
  bool through_cframe = false;
  std::size_t cframe_frame = 0;
  // _PyInterpreterFrame: the code object (strong reference; f_code, or f_executable in 3.13),
  // the previous frame, the instruction pointer (prev_instr; instr_ptr in 3.13) and the owner.
  std::size_t frame_code = 0;
  std::size_t frame_previous = 0;
  std::size_t frame_instr = 0;
  std::size_t frame_owner = 0;
  // PyObject.ob_type, PyVarObject.ob_size (a code object's size in 2-byte code units).
  std::size_t ob_type = 8;
  std::size_t ob_size = 16;
  // PyCodeObject.
  std::size_t code_filename = 0;
  std::size_t code_qualname = 0;
  std::size_t code_firstlineno = 0;
  std::size_t code_firsttraceable = 0;  // int: index of the first traceable code unit
  std::size_t code_adaptive = 0;        // co_code_adaptive: the code units
  // str: PyASCIIObject.length (code points), .state (a 32-bit word of bit fields: interned 2,
  // kind 3, compact 1, ascii 1, the same bits in 3.11-3.13), where a compact ASCII str's
  // characters start (sizeof(PyASCIIObject)) and where a compact non-ASCII one's start
  // (sizeof(PyCompactUnicodeObject)).
  std::size_t str_length = 16;
  std::size_t str_state = 32;
  std::size_t ascii_data = 0;
  std::size_t compact_data = 0;

  bool operator==(const Layout&) const = default;
};

// The fixed layout of CPython 3.minor (11 or 12); nullptr for any other.
const Layout* FixedLayout(unsigned minor);

// The prefix of 3.13's struct _Py_DebugOffsets (Include/internal/pycore_runtime.h, v3.13.0)
// up to what is read here: every field a uint64_t, in the header's order.
struct DebugOffsets313 {
  char cookie[8];  // "xdebugpy"
  std::uint64_t version;  // PY_VERSION_HEX
  std::uint64_t free_threaded;
  struct { std::uint64_t size, finalizing, interpreters_head; } runtime_state;
  struct {
    std::uint64_t size, id, next, threads_head, gc, imports_modules, sysdict, builtins, ceval_gil,
        gil_runtime_state, gil_runtime_state_enabled, gil_runtime_state_locked,
        gil_runtime_state_holder;
  } interpreter_state;
  struct {
    std::uint64_t size, prev, next, interp, current_frame, thread_id, native_thread_id,
        datastack_chunk, status;
  } thread_state;
  struct { std::uint64_t size, previous, executable, instr_ptr, localsplus, owner; } interpreter_frame;
  struct {
    std::uint64_t size, filename, name, qualname, linetable, firstlineno, argcount,
        localsplusnames, localspluskinds, co_code_adaptive;
  } code_object;
  struct { std::uint64_t size, ob_type; } pyobject;
  struct { std::uint64_t size, tp_name, tp_repr, tp_flags; } type_object;
  struct { std::uint64_t size, ob_item, ob_size; } tuple_object;
  struct { std::uint64_t size, ob_item, ob_size; } list_object;
  struct { std::uint64_t size, ma_keys, ma_values; } dict_object;
  struct { std::uint64_t size, ob_fval; } float_object;
  struct { std::uint64_t size, lv_tag, ob_digit; } long_object;
  struct { std::uint64_t size, ob_size, ob_sval; } bytes_object;
  struct { std::uint64_t size, state, length, asciiobject_size; } unicode_object;
};

// The layout of CPython 3.13 from its debug offsets table (`table` = &_PyRuntime, whose first
// field the table is), for the running interpreter's Py_Version. false, with the reason, when
// the cookie, the version or a value is not what 3.13 has, or the build is free-threaded.
bool LayoutFromDebugOffsets(const void* table, unsigned long py_version, Layout* out,
                            std::string* why);

// The characters of the str object at `str` as UTF-8 (latin-1, UCS-2 and UCS-4 strs encoded
// here; a lone surrogate becomes U+FFFD), reading only the object's own memory (never its
// cached UTF-8, which another thread may be filling). false for a str that is not compact
// (legacy), has an unknown kind, or is longer than `max_chars` code points.
bool ReadStr(const Layout& l, const void* str, std::size_t max_chars, std::string* out);

// A T at byte `off` of `base` (no alignment assumed): how every field of a layout is read.
template <typename T>
T Load(const void* base, std::size_t off) {
  T v;
  std::memcpy(&v, static_cast<const char*>(base) + off, sizeof v);
  return v;
}

}  // namespace spillway::callsite::pylayout
