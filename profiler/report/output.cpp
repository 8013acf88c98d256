// output.cpp — writing the report files (see output.h).
#include "profiler/report/output.h"
#include "profiler/trace_reader.h"
#include "profiler/report/analyze.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "profiler/report/render.h"

namespace spillway::report {

bool ParseFormats(const std::string& s, Formats* out, std::string* error) {
  Formats f;
  std::size_t pos = 0;
  bool any = false;
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    const std::string name = s.substr(pos, comma - pos);
    if (name == "text") f.text = true;
    else if (name == "json") f.json = true;
    else if (name == "chrome") f.chrome = true;
    else if (name == "html") f.html = true;
    else if (name == "memviz") f.memviz = true;
    else if (name == "all") f = AllFormats();
    else {
      *error = "unknown report format '" + name +
               "' (expected text, json, chrome, html, memviz, comma-separated, or all)";
      return false;
    }
    any = true;
    pos = comma + 1;
  }
  if (!any) {
    *error = "no report format given";
    return false;
  }
  *out = f;
  return true;
}

namespace {
bool WriteFile(const std::string& path, const std::string& data, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    *error = "cannot write '" + path + "': " + std::strerror(errno);
    return false;
  }
  const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
  const int saved = errno;
  if (std::fclose(f) != 0 || !ok) {
    *error = "cannot write '" + path + "': " + std::strerror(ok ? errno : saved);
    return false;
  }
  return true;
}
}  // namespace

bool WriteReports(const Model& m, const std::string& dir, const Formats& f,
                  std::vector<std::string>* written, std::string* error) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    *error = "cannot create the report directory '" + dir + "': " +
             (ec ? ec.message() : std::string("not a directory"));
    return false;
  }
  const std::string base = dir.back() == '/' ? dir : dir + "/";
  auto put = [&](const char* name, const std::string& data) {
    const std::string p = base + name;
    if (!WriteFile(p, data, error)) return false;
    if (written) written->push_back(p);
    return true;
  };
  if (f.text && !put("summary.txt", RenderText(m))) return false;
  if (f.json && !put("report.json", RenderJson(m))) return false;
  if (f.chrome && !put("trace.json", RenderChromeTrace(m))) return false;
  if (f.html && !put("report.html", RenderHtml(m))) return false;
  if (f.memviz && !put("snapshot.pickle", RenderMemviz(m))) return false;
  return true;
}

bool ReportLog(const std::string& log, const std::string& dir, std::string* summary,
               std::string* out_dir, std::string* error) {
  trace::Trace t;
  if (!trace::ReadTrace(log, &t, error)) return false;
  *out_dir = t.header.rank >= 0 ? dir + "/rank-" + std::to_string(t.header.rank) : dir;
  std::vector<trace::Trace> logs;
  logs.push_back(std::move(t));
  Model m;
  if (!Analyze(logs, &m, error)) return false;
  logs.clear();
  *summary = RenderText(m);
  return WriteReports(m, *out_dir, AllFormats(), nullptr, error);
}

}  // namespace spillway::report
