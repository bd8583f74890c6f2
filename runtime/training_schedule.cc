#include "runtime/training_schedule.h"

#include "memory/checkpointing.h"
#include "memory/compression.h"
#include "memory/liveness.h"
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

// Checkpointing, micro-batch unrolling and final placement of one candidate.
Result<Graph> finish_schedule(const Graph& training, const std::vector<int>& boundaries, int micro_batches,
                              const CompressionConfig& compression) {
  ET_ASSIGN_OR_RETURN(Graph g, apply_checkpointing(training, boundaries));
  ET_ASSIGN_OR_RETURN(g, apply_compression(g, compression));
  ET_ASSIGN_OR_RETURN(g, loop_micro_batches(g, micro_batches));
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  return g;
}

// Budget mode: among no checkpointing and byte-balanced segmentations of every segment count,
// the candidate with the fewest recomputed bytes whose exact arena fits the budget. Each
// candidate's arena comes from the real layout, so "fits" is exact, not estimated.
Result<Graph> fit_checkpoints_to_budget(const Graph& training, int micro_batches, const CompressionConfig& compression,
                                        int64_t budget) {
  if (budget <= 0) return invalid_argument("checkpoint budget must be positive");
  std::vector<CutPoint> cuts = checkpoint_cut_points(training);
  size_t saved = saved_activation_bytes(training);
  std::vector<std::vector<int>> candidates{{}};
  for (int m = 2; m <= static_cast<int>(cuts.size()) + 1; ++m) {
    std::vector<int> b = byte_balanced_boundaries(cuts, saved, m);
    if (b != candidates.back()) candidates.push_back(std::move(b));
  }
  Graph best;
  bool found = false;
  size_t best_cost = 0, smallest = SIZE_MAX;
  for (const std::vector<int>& b : candidates) {
    ET_ASSIGN_OR_RETURN(Graph g, finish_schedule(training, b, micro_batches, compression));
    ET_ASSIGN_OR_RETURN(ArenaLayout layout, layout_arena(g));
    smallest = std::min(smallest, layout.arena_bytes);
    if (static_cast<int64_t>(layout.arena_bytes) > budget) continue;
    size_t cost = recomputed_bytes(g);
    if (!found || cost < best_cost) {
      best = std::move(g);
      best_cost = cost;
      found = true;
    }
  }
  if (!found)
    return out_of_memory("no checkpointing fits the arena budget of " + std::to_string(budget) +
                         " bytes; the smallest arena checkpointing reaches is " + std::to_string(smallest) +
                         " bytes (add micro-batches, freezing or compression)");
  return best;
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
  if (config.checkpoint.mode == CheckpointMode::kBudget) {
    ET_ASSIGN_OR_RETURN(s.graph, fit_checkpoints_to_budget(g, k, config.compression, config.checkpoint.budget_bytes));
    return s;
  }
  ET_ASSIGN_OR_RETURN(std::vector<int> boundaries, checkpoint_boundaries(g, config.checkpoint));
  ET_ASSIGN_OR_RETURN(s.graph, finish_schedule(g, boundaries, k, config.compression));
  return s;
}

}  // namespace edgetrain
