// Every memory lever, alone and combined, against the plain schedule: identical losses and
// weights after 3 SGD steps (exactly for checkpointing and compression; within 1e-5 relative
// for micro-batching, whose summation order differs), and a measured arena high-water mark equal
// to the planned one, byte for byte.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "memory/checkpointing.h"
#include "memory/liveness.h"
#include "memory/norm_recompute.h"
#include "runtime/autodiff.h"
#include "models/model_zoo.h"
#include "ops/conv2d_winograd.h"
#include "runtime/parameter_store.h"
#include "runtime/trainer.h"

namespace edgetrain {
namespace {

struct Case {
  Architecture arch;
  int input;
  float width;
  int64_t batch;
};

GraphFactory factory(const Case& c) {
  return [c](int64_t b, bool training) {
    ModelSpec s;
    s.arch = c.arch;
    s.input_size = c.input;
    s.width_mult = c.width;
    s.dropout = 0.0f;  // masks depend on the micro-batch split: compare without them
    return build_model(s, b, training);
  };
}

struct Outcome {
  std::vector<float> losses;
  std::vector<std::vector<float>> params;
  size_t planned_high_water = 0;
  size_t measured_high_water = 0;
  size_t arena = 0;
  size_t recomputed = 0;
  int norm_recomputes = 0;
};

Outcome train3(const Case& c, TrainConfig cfg, float lr = 0.05f) {
  cfg.optimizer.attrs.momentum = 0.9f;
  cfg.optimizer.attrs.weight_decay = 1e-4f;
  TrainerOptions o;
  o.batch = c.batch;
  o.config = cfg;
  Result<std::unique_ptr<Trainer>> tr = Trainer::create(factory(c), o);
  EXPECT_TRUE(tr.is_ok()) << tr.status().to_string();
  Outcome out;
  if (!tr.is_ok()) return out;
  Trainer& t = **tr;
  for (int step = 0; step < 3; ++step) {
    Rng rng(100 + step);
    for (int64_t i = 0; i < t.input_shape().numel(); ++i) t.train_images()[i] = static_cast<float>(rng.normal());
    for (int64_t i = 0; i < c.batch; ++i) t.train_labels()[i] = static_cast<int32_t>(rng.below(10));
    Result<StepResult> r = t.train_step(lr);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    out.losses.push_back(r.is_ok() ? r->loss : NAN);
  }
  for (int i = 0; i < t.params().size(); ++i)
    out.params.emplace_back(t.params().data(i), t.params().data(i) + t.params().spec(i).shape.numel());
  out.planned_high_water = t.train_executor().layout().high_water_bytes;
  out.measured_high_water = t.train_executor().measured_high_water();
  out.arena = t.train_executor().arena_bytes();
  out.recomputed = recomputed_bytes(t.train_executor().graph());
  out.norm_recomputes = count_norm_recomputes(t.train_executor().graph());
  return out;
}

double max_rel(const Outcome& a, const Outcome& b) {
  double worst = 0;
  for (size_t i = 0; i < a.losses.size(); ++i)
    worst = std::max(worst, std::fabs(double(a.losses[i]) - b.losses[i]) / std::max(1.0, std::fabs(double(b.losses[i]))));
  // Per tensor: the largest difference relative to the tensor's largest value (elements near zero
  // would otherwise turn rounding of a different summation order into large ratios).
  for (size_t p = 0; p < a.params.size(); ++p) {
    double diff = 0, scale = 1e-30;
    for (size_t k = 0; k < a.params[p].size(); ++k) {
      diff = std::max(diff, std::fabs(double(a.params[p][k]) - b.params[p][k]));
      scale = std::max(scale, std::fabs(double(b.params[p][k])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

// Micro-batches change batch-norm statistics; to compare gradients exactly the norms are frozen
// (running statistics) in both runs.
FreezeConfig freeze_norms(const Case& c) {
  Result<Graph> g = factory(c)(c.batch, true);
  FreezeConfig f;
  for (const ParamSpec& p : g->params)
    if (p.kind == ParamKind::kNormWeight || p.kind == ParamKind::kNormBias) f.frozen_patterns.push_back(p.name);
  return f;
}

const Case kSmall{Architecture::kSmallCnn, 16, 1.0f, 8};
const Case kMobileNet{Architecture::kMobileNetV2, 32, 0.35f, 8};
const Case kResNet{Architecture::kResNet18, 32, 1.0f, 4};

class Levers : public ::testing::TestWithParam<Case> {};

TEST_P(Levers, PlainScheduleArenaIsMeasuredExactly) {
  Outcome a = train3(GetParam(), TrainConfig{});
  EXPECT_EQ(a.measured_high_water, a.planned_high_water);
  EXPECT_LE(a.planned_high_water, a.arena);
}

TEST_P(Levers, CheckpointingGivesIdenticalTrainingAndLessMemory) {
  TrainConfig plain;
  TrainConfig ck;
  ck.checkpoint.mode = CheckpointMode::kSqrtBytes;
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), ck);
  EXPECT_EQ(max_rel(b, a), 0.0);
  EXPECT_GT(b.recomputed, 0u);
  EXPECT_LE(b.arena, a.arena);
  // The small CNN peaks in its first layer's backward (its max pool keeps only an argmax for the
  // layers after it), which no checkpoint changes; the other models peak later.
  if (GetParam().arch != Architecture::kSmallCnn) {
    EXPECT_LT(b.arena, a.arena);
  }
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
}

TEST_P(Levers, MicroBatchesAccumulateToTheFullBatchGradient) {
  TrainConfig plain;
  plain.freeze = freeze_norms(GetParam());
  TrainConfig mb = plain;
  mb.micro_batches = 2;
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), mb);
  EXPECT_LT(max_rel(b, a), 1e-5);
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
}

TEST_P(Levers, CheckpointingWithMicroBatches) {
  TrainConfig plain;
  plain.freeze = freeze_norms(GetParam());
  TrainConfig both = plain;
  both.micro_batches = 2;
  both.checkpoint.mode = CheckpointMode::kSqrtBytes;
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), both);
  EXPECT_LT(max_rel(b, a), 1e-5);
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
}

INSTANTIATE_TEST_SUITE_P(Models, Levers, ::testing::Values(kSmall, kMobileNet, kResNet),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return i.param.arch == Architecture::kSmallCnn      ? std::string("SmallCnn")
                                  : i.param.arch == Architecture::kMobileNetV2 ? std::string("MobileNetV2")
                                                                               : std::string("ResNet18");
                         });

// Not a memory lever, but the same whole-training comparison: ResNet-18 with its 3x3 stride-1
// convs on Winograd F(4x4, 3x3) (forward and backward data, ops/conv2d_winograd.h) trains like
// ResNet-18 on im2col, within float rounding of a different summation. Norms frozen, as for
// micro-batches: batch statistics over 4 images at layer4's 1x1 pixels turn 1e-6 differences of
// the input into 1e-4 differences of the gradients after one step, 0.5 after three.
TEST(Winograd, ResNet18TrainsLikeIm2col) {
  TrainConfig cfg;
  cfg.freeze = freeze_norms(kResNet);
  set_winograd_policy(WinogradPolicy::kOff);
  const Outcome im2col = train3(kResNet, cfg);
  set_winograd_policy(WinogradPolicy::kAuto);
  const Outcome winograd = train3(kResNet, cfg);
  ASSERT_EQ(winograd.params.size(), im2col.params.size());
  const double e = max_rel(winograd, im2col);
  std::printf("ResNet-18 32x32 b4, 3 SGD steps: Winograd vs im2col, worst rel difference %.2e\n", e);
  EXPECT_LT(e, 1e-5);
  EXPECT_GT(e, 0.0) << "Winograd did not run";
  EXPECT_EQ(winograd.measured_high_water, winograd.planned_high_water);
}

TEST(Checkpointing, CutPointsOfMobileNetV2AreOrderedSingleCrossings) {
  Result<Graph> fwd = factory(kMobileNet)(2, true);
  ASSERT_TRUE(fwd.is_ok());
  std::vector<bool> all(fwd->params.size(), true);
  Result<Graph> g = build_training_graph(*fwd, all, TrainConfig{});
  ASSERT_TRUE(g.is_ok());
  std::vector<CutPoint> cuts = checkpoint_cut_points(*g);
  // 17 inverted-residual blocks: at least one cut between consecutive blocks.
  EXPECT_GE(cuts.size(), 17u);
  for (size_t i = 1; i < cuts.size(); ++i) {
    EXPECT_GT(cuts[i].forward_position, cuts[i - 1].forward_position);
    EXPECT_GE(cuts[i].saved_bytes, cuts[i - 1].saved_bytes);
  }
  for (const CutPoint& c : cuts) EXPECT_EQ(g->value(c.value).role, ValueRole::kActivation);
  // A residual block's inner values are not cut points: the skip connection crosses them.
  for (const CutPoint& c : cuts) EXPECT_EQ(g->value(c.value).name.find("features.3.conv.1"), std::string::npos);
  EXPECT_LE(cuts.back().saved_bytes, saved_activation_bytes(*g));
}

TEST(Checkpointing, RejectsBoundariesThatAreNotCutPoints) {
  TrainConfig cfg;
  cfg.checkpoint.mode = CheckpointMode::kManual;
  cfg.checkpoint.boundaries = {100000};
  Result<TrainingSchedule> s = make_training_schedule(factory(kSmall), 4, cfg);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("not a cut point"), std::string::npos);
}

}  // namespace
}  // namespace edgetrain

namespace edgetrain {
namespace {

TEST(Checkpointing, BudgetModeFitsTheBudgetOrSaysWhatWouldFit) {
  TrainConfig plain;
  Result<TrainingSchedule> p = make_training_schedule(factory(kMobileNet), 8, plain);
  ASSERT_TRUE(p.is_ok());
  size_t plain_arena = layout_arena(p->graph)->arena_bytes;
  for (double fraction : {1.0, 0.8, 0.6}) {
    TrainConfig c;
    c.checkpoint.mode = CheckpointMode::kBudget;
    c.checkpoint.budget_bytes = static_cast<int64_t>(plain_arena * fraction);
    Result<TrainingSchedule> s = make_training_schedule(factory(kMobileNet), 8, c);
    if (!s.is_ok()) {
      EXPECT_EQ(s.status().code(), StatusCode::kOutOfMemory);
      EXPECT_NE(s.status().message().find("smallest arena"), std::string::npos);
      continue;
    }
    size_t arena = layout_arena(s->graph)->arena_bytes;
    EXPECT_LE(static_cast<int64_t>(arena), c.checkpoint.budget_bytes) << fraction;
    if (fraction == 1.0) {
      EXPECT_EQ(recomputed_bytes(s->graph), 0u) << "no recompute needed at the plain arena";
    }
  }
  TrainConfig tiny;
  tiny.checkpoint.mode = CheckpointMode::kBudget;
  tiny.checkpoint.budget_bytes = 1000;
  Result<TrainingSchedule> s = make_training_schedule(factory(kMobileNet), 8, tiny);
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kOutOfMemory);
}

}  // namespace
}  // namespace edgetrain

namespace edgetrain {
namespace {

class Compression : public ::testing::TestWithParam<Case> {};

TEST_P(Compression, MasksAndSparseStorageGiveIdenticalTrainingAndSmallerSavedActivations) {
  TrainConfig plain;
  plain.fuse_momentum = false;  // sparse storage turns the fusion off: compare the same update order
  TrainConfig packed;
  packed.compression.relu_masks = true;
  packed.compression.sparse_activations = true;
  packed.compression.capacity = 1.0f;  // never overflows: compare the packed path itself
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), packed);
  EXPECT_EQ(max_rel(b, a), 0.0);
  // A packed slot holds as many values as the batch has nonzeros: when one is topmost, its
  // unfilled tail stays untouched, so the measured mark may sit below the plan (never above).
  EXPECT_LE(b.measured_high_water, b.planned_high_water);
  EXPECT_GT(b.measured_high_water, b.planned_high_water * 9 / 10);
}

TEST_P(Compression, OverflowFallsBackToTheSafeScheduleAndStillTrainsIdentically) {
  TrainConfig plain;
  plain.freeze = freeze_norms(GetParam());  // the fallback splits the batch: keep norms fixed
  TrainConfig packed = plain;
  packed.compression.sparse_activations = true;
  packed.compression.capacity = 0.05f;  // far below ReLU density: every step overflows
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), packed);
  EXPECT_LT(max_rel(b, a), 1e-5);
}

TEST_P(Compression, CombinedWithCheckpointingAndMicroBatches) {
  TrainConfig plain;
  plain.freeze = freeze_norms(GetParam());
  TrainConfig all = plain;
  all.compression.relu_masks = true;
  all.compression.sparse_activations = true;
  all.compression.capacity = 1.0f;
  all.checkpoint.mode = CheckpointMode::kSqrtBytes;
  all.micro_batches = 2;
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), all);
  EXPECT_LT(max_rel(b, a), 1e-5);
}

TEST_P(Compression, RecomputedNormOutputsGiveIdenticalTrainingAndLessMemory) {
  TrainConfig plain, recompute;
  plain.compression.recompute_norm_outputs = false;
  recompute.compression.recompute_norm_outputs = true;
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), recompute);
  EXPECT_EQ(max_rel(b, a), 0.0);
  EXPECT_GT(b.norm_recomputes, 0);
  EXPECT_EQ(a.norm_recomputes, 0);
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
  // The small CNN peaks in its first layer's backward, where its norm's output is needed again
  // anyway; the others peak at the start of the backward, holding every saved activation.
  if (GetParam().arch == Architecture::kSmallCnn) EXPECT_LE(b.arena, a.arena);
  else EXPECT_LT(b.arena, a.arena);
}

TEST_P(Compression, RecomputedEvalNormOutputsGiveIdenticalTraining) {
  // Every norm on its running statistics (gamma and beta still train): the recompute is a copy
  // of the eval-mode forward node, with one-image micro-batches as the planner pairs them.
  TrainConfig plain, recompute;
  plain.norm_statistics = recompute.norm_statistics = NormStatistics::kRunning;
  plain.micro_batches = recompute.micro_batches = static_cast<int>(GetParam().batch);
  plain.compression.recompute_norm_outputs = false;
  recompute.compression.recompute_norm_outputs = true;
  Outcome a = train3(GetParam(), plain), b = train3(GetParam(), recompute);
  EXPECT_EQ(max_rel(b, a), 0.0);
  EXPECT_GT(b.norm_recomputes, 0);
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
  if (GetParam().arch == Architecture::kSmallCnn) EXPECT_LE(b.arena, a.arena);  // peaks in its first layer
  else EXPECT_LT(b.arena, a.arena);
}

TEST_P(Compression, RecomputedNormOutputsWithEveryOtherLever) {
  // With checkpointing, masks and sparse storage (norms recomputed only where backward still
  // reads a dense output), and with micro-batches (against micro-batches alone: the same
  // per-micro-batch statistics), training is bit-identical.
  TrainConfig plain;
  plain.fuse_momentum = false;  // sparse storage turns the fusion off: compare the same update order
  plain.compression.recompute_norm_outputs = false;
  TrainConfig all = plain;
  all.compression.relu_masks = true;
  all.compression.sparse_activations = true;
  all.compression.capacity = 1.0f;
  all.compression.recompute_norm_outputs = true;
  all.checkpoint.mode = CheckpointMode::kSqrtBytes;
  EXPECT_EQ(max_rel(train3(GetParam(), all), train3(GetParam(), plain)), 0.0);
  TrainConfig micro;
  micro.micro_batches = 2;
  micro.compression.recompute_norm_outputs = false;
  TrainConfig micro_recompute = micro;
  micro_recompute.compression.recompute_norm_outputs = true;
  Outcome m = train3(GetParam(), micro), r = train3(GetParam(), micro_recompute);
  EXPECT_EQ(max_rel(r, m), 0.0);
  EXPECT_GT(r.norm_recomputes, 0);
}

INSTANTIATE_TEST_SUITE_P(Models, Compression, ::testing::Values(kSmall, kMobileNet, kResNet),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return i.param.arch == Architecture::kSmallCnn      ? std::string("SmallCnn")
                                  : i.param.arch == Architecture::kMobileNetV2 ? std::string("MobileNetV2")
                                                                               : std::string("ResNet18");
                         });

TEST(Compression, TrainerCountsFallbackSteps) {
  TrainerOptions o;
  o.batch = 4;
  o.config.compression.sparse_activations = true;
  o.config.compression.capacity = 0.01f;
  Result<std::unique_ptr<Trainer>> t = Trainer::create(factory(kSmall), o);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  Rng rng(3);
  for (int64_t i = 0; i < (*t)->input_shape().numel(); ++i) (*t)->train_images()[i] = static_cast<float>(rng.normal());
  for (int i = 0; i < 4; ++i) (*t)->train_labels()[i] = i;
  Result<StepResult> r = (*t)->train_step(0.01f);
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->fell_back);
  EXPECT_EQ((*t)->fallback_steps(), 1);
}

TEST(Compression, PackedActivationsAppearInTheTimelineAndShrinkSavedBytes) {
  // Norm outputs kept in both: MobileNetV2's post-ReLU6 tensors are all norm outputs, which
  // recomputing removes from the saved set altogether (nothing left to pack).
  TrainConfig plain, packed;
  plain.compression.recompute_norm_outputs = packed.compression.recompute_norm_outputs = false;
  packed.compression.relu_masks = true;
  packed.compression.sparse_activations = true;
  packed.compression.capacity = 0.55f;
  Result<TrainingSchedule> a = make_training_schedule(factory(kMobileNet), 8, plain);
  Result<TrainingSchedule> b = make_training_schedule(factory(kMobileNet), 8, packed);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  MemoryTimeline ta = simulate_memory(a->graph, *layout_arena(a->graph));
  MemoryTimeline tb = simulate_memory(b->graph, *layout_arena(b->graph));
  size_t packed_peak = 0;
  for (const auto& step : tb.live) packed_peak = std::max(packed_peak, step[static_cast<size_t>(MemoryCategory::kPackedActivations)]);
  EXPECT_GT(packed_peak, 0u);
  // Activations (dense + packed) at the end of the forward pass: the saved set.
  auto saved_at_forward_end = [](const Graph& g, const MemoryTimeline& t) {
    size_t last_forward = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (g.nodes[i].phase == Phase::kForward) last_forward = i;
    return t.live[last_forward][static_cast<size_t>(MemoryCategory::kActivations)] +
           t.live[last_forward][static_cast<size_t>(MemoryCategory::kPackedActivations)];
  };
  size_t sa = saved_at_forward_end(a->graph, ta), sb = saved_at_forward_end(b->graph, tb);
  // Only post-ReLU tensors pack (batch norms keep their dense inputs), so the whole saved set
  // shrinks less than the packed tensors themselves (~42% each at capacity 0.55).
  EXPECT_LT(static_cast<double>(sb), 0.9 * static_cast<double>(sa)) << "plain " << sa << " packed " << sb;
}

}  // namespace
}  // namespace edgetrain

namespace edgetrain {
namespace {

// Budget mode (memory/checkpointing.h's dynamic program, verified by exact layouts) trains
// exactly like the plain schedule, inside the budget, recomputing no more than sqrt-bytes
// checkpointing does in the same memory.
TEST_P(Levers, BudgetCheckpointingGivesIdenticalTrainingWithinTheBudget) {
  TrainConfig sqrt_bytes;
  sqrt_bytes.checkpoint.mode = CheckpointMode::kSqrtBytes;
  Outcome a = train3(GetParam(), TrainConfig{}), s = train3(GetParam(), sqrt_bytes);
  TrainConfig budget;
  budget.checkpoint.mode = CheckpointMode::kBudget;
  budget.checkpoint.budget_bytes = static_cast<int64_t>(s.arena);  // sqrt-bytes fits it: so must the choice
  Outcome b = train3(GetParam(), budget);
  EXPECT_EQ(max_rel(b, a), 0.0);
  EXPECT_LE(b.arena, s.arena);
  // Where sqrt-bytes checkpointing saves nothing (the small CNN: see above), the budget fits the
  // plain schedule and nothing needs recomputing.
  if (s.arena < a.arena) {
    EXPECT_GT(b.recomputed, 0u);
  }
  EXPECT_LE(b.recomputed, s.recomputed);
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
}

// Every batch norm on running statistics (NormStatistics::kRunning) while gamma and beta train:
// no statistic depends on which images share a micro-batch, so micro-batches of one image,
// checkpointing, ReLU masks and gradients fused into the momentum buffers train like the plain
// schedule, and the running statistics never move (they would in batch-statistics training).
TEST_P(Levers, RunningStatisticNormsMakeOneImageMicroBatchesExact) {
  const Case& c = GetParam();
  TrainConfig plain;
  plain.norm_statistics = NormStatistics::kRunning;
  TrainConfig all = plain;
  all.micro_batches = static_cast<int>(c.batch);
  all.checkpoint.mode = CheckpointMode::kSqrtBytes;
  all.compression.relu_masks = true;
  // A smaller step than the other levers' tests: on running statistics left at their
  // initialisation (mean 0, variance 1) ResNet-18's activations grow through the blocks, and at lr
  // 0.05 its loss rises step after step, which turns summation-order rounding into 10% changes of
  // the norms' biases after three steps (measured after the kernels of the activation-backward
  // fusion merge: losses equal to 5 digits, biases 10% apart); at lr 0.005 it trains.
  constexpr float kLr = 0.005f;
  Outcome a = train3(c, plain, kLr), b = train3(c, all, kLr), batch_stats = train3(c, TrainConfig{}, kLr);
  EXPECT_LT(max_rel(b, a), 1e-5);
  EXPECT_EQ(b.measured_high_water, b.planned_high_water);
  Result<Graph> g = factory(c)(c.batch, true);
  ASSERT_TRUE(g.is_ok());
  bool gamma_moved = false, batch_stats_moved = false;
  for (size_t i = 0; i < g->params.size(); ++i) {
    const ParamSpec& p = g->params[i];
    for (size_t k = 0; k < a.params[i].size(); ++k) {
      if (p.kind == ParamKind::kNormWeight) gamma_moved |= a.params[i][k] != 1.0f;
      if (p.kind == ParamKind::kRunningMean) {
        EXPECT_EQ(a.params[i][k], 0.0f) << p.name;
        EXPECT_EQ(b.params[i][k], 0.0f) << p.name;
        batch_stats_moved |= batch_stats.params[i][k] != 0.0f;
      }
    }
  }
  EXPECT_TRUE(gamma_moved) << "the norms' weights did not train";
  EXPECT_TRUE(batch_stats_moved) << "batch-statistics training should move the running means";
  // Sparse storage of the saved post-ReLU values (norm-and-bias, the quarter budget's choice).
  TrainConfig nb = plain;
  nb.freeze.mode = FreezeMode::kNormAndBias;
  TrainConfig packed = nb;
  packed.micro_batches = 2;
  packed.compression.relu_masks = true;
  packed.compression.sparse_activations = true;
  packed.compression.capacity = 0.7f;
  Outcome e = train3(c, nb, kLr), f = train3(c, packed, kLr);
  EXPECT_LT(max_rel(f, e), 1e-5);
}

}  // namespace
}  // namespace edgetrain
