// Checkpoint boundaries for a memory budget: the dynamic program is optimal for its chain model
// (against brute force), the model matches real schedules (costs exactly, peaks to the byte on
// chains), and the budget mode picks the cheapest segmentation whose exact arena fits: the
// optimum over every boundary set on a small chain, never over budget, and never more
// recomputation than the byte-balanced search it replaced.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>

#include "memory/checkpointing.h"
#include "memory/liveness.h"
#include "models/model_zoo.h"
#include "runtime/autodiff.h"
#include "runtime/graph_builder.h"
#include "runtime/schedule.h"
#include "runtime/training_schedule.h"

namespace edgetrain {
namespace {

// ---- The dynamic program on synthetic chains -------------------------------------------------

// A chain of layers with cuts between them: layer i saves saved[i] bytes for backward and costs
// cost[i] to recompute; the value crossing cut j (after layer j) has cut_bytes[j] bytes and is
// live through the segment after it and all later ones.
CheckpointChain layered_chain(const std::vector<size_t>& saved, const std::vector<double>& cost,
                              const std::vector<size_t>& cut_bytes) {
  CheckpointChain c;
  c.cuts = static_cast<int>(cut_bytes.size());
  size_t segments = static_cast<size_t>(c.cuts + 1) * static_cast<size_t>(c.cuts + 1);
  c.kept.assign(segments, 0);
  c.live.assign(segments, 0);
  c.cost.assign(segments, 0);
  for (int a = -1; a < c.cuts; ++a)
    for (int b = a + 1; b <= c.cuts; ++b) {
      size_t live = a < 0 ? 0 : cut_bytes[static_cast<size_t>(a)];
      double recompute = 0;
      for (int layer = a + 1; layer <= b; ++layer) {
        live += saved[static_cast<size_t>(layer)];
        recompute += cost[static_cast<size_t>(layer)];
      }
      c.kept[c.segment(a, b)] = a < 0 ? 0 : cut_bytes[static_cast<size_t>(a)];
      c.live[c.segment(a, b)] = live;
      c.cost[c.segment(a, b)] = b == c.cuts ? 0 : recompute;
    }
  return c;
}

TEST(CheapestBoundaries, HandMadeChainHasTheKnownOptimum) {
  // Four layers, three cuts. Layers 0 and 1 save 100 bytes each, layer 1 is expensive to
  // recompute; cuts keep 5 bytes.
  CheckpointChain c = layered_chain({100, 100, 10, 10}, {1, 50, 1, 1}, {5, 5, 5});
  EXPECT_EQ(modelled_peak(c, {}), 220u);
  // Room for everything: no recomputation.
  EXPECT_EQ(cheapest_boundaries(c, 220), std::vector<int>{});
  // 150: recomputing the cheap layer 0 alone leaves max(100, 5 + 120) = 125.
  EXPECT_EQ(cheapest_boundaries(c, 150), std::vector<int>{0});
  EXPECT_EQ(modelled_peak(c, {0}), 125u);
  // 110: layer 1 must be recomputed too, on its own (with layer 2 its segment holds 115).
  EXPECT_EQ(cheapest_boundaries(c, 110), (std::vector<int>{0, 1}));
  EXPECT_EQ(modelled_cost(c, {0, 1}), 51.0);
  // Below 5 + 100 nothing fits: layer 1's segment holds at least that.
  EXPECT_EQ(cheapest_boundaries(c, 104), std::nullopt);
}

TEST(CheapestBoundaries, MatchBruteForceOnRandomChains) {
  std::mt19937 rng(7);
  int compared = 0, with_boundaries = 0;
  for (int trial = 0; trial < 200; ++trial) {
    int n = 1 + static_cast<int>(rng() % 9);
    CheckpointChain c;
    c.cuts = n;
    size_t segments = static_cast<size_t>(n + 1) * static_cast<size_t>(n + 1);
    c.kept.assign(segments, 0);
    c.live.assign(segments, 0);
    c.cost.assign(segments, 0);
    for (int a = -1; a < n; ++a)
      for (int b = a + 1; b <= n; ++b) {
        c.kept[c.segment(a, b)] = a < 0 || rng() % 4 == 0 ? 0 : rng() % 40;  // sometimes nothing is kept
        c.live[c.segment(a, b)] = 10 + rng() % 140;
        c.cost[c.segment(a, b)] = b == n ? 0 : static_cast<double>(1 + rng() % 100);
      }
    for (size_t limit : {60u, 120u, 180u, 250u, 400u}) {  // <= 512: the program's grain is one byte
      std::vector<double> fitting;  // costs of every set that fits, ascending
      for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        std::vector<int> b;
        for (int i = 0; i < n; ++i)
          if (mask & (1u << i)) b.push_back(i);
        if (modelled_peak(c, b) <= limit) fitting.push_back(modelled_cost(c, b));
      }
      std::sort(fitting.begin(), fitting.end());
      std::optional<std::vector<int>> dp = cheapest_boundaries(c, limit);
      ASSERT_EQ(dp.has_value(), !fitting.empty()) << "trial " << trial << " limit " << limit;
      if (!dp) continue;
      EXPECT_LE(modelled_peak(c, *dp), limit) << "trial " << trial;
      EXPECT_EQ(modelled_cost(c, *dp), fitting[0]) << "trial " << trial << " limit " << limit;
      EXPECT_TRUE(std::is_sorted(dp->begin(), dp->end()));
      ++compared;
      with_boundaries += dp->empty() ? 0 : 1;
      // The 5 cheapest: distinct sets that fit, with the 5 lowest costs.
      std::vector<std::vector<int>> five = cheapest_boundary_sets(c, limit, 5);
      ASSERT_EQ(five.size(), std::min<size_t>(5, fitting.size()));
      for (size_t i = 0; i < five.size(); ++i) {
        EXPECT_LE(modelled_peak(c, five[i]), limit);
        EXPECT_EQ(modelled_cost(c, five[i]), fitting[i]) << "trial " << trial << " limit " << limit << " rank " << i;
        for (size_t j = 0; j < i; ++j) EXPECT_NE(five[i], five[j]);
      }
      // Only sets cheaper than a bound.
      for (const std::vector<int>& b : cheapest_boundary_sets(c, limit, 5, fitting[0] + 20))
        EXPECT_LT(modelled_cost(c, b), fitting[0] + 20);
    }
  }
  EXPECT_GT(compared, 300);
  EXPECT_GT(with_boundaries, 60);  // the comparisons are not all "no checkpointing"
}

// ---- The model against real schedules ----------------------------------------------------------

// A conv/relu chain whose channel counts make segments of very different bytes.
Result<Graph> conv_chain(int64_t batch, bool training) {
  GraphBuilder b(batch, 8, 8, 3, training);
  ValueId x = b.input();
  // 1x1 convolutions need no workspace, so activations decide the arena.
  const int64_t channels[] = {16, 4, 32, 8, 24};
  for (int i = 0; i < 5; ++i) x = b.relu(b.conv2d(x, "conv" + std::to_string(i), channels[i], 1, 1, 0));
  b.softmax_cross_entropy(b.linear(b.global_avg_pool(x), "fc", 10));
  return b.finish();
}

Graph training_graph(const GraphFactory& factory, int64_t batch) {
  Result<Graph> fwd = factory(batch, true);
  EXPECT_TRUE(fwd.is_ok()) << fwd.status().to_string();
  std::vector<bool> all(fwd->params.size(), true);
  Result<Graph> g = build_training_graph(*fwd, all, TrainConfig{});
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  return *g;
}

struct Exact {
  size_t arena = 0;
  size_t live_peak = 0;  // the most bytes of arena values live at once
  size_t recomputed = 0;
};

// What the budget mode's pipeline gives for a boundary set (no compression, one micro-batch).
Exact exact(const Graph& training, const std::vector<int>& boundaries) {
  Result<Graph> g = apply_checkpointing(training, boundaries);
  EXPECT_TRUE(g.is_ok());
  EXPECT_TRUE(finalize_schedule(*g).is_ok());
  Result<ArenaLayout> layout = layout_arena(*g);
  EXPECT_TRUE(layout.is_ok());
  MemoryTimeline t = simulate_memory(*g, *layout);
  Exact e;
  e.arena = layout->arena_bytes;
  e.live_peak = t.peak_bytes - t.parameter_bytes;
  e.recomputed = recomputed_bytes(*g);
  return e;
}

CheckpointChain chain_of(const Graph& training) {
  Graph plain = training;
  EXPECT_TRUE(finalize_schedule(plain).is_ok());
  return checkpoint_chain(training, plain, *layout_arena(plain));
}

std::vector<int> subset(uint32_t mask, int n) {
  std::vector<int> b;
  for (int i = 0; i < n; ++i)
    if (mask & (1u << i)) b.push_back(i);
  return b;
}

TEST(CheckpointChainModel, MatchesEveryBoundarySetOfAConvChainExactly) {
  Graph g = training_graph(conv_chain, 2);
  CheckpointChain c = chain_of(g);
  ASSERT_GE(c.cuts, 6);
  ASSERT_LE(c.cuts, 12);
  for (uint32_t mask = 0; mask < (1u << c.cuts); ++mask) {
    std::vector<int> b = subset(mask, c.cuts);
    Exact e = exact(g, b);
    EXPECT_EQ(modelled_cost(c, b), static_cast<double>(e.recomputed)) << "mask " << mask;
    EXPECT_EQ(modelled_peak(c, b), e.live_peak) << "mask " << mask;
  }
  // Another cost: one per recomputed node.
  Graph plain = g;
  ASSERT_TRUE(finalize_schedule(plain).is_ok());
  CheckpointChain nodes = checkpoint_chain(g, plain, *layout_arena(plain), [](const Graph&, const Node&) { return 1.0; });
  for (uint32_t mask = 0; mask < (1u << c.cuts); mask += 7) {
    std::vector<int> b = subset(mask, c.cuts);
    Result<Graph> r = apply_checkpointing(g, b);
    ASSERT_TRUE(r.is_ok());
    double recompute_nodes = 0;
    for (const Node& n : r->nodes) recompute_nodes += n.phase == Phase::kRecompute ? 1 : 0;
    EXPECT_EQ(modelled_cost(nodes, b), recompute_nodes) << "mask " << mask;
    EXPECT_EQ(modelled_peak(nodes, b), modelled_peak(c, b));
  }
}

TEST(CheckpointChainModel, CostsAreExactAndPeaksCloseOnMobileNetV2) {
  GraphFactory mobilenet = [](int64_t batch, bool training) {
    ModelSpec s;
    s.arch = Architecture::kMobileNetV2;
    s.width_mult = 0.35f;
    s.dropout = 0.0f;
    return build_model(s, batch, training);
  };
  Graph g = training_graph(mobilenet, 4);
  CheckpointChain c = chain_of(g);
  std::mt19937 rng(3);
  int exact_peaks = 0;
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<int> b;
    for (int i = 0; i < c.cuts; ++i)
      if (rng() % 8 == 0) b.push_back(i);
    Exact e = exact(g, b);
    EXPECT_EQ(modelled_cost(c, b), static_cast<double>(e.recomputed));
    // The model leaves out values a recompute holds only briefly: it may be a little low.
    EXPECT_NEAR(static_cast<double>(modelled_peak(c, b)), static_cast<double>(e.live_peak), 0.02 * static_cast<double>(e.live_peak));
    exact_peaks += modelled_peak(c, b) == e.live_peak;
  }
  EXPECT_GE(exact_peaks, 36);
}

// ---- The budget mode ----------------------------------------------------------------------

Result<TrainingSchedule> budget_schedule(const GraphFactory& f, int64_t batch, int64_t budget, TrainConfig cfg = {}) {
  cfg.checkpoint.mode = CheckpointMode::kBudget;
  cfg.checkpoint.budget_bytes = budget;
  return make_training_schedule(f, batch, cfg);
}

TEST(CheckpointBudget, PicksTheOptimumOverEveryBoundarySetOfAConvChain) {
  Graph g = training_graph(conv_chain, 2);
  int n = static_cast<int>(checkpoint_cut_points(g).size());
  std::vector<Exact> all;
  for (uint32_t mask = 0; mask < (1u << n); ++mask) all.push_back(exact(g, subset(mask, n)));
  // Every exact arena is a budget where the optimum changes.
  std::vector<size_t> budgets;
  for (const Exact& e : all) budgets.push_back(e.arena);
  std::sort(budgets.begin(), budgets.end());
  budgets.erase(std::unique(budgets.begin(), budgets.end()), budgets.end());
  std::vector<size_t> optima;
  for (size_t budget : budgets) {
    size_t optimum = SIZE_MAX;
    for (const Exact& e : all)
      if (e.arena <= budget) optimum = std::min(optimum, e.recomputed);
    Result<TrainingSchedule> s = budget_schedule(conv_chain, 2, static_cast<int64_t>(budget));
    ASSERT_TRUE(s.is_ok()) << budget << ": " << s.status().to_string();
    EXPECT_LE(layout_arena(s->graph)->arena_bytes, budget);
    EXPECT_EQ(recomputed_bytes(s->graph), optimum) << "budget " << budget;
    optima.push_back(optimum);
  }
  std::sort(optima.begin(), optima.end());
  EXPECT_GE(std::unique(optima.begin(), optima.end()) - optima.begin(), 6) << "the chain should offer real choices";
  Result<TrainingSchedule> s = budget_schedule(conv_chain, 2, static_cast<int64_t>(budgets.front() - 1));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(s.status().message().find(std::to_string(budgets.front())), std::string::npos) << s.status().message();
}

GraphFactory model(Architecture arch, float width, int input) {
  return [=](int64_t batch, bool training) {
    ModelSpec s;
    s.arch = arch;
    s.width_mult = width;
    s.input_size = input;
    s.dropout = 0.0f;
    return build_model(s, batch, training);
  };
}

// The candidates of the search budget mode used before the dynamic program: byte-balanced
// segmentations of every segment count. It chose the fewest recomputed bytes whose arena fits.
std::vector<Exact> byte_balanced_candidates(const Graph& training) {
  std::vector<CutPoint> cuts = checkpoint_cut_points(training);
  size_t saved = saved_activation_bytes(training);
  std::vector<Exact> all;
  for (int m = 1; m <= static_cast<int>(cuts.size()) + 1; ++m)
    all.push_back(exact(training, m == 1 ? std::vector<int>{} : byte_balanced_boundaries(cuts, saved, m)));
  return all;
}

TEST(CheckpointBudget, NeverOverBudgetAndRecomputesNothingWhenThePlainScheduleFits) {
  GraphFactory f = model(Architecture::kMobileNetV2, 0.35f, 32);
  Result<TrainingSchedule> plain = make_training_schedule(f, 8, TrainConfig{});
  ASSERT_TRUE(plain.is_ok());
  size_t plain_arena = layout_arena(plain->graph)->arena_bytes;
  TrainConfig packed;
  packed.compression.relu_masks = true;
  packed.compression.sparse_activations = true;
  TrainConfig looped;
  looped.micro_batches = 2;
  int fitted = 0;
  // Fractions of each configuration's own arena without checkpointing (micro-batches keep every
  // parameter gradient for the whole step: with norm outputs recomputed, their arena is no
  // longer below the full batch's).
  for (const TrainConfig& cfg : {TrainConfig{}, packed, looped}) {
    Result<TrainingSchedule> own = make_training_schedule(f, 8, cfg);
    ASSERT_TRUE(own.is_ok());
    const size_t own_arena = layout_arena(own->graph)->arena_bytes;
    for (double fraction : {1.0, 0.8, 0.6, 0.4}) {
      int64_t budget = static_cast<int64_t>(static_cast<double>(own_arena) * fraction);
      Result<TrainingSchedule> s = budget_schedule(f, 8, budget, cfg);
      if (!s.is_ok()) {
        EXPECT_EQ(s.status().code(), StatusCode::kOutOfMemory) << s.status().to_string();
        continue;
      }
      ++fitted;
      EXPECT_LE(static_cast<int64_t>(layout_arena(s->graph)->arena_bytes), budget) << fraction;
      if (fraction == 1.0) {
        EXPECT_EQ(recomputed_bytes(s->graph), 0u) << "the plain schedule fits: nothing to recompute";
      }
    }
  }
  // Every configuration fits its own arena, and checkpointing reaches 0.8 and 0.6 of the plain
  // and packed ones (with norm outputs recomputed, 0.4 is beyond it: the saved activations left
  // are mostly the norms' inputs, which the last segment keeps).
  EXPECT_GE(fitted, 7);
  // A quarter of the plain arena is out of checkpointing's reach: refused, with what it reaches.
  Result<TrainingSchedule> s = budget_schedule(f, 8, static_cast<int64_t>(plain_arena / 4));
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(s.status().message().find("smallest arena checkpointing reaches"), std::string::npos);
}

struct Comparison {
  GraphFactory factory;
  int64_t batch;
  std::vector<double> fractions;  // of the plain arena
};

TEST(CheckpointBudget, RecomputesNoMoreThanTheByteBalancedSearch) {
  std::vector<Comparison> cases = {
      {model(Architecture::kMobileNetV2, 0.35f, 32), 8, {0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4}},
      // ResNet-18 at 32x32 is dominated by layer4's weight gradients: little room to move.
      {model(Architecture::kResNet18, 1.0f, 32), 4, {0.97, 0.95, 0.93, 0.91, 0.9}},
  };
  int strictly_better = 0, compared = 0;
  for (const Comparison& c : cases) {
    Graph g = training_graph(c.factory, c.batch);
    size_t plain_arena = exact(g, {}).arena;
    std::vector<Exact> candidates = byte_balanced_candidates(g);
    for (double fraction : c.fractions) {
      size_t budget = static_cast<size_t>(static_cast<double>(plain_arena) * fraction);
      size_t balanced = SIZE_MAX;
      for (const Exact& e : candidates)
        if (e.arena <= budget) balanced = std::min(balanced, e.recomputed);
      Result<TrainingSchedule> s = budget_schedule(c.factory, c.batch, static_cast<int64_t>(budget));
      if (balanced == SIZE_MAX) continue;  // nothing to compare with
      ASSERT_TRUE(s.is_ok()) << fraction << ": " << s.status().to_string();
      size_t dp = recomputed_bytes(s->graph);
      EXPECT_LE(dp, balanced) << "fraction " << fraction;
      EXPECT_LE(layout_arena(s->graph)->arena_bytes, budget);
      strictly_better += dp < balanced;
      ++compared;
    }
  }
  EXPECT_GE(compared, 10);
  EXPECT_GE(strictly_better, compared / 2);
}

}  // namespace
}  // namespace edgetrain
