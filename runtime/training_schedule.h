// The one pipeline from a model and a TrainConfig to the finalized training schedule:
//   forward graph (at the micro-batch size) -> freezing -> autodiff -> checkpointing ->
//   activation compression -> micro-batch unrolling -> update placement + workspaces.
// The Trainer runs what this returns; the planner simulates the same graph's memory without
// allocating anything, so both see the same bytes.
#pragma once

#include <functional>
#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

// Builds the model's forward graph for a batch size and mode (training or eval).
using GraphFactory = std::function<Result<Graph>(int64_t batch, bool training)>;

struct TrainingSchedule {
  Graph graph;                  // finalized: nodes in execution order, workspaces attached
  std::vector<bool> trainable;  // per forward.params entry
};

// The checkpoint boundaries (cut-point indices, memory/checkpointing.h) a config asks for on a
// training graph.
Result<std::vector<int>> checkpoint_boundaries(const Graph& training, const CheckpointConfig& c);

// `batch` is the whole batch; it must be divisible by config.micro_batches.
Result<TrainingSchedule> make_training_schedule(const GraphFactory& factory, int64_t batch,
                                                const TrainConfig& config);

}  // namespace edgetrain
