// The m-hyperparameter search: which TrainConfig (micro-batches, freezing, checkpointing,
// activation compression) to train with under a memory budget. Every candidate's memory is the
// exact number its Trainer would allocate (runtime/trainer.h design_trainer: the same schedules,
// laid out, nothing allocated); its step time comes from a per-node predictor (the cost models
// of planner/cost_model.h, or a roofline estimate). Candidates over the budget are dropped; the
// rest are ranked by an objective.
//
// Search order keeps planning fast: memory falls as micro-batches grow and the predicted time
// of a configuration can only grow with them, so each (freezing, checkpointing, compression)
// combination is searched for its fewest feasible micro-batches, combinations in order of their
// best possible score, stopping once no remaining one can enter the top `keep`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/status.h"
#include "runtime/trainer.h"

namespace edgetrain {

enum class PlanObjective : uint8_t {
  kCapacityPerSecond,  // trainable parameters per predicted second of step time (default)
  kFastest,            // shortest predicted step
  kMostAccurate,       // most trainable parameters (then fastest)
};
const char* plan_objective_name(PlanObjective o);
Result<PlanObjective> parse_plan_objective(const std::string& s);

// Predicted seconds of one node of a training schedule.
using NodeTimePredictor = std::function<double(const Graph& schedule, const Node& node)>;
// A crude fallback when no profile exists: FLOPs at `gflops` plus bytes at `gbytes_per_s`.
NodeTimePredictor roofline_predictor(double gflops = 40.0, double gbytes_per_s = 8.0);

struct PlanRequest {
  GraphFactory factory;
  TrainerOptions base;            // batch (the effective batch), eval batch, threads, optimizer
  uint64_t budget_bytes = 0;      // everything the trainer allocates + reserve_bytes must fit
  uint64_t reserve_bytes = 0;     // process overhead beside the planned blocks (see retrain)
  PlanObjective objective = PlanObjective::kCapacityPerSecond;
  // Fraction of nonzeros in saved post-ReLU tensors, measured on a probe batch; sparse storage
  // is only considered when known (its slots are sized from it).
  double activation_density = -1.0;
  double capacity_margin = 0.10;  // slot capacity = density + margin
  bool allow_freezing = true;     // false: every candidate trains all parameters
  bool allow_fitted_checkpoints = true;  // checkpoint mode kBudget (the DP) with what is left
  // SGD with momentum: also consider momentum-free SGD (no optimizer state: one parameter-sized
  // buffer less) at learning rate x 1/(1 - momentum), the same step size once momentum has built
  // up. It only enters the plan where it buys something: a configuration identical but for the
  // optimizer is dropped in favour of the requested optimizer, and the others rank with their
  // score lowered by 5% (a recipe change must buy more than noise in the predicted step time).
  bool allow_momentum_free = true;
  // Also consider training with every batch norm on its running statistics (NormStatistics::
  // kRunning), for running statistics recalibrated on the new data first (retrain does:
  // runtime/norm_recalibration.h), with the freeze modes that keep every convolution's weights
  // (bias-only, norm-only, norm-and-bias: the statistics stay right). Micro-batching is then
  // exact, so these candidates may use micro-batches down to one image (min_micro_batch does not
  // apply; max_micro_batches does). Like momentum-free SGD it
  // changes the recipe: such a candidate ranks with its score lowered by 5%, trains at twice the
  // learning rate (few parameters move slowly; search.cc has the measurements), and one whose
  // norms all use running statistics anyway (classifier-only) is not considered twice.
  bool allow_running_norms = false;
  NodeTimePredictor predict;      // required
  // Called after each configuration is laid out (retrain passes malloc_trim): a search frees
  // every candidate's schedules, but the heap keeps the pages it touched, so without it the
  // resident memory of planning grows with the number of candidates (measured: 13.8 MiB after 141
  // MobileNetV2 candidates, 1.9 MiB live).
  std::function<void()> between_candidates;
  int keep = 8;                   // feasible candidates to return, best first
  // Planning lays out each candidate's unrolled schedule: 32 micro-batches of MobileNetV2 took
  // the heap of planning to 16.5 MiB (retrain, 8.1 MiB budget), more than the budget.
  int max_micro_batches = 32;
  // Smallest micro-batch considered: batch-norm statistics of a few images are noise, and a
  // model trained on them evaluates badly (measured here: micro-batches of 8 images took the
  // domain-shift retraining of MobileNetV2 at 32x32 from 57.6% to 38.6%, micro-batches of 16
  // images with some layers frozen reached 48%). Models without batch norm, and candidates whose
  // norms use running statistics, may go lower.
  int min_micro_batch = 16;
};

struct PlanCandidate {
  TrainConfig config;
  std::string label;              // "micro 4, freeze 0/52, ckpt sqrt, masks+sparse(0.60)"
  TrainerMemory memory;
  uint64_t predicted_peak = 0;    // memory.total() + reserve
  double predicted_step_seconds = 0;
  int64_t trainable_params = 0;
  double score = 0;
};

struct Plan {
  std::vector<PlanCandidate> ranked;  // feasible, best first; ranked[0] is the choice
  int evaluated = 0;                  // configurations whose memory was laid out exactly
  double seconds = 0;                 // planning time
  // The least memory any configuration the plan offers was laid out to need (when none fits: the
  // smallest budget that works).
  uint64_t smallest_peak = 0;
  std::string smallest_label;
};

// The trainer options a candidate runs with: `base` with `config`, and an evaluation batch of
// at most one micro-batch, halved further while its arena would exceed the training arena
// (evaluation shares the training arena's block and never sets its size).
TrainerOptions candidate_options(const TrainerOptions& base, const TrainConfig& config);

// Fails with kOutOfMemory naming the smallest budget that would work when nothing fits.
Result<Plan> plan_training(const PlanRequest& request);

std::string describe_config(const TrainConfig& c, int layer_count);

// The momentum-free variant of an SGD optimizer with momentum (see PlanRequest::allow_momentum_free).
OptimizerConfig momentum_free(const OptimizerConfig& o);
bool is_momentum_free_variant(const OptimizerConfig& candidate, const OptimizerConfig& requested);
// Whether two configurations train the same parameters with the same arithmetic (their memory
// levers aside: checkpointing, compression, and micro-batches where no norm trains on batch
// statistics). The plan drops a candidate that another such one matches or beats in both
// predicted peak and step time.
bool same_training(const TrainConfig& a, const TrainConfig& b);

}  // namespace edgetrain
