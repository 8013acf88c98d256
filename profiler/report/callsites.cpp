// callsites.cpp — call sites in the reports (see callsites.h).
#include "profiler/report/callsites.h"

#include "profiler/report/json_util.h"

namespace spillway::report {

namespace {

const std::string* TextOf(const Model& m, const Block& b) {
  if (b.callsite == 0 || b.callsite > m.callsites.size()) return nullptr;
  return &m.callsites[b.callsite - 1];
}

std::string Esc(std::string_view s) {
  std::string r;
  r.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&':
        r += "&amp;";
        break;
      case '<':
        r += "&lt;";
        break;
      case '>':
        r += "&gt;";
        break;
      case '"':
        r += "&quot;";
        break;
      case '\'':
        r += "&#39;";
        break;
      default:
        r += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    }
  }
  return r;
}

}  // namespace

std::vector<CallFrame> ParseCallSite(std::string_view text) {
  std::vector<CallFrame> frames;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    CallFrame f;
    if (line.starts_with("py ")) {
      f.python = true;
      f.text = line.substr(3);
    } else if (line.starts_with("c ")) {
      f.text = line.substr(2);
      std::string_view t = line.substr(2);
      if (t.ends_with(')') && t.rfind(" (") != std::string_view::npos) {
        const std::size_t open = t.rfind(" (");
        f.module = t.substr(open + 2, t.size() - open - 3);
      } else if (const std::size_t plus = t.rfind('+');
                 plus != std::string_view::npos && plus > 0 && !t.starts_with("0x")) {
        f.module = t.substr(0, plus);
      }
    } else {
      continue;
    }
    frames.push_back(std::move(f));
  }
  return frames;
}

bool InternalFrame(const CallFrame& f) {
  if (f.python) return false;
  if (f.module.empty()) return true;
  static constexpr std::string_view kInternal[] = {
      "libspillway", "libtorch", "libc10",    "_C.cpython", "libcuda",   "libcublas", "libcudnn",
      "libnccl",     "libnvrtc", "libpython", "python",     "libc.so",   "libc-",     "libstdc++",
      "libgcc_s",    "ld-linux", "libffi",    "_ctypes",    "libpthread"};
  for (std::string_view p : kInternal)
    if (std::string_view(f.module).starts_with(p)) return true;
  return false;
}

std::uint32_t CallSiteTable::Intern(Model* m, const std::string& text) {
  auto [it, fresh] = ids_.emplace(text, static_cast<std::uint32_t>(m->callsites.size() + 1));
  if (fresh) m->callsites.push_back(text);
  return it->second;
}

std::string AutogradNode(const std::vector<CallFrame>& frames) {
  for (const CallFrame& f : frames) {
    if (f.python) continue;
    std::string_view t = f.text;
    if (!t.starts_with("torch::autograd::")) continue;
    const std::size_t apply = t.find("::apply(");
    if (apply == std::string_view::npos) continue;
    t = t.substr(0, apply);
    return std::string(t.substr(t.rfind("::") + 2));
  }
  return {};
}

bool LibraryPythonFrame(const CallFrame& f) {
  if (!f.python) return false;
  const std::string_view t = f.text;
  return t.find("/site-packages/") != std::string_view::npos ||
         t.find("/dist-packages/") != std::string_view::npos ||
         t.find("/lib/python3.") != std::string_view::npos || t.starts_with("<frozen ");
}

std::string SummaryOf(const std::vector<CallFrame>& frames) {
  const CallFrame* py = nullptr;        // innermost Python frame
  const CallFrame* py_user = nullptr;   // innermost outside installed packages
  const CallFrame* cpp = nullptr;
  const CallFrame* first_cpp = nullptr;
  for (const CallFrame& f : frames) {
    if (f.python) {
      if (py == nullptr) py = &f;
      if (py_user == nullptr && !LibraryPythonFrame(f)) py_user = &f;
    } else {
      if (first_cpp == nullptr) first_cpp = &f;
      if (cpp == nullptr && !InternalFrame(f)) cpp = &f;
    }
  }
  if (py == nullptr && cpp == nullptr) {
    // PyTorch's backward runs on its autograd thread, which has no Python frames: the node.
    if (std::string node = AutogradNode(frames); !node.empty()) return "[autograd " + node + "]";
    cpp = first_cpp;
  }
  std::string line;
  if (py_user != nullptr) {
    line = py_user->text;
    if (py_user != py) line += " (in " + py->text.substr(py->text.rfind(' ') + 1) + ")";
  } else if (py != nullptr) {
    line = py->text;
  }
  if (cpp != nullptr) line += (line.empty() ? "" : " ") + ("[C++ " + cpp->text + "]");
  return line;
}

std::string CallSiteLine(const Model& m, const Block& b) {
  const std::string* text = TextOf(m, b);
  return text == nullptr ? std::string{} : SummaryOf(ParseCallSite(*text));
}

void CallSiteJson(std::string* o, const Model& m, const Block& b) {
  const std::string* text = TextOf(m, b);
  if (text == nullptr) return;
  o->append(",\"callsite\":{\"summary\":");
  json::String(o, CallSiteLine(m, b));
  o->append(",\"frames\":[");
  bool first = true;
  for (const CallFrame& f : ParseCallSite(*text)) {
    if (!first) o->push_back(',');
    first = false;
    o->append(f.python ? "{\"lang\":\"python\",\"frame\":" : "{\"lang\":\"c++\",\"frame\":");
    json::String(o, f.text);
    if (!f.python) {
      o->append(",\"module\":");
      json::String(o, f.module);
    }
    o->push_back('}');
  }
  o->append("]}");
}

std::string CallSiteCell(const Model& m, const Block& b) {
  const std::string* text = TextOf(m, b);
  if (text == nullptr) return "<td class=\"l\"></td>";
  std::string s = "<td class=\"l callsite\"><details><summary>" + Esc(CallSiteLine(m, b)) +
                  "</summary><ol class=\"mono\">";
  for (const CallFrame& f : ParseCallSite(*text))
    s += std::string("<li>") + (f.python ? "py " : "C++ ") + Esc(f.text) + "</li>";
  return s + "</ol></details></td>";
}

}  // namespace spillway::report
