// trace_reader.h — reads a SPILLWAY_TRACE file (version 1 or 2) into memory, checking the header
// and the length, and resolves the labels of marks and the texts of call sites (kString).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "profiler/trace_format.h"

namespace spillway::trace {

struct Trace {
  std::string path;
  Header header{};
  std::vector<Record> records;  // version 1 records are widened (aux = aux2 = 0)
  std::unordered_map<std::uint64_t, std::string> labels;  // from kString: marks, call sites
};

// Reads `path`. False with *error ("'path' ...": missing, too short, bad magic, unknown version
// or record size, truncated record, malformed label) on failure. `progress`, if given, is
// called with the fraction read (0..1) now and then.
bool ReadTrace(const std::string& path, Trace* out, std::string* error,
               const std::function<void(double)>& progress = {});

}  // namespace spillway::trace
