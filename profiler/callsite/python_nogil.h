// python_nogil.h — the Python frames of a thread that does not hold the GIL, read from its own
// frame chain in memory the way out-of-process profilers (py-spy, austin) read another
// process's, but in-process and only for the calling thread. While this thread runs C code with
// the GIL released, its own frames cannot change (only the thread running a frame changes it),
// and each frame holds a strong reference to its code object, whose file, name and line table
// are immutable: so the reads are safe without the GIL. Nothing here takes the GIL, allocates a
// Python object or touches a reference count. CPython 3.11, 3.12 and 3.13 (python_layout.h);
// on any other version, or after a failed layout check, there are no frames and a line on
// stderr says so once.
#pragma once

#include <cstddef>
#include <cstdint>

#include "profiler/callsite/python_frames.h"
#include "profiler/callsite/python_layout.h"

namespace spillway::callsite {

// Fills up to `max` frames of the calling thread, innermost first, for a thread that runs
// Python code deeper in its stack and has released the GIL; returns how many (0 for a thread
// that never ran Python, or when the version is not supported or the layout check failed).
// Called by PythonFrames when the thread does not hold the GIL.
std::size_t PythonFramesWithoutGil(PyFrame* out, std::size_t max);

// What one walk needs: the layout, the addresses of PyCode_Type and PyUnicode_Type (every
// frame's code object and its names are checked against them), PyCode_Addr2Line (nullptr:
// each frame gets its code's first line) and, where CPython has it (3.12+),
// PyUnstable_InterpreterFrame_GetLasti, which computes a frame's instruction offset with
// CPython's own offsets: every frame's offset computed here must equal it.
struct WalkEnv {
  const pylayout::Layout* layout = nullptr;
  const void* code_type = nullptr;
  const void* str_type = nullptr;
  int (*addr2line)(void* code, int byte_offset) = nullptr;
  int (*lasti)(void* frame) = nullptr;
};

enum class WalkStatus { kOk, kBadLayout };

// The frames of the chain whose innermost frame the thread state `tstate` points to (through
// tstate->cframe in 3.11 and 3.12), innermost first, up to `max`; eval-loop shim frames and
// frames not yet started are skipped. kBadLayout (with the frames found before) when a code
// object or a name is not of the expected type, or an instruction offset differs from
// env.lasti's: the layout does not fit this interpreter.
// `tstate` and the memory it leads to must be a live thread state's (tests build fakes).
WalkStatus WalkFrames(const WalkEnv& env, const void* tstate, PyFrame* out, std::size_t max,
                      std::size_t* n);

}  // namespace spillway::callsite
