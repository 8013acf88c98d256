// html.cpp — the Model as one self-contained HTML page: inline CSS, plots drawn here as inline
// SVG, and a few lines of inline JavaScript that only make the tables sortable. Nothing is
// fetched from the network (no CDN, fonts or images), so the page opens offline and from file://.
//
// Every string taken from the logs (paths, mark labels) goes through Esc() before it is written;
// no log text is written inside the <script>, which is a constant.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "profiler/report/callsites.h"
#include "profiler/report/model.h"
#include "profiler/report/offload.h"
#include "profiler/report/render.h"

namespace spillway::report {
namespace {

// ---- formatting -----------------------------------------------------------------------------

__attribute__((format(printf, 1, 2))) std::string F(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return {};
  if (static_cast<std::size_t>(n) < sizeof buf) return std::string(buf, static_cast<std::size_t>(n));
  std::string big(static_cast<std::size_t>(n) + 1, '\0');
  va_start(ap, fmt);
  std::vsnprintf(big.data(), big.size(), fmt, ap);
  va_end(ap);
  big.resize(static_cast<std::size_t>(n));
  return big;
}

// Text for HTML content and attribute values (both quote styles). Control characters other than
// tab and newline become '?'.
std::string Esc(std::string_view s) {
  std::string r;
  r.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      case '\'': r += "&#39;"; break;
      default:
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') || c == 0x7f) {
          r += '?';
        } else {
          r += c;
        }
    }
  }
  return r;
}

// At most `n` bytes of `s`, cut on a UTF-8 character boundary, with an ellipsis when cut.
std::string Trunc(std::string_view s, std::size_t n) {
  if (s.size() <= n) return std::string(s);
  std::size_t k = n;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xc0) == 0x80) --k;
  return std::string(s.substr(0, k)) + "\xe2\x80\xa6";
}

constexpr double kKiB = 1024.0, kMiB = kKiB * 1024, kGiB = kMiB * 1024, kTiB = kGiB * 1024;

std::string Bytes(std::uint64_t b) {
  const auto v = static_cast<double>(b);
  if (v >= kTiB) return F("%.2f TiB", v / kTiB);
  if (v >= kGiB) return F("%.2f GiB", v / kGiB);
  if (v >= kMiB) return F("%.2f MiB", v / kMiB);
  if (v >= kKiB) return F("%.2f KiB", v / kKiB);
  return F("%llu B", static_cast<unsigned long long>(b));
}

// Bucket floors are powers of two: no decimals needed.
std::string BytesShort(std::uint64_t b) {
  const auto v = static_cast<double>(b);
  if (v >= kTiB) return F("%g TiB", v / kTiB);
  if (v >= kGiB) return F("%g GiB", v / kGiB);
  if (v >= kMiB) return F("%g MiB", v / kMiB);
  if (v >= kKiB) return F("%g KiB", v / kKiB);
  return F("%llu B", static_cast<unsigned long long>(b));
}

std::string Dur(std::uint64_t ns) {
  const auto v = static_cast<double>(ns);
  if (v >= 1e9) return F("%.3f s", v / 1e9);
  if (v >= 1e6) return F("%.3f ms", v / 1e6);
  if (v >= 1e3) return F("%.3f \xc2\xb5s", v / 1e3);
  return F("%llu ns", static_cast<unsigned long long>(ns));
}

std::string Pct(double f) { return std::isfinite(f) ? F("%.1f%%", f * 100.0) : "\xe2\x80\x93"; }
std::string Ratio(double f) {
  return std::isfinite(f) && f > 0 ? F("%.2f\xc3\x97", f) : "\xe2\x80\x93";
}
std::string Hex(std::uint64_t v) { return F("0x%llx", static_cast<unsigned long long>(v)); }
std::string U(std::uint64_t v) { return F("%llu", static_cast<unsigned long long>(v)); }

std::string ProcName(const Model& m, std::uint32_t p) {
  if (p >= m.processes.size()) return F("process %u", p);
  const Process& pr = m.processes[p];
  if (pr.rank >= 0) return F("rank %d (pid %u)", pr.rank, pr.pid);
  return F("pid %u", pr.pid);
}

std::string DevName(const Model& m, std::uint32_t p, std::int32_t d) {
  if (m.processes.size() > 1) return F("GPU %d \xc2\xb7 ", d) + ProcName(m, p);
  return F("GPU %d", d);
}

const char* CallName(std::uint16_t k) {
  switch (k) {
    case 1: return "cudaMalloc";
    case 3: return "cudaMallocAsync";
    case 5: return "cuMemAlloc";
    case 7: return "cuMemAllocAsync";
    case 9: return "spillway_malloc";
    case 11: return "spillway_malloc_sync";
    default: return "?";
  }
}

// ---- axes -----------------------------------------------------------------------------------

struct Unit {
  double div;
  const char* name;
};

Unit ByteUnit(double max) {
  if (max >= kTiB) return {kTiB, "TiB"};
  if (max >= kGiB) return {kGiB, "GiB"};
  if (max >= kMiB) return {kMiB, "MiB"};
  if (max >= kKiB) return {kKiB, "KiB"};
  return {1, "B"};
}

Unit TimeUnit(double max_ns) {
  if (max_ns >= 1e9) return {1e9, "s"};
  if (max_ns >= 1e6) return {1e6, "ms"};
  if (max_ns >= 1e3) return {1e3, "\xc2\xb5s"};
  return {1, "ns"};
}

// A step of 1, 2 or 5 times a power of ten giving about `target` intervals over `range`.
double NiceStep(double range, int target) {
  if (!(range > 0) || !std::isfinite(range)) return 1;
  const double raw = range / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

std::string TickText(double v, double step) {
  int dec = 0;
  if (step < 1) dec = std::min(6, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  return F("%.*f", dec, v);
}

// A plot area in a viewBox of W x H, with data ranges [0, xmax] x [0, ymax].
struct Plot {
  double W = 1240, H = 330;
  double ml = 78, mr = 24, mt = 34, mb = 48;
  double xmax = 1, ymax = 1;
  double X(double x) const { return ml + (W - ml - mr) * (xmax > 0 ? x / xmax : 0); }
  double Y(double y) const { return H - mb - (H - mt - mb) * (ymax > 0 ? y / ymax : 0); }
  double Left() const { return ml; }
  double Right() const { return W - mr; }
  double Top() const { return mt; }
  double Bottom() const { return H - mb; }
};

void SvgOpen(std::string& s, const Plot& p, const std::string& aria) {
  s += F("<svg class=\"plot\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"", p.W, p.H);
  s += Esc(aria);
  s += "\">";
}

// Grid, ticks and labels. X is time in ns (scaled by xu), Y is in units of yu.
void Axes(std::string& s, Plot& p, Unit xu, Unit yu, const std::string& xlabel,
          const std::string& ylabel) {
  const double ystep = NiceStep(p.ymax / yu.div, 5);
  p.ymax = std::max(ystep, std::ceil(p.ymax / yu.div / ystep - 1e-9) * ystep) * yu.div;
  s += "<g class=\"grid\">";
  for (double v = 0; v <= p.ymax / yu.div + ystep * 1e-6; v += ystep) {
    const double y = p.Y(v * yu.div);
    s += F("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(), p.Right(), y, y);
  }
  s += "</g><g class=\"ticks\">";
  for (double v = 0; v <= p.ymax / yu.div + ystep * 1e-6; v += ystep) {
    const double y = p.Y(v * yu.div);
    s += F("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", p.Left() - 6, y + 4);
    s += TickText(v, ystep);
    s += "</text>";
  }
  const double xstep = NiceStep(p.xmax / xu.div, 10);
  for (double v = 0; v <= p.xmax / xu.div + xstep * 1e-6; v += xstep) {
    const double x = p.X(v * xu.div);
    s += F("<line class=\"tick\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", x, x,
           p.Bottom(), p.Bottom() + 5);
    s += F("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x, p.Bottom() + 18);
    s += TickText(v, xstep);
    s += "</text>";
  }
  s += "</g>";
  s += F("<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(),
         p.Right(), p.Bottom(), p.Bottom());
  s += F("<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(),
         p.Left(), p.Top(), p.Bottom());
  s += F("<text class=\"alabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
         (p.Left() + p.Right()) / 2, p.H - 8);
  s += Esc(xlabel) + "</text>";
  s += F("<text class=\"alabel\" transform=\"translate(16 %.1f) rotate(-90)\" "
         "text-anchor=\"middle\">",
         (p.Top() + p.Bottom()) / 2);
  s += Esc(ylabel) + "</text>";
}

// Legend entries drawn in a row at the top of the plot.
struct Key {
  std::string label, color, dash;
  bool dot = false;
};
void Legend(std::string& s, const Plot& p, const std::vector<Key>& keys) {
  double x = p.Left() + 4;
  const double y = 16;
  for (const Key& k : keys) {
    if (k.dot) {
      s += F("<path d=\"M%.1f %.1f l6 -10 l6 10 z\" fill=\"%s\"/>", x + 4, y + 4, k.color.c_str());
    } else {
      s += F("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
             "stroke-width=\"3\"%s/>",
             x, x + 20, y, y, k.color.c_str(),
             k.dash.empty() ? "" : (" stroke-dasharray=\"" + k.dash + "\"").c_str());
    }
    s += F("<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", x + 26, y + 4);
    s += Esc(k.label) + "</text>";
    x += 40 + 7.2 * static_cast<double>(k.label.size());
  }
}

// A step line (the value holds until the next sample).
template <class Get>
void StepLine(std::string& s, const Plot& p, const std::vector<Sample>& v, Get get,
              const char* color, const char* extra = "") {
  if (v.empty()) return;
  std::string pts;
  pts.reserve(v.size() * 24);
  double prev_y = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double x = p.X(static_cast<double>(v[i].t_ns));
    const double y = p.Y(std::min(get(v[i]), p.ymax));
    if (i > 0) pts += F("%.1f,%.1f ", x, prev_y);
    pts += F("%.1f,%.1f ", x, y);
    prev_y = y;
  }
  // Hold the last value to the end of the plot.
  pts += F("%.1f,%.1f", p.Right(), prev_y);
  s += F("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"", color, extra);
  s += pts + "\"/>";
}

// Layers [first, end) of per-sample values, stacked as filled step areas (the first at the
// bottom): get(i, k) is layer k's value at sample i of `v` (n samples).
template <class Get>
void StackedAreas(std::string& s, const Plot& p, const std::vector<Sample>& v, std::size_t n,
                  int first, int end, Get get, const char* const* colors,
                  const char* const* names) {
  n = std::min(v.size(), n);
  if (n == 0) return;
  std::vector<double> below(n, 0.0);
  for (int k = first; k < end; ++k) {
    std::vector<double> top(n);
    for (std::size_t i = 0; i < n; ++i) top[i] = below[i] + get(i, k);
    std::string pts;
    auto edge = [&](const std::vector<double>& y, bool forward) {
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t i = forward ? j : n - 1 - j;
        const double x0 = p.X(static_cast<double>(v[i].t_ns));
        const double x1 = i + 1 < n ? p.X(static_cast<double>(v[i + 1].t_ns)) : p.Right();
        const double yy = p.Y(std::min(y[i], p.ymax));
        pts += forward ? F("%.1f,%.1f %.1f,%.1f ", x0, yy, x1, yy)
                       : F("%.1f,%.1f %.1f,%.1f ", x1, yy, x0, yy);
      }
    };
    edge(top, true);
    edge(below, false);
    s += F("<polygon fill=\"%s\" fill-opacity=\"0.55\" stroke=\"none\" points=\"", colors[k]);
    s += pts + "\"><title>" + names[k] + "</title></polygon>";
    below = std::move(top);
  }
}

// Bytes of each kind of tensor, stacked as filled step areas (parameter at the bottom).
const char* kKindColors[kTensorKinds] = {"#cccccc", "#4c72b0", "#dd8452",
                                         "#8172b3", "#55a868", "#c7c7c7"};
void KindAreas(std::string& s, const Plot& p, const std::vector<Sample>& v,
               const std::vector<std::array<std::uint64_t, kTensorKinds>>& ks) {
  const char* names[kTensorKinds];
  for (int k = 0; k < kTensorKinds; ++k) names[k] = KindName(static_cast<TensorKind>(k));
  StackedAreas(
      s, p, v, ks.size(), 1, kTensorKinds,
      [&](std::size_t i, int k) { return static_cast<double>(ks[i][static_cast<std::size_t>(k)]); },
      kKindColors, names);
}

// Bytes of live blocks on each tier, stacked (device at the bottom, then host, then NVMe).
const char* kTierColors[kTiers] = {"#1f77b4", "#ff7f0e", "#8c564b"};
const char* kTierNames[kTiers] = {"on the device", "on the host", "on NVMe"};
void TierAreas(std::string& s, const Plot& p, const std::vector<Sample>& v,
               const std::vector<TierBytes>& ts) {
  StackedAreas(
      s, p, v, ts.size(), 0, kTiers,
      [&](std::size_t i, int k) {
        const TierBytes& t = ts[i];
        return static_cast<double>(k == 0 ? t.device : k == 1 ? t.host : t.nvme);
      },
      kTierColors, kTierNames);
}

bool HasMarks(const Model& m, std::uint32_t process) {
  return std::any_of(m.marks.begin(), m.marks.end(),
                     [&](const Mark& mk) { return mk.process == process; });
}
constexpr double kMarkBand = 40;  // room above the plot frame for mark labels (3 rows)

// Phase marks of one process: begin/end pairs as shaded spans, the rest as lines. Labels go in
// three staggered rows above the plot frame (see kMarkBand), so they never cover the data.
void Marks(std::string& s, const Plot& p, const Model& m, std::uint32_t process) {
  std::vector<const Mark*> ms;
  for (const Mark& mk : m.marks) {
    if (mk.process == process) ms.push_back(&mk);
  }
  std::stable_sort(ms.begin(), ms.end(),
                   [](const Mark* a, const Mark* b) { return a->t_ns < b->t_ns; });
  std::vector<std::pair<const Mark*, const Mark*>> spans;  // end may be null (never closed)
  std::vector<const Mark*> lines;
  std::vector<const Mark*> open;
  for (const Mark* mk : ms) {
    if (mk->phase == 1) {
      open.push_back(mk);
    } else if (mk->phase == 2) {
      auto it = std::find_if(open.rbegin(), open.rend(),
                             [&](const Mark* o) { return o->label == mk->label; });
      if (it != open.rend()) {
        spans.push_back({*it, mk});
        open.erase(std::next(it).base());
      } else {
        lines.push_back(mk);
      }
    } else {
      lines.push_back(mk);
    }
  }
  for (const Mark* o : open) lines.push_back(o);
  std::sort(spans.begin(), spans.end(),
            [](const auto& a, const auto& b) { return a.first->t_ns < b.first->t_ns; });
  // Too many labels would be unreadable: beyond 60 only the lines (with their tooltips) remain.
  const bool labels = spans.size() + lines.size() <= 60;
  int row = 0;
  s += "<g class=\"marks\">";
  for (const auto& [b, e] : spans) {
    const double x0 = p.X(static_cast<double>(b->t_ns));
    const double x1 = p.X(static_cast<double>(e->t_ns));
    s += F("<rect class=\"span\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">", x0,
           p.Top(), std::max(1.0, x1 - x0), p.Bottom() - p.Top());
    s += "<title>" + Esc(b->label) + " (" + Esc(Dur(b->t_ns)) + " \xe2\x80\x93 " +
         Esc(Dur(e->t_ns)) + ")</title></rect>";
    const double ly = p.Top() - 4 - 12.0 * (row % 3);
    s += F("<line class=\"mark\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", x0, x0, ly - 9,
           p.Top());
    if (labels) {
      s += F("<text class=\"mlabel\" x=\"%.1f\" y=\"%.1f\">", x0 + 3, ly);
      s += Esc(Trunc(b->label, 28)) + "</text>";
    }
    ++row;
  }
  for (const Mark* mk : lines) {
    const double x = p.X(static_cast<double>(mk->t_ns));
    const double ly = p.Top() - 4 - 12.0 * (row % 3);
    s += F("<line class=\"mark\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\">", x, x, ly - 9,
           p.Bottom());
    s += "<title>" + Esc(mk->label) + " @ " + Esc(Dur(mk->t_ns)) + "</title></line>";
    if (labels) {
      s += F("<text class=\"mlabel\" x=\"%.1f\" y=\"%.1f\">", x + 3, ly);
      s += Esc(Trunc(mk->label, 28)) + "</text>";
    }
    ++row;
  }
  s += "</g>";
}

// ---- sections -------------------------------------------------------------------------------

const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                         "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#d62728"};

void MemoryPlot(std::string& s, const Model& m, const Series& se) {
  Plot p;
  if (HasMarks(m, se.process)) p.mt += kMarkBand;
  p.H += p.mt - 34;
  p.xmax = static_cast<double>(std::max<std::uint64_t>(m.end_ns, 1));
  double ymax = 0;
  for (const Sample& x : se.samples) {
    ymax = std::max({ymax, static_cast<double>(x.allocated), static_cast<double>(x.reserved),
                     static_cast<double>(x.mapped)});
    p.xmax = std::max(p.xmax, static_cast<double>(x.t_ns));
  }
  p.ymax = std::max(ymax, 1.0);
  const Unit yu = ByteUnit(p.ymax), xu = TimeUnit(p.xmax);
  SvgOpen(s, p, "memory over time, " + DevName(m, se.process, se.device));
  Axes(s, p, xu, yu, std::string("time (") + xu.name + ")", std::string("memory (") + yu.name + ")");
  Marks(s, p, m, se.process);
  const auto si = static_cast<std::size_t>(&se - m.series.data());
  const bool kinds = si < m.kind_series.size() && !m.kind_series[si].empty();
  if (kinds) KindAreas(s, p, se.samples, m.kind_series[si]);
  StepLine(s, p, se.samples, [](const Sample& x) { return static_cast<double>(x.mapped); },
           "#2ca02c", " stroke-dasharray=\"5 3\"");
  StepLine(s, p, se.samples, [](const Sample& x) { return static_cast<double>(x.reserved); },
           "#ff7f0e");
  StepLine(s, p, se.samples, [](const Sample& x) { return static_cast<double>(x.allocated); },
           "#1f77b4");
  // The peak of allocated.
  for (const DeviceSummary& d : m.devices) {
    if (d.process != se.process || d.device != se.device || d.peak_allocated == 0) continue;
    const double x = p.X(static_cast<double>(d.peak_allocated_ns));
    const double y = p.Y(static_cast<double>(d.peak_allocated));
    s += F("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"none\" stroke=\"#1f77b4\" "
           "stroke-width=\"2\">",
           x, y);
    s += "<title>peak allocated " + Esc(Bytes(d.peak_allocated)) + " at " +
         Esc(Dur(d.peak_allocated_ns)) + "</title></circle>";
    const bool left = x > p.Left() + 140;
    s += F("<text class=\"peak\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x + (left ? -8 : 8),
           std::max(y - 6, p.Top() + 10), left ? "end" : "start");
    s += "peak " + Esc(Bytes(d.peak_allocated)) + "</text>";
  }
  // OOMs: red markers at the allocated level of their time, with the request in the tooltip.
  bool any_oom = false;
  for (const Oom& o : m.ooms) {
    if (o.process != se.process || o.device != se.device) continue;
    any_oom = true;
    double level = 0;
    auto it = std::upper_bound(se.samples.begin(), se.samples.end(), o.t_ns,
                               [](std::uint64_t t, const Sample& x) { return t < x.t_ns; });
    if (it != se.samples.begin()) level = static_cast<double>(std::prev(it)->allocated);
    const double x = p.X(static_cast<double>(o.t_ns));
    const double y = p.Y(std::min(level, p.ymax));
    s += F("<g class=\"oom\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
           "<path d=\"M%.1f %.1f l-6 -11 l12 0 z\"/>",
           x, x, p.Top(), p.Bottom(), x, y);
    s += "<title>out of memory: " + Esc(Bytes(o.bytes)) + " requested at " + Esc(Dur(o.t_ns)) +
         "</title></g>";
  }
  std::vector<Key> keys = {{"allocated", "#1f77b4", "", false},
                           {"reserved", "#ff7f0e", "", false},
                           {"mapped", "#2ca02c", "5 3", false}};
  if (any_oom) keys.push_back({"out of memory", "#d62728", "", true});
  if (kinds)
    for (int k = 1; k < kTensorKinds; ++k)
      keys.push_back({KindName(static_cast<TensorKind>(k)), kKindColors[k], "", true});
  Legend(s, p, keys);
  s += "</svg>";
}

// Bytes of the device's live blocks on each tier, stacked, with allocated as a dashed line.
void TierPlot(std::string& s, const Model& m, const Series& se, const std::vector<TierBytes>& ts) {
  Plot p;
  if (HasMarks(m, se.process)) p.mt += kMarkBand;
  p.H += p.mt - 34;
  p.xmax = static_cast<double>(std::max<std::uint64_t>(m.end_ns, 1));
  double ymax = 0;
  for (std::size_t i = 0; i < se.samples.size() && i < ts.size(); ++i) {
    const TierBytes& t = ts[i];
    ymax = std::max({ymax, static_cast<double>(t.device + t.host + t.nvme),
                     static_cast<double>(se.samples[i].allocated)});
    p.xmax = std::max(p.xmax, static_cast<double>(se.samples[i].t_ns));
  }
  p.ymax = std::max(ymax, 1.0);
  const Unit yu = ByteUnit(p.ymax), xu = TimeUnit(p.xmax);
  SvgOpen(s, p, "memory by tier, " + DevName(m, se.process, se.device));
  Axes(s, p, xu, yu, std::string("time (") + xu.name + ")",
       std::string("memory (") + yu.name + ")");
  Marks(s, p, m, se.process);
  TierAreas(s, p, se.samples, ts);
  StepLine(
      s, p, se.samples, [](const Sample& x) { return static_cast<double>(x.allocated); }, "#1d2430",
      " stroke-dasharray=\"5 3\"");
  std::vector<Key> keys;
  for (int k = 0; k < kTiers; ++k) keys.push_back({kTierNames[k], kTierColors[k], "", true});
  keys.push_back({"allocated", "#1d2430", "5 3", false});
  Legend(s, p, keys);
  s += "</svg>";
}

void FragPlot(std::string& s, const Model& m, const Series& se) {
  Plot p;
  p.H = 260;
  p.mr = 70;
  if (HasMarks(m, se.process)) p.mt += kMarkBand;
  p.H += p.mt - 34;
  p.xmax = static_cast<double>(std::max<std::uint64_t>(m.end_ns, 1));
  double omax = 1;
  for (const Sample& x : se.samples) {
    p.xmax = std::max(p.xmax, static_cast<double>(x.t_ns));
    if (std::isfinite(x.overhead)) omax = std::max(omax, x.overhead);
  }
  omax = std::min(omax, 1e6);
  const Unit xu = TimeUnit(p.xmax);
  p.ymax = 1.0;  // fractions, shown in %
  SvgOpen(s, p, "fragmentation over time, " + DevName(m, se.process, se.device));
  Axes(s, p, xu, {0.01, "%"}, std::string("time (") + xu.name + ")", "fragmentation (%)");
  // The right axis: overhead = reserved / allocated, from 0 to a nice maximum.
  const double ostep = NiceStep(omax, 5);
  omax = std::max(ostep, std::ceil(omax / ostep - 1e-9) * ostep);
  s += "<g class=\"ticks\">";
  for (double v = 0; v <= omax + ostep * 1e-6; v += ostep) {
    const double y = p.Y(v / omax);
    s += F("<text x=\"%.1f\" y=\"%.1f\">", p.Right() + 6, y + 4);
    s += TickText(v, ostep) + "\xc3\x97</text>";
  }
  s += "</g>";
  s += F("<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Right(),
         p.Right(), p.Top(), p.Bottom());
  s += F("<text class=\"alabel\" transform=\"translate(%.1f %.1f) rotate(90)\" "
         "text-anchor=\"middle\">reserved / allocated (\xc3\x97)</text>",
         p.W - 14, (p.Top() + p.Bottom()) / 2);
  Marks(s, p, m, se.process);
  auto finite = [](double v) { return std::isfinite(v) ? std::max(v, 0.0) : 0.0; };
  StepLine(s, p, se.samples, [&](const Sample& x) { return std::min(finite(x.overhead) / omax, 1.0); },
           "#9467bd", " stroke-dasharray=\"5 3\"");
  StepLine(s, p, se.samples, [&](const Sample& x) { return std::min(finite(x.external), 1.0); },
           "#d62728");
  StepLine(s, p, se.samples, [&](const Sample& x) { return std::min(finite(x.internal), 1.0); },
           "#1f77b4");
  Legend(s, p, {{"internal (rounding waste / reserved)", "#1f77b4", "", false},
                {"external (1 \xe2\x88\x92 largest free / free)", "#d62728", "", false},
                {"reserved / allocated (right axis)", "#9467bd", "5 3", false}});
  s += "</svg>";
}

// Bars of one histogram column (count or bytes) on categorical x.
void Bars(std::string& s, const Model& m, bool bytes) {
  const Histogram& h = m.sizes;
  const std::size_t n = std::min({h.bucket_floor.size(), h.count.size(), h.bytes.size()});
  Plot p;
  p.W = 615;
  p.H = 300;
  p.mb = 70;
  p.ml = 70;
  p.mr = 12;
  p.xmax = static_cast<double>(std::max<std::size_t>(n, 1));
  double ymax = 1;
  for (std::size_t i = 0; i < n; ++i) {
    ymax = std::max(ymax, static_cast<double>(bytes ? h.bytes[i] : h.count[i]));
  }
  p.ymax = ymax;
  const Unit yu = bytes ? ByteUnit(ymax) : Unit{1, ""};
  SvgOpen(s, p, bytes ? "bytes per size bucket" : "allocations per size bucket");
  // Y grid and ticks only (the x axis is categorical).
  const double ystep = NiceStep(p.ymax / yu.div, 5);
  p.ymax = std::max(ystep, std::ceil(p.ymax / yu.div / ystep - 1e-9) * ystep) * yu.div;
  s += "<g class=\"grid\">";
  for (double v = 0; v <= p.ymax / yu.div + ystep * 1e-6; v += ystep) {
    s += F("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(), p.Right(),
           p.Y(v * yu.div), p.Y(v * yu.div));
  }
  s += "</g><g class=\"ticks\">";
  for (double v = 0; v <= p.ymax / yu.div + ystep * 1e-6; v += ystep) {
    s += F("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", p.Left() - 6, p.Y(v * yu.div) + 4);
    s += TickText(v, ystep) + "</text>";
  }
  s += "</g>";
  const double bw = (p.Right() - p.Left()) / p.xmax;
  const char* color = bytes ? "#ff7f0e" : "#1f77b4";
  for (std::size_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(bytes ? h.bytes[i] : h.count[i]);
    const double x = p.Left() + bw * static_cast<double>(i);
    const double y = p.Y(v);
    const std::string range = BytesShort(h.bucket_floor[i]) + " \xe2\x80\x93 " +
                              (i + 1 < n ? BytesShort(h.bucket_floor[i + 1]) : std::string("\xe2\x88\x9e"));
    s += F("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\">", x + bw * 0.1,
           y, std::max(bw * 0.8, 0.5), p.Bottom() - y, color);
    s += "<title>" + Esc(range) + ": " + U(h.count[i]) + " allocations, " + Esc(Bytes(h.bytes[i])) +
         "</title></rect>";
    const double lx = x + bw / 2;
    s += F("<text class=\"xcat\" transform=\"translate(%.1f %.1f) rotate(-45)\" "
           "text-anchor=\"end\">",
           lx + 3, p.Bottom() + 12);
    s += Esc(BytesShort(h.bucket_floor[i])) + "</text>";
  }
  s += F("<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(),
         p.Right(), p.Bottom(), p.Bottom());
  s += F("<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(),
         p.Left(), p.Top(), p.Bottom());
  s += F("<text class=\"alabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">size bucket "
         "(lower bound)</text>",
         (p.Left() + p.Right()) / 2, p.H - 6);
  s += F("<text class=\"alabel\" transform=\"translate(14 %.1f) rotate(-90)\" "
         "text-anchor=\"middle\">",
         (p.Top() + p.Bottom()) / 2);
  s += bytes ? F("bytes allocated (%s)", yu.name) : std::string("allocations (count)");
  s += "</text>";
  s += F("<text class=\"ptitle\" x=\"%.1f\" y=\"18\">%s</text>", p.Left(),
         bytes ? "Bytes per bucket" : "Allocations per bucket");
  s += "</svg>";
}

void Gantt(std::string& s, const Model& m) {
  std::vector<std::size_t> idx(m.blocks.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  const std::size_t n = std::min<std::size_t>(30, idx.size());
  std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(n), idx.end(),
                    [&](std::size_t a, std::size_t b) {
                      const Block &x = m.blocks[a], &y = m.blocks[b];
                      const auto sx = std::max(x.rounded, x.requested);
                      const auto sy = std::max(y.rounded, y.requested);
                      if (sx != sy) return sx > sy;
                      return x.alloc_ns != y.alloc_ns ? x.alloc_ns < y.alloc_ns : a < b;
                    });
  idx.resize(n);
  Plot p;
  p.ml = 250;
  p.mt = 30;
  p.mb = 48;
  const double row = 20;
  p.H = p.mt + p.mb + row * static_cast<double>(n);
  p.xmax = static_cast<double>(std::max<std::uint64_t>(m.end_ns, 1));
  for (std::size_t i : idx) p.xmax = std::max(p.xmax, static_cast<double>(m.blocks[i].free_ns));
  const Unit xu = TimeUnit(p.xmax);
  SvgOpen(s, p, "lifetimes of the largest blocks");
  // Time grid and axis.
  const double xstep = NiceStep(p.xmax / xu.div, 10);
  s += "<g class=\"grid\">";
  for (double v = 0; v <= p.xmax / xu.div + xstep * 1e-6; v += xstep) {
    const double x = p.X(v * xu.div);
    s += F("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", x, x, p.Top(), p.Bottom());
  }
  s += "</g><g class=\"ticks\">";
  for (double v = 0; v <= p.xmax / xu.div + xstep * 1e-6; v += xstep) {
    s += F("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", p.X(v * xu.div), p.Bottom() + 18);
    s += TickText(v, xstep) + "</text>";
  }
  s += "</g>";
  std::map<std::pair<std::uint32_t, std::int32_t>, std::size_t> colors;
  for (const Block& b : m.blocks) colors.emplace(std::make_pair(b.process, b.device), colors.size());
  for (std::size_t r = 0; r < n; ++r) {
    const Block& b = m.blocks[idx[r]];
    const double y = p.Top() + row * static_cast<double>(r);
    const char* color = kColors[colors[{b.process, b.device}] % 9];
    const double x0 = p.X(static_cast<double>(b.alloc_ns));
    const double x1 = p.X(static_cast<double>(std::max(b.free_ns, b.alloc_ns)));
    if (r % 2 == 0) {
      s += F("<rect class=\"band\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>", 4.0, y,
             p.Right() - 4, row);
    }
    s += F("<text class=\"glabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", p.Left() - 8,
           y + row / 2 + 4);
    s += Esc(Bytes(std::max(b.rounded, b.requested))) + " \xc2\xb7 " +
         Esc(DevName(m, b.process, b.device)) + "</text>";
    s += F("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" rx=\"2\" fill=\"%s\"%s>",
           x0, y + 3, std::max(x1 - x0, 2.0), row - 6, color,
           b.live_at_end ? " fill-opacity=\"0.45\" stroke-dasharray=\"4 2\" stroke=\"#333\"" : "");
    s += "<title>" + Esc(Hex(b.addr)) + ": " + Esc(Bytes(b.requested)) + " requested, " +
         Esc(Bytes(b.rounded)) + " block, " + CallName(b.call) + " on stream " + Esc(Hex(b.stream)) +
         "; allocated at " + Esc(Dur(b.alloc_ns)) +
         (b.live_at_end ? std::string(", still live at the end")
                        : ", freed at " + Esc(Dur(b.free_ns)) + " (lived " +
                              Esc(Dur(b.free_ns - std::min(b.free_ns, b.alloc_ns))) + ")") +
         "</title></rect>";
  }
  s += F("<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", p.Left(),
         p.Right(), p.Bottom(), p.Bottom());
  s += F("<text class=\"alabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">time (%s)</text>",
         (p.Left() + p.Right()) / 2, p.H - 8, xu.name);
  Legend(s, p, {{"allocated \xe2\x80\xa6 freed", kColors[0], "", false},
                {"still live at the end (faded, dashed)", "#9ab", "4 2", false}});
  s += "</svg>";
}

// ---- page -----------------------------------------------------------------------------------

constexpr const char* kStyle = R"CSS(
:root { --fg:#1d2430; --muted:#5b6678; --line:#d9dee7; --bg:#f5f7fa; --card:#fff; --accent:#1f77b4; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Helvetica, Arial, sans-serif; }
header { background:#1d2430; color:#fff; padding:18px 28px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .sub { color:#b8c2d3; font-size:13px; }
main { max-width:1320px; margin:0 auto; padding:18px 28px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 18px;
  margin:16px 0; }
h2 { font-size:17px; margin:0 0 10px; font-weight:600; }
h3 { font-size:14px; margin:14px 0 6px; color:var(--muted); font-weight:600; }
.tiles { display:flex; flex-wrap:wrap; gap:10px; margin-top:14px; }
.tile { background:#2a3444; border-radius:6px; padding:8px 14px; min-width:120px; }
.tile .v { font-size:18px; font-weight:600; }
.tile .k { font-size:12px; color:#b8c2d3; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { background:#eef1f6; font-weight:600; cursor:pointer; user-select:none; white-space:normal;
  vertical-align:bottom; }
.scroll { overflow-x:auto; }
th.l, td.l { text-align:left; }
td.path { white-space:normal; word-break:break-all; text-align:left; }
tr:hover td { background:#f7f9fc; }
.mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.note { color:var(--muted); font-size:12.5px; margin:6px 0; }
.empty { padding:30px; text-align:center; color:var(--muted); font-size:15px; }
.twocol { display:flex; gap:10px; }
.twocol > svg { flex:1 1 0; min-width:0; }
svg.plot { width:100%; height:auto; display:block; font-family: inherit; }
svg .grid line { stroke:#e8ebf0; stroke-width:1; }
svg .ticks text, svg .xcat { font-size:11px; fill:#5b6678; }
svg .tick { stroke:#8a94a6; }
svg .axis { stroke:#8a94a6; stroke-width:1; }
svg .alabel { font-size:12px; fill:#3b4556; }
svg .legend { font-size:12px; fill:#1d2430; }
svg .ptitle { font-size:13px; font-weight:600; fill:#1d2430; }
svg .mark { stroke:#6b7280; stroke-dasharray:3 3; stroke-width:1; }
svg .span { fill:#6b7280; fill-opacity:0.08; stroke:#6b7280; stroke-opacity:0.35; }
svg .mlabel { font-size:10.5px; fill:#4b5563; }
svg .peak { font-size:11px; fill:#1f77b4; font-weight:600; }
svg .mlabel, svg .peak { paint-order:stroke; stroke:#fff; stroke-width:3px; stroke-linejoin:round; }
svg .oom line { stroke:#d62728; stroke-width:1; stroke-opacity:0.5; }
svg .oom path { fill:#d62728; }
svg .band { fill:#f4f6f9; }
svg .glabel { font-size:11.5px; fill:#1d2430; }
.bad { color:#d62728; font-weight:600; }
)CSS";

// Click a column header to sort by it (numbers by their data-v value). No data is read here.
// The script ends by setting data-js="ok" on <html> ("error: ..." if it threw): the headless
// Chromium check (scripts/html-screenshot.sh) reads it back from the DOM.
constexpr const char* kScript = R"JS(
(function () {
  'use strict';
  var root = document.documentElement;
  try {
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (table) {
    var heads = table.querySelectorAll('th');
    Array.prototype.forEach.call(heads, function (th, col) {
      th.title = 'sort';
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        if (!body) return;
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('data-sort') !== 'asc';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-sort'); });
        th.setAttribute('data-sort', asc ? 'asc' : 'desc');
        var key = function (row) {
          var cell = row.cells[col];
          if (!cell) return '';
          var v = cell.getAttribute('data-v');
          return v === null ? cell.textContent : parseFloat(v);
        };
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var r = (typeof x === 'number' && typeof y === 'number') ? x - y
                  : String(x).localeCompare(String(y));
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  root.setAttribute('data-js', 'ok');
  } catch (e) {
    root.setAttribute('data-js', 'error: ' + e);
    throw e;
  }
})();
)JS";

std::string Td(const std::string& text, double v, const char* cls = nullptr) {
  std::string s = "<td";
  if (cls) s += F(" class=\"%s\"", cls);
  s += F(" data-v=\"%.17g\">", std::isfinite(v) ? v : 0.0);
  return s + Esc(text) + "</td>";
}
std::string TdL(const std::string& text, const char* cls = "l") {
  return F("<td class=\"%s\">", cls) + Esc(text) + "</td>";
}

void Header(std::string& s, const Model& m) {
  std::set<std::int32_t> ranks;
  for (const Process& p : m.processes) {
    if (p.rank >= 0) ranks.insert(p.rank);
  }
  std::string rank_text;
  if (ranks.empty()) {
    rank_text = "none";
  } else {
    std::size_t k = 0;
    for (std::int32_t r : ranks) {
      if (k++ == 8) {
        rank_text += F(", \xe2\x80\xa6 (%zu)", ranks.size());
        break;
      }
      rank_text += (rank_text.empty() ? "" : ", ") + F("%d", r);
    }
  }
  std::size_t live = 0;
  for (const Block& b : m.blocks) live += b.live_at_end ? 1 : 0;
  s += "<header><h1>Spillway memory report</h1><div class=\"sub\">";
  s += F("%zu process%s \xc2\xb7 %zu device%s \xc2\xb7 ", m.processes.size(),
         m.processes.size() == 1 ? "" : "es", m.devices.size(), m.devices.size() == 1 ? "" : "s");
  s += "duration " + Esc(Dur(m.end_ns)) + "</div><div class=\"tiles\">";
  auto tile = [&](const std::string& k, const std::string& v, bool bad = false) {
    s += "<div class=\"tile\"><div class=\"v" + std::string(bad ? " bad" : "") + "\">" + Esc(v) +
         "</div><div class=\"k\">" + Esc(k) + "</div></div>";
  };
  tile("processes", U(m.processes.size()));
  tile(ranks.empty() ? "ranks" : "ranks: " + rank_text, ranks.empty() ? "none" : U(ranks.size()));
  tile("duration", Dur(m.end_ns));
  tile("events", U(m.events));
  tile("allocations", U(m.blocks.size()));
  tile("live at the end", U(live));
  tile("out of memory", U(m.ooms.size()), !m.ooms.empty());
  tile("marks", U(m.marks.size()));
  s += "</div></header>";
}

void ProcessTable(std::string& s, const Model& m) {
  if (m.processes.empty()) return;
  s += "<section><h2>Processes</h2><div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>#</th><th>pid</th>"
       "<th>rank</th><th>starts at</th><th>records</th><th class=\"l\">log</th></tr></thead><tbody>";
  for (std::size_t i = 0; i < m.processes.size(); ++i) {
    const Process& p = m.processes[i];
    s += "<tr>" + Td(U(i), static_cast<double>(i)) + Td(U(p.pid), p.pid) +
         Td(p.rank >= 0 ? F("%d", p.rank) : std::string("\xe2\x80\x93"), p.rank) +
         Td(Dur(p.offset_ns), static_cast<double>(p.offset_ns)) +
         Td(U(p.records), static_cast<double>(p.records)) + TdL(p.path, "path mono") + "</tr>";
  }
  s += "</tbody></table></div></section>";
}

void PeakTable(std::string& s, const Model& m) {
  s += "<section><h2>Peaks per device</h2>"
       "<p class=\"note\">Allocated = bytes requested by live blocks; reserved = device memory "
       "held by Spillway. Fragmentation at the moment allocated peaked: internal = rounding "
       "waste / reserved, external = 1 \xe2\x88\x92 largest free extent / free mapped bytes, and "
       "reserved / allocated.</p>"
       "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th class=\"l\">device</th><th>allocs</th>"
       "<th>frees</th><th>failed</th><th>passed to CUDA</th><th>peak allocated</th><th>at</th>"
       "<th>peak reserved</th><th>at</th><th>internal</th><th>external</th>"
       "<th>reserved / allocated</th><th>maps / unmaps</th><th>chunks created / released</th>"
       "</tr></thead><tbody>";
  for (const DeviceSummary& d : m.devices) {
    s += "<tr>" + TdL(DevName(m, d.process, d.device)) +
         Td(U(d.allocs), static_cast<double>(d.allocs)) +
         Td(U(d.frees), static_cast<double>(d.frees)) +
         (d.failed ? "<td class=\"bad\" data-v=\"" + U(d.failed) + "\">" + U(d.failed) + "</td>"
                   : Td("0", 0)) +
         Td(U(d.passed_through), static_cast<double>(d.passed_through)) +
         Td(Bytes(d.peak_allocated), static_cast<double>(d.peak_allocated)) +
         Td(Dur(d.peak_allocated_ns), static_cast<double>(d.peak_allocated_ns)) +
         Td(Bytes(d.peak_reserved), static_cast<double>(d.peak_reserved)) +
         Td(Dur(d.peak_reserved_ns), static_cast<double>(d.peak_reserved_ns)) +
         Td(Pct(d.at_peak.internal), d.at_peak.internal) +
         Td(Pct(d.at_peak.external), d.at_peak.external) +
         Td(Ratio(d.at_peak.overhead), d.at_peak.overhead) +
         Td(U(d.maps) + " / " + U(d.unmaps), static_cast<double>(d.maps)) +
         Td(U(d.chunk_creates) + " / " + U(d.chunk_releases),
            static_cast<double>(d.chunk_creates)) +
         "</tr>";
  }
  s += "</tbody></table></div></section>";
}

void LargestAtPeak(std::string& s, const Model& m) {
  s += "<section><h2>Largest blocks at the peak</h2>";
  for (const DeviceSummary& d : m.devices) {
    s += "<h3>" + Esc(DevName(m, d.process, d.device)) + " \xe2\x80\x94 peak " +
         Esc(Bytes(d.peak_allocated)) + " at " + Esc(Dur(d.peak_allocated_ns)) + "</h3>";
    if (d.largest_at_peak.empty()) {
      s += "<p class=\"note\">No live blocks at the peak.</p>";
      continue;
    }
    s += "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>#</th><th class=\"l\">address</th>"
         "<th>requested</th><th>block</th><th>share of peak</th><th>allocated at</th>"
         "<th>freed at</th><th>lifetime</th><th class=\"l\">stream</th><th class=\"l\">call</th>"
         "<th class=\"l\">call site</th></tr></thead><tbody>";
    std::size_t k = 0;
    for (std::uint32_t i : d.largest_at_peak) {
      if (i >= m.blocks.size()) continue;
      const Block& b = m.blocks[i];
      const std::uint64_t life = b.free_ns - std::min(b.free_ns, b.alloc_ns);
      const double share = d.peak_allocated ? static_cast<double>(b.requested) /
                                                   static_cast<double>(d.peak_allocated)
                                            : 0.0;
      ++k;
      s += "<tr>" + Td(U(k), static_cast<double>(k)) + TdL(Hex(b.addr), "l mono") +
           Td(Bytes(b.requested), static_cast<double>(b.requested)) +
           Td(Bytes(b.rounded), static_cast<double>(b.rounded)) + Td(Pct(share), share) +
           Td(Dur(b.alloc_ns), static_cast<double>(b.alloc_ns)) +
           (b.live_at_end ? Td("live at end", 1e300) : Td(Dur(b.free_ns), static_cast<double>(b.free_ns))) +
           Td(b.live_at_end ? "\xe2\x89\xa5 " + Dur(life) : Dur(life), static_cast<double>(life)) +
           TdL(Hex(b.stream), "l mono") + TdL(CallName(b.call)) + CallSiteCell(m, b) + "</tr>";
    }
    s += "</tbody></table></div>";
  }
  s += "</section>";
}

std::string GBps(double v) {
  return std::isfinite(v) && v > 0 ? F("%.2f GB/s", v) : "\xe2\x80\x93";
}

// The offload figures (docs/profiler.md, "Offload in reports"): only with offload records.
void OffloadSection(std::string& s, const Model& m) {
  const Offload& f = m.offload;
  if (f.events == 0) return;
  s += "<section><h2>Offload</h2><p class=\"note\">Traffic between the tiers; bandwidth = bytes "
       "/ time spent moving (GB/s, 10<sup>9</sup> bytes), and the median of the moves. A stall "
       "is a fetch a launch or access waited for; prefetch hit rate = fetches that reached the "
       "device without a wait / all fetches that reached the device.</p>";
  s += "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th class=\"l\">figure</th>"
       "<th>value</th></tr></thead><tbody>";
  auto row = [&](const std::string& k, const std::string& v, double d) {
    s += "<tr>" + TdL(k) + Td(v, d) + "</tr>";
  };
  row("evictions", U(f.evictions), static_cast<double>(f.evictions));
  row("fetches", U(f.fetches), static_cast<double>(f.fetches));
  row("stalls", U(f.stalls), static_cast<double>(f.stalls));
  row("time waited in stalls", Dur(f.stall_ns), static_cast<double>(f.stall_ns));
  row("longest stall",
      f.stalls ? Dur(f.longest_stall.wait_ns) + " (" + Bytes(f.longest_stall.bytes) + " of " +
                     Hex(f.longest_stall.addr) + ", ended at " + Dur(f.longest_stall.t_ns) + ")"
               : std::string("\xe2\x80\x93"),
      static_cast<double>(f.longest_stall.wait_ns));
  row("prefetch hit rate",
      f.fetches_to_device ? Pct(f.prefetch_hit_rate) + " (" + U(f.prefetches_to_device) + " of " +
                                U(f.fetches_to_device) + ")"
                          : std::string("\xe2\x80\x93"),
      f.prefetch_hit_rate);
  row("errors", U(f.errors), static_cast<double>(f.errors));
  s += "</tbody></table></div>";

  s += "<h3>Traffic</h3><div class=\"scroll\"><table class=\"sortable\"><thead><tr>"
       "<th class=\"l\">direction</th><th>moves</th><th>bytes</th><th>time moving</th>"
       "<th>bandwidth</th><th>median of the moves</th></tr></thead><tbody>";
  for (std::uint32_t from = 0; from < kTiers; ++from) {
    for (std::uint32_t to = 0; to < kTiers; ++to) {
      const Traffic& t = f.traffic[from][to];
      if (t.moves == 0) continue;
      s += "<tr>" + TdL(std::string(TierName(from)) + " \xe2\x86\x92 " + TierName(to)) +
           Td(U(t.moves), static_cast<double>(t.moves)) +
           Td(Bytes(t.bytes), static_cast<double>(t.bytes)) +
           Td(Dur(t.ns), static_cast<double>(t.ns)) + Td(GBps(t.gbps), t.gbps) +
           Td(GBps(t.median_gbps), t.median_gbps) + "</tr>";
    }
  }
  s += "</tbody></table></div>";

  s += "<h3>Peaks per tier</h3><div class=\"scroll\"><table class=\"sortable\"><thead><tr>"
       "<th class=\"l\">device</th><th>on the device</th><th>at</th><th>on the host</th>"
       "<th>at</th><th>on NVMe</th><th>at</th></tr></thead><tbody>";
  for (const TierPeaks& d : f.devices) {
    s += "<tr>" + TdL(DevName(m, d.process, d.device)) +
         Td(Bytes(d.peak_device), static_cast<double>(d.peak_device)) +
         Td(Dur(d.peak_device_ns), static_cast<double>(d.peak_device_ns)) +
         Td(Bytes(d.peak_host), static_cast<double>(d.peak_host)) +
         Td(Dur(d.peak_host_ns), static_cast<double>(d.peak_host_ns)) +
         Td(Bytes(d.peak_nvme), static_cast<double>(d.peak_nvme)) +
         Td(Dur(d.peak_nvme_ns), static_cast<double>(d.peak_nvme_ns)) + "</tr>";
  }
  s += "</tbody></table></div>";

  if (f.errors) {
    s += "<h3>Errors</h3><p class=\"note\">";
    bool first = true;
    for (std::uint32_t r = 1; r <= 6; ++r) {  // reasons 1..5, then any other
      if (f.errors_by_reason[r % 6] == 0) continue;
      s += (first ? "" : ", ") + Esc(OffloadErrorName(r % 6)) + ": " + U(f.errors_by_reason[r % 6]);
      first = false;
    }
    s += F(". The first %zu:</p>", f.first_errors.size());
    s += "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>at</th>"
         "<th class=\"l\">device</th><th class=\"l\">address</th><th>bytes</th>"
         "<th class=\"l\">reason</th><th>status</th></tr></thead><tbody>";
    for (const OffloadFailure& e : f.first_errors) {
      s += "<tr>" + Td(Dur(e.t_ns), static_cast<double>(e.t_ns)) +
           TdL(DevName(m, e.process, e.device)) + TdL(Hex(e.addr), "l mono") +
           Td(Bytes(e.bytes), static_cast<double>(e.bytes)) + TdL(OffloadErrorName(e.reason)) +
           Td(U(e.status), e.status) + "</tr>";
    }
    s += "</tbody></table></div>";
  }
  s += "</section>";
}

void IdleLongest(std::string& s, const Model& m) {
  if (m.idle_longest.empty()) return;  // no access summaries: SPILLWAY_TRACK was off
  s += "<section><h2>Idle longest</h2><p class=\"note\">Blocks the tracker saw, ranked by size "
       "\xc3\x97 time from their last access (or allocation, if never touched) to their free or "
       "the end of the run: memory that could have been elsewhere.</p>"
       "<div class=\"scroll\"><table class=\"sortable\"><thead><tr><th>#</th>"
       "<th class=\"l\">address</th><th>requested</th><th>idle</th><th>accesses</th>"
       "<th>last access</th><th>allocated at</th><th>freed at</th><th class=\"l\">device</th>"
       "</tr></thead><tbody>";
  std::size_t k = 0;
  for (std::uint32_t i : m.idle_longest) {
    const Block& b = m.blocks[i];
    const std::uint64_t idle = IdleNs(b);
    ++k;
    s += "<tr>" + Td(U(k), static_cast<double>(k)) + TdL(Hex(b.addr), "l mono") +
         Td(Bytes(b.requested), static_cast<double>(b.requested)) +
         Td(Dur(idle), static_cast<double>(idle)) +
         Td(U(b.accesses), static_cast<double>(b.accesses)) +
         (b.accesses ? Td(Dur(b.last_access_ns), static_cast<double>(b.last_access_ns))
                     : Td("never", -1.0)) +
         Td(Dur(b.alloc_ns), static_cast<double>(b.alloc_ns)) +
         (b.live_at_end ? Td("live at end", 1e300)
                        : Td(Dur(b.free_ns), static_cast<double>(b.free_ns))) +
         TdL(DevName(m, b.process, b.device)) + "</tr>";
  }
  s += "</tbody></table></div></section>";
}

}  // namespace

std::string RenderHtml(const Model& m) {
  std::string s;
  s.reserve(64 * 1024);
  s += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       // Nothing may be loaded from anywhere: inline styles and scripts only.
       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
       "<title>Spillway memory report</title><style>";
  s += kStyle;
  s += "</style></head><body>";
  Header(s, m);
  s += "<main>";
  if (m.devices.empty() && m.series.empty() && m.blocks.empty()) {
    s += "<section><div class=\"empty\">No device memory activity was recorded";
    s += m.processes.empty() ? " (no logs were read)." : " in these logs.";
    s += "</div></section>";
    ProcessTable(s, m);
    s += "</main><script>";
    s += kScript;
    s += "</script></body></html>\n";
    return s;
  }
  PeakTable(s, m);

  s += "<section><h2>Memory over time</h2><p class=\"note\">Lines hold their value until the next "
       "sample. Dashed grey lines and shaded spans are phase marks; red triangles are "
       "out-of-memory failures (hover for details).</p>";
  if (m.series.empty()) s += "<p class=\"note\">No samples.</p>";
  for (const Series& se : m.series) {
    s += "<h3>" + Esc(DevName(m, se.process, se.device)) + "</h3>";
    MemoryPlot(s, m, se);
  }
  s += "</section>";

  if (m.offload.events != 0) {
    s += "<section><h2>Memory by tier</h2><p class=\"note\">Bytes of live blocks on the device, "
         "in host memory and on NVMe, stacked; the dashed line is allocated.</p>";
    for (std::size_t i = 0; i < m.series.size() && i < m.offload.tiers.size(); ++i) {
      const Series& se = m.series[i];
      s += "<h3>" + Esc(DevName(m, se.process, se.device)) + "</h3>";
      TierPlot(s, m, se, m.offload.tiers[i]);
    }
    s += "</section>";
    OffloadSection(s, m);
  }

  s += "<section><h2>Fragmentation over time</h2>";
  if (m.series.empty()) s += "<p class=\"note\">No samples.</p>";
  for (const Series& se : m.series) {
    s += "<h3>" + Esc(DevName(m, se.process, se.device)) + "</h3>";
    FragPlot(s, m, se);
  }
  s += "</section>";

  s += "<section><h2>Allocation sizes</h2><p class=\"note\">All allocations of all devices, in "
       "power-of-two buckets by requested size.</p>";
  if (m.sizes.bucket_floor.empty()) {
    s += "<p class=\"note\">No allocations.</p>";
  } else {
    s += "<div class=\"twocol\">";
    Bars(s, m, false);
    Bars(s, m, true);
    s += "</div>";
  }
  s += "</section>";

  s += "<section><h2>Lifetimes of the largest blocks</h2>";
  if (m.blocks.empty()) {
    s += "<p class=\"note\">No blocks.</p>";
  } else {
    s += F("<p class=\"note\">The %zu largest blocks of the run, from allocation to free; "
           "hover a bar for its address, sizes and times.</p>",
           std::min<std::size_t>(30, m.blocks.size()));
    Gantt(s, m);
  }
  s += "</section>";

  LargestAtPeak(s, m);
  IdleLongest(s, m);
  ProcessTable(s, m);
  s += "</main><script>";
  s += kScript;
  s += "</script></body></html>\n";
  return s;
}

}  // namespace spillway::report
