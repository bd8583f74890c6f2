// Softmax cross-entropy: hand-computed losses, stability with huge logits, the finite-difference
// check of the gradient with respect to the logits (in double), and fast against reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ops/loss.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::run_op;

struct Outputs {
  float loss;
  std::vector<float> probs;
};

Outputs forward(const HostTensor& logits, const std::vector<int32_t>& labels, float scale,
                bool reference) {
  Attrs a;
  a.loss.scale = scale;
  auto out = run_op(OpKind::kSoftmaxCrossEntropy, a, {logits, testing::labels_tensor(labels)},
                    {HostTensor{Shape{1}, {}}, HostTensor{logits.shape, {}}}, reference);
  return {out[0].data[0], out[1].data};
}

TEST(SoftmaxCrossEntropy, ShapeRuleChecksLogitsAndLabels) {
  auto ok = softmax_cross_entropy_output_shape(Shape{8, 10}, Shape{8});
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(*ok, (Shape{1}));
  auto bad_labels = softmax_cross_entropy_output_shape(Shape{8, 10}, Shape{4});
  ASSERT_FALSE(bad_labels.is_ok());
  EXPECT_NE(bad_labels.status().message().find("[4]"), std::string::npos) << bad_labels.status().message();
  EXPECT_FALSE(softmax_cross_entropy_output_shape(Shape{8, 1, 1, 10}, Shape{8}).is_ok());
}

TEST(SoftmaxCrossEntropy, ForwardMatchesHandComputedValues) {
  //   row 0 {0, 0, 0}, label 0 -> p = 1/3 each, -ln(1/3) = ln 3 = 1.0986123
  //   row 1 {1, 2, 3}, label 2 -> ln(e + e^2 + e^3) - 3 = 0.40760596
  // scale 0.5 (the batch mean): loss = 0.5 * (1.0986123 + 0.40760596) = 0.75310913
  HostTensor logits{Shape{2, 3}, {0, 0, 0, 1, 2, 3}};
  for (bool reference : {false, true}) {
    Outputs o = forward(logits, {0, 2}, 0.5f, reference);
    EXPECT_NEAR(o.loss, 0.75310913f, 1e-6) << "reference=" << reference;
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    const std::vector<double> want = {1 / 3.0, 1 / 3.0, 1 / 3.0, std::exp(1.0) / z,
                                      std::exp(2.0) / z, std::exp(3.0) / z};
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(o.probs[i], want[i], 1e-7) << i;
  }
}

TEST(SoftmaxCrossEntropy, ForwardIsFiniteForHugeLogits) {
  // exp(1000) overflows float and double; log-sum-exp subtracts the row maximum first.
  // Row 0, label 1: loss = 1000 - 0 = 1000 (p[1] underflows to 0, the loss must not be inf).
  // Row 1, label 0: the confident correct class, loss = log(1 + 2 e^-2000) = 0.
  HostTensor logits{Shape{2, 3}, {1000, 0, -1000, 3000, 1000, 1000}};
  for (bool reference : {false, true}) {
    Outputs o = forward(logits, {1, 0}, 1.0f, reference);
    EXPECT_FLOAT_EQ(o.loss, 1000.0f) << "reference=" << reference;
    EXPECT_EQ(o.probs, (std::vector<float>{1, 0, 0, 1, 0, 0})) << "reference=" << reference;
  }
}

TEST(SoftmaxCrossEntropy, OutOfRangeLabelGivesNanLossInsteadOfReadingOutOfBounds) {
  HostTensor logits{Shape{1, 3}, {0, 1, 2}};
  for (bool reference : {false, true}) {
    EXPECT_TRUE(std::isnan(forward(logits, {3}, 1.0f, reference).loss));
    EXPECT_TRUE(std::isnan(forward(logits, {-1}, 1.0f, reference).loss));
  }
}

TEST(SoftmaxCrossEntropy, GradientWithRespectToLogitsMatchesFiniteDifferences) {
  const int64_t n = 4, k = 7;
  const std::vector<int32_t> labels = {0, 6, 3, 3};
  const float scale = 0.25f;
  const std::vector<double> logits = testing::random_doubles(n * k, 21, -3.0, 3.0);
  auto fwd = [&](const std::vector<std::vector<double>>& v) {
    double loss = 0;
    std::vector<double> probs(n * k);
    softmax_cross_entropy_forward_naive<double>(n, k, scale, v[0].data(), labels.data(), &loss,
                                                probs.data());
    return std::vector<double>{loss};
  };
  auto bwd = [&](const std::vector<std::vector<double>>& v, const std::vector<double>& dy) {
    double loss = 0;
    std::vector<double> probs(n * k), dlogits(n * k);
    softmax_cross_entropy_forward_naive<double>(n, k, scale, v[0].data(), labels.data(), &loss,
                                                probs.data());
    softmax_cross_entropy_backward_naive<double>(n, k, scale, probs.data(), labels.data(),
                                                 dlogits.data(), false);
    for (double& g : dlogits) g *= dy[0];  // chain rule through the scalar output
    return std::vector<std::vector<double>>{dlogits};
  };
  EXPECT_LT(testing::gradient_check({logits}, {0}, fwd, bwd), 1e-8);
}

TEST(SoftmaxCrossEntropy, FastMatchesReferenceForImageNetSizedBatchWithAndWithoutAccumulation) {
  const int64_t n = 64, k = 1000;
  const HostTensor logits = testing::random_tensor(Shape{n, k}, 31, -10.0f, 10.0f);
  std::vector<int32_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = static_cast<int32_t>((i * 37) % k);
  const float scale = 1.0f / n;
  Outputs fast = forward(logits, labels, scale, false);
  Outputs ref = forward(logits, labels, scale, true);
  EXPECT_NEAR(fast.loss, ref.loss, 1e-5 * std::fabs(ref.loss));
  EXPECT_LT(testing::max_rel_error(fast.probs, ref.probs), 1e-6);

  const HostTensor probs{Shape{n, k}, ref.probs};
  const HostTensor lab = testing::labels_tensor(labels);
  for (uint32_t mask : {0u, 1u}) {
    Attrs a;
    a.loss.scale = scale;
    a.accumulate_mask = mask;
    HostTensor init = testing::random_tensor(Shape{n, k}, 32);
    if (!mask)
      for (float& v : init.data) v = std::numeric_limits<float>::quiet_NaN();
    for (int threads : {1, 2}) {
      auto d_fast = run_op(OpKind::kSoftmaxCrossEntropyBackward, a, {probs, lab}, {init}, false, threads);
      auto d_ref = run_op(OpKind::kSoftmaxCrossEntropyBackward, a, {probs, lab}, {init}, true);
      EXPECT_EQ(d_fast[0].data, d_ref[0].data) << "accumulate=" << mask << " threads=" << threads;
      // Each row of scale * (p - onehot) sums to 0 (before accumulation).
      if (!mask) {
        for (int64_t r = 0; r < n; ++r) {
          double s = 0;
          for (int64_t j = 0; j < k; ++j) s += d_ref[0].data[r * k + j];
          EXPECT_NEAR(s, 0.0, 1e-6) << "row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace edgetrain
