// Planning a retraining run for the CLI: measure the new data's activation density on a probe
// batch, search configurations under the budget (planner/search.h), optionally run short
// emulated trials of the best candidates, and report the choice.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/transforms.h"
#include "planner/search.h"
#include "runtime/norm_recalibration.h"
#include "runtime/json.h"
#include "tools/cli_common.h"

namespace edgetrain::cli {

// Process memory beside the blocks a Trainer plans: OpenBLAS packing buffers, thread stacks,
// allocator bookkeeping (measured 2.4-4.3 MiB for MobileNetV2 width 0.5 at 32x32; 4.5 MiB is kept).
constexpr uint64_t kDefaultReserveBytes = 9ull << 19;  // 4.5 MiB

// Fraction of nonzeros in the post-ReLU/ReLU6 outputs of the model (training-mode batch norm,
// weights from `weights` when non-empty) on up to 4 images of `data`. Small: it runs before the
// budgeted training and allocates only a forward pass at batch 4.
Result<double> probe_activation_density(const GraphFactory& factory, const std::string& weights,
                                        const Dataset& data, const Preprocess& pre);
// The same on a model whose parameters are loaded already (`params` is only read).
Result<double> probe_activation_density(const GraphFactory& factory, ParameterStore& params, const Dataset& data,
                                        const Preprocess& pre);

// One training step (forward, backward, update at learning rate 0) at the probe's batch on
// `params`, which are restored bit for bit afterwards. Run before the retraining baseline, it maps
// what any training step maps once per process (backward kernels' code pages, OpenBLAS's packing
// buffers for the weight-gradient GEMMs, worker stacks), as the probe does for the forward.
Status warm_up_training(const GraphFactory& factory, ParameterStore& params, const Dataset& data, const Preprocess& pre,
                        int threads);

// Re-estimates the batch norms' running statistics of `params` on every full batch of `data`
// (runtime/norm_recalibration.h: forward passes of at most `batch` images whose arena block stays
// within max_arena_bytes), and prints what it did on stderr.
Result<RecalibrationReport> recalibrate_norms(const GraphFactory& factory, ParameterStore& params, const Dataset& data,
                                              const Preprocess& pre, int64_t batch, size_t max_arena_bytes, int threads);

struct TrialOptions {
  int candidates = 3;     // the best candidates to try
  int steps = 8;          // training steps each
  float learning_rate = 0.01f;
  uint64_t seed = 7;
  // Re-estimate the norms' running statistics on `data` before each trial (as retrain does before
  // training; in place only), in an arena no larger than the candidate's block.
  bool recalibrate_norms = false;
};

struct TrialResult {
  int candidate = 0;      // index into Plan::ranked
  double first_loss = 0;  // mean of the first two steps
  double last_loss = 0;   // mean of the last two steps
  double seconds = 0;
  double loss_drop_per_second = 0;
};

// Trains each of the top candidates for a few steps from the same weights on a sample of
// `data` and ranks them by loss decrease per second (MPOptimizer's accuracy side). Each trial
// allocates exactly its candidate's planned memory, one at a time. With
// request.base.external_parameters the trials train `params` in place, and `reload` puts the
// starting weights back after each one (from the file: no copy is held in memory).
Result<std::vector<TrialResult>> run_trials(const PlanRequest& request, const Plan& plan, const std::string& weights,
                                            bool skip_classifier, const Dataset& data, const Preprocess& pre,
                                            const TrialOptions& options, ParameterStore* params = nullptr,
                                            const std::function<Status()>& reload = nullptr);

JsonValue candidate_json(const PlanCandidate& c);
std::string plan_table(const Plan& plan);

}  // namespace edgetrain::cli
