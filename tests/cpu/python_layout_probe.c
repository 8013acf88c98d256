/* python_layout_probe.c — the layouts of one CPython version, from its own headers (internal
   ones included, hence Py_BUILD_CORE). Compiled once per interpreter found at configure time,
   with SPILLWAY_PROBE_FN naming the function (tests/cpu/CMakeLists.txt). */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <string.h>

#include "internal/pycore_frame.h"
#if PY_VERSION_HEX >= 0x030D0000
#include "internal/pycore_runtime.h"
#endif

#include "python_layout_probe.h"

static unsigned StateWord(const PyASCIIObject* o) {
  unsigned w;
  memcpy(&w, (const char*)o + offsetof(PyASCIIObject, state), sizeof w);
  return w;
}

void SPILLWAY_PROBE_FN(struct PyLayoutProbe* p) {
  memset(p, 0, sizeof *p);
  p->version = PY_VERSION_HEX;
#ifdef Py_GIL_DISABLED
  p->free_threaded = 1;
#endif
#if PY_VERSION_HEX >= 0x030D0000
  p->tstate_frame = offsetof(PyThreadState, current_frame);
  p->frame_code = offsetof(_PyInterpreterFrame, f_executable);
  p->frame_instr = offsetof(_PyInterpreterFrame, instr_ptr);
#else
  p->tstate_frame = offsetof(PyThreadState, cframe);
  p->cframe_frame = offsetof(_PyCFrame, current_frame);
  p->frame_code = offsetof(_PyInterpreterFrame, f_code);
  p->frame_instr = offsetof(_PyInterpreterFrame, prev_instr);
#endif
  p->frame_previous = offsetof(_PyInterpreterFrame, previous);
  p->frame_owner = offsetof(_PyInterpreterFrame, owner);
  p->owner_generator = FRAME_OWNED_BY_GENERATOR;
#if PY_VERSION_HEX >= 0x030C0000
  p->owner_cstack = FRAME_OWNED_BY_CSTACK;
#else
  p->owner_cstack = -1;
#endif
  p->ob_type = offsetof(PyObject, ob_type);
  p->ob_size = offsetof(PyVarObject, ob_size);
  p->code_filename = offsetof(PyCodeObject, co_filename);
  p->code_qualname = offsetof(PyCodeObject, co_qualname);
  p->code_firstlineno = offsetof(PyCodeObject, co_firstlineno);
  p->code_firsttraceable = offsetof(PyCodeObject, _co_firsttraceable);
  p->code_adaptive = offsetof(PyCodeObject, co_code_adaptive);
  p->str_length = offsetof(PyASCIIObject, length);
  p->str_state = offsetof(PyASCIIObject, state);
  p->ascii_size = sizeof(PyASCIIObject);
  p->compact_size = sizeof(PyCompactUnicodeObject);
  PyASCIIObject o;
  memset(&o, 0, sizeof o);
  o.state.kind = 7;
  p->state_kind_mask = StateWord(&o);
  memset(&o, 0, sizeof o);
  o.state.compact = 1;
  p->state_compact_mask = StateWord(&o);
  memset(&o, 0, sizeof o);
  o.state.ascii = 1;
  p->state_ascii_mask = StateWord(&o);
#if PY_VERSION_HEX >= 0x030D0000
  const size_t debug[17] = {
      offsetof(_Py_DebugOffsets, version),
      offsetof(_Py_DebugOffsets, free_threaded),
      offsetof(_Py_DebugOffsets, thread_state.current_frame),
      offsetof(_Py_DebugOffsets, interpreter_frame.previous),
      offsetof(_Py_DebugOffsets, interpreter_frame.executable),
      offsetof(_Py_DebugOffsets, interpreter_frame.instr_ptr),
      offsetof(_Py_DebugOffsets, interpreter_frame.owner),
      offsetof(_Py_DebugOffsets, code_object.filename),
      offsetof(_Py_DebugOffsets, code_object.qualname),
      offsetof(_Py_DebugOffsets, code_object.firstlineno),
      offsetof(_Py_DebugOffsets, code_object.co_code_adaptive),
      offsetof(_Py_DebugOffsets, pyobject.ob_type),
      offsetof(_Py_DebugOffsets, tuple_object.ob_size),
      offsetof(_Py_DebugOffsets, unicode_object.state),
      offsetof(_Py_DebugOffsets, unicode_object.length),
      offsetof(_Py_DebugOffsets, unicode_object.asciiobject_size),
      offsetof(_Py_DebugOffsets, gc)};
  memcpy(p->debug, debug, sizeof debug);
#endif
}
