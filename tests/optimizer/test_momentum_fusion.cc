// Gradients accumulated straight into SGD momentum buffers (optimizer/momentum_fusion.h):
// the same training as the plain update (up to float summation order), no parameter gradient
// in the arena, a smaller arena, and the fusion only where its conditions hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "memory/liveness.h"
#include "models/model_zoo.h"
#include "ops/conv2d_winograd.h"
#include "optimizer/momentum_fusion.h"
#include "optimizer/update_kernels.h"
#include "runtime/trainer.h"
#include "runtime/training_schedule.h"

namespace edgetrain {
namespace {

struct Case {
  const char* name;
  Architecture arch;
  int input;
  float width;
  int64_t batch;
  int micro_batches;
  bool arena_shrinks;  // the plain arena peaks where a parameter gradient is live
};

GraphFactory factory(const Case& c) {
  return [c](int64_t b, bool training) {
    ModelSpec s;
    s.arch = c.arch;
    s.input_size = c.input;
    s.width_mult = c.width;
    s.dropout = 0.0f;
    return build_model(s, b, training);
  };
}

TrainConfig sgd(bool fuse, int micro_batches) {
  TrainConfig cfg;
  cfg.optimizer.attrs.momentum = 0.9f;
  cfg.optimizer.attrs.weight_decay = 1e-3f;
  cfg.micro_batches = micro_batches;
  cfg.fuse_momentum = fuse;
  return cfg;
}

struct Trained {
  std::vector<float> losses;
  std::vector<std::vector<float>> params;
  size_t arena = 0;
};

// `steps` SGD steps on random data at the given learning rates.
Trained train(const Case& c, TrainConfig cfg, const std::vector<float>& rates, bool freeze_norms) {
  TrainerOptions o;
  o.batch = c.batch;
  if (freeze_norms) {
    Result<Graph> g = factory(c)(c.batch, true);
    for (const ParamSpec& p : g->params)
      if (p.kind == ParamKind::kNormWeight || p.kind == ParamKind::kNormBias) cfg.freeze.frozen_patterns.push_back(p.name);
  }
  o.config = cfg;
  Result<std::unique_ptr<Trainer>> tr = Trainer::create(factory(c), o);
  EXPECT_TRUE(tr.is_ok()) << tr.status().to_string();
  Trained out;
  if (!tr.is_ok()) return out;
  Trainer& t = **tr;
  for (size_t step = 0; step < rates.size(); ++step) {
    Rng rng(300 + step);
    for (int64_t i = 0; i < t.input_shape().numel(); ++i) t.train_images()[i] = static_cast<float>(rng.normal());
    for (int64_t i = 0; i < c.batch; ++i) t.train_labels()[i] = static_cast<int32_t>(rng.below(10));
    Result<StepResult> r = t.train_step(rates[step]);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    out.losses.push_back(r.is_ok() ? r->loss : NAN);
  }
  for (int i = 0; i < t.params().size(); ++i)
    out.params.emplace_back(t.params().data(i), t.params().data(i) + t.params().spec(i).shape.numel());
  out.arena = t.train_executor().arena_bytes();
  return out;
}

// Largest difference between two runs' losses and weights: per tensor, relative to the tensor's
// largest value but at least 1e-3 of the model's largest weight (tensors that stay near zero,
// such as batch-norm biases whose gradient is zero in exact arithmetic, only carry rounding).
double divergence(const Trained& a, const Trained& b) {
  double worst = 0;
  for (size_t i = 0; i < a.losses.size() && i < b.losses.size(); ++i)
    worst = std::max(worst, std::fabs(double(a.losses[i]) - b.losses[i]) / std::max(1.0, std::fabs(double(b.losses[i]))));
  double largest = 0;
  for (const auto& p : b.params)
    for (float x : p) largest = std::max(largest, std::fabs(double(x)));
  for (size_t p = 0; p < a.params.size() && p < b.params.size(); ++p) {
    double diff = 0, scale = 1e-3 * largest;
    for (size_t k = 0; k < a.params[p].size(); ++k) {
      diff = std::max(diff, std::fabs(double(a.params[p][k]) - b.params[p][k]));
      scale = std::max(scale, std::fabs(double(b.params[p][k])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

class MomentumFusionTraining : public ::testing::TestWithParam<Case> {};

// The fused update only sums in another order. Several steps of a net whose batch norms use
// batch statistics on random data are chaotic (batch norm over 4-8 values at 1x1 spatial size
// amplifies rounding ~100x a step; the plain schedule drifts as much between thread counts), so:
// one step with every parameter training (lr 1: the weights move by the whole momentum buffer),
// then four steps with the norms frozen (running statistics), at changing learning rates.
TEST_P(MomentumFusionTraining, TrainsLikeThePlainUpdateWithoutParameterGradientsInTheArena) {
  const Case& c = GetParam();
  Trained plain = train(c, sgd(false, c.micro_batches), {1.0f}, false);
  Trained fused = train(c, sgd(true, c.micro_batches), {1.0f}, false);
  ASSERT_EQ(plain.params.size(), fused.params.size());
  EXPECT_LT(divergence(fused, plain), 1e-5) << "one step, everything training";
  if (c.arena_shrinks) EXPECT_LT(fused.arena, plain.arena);
  else EXPECT_LE(fused.arena, plain.arena);
  // On im2col: ResNet-18's loss jumps to 13 at the second of these steps, where rounding noise
  // compounds, and on Winograd F(4x4, 3x3) (ops/conv2d_winograd.h) a one-ulp weight difference
  // moves a conv's outputs ~6x as much as on im2col (1.9e-4 apart after four steps instead of
  // 6e-7). 1e-5 must stay: it catches a lost weight decay. Winograd's training is compared
  // with im2col's in tests/memory/test_transforms.cc.
  const WinogradPolicy policy = winograd_policy();
  set_winograd_policy(WinogradPolicy::kOff);
  const std::vector<float> rates = {0.05f, 0.05f, 0.02f, 0.01f};
  Trained plain_steps = train(c, sgd(false, c.micro_batches), rates, true);
  Trained fused_steps = train(c, sgd(true, c.micro_batches), rates, true);
  set_winograd_policy(policy);
  EXPECT_LT(divergence(fused_steps, plain_steps), 1e-5) << "four steps, norms frozen";
}

INSTANTIATE_TEST_SUITE_P(Models, MomentumFusionTraining,
                         ::testing::Values(Case{"SmallCnn", Architecture::kSmallCnn, 16, 1.0f, 8, 1, false},
                                           Case{"SmallCnnMicroBatched", Architecture::kSmallCnn, 16, 1.0f, 8, 2, true},
                                           Case{"MobileNetV2", Architecture::kMobileNetV2, 32, 0.35f, 8, 1, true},
                                           Case{"MobileNetV2MicroBatched", Architecture::kMobileNetV2, 32, 0.35f, 8, 2, true},
                                           Case{"ResNet18", Architecture::kResNet18, 32, 1.0f, 4, 1, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(MomentumFusion, ScheduleDecaysFirstAccumulatesIntoBuffersAndKeepsNoParameterGradient) {
  Case c{"ResNet18", Architecture::kResNet18, 32, 1.0f, 8, 1, true};
  Result<TrainingSchedule> fused = make_training_schedule(factory(c), c.batch, sgd(true, 1));
  Result<TrainingSchedule> plain = make_training_schedule(factory(c), c.batch, sgd(false, 1));
  ASSERT_TRUE(fused.is_ok()) << fused.status().to_string();
  ASSERT_TRUE(plain.is_ok()) << plain.status().to_string();
  const Graph& g = fused->graph;
  int decays = 0, applies = 0, plain_updates = 0;
  bool before_forward = true;
  for (const Node& n : g.nodes) {
    if (n.phase != Phase::kPrepare) before_forward = false;
    if (n.op == OpKind::kSgdMomentumDecay) {
      ++decays;
      EXPECT_TRUE(before_forward) << "a decay after the forward began: " << n.layer;
    }
    applies += n.op == OpKind::kSgdApplyMomentum;
    plain_updates += n.op == OpKind::kSgdUpdate;
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      if (n.outputs[k] == kNoValue) continue;
      const Value& v = g.value(n.outputs[k]);
      EXPECT_FALSE(v.role == ValueRole::kGradient && v.grad_of != kNoValue &&
                   g.value(v.grad_of).role == ValueRole::kParam)
          << "parameter gradient '" << v.name << "' still written by " << op_name(n.op);
      if (v.role == ValueRole::kOptimizerState) {
        EXPECT_TRUE(n.attrs.accumulates(static_cast<int>(k))) << v.name;
      }
    }
  }
  int trainable = 0;
  for (const Node& n : plain->graph.nodes) trainable += n.op == OpKind::kSgdUpdate;
  EXPECT_EQ(decays, trainable);
  EXPECT_EQ(applies, trainable);
  EXPECT_EQ(plain_updates, 0);
  // The applies run at the end of the step, after every forward and backward node (runtime/
  // schedule.h: right after a layer's backward they paid for the other core's copies of the
  // weight's lines).
  for (size_t i = g.nodes.size() - static_cast<size_t>(applies); i < g.nodes.size(); ++i)
    EXPECT_EQ(g.nodes[i].op, OpKind::kSgdApplyMomentum) << "node " << i << ": " << op_name(g.nodes[i].op);
  // ResNet-18's largest weight gradient (layer4, 9 MiB) no longer sits in the arena.
  Result<ArenaLayout> a = layout_arena(g), b = layout_arena(plain->graph);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_LT(a->arena_bytes + (size_t{8} << 20), b->arena_bytes);
}

TEST(MomentumFusion, AppliesOnlyWhereTheSplitUpdateEqualsTorchSgd) {
  TrainConfig c = sgd(true, 1);
  EXPECT_TRUE(momentum_fusion_applies(c));
  TrainConfig off = c;
  off.fuse_momentum = false;
  EXPECT_FALSE(momentum_fusion_applies(off));
  TrainConfig nesterov = c;
  nesterov.optimizer.attrs.nesterov = true;
  EXPECT_FALSE(momentum_fusion_applies(nesterov));
  TrainConfig damp = c;
  damp.optimizer.attrs.dampening = 0.1f;
  EXPECT_FALSE(momentum_fusion_applies(damp));
  TrainConfig plain_sgd = c;
  plain_sgd.optimizer.attrs.momentum = 0.0f;
  EXPECT_FALSE(momentum_fusion_applies(plain_sgd));
  TrainConfig adam = c;
  adam.optimizer.kind = OptimizerKind::kAdamW;
  EXPECT_FALSE(momentum_fusion_applies(adam));
  TrainConfig retained = c;
  retained.retain_parameter_gradients = true;
  EXPECT_FALSE(momentum_fusion_applies(retained));
  TrainConfig sparse = c;
  sparse.compression.sparse_activations = true;  // its overflow fallback re-runs a step
  EXPECT_FALSE(momentum_fusion_applies(sparse));
}

TEST(MomentumFusion, DecayThenAccumulateThenApplyEqualsTheTorchStep) {
  OptimAttrs a;
  a.momentum = 0.9f;
  a.weight_decay = 0.01f;
  const int n = 5;
  float p_ref[n] = {1, -2, 3, 0.5f, -0.25f}, buf_ref[n] = {};
  float p[n], buf[n];
  std::copy(p_ref, p_ref + n, p);
  for (float& b : buf) b = 1e30f;  // garbage before the first step: never read
  for (int step = 1; step <= 3; ++step) {
    float grad[n];
    for (int i = 0; i < n; ++i) grad[i] = 0.1f * static_cast<float>(i - step);
    sgd_update_naive(n, a, 0.1f, p_ref, grad, buf_ref, step == 1);
    sgd_momentum_decay_naive(n, a, p, buf, step == 1);  // step 1 only; later ones find buf decayed
    for (int i = 0; i < n; ++i) buf[i] += grad[i];  // what the gradient's producer does
    sgd_apply_momentum_naive(n, a, 0.1f, p, buf);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(p[i], p_ref[i], 1e-6f) << "step " << step << " element " << i;
      // Between steps the buffer holds torch's, decayed for the next step.
      EXPECT_NEAR(buf[i], a.momentum * buf_ref[i] + a.weight_decay * p_ref[i], 1e-6f)
          << "step " << step << " element " << i;
    }
  }
}

}  // namespace
}  // namespace edgetrain
