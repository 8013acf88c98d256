// python_frames.h — the calling thread's innermost Python frames, through the CPython C API
// looked up with dlsym at first use (Spillway does not link Python). Frames are read only when
// the interpreter runs and this thread holds the GIL; never is the GIL taken here.
#pragma once

#include <cstddef>
#include <string>

namespace spillway::callsite {

struct PyFrame {
  const std::string* where = nullptr;  // "FILE FUNCTION" of the code object (kept for good)
  int line = 0;
};

// Fills up to `max` frames, innermost first; returns how many. 0 when the process has no
// Python, the C API lacks a function, the thread does not hold the GIL, or an exception is set.
std::size_t PythonFrames(PyFrame* out, std::size_t max);

}  // namespace spillway::callsite
