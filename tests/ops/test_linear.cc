// Linear layer: the shape rule, a hand-computed forward, finite-difference checks of every naive
// backward in double, and the GEMM kernels against the naive ones with every accumulate / null
// output combination.
#include <gtest/gtest.h>

#include <limits>

#include "ops/linear.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::HostTensor;
using testing::run_op;

bool mentions(const Status& s, const std::string& what) {
  return s.message().find(what) != std::string::npos;
}

TEST(Linear, OutputShapeRuleAcceptsMatchingShapesAndExplainsMismatches) {
  auto ok = linear_output_shape(Shape{8, 1280}, Shape{10, 1280});
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, (Shape{8, 10}));

  auto not_flat = linear_output_shape(Shape{8, 1, 1, 1280}, Shape{10, 1280});
  ASSERT_FALSE(not_flat.is_ok());
  EXPECT_TRUE(mentions(not_flat.status(), "[8, 1, 1, 1280]")) << not_flat.status().message();
  EXPECT_TRUE(mentions(not_flat.status(), "flatten")) << not_flat.status().message();

  auto mismatch = linear_output_shape(Shape{8, 512}, Shape{10, 1280});
  ASSERT_FALSE(mismatch.is_ok());
  EXPECT_EQ(mismatch.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(mentions(mismatch.status(), "1280")) << mismatch.status().message();
  EXPECT_TRUE(mentions(mismatch.status(), "512")) << mismatch.status().message();

  EXPECT_FALSE(linear_output_shape(Shape{8, 4}, Shape{4}).is_ok());
  EXPECT_FALSE(linear_output_shape(Shape{0, 4}, Shape{3, 4}).is_ok());
}

TEST(Linear, ForwardComputesXTimesWTransposedPlusBias) {
  // x = [[1, 2]], w = [[1, 0], [0, 1], [1, 1]] (3 outputs, 2 inputs), b = [10, 20, 30]
  // y = [1 + 10, 2 + 20, 3 + 30]
  HostTensor x{Shape{1, 2}, {1, 2}};
  HostTensor w{Shape{3, 2}, {1, 0, 0, 1, 1, 1}};
  HostTensor b{Shape{3}, {10, 20, 30}};
  for (bool reference : {false, true}) {
    auto y = run_op(OpKind::kLinear, Attrs{}, {x, w, b}, {HostTensor{Shape{1, 3}, {}}}, reference);
    EXPECT_EQ(y[0].data, (std::vector<float>{11, 22, 33})) << "reference=" << reference;
    auto y_nobias = run_op(OpKind::kLinear, Attrs{}, {x, w, testing::absent(Shape{3})},
                           {HostTensor{Shape{1, 3}, {}}}, reference);
    EXPECT_EQ(y_nobias[0].data, (std::vector<float>{1, 2, 3})) << "reference=" << reference;
  }
}

TEST(Linear, NaiveBackwardMatchesFiniteDifferencesForInputWeightAndBias) {
  const int64_t n = 3, in = 5, out = 4;
  const std::vector<double> x = testing::random_doubles(n * in, 1);
  const std::vector<double> w = testing::random_doubles(out * in, 2);
  const std::vector<double> b = testing::random_doubles(out, 3);
  auto forward = [&](const std::vector<std::vector<double>>& v) {
    std::vector<double> y(n * out);
    linear_forward_naive<double>(n, in, out, v[0].data(), v[1].data(), v[2].data(), y.data());
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>& v, const std::vector<double>& dy) {
    std::vector<double> dx(n * in), dw(out * in), db(out);
    linear_backward_data_naive<double>(n, in, out, dy.data(), v[1].data(), dx.data(), false);
    linear_backward_weight_naive<double>(n, in, out, dy.data(), v[0].data(), dw.data(), db.data(),
                                         false, false);
    return std::vector<std::vector<double>>{dx, dw, db};
  };
  EXPECT_LT(testing::gradient_check({x, w, b}, {0, 1, 2}, forward, backward), 1e-8);
}

// Outputs that the kernel must overwrite start as NaN, so a kernel that reads them fails.
HostTensor initial(const Shape& shape, bool accumulate, uint32_t seed) {
  HostTensor t = testing::random_tensor(shape, seed);
  if (!accumulate)
    for (float& v : t.data) v = std::numeric_limits<float>::quiet_NaN();
  return t;
}

struct Dims {
  int64_t n, in, out;
};
// Fast and naive kernels sum in different orders: float rounding grows with the length k of the
// reduction. A wrong index or a missing term gives errors of order 1, far above this.
double tolerance(int64_t k) { return 1e-6 + 2e-7 * double(k); }
// A degenerate GEMM, a small odd one, and the MobileNetV2 classifier at batch 8.
const Dims kDims[] = {{1, 1, 1}, {5, 7, 3}, {37, 129, 65}, {8, 1280, 10}};

TEST(Linear, ForwardGemmMatchesNaiveWithAndWithoutBias) {
  for (const Dims& d : kDims) {
    const HostTensor x = testing::random_tensor(Shape{d.n, d.in}, 1);
    const HostTensor w = testing::random_tensor(Shape{d.out, d.in}, 2);
    const HostTensor b = testing::random_tensor(Shape{d.out}, 3);
    for (bool bias : {false, true}) {
      const HostTensor bb = bias ? b : testing::absent(b.shape);
      const HostTensor y0 = initial(Shape{d.n, d.out}, false, 4);
      auto fast = run_op(OpKind::kLinear, Attrs{}, {x, w, bb}, {y0}, false);
      auto ref = run_op(OpKind::kLinear, Attrs{}, {x, w, bb}, {y0}, true);
      EXPECT_LT(testing::max_rel_error(fast[0].data, ref[0].data), tolerance(d.in))
          << "n=" << d.n << " in=" << d.in << " out=" << d.out << " bias=" << bias;
    }
  }
}

TEST(Linear, BackwardDataGemmMatchesNaiveWithAndWithoutAccumulation) {
  for (const Dims& d : kDims) {
    const HostTensor dy = testing::random_tensor(Shape{d.n, d.out}, 5);
    const HostTensor w = testing::random_tensor(Shape{d.out, d.in}, 6);
    for (bool acc : {false, true}) {
      Attrs a;
      a.accumulate_mask = acc ? 1u : 0u;
      const HostTensor dx0 = initial(Shape{d.n, d.in}, acc, 7);
      auto fast = run_op(OpKind::kLinearBackwardData, a, {dy, w}, {dx0}, false);
      auto ref = run_op(OpKind::kLinearBackwardData, a, {dy, w}, {dx0}, true);
      EXPECT_LT(testing::max_rel_error(fast[0].data, ref[0].data), tolerance(d.out))
          << "n=" << d.n << " in=" << d.in << " out=" << d.out << " accumulate=" << acc;
    }
  }
}

TEST(Linear, BackwardWeightGemmMatchesNaiveForEveryAccumulateMaskAndNullOutput) {
  for (const Dims& d : kDims) {
    const HostTensor dy = testing::random_tensor(Shape{d.n, d.out}, 8);
    const HostTensor x = testing::random_tensor(Shape{d.n, d.in}, 9);
    for (uint32_t mask = 0; mask < 4; ++mask) {
      for (int present = 1; present < 4; ++present) {  // bit 0: dw present, bit 1: db present
        Attrs a;
        a.accumulate_mask = mask;
        HostTensor dw0 = initial(Shape{d.out, d.in}, mask & 1u, 10);
        HostTensor db0 = initial(Shape{d.out}, mask & 2u, 11);
        if (!(present & 1)) dw0 = testing::absent(dw0.shape);
        if (!(present & 2)) db0 = testing::absent(db0.shape);
        auto fast = run_op(OpKind::kLinearBackwardWeight, a, {dy, x}, {dw0, db0}, false);
        auto ref = run_op(OpKind::kLinearBackwardWeight, a, {dy, x}, {dw0, db0}, true);
        const std::string what = "n=" + std::to_string(d.n) + " in=" + std::to_string(d.in) +
                                 " out=" + std::to_string(d.out) + " mask=" + std::to_string(mask) +
                                 " present=" + std::to_string(present);
        if (present & 1) {
          EXPECT_LT(testing::max_rel_error(fast[0].data, ref[0].data), tolerance(d.n)) << what;
        }
        if (present & 2) {
          EXPECT_LT(testing::max_rel_error(fast[1].data, ref[1].data), tolerance(d.n)) << what;
        }
      }
    }
  }
}

}  // namespace
}  // namespace edgetrain
