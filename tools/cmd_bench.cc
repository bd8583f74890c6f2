// `edgetrain bench`: the speed and memory of training steps on synthetic data, measured the way
// the PyTorch peer (bench/peer_bench.py) measures PyTorch: a fixed random batch, warm-up steps,
// then the median over timed steps of forward + backward + SGD momentum 0.9; the process's peak
// RSS (VmHWM reset after set-up) during those steps.
//
// --profile then runs the same number of steps through Executor::run_profiled and sums the
// node times per layer kind and pass (planner/op_flops.h), next to the achieved GFLOP/s and the
// share of the machine's measured sgemm peak: where the step's time goes and how far each kind
// is from the hardware limit. --alone also times every node by itself (the cost-model profiler's
// KernelTimer: its buffers warm, the same threads, wall clock) and prints, per kind and for the
// nodes with the largest excess, the step's time against that: what a step loses to data that
// other nodes pushed out of the caches (the case for fusing ops, not for faster kernels).
#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include "models/model_zoo.h"
#include "ops/gemm.h"
#include "planner/op_flops.h"
#include "planner/profiler.h"
#include "runtime/blas_env.h"
#include "runtime/thread_pool.h"
#include "tools/commands.h"
#include "tools/setup.h"

namespace edgetrain::cli {

namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

struct Stats {
  double median = 0, mean = 0, min = 0, max = 0;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(n);
  s.min = v.front();
  s.max = v.back();
  return s;
}

// The best GFLOP/s of a 1024^3 sgemm: one thread calls OpenBLAS directly (pinned to one thread,
// as the executor runs it); more threads split it over our pool with ops/gemm.h, the way conv and
// linear kernels do. The best of a few repetitions, after one warm-up.
// Minor page faults of the whole process so far (all threads).
int64_t minor_page_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_minflt);
}

double sgemm_peak_gflops(int threads) {
  constexpr int64_t kN = 1024;
  constexpr int kReps = 5;
  set_blas_threads(1);
  std::vector<float> a(kN * kN), b(kN * kN), c(kN * kN);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float& v : a) v = u(rng);
  for (float& v : b) v = u(rng);
  ThreadPool pool(threads);
  Parallel par = pool.parallel();
  double best = 1e30;
  for (int r = 0; r <= kReps; ++r) {
    Stopwatch sw;
    if (threads == 1)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, kN, kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f,
                  c.data(), kN);
    else
      gemm(par, false, false, kN, kN, kN, 1.0f, a.data(), kN, b.data(), kN, 0.0f, c.data(), kN);
    if (r > 0) best = std::min(best, sw.seconds());
  }
  return 2.0 * kN * kN * kN / best * 1e-9;
}

struct KindRow {
  std::string label;
  int nodes = 0;
  double seconds = 0;  // summed over the profiled steps
  int64_t flops = 0;   // per step
  int64_t bytes = 0;   // per step
};

// A node's first output shape as text ("-" without one), and its row of a node list: layer, op,
// output shape and time per step.
std::string output_shape_text(const Graph& g, const Node& node) {
  const ValueId out = node.outputs.empty() ? kNoValue : node.outputs[0];
  return out == kNoValue ? "-" : g.value(out).shape.to_string();
}
JsonValue node_json(const Node& node, const std::string& shape, double ms_per_step) {
  JsonValue j = JsonValue::object();
  j.set("layer", node.layer);
  j.set("op", op_name(node.op));
  j.set("output_shape", shape);
  j.set("ms_per_step", ms_per_step);
  return j;
}

// --alone: each node of the step timed by itself, seconds per call (-1 where the timer cannot
// run it, e.g. a node over its buffer limit).
constexpr double kAloneBudgetSeconds = 0.005;     // per node: the fastest of 3 or more calls
constexpr size_t kAloneMaxBytes = size_t{1} << 30;
std::vector<double> time_nodes_alone(const Graph& g, const std::vector<double>& node_seconds, int threads) {
  std::vector<double> alone(g.nodes.size(), -1.0);
  KernelTimer timer({threads}, /*seed=*/1, /*single_thread_cpu_time=*/false);
  std::fprintf(stderr, "timing %zu nodes alone...\n", g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (node_seconds[i] <= 0) continue;
    Result<std::vector<double>> r = timer.time_node(g, g.nodes[i], kAloneBudgetSeconds, kAloneMaxBytes);
    if (r.is_ok()) alone[i] = (*r)[0];
  }
  return alone;
}

// The --alone report: per kind (rows as in the profile table) and the nodes whose step time
// exceeds their time alone the most.
JsonValue alone_report(const Graph& g, const std::vector<double>& node_seconds, const std::vector<double>& alone,
                       const std::vector<NodeWork>& work, int64_t steps) {
  const double n = static_cast<double>(steps);
  struct Row {
    double step = 0, alone = 0;
    int nodes = 0;
  };
  std::map<std::string, Row> rows;
  int untimed = 0;
  double step_total = 0, alone_total = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (node_seconds[i] <= 0) continue;
    if (alone[i] < 0) {
      ++untimed;
      continue;
    }
    Row& r = rows[work_label(work[i])];
    r.step += node_seconds[i] / n, r.alone += alone[i], r.nodes += 1;
    step_total += node_seconds[i] / n, alone_total += alone[i];
  }
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.step - a.second.alone > b.second.step - b.second.alone; });
  std::fprintf(stderr, "\nin the step against alone (each node timed by itself: warm buffers, the same threads):\n");
  std::fprintf(stderr, "%-26s %5s %9s %9s %9s %7s\n", "layer kind / pass", "nodes", "step ms", "alone ms", "excess",
               "ratio");
  JsonValue kinds = JsonValue::array();
  auto print = [&](const std::string& label, int nodes, double step, double a) {
    std::fprintf(stderr, "%-26s %5d %9.2f %9.2f %9.2f %6.2fx\n", label.c_str(), nodes, step * 1e3, a * 1e3,
                 (step - a) * 1e3, a > 0 ? step / a : 0.0);
    JsonValue j = JsonValue::object();
    j.set("kind", label);
    j.set("nodes", nodes);
    j.set("ms_per_step", step * 1e3);
    j.set("alone_ms", a * 1e3);
    return j;
  };
  for (const auto& [label, r] : sorted) kinds.push_back(print(label, r.nodes, r.step, r.alone));
  JsonValue total = print("total", static_cast<int>(g.nodes.size()) - untimed, step_total, alone_total);
  if (untimed > 0) std::fprintf(stderr, "(%d nodes could not be timed alone and are left out)\n", untimed);

  std::vector<size_t> order;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (node_seconds[i] > 0 && alone[i] >= 0) order.push_back(i);
  auto excess = [&](size_t i) { return node_seconds[i] / n - alone[i]; };
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return excess(a) > excess(b); });
  std::fprintf(stderr, "\nlargest excess over alone:\n%-28s %-24s %-20s %8s %8s\n", "layer", "op", "output", "step ms",
               "alone ms");
  JsonValue top = JsonValue::array();
  for (size_t k = 0; k < std::min<size_t>(12, order.size()); ++k) {
    const size_t i = order[k];
    const Node& node = g.nodes[i];
    const std::string shape = output_shape_text(g, node);
    std::fprintf(stderr, "%-28s %-24s %-20s %8.3f %8.3f\n", node.layer.c_str(), op_name(node.op), shape.c_str(),
                 node_seconds[i] / n * 1e3, alone[i] * 1e3);
    JsonValue j = node_json(node, shape, node_seconds[i] / n * 1e3);
    j.set("alone_ms", alone[i] * 1e3);
    top.push_back(std::move(j));
  }
  JsonValue r = JsonValue::object();
  r.set("kinds", std::move(kinds));
  r.set("total", std::move(total));
  r.set("untimed_nodes", untimed);
  r.set("largest_excess", std::move(top));
  return r;
}

// --profile: run `steps` profiled steps and print/return the per-kind table and the slowest nodes
// (with alone, also alone_report's).
JsonValue profile_steps(Trainer& t, int64_t steps, float lr, int threads, bool alone) {
  Executor& ex = t.train_executor();
  const Graph& g = ex.graph();
  std::vector<double> node_seconds(g.nodes.size(), 0.0);
  StepScalars s;
  s.learning_rate = lr;
  for (int64_t i = 0; i < steps; ++i) {
    s.optimizer_step = t.optimizer_steps() + 1 + i;  // SGD ignores it; Adam's bias correction reads it
    ex.run_profiled(s, node_seconds.data());
  }
  double peak1 = sgemm_peak_gflops(1);
  double peak_t = threads > 1 ? sgemm_peak_gflops(threads) : peak1;

  std::map<std::string, KindRow> rows;
  std::vector<NodeWork> work(g.nodes.size());
  double total_s = 0;
  int64_t total_flops = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    work[i] = node_work(g, g.nodes[i]);
    KindRow& r = rows[work_label(work[i])];
    r.label = work_label(work[i]);
    r.nodes += 1;
    r.seconds += node_seconds[i];
    r.flops += work[i].flops;
    r.bytes += work[i].bytes;
    total_s += node_seconds[i];
    total_flops += work[i].flops;
  }
  std::vector<KindRow> sorted;
  for (auto& [label, r] : rows) sorted.push_back(r);
  std::sort(sorted.begin(), sorted.end(), [](const KindRow& a, const KindRow& b) { return a.seconds > b.seconds; });

  double n = static_cast<double>(steps);
  std::fprintf(stderr, "\nprofile over %lld steps (%d threads); sgemm 1024^3 peak: %.1f GFLOP/s on 1 thread, %.1f on %d\n",
               static_cast<long long>(steps), threads, peak1, peak_t, threads);
  std::fprintf(stderr, "%-26s %5s %8s %6s %9s %8s %6s %7s\n", "layer kind / pass", "nodes", "ms/step", "share",
               "MFLOP", "GFLOP/s", "%peak", "GB/s");
  JsonValue kinds = JsonValue::array();
  auto print_row = [&](const std::string& label, int nodes, double sec, int64_t flops, int64_t bytes) {
    double ms = sec / n * 1e3;
    double gflops = sec > 0 ? static_cast<double>(flops) * n / sec * 1e-9 : 0;
    double gbs = sec > 0 ? static_cast<double>(bytes) * n / sec * 1e-9 : 0;
    std::fprintf(stderr, "%-26s %5d %8.2f %5.1f%% %9.1f %8.2f %5.1f%% %7.2f\n", label.c_str(), nodes, ms,
                 total_s > 0 ? 100.0 * sec / total_s : 0.0, static_cast<double>(flops) * 1e-6, gflops,
                 100.0 * gflops / peak_t, gbs);
    JsonValue j = JsonValue::object();
    j.set("kind", label);
    j.set("nodes", nodes);
    j.set("ms_per_step", ms);
    j.set("time_share", total_s > 0 ? sec / total_s : 0.0);
    j.set("flops_per_step", flops);
    j.set("bytes_per_step", bytes);
    j.set("gflops", gflops);
    j.set("percent_of_sgemm_peak", 100.0 * gflops / peak_t);
    j.set("gbytes_per_s", gbs);
    return j;
  };
  int64_t total_bytes = 0;
  for (const KindRow& r : sorted) {
    kinds.push_back(print_row(r.label, r.nodes, r.seconds, r.flops, r.bytes));
    total_bytes += r.bytes;
  }
  JsonValue total = print_row("total", static_cast<int>(g.nodes.size()), total_s, total_flops, total_bytes);

  // The slowest nodes: what to optimise next.
  std::vector<size_t> order(g.nodes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return node_seconds[a] > node_seconds[b]; });
  std::fprintf(stderr, "\nslowest nodes:\n%-28s %-24s %-20s %8s %8s\n", "layer", "op", "output", "ms/step", "GFLOP/s");
  JsonValue top = JsonValue::array();
  for (size_t k = 0; k < std::min<size_t>(12, order.size()); ++k) {
    size_t i = order[k];
    const Node& node = g.nodes[i];
    const std::string shape = output_shape_text(g, node);
    double sec = node_seconds[i];
    double gflops = sec > 0 ? static_cast<double>(work[i].flops) * n / sec * 1e-9 : 0;
    std::fprintf(stderr, "%-28s %-24s %-20s %8.2f %8.2f\n", node.layer.c_str(), op_name(node.op), shape.c_str(),
                 sec / n * 1e3, gflops);
    JsonValue j = node_json(node, shape, sec / n * 1e3);
    j.set("kind", work_label(work[i]));
    j.set("gflops", gflops);
    top.push_back(std::move(j));
  }

  JsonValue p = JsonValue::object();
  p.set("steps", steps);
  p.set("sgemm_peak_gflops_1_thread", peak1);
  p.set("sgemm_peak_gflops_threads", peak_t);
  p.set("kinds", std::move(kinds));
  p.set("total", std::move(total));
  p.set("slowest_nodes", std::move(top));
  if (alone) p.set("alone", alone_report(g, node_seconds, time_nodes_alone(g, node_seconds, threads), work, steps));
  return p;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  ArgParser p("bench", "Measure training-step time and peak memory on synthetic data (no dataset needed).");
  p.option("model", "NAME", "mobilenet_v2", "small_cnn, mobilenet_v2, resnet18, resnet34 or resnet50");
  p.option("width", "W", "1.0", "MobileNetV2 width multiplier");
  p.option("input", "PX", "32", "side of the square input images");
  p.option("batch", "N", "32", "batch size");
  p.option("classes", "N", "10", "classes of the classifier");
  p.option("mode", "MODE", "full", "full (every parameter trains) or classifier (only the last layer)");
  p.option("steps", "N", "20", "timed training steps");
  p.option("warmup", "N", "3", "untimed steps before them");
  p.option("threads", "N", "2", "threads for kernels");
  p.option("lr", "X", "0.01", "learning rate of the SGD (momentum 0.9) steps");
  p.option("seed", "N", "1", "seed for the parameters and the synthetic batch");
  p.option("micro-batches", "K", "1", "memory lever: K micro-batches with gradient accumulation");
  p.option("checkpoint", "SPEC", "none", "memory lever: none, sqrt, sqrt:S, manual:C1,C2, budget:BYTES");
  p.flag("relu-masks", "memory lever: 1-bit ReLU masks for backward");
  p.flag("keep-norm-outputs", "memory lever off: keep batch-norm outputs for backward instead of recomputing them");
  p.flag("sparse-activations", "memory lever: bitmap-packed saved post-ReLU activations");
  p.option("capacity", "X", "0.6", "packed slot capacity (fraction of elements)");
  p.option("freeze-layers", "K", "0", "memory lever: freeze the first K layers");
  p.flag("profile", "then profile as many steps per node: time, GFLOP/s and % of sgemm peak per layer kind");
  p.flag("alone", "with --profile: also time every node by itself (warm caches) against its time in the step");
  p.flag("json", "print every number as JSON on stdout");
  if (Status s = p.parse(argc, argv, 1); !s.is_ok()) return fail(s);
  if (p.help_requested()) {
    std::printf("%s", p.help_text().c_str());
    return 0;
  }
  uint64_t rss_start = process_memory().rss;
  Result<int64_t> input = p.integer("input"), batch = p.integer("batch"), classes = p.integer("classes");
  Result<int64_t> steps = p.integer("steps"), warmup = p.integer("warmup"), threads = p.integer("threads");
  Result<int64_t> seed = p.integer("seed");
  Result<double> width = p.number("width"), lr = p.number("lr");
  for (const Status& s : {input.status(), batch.status(), classes.status(), steps.status(), warmup.status(),
                          threads.status(), seed.status(), width.status(), lr.status()})
    if (!s.is_ok()) return fail(s);
  if (*steps <= 0) return fail(invalid_argument("--steps must be positive"));
  if (*warmup < 0) return fail(invalid_argument("--warmup must be >= 0"));
  if (*threads <= 0 || *threads > 256) return fail(invalid_argument("--threads must be in [1, 256]"));
  if (*batch <= 0) return fail(invalid_argument("--batch must be positive"));
  if (*lr <= 0) return fail(invalid_argument("--lr must be positive"));
  std::string mode = p.str("mode");
  if (mode != "full" && mode != "classifier")
    return fail(invalid_argument("--mode '" + mode + "': use full or classifier"));
  if (p.has("alone") && !p.has("profile")) return fail(invalid_argument("--alone needs --profile"));

  Result<ModelSpec> spec = parse_model_spec(p.str("model"), static_cast<float>(*width), static_cast<int>(*classes),
                                            static_cast<int>(*input));
  if (!spec.is_ok()) return fail(spec.status());
  TrainerOptions o;
  o.batch = *batch;
  o.eval_batch = 1;  // the benchmark never evaluates: keep the evaluation arena out of the RSS
  o.threads = static_cast<int>(*threads);
  o.init_seed = static_cast<uint64_t>(*seed);
  o.config.optimizer.kind = OptimizerKind::kSgd;
  o.config.optimizer.attrs.momentum = 0.9f;
  if (mode == "classifier") o.config.freeze.mode = FreezeMode::kClassifierOnly;
  {
    Result<int64_t> micro = p.integer("micro-batches");
    Result<int64_t> frozen = p.integer("freeze-layers");
    Result<double> capacity = p.number("capacity");
    Result<CheckpointConfig> ck = parse_checkpoint(p.str("checkpoint"));
    if (!micro.is_ok()) return fail(micro.status());
    if (!frozen.is_ok()) return fail(frozen.status());
    if (!capacity.is_ok()) return fail(capacity.status());
    if (!ck.is_ok()) return fail(ck.status());
    o.config.micro_batches = static_cast<int>(*micro);
    o.config.freeze.frozen_prefix_layers = static_cast<int>(*frozen);
    o.config.checkpoint = *ck;
    o.config.compression.relu_masks = p.has("relu-masks");
    o.config.compression.recompute_norm_outputs = !p.has("keep-norm-outputs");
    o.config.compression.sparse_activations = p.has("sparse-activations");
    o.config.compression.capacity = static_cast<float>(*capacity);
  }
  Result<std::unique_ptr<Trainer>> trainer = Trainer::create(graph_factory(*spec), o);
  if (!trainer.is_ok()) return fail(trainer.status());
  Trainer& t = **trainer;
  uint64_t rss_built = process_memory().rss;

  // One fixed random batch, as the PyTorch peer: N(0, 1) pixels, uniform labels.
  std::mt19937 rng(static_cast<uint32_t>(*seed));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int32_t> label(0, t.classes() - 1);
  float* images = t.train_images();
  for (int64_t i = 0, n = t.input_shape().numel(); i < n; ++i) images[i] = normal(rng);
  for (int64_t i = 0; i < t.batch(); ++i) t.train_labels()[i] = label(rng);

  std::fprintf(stderr, "edgetrain bench: %s, batch %lld, %s training, %lld threads, %lld + %lld steps, arena %s\n",
               describe_model(*spec).c_str(), static_cast<long long>(*batch), mode.c_str(),
               static_cast<long long>(*threads), static_cast<long long>(*warmup), static_cast<long long>(*steps),
               format_bytes(static_cast<double>(t.train_executor().arena_bytes())).c_str());

  uint64_t rss_before_train = process_memory().rss;
  bool hwm_reset = reset_peak_rss();  // VmHWM from here on = the peak during the steps
  float loss_first = 0, loss_last = 0;
  std::vector<double> step_ms;
  // Page faults: the arena is written once at creation, so timed steps should take none (a
  // fault per first touch of a page would cost time and show memory the plan does not know).
  int64_t faults_start = minor_page_faults(), faults_timed_start = faults_start;
  for (int64_t i = 0; i < *warmup + *steps; ++i) {
    if (i == *warmup) faults_timed_start = minor_page_faults();
    Stopwatch sw;
    Result<StepResult> r = t.train_step(static_cast<float>(*lr));
    double ms = sw.seconds() * 1e3;
    if (!r.is_ok()) return fail(r.status());
    if (i == 0) loss_first = r->loss;
    loss_last = r->loss;
    if (i >= *warmup) step_ms.push_back(ms);
  }
  const int64_t faults_warmup = faults_timed_start - faults_start;
  const int64_t faults_timed = minor_page_faults() - faults_timed_start;
  ProcessMemory after = process_memory();
  Stats st = stats_of(step_ms);
  std::fprintf(stderr, "step: median %.2f ms, mean %.2f, min %.2f, max %.2f (%.1f images/s); loss %.4f -> %.4f\n",
               st.median, st.mean, st.min, st.max, static_cast<double>(*batch) / st.median * 1e3, loss_first, loss_last);
  std::fprintf(stderr, "RSS: %s at start, %s after set-up, peak %s during the steps (%s above set-up)%s\n",
               format_bytes(static_cast<double>(rss_start)).c_str(), format_bytes(static_cast<double>(rss_built)).c_str(),
               format_bytes(static_cast<double>(after.peak_rss)).c_str(),
               format_bytes(static_cast<double>(after.peak_rss) - static_cast<double>(rss_before_train)).c_str(),
               hwm_reset ? "" : " (VmHWM could not be reset: the peak includes set-up)");
  std::fprintf(stderr, "page faults: %lld minor during the warm-up steps, %lld during the timed steps (%.1f per step)\n",
               static_cast<long long>(faults_warmup), static_cast<long long>(faults_timed),
               static_cast<double>(faults_timed) / static_cast<double>(std::max<int64_t>(1, *steps)));

  JsonValue j = JsonValue::object();
  j.set("model", model_name(*spec));
  j.set("width", *width);
  j.set("input", *input);
  j.set("batch", *batch);
  j.set("classes", *classes);
  j.set("mode", mode);
  j.set("threads", *threads);
  j.set("warmup", *warmup);
  j.set("steps", *steps);
  j.set("step_ms_median", st.median);
  j.set("step_ms_mean", st.mean);
  j.set("step_ms_min", st.min);
  j.set("step_ms_max", st.max);
  JsonValue all = JsonValue::array();
  for (double ms : step_ms) all.push_back(ms);
  j.set("step_ms_all", std::move(all));
  j.set("images_per_second", static_cast<double>(*batch) / st.median * 1e3);
  j.set("loss_first", loss_first);
  j.set("loss_last", loss_last);
  j.set("rss_start_bytes", static_cast<int64_t>(rss_start));
  j.set("rss_after_setup_bytes", static_cast<int64_t>(rss_built));
  j.set("rss_before_train_bytes", static_cast<int64_t>(rss_before_train));
  j.set("peak_rss_bytes", static_cast<int64_t>(after.peak_rss));
  j.set("peak_rss_increase_bytes", static_cast<int64_t>(after.peak_rss) - static_cast<int64_t>(rss_before_train));
  j.set("rss_after_train_bytes", static_cast<int64_t>(after.rss));
  j.set("hwm_reset_ok", hwm_reset);
  j.set("minor_page_faults_warmup", faults_warmup);
  j.set("minor_page_faults_timed", faults_timed);
  j.set("trainable_params", t.trainable_param_count());
  j.set("memory", memory_json(t));
  j.set("cpu", cpu_model());
  j.set("hardware_threads", static_cast<int64_t>(std::thread::hardware_concurrency()));
  j.set("blas", blas_summary());
  j.set("blas_core", blas_info().core);
  if (p.has("profile"))
    j.set("profile", profile_steps(t, *steps, static_cast<float>(*lr), static_cast<int>(*threads), p.has("alone")));
  if (p.has("json")) std::printf("%s\n", to_json_pretty(j).c_str());
  return 0;
}

}  // namespace edgetrain::cli
