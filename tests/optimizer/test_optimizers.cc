// Optimizer update kernels against hand-computed three-step sequences (torch.optim semantics),
// the fast kernels against the reference on a large parameter, and learning-rate schedules.
//
// The expected sequences below were computed from the formulas in optimizer/update_kernels.cc in
// double precision, and cross-checked once against PyTorch 1.13 (torch.optim.SGD / AdamW, float32)
// on this machine: the largest difference over all cases was 1.9e-7 (float rounding), e.g.
// AdamW case 1, step 3: formula 0.9779461 / -0.491762229 / 2.00912709,
//                       torch   0.977946103 / -0.491762221 / 2.0091269.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "optimizer/lr_schedule.h"
#include "optimizer/update_kernels.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::run_op;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Three elements, three steps. Element 2 gets a zero gradient first (AdamW: m = v = 0, no move).
const std::vector<float> kParam0 = {1.0f, -0.5f, 2.0f};
const std::vector<std::vector<float>> kGrads = {
    {0.1f, -0.2f, 0.0f}, {0.3f, 0.1f, -1.0f}, {-0.2f, 0.4f, 0.5f}};

using Sequence = std::vector<std::vector<float>>;  // the parameter after each step

HostTensor vec(std::vector<float> v) {
  HostTensor t;
  t.shape = Shape{static_cast<int64_t>(v.size())};
  t.data = std::move(v);
  return t;
}

// Runs the update op for each gradient; `state` are the optimizer state inputs after the
// gradient (their initial contents), absent ones passed as null.
Sequence run_steps(OpKind op, const Attrs& attrs, float lr, std::vector<HostTensor> state,
                   bool reference, const std::vector<float>& p0 = kParam0,
                   const std::vector<std::vector<float>>& grads = kGrads) {
  Sequence seq;
  HostTensor param = vec(p0);
  for (size_t s = 0; s < grads.size(); ++s) {
    StepScalars step;
    step.learning_rate = lr;
    step.optimizer_step = static_cast<int64_t>(s) + 1;
    std::vector<HostTensor> inputs = {param, vec(grads[s])};
    inputs.insert(inputs.end(), state.begin(), state.end());
    std::vector<HostTensor> after;
    run_op(op, attrs, inputs, {}, reference, 2, &after, step);
    param = after[0];
    for (size_t i = 0; i < state.size(); ++i) state[i] = after[2 + i];
    seq.push_back(param.data);
  }
  return seq;
}

void expect_sequence(const Sequence& got, const Sequence& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < want.size(); ++s)
    for (size_t i = 0; i < want[s].size(); ++i)
      EXPECT_NEAR(got[s][i], want[s][i], 1e-6) << what << ", step " << s + 1 << ", element " << i;
}

TEST(Sgd, PlainStepsMatchHandComputedValuesWithoutMomentumBuffer) {
  // p -= 0.1 * g:  [1, -0.5, 2] -> [0.99, -0.48, 2] -> [0.96, -0.49, 2.1] -> [0.98, -0.53, 2.05]
  const Sequence want = {{0.99f, -0.48f, 2.0f}, {0.96f, -0.49f, 2.1f}, {0.98f, -0.53f, 2.05f}};
  for (bool reference : {false, true})
    expect_sequence(run_steps(OpKind::kSgdUpdate, Attrs{}, 0.1f, {testing::absent(Shape{3})}, reference),
                    want, reference ? "reference" : "fast");
}

// Momentum-free SGD as the planner substitutes it (planner/search.h momentum_free): no state,
// the step's learning rate times lr_scale 1/(1 - 0.9) = 10: the plain sequence above at lr 0.01.
TEST(Sgd, MomentumFreeLrScaleMultipliesTheStepsLearningRate) {
  Attrs a;
  a.optim.lr_scale = 10.0f;
  const Sequence want = {{0.99f, -0.48f, 2.0f}, {0.96f, -0.49f, 2.1f}, {0.98f, -0.53f, 2.05f}};
  for (bool reference : {false, true})
    expect_sequence(run_steps(OpKind::kSgdUpdate, a, 0.01f, {testing::absent(Shape{3})}, reference),
                    want, reference ? "reference" : "fast");
}

TEST(Sgd, MomentumDampeningAndWeightDecayMatchTorchSemantics) {
  // lr 0.1, momentum 0.9, dampening 0.1, weight decay 0.01. Step 1 by hand:
  //   d = g + 0.01 p = [0.11, -0.205, 0.02]; buf = d (first step: no dampening);
  //   p = p - 0.1 d = [0.989, -0.4795, 1.998]
  // Steps 2, 3: buf = 0.9 buf + 0.9 d, p -= 0.1 buf.
  Attrs a;
  a.optim.momentum = 0.9f;
  a.optim.dampening = 0.1f;
  a.optim.weight_decay = 0.01f;
  const Sequence want = {{0.989f, -0.4795f, 1.998f},
                         {0.9512099f, -0.46961845f, 2.0844018f},
                         {0.934342721f, -0.496302398f, 2.11528746f}};
  // The buffer's memory holds garbage before the first step: it must be overwritten, not read.
  for (bool reference : {false, true})
    expect_sequence(run_steps(OpKind::kSgdUpdate, a, 0.1f, {vec({kNaN, kNaN, kNaN})}, reference),
                    want, reference ? "reference" : "fast");
}

TEST(Sgd, NesterovMatchesTorchSemantics) {
  // lr 0.05, momentum 0.9, nesterov, weight decay 0.001. Step 1 by hand:
  //   d = g + 0.001 p = [0.101, -0.2005, 0.002]; buf = d; step = d + 0.9 buf = 1.9 d;
  //   p = p - 0.05 * 1.9 d = [0.990405, -0.4809525, 1.99981]
  Attrs a;
  a.optim.momentum = 0.9f;
  a.optim.nesterov = true;
  a.optim.weight_decay = 0.001f;
  const Sequence want = {{0.990405f, -0.4809525f, 1.99981f},
                         {0.957720412f, -0.48228656f, 2.09453902f},
                         {0.960757867f, -0.516963039f, 2.08718614f}};
  for (bool reference : {false, true})
    expect_sequence(run_steps(OpKind::kSgdUpdate, a, 0.05f, {vec({0, 0, 0})}, reference), want,
                    reference ? "reference" : "fast");
}

TEST(AdamW, DefaultBetasMatchTorchSemantics) {
  // lr 0.01, betas (0.9, 0.999), eps 1e-8, weight decay 0.01. Step 1 by hand: p *= 1 - 1e-4;
  // m = 0.1 g, v = 0.001 g^2, bias corrections 0.1 and 0.001, so the step is
  // lr * g / (|g| + eps) = 0.01 * sign(g) (0 where g = 0): [0.9899, -0.48995, 1.9998]
  Attrs a;
  a.optim.weight_decay = 0.01f;
  const Sequence want = {{0.989900001f, -0.48995f, 1.9998f},
                         {0.9806232f, -0.487237635f, 2.00704139f},
                         {0.9779461f, -0.491762229f, 2.00912709f}};
  // m and v hold garbage before the first step: the first step must start them at zero.
  for (bool reference : {false, true})
    expect_sequence(run_steps(OpKind::kAdamWUpdate, a, 0.01f,
                              {vec({kNaN, kNaN, kNaN}), vec({kNaN, kNaN, kNaN})}, reference),
                    want, reference ? "reference" : "fast");
}

TEST(AdamW, OtherBetasEpsAndLrScaleMatchTorchSemantics) {
  // lr 0.1 (given as 0.4 * lr_scale 0.25), betas (0.8, 0.99), eps 1e-3, weight decay 0.1.
  // Step 1: p *= 0.99; step = 0.1 * g / (|g| + 1e-3) -> [0.890990099, -0.395497512, 1.98]
  Attrs a;
  a.optim.beta1 = 0.8f;
  a.optim.beta2 = 0.99f;
  a.optim.eps = 1e-3f;
  a.optim.weight_decay = 0.1f;
  a.optim.lr_scale = 0.25f;
  const Sequence want = {{0.890990099f, -0.395497512f, 1.98f},
                         {0.788276304f, -0.370561727f, 2.03846036f},
                         {0.760774727f, -0.421021703f, 2.03707492f}};
  for (bool reference : {false, true})
    expect_sequence(run_steps(OpKind::kAdamWUpdate, a, 0.4f, {vec({0, 0, 0}), vec({0, 0, 0})}, reference),
                    want, reference ? "reference" : "fast");
}

// 2^17 + 3 elements: split over 2 threads, ragged tail for the vector loops.
TEST(Optimizers, FastKernelsMatchReferenceOnALargeParameter) {
  const Shape shape{(1 << 17) + 3};
  const std::vector<float> p0 = testing::random_tensor(shape, 1).data;
  std::vector<std::vector<float>> grads;
  for (uint32_t s = 0; s < 3; ++s) grads.push_back(testing::random_tensor(shape, 2 + s).data);
  const HostTensor zeros{shape, std::vector<float>(p0.size(), 0.0f)};

  Attrs sgd;
  sgd.optim.momentum = 0.9f;
  sgd.optim.weight_decay = 1e-4f;
  sgd.optim.nesterov = true;
  Sequence fast = run_steps(OpKind::kSgdUpdate, sgd, 0.1f, {zeros}, false, p0, grads);
  Sequence ref = run_steps(OpKind::kSgdUpdate, sgd, 0.1f, {zeros}, true, p0, grads);
  for (size_t s = 0; s < 3; ++s) EXPECT_LT(testing::max_rel_error(fast[s], ref[s]), 1e-6) << "sgd step " << s + 1;

  Attrs adam;
  adam.optim.weight_decay = 0.05f;
  fast = run_steps(OpKind::kAdamWUpdate, adam, 1e-3f, {zeros, zeros}, false, p0, grads);
  ref = run_steps(OpKind::kAdamWUpdate, adam, 1e-3f, {zeros, zeros}, true, p0, grads);
  for (size_t s = 0; s < 3; ++s) EXPECT_LT(testing::max_rel_error(fast[s], ref[s]), 1e-6) << "adamw step " << s + 1;
}

// ---- learning-rate schedules ----

LrSchedule parse_ok(const std::string& text) {
  auto s = parse_lr_schedule(text);
  EXPECT_TRUE(s.is_ok()) << text << ": " << s.status().to_string();
  return s.is_ok() ? *s : LrSchedule{};
}

TEST(LrSchedule, ConstantIgnoresTheStep) {
  LrSchedule s = parse_ok("constant:lr=0.05");
  for (int64_t step : {0, 1, 999, 5000}) EXPECT_FLOAT_EQ(learning_rate_at(s, step, 1000), 0.05f);
}

TEST(LrSchedule, StepMultipliesByGammaEveryKUpdatesLikeTorchStepLR) {
  // torch StepLR(step_size=3, gamma=0.5) from lr 1: 1 1 1 0.5 0.5 0.5 0.25 0.25
  LrSchedule s = parse_ok("step:every=3,gamma=0.5,lr=1");
  const std::vector<float> want = {1, 1, 1, 0.5f, 0.5f, 0.5f, 0.25f, 0.25f};
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_FLOAT_EQ(learning_rate_at(s, static_cast<int64_t>(i), 100), want[i]) << "step " << i;
  EXPECT_FLOAT_EQ(parse_ok("step:every=10").gamma, 0.1f);  // torch's default gamma
}

TEST(LrSchedule, CosineWithoutWarmupMatchesTorchCosineAnnealing) {
  // torch CosineAnnealingLR(T_max=100) from lr 0.1, at steps 0/25/50/75/100:
  // 0.1, 0.0853553391, 0.05, 0.0146446609, 0 (and it stays at 0 afterwards here).
  LrSchedule s = parse_ok("cosine:lr=0.1");
  EXPECT_FLOAT_EQ(learning_rate_at(s, 0, 100), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 25, 100), 0.0853553391f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 50, 100), 0.05f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 75, 100), 0.0146446609f);
  EXPECT_NEAR(learning_rate_at(s, 100, 100), 0.0f, 1e-9);
  EXPECT_NEAR(learning_rate_at(s, 150, 100), 0.0f, 1e-9);
}

TEST(LrSchedule, CosineWarmsUpLinearlyThenDecaysOverTheRemainingSteps) {
  // warmup 10, total 110, lr 0.1: lr * (step + 1) / 10 for steps 0..9, then the cosine over the
  // 100 remaining steps: 0.1 at step 10, 0.05 at step 60, 0 at step 110.
  LrSchedule s = parse_ok("cosine:warmup=10,lr=0.1");
  EXPECT_EQ(s.warmup_steps, 10);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 0, 110), 0.01f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 4, 110), 0.05f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 9, 110), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 10, 110), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 35, 110), 0.0853553391f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 60, 110), 0.05f);
  EXPECT_NEAR(learning_rate_at(s, 110, 110), 0.0f, 1e-9);
  // A run shorter than its warm-up ends the warm-up at the floor.
  EXPECT_NEAR(learning_rate_at(s, 10, 5), 0.0f, 1e-9);
}

TEST(LrSchedule, CosineDecaysToMinLr) {
  // min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * t)): 0.1 -> 0.055 at half way -> 0.01
  LrSchedule s = parse_ok("cosine:min_lr=0.01,lr=0.1");
  EXPECT_FLOAT_EQ(learning_rate_at(s, 0, 100), 0.1f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 50, 100), 0.055f);
  EXPECT_FLOAT_EQ(learning_rate_at(s, 100, 100), 0.01f);
}

TEST(LrSchedule, ParseRejectsBadStringsAndNamesTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"cosin", "unknown kind 'cosin'"},
      {"", "unknown kind ''"},
      {"step", "every"},
      {"step:every=0", "every must be >= 1"},
      {"step:every=ten", "bad value 'ten' for key 'every'"},
      {"step:every=10,gamma=0", "gamma"},
      {"cosine:warmup=-1", "warmup must be >= 0"},
      {"cosine:warmup=1.5", "bad value '1.5'"},
      {"cosine:gamma=0.5", "unknown key 'gamma' for kind 'cosine'"},
      {"cosine:warmup=5,warmup=6", "key 'warmup' given twice"},
      {"cosine:", "nothing after ':'"},
      {"cosine:warmup", "'warmup' is not key=value"},
      {"constant:lr=nan", "bad value 'nan' for key 'lr'"},
      {"constant:lr=-1", "lr must be"},
      {"cosine:min_lr=-0.1", "min_lr must be"},
      {"cosine:min_lr=0.5,lr=0.1", "min_lr 0.5"},
  };
  for (const auto& [text, why] : cases) {
    auto s = parse_lr_schedule(text);
    ASSERT_FALSE(s.is_ok()) << "accepted \"" << text << "\"";
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(s.status().message().find(why), std::string::npos)
        << "\"" << text << "\" gave: " << s.status().message();
  }
}

TEST(LrSchedule, MinLrIsComparedWithLrOnlyOnceLrIsKnown) {
  // The command line gives the schedule and --lr separately: "cosine:min_lr=0.05" must parse
  // although 0.05 is above the default base_lr, and be rejected if --lr turns out lower.
  LrSchedule s = parse_ok("cosine:min_lr=0.05");
  s.base_lr = 0.1f;
  EXPECT_TRUE(validate_lr_schedule(s).is_ok());
  s.base_lr = 0.01f;
  Status st = validate_lr_schedule(s);
  ASSERT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("above lr"), std::string::npos) << st.message();
}

TEST(LrSchedule, ToStringParsesBackToTheSameSchedule) {
  for (const char* text : {"constant", "step:every=1000,gamma=0.1", "cosine:warmup=100,lr=0.003",
                           "cosine:min_lr=1e-05,lr=0.3"}) {
    const LrSchedule s = parse_ok(text);
    const LrSchedule back = parse_ok(lr_schedule_to_string(s));
    EXPECT_EQ(back.kind, s.kind) << text;
    EXPECT_EQ(back.base_lr, s.base_lr) << text;
    EXPECT_EQ(back.step_every, s.step_every) << text;
    EXPECT_EQ(back.gamma, s.gamma) << text;
    EXPECT_EQ(back.warmup_steps, s.warmup_steps) << text;
    EXPECT_EQ(back.min_lr, s.min_lr) << text;
  }
  EXPECT_EQ(lr_schedule_to_string(parse_ok("step:every=1000,gamma=0.1")),
            "step:lr=0.01,every=1000,gamma=0.1");
}

}  // namespace
}  // namespace edgetrain
