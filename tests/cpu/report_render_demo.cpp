// report_render_demo — writes the synthetic model as an HTML report (argv[1]) and, when given,
// as a memory_viz pickle (argv[2]). Used by the html_report_chromium test.
#include <cstdio>
#include <fstream>
#include <string>

#include "profiler/report/render.h"
#include "tests/cpu/report_synthetic.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT.html [OUT.pickle]\n", argv[0]);
    return 2;
  }
  const auto m = spillway::test::SyntheticModel();
  std::ofstream(argv[1], std::ios::binary) << spillway::report::RenderHtml(m);
  if (argc > 2) std::ofstream(argv[2], std::ios::binary) << spillway::report::RenderMemviz(m);
  return 0;
}
