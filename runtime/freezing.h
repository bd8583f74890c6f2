// Resolves a FreezeConfig against a graph's parameters: which ones train.
#pragma once

#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

// One flag per graph.params entry (buffers are always false). Modes:
//   none: everything except layers [0, frozen_prefix_layers), the frozen_suffix_layers layers
//         before the last one, and names matching frozen_patterns;
//   bias-only: conv/linear biases, batch-norm biases and the classifier (last layer), as TinyTL;
//   norm-only: batch-norm weights and biases only;
//   classifier-only: the last layer only;
//   norm-and-bias: bias-only plus the batch-norm weights (every norm's affine transform, every
//                  bias and the classifier: a fresh classifier needs training, norm-only lacks it).
// Patterns are shell globs on parameter names ("features.1*", "*.bias"). An error names a
// pattern that matches nothing or a configuration that leaves nothing to train.
Result<std::vector<bool>> resolve_trainable(const Graph& g, const FreezeConfig& freeze);

Result<FreezeMode> parse_freeze_mode(const std::string& s);
const char* freeze_mode_name(FreezeMode m);
const char* norm_statistics_name(NormStatistics n);  // "batch", "running"

}  // namespace edgetrain
