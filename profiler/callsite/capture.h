// capture.h — the call site of an allocation, for the event log (SPILLWAY_CALLSITE_MIN): the
// caller's Python frames (python_frames.h: with or without the GIL) and C++ return addresses,
// cached by content so that each distinct stack is symbolized once and has one text (one frame a
// line, innermost first: "py FILE:LINE FUNCTION", then "c SYMBOL+0xOFF (MODULE)" or
// "c MODULE+0xOFF"; at most 4096 bytes; docs/trace-format.md).
#pragma once

#include <string>

namespace spillway::callsite {

// The calling thread's call site, as a text owned by a process-wide cache that is never freed
// (so it can be interned by address); nullptr when no frame could be had or the cache is full
// (65536 distinct stacks).
const std::string* Capture();

}  // namespace spillway::callsite
