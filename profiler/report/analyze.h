// analyze.h — builds the report Model from one or more event logs (see model.h): replays the
// allocation, chunk and page records of each (process, device), keeps a time series of at most
// ~4000 points per device (even time intervals plus the exact peak-allocated instant), and
// computes peaks, fragmentation, the largest blocks at the peak, marks, OOMs and a histogram.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "profiler/report/model.h"
#include "profiler/trace_reader.h"

namespace spillway::report {

// Processes are aligned on wall-clock time (Header::start_unix_ns; the earliest is t = 0).
// False with *error when there is nothing to analyze. `progress`, if given, is called with the
// fraction done (0..1) now and then.
bool Analyze(const std::vector<trace::Trace>& logs, Model* out, std::string* error,
             const std::function<void(double)>& progress = {});

// Fragmentation of one state (the definitions of docs/profiler.md, in one place).
double InternalFragmentation(std::uint64_t allocated, std::uint64_t rounded,
                             std::uint64_t reserved);  // (rounded - allocated) / reserved
double ExternalFragmentation(std::uint64_t largest_free,
                             std::uint64_t total_free);  // 1 - largest / total, 0 if none free
double Overhead(std::uint64_t reserved, std::uint64_t allocated);  // reserved / allocated

}  // namespace spillway::report
