#include "planner/search.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "optimizer/momentum_fusion.h"
#include "planner/op_flops.h"
#include "runtime/freezing.h"

namespace edgetrain {

const char* plan_objective_name(PlanObjective o) {
  switch (o) {
    case PlanObjective::kCapacityPerSecond: return "capacity-per-second";
    case PlanObjective::kFastest: return "fastest";
    case PlanObjective::kMostAccurate: return "most-accurate";
  }
  return "?";
}

Result<PlanObjective> parse_plan_objective(const std::string& s) {
  for (PlanObjective o : {PlanObjective::kCapacityPerSecond, PlanObjective::kFastest, PlanObjective::kMostAccurate})
    if (s == plan_objective_name(o)) return o;
  return invalid_argument("unknown objective '" + s + "' (valid: capacity-per-second, fastest, most-accurate)");
}

NodeTimePredictor roofline_predictor(double gflops, double gbytes_per_s) {
  return [gflops, gbytes_per_s](const Graph& g, const Node& n) {
    NodeWork w = node_work(g, n);
    return static_cast<double>(w.flops) / (gflops * 1e9) + static_cast<double>(w.bytes) / (gbytes_per_s * 1e9);
  };
}

TrainerOptions candidate_options(const TrainerOptions& base, const TrainConfig& config) {
  TrainerOptions o = base;
  o.config = config;
  o.eval_batch = std::min<int64_t>(base.eval_batch > 0 ? base.eval_batch : base.batch, base.batch / config.micro_batches);
  o.eval_within_training_arena = true;
  return o;
}

OptimizerConfig momentum_free(const OptimizerConfig& o) {
  OptimizerConfig m = o;
  if (o.kind != OptimizerKind::kSgd || o.attrs.momentum <= 0.0f) return m;
  m.attrs.momentum = 0.0f;
  m.attrs.nesterov = false;
  m.attrs.dampening = 0.0f;
  m.attrs.lr_scale = o.attrs.lr_scale / (1.0f - o.attrs.momentum);
  return m;
}

bool is_momentum_free_variant(const OptimizerConfig& c, const OptimizerConfig& requested) {
  return c.kind == OptimizerKind::kSgd && requested.kind == OptimizerKind::kSgd && requested.attrs.momentum > 0.0f &&
         c.attrs.momentum == 0.0f;
}

bool same_training(const TrainConfig& a, const TrainConfig& b) {
  const OptimAttrs &x = a.optimizer.attrs, &y = b.optimizer.attrs;
  return a.freeze.mode == b.freeze.mode && a.freeze.frozen_prefix_layers == b.freeze.frozen_prefix_layers &&
         a.freeze.frozen_suffix_layers == b.freeze.frozen_suffix_layers && a.freeze.frozen_patterns == b.freeze.frozen_patterns &&
         a.freeze.frozen_norm_in_eval_mode == b.freeze.frozen_norm_in_eval_mode && a.optimizer.kind == b.optimizer.kind &&
         x.momentum == y.momentum && x.dampening == y.dampening && x.weight_decay == y.weight_decay &&
         x.nesterov == y.nesterov && x.beta1 == y.beta1 && x.beta2 == y.beta2 && x.eps == y.eps && x.lr_scale == y.lr_scale &&
         a.norm_statistics == b.norm_statistics &&
         (a.micro_batches == b.micro_batches || a.norm_statistics == NormStatistics::kRunning);
}

std::string describe_config(const TrainConfig& c, int layer_count) {
  std::string s = "micro " + std::to_string(c.micro_batches);
  if (c.freeze.mode != FreezeMode::kNone) s += std::string(", ") + freeze_mode_name(c.freeze.mode);
  else if (c.freeze.frozen_prefix_layers > 0)
    s += ", freeze " + std::to_string(c.freeze.frozen_prefix_layers) + "/" + std::to_string(layer_count) + " layers";
  else if (c.freeze.frozen_suffix_layers == 0) s += ", train all";
  if (c.freeze.frozen_suffix_layers > 0)
    s += ", freeze the " + std::to_string(c.freeze.frozen_suffix_layers) + "/" + std::to_string(layer_count) +
         " layers before the classifier";
  switch (c.checkpoint.mode) {
    case CheckpointMode::kNone: break;
    case CheckpointMode::kSqrtBytes: s += ", ckpt sqrt"; break;
    case CheckpointMode::kManual: s += ", ckpt manual"; break;
    case CheckpointMode::kBudget: s += ", ckpt fitted"; break;
  }
  if (c.compression.relu_masks) s += ", masks";
  if (!c.compression.recompute_norm_outputs) s += ", norm outputs kept";
  if (c.compression.sparse_activations) {
    char buf[48];
    std::snprintf(buf, sizeof buf, ", sparse(%.2f)", c.compression.capacity);
    s += buf;
  }
  if (c.norm_statistics == NormStatistics::kRunning) s += ", running-stat norms";
  if (c.optimizer.attrs.momentum != 0.0f && c.optimizer.attrs.lr_scale != 1.0f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " (lr x%g)", c.optimizer.attrs.lr_scale);
    s += buf;
  }
  if (c.optimizer.kind == OptimizerKind::kSgd && c.optimizer.attrs.momentum == 0.0f && c.optimizer.attrs.lr_scale != 1.0f) {
    char buf[48];
    std::snprintf(buf, sizeof buf, ", sgd no momentum (lr x%g)", c.optimizer.attrs.lr_scale);
    s += buf;
  }
  return s;
}

namespace {

struct Combo {
  TrainConfig config;  // micro_batches decided by the search
  double best_score = 0;
  bool batch_statistics = true;  // some batch norm trains on batch statistics
  uint64_t fixed_bytes = 0;      // allocated beside the arena (optimizer state, owned parameters)
  uint64_t accumulator_bytes = 0;  // gradients the arena holds across micro-batches (k > 1)
};

// Predicted step seconds of `config` with k micro-batches: k passes of the micro-batch's forward
// and backward plus one of the updates, from the k = 1 schedule at the micro-batch size.
// `fixed_bytes`: what the trainer allocates beside the arena whatever the micro-batches
// (optimizer state, and the parameters unless they are trained in place), as design_trainer counts;
// `accumulator_bytes`: a lower bound of the arena with more than one micro-batch.
Result<double> predict_seconds(const PlanRequest& r, const TrainConfig& config, int k, int64_t* trainable,
                               bool* batch_statistics = nullptr, uint64_t* fixed_bytes = nullptr,
                               uint64_t* accumulator_bytes = nullptr) {
  TrainConfig one = config;
  one.micro_batches = 1;
  // Budget checkpointing before its budget is known (a combination's upper bound): sqrt segments.
  if (one.checkpoint.mode == CheckpointMode::kBudget && one.checkpoint.budget_bytes <= 0)
    one.checkpoint.mode = CheckpointMode::kSqrtBytes;
  Result<TrainingSchedule> built = make_training_schedule(r.factory, r.base.batch / k, one);
  if (!built.is_ok() && one.checkpoint.mode == CheckpointMode::kBudget) {
    one.checkpoint.mode = CheckpointMode::kSqrtBytes;
    built = make_training_schedule(r.factory, r.base.batch / k, one);
  }
  ET_ASSIGN_OR_RETURN(TrainingSchedule s, std::move(built));
  double passes = 0, updates = 0;
  for (const Node& n : s.graph.nodes) (n.phase == Phase::kUpdate ? updates : passes) += r.predict(s.graph, n);
  if (batch_statistics) {
    *batch_statistics = false;
    for (const Node& n : s.graph.nodes) *batch_statistics |= n.op == OpKind::kBatchNorm && n.attrs.norm.training;
  }
  *trainable = 0;
  for (size_t i = 0; i < s.graph.params.size(); ++i)
    if (s.trainable[i]) *trainable += s.graph.params[i].shape.numel();
  if (fixed_bytes) {
    auto floats = [](const Shape& sh) { return static_cast<uint64_t>((sh.numel() + 15) / 16 * 16); };
    uint64_t f = 0;
    std::vector<bool> seen(s.graph.values.size(), false);
    for (const Node& n : s.graph.nodes)
      for (ValueId v : n.inputs)
        if (v != kNoValue && !seen[static_cast<size_t>(v)] && s.graph.value(v).role == ValueRole::kOptimizerState) {
          seen[static_cast<size_t>(v)] = true;
          f += floats(s.graph.value(v).shape);
        }
    if (!r.base.external_parameters)
      for (const ParamSpec& p : s.graph.params) f += floats(p.shape);
    *fixed_bytes = f * sizeof(float);
  }
  if (accumulator_bytes) {
    // Micro-batches without momentum fusion accumulate every trainable parameter's gradient in
    // the arena until the update: all of them are live at once in the last micro-batch.
    uint64_t f = 0;
    if (!momentum_fusion_applies(config))
      for (size_t i = 0; i < s.graph.params.size(); ++i)
        if (s.trainable[i]) f += static_cast<uint64_t>(s.graph.params[i].shape.numel());
    *accumulator_bytes = f * sizeof(float);
  }
  return k * passes + updates;
}

// Running-stat candidates train only affine parameters, biases and the classifier, which move
// slowly at a whole network's learning rate: measured on the demo (norm-and-bias, 5 epochs, lr
// 0.01 requested), seeds 2/3/4 reached 44.8 / 46.5 / 63.3% at lr 0.01 (loss stuck near 1.4 in
// two) and 64.5 / 64.6 / 66.4% at twice that. Three times (2026-12-07, the demo's tight budget,
// micro 4, norm-and-bias, seeds 1-12): 68.6% against 67.0% at twice, higher in all 12 seeds;
// 3.5x gave 68.6% (seeds 1-6), 4x 68.1% with one seed at 63.0%. With AdamW at lr 1e-3 (micro 8,
// norm-and-bias), seeds 1-6: 62.0% at 3x against 60.2% at 2x, higher in every seed.
constexpr float kAffineLrScale = 3.0f;

// A configuration that drops the requested momentum must score this much better than the best
// one that keeps it: predicted step times a few percent apart (ReLU masks, the cheaper update)
// are no reason to change the recipe.
constexpr double kRecipeChangeMargin = 0.05;

// How many recipe changes (momentum dropped, norms on running statistics) a configuration makes
// against the request: each costs kRecipeChangeMargin of its score.
double recipe_factor(const TrainConfig& c, const OptimizerConfig& requested) {
  double f = 1.0;
  if (is_momentum_free_variant(c.optimizer, requested)) f *= 1.0 - kRecipeChangeMargin;
  if (c.norm_statistics == NormStatistics::kRunning) f *= 1.0 - kRecipeChangeMargin;
  return f;
}

// Whether a compression lever changes the schedule at all: the unfrozen, unsegmented, single
// micro-batch schedule with `lever` set (norm outputs as the request says) has a `marker` node.
// 1-bit ReLU masks (marker kPackMask): a ReLU/ReLU6 straight after a batch norm has its backward
// inside the norm's backward (runtime/fusion.h), which needs no mask; only the others (after
// residual adds, after convs with a bias) read one, and MobileNetV2 has none. Sparse storage
// (kPackSparse): only saved post-ReLU tensors that no batch norm produced pack (norm outputs are
// recomputed instead), and MobileNetV2 has none either: its sparse candidates would repeat the
// plain ones without the momentum fusion (which sparse storage turns off), a larger arena and a
// slower step (the 2026-12-07 demo chose one at its generous budget on a predicted tie: 7.8 ms
// measured against 5.8 for its medium choice).
Result<bool> lever_applies(const PlanRequest& r, bool CompressionConfig::*lever, OpKind marker) {
  TrainConfig c = r.base.config;
  c.compression = CompressionConfig{};
  c.compression.recompute_norm_outputs = r.base.config.compression.recompute_norm_outputs;
  c.compression.*lever = true;
  c.checkpoint = CheckpointConfig{};
  c.freeze = FreezeConfig{};  // every backward the candidates could have
  c.micro_batches = 1;
  ET_ASSIGN_OR_RETURN(TrainingSchedule s, make_training_schedule(r.factory, r.base.batch, c));
  for (const Node& n : s.graph.nodes)
    if (n.op == marker) return true;
  return false;
}

double score_of(PlanObjective o, int64_t trainable, double seconds) {
  switch (o) {
    case PlanObjective::kCapacityPerSecond: return static_cast<double>(trainable) / std::max(seconds, 1e-9);
    case PlanObjective::kFastest: return 1.0 / std::max(seconds, 1e-9);
    case PlanObjective::kMostAccurate: return static_cast<double>(trainable) + 1e-3 / std::max(seconds, 1e-9);
  }
  return 0;
}

}  // namespace

Result<Plan> plan_training(const PlanRequest& r) {
  auto t0 = std::chrono::steady_clock::now();
  if (!r.predict) return invalid_argument("plan_training needs a step-time predictor");
  if (r.budget_bytes == 0) return invalid_argument("the memory budget must be positive");
  if (r.base.batch <= 0) return invalid_argument("the batch must be positive");
  ET_ASSIGN_OR_RETURN(Graph forward, r.factory(r.base.batch, true));
  int layers = forward.layer_count;

  // The candidate dimensions.
  std::vector<int> micro;
  for (int k = 1; k <= std::min<int64_t>(r.max_micro_batches, r.base.batch); k *= 2)
    if (r.base.batch % k == 0) micro.push_back(k);
  // Micro-batch sizes a configuration may use: the minimum applies only where a batch norm
  // trains on batch statistics (frozen norms use running statistics).
  auto micro_for = [&](bool batch_statistics) {
    std::vector<int> m;
    for (int k : micro)
      if (k == 1 || !batch_statistics || r.base.batch / k >= r.min_micro_batch) m.push_back(k);
    return m;
  };
  std::vector<FreezeConfig> freezes(1);
  if (r.allow_freezing) {
    for (int pct : {25, 50, 75}) {
      FreezeConfig f;
      f.frozen_prefix_layers = layers * pct / 100;
      if (f.frozen_prefix_layers > 0) freezes.push_back(f);
    }
    for (FreezeMode m : {FreezeMode::kBiasOnly, FreezeMode::kNormOnly, FreezeMode::kNormAndBias, FreezeMode::kClassifierOnly}) {
      FreezeConfig f;
      f.mode = m;
      freezes.push_back(f);
    }
  }
  // Norm outputs recomputed or kept as the base config says (recomputed unless
  // --keep-norm-outputs): as fast or faster measured, so the search does not vary it.
  std::vector<CompressionConfig> compressions(1);
  compressions[0].recompute_norm_outputs = r.base.config.compression.recompute_norm_outputs;
  {
    CompressionConfig masks = compressions[0];
    ET_ASSIGN_OR_RETURN(masks.relu_masks, lever_applies(r, &CompressionConfig::relu_masks, OpKind::kPackMask));
    if (masks.relu_masks) compressions.push_back(masks);
    bool sparse_applies = false;
    if (r.activation_density > 0 && r.activation_density + r.capacity_margin < 0.9) {
      ET_ASSIGN_OR_RETURN(sparse_applies,
                          lever_applies(r, &CompressionConfig::sparse_activations, OpKind::kPackSparse));
    }
    if (sparse_applies) {
      CompressionConfig sparse = masks;
      sparse.sparse_activations = true;
      sparse.capacity = static_cast<float>(std::min(1.0, r.activation_density + r.capacity_margin));
      compressions.push_back(sparse);
    }
  }
  // Checkpointing: none, byte-balanced sqrt segments, and the cheapest recompute whose exact arena
  // fits what the budget leaves for it (the dynamic program of memory/checkpointing.h).
  std::vector<CheckpointConfig> checkpoints(3);
  checkpoints[1].mode = CheckpointMode::kSqrtBytes;
  checkpoints[2].mode = CheckpointMode::kBudget;
  if (!r.allow_fitted_checkpoints) checkpoints.pop_back();

  std::vector<OptimizerConfig> optimizers{r.base.config.optimizer};
  if (r.allow_momentum_free && r.base.config.optimizer.kind == OptimizerKind::kSgd &&
      r.base.config.optimizer.attrs.momentum > 0.0f)
    optimizers.push_back(momentum_free(r.base.config.optimizer));

  std::vector<NormStatistics> norm_modes{NormStatistics::kBatch};
  if (r.allow_running_norms) norm_modes.push_back(NormStatistics::kRunning);

  std::vector<Combo> combos;
  int over_budget = 0;  // combinations whose optimizer state alone is over the budget
  for (NormStatistics ns : norm_modes)
  for (const OptimizerConfig& o : optimizers)
  for (const FreezeConfig& f : freezes)
    for (const CheckpointConfig& c : checkpoints)
      for (const CompressionConfig& z : compressions) {
        // The budget mode plans one arena; a sparse fallback schedule would need its own.
        if (c.mode == CheckpointMode::kBudget && z.sparse_activations) continue;
        // Bias-, norm- and classifier-only training keep a negligible optimizer state: dropping
        // momentum there saves nothing worth a different recipe (and planning time).
        if (is_momentum_free_variant(o, r.base.config.optimizer) && f.mode != FreezeMode::kNone) continue;
        // Running-statistic norms buy micro-batches of a few images; without momentum, micro-
        // batches keep every gradient across the step (nothing to fuse them into), so that pair
        // only fits where one whole batch does, which the batch-statistics twin covers.
        if (is_momentum_free_variant(o, r.base.config.optimizer) && ns == NormStatistics::kRunning) continue;
        Combo combo;
        combo.config.norm_statistics = ns;
        combo.config.optimizer = o;
        if (ns == NormStatistics::kRunning) combo.config.optimizer.attrs.lr_scale *= kAffineLrScale;
        combo.config.freeze = f;
        combo.config.checkpoint = c;
        combo.config.compression = z;
        // Running statistics stay right only while the layers before each norm keep their
        // weights: training convolutions moves the activations away from the recalibrated
        // statistics, which no longer follow (measured: training everything on running statistics
        // reached 67.3% with one seed and collapsed to 10% with the other). So only the modes
        // that train affine parameters, biases and the classifier get running-stat candidates.
        if (ns == NormStatistics::kRunning && f.mode != FreezeMode::kBiasOnly && f.mode != FreezeMode::kNormOnly &&
            f.mode != FreezeMode::kNormAndBias)
          continue;
        if (ns == NormStatistics::kRunning) {
          // Which norms train depends on the freezing alone. Where none does (classifier-only),
          // every norm uses running statistics anyway: the batch-statistics combination is this one.
          bool batch_statistics = false;
          for (const Combo& twin : combos)
            if (twin.config.freeze.mode == f.mode && twin.config.freeze.frozen_prefix_layers == f.frozen_prefix_layers)
              batch_statistics |= twin.batch_statistics;
          if (!batch_statistics) continue;
        }
        int64_t trainable = 0;
        uint64_t fixed = 0;
        Result<double> secs =
            predict_seconds(r, combo.config, 1, &trainable, &combo.batch_statistics, &fixed, &combo.accumulator_bytes);
        if (r.between_candidates) r.between_candidates();
        if (!secs.is_ok()) continue;  // e.g. a freeze mode this model has nothing for
        // The optimizer state alone (with the reserve) is over the budget: no micro-batching,
        // checkpointing or compression can make this combination fit, so none is laid out.
        combo.fixed_bytes = fixed;
        if (fixed + r.reserve_bytes > r.budget_bytes) {
          ++over_budget;
          continue;
        }
        combo.best_score = score_of(r.objective, trainable, *secs) * recipe_factor(combo.config, r.base.config.optimizer);
        combos.push_back(combo);
      }
  if (combos.empty() && over_budget == 0) return invalid_argument("no configuration of this model can be trained");
  std::stable_sort(combos.begin(), combos.end(), [](const Combo& a, const Combo& b) { return a.best_score > b.best_score; });

  Plan plan;
  plan.smallest_peak = UINT64_MAX;
  // Whether the configurations evaluated now are ones the plan offers: the floor below is a lower
  // bound the enumeration may not offer (full training on running statistics without momentum),
  // so the error that names the smallest budget that works names the smallest offered one.
  bool offered = false;
  auto evaluate_one = [&](const TrainConfig& cfg_in, PlanCandidate* out) -> Status {
    TrainConfig cfg = cfg_in;
    if (cfg.checkpoint.mode == CheckpointMode::kBudget) {
      // The arena gets what the budget leaves after parameters, optimizer state, the evaluation
      // arena and the reserve (those do not depend on checkpointing: read them off a plain design).
      TrainConfig plain = cfg;
      plain.checkpoint = CheckpointConfig{};
      ET_ASSIGN_OR_RETURN(TrainerBlueprint p0, design_trainer(r.factory, candidate_options(r.base, plain)));
      int64_t fixed = static_cast<int64_t>(p0.memory.total() - p0.memory.train_arena_bytes + r.reserve_bytes);
      // The block adds alignment slack to the layout's size.
      int64_t arena_budget = static_cast<int64_t>(r.budget_bytes) - fixed - 2 * static_cast<int64_t>(kArenaSlackBytes);
      if (arena_budget <= 0) return out_of_memory("nothing left of the budget for the training arena");
      cfg.checkpoint.budget_bytes = arena_budget;
    }
    Result<TrainerBlueprint> designed = design_trainer(r.factory, candidate_options(r.base, cfg));
    // The fitted checkpoints' search (runtime/training_schedule.h) is a heuristic over a model of
    // the arena: at a looser arena budget it can stop short of sets it finds at a tighter one,
    // and a set it finds can leave the whole a little over (MobileNetV2 w0.5 28px b32, train all:
    // 10.5 MB planned a fitted-checkpoint candidate, 11.0 MB nothing). A set under a tighter
    // arena budget fits the looser one too (it only recomputes more): ask again for less, by
    // the excess, or by an eighth when nothing was found.
    for (int retry = 0; retry < 2 && cfg.checkpoint.mode == CheckpointMode::kBudget; ++retry) {
      int64_t cut = 0;
      if (designed.is_ok()) {
        const uint64_t peak = designed->memory.total() + r.reserve_bytes;
        if (peak <= r.budget_bytes) break;
        cut = static_cast<int64_t>(peak - r.budget_bytes) + static_cast<int64_t>(kArenaSlackBytes);
      } else {
        if (designed.status().code() != StatusCode::kOutOfMemory) break;
        cut = cfg.checkpoint.budget_bytes / 8;
      }
      cfg.checkpoint.budget_bytes -= cut;
      if (cfg.checkpoint.budget_bytes <= 0) break;
      designed = design_trainer(r.factory, candidate_options(r.base, cfg));
    }
    ET_ASSIGN_OR_RETURN(TrainerBlueprint b, std::move(designed));
    ++plan.evaluated;
    out->config = cfg;
    out->memory = b.memory;
    out->predicted_peak = b.memory.total() + r.reserve_bytes;
    out->label = describe_config(cfg, layers);
    if (offered && out->predicted_peak < plan.smallest_peak) {
      plan.smallest_peak = out->predicted_peak;
      plan.smallest_label = out->label;
    }
    return Status::ok();
  };
  auto evaluate = [&](const TrainConfig& cfg, PlanCandidate* out) -> Status {
    Status st = evaluate_one(cfg, out);  // its schedules are freed by now
    if (r.between_candidates) r.between_candidates();
    return st;
  };

  // The floor first: a least-memory configuration. If it does not fit, nothing does.
  // The most micro-batches that still build (tiny micro-batches can fail, e.g. a batch norm over a
  // single value per channel).
  auto least_micro = [&](TrainConfig cfg, bool batch_statistics, PlanCandidate* out) -> Status {
    Status built = invalid_argument("no micro-batch size builds");
    std::vector<int> ks = micro_for(batch_statistics);
    for (size_t i = ks.size(); i-- > 0 && !built.is_ok();) {
      cfg.micro_batches = ks[i];
      built = evaluate(cfg, out);
    }
    return built;
  };
  {
    TrainConfig floor_cfg;
    floor_cfg.optimizer = optimizers.back();  // the least optimizer state
    if (r.allow_freezing) floor_cfg.freeze.mode = FreezeMode::kClassifierOnly;
    floor_cfg.checkpoint.mode = CheckpointMode::kSqrtBytes;
    floor_cfg.compression = compressions.back();
    if (r.allow_running_norms) floor_cfg.norm_statistics = NormStatistics::kRunning;
    PlanCandidate floor;
    ET_RETURN_IF_ERROR(least_micro(floor_cfg, !r.allow_freezing && !r.allow_running_norms, &floor));
    if (floor.predicted_peak > r.budget_bytes) {
      // The floor is a bound the enumeration does not always offer (full training on running
      // statistics, or classifier-only without momentum): name the nearest configuration it does
      // offer, a budget that works (session 11: 10.66 MB named where 10.2 MB was the least).
      // Classifier-only trains no norm: the requested optimizer on batch statistics is the same
      // schedule as running ones; full training gets batch statistics and may drop momentum.
      TrainConfig offered_cfg = floor_cfg;
      offered_cfg.norm_statistics = NormStatistics::kBatch;
      offered_cfg.optimizer = r.allow_freezing ? r.base.config.optimizer : optimizers.back();
      PlanCandidate named = floor;
      if (offered_cfg.norm_statistics != floor_cfg.norm_statistics || offered_cfg.optimizer.kind != floor_cfg.optimizer.kind ||
          offered_cfg.optimizer.attrs.momentum != floor_cfg.optimizer.attrs.momentum) {
        PlanCandidate c;
        if (least_micro(offered_cfg, !r.allow_freezing, &c).is_ok()) named = c;
      }
      return out_of_memory("no configuration fits the budget of " + std::to_string(r.budget_bytes) +
                           " bytes: the smallest needs " + std::to_string(named.predicted_peak) + " bytes (" + named.label +
                           "); give at least that much");
    }
  }

  // Dropping momentum changes the recipe: never where full training with the requested optimizer
  // (no lever, one micro-batch) fits. (Each momentum-free combination also checks its own twin
  // below; this covers twins that fit only without their lever, e.g. fitted checkpoints that
  // cannot shrink a model whose peak lies in its first layer.)
  bool requested_plain_fits = false;
  if (optimizers.size() > 1) {
    TrainConfig plain_cfg;
    plain_cfg.optimizer = r.base.config.optimizer;
    PlanCandidate plain;
    requested_plain_fits = evaluate(plain_cfg, &plain).is_ok() && plain.predicted_peak <= r.budget_bytes;
  }

  std::vector<PlanCandidate> feasible;
  offered = true;
  for (const Combo& combo : combos) {
    if (requested_plain_fits && is_momentum_free_variant(combo.config.optimizer, r.base.config.optimizer)) continue;
    if (static_cast<int>(feasible.size()) >= r.keep && combo.best_score < feasible[static_cast<size_t>(r.keep) - 1].score) break;
    // Fewest micro-batches that fit: memory falls with k, so binary search over the list.
    std::vector<int> ks = micro_for(combo.batch_statistics);
    int lo = 0, hi = static_cast<int>(ks.size()) - 1, found = -1;
    PlanCandidate best_here;
    while (lo <= hi) {
      int mid = (lo + hi) / 2;
      TrainConfig cfg = combo.config;
      cfg.micro_batches = ks[static_cast<size_t>(mid)];
      if (cfg.micro_batches > 1 && combo.fixed_bytes + combo.accumulator_bytes + r.reserve_bytes > r.budget_bytes) {
        hi = mid - 1;  // the accumulated gradients alone are over: so is every k > 1
        continue;
      }
      PlanCandidate c;
      Status s = evaluate(cfg, &c);
      if (!s.is_ok() || c.predicted_peak <= r.budget_bytes) {
        // Fits, or does not build at this many micro-batches (too small): look at fewer.
        if (s.is_ok()) {
          found = mid;
          best_here = c;
        }
        hi = mid - 1;
      } else {
        lo = mid + 1;
      }
    }
    if (found < 0) continue;
    if (is_momentum_free_variant(combo.config.optimizer, r.base.config.optimizer)) {
      // Dropping momentum changes the recipe: only where the requested optimizer does not fit
      // the same configuration (its own combination covers it otherwise).
      TrainConfig twin = combo.config;
      twin.optimizer = r.base.config.optimizer;
      twin.micro_batches = ks[static_cast<size_t>(found)];
      PlanCandidate t;
      if (evaluate(twin, &t).is_ok() && t.predicted_peak <= r.budget_bytes) continue;
    }
    Result<double> secs = predict_seconds(r, best_here.config, ks[static_cast<size_t>(found)], &best_here.trainable_params);
    if (r.between_candidates) r.between_candidates();
    if (!secs.is_ok()) continue;
    best_here.predicted_step_seconds = *secs;
    best_here.score =
        score_of(r.objective, best_here.trainable_params, *secs) * recipe_factor(best_here.config, r.base.config.optimizer);
    feasible.push_back(best_here);
    std::stable_sort(feasible.begin(), feasible.end(), [](const PlanCandidate& a, const PlanCandidate& b) { return a.score > b.score; });
  }
  if (feasible.empty()) {
    if (plan.smallest_peak == UINT64_MAX)
      return out_of_memory("no configuration fits the budget of " + std::to_string(r.budget_bytes) +
                           " bytes, and none could be laid out to say how much more it takes");
    return out_of_memory("no configuration fits the budget of " + std::to_string(r.budget_bytes) +
                         " bytes; the smallest laid out needs " + std::to_string(plan.smallest_peak) + " bytes (" +
                         plan.smallest_label + "); give at least that much");
  }
  // A candidate that trains exactly as another one does (the memory levers change where values
  // live, not the arithmetic) and needs at least as much memory and time is of no use to anyone:
  // dropped. Ties keep the one with fewer levers (a fitted checkpoint search that needed no
  // boundary is its checkpoint-free twin), then the higher-ranked one. The demo's model at 8 MiB
  // listed "freeze 78/105 layers" at 6.9 MiB and 2.6 ms beside the same with "ckpt sqrt" at 7.0
  // MiB and 4.0 ms, and with "ckpt fitted" at 6.9 MiB and 2.6 ms; with --trials they took trial
  // slots.
  auto levers = [](const TrainConfig& c) {
    return (c.checkpoint.mode != CheckpointMode::kNone) + c.compression.relu_masks + c.compression.sparse_activations +
           !c.compression.recompute_norm_outputs + (c.micro_batches > 1);
  };
  auto dominated = [&](size_t ci) {
    const PlanCandidate& c = feasible[ci];
    for (size_t oi = 0; oi < feasible.size(); ++oi) {
      const PlanCandidate& o = feasible[oi];
      if (oi == ci || !same_training(o.config, c.config)) continue;
      if (o.predicted_peak > c.predicted_peak || o.predicted_step_seconds > c.predicted_step_seconds) continue;
      if (o.predicted_peak < c.predicted_peak || o.predicted_step_seconds < c.predicted_step_seconds) return true;
      const int lo = levers(o.config), lc = levers(c.config);
      if (lo < lc || (lo == lc && oi < ci)) return true;
    }
    return false;
  };
  std::vector<PlanCandidate> useful;
  for (size_t i = 0; i < feasible.size(); ++i)
    if (!dominated(i)) useful.push_back(feasible[i]);
  feasible = std::move(useful);
  if (static_cast<int>(feasible.size()) > r.keep) feasible.resize(static_cast<size_t>(r.keep));
  plan.ranked = std::move(feasible);
  plan.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return plan;
}

}  // namespace edgetrain
