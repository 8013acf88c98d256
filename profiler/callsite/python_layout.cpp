// python_layout.cpp — the CPython 3.11/3.12 struct offsets, the 3.13 debug offsets table, and
// the str reader (see python_layout.h). Each number below was derived by hand from the field
// list written next to it (LP64: pointers, Py_ssize_t and Py_hash_t 8 bytes, int 4, short 2,
// natural alignment) and is checked by python_layout_test against offsetof() in the installed
// headers (3.11.7, 3.12.1 and 3.13.0 on the build machine).
#include "profiler/callsite/python_layout.h"

#include <cstring>

namespace spillway::callsite::pylayout {

namespace {

// CPython 3.11 (Include/cpython/pystate.h, cpython/code.h, cpython/unicodeobject.h,
// internal/pycore_frame.h of v3.11.7).
constexpr Layout kLayout311 = [] {
  Layout l;
  l.minor = 11;
  // struct _ts: prev 0, next 8, interp 16, int _initialized 24, int _static 28,
  // int recursion_remaining 32, int recursion_limit 36, int recursion_headroom 40,
  // int tracing 44, int tracing_what 48, (pad 4) _PyCFrame *cframe 56.
  l.tstate_frame = 56;
  l.through_cframe = true;
  // _PyCFrame: uint8_t use_tracing 0, (pad 7) current_frame 8, previous 16.
  l.cframe_frame = 8;
  // _PyInterpreterFrame: f_func 0, f_globals 8, f_builtins 16, f_locals 24, f_code 32,
  // frame_obj 40, previous 48, prev_instr 56, int stacktop 64, bool is_entry 68, char owner 69.
  l.frame_code = 32;
  l.frame_previous = 48;
  l.frame_instr = 56;
  l.frame_owner = 69;
  // PyCodeObject: ob_refcnt 0, ob_type 8, ob_size 16, co_consts 24, co_names 32,
  // co_exceptiontable 40, int co_flags 48, short co_warmup 52,
  // short _co_linearray_entry_size 54, int co_argcount 56, co_posonlyargcount 60,
  // co_kwonlyargcount 64, co_stacksize 68, co_firstlineno 72, co_nlocalsplus 76,
  // co_nlocals 80, co_nplaincellvars 84, co_ncellvars 88, co_nfreevars 92,
  // co_localsplusnames 96, co_localspluskinds 104, co_filename 112, co_name 120,
  // co_qualname 128, co_linetable 136, co_weakreflist 144, _co_code 152, _co_linearray 160,
  // int _co_firsttraceable 168, (pad 4) co_extra 176, co_code_adaptive 184.
  l.code_filename = 112;
  l.code_qualname = 128;
  l.code_firstlineno = 72;
  l.code_firsttraceable = 168;
  l.code_adaptive = 184;
  // PyASCIIObject: ob_refcnt 0, ob_type 8, length 16, hash 24, state 32 (4 bytes, pad 4),
  // wchar_t *wstr 40: size 48. PyCompactUnicodeObject: _base 0, utf8_length 48, utf8 56,
  // wstr_length 64: size 72.
  l.ascii_data = 48;
  l.compact_data = 72;
  return l;
}();

// CPython 3.12 (the same files of v3.12.1; 3.12 dropped _PyCFrame.use_tracing, moved f_code
// to the front of the frame and the wstr fields out of str).
constexpr Layout kLayout312 = [] {
  Layout l;
  l.minor = 12;
  // struct _ts: prev 0, next 8, interp 16, struct {unsigned bit fields: 8 used + 24 padding}
  // _status 24, int py_recursion_remaining 28, int py_recursion_limit 32,
  // int c_recursion_remaining 36, int recursion_headroom 40, int tracing 44,
  // int what_event 48, (pad 4) _PyCFrame *cframe 56.
  l.tstate_frame = 56;
  l.through_cframe = true;
  // _PyCFrame: current_frame 0, previous 8.
  l.cframe_frame = 0;
  // _PyInterpreterFrame: f_code 0, previous 8, f_funcobj 16, f_globals 24, f_builtins 32,
  // f_locals 40, frame_obj 48, prev_instr 56, int stacktop 64, uint16_t return_offset 68,
  // char owner 70.
  l.frame_code = 0;
  l.frame_previous = 8;
  l.frame_instr = 56;
  l.frame_owner = 70;
  // PyCodeObject: ob_refcnt 0, ob_type 8, ob_size 16, co_consts 24, co_names 32,
  // co_exceptiontable 40, int co_flags 48, co_argcount 52, co_posonlyargcount 56,
  // co_kwonlyargcount 60, co_stacksize 64, co_firstlineno 68, co_nlocalsplus 72,
  // co_framesize 76, co_nlocals 80, co_ncellvars 84, co_nfreevars 88, uint32_t co_version 92,
  // co_localsplusnames 96, co_localspluskinds 104, co_filename 112, co_name 120,
  // co_qualname 128, co_linetable 136, co_weakreflist 144, _co_cached 152,
  // uint64_t _co_instrumentation_version 160, _co_monitoring 168, int _co_firsttraceable 176,
  // (pad 4) co_extra 184, co_code_adaptive 192.
  l.code_filename = 112;
  l.code_qualname = 128;
  l.code_firstlineno = 68;
  l.code_firsttraceable = 176;
  l.code_adaptive = 192;
  // PyASCIIObject: ob_refcnt 0, ob_type 8, length 16, hash 24, state 32 (4 bytes, pad 4):
  // size 40. PyCompactUnicodeObject: _base 0, utf8_length 40, utf8 48: size 56.
  l.ascii_data = 40;
  l.compact_data = 56;
  return l;
}();

// A table value that cannot be an offset into these small structs is a wrong table.
constexpr std::uint64_t kMaxOffset = 4096;

void PutUtf8(std::uint32_t c, std::string* out) {
  if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = 0xFFFD;
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace

const Layout* FixedLayout(unsigned minor) {
  if (minor == 11) return &kLayout311;
  if (minor == 12) return &kLayout312;
  return nullptr;
}

bool LayoutFromDebugOffsets(const void* table, unsigned long py_version, Layout* out,
                            std::string* why) {
  DebugOffsets313 d;
  std::memcpy(&d, table, sizeof d);
  if (std::memcmp(d.cookie, "xdebugpy", 8) != 0) {
    *why = "no debug offsets cookie at _PyRuntime";
    return false;
  }
  if ((d.version >> 16) != (py_version >> 16) || (py_version >> 16) != 0x030D) {
    *why = "debug offsets of another version";
    return false;
  }
  if (d.free_threaded != 0) {
    *why = "free-threaded build";
    return false;
  }
  const std::uint64_t values[] = {
      d.thread_state.current_frame, d.interpreter_frame.previous,
      d.interpreter_frame.executable, d.interpreter_frame.instr_ptr, d.interpreter_frame.owner,
      d.pyobject.ob_type,          d.tuple_object.ob_size,     d.code_object.filename,
      d.code_object.qualname,      d.code_object.firstlineno,  d.code_object.co_code_adaptive,
      d.unicode_object.state,      d.unicode_object.length,    d.unicode_object.asciiobject_size};
  for (std::uint64_t v : values) {
    if (v >= kMaxOffset) {
      *why = "an offset out of range in the debug offsets";
      return false;
    }
  }
  // _co_firsttraceable is not in the table: 3.13's PyCodeObject ends with
  // int _co_firsttraceable, (pad 4) void *co_extra, char co_code_adaptive[] (cpython/code.h).
  if (d.code_object.co_code_adaptive < 16) {
    *why = "co_code_adaptive offset too small";
    return false;
  }
  Layout l;
  l.minor = 13;
  l.tstate_frame = d.thread_state.current_frame;
  l.through_cframe = false;
  l.frame_code = d.interpreter_frame.executable;
  l.frame_previous = d.interpreter_frame.previous;
  l.frame_instr = d.interpreter_frame.instr_ptr;
  l.frame_owner = d.interpreter_frame.owner;
  l.ob_type = d.pyobject.ob_type;
  l.ob_size = d.tuple_object.ob_size;  // PyTupleObject's ob_size is its PyVarObject's
  l.code_filename = d.code_object.filename;
  l.code_qualname = d.code_object.qualname;
  l.code_firstlineno = d.code_object.firstlineno;
  l.code_firsttraceable = d.code_object.co_code_adaptive - 16;
  l.code_adaptive = d.code_object.co_code_adaptive;
  l.str_length = d.unicode_object.length;
  l.str_state = d.unicode_object.state;
  // PyCompactUnicodeObject: PyASCIIObject _base, Py_ssize_t utf8_length, char *utf8.
  l.ascii_data = d.unicode_object.asciiobject_size;
  l.compact_data = d.unicode_object.asciiobject_size + 16;
  *out = l;
  return true;
}

bool ReadStr(const Layout& l, const void* str, std::size_t max_chars, std::string* out) {
  const auto state = Load<std::uint32_t>(str, l.str_state);
  const unsigned kind = (state >> 2) & 7;
  const bool compact = ((state >> 5) & 1) != 0;
  const bool ascii = ((state >> 6) & 1) != 0;
  const auto length = Load<std::int64_t>(str, l.str_length);
  if (!compact || length < 0 || static_cast<std::uint64_t>(length) > max_chars) return false;
  const auto n = static_cast<std::size_t>(length);
  out->clear();
  if (ascii) {
    if (kind != 1) return false;
    out->assign(static_cast<const char*>(str) + l.ascii_data, n);
    return true;
  }
  const char* data = static_cast<const char*>(str) + l.compact_data;
  out->reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t c;
    if (kind == 1) {
      c = static_cast<unsigned char>(data[i]);
    } else if (kind == 2) {
      c = Load<std::uint16_t>(data, 2 * i);
    } else if (kind == 4) {
      c = Load<std::uint32_t>(data, 4 * i);
    } else {
      return false;
    }
    PutUtf8(c, out);
  }
  return true;
}

}  // namespace spillway::callsite::pylayout
