// The cost model the planner asks for step times: one fitted regressor per (op class, thread
// count), chosen per class among the kinds of planner/regressors.h by cross-validated accuracy.
//
//   Result<CostModel> m = CostModel::load(profile_path(default_cache_dir()));
//   double step = m->predict_step_seconds(training_graph, /*threads=*/2);
//
// A node's prediction has two stages: the op class's model of the kernel timed alone (fitted to
// the profiler's single-kernel samples), times the in-step slowdown (caches make a kernel slower
// inside a step than alone), fitted to the ratio of per-node times inside real calibration steps
// to that prediction in two parts: a factor of the whole step's memory footprint
// (FootprintFactor: a step that fits in the last-level cache runs its kernels ~1.1x their time
// alone, one of hundreds of MiB ~1.6x, whatever the node), then the class's correction of what
// is left (cross-validated by whole steps), which also sees how cold the node's inputs are
// (input_reuse_bytes). A step's time is the sum of its nodes' predictions (the
// executor runs nodes one after the other, each using all threads). A prediction is a feature extraction and one small model
// evaluation, well under a microsecond per node, so a planner can score thousands of candidate
// schedules per second. Thread counts that were not profiled use the nearest profiled one below
// (or the smallest); classes without samples (an op added after the profile) use a roofline fit
// over all samples of that thread count.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "planner/features.h"
#include "planner/profile_store.h"
#include "planner/regressors.h"
#include "runtime/graph.h"
#include "runtime/json.h"
#include "runtime/status.h"

namespace edgetrain {

// What CostModel::fit makes of a profile, stored with its models ("fit_version"; 0 when absent):
// bumped when the same samples give models that read their inputs differently, so that the
// planner's loader (planner/refeaturize.h load_current_cost_model) fits a stored profile again.
//   1: 2026-12-07, the in-step corrections read correction_row (the node's input reuse)
//   2: 2026-12-07, the kernel models leave out samples measured over kDropSlowerThan their
//      out-of-fold prediction (in groups of kDropMinSamples or more)
constexpr int kCostModelFitVersion = 2;
int cost_model_fit_version(const JsonValue& models);

// Bytes a training step touches: its arena as laid out (memory/liveness.h) plus everything kept
// beside it (parameters, buffers, optimizer state). 0 when the graph cannot be laid out.
double step_footprint_bytes(const Graph& g);

// Per node of a schedule: the bytes the nodes in between moved (their features' bytes) since the
// coldest of its large inputs (at least a quarter of its largest) was last read or written;
// kNeverTouchedReuse for an input nothing before it touched (the step's input, a parameter).
// A kernel timed alone finds its inputs in cache; inside a step, one whose input was written long
// ago reads it from further away: nodes of batch_norm.bwd_eval in the 2026-12-07 profile's
// calibration steps ran 1.07x their time alone with reuse under 256 KiB, 3.2x beyond 64 MB.
std::vector<double> input_reuse_bytes(const Graph& g);
// The same with the nodes' features already extracted (features[i] of g.nodes[i]).
std::vector<double> input_reuse_bytes(const Graph& g, const std::vector<NodeFeatures>& features);
constexpr double kNeverTouchedReuse = 1e12;
// The row an in-step correction sees: the node's FLOPs, bytes and kernel variant, how cold its
// inputs are, and not its shape. z[kReuseFeature] (the log multiply-adds of one GEMM call, which
// the kernel timed alone needs and a ratio of two times of the same kernel does not) holds
// log(1 + reuse bytes) (reuse_bytes < 0, not known, counts as kNeverTouchedReuse), and the shape
// features (batch, pixels, channels, taps, stride: z[kFirstShapeFeature..kLastShapeFeature]) are
// 0. With them, corrections fitted to a few hundred calibration nodes extrapolated along the
// shape: the demo's eval-mode norm backward at batch 32 and 1-4 pixels, where every calibration
// node with running statistics had batch 1-16, got 2.6x against 1.3x measured.
constexpr int kReuseFeature = 8;
constexpr int kFirstShapeFeature = 2, kLastShapeFeature = 7;
FeatureRow correction_row(const FeatureRow& row, double reuse_bytes);

// How much slower every kernel of a step runs than alone, as a function of the step's footprint:
// log factor = intercept + slope * log(footprint), the footprint clamped to the range fitted.
// Measured on the 2026-12-06 profile: 1.1x for steps of a few MiB, 1.6-1.7x for steps of
// 100-450 MiB, at every node size: a small step's tensors are still in the last-level cache when
// they are read again, a large step's come from memory.
struct FootprintFactor {
  double intercept = 0, slope = 0;
  double log_lo = 0, log_hi = 0;
  double typical = 1.0;  // the factor of the median calibration step (footprint unknown)
  double factor(double footprint_bytes) const;  // `typical` for footprint_bytes <= 0
};
// Fits log ratio (a calibration step's in-step time over its kernels' predicted time alone) on
// log footprint: a Theil-Sen line first, then least squares on the steps within a factor
// keep_ratio of it (`kept`, per step, says which). A constant with fewer than 4 steps kept or a
// single footprint, the identity with none; never a negative slope.
FootprintFactor fit_footprint_factor(const std::vector<double>& log_footprint, const std::vector<double>& log_ratio,
                                     double keep_ratio = 1.3, std::vector<bool>* kept = nullptr);

// The fitting samples of one (class, thread count) and the model selection made on them.
struct GroupFit {
  OpClass op_class = OpClass::kCount;
  int threads = 1;
  std::vector<size_t> samples;  // the fitted samples: indices into the profile's kernels (never held out)
  int dropped_slow = 0;         // fitting samples left out as measured too slow (fit_groups)
  Selection selection;          // selection.out_of_fold[k] predicts kernels[samples[k]]
};

// Interference only ever slows a timing, and one that outlasted both of a sample's timings (the
// profiler's second look) still pulls a log-space fit up around it. So CostModel::fit's kernel
// models leave out the fitting samples measured more than this factor slower than their
// out-of-fold prediction and are selected again on the rest (the report's cross-validated shares
// are then those of the kept samples; the held-out samples are never touched). A slow region with
// several samples keeps them (each one's out-of-fold prediction comes from trees fitted on the
// others); a lone slow sample goes, as a disturbed one should.
// Refitting the machine's 2026-12-07 profiles (held-out per-op within 10%, one / two threads;
// whole validation steps): two merged runs 71.9 / 50.7% -> 77.2 / 56.6%, 90.3 -> 91.7%; the 23:03
// run alone 81.8 / 58.9% -> 84.3 / 61.6%, 86.1 -> 88.9%. At 1.15: 77.6 / 57.4%, 90.3%; 1.35:
// 75.1 / 55.1%, 91.7%; 1.5: 74.2 / 53.7%, 91.7%.
constexpr double kDropSlowerThan = 1.25;
// ... in groups of at least this many fitting samples: out-of-fold predictions from a few dozen
// samples miss by more than interference does (a 30-second quick profile, ~25-40 per group,
// refitted with every group trimmed: held-out 37.4 / 25.3% -> 33.0 / 24.2%, whole steps 5 -> 4
// of 10). The 7-minute profiles' groups have 200-400.
constexpr int kDropMinSamples = 100;

// Groups the non-holdout samples by (class, threads) and selects a regressor for each. With
// drop_slower_than > 0, in a group of at least kDropMinSamples, the samples measured more than
// that factor over their out-of-fold prediction are then left out (GroupFit::samples no longer
// lists them) and the selection is made again on the rest.
Result<std::vector<GroupFit>> fit_groups(const std::vector<KernelSample>& kernels, const SelectOptions& options,
                                         double drop_slower_than = 0);

// Accuracy of the fitted models, per class and overall. Shares are of predictions within +/-10%.
struct ClassReport {
  OpClass op_class = OpClass::kCount;
  int threads = 1;
  int fit_samples = 0;
  int holdout_samples = 0;
  std::vector<CandidateScore> candidates;
  RegressorKind chosen = RegressorKind::kRoofline;
  double holdout_within = 0, holdout_r2 = 0;  // on held-out kernel samples
  // The in-step correction: nodes of calibration steps it was fitted to, its kind and its
  // cross-validated share within 10% (of in-step node times).
  int calibration_samples = 0;
  RegressorKind correction = RegressorKind::kRoofline;
  double correction_cv_within = 0;
  int instep_count = 0;                        // nodes of validation steps
  double instep_within = 0;
};

struct StepReport {
  std::string config;
  int threads = 1;
  bool validation = true;
  double measured = 0, predicted = 0;
};

struct FitReport {
  std::vector<ClassReport> classes;
  // Calibration steps used for the in-step corrections, and those left out because their
  // in-step / isolated ratio was more than 1.3x off their thread count's median (a step another
  // process slowed down).
  int calibration_steps = 0;
  int calibration_steps_dropped = 0;
  // Calibration steps whose per-node times were measured on another schedule (or before the
  // schedule's fingerprint was stored): only their whole-step times count.
  int calibration_steps_other_schedule = 0;
  // Fitting samples the kernel models left out as measured too slow (kDropSlowerThan).
  int fit_samples_dropped_slow = 0;
  // All held-out kernel samples together.
  int op_holdout_count = 0;
  double op_holdout_within = 0, op_holdout_r2 = 0;
  // Every node of the validation steps, timed inside the step (configurations not used in
  // fitting; includes sub-10-microsecond nodes whose in-step timing is itself noisy).
  int op_instep_count = 0;
  double op_instep_within = 0, op_instep_r2 = 0;
  // Kernel timings repeated later (Profile::repeats), per thread count: the share within 10% of
  // the first timing is the noise floor of the per-op numbers.
  struct Repeatability {
    int threads = 1;
    int count = 0;
    double within = 0;
  };
  std::vector<Repeatability> repeatability;
  // The same for whole validation steps timed again at the end of the profile
  // (Profile::step_repeats): the noise floor of the whole-step share.
  std::vector<Repeatability> step_repeatability;
  // Whole validation steps: measured vs the sum of node predictions.
  std::vector<StepReport> steps;
  int step_count = 0;
  double step_within = 0, step_r2 = 0;

  JsonValue to_json() const;
};

// A human-readable report from FitReport::to_json() (as stored in a profile).
std::string report_text(const JsonValue& report);

class CostModel {
 public:
  // Fits every (class, threads) group of p's non-holdout kernel samples and, when `report` is
  // given, measures accuracy on the held-out samples and on p's validation steps.
  static Result<CostModel> fit(const Profile& p, const SelectOptions& options, FitReport* report);
  // The same with the kernel-model selection already made (fit_groups on p.kernels).
  static Result<CostModel> fit(const Profile& p, const std::vector<GroupFit>& fits, const SelectOptions& options,
                               FitReport* report);
  // The models of a stored profile (Profile::models).
  static Result<CostModel> from_json(const JsonValue& models);
  // Loads the profile at `path` and its models. A profile measured on another CPU or BLAS core
  // fails (check_machine) unless allow_other_machine, which loads it and sets warning().
  static Result<CostModel> load(const std::string& path, bool allow_other_machine = false);
  // The same for a profile already read from `path` (named in errors).
  static Result<CostModel> from_profile(const Profile& p, const std::string& path, bool allow_other_machine = false);

  JsonValue to_json() const;

  double predict_node_seconds(const Graph& g, const Node& n, int threads) const;
  // Sum over the graph's nodes, each as often as the executor runs it (a micro-batched
  // schedule runs the nodes before its first update once per micro-batch).
  double predict_step_seconds(const Graph& g, int threads) const;
  // The profiled thread count up to max_threads at which g's step is predicted fastest, and that
  // prediction. Fewer threads than the most profiled (up to max_threads) only when predicted at
  // least `min_gain` faster (0.05: 5%), so that prediction noise does not halve a step's threads:
  // small steps in micro-batches lose more to two threads' hand-offs than they gain (MobileNetV2
  // w0.5 28px b32 in 4 micro-batches: 7.43 ms on one thread, 8.44 on two; predicted 7.15 / 7.77).
  struct ThreadChoice {
    int threads = 1;
    double predicted_seconds = 0;
    double predicted_at_most = 0;  // at the largest profiled count up to max_threads
  };
  ThreadChoice fastest_threads(const Graph& g, int max_threads, double min_gain = 0.05) const;
  // footprint_bytes: the step's step_footprint_bytes (<= 0: unknown, the median calibration
  // step's factor); reuse_bytes: the node's input_reuse_bytes in its step (< 0: unknown, as if
  // its inputs came from memory).
  double predict_seconds(const NodeFeatures& f, int threads, double footprint_bytes = -1, double reuse_bytes = -1) const;
  // The first stage only: the kernel timed alone (what the profiler's kernel samples measure).
  double predict_isolated_seconds(const NodeFeatures& f, int threads) const;
  // predict_node_seconds at a fixed thread count as a plain function (planner/search.h's
  // NodeTimePredictor); it holds its own copy of the models.
  std::function<double(const Graph&, const Node&)> node_predictor(int threads) const;

  const std::vector<int>& threads() const { return threads_; }
  bool has_class(OpClass c, int threads) const;
  const std::string& warning() const { return warning_; }

 private:
  struct PerThreads {
    std::vector<Regressor> models;  // per OpClass
    std::vector<bool> present;
    std::vector<Regressor> corrections;  // per OpClass: in-step time / isolated prediction
    std::vector<bool> corrected;
    // Per OpClass: the range a correction may take, the 10th to 90th percentile of the ratios it
    // was fitted to (kCorrectionQuantile). A correction fitted mostly on MobileNetV2 and small-CNN
    // nodes once gave ResNet's im2col convs 4x (forward) and 0.25x (backward data) at one thread,
    // far outside anything measured, and ResNet steps came out 24-64% over.
    std::vector<std::pair<double, double>> correction_bounds;
    Regressor fallback;
    // Stage 3: whole-step time / summed node predictions, the median over calibration steps (what
    // per-node models and in-step corrections still miss, e.g. dispatch and timer overhead).
    double step_scale = 1.0;
    FootprintFactor footprint;  // stage 2a: the step's footprint (identity before it was fitted)
    // Whether the corrections read correction_row (fit version 1 on; a stored model from before
    // read the node's own row, and still does).
    bool corrections_see_reuse = false;
  };
  // Bounds of a correction factor: a badly extrapolated ratio must not wreck a step's sum.
  static constexpr double kMinCorrection = 0.25, kMaxCorrection = 4.0;
  // A calibration step this far off its footprint's ratio was disturbed and is left out.
  static constexpr double kKeepStepRatio = 1.3;
  // The quantile of a class's fitted in-step ratios below which (and above 1 minus which) its
  // correction is clamped. 0.05 let the 2026-12-07 03:19 profile's one-thread conv.gemm.fwd
  // correction reach 2.1x on ResNet validation steps whose nodes ran 1.2-1.4x their time alone
  // (whole steps 55.6%); at 0.10 eight stored profiles refit to 75.8% on average (0.05: 74.8%,
  // 0.25: 75.4%), the worst 66.7% (0.05: 55.6%), none more than one step lower.
  static constexpr double kCorrectionQuantile = 0.10;
  const PerThreads& for_threads(int threads) const;

  std::vector<int> threads_;        // ascending
  std::vector<PerThreads> per_threads_;
  std::string warning_;
};

}  // namespace edgetrain
