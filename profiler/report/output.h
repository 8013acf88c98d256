// output.h — writes the chosen report formats into a directory (used by `spillway report` and
// by SPILLWAY_REPORT=DIR at exit): summary.txt, report.json, trace.json (Chrome trace),
// report.html, snapshot.pickle (memory_viz).
#pragma once

#include <string>
#include <vector>

#include "profiler/report/model.h"

namespace spillway::report {

struct Formats {
  bool text = false, json = false, chrome = false, html = false, memviz = false;
};

inline Formats AllFormats() { return Formats{true, true, true, true, true}; }
inline Formats DefaultFormats() { return Formats{true, true, true, true, false}; }

// "text,json,chrome,html,memviz" (any subset, comma-separated) or "all". False with *error on
// an unknown or empty name.
bool ParseFormats(const std::string& s, Formats* out, std::string* error);

// Creates `dir` if missing and writes each chosen format; *written gets the paths. False with
// *error (naming the file) when a directory or file cannot be written.
bool WriteReports(const Model& m, const std::string& dir, const Formats& f,
                  std::vector<std::string>* written, std::string* error);

// Reads the event log `log`, analyzes it and writes every format into `dir` (into
// `dir/rank-N` when the log has a rank, so the ranks of one job sharing `dir` do not overwrite
// each other). *summary gets the text summary, *out_dir where the files went. False with
// *error naming the step that failed.
bool ReportLog(const std::string& log, const std::string& dir, std::string* summary,
               std::string* out_dir, std::string* error);

}  // namespace spillway::report
