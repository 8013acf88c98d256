// callsites.h — call sites in the reports: kCallSite records attached to their blocks
// (analyze.cpp), the recorded text parsed into frames, and its renderings: one line for the
// text summary (the innermost Python frame and the nearest C++ frame outside Spillway and the
// framework's internals), every frame for JSON and HTML.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "profiler/report/model.h"

namespace spillway::report {

struct CallFrame {
  bool python = false;
  std::string text;    // "FILE:LINE FUNCTION", or "SYMBOL+0xOFF (MODULE)" / "MODULE+0xOFF"
  std::string module;  // C++ frames: the module's file name ("" if unknown)
};

// The frames of a recorded call site, innermost first (unknown lines are skipped).
std::vector<CallFrame> ParseCallSite(std::string_view text);

// A C++ frame of Spillway, PyTorch/c10, CUDA, Python, the C/C++ runtime or an unknown module:
// not the user's code.
bool InternalFrame(const CallFrame& f);

// Call-site texts interned into Model::callsites; Intern returns 1 + the index.
class CallSiteTable {
 public:
  std::uint32_t Intern(Model* m, const std::string& text);

 private:
  std::unordered_map<std::string, std::uint32_t> ids_;
};

// The PyTorch autograd node a C++ stack runs in ("NllLossBackward0" for a frame
// `torch::autograd::generated::NllLossBackward0::apply(...)`, innermost first); "" when none.
std::string AutogradNode(const std::vector<CallFrame>& frames);

// A Python frame in an installed package or the standard library (site-packages,
// dist-packages, lib/python3.X, frozen modules): not the user's code.
bool LibraryPythonFrame(const CallFrame& f);

// "train.py:42 forward (in linear) [C++ main+0x1a (app)]": the innermost Python frame outside
// installed packages (with the innermost Python function, when that is a library's, in
// parentheses; the innermost frame when every one is a library's) and the nearest C++ frame
// outside the internals (either may be missing); with neither, "[autograd NODE]" for an
// allocation of PyTorch's backward (its autograd thread runs no Python), else the innermost C++
// frame.
std::string SummaryOf(const std::vector<CallFrame>& frames);
// SummaryOf the block's call site; "" when it has none.
std::string CallSiteLine(const Model& m, const Block& b);
// Appends `,"callsite":{"summary":...,"frames":[...]}`, or nothing when there is none.
void CallSiteJson(std::string* o, const Model& m, const Block& b);
// A table cell: the summary line, every frame under it (folded); an empty cell when none.
std::string CallSiteCell(const Model& m, const Block& b);

}  // namespace spillway::report
