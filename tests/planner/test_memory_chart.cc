// The memory chart and report (planner/memory_chart.h) on the small CNN's real training
// schedule: the SVG is well-formed XML, draws one area per category that is ever live, labels
// the timeline's own peak, and the text report names the peak and its largest values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "models/model_zoo.h"
#include "planner/memory_chart.h"
#include "runtime/training_schedule.h"

namespace edgetrain {
namespace {

struct Planned {
  Graph graph;
  ArenaLayout layout;
  MemoryTimeline timeline;
};

Planned plan_small_cnn(const TrainConfig& config, int64_t batch = 4) {
  GraphFactory factory = [](int64_t b, bool training) {
    ModelSpec spec;
    spec.arch = Architecture::kSmallCnn;
    spec.input_size = 16;
    return build_model(spec, b, training);
  };
  Planned p;
  Result<TrainingSchedule> schedule = make_training_schedule(factory, batch, config);
  EXPECT_TRUE(schedule.is_ok()) << schedule.status().to_string();
  if (!schedule.is_ok()) return p;
  p.graph = std::move(schedule->graph);
  Result<ArenaLayout> layout = layout_arena(p.graph);
  EXPECT_TRUE(layout.is_ok()) << layout.status().to_string();
  p.layout = std::move(layout).value();
  p.timeline = simulate_memory(p.graph, p.layout);
  return p;
}

TrainConfig sgd_momentum() {
  TrainConfig c;
  c.optimizer.attrs.momentum = 0.9f;
  return c;
}

// A small XML well-formedness checker: one root element, tags balanced and properly nested,
// attribute values quoted, '&' only as one of the five predefined entities, no raw '<' in text
// or attribute values. Returns "" when well-formed, otherwise what is wrong and where.
std::string xml_problem(const std::string& x) {
  std::vector<std::string> open;
  int roots = 0;
  size_t i = 0;
  auto entity_ok = [&](size_t at) {
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
      if (x.compare(at, std::string(e).size(), e) == 0) return true;
    return false;
  };
  auto is_name = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' || c == '.'; };
  while (i < x.size()) {
    if (x[i] == '<') {
      if (x.compare(i, 2, "<?") == 0) {
        size_t e = x.find("?>", i);
        if (e == std::string::npos) return "unterminated <? at " + std::to_string(i);
        i = e + 2;
        continue;
      }
      if (x.compare(i, 4, "<!--") == 0) {
        size_t e = x.find("-->", i);
        if (e == std::string::npos) return "unterminated comment at " + std::to_string(i);
        i = e + 3;
        continue;
      }
      bool closing = i + 1 < x.size() && x[i + 1] == '/';
      size_t j = i + (closing ? 2 : 1);
      size_t name_start = j;
      while (j < x.size() && is_name(x[j])) ++j;
      std::string name = x.substr(name_start, j - name_start);
      if (name.empty()) return "tag without a name at " + std::to_string(i);
      if (closing) {
        while (j < x.size() && std::isspace(static_cast<unsigned char>(x[j]))) ++j;
        if (j >= x.size() || x[j] != '>') return "bad closing tag </" + name + " at " + std::to_string(i);
        if (open.empty() || open.back() != name)
          return "</" + name + "> closes " + (open.empty() ? std::string("nothing") : "<" + open.back() + ">") + " at " + std::to_string(i);
        open.pop_back();
        i = j + 1;
        continue;
      }
      // Attributes: name="value" separated by whitespace.
      std::set<std::string> seen;
      while (true) {
        size_t ws = j;
        while (j < x.size() && std::isspace(static_cast<unsigned char>(x[j]))) ++j;
        if (j >= x.size()) return "unterminated <" + name;
        if (x[j] == '>' || x.compare(j, 2, "/>") == 0) break;
        if (ws == j) return "attributes of <" + name + "> not separated at " + std::to_string(j);
        size_t a = j;
        while (j < x.size() && is_name(x[j])) ++j;
        std::string attr = x.substr(a, j - a);
        if (attr.empty() || j >= x.size() || x[j] != '=') return "bad attribute in <" + name + "> at " + std::to_string(a);
        if (!seen.insert(attr).second) return "duplicate attribute " + attr + " in <" + name + ">";
        ++j;
        if (j >= x.size() || (x[j] != '"' && x[j] != '\'')) return "unquoted attribute " + attr + " in <" + name + ">";
        char q = x[j++];
        while (j < x.size() && x[j] != q) {
          if (x[j] == '<') return "raw '<' in attribute " + attr;
          if (x[j] == '&' && !entity_ok(j)) return "bad entity in attribute " + attr;
          ++j;
        }
        if (j >= x.size()) return "unterminated attribute " + attr;
        ++j;
      }
      bool self_closing = x[j] == '/';
      i = j + (self_closing ? 2 : 1);
      if (open.empty()) ++roots;
      if (roots > 1) return "second root element <" + name + ">";
      if (!self_closing) open.push_back(name);
      continue;
    }
    if (x[i] == '&' && !entity_ok(i)) return "bad entity in text at " + std::to_string(i);
    if (open.empty() && !std::isspace(static_cast<unsigned char>(x[i]))) return "text outside the root at " + std::to_string(i);
    ++i;
  }
  if (!open.empty()) return "<" + open.back() + "> never closed";
  if (roots != 1) return "no root element";
  return "";
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

bool category_ever_live(const MemoryTimeline& t, MemoryCategory c) {
  for (const auto& row : t.live)
    if (row[static_cast<size_t>(c)] > 0) return true;
  return false;
}

TEST(XmlChecker, RejectsMalformedDocuments) {
  // The checker the SVG tests trust must be able to say no.
  EXPECT_EQ(xml_problem("<svg><g></g></svg>"), "");
  EXPECT_EQ(xml_problem("<?xml version=\"1.0\"?>\n<svg a=\"1\" b='2'><text>x &amp; y</text><rect/></svg>\n"), "");
  EXPECT_NE(xml_problem("<svg><g></svg>"), "");
  EXPECT_NE(xml_problem("<svg><g></g>"), "");
  EXPECT_NE(xml_problem("<svg><text>a < b</text></svg>"), "");
  EXPECT_NE(xml_problem("<svg><text>a & b</text></svg>"), "");
  EXPECT_NE(xml_problem("<svg a=1></svg>"), "");
  EXPECT_NE(xml_problem("<svg a=\"<\"></svg>"), "");
  EXPECT_NE(xml_problem("<svg></svg><svg></svg>"), "");
}

TEST(MemoryChart, SvgIsWellFormedXmlWithEscapedTitle) {
  Planned p = plan_small_cnn(sgd_momentum());
  ChartOptions o;
  o.title = "small_cnn <16x16> & \"friends\"";
  o.subtitle = "batch 4, SGD momentum 0.9 'quoted'";
  std::string svg = memory_timeline_svg(p.graph, p.timeline, o);
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_NE(svg.find("small_cnn &lt;16x16&gt; &amp; &quot;friends&quot;"), std::string::npos);
  EXPECT_EQ(svg.find("<16x16>"), std::string::npos);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  // Self-contained: no scripts, no external references.
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(svg.find("href"), std::string::npos);
  EXPECT_EQ(svg.find("@import"), std::string::npos);
}

void expect_one_path_per_live_category(const Planned& p, const std::string& what) {
  std::string svg = memory_timeline_svg(p.graph, p.timeline, {});
  size_t non_empty = 0;
  for (int ci = 0; ci < kMemoryCategoryCount; ++ci) {
    MemoryCategory cat = static_cast<MemoryCategory>(ci);
    std::string id = std::string("<path id=\"area-") + memory_category_name(cat) + "\"";
    bool live = category_ever_live(p.timeline, cat);
    non_empty += live;
    EXPECT_EQ(count(svg, id), live ? 1u : 0u) << memory_category_name(cat) << ", " << what;
  }
  EXPECT_EQ(count(svg, "class=\"area\""), non_empty) << what;
}

TEST(MemoryChart, OnePathPerCategoryThatIsEverLive) {
  for (float momentum : {0.0f, 0.9f}) {
    TrainConfig c;
    c.optimizer.attrs.momentum = momentum;
    Planned p = plan_small_cnn(c);
    expect_one_path_per_live_category(p, "momentum " + std::to_string(momentum));
    // Plain SGD keeps no optimizer state; momentum does. Both cases must occur for the test to mean much.
    EXPECT_EQ(category_ever_live(p.timeline, MemoryCategory::kOptimizerState), momentum > 0);
  }
}

TEST(MemoryChart, PackedActivationsGetTheirOwnArea) {
  // Whatever the compression transform packs: move half of the activation bytes of every other
  // step into the packed category (the chart draws a timeline; it does not re-derive it).
  Planned p = plan_small_cnn(sgd_momentum());
  for (size_t st = 0; st < p.timeline.live.size(); st += 2) {
    auto& row = p.timeline.live[st];
    size_t half = row[static_cast<size_t>(MemoryCategory::kActivations)] / 2;
    row[static_cast<size_t>(MemoryCategory::kActivations)] -= half;
    row[static_cast<size_t>(MemoryCategory::kPackedActivations)] += half;
  }
  ASSERT_TRUE(category_ever_live(p.timeline, MemoryCategory::kPackedActivations));
  expect_one_path_per_live_category(p, "packed activations");
  EXPECT_NE(memory_timeline_svg(p.graph, p.timeline, {}).find(">packed activations<"), std::string::npos);
}

TEST(MemoryChart, PeakLabelAndLegendShowTheTimelinesNumbers) {
  Planned p = plan_small_cnn(sgd_momentum());
  const MemoryTimeline& t = p.timeline;
  std::string svg = memory_timeline_svg(p.graph, t, {});
  std::string label = "peak " + format_size(t.peak_bytes) + " (step " + std::to_string(t.peak_step) + ", ";
  EXPECT_NE(svg.find(label), std::string::npos) << label;
  // The printed size is the peak to within its rounding (small CNN: KiB with one decimal).
  std::string shown = format_size(t.peak_bytes);
  ASSERT_NE(shown.find(" KiB"), std::string::npos) << shown;
  EXPECT_NEAR(std::strtod(shown.c_str(), nullptr) * 1024.0, static_cast<double>(t.peak_bytes), 0.05 * 1024.0 + 1);
  EXPECT_NE(svg.find("Live at the peak (step " + std::to_string(t.peak_step) + ")"), std::string::npos);
  for (int ci = 0; ci < kMemoryCategoryCount; ++ci) {
    MemoryCategory cat = static_cast<MemoryCategory>(ci);
    if (category_ever_live(t, cat)) {
      EXPECT_NE(svg.find(">" + format_size(t.at_peak[static_cast<size_t>(ci)]) + "<"), std::string::npos);
    }
  }
  // Momentum keeps optimizer state, which lives outside the arena with the parameters.
  EXPECT_NE(svg.find("arena " + format_size(t.arena_bytes) + " + parameters + optimizer state " + format_size(t.parameter_bytes)),
            std::string::npos);
}

TEST(MemoryChart, FormatSizePicksAUnitPerMagnitude) {
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(1023), "1023 B");
  EXPECT_EQ(format_size(1536), "1.5 KiB");
  EXPECT_EQ(format_size(1048576), "1.00 MiB");
  EXPECT_EQ(format_size(3 * 1048576 / 2), "1.50 MiB");
  EXPECT_EQ(format_size(size_t{3} << 30), "3.00 GiB");
}

TEST(MemoryChart, PhaseBandsCoverTheScheduleInOrder) {
  Planned p = plan_small_cnn(sgd_momentum());
  std::vector<PhaseSpan> spans = phase_spans(p.graph);
  ASSERT_FALSE(spans.empty());
  EXPECT_EQ(spans.front().first, 0);
  // SGD momentum: the buffers' decay (optimizer/momentum_fusion.h) comes before the forward.
  EXPECT_EQ(spans.front().phase, Phase::kPrepare);
  ASSERT_GE(spans.size(), 2u);
  EXPECT_EQ(spans[1].phase, Phase::kForward);
  EXPECT_EQ(spans.back().last, static_cast<int>(p.graph.nodes.size()) - 1);
  for (size_t k = 1; k < spans.size(); ++k) {
    EXPECT_EQ(spans[k].first, spans[k - 1].last + 1);
    EXPECT_NE(spans[k].phase, spans[k - 1].phase);
  }
  std::string svg = memory_timeline_svg(p.graph, p.timeline, {});
  for (const PhaseSpan& sp : spans)
    EXPECT_NE(svg.find(std::string("<title>") + phase_name(sp.phase) + ": steps " + std::to_string(sp.first) + "-" +
                       std::to_string(sp.last) + "</title>"),
              std::string::npos);
}

Graph graph_with_phases(const std::vector<Phase>& phases) {
  Graph g;
  for (Phase p : phases) {
    Node n;
    n.phase = p;
    g.nodes.push_back(n);
  }
  return g;
}

std::string describe(const std::vector<PhaseSpan>& spans) {
  std::string s;
  for (const PhaseSpan& sp : spans) s += std::string(phase_name(sp.phase)) + " " + std::to_string(sp.first) + "-" + std::to_string(sp.last) + "; ";
  return s;
}

TEST(MemoryChart, InterleavedUpdatesJoinTheBackwardRegionTrailingOnesKeepTheirOwn) {
  using P = Phase;
  Graph g = graph_with_phases({P::kForward, P::kForward, P::kBackward, P::kUpdate, P::kBackward, P::kUpdate, P::kUpdate});
  EXPECT_EQ(describe(phase_spans(g)), "forward 0-1; backward 2-2; update 3-3; backward 4-4; update 5-6; ");
  EXPECT_EQ(describe(phase_regions(g)), "forward 0-1; backward 2-4; update 5-6; ");
  g = graph_with_phases({P::kForward, P::kRecompute, P::kBackward, P::kUpdate, P::kRecompute, P::kBackward, P::kUpdate});
  EXPECT_EQ(describe(phase_regions(g)), "forward 0-0; recompute 1-1; backward 2-3; recompute 4-4; backward 5-5; update 6-6; ");
  EXPECT_TRUE(phase_regions(Graph{}).empty());
}

TEST(MemoryChart, RecomputeNodesGetTheirOwnBand) {
  // Checkpointing's transform lands separately; mark a run of backward nodes as recompute by
  // hand: the chart must show a band for it and list the phase in the legend.
  Planned p = plan_small_cnn(sgd_momentum());
  std::vector<PhaseSpan> before = phase_spans(p.graph);
  int first_backward = -1;
  for (const PhaseSpan& sp : before)
    if (sp.phase == Phase::kBackward) { first_backward = sp.first; break; }
  ASSERT_GE(first_backward, 0);
  p.graph.nodes[static_cast<size_t>(first_backward)].phase = Phase::kRecompute;
  p.graph.nodes[static_cast<size_t>(first_backward + 1)].phase = Phase::kRecompute;
  std::string svg = memory_timeline_svg(p.graph, p.timeline, {});
  EXPECT_NE(svg.find("<title>recompute: steps " + std::to_string(first_backward) + "-" + std::to_string(first_backward + 1) +
                     "</title>"),
            std::string::npos);
  EXPECT_NE(svg.find(">2 steps<"), std::string::npos);
  EXPECT_EQ(xml_problem(svg), "");
}

TEST(MemoryChart, SameInputsGiveIdenticalBytes) {
  Planned p = plan_small_cnn(sgd_momentum());
  ChartOptions o;
  o.title = "t";
  EXPECT_EQ(memory_timeline_svg(p.graph, p.timeline, o), memory_timeline_svg(p.graph, p.timeline, o));
  EXPECT_EQ(memory_timeline_text(p.graph, p.layout, p.timeline), memory_timeline_text(p.graph, p.layout, p.timeline));
}

TEST(MemoryChart, EmptyScheduleGivesAWellFormedChart) {
  Graph g;
  MemoryTimeline t;
  std::string svg = memory_timeline_svg(g, t, {});
  EXPECT_EQ(xml_problem(svg), "");
  EXPECT_EQ(count(svg, "class=\"area\""), 0u);
  ArenaLayout layout;
  std::string text = memory_timeline_text(g, layout, t);
  EXPECT_NE(text.find("(empty schedule)"), std::string::npos);
}

void expect_largest_live_values_complete(const Planned& p) {
  int step = p.timeline.peak_step;
  std::vector<ValueId> top = largest_live_values(p.graph, p.layout, step, 5);
  std::vector<ValueId> all = largest_live_values(p.graph, p.layout, step, -1);
  ASSERT_EQ(top.size(), std::min<size_t>(5, all.size()));
  ASSERT_GE(all.size(), 5u);
  size_t live_arena_bytes = 0;
  for (size_t k = 0; k < all.size(); ++k) {
    ValueId v = all[k];
    EXPECT_LE(p.layout.first[static_cast<size_t>(v)], step);
    EXPECT_GE(p.layout.last[static_cast<size_t>(v)], step);
    if (k > 0) {
      EXPECT_GE(p.graph.value(all[k - 1]).bytes(), p.graph.value(v).bytes());
    }
    if (k < top.size()) {
      EXPECT_EQ(top[k], v);
    }
    live_arena_bytes += p.graph.value(v).bytes();
  }
  // Every arena value live at the peak is listed once (views not again): together they are the
  // peak minus parameters.
  EXPECT_EQ(live_arena_bytes, p.timeline.peak_bytes - p.timeline.parameter_bytes);
}

TEST(MemoryChart, LargestLiveValuesAreLiveSortedAndComplete) { expect_largest_live_values_complete(plan_small_cnn(sgd_momentum())); }

TEST(MemoryChart, LargestLiveValuesSkipMicroBatchViews) {
  TrainConfig c = sgd_momentum();
  c.micro_batches = 2;
  Planned p = plan_small_cnn(c);
  bool has_view = false;
  for (const Value& v : p.graph.values) has_view |= v.alias_of != kNoValue;
  ASSERT_TRUE(has_view) << "a micro-batched schedule should slice the batch with views";
  expect_largest_live_values_complete(p);
}

TEST(MemoryChart, CheckpointedScheduleShowsRecomputeRegions) {
  TrainConfig c = sgd_momentum();
  c.checkpoint.mode = CheckpointMode::kSqrtBytes;
  Planned p = plan_small_cnn(c);
  std::vector<PhaseSpan> regions = phase_regions(p.graph);
  int recompute = 0;
  for (const PhaseSpan& r : regions) recompute += r.phase == Phase::kRecompute;
  ASSERT_GT(recompute, 0) << describe(regions);
  std::string svg = memory_timeline_svg(p.graph, p.timeline, {});
  EXPECT_EQ(xml_problem(svg), "");
  for (const PhaseSpan& sp : phase_spans(p.graph)) {
    if (sp.phase != Phase::kRecompute) continue;
    EXPECT_NE(svg.find("<title>recompute: steps " + std::to_string(sp.first) + "-" + std::to_string(sp.last) + "</title>"),
              std::string::npos);
  }
  EXPECT_NE(memory_timeline_text(p.graph, p.layout, p.timeline).find("recompute"), std::string::npos);
}

TEST(MemoryChart, TextReportNamesThePeakAndItsLargestValues) {
  Planned p = plan_small_cnn(sgd_momentum());
  const MemoryTimeline& t = p.timeline;
  std::string text = memory_timeline_text(p.graph, p.layout, t, 3);
  EXPECT_NE(text.find("peak        " + format_size(t.peak_bytes) + " at step " + std::to_string(t.peak_step) + " of " +
                      std::to_string(p.graph.nodes.size())),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("arena       " + format_size(t.arena_bytes)), std::string::npos) << text;
  for (int ci = 0; ci < kMemoryCategoryCount; ++ci)
    EXPECT_NE(text.find(memory_category_name(static_cast<MemoryCategory>(ci))), std::string::npos);
  std::vector<ValueId> top = largest_live_values(p.graph, p.layout, t.peak_step, 3);
  ASSERT_EQ(top.size(), 3u);
  for (ValueId v : top) {
    const Value& val = p.graph.value(v);
    EXPECT_NE(text.find(val.name), std::string::npos) << val.name;
    std::string bytes_column = std::to_string(val.bytes());  // as its own column: spaces around
    EXPECT_NE(text.find(bytes_column.insert(0, 1, ' ').append(1, ' ')), std::string::npos) << val.bytes();
  }
  EXPECT_NE(text.find("(3 shown)"), std::string::npos);
}

}  // namespace
}  // namespace edgetrain
