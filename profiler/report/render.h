// render.h — the report writers. Each renders the whole Model as one document.
#pragma once

#include <string>

#include "profiler/report/model.h"

namespace spillway::report {

std::string RenderText(const Model& m);         // text.cpp: the summary printed on stderr
std::string RenderJson(const Model& m);         // json.cpp: figures and time series
std::string RenderChromeTrace(const Model& m);  // chrome.cpp: Chrome trace JSON (Perfetto)
std::string RenderHtml(const Model& m);         // html.cpp: self-contained page with plots
std::string RenderMemviz(const Model& m);       // memviz.cpp: PyTorch memory_viz pickle bytes

}  // namespace spillway::report
