#include "runtime/training_schedule.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>

#include "memory/checkpointing.h"
#include "memory/compression.h"
#include "memory/liveness.h"
#include "memory/micro_batching.h"
#include "ops/batch_norm.h"
#include "optimizer/momentum_fusion.h"
#include "runtime/autodiff.h"
#include "runtime/freezing.h"
#include "runtime/fusion.h"
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

// Checkpointing, compression, micro-batch looping, momentum fusion and final placement of one
// candidate.
Result<Graph> finish_schedule(const Graph& training, const std::vector<int>& boundaries, int micro_batches,
                              const CompressionConfig& compression, bool fuse_momentum) {
  ET_ASSIGN_OR_RETURN(Graph g, apply_checkpointing(training, boundaries));
  ET_ASSIGN_OR_RETURN(g, apply_compression(g, compression));
  ET_ASSIGN_OR_RETURN(g, loop_micro_batches(g, micro_batches));
  if (fuse_momentum) ET_RETURN_IF_ERROR(fuse_gradients_into_momentum(g));
  ET_RETURN_IF_ERROR(finalize_schedule(g));
  return g;
}

// Budget mode: the fewest recomputed bytes whose exact arena fits the budget.
//
// The dynamic program (memory/checkpointing.h) finds the cheapest boundaries under a modelled
// peak read off the plain schedule. The model leaves out arena fragmentation and short-lived
// recompute values, so every answer is laid out exactly and only an exact fit counts
// (BudgetSearch). If no answer fits, the byte-balanced segmentations of every segment count are
// tried too. An exact layout of MobileNetV2 costs about 2 ms, one dynamic program under 2 ms; a
// whole search typically 5-25 ms.
namespace {

class BudgetSearch {
 public:
  BudgetSearch(const Graph& training, int micro_batches, const CompressionConfig& compression, bool fuse_momentum,
               int64_t budget, size_t plain_arena)
      : training_(training), micro_batches_(micro_batches), compression_(compression), fuse_momentum_(fuse_momentum),
        budget_(budget), plain_arena_(plain_arena) {}

  // This many sets in a row that shrank the arena no further than earlier ones (none over the
  // budget fit) end the search: the next ones would not either (measured: a MobileNetV2 with a fused frozen prefix laid out 87 sets of one
  // and the same arena, and the heap they churned through put planning over a 6.5 MiB budget).
  static constexpr int kMaxUnchanged = 4;
  // Only while nothing fits: once a set fits, the cheaper ones are worth verifying (at most 64).
  bool futile() const { return !found_ && unchanged_ >= kMaxUnchanged; }

  // The exact arena of a boundary set (laid out once per set); keeps the cheapest fit so far.
  Result<size_t> arena_of(const std::vector<int>& b) {
    for (const auto& [seen, arena] : tried_)
      if (seen == b) return arena;
    ET_ASSIGN_OR_RETURN(Graph g, finish_schedule(training_, b, micro_batches_, compression_, fuse_momentum_));
    ET_ASSIGN_OR_RETURN(ArenaLayout layout, layout_arena(g));
    tried_.emplace_back(b, layout.arena_bytes);
    // Sets that shrink the arena no further than one laid out before: its peak has moved where
    // checkpointing frees nothing more (a frozen region's forward, buffers, a workspace).
    const bool over = static_cast<int64_t>(layout.arena_bytes) > budget_;
    unchanged_ = over && layout.arena_bytes >= std::min(smallest_, plain_arena_) ? unchanged_ + 1 : 0;
    smallest_ = std::min(smallest_, layout.arena_bytes);
    if (static_cast<int64_t>(layout.arena_bytes) <= budget_) {
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

  // The model errs mostly low (arena fragmentation, a recompute's short-lived values), so a set
  // it puts over the budget rarely fits; with compression it can err high (it counts kept
  // boundaries dense where the schedule packs them). The search calibrates the limit it gives
  // the dynamic program by the least error it has seen, e = min(exact arena - modelled peak):
  //  - limit = budget first; after an answer b misses, the lower of modelled_peak(b) - 1 (the
  //    cheapest set the model ranks below b: fragmentation makes near misses, and the next step
  //    usually fits) and budget - e;
  //  - while every answer fits and budget - e is looser than the last limit, loosen to it;
  //  - once both a fit and a miss are known, bisect between their limits;
  //  - then verify, in order of cost, the cheapest sets under budget - e that cost less than the
  //    fit found (at most 64): near misses can hide a cheaper fit behind them.
  Status search_model(const CheckpointChain& chain) {
    constexpr int kMaxSteps = 24;
    int64_t min_step = std::max<int64_t>(budget_ / 1024, 64);
    // lo: the loosest limit whose answer fit (or that the model could not meet at all); hi: the
    // tightest whose answer did not fit (an answer b answers every limit from modelled_peak(b) up).
    int64_t lo = 0, hi = INT64_MAX, limit = budget_;
    for (int i = 0; i < kMaxSteps; ++i) {
      std::optional<std::vector<int>> b = cheapest_boundaries(chain, static_cast<size_t>(limit));
      if (i == 0 && !b) unattainable_ = true;  // no boundary set's modelled peak meets the budget
      bool fits = !b;  // too tight for the model: counts as the tight side
      if (b) {
        ET_ASSIGN_OR_RETURN(fits, verify(chain, *b));
        if (!fits) hi = std::min(hi, static_cast<int64_t>(modelled_peak(chain, *b)));
        if (futile()) return Status::ok();
      }
      if (fits) lo = std::max(lo, limit);
      if (hi <= lo + 1) break;  // nothing lies between
      if (lo != 0 && hi != INT64_MAX) {
        if (hi - lo <= min_step) break;
        limit = lo + (hi - lo) / 2;
      } else if (hi == INT64_MAX) {
        if (!b || calibrated_limit() < limit + min_step) break;  // nothing looser worth a try
        limit = calibrated_limit();
      } else {
        limit = std::min(hi - 1, calibrated_limit());
        if (limit <= 0) break;
      }
    }
    double below = found_ ? static_cast<double>(best_cost_) : INFINITY;
    int64_t limit2 = calibrated_limit();
    for (int count : {16, 64}) {  // 64 only if all 16 miss (those are cached)
      if (limit2 <= 0) break;
      std::vector<std::vector<int>> sets = cheapest_boundary_sets(chain, static_cast<size_t>(limit2), count, below);
      for (const std::vector<int>& b : sets) {
        ET_ASSIGN_OR_RETURN(bool fits, verify(chain, b));
        if (fits || futile()) return Status::ok();
      }
      if (sets.size() < static_cast<size_t>(count)) break;
    }
    return Status::ok();
  }

  // Whether a set the dynamic program proposes fits exactly; notes the model's error.
  Result<bool> verify(const CheckpointChain& chain, const std::vector<int>& b) {
    if (b.empty()) return false;  // no checkpointing: the plain schedule, which the caller found too big
    ET_ASSIGN_OR_RETURN(size_t arena, arena_of(b));
    min_error_ = std::min(min_error_, static_cast<int64_t>(arena) - static_cast<int64_t>(modelled_peak(chain, b)));
    return static_cast<int64_t>(arena) <= budget_;
  }

  // The budget less the model's least error so far: what a set's modelled peak must stay under.
  int64_t calibrated_limit() const { return min_error_ == INT64_MAX ? budget_ : budget_ - min_error_; }

  bool found() const { return found_; }
  // The model put every boundary set over the budget itself (and no set was laid out).
  bool model_unattainable() const { return unattainable_ && tried_.empty(); }
  size_t smallest() const { return smallest_; }
  Graph take_best() { return std::move(best_); }

 private:
  const Graph& training_;
  int micro_batches_;
  const CompressionConfig& compression_;
  bool fuse_momentum_;
  int64_t budget_;
  size_t plain_arena_;
  int unchanged_ = 0;  // consecutive sets whose arena was the plain schedule's
  std::vector<std::pair<std::vector<int>, size_t>> tried_;  // boundary set, exact arena
  size_t smallest_ = SIZE_MAX;
  int64_t min_error_ = INT64_MAX;  // the least (exact arena - modelled peak) seen; INT64_MAX: none yet
  bool found_ = false;
  bool unattainable_ = false;
  Graph best_;
  size_t best_cost_ = 0, best_arena_ = 0;
};

}  // namespace

Result<Graph> fit_checkpoints_to_budget(const Graph& training, int micro_batches, const CompressionConfig& compression,
                                        bool fuse_momentum, int64_t budget) {
  if (budget <= 0) return invalid_argument("checkpoint budget must be positive");
  ET_ASSIGN_OR_RETURN(Graph plain, finish_schedule(training, {}, micro_batches, compression, fuse_momentum));
  ET_ASSIGN_OR_RETURN(ArenaLayout plain_layout, layout_arena(plain));
  if (static_cast<int64_t>(plain_layout.arena_bytes) <= budget) return plain;
  BudgetSearch search(training, micro_batches, compression, fuse_momentum, budget, plain_layout.arena_bytes);
  CheckpointChain chain;
  if (compression.sparse_activations || compression.relu_masks) {
    ET_ASSIGN_OR_RETURN(Graph dense, finish_schedule(training, {}, micro_batches, CompressionConfig{}, fuse_momentum));
    ET_ASSIGN_OR_RETURN(ArenaLayout dense_layout, layout_arena(dense));
    chain = checkpoint_chain(training, plain, plain_layout, dense, dense_layout);
  } else {
    chain = checkpoint_chain(training, plain, plain_layout);
  }
  ET_RETURN_IF_ERROR(search.search_model(chain));
  // Without compression the model only errs low (it leaves out fragmentation and short-lived
  // recompute values): when no boundary set's modelled peak meets the budget, no exact arena
  // does either, and the byte-balanced sets (one exact layout per segment count, most of a
  // failing search's time) are not tried. With compression it can err high: they are.
  bool hopeless = search.model_unattainable() && !compression.sparse_activations;  // masks: see the README
  if (!search.found() && !hopeless && !search.futile()) {
    std::vector<CutPoint> cuts = checkpoint_cut_points(training);
    size_t saved = saved_activation_bytes(training);
    // Only those the model, calibrated by the sets laid out so far, does not already put over.
    for (int m = 2; m <= static_cast<int>(cuts.size()) + 1; ++m) {
      std::vector<int> b = byte_balanced_boundaries(cuts, saved, m);
      if (static_cast<int64_t>(modelled_peak(chain, b)) > search.calibrated_limit()) continue;
      ET_RETURN_IF_ERROR(search.arena_of(b).status());
    }
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
  // Batch statistics need more than one value per channel (the graph builder leaves this to the
  // schedule, where each norm's mode is known).
  for (const Node& n : g.nodes) {
    if (n.op != OpKind::kBatchNorm || !n.attrs.norm.training) continue;
    const Value& x = g.value(n.inputs[0]);
    Result<Shape> ok = batch_norm_output_shape(x.shape, g.value(n.inputs[1]).shape, n.attrs.norm);
    if (!ok.is_ok())
      return invalid_argument("batch norm '" + n.layer + "' at micro-batch " + std::to_string(batch / k) + ": " +
                              ok.status().message() + " (train it on running statistics, or use larger micro-batches)");
  }
  fuse_ops(g);  // before checkpointing and compression, which see the fused graph
  if (config.checkpoint.mode == CheckpointMode::kBudget) {
    ET_ASSIGN_OR_RETURN(s.graph, fit_checkpoints_to_budget(g, k, config.compression, momentum_fusion_applies(config),
                                                           config.checkpoint.budget_bytes));
    return s;
  }
  ET_ASSIGN_OR_RETURN(std::vector<int> boundaries, checkpoint_boundaries(g, config.checkpoint));
  ET_ASSIGN_OR_RETURN(s.graph, finish_schedule(g, boundaries, k, config.compression, momentum_fusion_applies(config)));
  return s;
}

}  // namespace edgetrain
