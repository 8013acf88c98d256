/* python_layout_probe.h — what python_layout_probe.c measures in one CPython version's headers
   (offsetof, sizeof, bit positions), for python_layout_test to compare with the numbers in
   profiler/callsite/python_layout.cpp. Plain C, included by C and C++. */
#ifndef SPILLWAY_PYTHON_LAYOUT_PROBE_H
#define SPILLWAY_PYTHON_LAYOUT_PROBE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct PyLayoutProbe {
  unsigned long version; /* PY_VERSION_HEX of the headers */
  int free_threaded;     /* Py_GIL_DISABLED */
  size_t tstate_frame;   /* offsetof(PyThreadState, cframe), or current_frame (3.13) */
  size_t cframe_frame;   /* offsetof(_PyCFrame, current_frame) (3.11, 3.12) */
  size_t frame_code, frame_previous, frame_instr, frame_owner;
  int owner_generator, owner_cstack; /* FRAME_OWNED_BY_GENERATOR, _CSTACK (-1 if none) */
  size_t ob_type, ob_size;
  size_t code_filename, code_qualname, code_firstlineno, code_firsttraceable, code_adaptive;
  size_t str_length, str_state, ascii_size, compact_size;
  unsigned state_kind_mask, state_compact_mask, state_ascii_mask; /* in the state word */
  /* 3.13: where _Py_DebugOffsets keeps the fields read (0 before 3.13), in this order:
     version, free_threaded, thread_state.current_frame, interpreter_frame.previous,
     .executable, .instr_ptr, .owner, code_object.filename, .qualname, .firstlineno,
     .co_code_adaptive, pyobject.ob_type, tuple_object.ob_size, unicode_object.state, .length,
     .asciiobject_size, and the offset of the gc member (the end of what is mirrored). */
  size_t debug[17];
};

#ifdef __cplusplus
}
#endif

#endif
