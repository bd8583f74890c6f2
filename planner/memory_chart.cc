#include "planner/memory_chart.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

namespace edgetrain {

namespace {

constexpr double kMiB = 1048576.0;

// Bottom to top of the stack: the constant categories first, so the moving ones (activations,
// gradients, workspace) ride on a flat base and their shape is easy to read.
constexpr std::array<MemoryCategory, kMemoryCategoryCount> kStackOrder = {
    MemoryCategory::kParameters,        MemoryCategory::kOptimizerState, MemoryCategory::kInputs,
    MemoryCategory::kActivations,       MemoryCategory::kPackedActivations, MemoryCategory::kGradients,
    MemoryCategory::kWorkspace};
// A category added to memory/liveness.h without a place here would silently be drawn as another.
constexpr bool stack_order_is_complete() {
  for (int c = 0; c < kMemoryCategoryCount; ++c) {
    int seen = 0;
    for (MemoryCategory s : kStackOrder) seen += static_cast<int>(s) == c;
    if (seen != 1) return false;
  }
  return true;
}
static_assert(stack_order_is_complete(), "kStackOrder must list every MemoryCategory once");

// Tableau-10-like colours: distinct for colour-blind readers too, and calm on a white page.
const char* category_color(MemoryCategory c) {
  switch (c) {
    case MemoryCategory::kParameters: return "#9aa5b1";
    case MemoryCategory::kOptimizerState: return "#b07aa1";
    case MemoryCategory::kInputs: return "#f1ce63";
    case MemoryCategory::kActivations: return "#4e79a7";
    case MemoryCategory::kPackedActivations: return "#a0cbe8";  // a lighter activations blue
    case MemoryCategory::kGradients: return "#e15759";
    case MemoryCategory::kWorkspace: return "#76b7b2";
    case MemoryCategory::kCount: break;
  }
  return "#000000";
}

constexpr int kPhaseCount = 5;
constexpr std::array<Phase, kPhaseCount> kPhases = {Phase::kPrepare, Phase::kForward, Phase::kBackward,
                                                      Phase::kRecompute, Phase::kUpdate};
// Background tints light enough that the stacked areas keep their colours, and label colours
// from the same hue.
const char* phase_tint(Phase p) {
  switch (p) {
    case Phase::kPrepare: return "#eeeeee";
    case Phase::kForward: return "#e8f0fa";
    case Phase::kBackward: return "#fcefe3";
    case Phase::kRecompute: return "#f1e8fa";
    case Phase::kUpdate: return "#e6f4e7";
  }
  return "#ffffff";
}
const char* phase_ink(Phase p) {
  switch (p) {
    case Phase::kPrepare: return "#666666";
    case Phase::kForward: return "#3a6ea5";
    case Phase::kBackward: return "#b8641f";
    case Phase::kRecompute: return "#7d4fb0";
    case Phase::kUpdate: return "#3f8f4a";
  }
  return "#000000";
}

std::string category_label(MemoryCategory c) {
  std::string s = memory_category_name(c);
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

// What lives outside the arena (memory/liveness.h: parameters, buffers, optimizer state).
std::string outside_label(const MemoryTimeline& t) {
  return t.at_peak[static_cast<size_t>(MemoryCategory::kOptimizerState)] > 0 ? "parameters + optimizer state"
                                                                              : "parameters";
}

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text; a name never needs them.
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t' && ch != '\n') out += ' ';
        else out += ch;
    }
  }
  return out;
}

// Coordinates with one decimal: plenty for a screen, and printf makes them deterministic.
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  std::string s = buf;
  if (s == "-0.0") s = "0.0";
  return s;
}

std::string percent(size_t part, size_t whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
  return buf;
}

// 1, 2 or 5 times a power of ten, at least `raw`: axis steps people read without arithmetic.
double nice_step(double raw) {
  if (!(raw > 0)) return 1;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / mag;
  double m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return m * mag;
}

// Enough decimals to tell ticks `step` apart ("0.25" never occurs: steps are 1, 2, 5 x 10^k).
int tick_decimals(double step) {
  if (step >= 1) return 0;
  return static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
}

std::string tick_label(double value, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

struct Text {
  double x, y;
  std::string text;
  int size = 12;
  const char* anchor = "start";
  const char* fill = "#333333";
  const char* weight = nullptr;
  bool halo = false;  // a white outline under the glyphs, for labels drawn over the chart
};

std::string text_element(const Text& t) {
  std::string s = "<text x=\"" + num(t.x) + "\" y=\"" + num(t.y) + "\" font-size=\"" + std::to_string(t.size) + "\"";
  if (std::string(t.anchor) != "start") s += std::string(" text-anchor=\"") + t.anchor + "\"";
  s += std::string(" fill=\"") + t.fill + "\"";
  if (t.weight) s += std::string(" font-weight=\"") + t.weight + "\"";
  if (t.halo) s += " stroke=\"#ffffff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";
  s += ">" + xml_escape(t.text) + "</text>\n";
  return s;
}

}  // namespace

std::string format_size(size_t bytes) {
  char buf[48];
  double b = static_cast<double>(bytes);
  if (b < 1024) std::snprintf(buf, sizeof buf, "%zu B", bytes);
  else if (b < kMiB) std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024);
  else if (b < 1024 * kMiB) std::snprintf(buf, sizeof buf, "%.2f MiB", b / kMiB);
  else std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024 * kMiB));
  return buf;
}

std::vector<PhaseSpan> phase_spans(const Graph& g) {
  std::vector<PhaseSpan> spans;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    int s = static_cast<int>(i);
    Phase p = g.nodes[i].phase;
    if (!spans.empty() && spans.back().phase == p && spans.back().last == s - 1) spans.back().last = s;
    else spans.push_back({p, s, s});
  }
  return spans;
}

std::vector<PhaseSpan> phase_regions(const Graph& g) {
  // The phase each step is drawn in: its own, except an update with non-update work after it,
  // which takes the phase of the work before it.
  std::vector<PhaseSpan> regions;
  int last_non_update = -1;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].phase != Phase::kUpdate) last_non_update = static_cast<int>(i);
  Phase carry = Phase::kForward;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    int s = static_cast<int>(i);
    Phase p = g.nodes[i].phase;
    if (p == Phase::kUpdate && s < last_non_update) p = carry;
    else carry = p;
    if (!regions.empty() && regions.back().phase == p) regions.back().last = s;
    else regions.push_back({p, s, s});
  }
  return regions;
}

std::vector<ValueId> largest_live_values(const Graph& g, const ArenaLayout& layout, int step, int count) {
  std::vector<ValueId> live;
  for (size_t i = 0; i < g.values.size() && i < layout.first.size(); ++i) {
    if (layout.offsets[i] < 0 || layout.first[i] < 0) continue;  // outside the arena, or unused
    if (g.values[i].alias_of != kNoValue) continue;               // a view: its base holds the bytes
    if (layout.first[i] <= step && step <= layout.last[i]) live.push_back(static_cast<ValueId>(i));
  }
  std::stable_sort(live.begin(), live.end(),
                   [&](ValueId a, ValueId b) { return g.value(a).bytes() > g.value(b).bytes(); });
  if (count >= 0 && live.size() > static_cast<size_t>(count)) live.resize(static_cast<size_t>(count));
  return live;
}

std::string memory_timeline_svg(const Graph& g, const MemoryTimeline& t, const ChartOptions& o) {
  const double W = std::max(o.width, 640), H = std::max(o.height, 360);
  // Plot rectangle; the legend column sits to its right.
  const double x0 = 84, x1 = W - 270, y0 = 90, y1 = H - 58;
  const int steps = static_cast<int>(t.live.size());
  // What sits outside the arena (parameters, optimizer state) is drawn below it.
  const size_t arena_top = t.parameter_bytes + t.arena_bytes;

  // Y axis in MiB: headroom above the highest of peak and arena for the peak label.
  double top_mib = static_cast<double>(std::max(t.peak_bytes, arena_top)) / kMiB * 1.12;
  if (!(top_mib > 0)) top_mib = 1;
  double ystep = nice_step(top_mib / 6);
  double ymax = std::ceil(top_mib / ystep - 1e-9) * ystep;
  int ydec = tick_decimals(ystep);
  auto X = [&](double step) { return x0 + (x1 - x0) * step / std::max(steps, 1); };
  auto Y = [&](double bytes) { return y1 - (y1 - y0) * (bytes / kMiB) / ymax; };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(W) + "\" height=\"" + num(H) + "\" viewBox=\"0 0 " +
       num(W) + " " + num(H) + "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  s += "<title>" + xml_escape("Memory timeline: " + o.title) + "</title>\n";
  s += "<rect x=\"0\" y=\"0\" width=\"" + num(W) + "\" height=\"" + num(H) + "\" fill=\"#ffffff\"/>\n";
  s += text_element({x0, 30, "Memory timeline: " + o.title, 18, "start", "#222222", "bold"});
  if (!o.subtitle.empty()) s += text_element({x0, 52, o.subtitle, 13, "start", "#555555"});

  // Phases, twice. The background bands show the regions a reader thinks in: an update that
  // runs right after its gradient (interleaved with backward) joins the backward region instead
  // of striping it. The thin strip above the plot shows every step's exact phase.
  std::vector<PhaseSpan> spans = phase_spans(g);
  std::vector<PhaseSpan> regions = phase_regions(g);
  s += "<g id=\"phases\">\n";
  for (const PhaseSpan& sp : regions) {
    double a = X(sp.first), b = X(sp.last + 1);
    s += "<rect x=\"" + num(a) + "\" y=\"" + num(y0) + "\" width=\"" + num(b - a) + "\" height=\"" + num(y1 - y0) +
         "\" fill=\"" + phase_tint(sp.phase) + "\"/>\n";
  }
  for (const PhaseSpan& sp : regions) {
    double a = X(sp.first), b = X(sp.last + 1);
    std::string name = phase_name(sp.phase);
    if (b - a >= 8.0 * static_cast<double>(name.size()) + 8)
      s += text_element({(a + b) / 2, y0 + 16, name, 12, "middle", phase_ink(sp.phase), "bold"});
  }
  const double strip_top = y0 - 13, strip_bottom = y0 - 4;
  s += text_element({x1 + 6, strip_bottom, "phase", 11, "start", "#777777"});
  for (const PhaseSpan& sp : spans) {
    double a = X(sp.first), b = X(sp.last + 1);
    s += "<rect x=\"" + num(a) + "\" y=\"" + num(strip_top) + "\" width=\"" + num(b - a) + "\" height=\"" +
         num(strip_bottom - strip_top) + "\" fill=\"" + phase_ink(sp.phase) + "\"><title>" + phase_name(sp.phase) +
         ": steps " + std::to_string(sp.first) + "-" + std::to_string(sp.last) + "</title></rect>\n";
  }
  s += "</g>\n";

  // Grid and axes.
  s += "<g id=\"axes\" stroke=\"#d9d9d9\" stroke-width=\"1\">\n";
  for (int k = 0; k * ystep <= ymax + 1e-9; ++k) {
    double y = Y(k * ystep * kMiB);
    s += "<line x1=\"" + num(x0) + "\" y1=\"" + num(y) + "\" x2=\"" + num(x1) + "\" y2=\"" + num(y) + "\"/>\n";
  }
  s += "</g>\n";
  for (int k = 0; k * ystep <= ymax + 1e-9; ++k) {
    double y = Y(k * ystep * kMiB);
    s += text_element({x0 - 8, y + 4, tick_label(k * ystep, ydec), 12, "end", "#555555"});
  }
  double xstep = std::max(1.0, nice_step(std::max(steps, 1) / 10.0));
  std::string xticks;
  for (int k = 0; k * xstep <= steps + 1e-9; ++k) {
    double x = X(k * xstep);
    xticks += "<line x1=\"" + num(x) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x) + "\" y2=\"" + num(y1 + 5) +
              "\" stroke=\"#555555\"/>\n";
    xticks += text_element({x, y1 + 19, tick_label(k * xstep, 0), 12, "middle", "#555555"});
  }
  s += xticks;
  s += text_element({(x0 + x1) / 2, H - 14, "schedule step (kernel call)", 13, "middle", "#444444"});
  s += "<text transform=\"translate(22 " + num((y0 + y1) / 2) +
       ") rotate(-90)\" font-size=\"13\" text-anchor=\"middle\" fill=\"#444444\">live memory (MiB)</text>\n";

  // Stacked areas, one path per category that is ever non-zero. Memory is live for a whole step,
  // so each edge is a step function: H to the next change, V to the new level. Runs that round
  // to the same pixel row are merged, which keeps a 2000-step schedule's path small.
  std::vector<size_t> lower(static_cast<size_t>(steps), 0);
  s += "<g id=\"areas\" stroke-width=\"0.6\">\n";
  for (MemoryCategory c : kStackOrder) {
    size_t ci = static_cast<size_t>(c);
    bool any = false;
    for (int st = 0; st < steps; ++st) any |= t.live[static_cast<size_t>(st)][ci] > 0;
    if (!any) continue;
    std::vector<size_t> upper(lower);
    for (int st = 0; st < steps; ++st) upper[static_cast<size_t>(st)] += t.live[static_cast<size_t>(st)][ci];
    std::string d = "M" + num(X(0)) + " " + num(Y(static_cast<double>(upper[0])));
    std::string level = num(Y(static_cast<double>(upper[0])));
    for (int st = 1; st < steps; ++st) {
      std::string y = num(Y(static_cast<double>(upper[static_cast<size_t>(st)])));
      if (y != level) d += "H" + num(X(st)) + "V" + y, level = y;
    }
    d += "H" + num(X(steps));
    level = num(Y(static_cast<double>(lower[static_cast<size_t>(steps - 1)])));
    d += "V" + level;
    for (int st = steps - 1; st >= 1; --st) {
      std::string y = num(Y(static_cast<double>(lower[static_cast<size_t>(st - 1)])));
      if (y != level) d += "H" + num(X(st)) + "V" + y, level = y;
    }
    d += "H" + num(X(0)) + "Z";
    s += std::string("<path id=\"area-") + memory_category_name(c) + "\" class=\"area\" fill=\"" + category_color(c) +
         "\" stroke=\"" + category_color(c) + "\" d=\"" + d + "\"><title>" + xml_escape(category_label(c)) +
         "</title></path>\n";
    lower = std::move(upper);
  }
  s += "</g>\n";
  s += "<rect x=\"" + num(x0) + "\" y=\"" + num(y0) + "\" width=\"" + num(x1 - x0) + "\" height=\"" + num(y1 - y0) +
       "\" fill=\"none\" stroke=\"#888888\"/>\n";

  // The arena (plus the parameters below it): everything the step ever has, as one line.
  const bool peak_left = X(t.peak_step + 0.5) < (x0 + x1) / 2;
  double ya = Y(static_cast<double>(arena_top));
  s += "<g id=\"arena\">\n<line x1=\"" + num(x0) + "\" y1=\"" + num(ya) + "\" x2=\"" + num(x1) + "\" y2=\"" + num(ya) +
       "\" stroke=\"#222222\" stroke-width=\"1.5\" stroke-dasharray=\"7 4\"/>\n";
  s += text_element({peak_left ? x1 - 6 : x0 + 6, ya - 6,
                     "arena " + format_size(t.arena_bytes) + " + " + outside_label(t) + " " + format_size(t.parameter_bytes), 12,
                     peak_left ? "end" : "start", "#222222", nullptr, true});
  s += "</g>\n";

  // The peak: a dashed drop line, a dot, and the label above both the dot and the arena line.
  if (steps > 0) {
    double xp = X(t.peak_step + 0.5), yp = Y(static_cast<double>(t.peak_bytes));
    const Node* n = t.peak_step < static_cast<int>(g.nodes.size()) ? &g.nodes[static_cast<size_t>(t.peak_step)] : nullptr;
    std::string where = "step " + std::to_string(t.peak_step);
    if (n) where += ", " + std::string(phase_name(n->phase)) + " " + op_name(n->op);
    s += "<g id=\"peak\">\n";
    s += "<line x1=\"" + num(xp) + "\" y1=\"" + num(yp) + "\" x2=\"" + num(xp) + "\" y2=\"" + num(y1) +
         "\" stroke=\"#222222\" stroke-width=\"1\" stroke-dasharray=\"3 3\"/>\n";
    s += "<circle cx=\"" + num(xp) + "\" cy=\"" + num(yp) + "\" r=\"4.5\" fill=\"#222222\" stroke=\"#ffffff\" stroke-width=\"1.5\"/>\n";
    double ly = std::min(yp, ya) - 8;
    if (std::abs(ly - (ya - 6)) < 14 && ly > y0 + 30) ly = ya - 22;  // clear of the arena label's line
    s += text_element({peak_left ? xp - 4 : xp + 4, ly, "peak " + format_size(t.peak_bytes) + " (" + where + ")", 13,
                       peak_left ? "start" : "end", "#111111", "bold", true});
    s += "</g>\n";
  }

  // Legend: the breakdown at the peak (top of the stack first, as drawn), the arena line, phases.
  double lx = x1 + 22, ly = y0 + 4;
  s += "<g id=\"legend\">\n";
  s += text_element({lx, ly + 10, "Live at the peak (step " + std::to_string(t.peak_step) + ")", 13, "start",
                     "#222222", "bold"});
  ly += 28;
  for (auto it = kStackOrder.rbegin(); it != kStackOrder.rend(); ++it) {
    MemoryCategory c = *it;
    size_t ci = static_cast<size_t>(c);
    bool any = false;
    for (int st = 0; st < steps; ++st) any |= t.live[static_cast<size_t>(st)][ci] > 0;
    if (!any) continue;
    s += "<rect x=\"" + num(lx) + "\" y=\"" + num(ly - 11) + "\" width=\"14\" height=\"14\" rx=\"2\" fill=\"" +
         category_color(c) + "\"/>\n";
    s += text_element({lx + 22, ly, category_label(c), 12, "start", "#333333"});
    s += text_element({W - 16, ly, format_size(t.at_peak[ci]), 12, "end", "#333333"});
    ly += 21;
  }
  s += "<line x1=\"" + num(lx) + "\" y1=\"" + num(ly - 12) + "\" x2=\"" + num(W - 16) + "\" y2=\"" + num(ly - 12) +
       "\" stroke=\"#bbbbbb\"/>\n";
  ly += 4;
  s += text_element({lx + 22, ly, "total", 12, "start", "#222222", "bold"});
  s += text_element({W - 16, ly, format_size(t.peak_bytes), 12, "end", "#222222", "bold"});
  ly += 30;
  s += "<line x1=\"" + num(lx) + "\" y1=\"" + num(ly - 4) + "\" x2=\"" + num(lx + 14) + "\" y2=\"" + num(ly - 4) +
       "\" stroke=\"#222222\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"/>\n";
  s += text_element({lx + 22, ly, "planned total", 12, "start", "#333333"});
  s += text_element({W - 16, ly, format_size(arena_top), 12, "end", "#333333"});
  ly += 34;
  s += text_element({lx, ly, "Phases", 13, "start", "#222222", "bold"});
  ly += 22;
  for (Phase p : kPhases) {
    int count = 0;
    for (const Node& n : g.nodes) count += n.phase == p;
    if (count == 0) continue;
    s += "<rect x=\"" + num(lx) + "\" y=\"" + num(ly - 11) + "\" width=\"14\" height=\"14\" rx=\"2\" fill=\"" +
         phase_tint(p) + "\" stroke=\"" + phase_ink(p) + "\" stroke-width=\"0.8\"/>\n";
    s += text_element({lx + 22, ly, phase_name(p), 12, "start", phase_ink(p)});
    s += text_element({W - 16, ly, std::to_string(count) + (count == 1 ? " step" : " steps"), 12, "end", "#555555"});
    ly += 21;
  }
  s += "</g>\n</svg>\n";
  return s;
}

std::string memory_timeline_text(const Graph& g, const ArenaLayout& layout, const MemoryTimeline& t, int top) {
  std::string s;
  char buf[512];
  const int steps = static_cast<int>(g.nodes.size());
  size_t arena_live_at_peak = t.peak_bytes - t.parameter_bytes;

  std::snprintf(buf, sizeof buf, "%-12s%s at step %d of %d", "peak", format_size(t.peak_bytes).c_str(), t.peak_step,
                steps);
  s += buf;
  if (t.peak_step < steps) {
    const Node& n = g.nodes[static_cast<size_t>(t.peak_step)];
    s += std::string(" (") + phase_name(n.phase) + " " + op_name(n.op) + (n.layer.empty() ? "" : ", " + n.layer) + ")";
  }
  s += "\n";
  std::snprintf(buf, sizeof buf, "%-12s%s (%s of it live at the peak: the rest is layout fragmentation)\n", "arena",
                format_size(t.arena_bytes).c_str(), percent(arena_live_at_peak, t.arena_bytes).c_str());
  s += buf;
  std::snprintf(buf, sizeof buf, "%-12s%s (%s: not in the arena)\n", "outside", format_size(t.parameter_bytes).c_str(),
                outside_label(t).c_str());
  s += buf;
  std::snprintf(buf, sizeof buf, "%-12s%s (arena + outside)\n", "total", format_size(t.arena_bytes + t.parameter_bytes).c_str());
  s += buf;
  s += "phases      ";
  bool first = true;
  for (Phase p : kPhases) {
    int count = 0;
    for (const Node& n : g.nodes) count += n.phase == p;
    if (count == 0) continue;
    s += std::string(first ? "" : ", ") + phase_name(p) + " " + std::to_string(count);
    first = false;
  }
  s += first ? "(empty schedule)\n" : " steps\n";

  s += "\nlive at the peak, by category:\n";
  for (int c = 0; c < kMemoryCategoryCount; ++c) {
    size_t b = t.at_peak[static_cast<size_t>(c)];
    std::snprintf(buf, sizeof buf, "  %-19s%11s %7s\n", memory_category_name(static_cast<MemoryCategory>(c)),
                  format_size(b).c_str(), percent(b, t.peak_bytes).c_str());
    s += buf;
  }

  std::vector<ValueId> largest = largest_live_values(g, layout, t.peak_step, top);
  std::snprintf(buf, sizeof buf, "\nlargest arena values live at the peak (%zu shown):\n", largest.size());
  s += buf;
  size_t name_width = 4;
  for (ValueId v : largest) name_width = std::max(name_width, std::min<size_t>(g.value(v).name.size(), 48));
  std::snprintf(buf, sizeof buf, "  %-3s %-*s %-16s %12s %11s  %s\n", "#", static_cast<int>(name_width), "name", "role",
                "bytes", "size", "live steps");
  s += buf;
  for (size_t k = 0; k < largest.size(); ++k) {
    ValueId v = largest[k];
    const Value& val = g.value(v);
    std::string name = val.name.size() > 48 ? val.name.substr(0, 45) + "..." : val.name;
    std::string live = std::to_string(layout.first[static_cast<size_t>(v)]) + "-" +
                       std::to_string(layout.last[static_cast<size_t>(v)]);
    std::snprintf(buf, sizeof buf, "  %-3zu %-*s %-16s %12zu %11s  %s\n", k + 1, static_cast<int>(name_width),
                  name.c_str(), value_role_name(val.role), val.bytes(), format_size(val.bytes()).c_str(), live.c_str());
    s += buf;
  }
  return s;
}

}  // namespace edgetrain
