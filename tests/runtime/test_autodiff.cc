// Autodiff and scheduling on the small CNN: which backward nodes exist under each freezing
// configuration, where updates go, and what backward keeps alive.
#include <gtest/gtest.h>

#include <algorithm>

#include "memory/liveness.h"
#include "models/model_zoo.h"
#include "runtime/autodiff.h"
#include "runtime/freezing.h"
#include "runtime/schedule.h"

namespace edgetrain {
namespace {

Graph small_forward(int64_t batch = 4) {
  ModelSpec spec;
  spec.arch = Architecture::kSmallCnn;
  spec.input_size = 16;
  Result<Graph> g = build_model(spec, batch, /*training=*/true);
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  return std::move(g).value();
}

Graph training_graph(const Graph& fwd, const FreezeConfig& freeze) {
  TrainConfig cfg;
  cfg.freeze = freeze;
  cfg.optimizer.attrs.momentum = 0.9f;
  Result<std::vector<bool>> trainable = resolve_trainable(fwd, freeze);
  EXPECT_TRUE(trainable.is_ok()) << trainable.status().to_string();
  Result<Graph> g = build_training_graph(fwd, *trainable, cfg);
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  Status s = finalize_schedule(*g);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return std::move(g).value();
}

int count_ops(const Graph& g, OpKind op) {
  return static_cast<int>(std::count_if(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.op == op; }));
}

TEST(Autodiff, FullTrainingHasOneUpdatePerTrainableParameter) {
  Graph fwd = small_forward();
  Graph g = training_graph(fwd, FreezeConfig{});
  int trainable = 0;
  for (const ParamSpec& p : fwd.params) trainable += param_kind_is_trainable(p.kind);
  EXPECT_EQ(count_ops(g, OpKind::kSgdUpdate), trainable);
  EXPECT_EQ(count_ops(g, OpKind::kConv2dBackwardWeight), 4);
  // The first conv's input is the image: no gradient flows into it.
  EXPECT_EQ(count_ops(g, OpKind::kConv2dBackwardData), 3);
  EXPECT_EQ(count_ops(g, OpKind::kBatchNormBackward), 3);
}

TEST(Autodiff, ClassifierOnlyEmitsNoBackwardBeforeTheClassifier) {
  Graph fwd = small_forward();
  FreezeConfig f;
  f.mode = FreezeMode::kClassifierOnly;
  Graph g = training_graph(fwd, f);
  for (const Node& n : g.nodes) {
    if (n.phase == Phase::kForward) continue;
    EXPECT_TRUE(n.op == OpKind::kLinearBackwardWeight || n.op == OpKind::kSoftmaxCrossEntropyBackward ||
                n.op == OpKind::kSgdUpdate)
        << "unexpected " << op_name(n.op) << " [" << n.layer << "]";
  }
  EXPECT_EQ(count_ops(g, OpKind::kSgdUpdate), 2);  // fc.weight, fc.bias
  // Frozen batch norms run on running statistics: no saved statistics.
  for (const Node& n : g.nodes)
    if (n.op == OpKind::kBatchNorm) EXPECT_FALSE(n.attrs.norm.training);
}

TEST(Autodiff, FrozenConvBehindTrainableLayerKeepsNoInputForItsWeights) {
  Graph fwd = small_forward();
  FreezeConfig f;
  f.frozen_patterns = {"conv3.weight"};  // conv3 is depthwise between trainable layers
  Graph g = training_graph(fwd, f);
  bool data = false, weight = false;
  for (const Node& n : g.nodes) {
    if (n.layer != "conv3") continue;
    data |= n.op == OpKind::kConv2dBackwardData;
    weight |= n.op == OpKind::kConv2dBackwardWeight;
  }
  EXPECT_TRUE(data);
  EXPECT_FALSE(weight);
}

TEST(Autodiff, FrozenPrefixStopsBackwardAtTheFirstTrainableLayer) {
  Graph fwd = small_forward();
  FreezeConfig f;
  f.frozen_prefix_layers = 4;  // conv1, bn1, conv2, bn2
  Graph g = training_graph(fwd, f);
  for (const Node& n : g.nodes)
    if (n.phase == Phase::kBackward) EXPECT_GE(n.layer_index < 0 ? 99 : n.layer_index, 4) << op_name(n.op) << " " << n.layer;
  EXPECT_EQ(count_ops(g, OpKind::kMaxPoolBackward), 0);
}

TEST(Schedule, UpdatesFollowTheLastUseOfTheirGradient) {
  Graph g = training_graph(small_forward(), FreezeConfig{});
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& u = g.nodes[i];
    if (u.op != OpKind::kSgdUpdate) continue;
    ValueId param = u.inputs[0], grad = u.inputs[1];
    // The node right before writes the gradient or is another update placed at the same point.
    size_t j = i;
    while (j > 0 && g.nodes[j - 1].phase == Phase::kUpdate) --j;
    ASSERT_GT(j, 0u);
    const Node& w = g.nodes[j - 1];
    bool touches = false;
    for (ValueId v : w.outputs) touches |= v == grad;
    for (ValueId v : w.inputs) touches |= v == param || v == grad;
    EXPECT_TRUE(touches) << g.value(param).name;
    // Nothing after the update reads the parameter or the gradient.
    for (size_t k = i + 1; k < g.nodes.size(); ++k)
      for (ValueId v : g.nodes[k].inputs)
        if (g.nodes[k].phase != Phase::kUpdate) EXPECT_TRUE(v != param && v != grad) << g.value(param).name;
  }
}

TEST(Freezing, RejectsPatternsThatMatchNothingAndEmptyTraining) {
  Graph fwd = small_forward();
  FreezeConfig f;
  f.frozen_patterns = {"nosuchlayer.*"};
  Result<std::vector<bool>> r = resolve_trainable(fwd, f);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("nosuchlayer"), std::string::npos);
  FreezeConfig all;
  all.frozen_patterns = {"*"};
  EXPECT_FALSE(resolve_trainable(fwd, all).is_ok());
}

TEST(Liveness, MemoryTimelinePeakIsBelowTheArena) {
  Graph g = training_graph(small_forward(), FreezeConfig{});
  Result<ArenaLayout> layout = layout_arena(g);
  ASSERT_TRUE(layout.is_ok());
  MemoryTimeline t = simulate_memory(g, *layout);
  size_t arena_peak = 0;
  for (size_t s = 0; s < t.total.size(); ++s) arena_peak = std::max(arena_peak, t.total[s] - t.parameter_bytes);
  EXPECT_GT(arena_peak, 0u);
  EXPECT_LE(arena_peak, layout->arena_bytes);
  EXPECT_EQ(t.peak_bytes, arena_peak + t.parameter_bytes);
}

// norm-and-bias: bias-only's parameters (every bias, the classifier) plus the batch-norm weights,
// nothing else; with NormStatistics::kRunning every norm runs on running statistics although
// its gamma and beta train (the backward still gives dgamma and dbeta).
TEST(Autodiff, NormAndBiasTrainsNormsBiasesAndTheClassifierOnly) {
  Graph fwd = small_forward();
  FreezeConfig f;
  f.mode = FreezeMode::kNormAndBias;
  Result<std::vector<bool>> t = resolve_trainable(fwd, f);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  FreezeConfig bias;
  bias.mode = FreezeMode::kBiasOnly;
  Result<std::vector<bool>> b = resolve_trainable(fwd, bias);
  ASSERT_TRUE(b.is_ok());
  int norm_weights = 0;
  for (size_t i = 0; i < fwd.params.size(); ++i) {
    const ParamSpec& p = fwd.params[i];
    bool want = (*b)[i] || p.kind == ParamKind::kNormWeight;
    EXPECT_EQ((*t)[i], want) << p.name;
    norm_weights += p.kind == ParamKind::kNormWeight && (*t)[i];
  }
  EXPECT_EQ(norm_weights, 3);
  Result<FreezeMode> parsed = parse_freeze_mode("norm-and-bias");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(*parsed, FreezeMode::kNormAndBias);

  TrainConfig cfg;
  cfg.freeze = f;
  cfg.norm_statistics = NormStatistics::kRunning;
  Result<Graph> g = build_training_graph(fwd, *t, cfg);
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  int norm_backward_with_dgamma = 0;
  for (const Node& n : g->nodes) {
    if (n.op == OpKind::kBatchNorm) EXPECT_FALSE(n.attrs.norm.training) << n.layer;
    if (n.op == OpKind::kBatchNormBackward) {
      EXPECT_FALSE(n.attrs.norm.training) << n.layer;
      norm_backward_with_dgamma += n.outputs.size() > 1 && n.outputs[1] != kNoValue;
    }
  }
  EXPECT_EQ(norm_backward_with_dgamma, 3);
}

}  // namespace
}  // namespace edgetrain
