// Conv + eval-mode batch norm fusion (runtime/fusion.h fuse_conv_norms, ops/conv2d.h
// ConvNormEpilogue): the fused conv writes what the conv, the norm and its activation wrote, on
// every kernel path; the pass fuses exactly the pairs whose conv output nobody else reads; and
// whole models evaluate and train as they did unfused, in a smaller arena.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "models/model_zoo.h"
#include "ops/conv2d.h"
#include "ops/conv2d_winograd.h"
#include "runtime/fusion.h"
#include "runtime/trainer.h"
#include "runtime/training_schedule.h"
#include "tests/support/model_factories.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::absent;
using testing::HostTensor;
using testing::max_rel_error;
using testing::random_tensor;
using testing::run_op;

struct ConvCase {
  const char* path;  // the kernel path the geometry takes (ops/conv2d.cc)
  Shape x;
  int64_t out_c;
  int k, stride, pad, groups;
};

// One geometry per path of conv2d_forward.
const ConvCase kCases[] = {
    {"winograd", {2, 8, 8, 32}, 32, 3, 1, 1, 1},
    {"direct", {2, 9, 9, 3}, 40, 3, 2, 1, 1},
    {"depthwise", {2, 7, 7, 24}, 24, 3, 1, 1, 24},
    {"pointwise", {2, 5, 5, 16}, 20, 1, 1, 0, 1},
    {"im2col", {2, 9, 9, 16}, 24, 3, 2, 1, 1},
};

Attrs conv_attrs(const ConvCase& c) {
  Attrs a;
  a.conv.kernel_h = a.conv.kernel_w = c.k;
  a.conv.stride_h = a.conv.stride_w = c.stride;
  a.conv.pad_h = a.conv.pad_w = c.pad;
  a.conv.groups = c.groups;
  return a;
}

TEST(ConvNormFusion, FusedConvWritesWhatConvThenEvalNormThenActivationWroteOnEveryPath) {
  for (const ConvCase& c : kCases)
    for (bool bias : {false, true})
      for (FusedActivation act : {FusedActivation::kNone, FusedActivation::kRelu, FusedActivation::kRelu6})
        for (bool reference : {false, true}) {
          SCOPED_TRACE(std::string(c.path) + " bias=" + std::to_string(bias) + " act=" +
                       std::to_string(static_cast<int>(act)) + " reference=" + std::to_string(reference));
          const Attrs plain = conv_attrs(c);
          const Shape w{c.out_c, c.k, c.k, c.x.c() / c.groups}, ch{c.out_c};
          const Shape y = conv2d_output_shape(c.x, w, plain.conv).value();
          const HostTensor x = random_tensor(c.x, 1), wt = random_tensor(w, 2, -0.5f, 0.5f);
          const HostTensor b = bias ? random_tensor(ch, 3) : absent(ch);
          // Running statistics far from (0, 1) and a scale around 3 so that both clamps bite.
          const HostTensor gamma = random_tensor(ch, 4, 0.5f, 3.0f), beta = random_tensor(ch, 5, -1.0f, 4.0f);
          const HostTensor mean = random_tensor(ch, 6, -0.5f, 0.5f), var = random_tensor(ch, 7, 0.05f, 0.5f);

          auto conv = run_op(OpKind::kConv2d, plain, {x, wt, b}, {HostTensor{y, {}}}, reference);
          Attrs norm;
          norm.norm.training = false;
          norm.activation = act;
          auto separate = run_op(OpKind::kBatchNorm, norm, {conv[0], gamma, beta, mean, var}, {HostTensor{y, {}}}, reference);

          Attrs fused = plain;
          fused.conv_norm = true;
          fused.norm = norm.norm;
          fused.activation = act;
          auto one = run_op(OpKind::kConv2d, fused, {x, wt, b, gamma, beta, mean, var}, {HostTensor{y, {}}}, reference);
          // The same expression on the same conv values: equal up to the compiler contracting
          // the multiply-add differently in the two loops.
          EXPECT_LT(max_rel_error(one[0].data, separate[0].data), 1e-6);
          if (act != FusedActivation::kNone) {
            int clamped = 0;
            for (float v : one[0].data) clamped += v == 0.0f || (act == FusedActivation::kRelu6 && v == 6.0f);
            EXPECT_GT(clamped, 0) << "the activation's clamp must be exercised";
          }
        }
}

TEST(ConvNormFusion, WinogradEpilogueHandlesChannelTailsAndSeveralBlocks) {
  // 40 output channels: two 16-lane vectors and a scalar tail; a tiny workspace budget forces
  // several blocks of output channels.
  const ConvCase c{"winograd", {1, 12, 12, 24}, 40, 3, 1, 1, 1};
  set_winograd_budget_for_testing(4096);
  const Attrs plain = conv_attrs(c);
  const Shape w{40, 3, 3, 24}, ch{40};
  const Shape y = conv2d_output_shape(c.x, w, plain.conv).value();
  const HostTensor x = random_tensor(c.x, 11), wt = random_tensor(w, 12, -0.3f, 0.3f), b = random_tensor(ch, 13);
  const HostTensor gamma = random_tensor(ch, 14, 0.5f, 2.0f), beta = random_tensor(ch, 15);
  const HostTensor mean = random_tensor(ch, 16), var = random_tensor(ch, 17, 0.1f, 1.0f);
  Attrs fused = plain;
  fused.conv_norm = true;
  fused.norm.training = false;
  fused.activation = FusedActivation::kRelu;
  auto fast = run_op(OpKind::kConv2d, fused, {x, wt, b, gamma, beta, mean, var}, {HostTensor{y, {}}}, false);
  auto conv = run_op(OpKind::kConv2d, plain, {x, wt, b}, {HostTensor{y, {}}}, false);
  Attrs norm;
  norm.norm.training = false;
  norm.activation = FusedActivation::kRelu;
  auto separate = run_op(OpKind::kBatchNorm, norm, {conv[0], gamma, beta, mean, var}, {HostTensor{y, {}}}, false);
  auto ref = run_op(OpKind::kConv2d, fused, {x, wt, b, gamma, beta, mean, var}, {HostTensor{y, {}}}, true);
  set_winograd_budget_for_testing(0);
  EXPECT_LT(max_rel_error(fast[0].data, separate[0].data), 1e-6);
  // Against the naive conv: Winograd's own rounding, amplified by scales up to ~6.
  EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), 1e-4);
}

GraphFactory mobilenet() { return testing::model_factory(Architecture::kMobileNetV2, 32, 0.35f); }
GraphFactory resnet18() { return testing::model_factory(Architecture::kResNet18, 32); }

int count(const Graph& g, OpKind op) {
  return static_cast<int>(std::count_if(g.nodes.begin(), g.nodes.end(), [&](const Node& n) { return n.op == op; }));
}
int fused_convs(const Graph& g) {
  return static_cast<int>(std::count_if(g.nodes.begin(), g.nodes.end(),
                                        [](const Node& n) { return n.op == OpKind::kConv2d && n.attrs.conv_norm; }));
}

TEST(ConvNormFusion, EvaluationGraphsFuseEveryConvWithItsNorm) {
  for (const GraphFactory& f : {mobilenet(), resnet18()}) {
    Result<Graph> g = f(2, /*training=*/false);
    ASSERT_TRUE(g.is_ok());
    const int norms = count(*g, OpKind::kBatchNorm);
    ASSERT_GT(norms, 0);
    fuse_activations(*g);
    EXPECT_EQ(fuse_conv_norms(*g), norms) << "every norm of these models follows a conv";
    EXPECT_EQ(count(*g, OpKind::kBatchNorm), 0);
    EXPECT_EQ(fused_convs(*g), norms);
    EXPECT_EQ(fuse_conv_norms(*g), 0) << "fusing twice changes nothing";
  }
}

TrainConfig frozen(FreezeMode mode, int prefix = 0) {
  TrainConfig c;
  c.optimizer.attrs.momentum = 0.9f;
  c.freeze.mode = mode;
  c.freeze.frozen_prefix_layers = prefix;
  return c;
}

TEST(ConvNormFusion, TrainingFusesOnlyTheFrozenRegion) {
  // Everything trains: every norm runs on batch statistics, nothing fuses.
  Result<TrainingSchedule> all = make_training_schedule(resnet18(), 4, frozen(FreezeMode::kNone));
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  EXPECT_EQ(fused_convs(all->graph), 0);
  // Classifier-only: every conv/norm pair is frozen and nothing flows back through it.
  Result<Graph> fwd = resnet18()(4, true);
  ASSERT_TRUE(fwd.is_ok());
  const int norms = count(*fwd, OpKind::kBatchNorm);
  Result<TrainingSchedule> cls = make_training_schedule(resnet18(), 4, frozen(FreezeMode::kClassifierOnly));
  ASSERT_TRUE(cls.is_ok()) << cls.status().to_string();
  EXPECT_EQ(fused_convs(cls->graph), norms);
  // A frozen prefix: some pairs fuse, those behind the first trainable layer do not.
  Result<TrainingSchedule> prefix = make_training_schedule(resnet18(), 4, frozen(FreezeMode::kNone, 10));
  ASSERT_TRUE(prefix.is_ok()) << prefix.status().to_string();
  const int partial = fused_convs(prefix->graph);
  EXPECT_GT(partial, 0);
  EXPECT_LT(partial, norms);
  for (const Node& n : prefix->graph.nodes)
    if (n.op == OpKind::kConv2d && n.attrs.conv_norm) {
      EXPECT_EQ(n.phase, Phase::kForward);
    }
}

struct TrainingRun {
  std::vector<float> losses;
  double eval_loss = 0;
  std::vector<float> params;
  size_t arena = 0;
};

// Three SGD steps on random data, then one evaluation, with running statistics set away from
// their initial (0, 1) so that the eval-mode norms do real work.
TrainingRun train(const GraphFactory& f, const TrainConfig& config, bool fuse) {
  set_conv_norm_fusion(fuse);
  TrainerOptions o;
  o.batch = 4;
  o.config = config;
  Result<std::unique_ptr<Trainer>> tr = Trainer::create(f, o);
  set_conv_norm_fusion(true);
  EXPECT_TRUE(tr.is_ok()) << tr.status().to_string();
  TrainingRun out;
  if (!tr.is_ok()) return out;
  Trainer& t = **tr;
  out.arena = t.memory().train_arena_bytes;
  Rng stats(7);
  for (int i = 0; i < t.params().size(); ++i) {
    const ParamKind kind = t.params().spec(i).kind;
    float* p = t.params().data(i);
    const int64_t n = t.params().spec(i).shape.numel();
    if (kind == ParamKind::kRunningMean)
      for (int64_t k = 0; k < n; ++k) p[k] = static_cast<float>(0.3 * stats.normal());
    if (kind == ParamKind::kRunningVar)
      for (int64_t k = 0; k < n; ++k) p[k] = static_cast<float>(0.5 + stats.uniform());
  }
  for (int step = 0; step < 3; ++step) {
    Rng rng(500 + step);
    for (int64_t i = 0; i < t.input_shape().numel(); ++i) t.train_images()[i] = static_cast<float>(rng.normal());
    for (int64_t i = 0; i < o.batch; ++i) t.train_labels()[i] = static_cast<int32_t>(rng.below(10));
    Result<StepResult> r = t.train_step(0.05f);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    out.losses.push_back(r.is_ok() ? r->loss : NAN);
  }
  Rng rng(900);
  for (int64_t i = 0; i < t.input_shape().numel(); ++i) t.eval_images()[i] = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < o.batch; ++i) t.eval_labels()[i] = static_cast<int32_t>(rng.below(10));
  Result<EvalResult> e = t.eval_step(o.batch);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  out.eval_loss = e.is_ok() ? e->loss_sum : NAN;
  for (int i = 0; i < t.params().size(); ++i)
    out.params.insert(out.params.end(), t.params().data(i), t.params().data(i) + t.params().spec(i).shape.numel());
  return out;
}

TEST(ConvNormFusion, ModelsTrainAndEvaluateAsUnfusedInASmallerArena) {
  struct Case {
    const char* name;
    GraphFactory factory;
    TrainConfig config;
  };
  const Case cases[] = {
      {"mobilenet classifier-only", mobilenet(), frozen(FreezeMode::kClassifierOnly)},
      {"resnet18 classifier-only", resnet18(), frozen(FreezeMode::kClassifierOnly)},
      {"resnet18 first 10 layers frozen", resnet18(), frozen(FreezeMode::kNone, 10)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const TrainingRun plain = train(c.factory, c.config, false);
    const TrainingRun fused = train(c.factory, c.config, true);
    ASSERT_EQ(plain.losses.size(), 3u);
    ASSERT_EQ(fused.losses.size(), 3u);
    for (size_t s = 0; s < 3; ++s) EXPECT_NEAR(fused.losses[s], plain.losses[s], 1e-5 * std::max(1.0f, std::fabs(plain.losses[s])));
    EXPECT_NEAR(fused.eval_loss, plain.eval_loss, 1e-5 * std::max(1.0, std::fabs(plain.eval_loss)));
    EXPECT_LT(max_rel_error(fused.params, plain.params), 1e-5);
    // At 32x32 the arena's peak lies where no fused pair is live; the fused convs only add
    // their per-channel scale to their workspace.
    EXPECT_LE(fused.arena, plain.arena + 4096);
  }
}

TEST(ConvNormFusion, ClassifierOnlyResNet18At224NeedsAThirdLessArena) {
  auto arena = [](bool fuse) {
    set_conv_norm_fusion(fuse);
    TrainerOptions o;
    o.batch = 8;
    o.config = frozen(FreezeMode::kClassifierOnly);
    Result<TrainerBlueprint> b = design_trainer(testing::model_factory(Architecture::kResNet18, 224), o);
    set_conv_norm_fusion(true);
    EXPECT_TRUE(b.is_ok()) << b.status().to_string();
    return b.is_ok() ? b->memory.train_arena_bytes : size_t{0};
  };
  const size_t plain = arena(false), fused = arena(true);
  // The stem's raw output (8 x 112 x 112 x 64 floats, 24.5 MiB) lived beside its normalised copy.
  EXPECT_LT(static_cast<double>(fused), 0.75 * static_cast<double>(plain)) << plain << " -> " << fused;
}

}  // namespace
}  // namespace edgetrain
