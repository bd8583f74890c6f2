// TrainConfig: the memory-related hyperparameters (m-hyperparameters) and the optimizer that
// turn a model's forward graph into a training schedule. Every knob is a transformation of the
// graph or the schedule, never a special case in a kernel.
#pragma once

#include <string>
#include <vector>

#include "ops/op.h"

namespace edgetrain {

enum class OptimizerKind : uint8_t { kSgd, kAdamW };

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kSgd;
  OptimAttrs attrs;  // momentum, nesterov, weight decay, betas
};

// Which parameters train. Resolved against a graph by resolve_trainable() (runtime/freezing.h).
enum class FreezeMode : uint8_t {
  kNone,            // everything trains (except frozen_prefix_layers / frozen_patterns)
  kBiasOnly,        // only biases (conv/linear bias, batch-norm beta) and the classifier
  kNormOnly,        // only batch-norm weight and bias
  kClassifierOnly,  // only the last layer
};

struct FreezeConfig {
  FreezeMode mode = FreezeMode::kNone;
  int frozen_prefix_layers = 0;             // layers [0, k) are frozen
  std::vector<std::string> frozen_patterns; // parameter-name globs ("features.1*") that freeze
  bool frozen_norm_in_eval_mode = true;     // frozen batch norms use running statistics
};

struct TrainConfig {
  OptimizerConfig optimizer;
  FreezeConfig freeze;
  // Parameter gradients keep their memory for the whole step so they can be read after it
  // (tests against PyTorch); normally each dies right after its update.
  bool retain_parameter_gradients = false;
};

}  // namespace edgetrain
