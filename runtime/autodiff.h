// Reverse-mode autodiff: turns a model's forward graph into one training graph: forward nodes,
// backward nodes (from the gradient rules, only where a trainable parameter needs them) and one
// optimizer update node per trainable parameter. The result's node order is the schedule
// (runtime/schedule.h places the updates and workspaces).
#pragma once

#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

// trainable[i] says whether forward.params[i] trains (buffers never do). Frozen batch norms
// (weight and bias both frozen) switch to running statistics when
// freeze.frozen_norm_in_eval_mode, so they keep no saved statistics and update nothing; with
// config.norm_statistics == kRunning every batch norm does (trained ones too).
Result<Graph> build_training_graph(const Graph& forward, const std::vector<bool>& trainable,
                                   const TrainConfig& config);

}  // namespace edgetrain
