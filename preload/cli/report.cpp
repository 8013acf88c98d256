// report.cpp — `spillway report LOG... [-o DIR] [--format ...]`: reads one or more event logs
// (one per process and rank; they are merged on wall-clock time), writes the chosen reports into
// DIR and prints the text summary. A progress bar goes to stderr on large inputs.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "preload/cli/commands.h"
#include "profiler/report/analyze.h"
#include "profiler/report/output.h"
#include "profiler/report/render.h"
#include "profiler/trace_reader.h"

namespace spillway::cli {

namespace {

const char kReportUsage[] =
    "usage: spillway report LOG... [-o DIR] [--format text,json,chrome,html,memviz|all]\n"
    "  reports from SPILLWAY_TRACE event logs (several logs: one per process, merged on\n"
    "  wall-clock time). DIR defaults to spillway-report; formats to text,json,chrome,html.\n"
    "  Writes summary.txt, report.json, trace.json (Chrome/Perfetto), report.html,\n"
    "  snapshot.pickle (memviz) and prints the summary.\n";

constexpr std::uint64_t kBarRecords = 200000;  // larger inputs get a progress bar

// A one-line progress bar on stderr, redrawn with \r when the percentage changes.
class Bar {
 public:
  explicit Bar(bool on) : on_(on) {}
  void Set(const char* stage, double f) {
    if (!on_) return;
    f = f < 0 ? 0 : f > 1 ? 1 : f;
    const int pct = static_cast<int>(f * 100);
    if (pct == pct_ && stage == stage_) return;
    pct_ = pct;
    stage_ = stage;
    char bar[41];
    const int full = static_cast<int>(f * 40);
    for (int i = 0; i < 40; ++i) bar[i] = i < full ? '#' : '.';
    bar[40] = '\0';
    std::fprintf(stderr, "\rspillway report: %-9s [%s] %3d%%", stage, bar, pct);
    std::fflush(stderr);
  }
  void Done() {
    if (!on_ || pct_ < 0) return;
    std::fputc('\n', stderr);
    pct_ = -1;
  }
  ~Bar() { Done(); }

 private:
  bool on_;
  int pct_ = -1;
  const char* stage_ = nullptr;
};

}  // namespace

int Report(int argc, char** argv) {
  std::vector<std::string> paths;
  std::string dir = "spillway-report";
  report::Formats formats = report::DefaultFormats();
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-o" || a == "--output" || a == "--format") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "spillway report: %s needs a value\n%s", a.c_str(), kReportUsage);
        return 2;
      }
      const std::string v = argv[++i];
      if (a == "--format") {
        std::string err;
        if (!report::ParseFormats(v, &formats, &err)) {
          std::fprintf(stderr, "spillway report: %s\n", err.c_str());
          return 2;
        }
      } else {
        if (v.empty()) {
          std::fprintf(stderr, "spillway report: %s needs a directory\n", a.c_str());
          return 2;
        }
        dir = v;
      }
    } else if (a.rfind("--format=", 0) == 0) {
      std::string err;
      if (!report::ParseFormats(a.substr(9), &formats, &err)) {
        std::fprintf(stderr, "spillway report: %s\n", err.c_str());
        return 2;
      }
    } else if (a == "-h" || a == "--help") {
      std::fputs(kReportUsage, stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      std::fprintf(stderr, "spillway report: unknown option '%s'\n%s", a.c_str(), kReportUsage);
      return 2;
    } else {
      paths.push_back(a);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "spillway report: no event log given\n%s", kReportUsage);
    return 2;
  }

  // Input size, for the progress bar (record count estimated from the file sizes).
  std::vector<std::uint64_t> sizes;
  std::uint64_t total = 0;
  for (const std::string& p : paths) {
    struct stat st {};
    const std::uint64_t sz = stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    sizes.push_back(sz);
    total += sz;
  }
  Bar bar(total / sizeof(trace::Record) > kBarRecords);

  std::vector<trace::Trace> logs(paths.size());
  std::uint64_t done = 0;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    std::string err;
    const bool ok = trace::ReadTrace(paths[i], &logs[i], &err, [&](double f) {
      bar.Set("reading", 0.5 * (static_cast<double>(done) + f * static_cast<double>(sizes[i])) /
                             static_cast<double>(total ? total : 1));
    });
    if (!ok) {
      bar.Done();
      std::fprintf(stderr, "spillway report: %s\n", err.c_str());
      return 1;
    }
    done += sizes[i];
  }
  report::Model model;
  std::string err;
  if (!report::Analyze(logs, &model, &err,
                       [&](double f) { bar.Set("analyzing", 0.5 + 0.5 * f); })) {
    bar.Done();
    std::fprintf(stderr, "spillway report: %s\n", err.c_str());
    return 1;
  }
  logs.clear();
  logs.shrink_to_fit();
  bar.Done();
  std::vector<std::string> written;
  if (!report::WriteReports(model, dir, formats, &written, &err)) {
    std::fprintf(stderr, "spillway report: %s\n", err.c_str());
    return 1;
  }
  const std::string text = report::RenderText(model);
  std::fputs(text.c_str(), stdout);
  std::fprintf(stdout, "report written to %s/:", dir.c_str());
  for (const std::string& w : written) std::fprintf(stdout, " %s", w.substr(w.rfind('/') + 1).c_str());
  std::fputc('\n', stdout);
  return 0;
}

}  // namespace spillway::cli
