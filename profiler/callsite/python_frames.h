// python_frames.h — the calling thread's innermost Python frames. A thread that holds the GIL
// is read through the CPython C API, looked up with dlsym at first use (Spillway does not link
// Python); a thread that released it (every PyTorch operator does before it allocates) is read
// from its own frame chain in memory on CPython 3.11-3.13 (python_nogil.h). The GIL is never
// taken here: an allocation hook may run under PyTorch's allocator lock.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace spillway::callsite {

struct PyFrame {
  const std::string* where = nullptr;  // "FILE FUNCTION", interned (InternWhere)
  int line = 0;
};

// Fills up to `max` frames, innermost first; returns how many. 0 when the process has no
// Python, the C API lacks a function, the thread never ran Python, or (holding the GIL) an
// exception is set; without the GIL, also on a CPython version whose layout is not known (one
// line on stderr says so, once).
std::size_t PythonFrames(PyFrame* out, std::size_t max);

// The text "FILE FUNCTION" from a process-wide set that is never freed: equal texts give the
// same pointer, whichever way the frame was read, so that it can key a stack by address.
const std::string* InternWhere(std::string_view file, std::string_view function);

}  // namespace spillway::callsite
