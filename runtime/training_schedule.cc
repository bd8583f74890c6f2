#include "runtime/training_schedule.h"

#include "memory/checkpointing.h"
#include "memory/micro_batching.h"
#include "runtime/autodiff.h"
#include "runtime/freezing.h"
#include "runtime/schedule.h"

namespace edgetrain {

Result<std::vector<int>> checkpoint_boundaries(const Graph& g, const CheckpointConfig& c) {
  switch (c.mode) {
    case CheckpointMode::kNone:
      return std::vector<int>{};
    case CheckpointMode::kManual:
      return c.boundaries;
    case CheckpointMode::kSqrtBytes:
      return byte_balanced_boundaries(checkpoint_cut_points(g), saved_activation_bytes(g), c.segments);
    case CheckpointMode::kBudget:
      return unsupported("checkpoint mode 'budget' is resolved by make_training_schedule");
  }
  return internal_error("unknown checkpoint mode");
}

Result<TrainingSchedule> make_training_schedule(const GraphFactory& factory, int64_t batch,
                                                const TrainConfig& config) {
  int k = config.micro_batches;
  if (k < 1) return invalid_argument("micro-batches must be >= 1, got " + std::to_string(k));
  if (batch % k != 0)
    return invalid_argument("batch " + std::to_string(batch) + " does not split into " + std::to_string(k) +
                            " equal micro-batches");
  ET_ASSIGN_OR_RETURN(Graph forward, factory(batch / k, /*training=*/true));
  TrainingSchedule s;
  ET_ASSIGN_OR_RETURN(s.trainable, resolve_trainable(forward, config.freeze));
  ET_ASSIGN_OR_RETURN(Graph g, build_training_graph(forward, s.trainable, config));
  ET_ASSIGN_OR_RETURN(std::vector<int> boundaries, checkpoint_boundaries(g, config.checkpoint));
  ET_ASSIGN_OR_RETURN(g, apply_checkpointing(g, boundaries));
  ET_ASSIGN_OR_RETURN(g, unroll_micro_batches(g, k));
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  s.graph = std::move(g);
  return s;
}

}  // namespace edgetrain
