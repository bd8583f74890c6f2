#include "runtime/training_schedule.h"

#include <cstdint>
#include <optional>
#include <utility>

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

// Budget mode: the fewest recomputed bytes whose exact arena fits the budget.
//
// The dynamic program (cheapest_boundaries, memory/checkpointing.h) finds the cheapest boundaries
// under a modelled peak. The model leaves out arena fragmentation, the recompute's transient
// values and compression, so every answer is laid out exactly and only an exact fit counts. The
// search moves the model's limit: it starts at the budget, steps by the exact arena's miss until
// one answer fits and a looser one does not, then bisects between the two. If no answer fits, the
// byte-balanced segmentations of every segment count are tried too. An exact layout costs a few
// milliseconds (MobileNetV2), the dynamic program well under one.
namespace {

class BudgetSearch {
 public:
  BudgetSearch(const Graph& training, int micro_batches, const CompressionConfig& compression, size_t budget)
      : training_(training), micro_batches_(micro_batches), compression_(compression), budget_(budget) {}

  // The exact arena of a boundary set (laid out once per set); keeps the cheapest fit so far.
  Result<size_t> arena_of(const std::vector<int>& b) {
    for (const auto& [seen, arena] : tried_)
      if (seen == b) return arena;
    ET_ASSIGN_OR_RETURN(Graph g, finish_schedule(training_, b, micro_batches_, compression_));
    ET_ASSIGN_OR_RETURN(ArenaLayout layout, layout_arena(g));
    tried_.emplace_back(b, layout.arena_bytes);
    smallest_ = std::min(smallest_, layout.arena_bytes);
    if (layout.arena_bytes <= budget_) {
      size_t cost = recomputed_bytes(g);
      if (!found_ || cost < best_cost_ || (cost == best_cost_ && layout.arena_bytes < best_arena_)) {
        best_ = std::move(g);
        best_cost_ = cost;
        best_arena_ = layout.arena_bytes;
        found_ = true;
      }
    }
    return layout.arena_bytes;
  }

  Status search_model(const CheckpointChain& chain) {
    constexpr int kMaxSteps = 24;
    size_t min_step = std::max<size_t>(budget_ / 512, 64);
    // lo: the loosest limit whose answer fit (or that was too tight for the model); hi: the
    // tightest limit whose answer did not fit. 0 and SIZE_MAX: none seen yet.
    size_t lo = 0, hi = SIZE_MAX, limit = budget_, step = min_step;
    for (int i = 0; i < kMaxSteps; ++i) {
      std::optional<std::vector<int>> b = cheapest_boundaries(chain, limit);
      size_t arena = 0;
      if (b) {
        ET_ASSIGN_OR_RETURN(arena, arena_of(*b));
      }
      // No checkpointing is the plain schedule, which does not fit (the caller tried it first).
      bool tight = !b || (!b->empty() && arena <= budget_);
      if (tight) lo = limit; else hi = limit;
      if (lo != 0 && hi != SIZE_MAX) {
        if (hi - lo <= min_step) break;
        limit = lo + (hi - lo) / 2;
      } else if (hi == SIZE_MAX) {  // loosen: by the room the fit left, or faster while the model has no answer
        step = b ? std::max(budget_ - arena, min_step) : step * 2;
        limit += step;
      } else {  // tighten by the miss
        if (limit <= min_step) break;
        limit -= std::min(limit - 1, std::max(arena > budget_ ? arena - budget_ : 0, min_step));
      }
    }
    return Status::ok();
  }

  bool found() const { return found_; }
  size_t smallest() const { return smallest_; }
  Graph take_best() { return std::move(best_); }

 private:
  const Graph& training_;
  int micro_batches_;
  const CompressionConfig& compression_;
  size_t budget_;
  std::vector<std::pair<std::vector<int>, size_t>> tried_;  // boundary set, exact arena
  size_t smallest_ = SIZE_MAX;
  bool found_ = false;
  Graph best_;
  size_t best_cost_ = 0, best_arena_ = 0;
};

}  // namespace

Result<Graph> fit_checkpoints_to_budget(const Graph& training, int micro_batches, const CompressionConfig& compression,
                                        int64_t budget) {
  if (budget <= 0) return invalid_argument("checkpoint budget must be positive");
  BudgetSearch search(training, micro_batches, compression, static_cast<size_t>(budget));
  ET_ASSIGN_OR_RETURN(Graph plain, finish_schedule(training, {}, micro_batches, compression));
  ET_ASSIGN_OR_RETURN(ArenaLayout plain_layout, layout_arena(plain));
  if (static_cast<int64_t>(plain_layout.arena_bytes) <= budget) return plain;
  CheckpointChain chain = checkpoint_chain(training, plain, plain_layout);
  ET_RETURN_IF_ERROR(search.search_model(chain));
  if (!search.found()) {
    std::vector<CutPoint> cuts = checkpoint_cut_points(training);
    size_t saved = saved_activation_bytes(training);
    for (int m = 2; m <= static_cast<int>(cuts.size()) + 1; ++m)
      ET_RETURN_IF_ERROR(search.arena_of(byte_balanced_boundaries(cuts, saved, m)).status());
  }
  if (!search.found())
    return out_of_memory("no checkpointing fits the arena budget of " + std::to_string(budget) +
                         " bytes; the smallest arena checkpointing reaches is " +
                         std::to_string(std::min(search.smallest(), plain_layout.arena_bytes)) +
                         " bytes (add micro-batches, freezing or compression)");
  return search.take_best();
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
