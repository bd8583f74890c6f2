// `edgetrain memory`: where the memory of a training step goes for a model and TrainConfig.
// Prints the timeline report (planner/memory_chart.h), writes the SVG chart, and, unless
// --no-run, runs two training steps on random data to check the plan against the process:
// the arena bytes the steps really wrote, and how the process's peak RSS compares with the
// arena and the parameters (the runtime's promise is that nothing else grows).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "planner/memory_chart.h"
#include "runtime/freezing.h"
#include "runtime/parameter_store.h"
#include "runtime/training_schedule.h"
#include "tools/commands.h"
#include "tools/setup.h"

namespace edgetrain::cli {

namespace {

// One line naming every m-hyperparameter of the config, so a chart says what it is a chart of.
std::string describe_config(const TrainerOptions& o, int64_t trainable) {
  const TrainConfig& c = o.config;
  std::string s = "batch " + std::to_string(o.batch);
  if (c.micro_batches > 1) s += " as " + std::to_string(c.micro_batches) + " micro-batches";
  char buf[96];
  if (c.optimizer.kind == OptimizerKind::kSgd) {
    std::snprintf(buf, sizeof buf, ", SGD momentum %g%s", static_cast<double>(c.optimizer.attrs.momentum),
                  c.optimizer.attrs.nesterov ? " (Nesterov)" : "");
  } else {
    std::snprintf(buf, sizeof buf, ", AdamW");
  }
  s += buf;
  s += std::string(", freeze ") + freeze_mode_name(c.freeze.mode);
  if (c.freeze.frozen_prefix_layers > 0) s += " + first " + std::to_string(c.freeze.frozen_prefix_layers) + " layers";
  if (c.freeze.frozen_suffix_layers > 0)
    s += " + the " + std::to_string(c.freeze.frozen_suffix_layers) + " layers before the classifier";
  if (!c.freeze.frozen_patterns.empty()) s += " + " + std::to_string(c.freeze.frozen_patterns.size()) + " patterns";
  switch (c.checkpoint.mode) {
    case CheckpointMode::kNone: break;
    case CheckpointMode::kManual: s += ", checkpoint " + std::to_string(c.checkpoint.boundaries.size()) + " cuts"; break;
    case CheckpointMode::kSqrtBytes:
      s += ", checkpoint sqrt" + (c.checkpoint.segments ? " (" + std::to_string(c.checkpoint.segments) + " segments)" : "");
      break;
    case CheckpointMode::kBudget: s += ", checkpoint to " + format_bytes(static_cast<double>(c.checkpoint.budget_bytes)); break;
  }
  if (c.compression.sparse_activations) {
    std::snprintf(buf, sizeof buf, ", sparse activations (capacity %.2f)", static_cast<double>(c.compression.capacity));
    s += buf;
  }
  if (c.compression.relu_masks) s += ", ReLU masks";
  if (!c.compression.recompute_norm_outputs) s += ", norm outputs kept";
  s += ", " + std::to_string(trainable) + " trainable parameters";
  return s;
}

JsonValue timeline_json(const Graph& g, const ArenaLayout& layout, const MemoryTimeline& tl) {
  JsonValue m = JsonValue::object();
  m.set("schedule_steps", static_cast<int64_t>(g.nodes.size()));
  m.set("peak_bytes", static_cast<int64_t>(tl.peak_bytes));
  m.set("peak_step", tl.peak_step);
  if (tl.peak_step < static_cast<int>(g.nodes.size())) {
    const Node& n = g.nodes[static_cast<size_t>(tl.peak_step)];
    m.set("peak_phase", phase_name(n.phase));
    m.set("peak_op", op_name(n.op));
    m.set("peak_layer", n.layer);
  }
  m.set("arena_bytes", static_cast<int64_t>(tl.arena_bytes));
  m.set("parameter_bytes", static_cast<int64_t>(tl.parameter_bytes));
  JsonValue at_peak = JsonValue::object();
  for (int c = 0; c < kMemoryCategoryCount; ++c)
    at_peak.set(memory_category_name(static_cast<MemoryCategory>(c)), static_cast<int64_t>(tl.at_peak[static_cast<size_t>(c)]));
  m.set("at_peak", std::move(at_peak));
  JsonValue phases = JsonValue::array();
  for (const PhaseSpan& sp : phase_spans(g)) {
    JsonValue p = JsonValue::object();
    p.set("phase", phase_name(sp.phase));
    p.set("first", sp.first);
    p.set("last", sp.last);
    phases.push_back(std::move(p));
  }
  m.set("phases", std::move(phases));
  JsonValue largest = JsonValue::array();
  for (ValueId v : largest_live_values(g, layout, tl.peak_step, 10)) {
    JsonValue e = JsonValue::object();
    e.set("name", g.value(v).name);
    e.set("role", value_role_name(g.value(v).role));
    e.set("bytes", static_cast<int64_t>(g.value(v).bytes()));
    e.set("first", layout.first[static_cast<size_t>(v)]);
    e.set("last", layout.last[static_cast<size_t>(v)]);
    largest.push_back(std::move(e));
  }
  m.set("largest_at_peak", std::move(largest));
  return m;
}

double mib(uint64_t b) { return static_cast<double>(b) / 1048576.0; }

// Builds the trainer, runs two steps on random data and compares what the process did with the
// plan: the arena bytes the steps wrote (found by the executor's fill pattern) against the
// layout's high water, and the process's peak RSS growth against the arenas and the memory
// outside them. Appends its lines to `report`.
Result<JsonValue> measure_steps(const ArgParser& p, const GraphFactory& factory, const TrainerOptions& opts, double lr,
                                const MemoryTimeline& tl, const ArenaLayout& layout, std::string* report) {
  ProcessMemory before = process_memory();
  ET_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, Trainer::create(factory, opts));
  Trainer& t = *trainer;
  ET_RETURN_IF_ERROR(load_initial_weights(p, t));
  // The trainer's schedule comes from the same pipeline: a different arena would mean the chart
  // describes something the trainer does not run.
  if (t.train_executor().arena_bytes() != tl.arena_bytes)
    return internal_error("the trainer's arena (" + std::to_string(t.train_executor().arena_bytes()) +
                          " bytes) differs from the planned one (" + std::to_string(tl.arena_bytes) + " bytes)");
  ProcessMemory created = process_memory();
  bool peak_reset = reset_peak_rss();
  ProcessMemory start = process_memory();
  // Random images and valid labels: dense tensors take the same bytes whatever the values, and
  // packed (sparse) activations get their planned slot whatever their density.
  Rng rng(opts.init_seed);
  const int kSteps = 2;
  for (int step = 0; step < kSteps; ++step) {
    for (int64_t i = 0; i < t.input_shape().numel(); ++i) t.train_images()[i] = static_cast<float>(rng.normal());
    for (int64_t i = 0; i < t.batch(); ++i)
      t.train_labels()[i] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(t.classes())));
    ET_RETURN_IF_ERROR(t.train_step(static_cast<float>(lr)).status());
  }
  ProcessMemory after = process_memory();
  size_t high_water = t.train_executor().measured_high_water();
  size_t eval_arena = t.eval_executor().arena_bytes();
  // What the process should have grown by since before the trainer existed: both arenas and what
  // lives outside them. Anything above is bookkeeping (graphs, kernel calls, thread stacks).
  uint64_t expected = tl.arena_bytes + eval_arena + tl.parameter_bytes;
  uint64_t grown = after.peak_rss > before.rss ? after.peak_rss - before.rss : 0;
  uint64_t during = peak_reset && after.peak_rss > start.rss ? after.peak_rss - start.rss : 0;
  char buf[512];
  *report += "\nmeasured over " + std::to_string(kSteps) + " training steps on random data:\n";
  // The layout's high water is the arena without the topmost slot's alignment padding: the steps
  // should write up to exactly that byte.
  std::snprintf(buf, sizeof buf, "  arena high-water  %10.2f MiB written; planned %.2f MiB (%zu vs %zu bytes) of a %.2f MiB arena\n",
                mib(high_water), mib(layout.high_water_bytes), high_water, layout.high_water_bytes, mib(tl.arena_bytes));
  *report += buf;
  std::snprintf(buf, sizeof buf,
                "  process peak RSS  %10.2f MiB; grew %.2f MiB since before the trainer was built\n"
                "                    vs %.2f MiB expected (arena block: the larger of training %.2f and eval %.2f; + outside the arena %.2f): "
                "%+.2f MiB other (graphs, threads, libraries)\n",
                mib(after.peak_rss), mib(grown), mib(expected), mib(tl.arena_bytes), mib(eval_arena),
                mib(tl.parameter_bytes), mib(grown) - mib(expected));
  *report += buf;
  if (opts.config.compression.sparse_activations) {
    // A batch denser than the packed slots reruns on the fallback schedule, in the same arena.
    std::snprintf(buf, sizeof buf, "  compression fallback: %lld of %d steps\n", static_cast<long long>(t.fallback_steps()), kSteps);
    *report += buf;
  }
  // The arena was written when it was created, so this is what the steps touched elsewhere.
  if (peak_reset) std::snprintf(buf, sizeof buf, "  peak RSS rise during the steps: %.2f MiB\n", mib(during));
  else std::snprintf(buf, sizeof buf, "  peak RSS rise during the steps: unknown (the kernel refused to reset VmHWM)\n");
  *report += buf;
  JsonValue m = JsonValue::object();
  m.set("steps", kSteps);
  m.set("fallback_steps", t.fallback_steps());
  m.set("arena_high_water_bytes", static_cast<int64_t>(high_water));
  m.set("planned_high_water_bytes", static_cast<int64_t>(layout.high_water_bytes));
  m.set("arena_bytes", static_cast<int64_t>(tl.arena_bytes));
  m.set("eval_arena_bytes", static_cast<int64_t>(eval_arena));
  m.set("outside_arena_bytes", static_cast<int64_t>(tl.parameter_bytes));
  m.set("rss_before_trainer_bytes", static_cast<int64_t>(before.rss));
  m.set("rss_after_trainer_bytes", static_cast<int64_t>(created.rss));
  m.set("peak_rss_bytes", static_cast<int64_t>(after.peak_rss));
  m.set("process_growth_bytes", static_cast<int64_t>(grown));
  m.set("expected_growth_bytes", static_cast<int64_t>(expected));
  if (peak_reset) m.set("peak_rss_rise_during_steps_bytes", static_cast<int64_t>(during));
  return m;
}

}  // namespace

int cmd_memory(int argc, char** argv) {
  ArgParser p("memory",
              "Show where the memory of one training step goes for a model and config: the live bytes per "
              "schedule step by category (parameters, optimizer state, inputs, activations, gradients, "
              "workspace), the peak and the arena, as a text report and an SVG chart. Needs no data. "
              "Then builds the trainer and runs two steps on random data to compare the plan with the "
              "arena bytes really written and the process's peak RSS (--no-run: plan only, nothing allocated).");
  add_model_options(p);
  add_training_options(p);
  p.option("input", "PX", "32", "side of the square input image");
  p.option("classes", "N", "10", "number of classes");
  p.option("channels", "N", "3", "input channels");
  p.option("svg", "FILE", "memory.svg", "write the chart here ('' for none)");
  p.flag("no-run", "plan only: do not build the trainer or run the two steps that measure the arena and RSS");
  p.flag("json", "print a JSON summary on stdout (the text report goes to stderr)");
  if (Status s = p.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (p.help_requested()) {
    std::printf("%s", p.help_text().c_str());
    return 0;
  }
  Result<int64_t> input = p.integer("input");
  Result<int64_t> classes = p.integer("classes");
  Result<int64_t> channels = p.integer("channels");
  for (const Result<int64_t>* r : {&input, &classes, &channels})
    if (!r->is_ok()) return fail(r->status());
  if (*input < 1 || *input > 4096) return fail(invalid_argument("--input must be in [1, 4096]"));
  if (*classes < 1 || *classes > 1000000) return fail(invalid_argument("--classes must be in [1, 1000000]"));
  if (*channels < 1 || *channels > 64) return fail(invalid_argument("--channels must be in [1, 64]"));
  Result<ModelSpec> spec = model_spec(p, static_cast<int>(*classes), static_cast<int>(*input), static_cast<int>(*channels));
  if (!spec.is_ok()) return fail(spec.status());
  Result<TrainerOptions> opts = trainer_options(p);
  if (!opts.is_ok()) return fail(opts.status());
  Result<double> lr = p.number("lr");
  if (!lr.is_ok()) return fail(lr.status());
  // The evaluation schedule is not what this command is about: batch 1 keeps its arena (which
  // the process numbers below include) small.
  opts->eval_batch = 1;

  // Open the chart's file first: a bad path should fail before minutes of building and running.
  std::string svg_path = p.str("svg");
  std::ofstream svg_file;
  if (!svg_path.empty()) {
    svg_file.open(svg_path, std::ios::binary | std::ios::trunc);
    if (!svg_file) return fail(io_error("--svg '" + svg_path + "': cannot open for writing"));
  }

  // The plan: the same pipeline the Trainer runs (runtime/training_schedule.h), without
  // allocating anything, so --no-run can chart configurations this machine could not hold.
  GraphFactory factory = graph_factory(*spec);
  Result<TrainingSchedule> schedule = make_training_schedule(factory, opts->batch, opts->config);
  if (!schedule.is_ok()) return fail(schedule.status());
  const Graph& g = schedule->graph;
  Result<ArenaLayout> planned = layout_arena(g);
  if (!planned.is_ok()) return fail(planned.status());
  const ArenaLayout& layout = *planned;
  MemoryTimeline tl = simulate_memory(g, layout);
  int64_t trainable = 0;
  for (size_t i = 0; i < g.params.size() && i < schedule->trainable.size(); ++i)
    if (schedule->trainable[i]) trainable += g.params[i].shape.numel();

  ChartOptions co;
  co.title = describe_model(*spec);
  co.subtitle = describe_config(*opts, trainable);
  std::string report = co.title + "\n" + co.subtitle + "\n\n" + memory_timeline_text(g, layout, tl, 10);
  JsonValue summary = JsonValue::object();
  summary.set("model", describe_model(*spec));
  summary.set("config", co.subtitle);
  summary.set("timeline", timeline_json(g, layout, tl));
  if (!p.has("no-run")) {
    Result<JsonValue> measured = measure_steps(p, factory, *opts, *lr, tl, layout, &report);
    if (!measured.is_ok()) return fail(measured.status());
    summary.set("measured", std::move(measured).value());
  }

  if (!svg_path.empty()) {
    std::string svg = memory_timeline_svg(g, tl, co);
    svg_file.write(svg.data(), static_cast<std::streamsize>(svg.size()));
    svg_file.close();
    if (!svg_file) return fail(io_error("--svg '" + svg_path + "': write failed"));
    report += "\nchart written to " + svg_path + "\n";
    summary.set("svg", svg_path);
  }
  if (p.has("json")) {
    std::fprintf(stderr, "%s", report.c_str());
    std::printf("%s\n", to_json_pretty(summary).c_str());
  } else {
    std::printf("%s", report.c_str());
  }
  return 0;
}

}  // namespace edgetrain::cli
