// Pooling: shape rules, hand-computed examples (max pool ties and -inf padding, avg pool
// count_include_pad), finite-difference gradient checks of the double references, and the fast
// kernels against the references across kernel/stride/pad, odd sizes, >64 channels and accumulate.
#include <gtest/gtest.h>

#include <cstring>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "ops/pooling.h"
#include "tests/support/op_harness.h"

namespace edgetrain {
namespace {

using testing::absent;
using testing::HostTensor;
using testing::max_rel_error;
using testing::random_tensor;
using testing::run_op;

HostTensor tensor(const Shape& shape, std::vector<float> data) {
  HostTensor t;
  t.shape = shape;
  t.data = std::move(data);
  return t;
}

Attrs pool_attrs(int kernel, int stride, int pad) {
  Attrs a;
  a.pool.kernel = kernel;
  a.pool.stride = stride;
  a.pool.pad = pad;
  return a;
}

Shape out_shape(const Shape& x, const Attrs& a) {
  Result<Shape> s = pool_output_shape(x, a.pool);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? *s : Shape{};
}

// --- shape rules ------------------------------------------------------------------------------

TEST(PoolShape, FloorOutputSizeLikeTorch) {
  EXPECT_EQ(out_shape({8, 112, 112, 64}, pool_attrs(3, 2, 1)), Shape({8, 56, 56, 64}));  // ResNet stem
  EXPECT_EQ(out_shape({1, 7, 5, 3}, pool_attrs(2, 2, 0)), Shape({1, 3, 2, 3}));
  EXPECT_EQ(out_shape({1, 7, 5, 3}, pool_attrs(3, 2, 1)), Shape({1, 4, 3, 3}));
  EXPECT_EQ(out_shape({2, 3, 3, 1}, pool_attrs(3, 1, 0)), Shape({2, 1, 1, 1}));
}

TEST(PoolShape, RejectsBadInputsWithClearMessages) {
  auto message = [](const Shape& x, const PoolAttrs& a) {
    Result<Shape> r = pool_output_shape(x, a);
    EXPECT_FALSE(r.is_ok()) << x.to_string();
    return r.is_ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(message({4, 4, 3}, pool_attrs(2, 2, 0).pool).find("rank 4"), std::string::npos);
  EXPECT_NE(message({1, 4, 4, 3}, pool_attrs(3, 1, 2).pool).find("at most half"), std::string::npos);
  EXPECT_NE(message({1, 2, 8, 3}, pool_attrs(3, 1, 0).pool).find("larger than padded input 2x8"),
            std::string::npos);
  EXPECT_NE(message({1, 4, 4, 3}, pool_attrs(2, 0, 0).pool).find("stride"), std::string::npos);
  EXPECT_NE(message({1, 4, 4, 3}, pool_attrs(0, 1, 0).pool).find("kernel"), std::string::npos);
  EXPECT_NE(message({1, 4, 4, 3}, pool_attrs(2, 1, -1).pool).find("pad"), std::string::npos);
  EXPECT_NE(message({0, 4, 4, 3}, pool_attrs(2, 2, 0).pool).find("empty"), std::string::npos);
  // kernel 2 on a 1x1 input is fine once padded (pad 1 <= 2/2).
  EXPECT_TRUE(pool_output_shape({1, 1, 1, 3}, pool_attrs(2, 1, 1).pool).is_ok());
}

TEST(PoolShape, GlobalAvgPoolMapsNhwcToNc) {
  Result<Shape> s = global_avg_pool_output_shape({3, 7, 7, 1280});
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(*s, Shape({3, 1280}));
  EXPECT_FALSE(global_avg_pool_output_shape({3, 1280}).is_ok());
}

// --- hand-computed examples, fast and reference -----------------------------------------------

class PoolBothKernels : public ::testing::TestWithParam<bool> {};  // param: reference

TEST_P(PoolBothKernels, MaxPoolGivesTheGradientToTheFirstOfTiedMaxima) {
  // 3x3 input, k2 s1: every 2x2 window holds two 5s; the first in row-major order wins.
  //   5 5 1
  //   5 5 1      windows (0,0): first 5 at (0,0); (0,1): (0,1); (1,0): (1,0); (1,1): (1,1)
  //   1 1 1
  HostTensor x = tensor({1, 3, 3, 1}, {5, 5, 1, 5, 5, 1, 1, 1, 1});
  Attrs a = pool_attrs(2, 1, 0);
  auto y = run_op(OpKind::kMaxPool, a, {x}, {HostTensor{{1, 2, 2, 1}}, HostTensor{{1, 2, 2, 1}}}, GetParam());
  EXPECT_EQ(y[0].data, std::vector<float>({5, 5, 5, 5}));
  HostTensor dy = tensor({1, 2, 2, 1}, {1, 10, 100, 1000});
  auto dx = run_op(OpKind::kMaxPoolBackward, a, {dy, y[1]}, {HostTensor{{1, 3, 3, 1}}}, GetParam());
  EXPECT_EQ(dx[0].data, std::vector<float>({1, 10, 0, 100, 1000, 0, 0, 0, 0}));
}

TEST_P(PoolBothKernels, MaxPoolPadsWithMinusInfinityNotZero) {
  // All inputs negative: zero padding would make every border output 0.
  HostTensor x = tensor({1, 2, 2, 1}, {-4, -3, -2, -1});
  Attrs a = pool_attrs(3, 1, 1);
  auto y = run_op(OpKind::kMaxPool, a, {x}, {HostTensor{{1, 2, 2, 1}}, HostTensor{{1, 2, 2, 1}}}, GetParam());
  EXPECT_EQ(y[0].data, std::vector<float>({-1, -1, -1, -1}));
  auto dx = run_op(OpKind::kMaxPoolBackward, a, {tensor({1, 2, 2, 1}, {1, 2, 3, 4}), y[1]},
                   {HostTensor{{1, 2, 2, 1}}}, GetParam());
  EXPECT_EQ(dx[0].data, std::vector<float>({0, 0, 0, 10}));
}

TEST_P(PoolBothKernels, AvgPoolCountsPaddingInTheDivisor) {
  // 2x2 ones, k3 s1 p1: each window holds 4 ones and 5 padding zeros -> 4/9 (count_include_pad).
  HostTensor x = tensor({1, 2, 2, 1}, {1, 1, 1, 1});
  Attrs a = pool_attrs(3, 1, 1);
  auto y = run_op(OpKind::kAvgPool, a, {x}, {HostTensor{{1, 2, 2, 1}}}, GetParam());
  for (float v : y[0].data) EXPECT_FLOAT_EQ(v, 4.0f / 9.0f);
  // Every input lies in all 4 windows: dx = (1+2+3+4)/9.
  auto dx = run_op(OpKind::kAvgPoolBackward, a, {tensor({1, 2, 2, 1}, {1, 2, 3, 4})},
                   {HostTensor{{1, 2, 2, 1}}}, GetParam());
  for (float v : dx[0].data) EXPECT_FLOAT_EQ(v, 10.0f / 9.0f);
}

TEST_P(PoolBothKernels, GlobalAvgPoolAveragesEachChannel) {
  HostTensor x = tensor({1, 2, 2, 2}, {1, 10, 2, 20, 3, 30, 4, 40});
  auto y = run_op(OpKind::kGlobalAvgPool, Attrs{}, {x}, {HostTensor{{1, 2}}}, GetParam());
  EXPECT_EQ(y[0].data, std::vector<float>({2.5f, 25.0f}));
  auto dx = run_op(OpKind::kGlobalAvgPoolBackward, Attrs{}, {tensor({1, 2}, {4, 8})},
                   {HostTensor{{1, 2, 2, 2}}}, GetParam());
  EXPECT_EQ(dx[0].data, std::vector<float>({1, 2, 1, 2, 1, 2, 1, 2}));
}

INSTANTIATE_TEST_SUITE_P(FastAndReference, PoolBothKernels, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Reference" : "Fast"; });

// --- gradient checks of the double references -------------------------------------------------

// Distinct values 0.01 apart in random order: no ties, and no window's maximum changes under a
// finite-difference step, so max pool is differentiable at the test point.
std::vector<double> distinct_values(int64_t n, uint32_t seed) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = -1.0 + 0.01 * double(i);
  std::shuffle(v.begin(), v.end(), std::mt19937(seed));
  return v;
}

double check_max_pool(const Shape& xs, const PoolAttrs& a) {
  const Shape ys = *pool_output_shape(xs, a);
  auto forward = [&](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(ys.numel());
    max_pool_forward_naive<double>(xs, a, in[0].data(), y.data(), nullptr);
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>& in, const std::vector<double>& dy) {
    std::vector<double> y(ys.numel()), dx(xs.numel(), 7.0);  // 7: must be overwritten
    std::vector<int32_t> argmax(ys.numel());
    max_pool_forward_naive<double>(xs, a, in[0].data(), y.data(), argmax.data());
    max_pool_backward_naive<double>(xs, a, dy.data(), argmax.data(), dx.data(), false);
    return std::vector<std::vector<double>>{dx};
  };
  return testing::gradient_check({distinct_values(xs.numel(), 3)}, {0}, forward, backward);
}

double check_avg_pool(const Shape& xs, const PoolAttrs& a) {
  const Shape ys = *pool_output_shape(xs, a);
  auto forward = [&](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(ys.numel());
    avg_pool_forward_naive<double>(xs, a, in[0].data(), y.data());
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>& in, const std::vector<double>& dy) {
    std::vector<double> dx(xs.numel(), 7.0);
    avg_pool_backward_naive<double>(xs, a, dy.data(), dx.data(), false);
    return std::vector<std::vector<double>>{dx};
  };
  return testing::gradient_check({testing::random_doubles(xs.numel(), 4)}, {0}, forward, backward);
}

TEST(PoolGradient, MaxPoolMatchesFiniteDifferences) {
  EXPECT_LT(check_max_pool({2, 7, 7, 3}, pool_attrs(3, 2, 1).pool), 1e-8);
  EXPECT_LT(check_max_pool({1, 6, 5, 2}, pool_attrs(2, 2, 0).pool), 1e-8);
  EXPECT_LT(check_max_pool({1, 5, 6, 2}, pool_attrs(3, 1, 1).pool), 1e-8);  // overlapping windows
}

TEST(PoolGradient, AvgPoolMatchesFiniteDifferencesWithPaddingStrideAndOddSizes) {
  EXPECT_LT(check_avg_pool({2, 7, 5, 3}, pool_attrs(3, 2, 1).pool), 1e-8);
  EXPECT_LT(check_avg_pool({1, 5, 7, 2}, pool_attrs(2, 2, 1).pool), 1e-8);
  EXPECT_LT(check_avg_pool({1, 6, 6, 2}, pool_attrs(3, 1, 0).pool), 1e-8);
}

TEST(PoolGradient, GlobalAvgPoolMatchesFiniteDifferences) {
  const Shape xs = {2, 3, 5, 4};
  auto forward = [&](const std::vector<std::vector<double>>& in) {
    std::vector<double> y(2 * 4);
    global_avg_pool_forward_naive<double>(xs, in[0].data(), y.data());
    return y;
  };
  auto backward = [&](const std::vector<std::vector<double>>&, const std::vector<double>& dy) {
    std::vector<double> dx(xs.numel(), 7.0);
    global_avg_pool_backward_naive<double>(xs, dy.data(), dx.data(), false);
    return std::vector<std::vector<double>>{dx};
  };
  EXPECT_LT(testing::gradient_check({testing::random_doubles(xs.numel(), 5)}, {0}, forward, backward), 1e-8);
}

// --- fast kernels against the references ------------------------------------------------------

struct PoolCase {
  Shape x;
  int kernel, stride, pad;
};

// C = 70 crosses the 64-channel block of max pool backward; odd H/W; 1..3 scatter phases.
const PoolCase kCases[] = {
    {{2, 17, 15, 70}, 3, 2, 1}, {{2, 16, 16, 70}, 2, 2, 0}, {{1, 13, 11, 70}, 3, 1, 1},
    {{2, 19, 17, 9}, 5, 3, 2},  {{1, 9, 9, 8}, 1, 2, 0},
};

// Values on a coarse grid: many ties, so the fast max pool backward must pick the same
// (first) maximum as the reference.
HostTensor tied_tensor(const Shape& s, uint32_t seed) {
  HostTensor t = random_tensor(s, seed, -2.0f, 2.0f);
  for (float& v : t.data) v = std::round(v * 2.0f) / 2.0f;
  return t;
}

TEST(PoolFast, MaxPoolForwardAndBackwardMatchReference) {
  for (const PoolCase& pc : kCases) {
    Attrs a = pool_attrs(pc.kernel, pc.stride, pc.pad);
    const Shape ys = out_shape(pc.x, a);
    for (bool ties : {false, true}) {
      HostTensor x = ties ? tied_tensor(pc.x, 61) : random_tensor(pc.x, 61);
      auto fast = run_op(OpKind::kMaxPool, a, {x}, {HostTensor{ys}, HostTensor{ys}}, false);
      auto ref = run_op(OpKind::kMaxPool, a, {x}, {HostTensor{ys}, HostTensor{ys}}, true);
      EXPECT_EQ(fast[0].data, ref[0].data) << pc.x.to_string() << " k" << pc.kernel;
      // The argmax positions (int32 bit patterns): compare bytes.
      EXPECT_EQ(std::memcmp(fast[1].data.data(), ref[1].data.data(), fast[1].data.size() * sizeof(float)), 0)
          << "argmax " << pc.x.to_string() << " k" << pc.kernel << " ties " << ties;
      // Without the argmax output (an evaluation graph) the same values.
      auto plain = run_op(OpKind::kMaxPool, a, {x}, {HostTensor{ys}}, false);
      EXPECT_EQ(plain[0].data, ref[0].data);
      HostTensor dy = random_tensor(ys, 62);
      for (bool accumulate : {false, true}) {
        a.accumulate_mask = accumulate ? 1u : 0u;
        auto dfast = run_op(OpKind::kMaxPoolBackward, a, {dy, ref[1]}, {random_tensor(pc.x, 63)}, false);
        auto dref = run_op(OpKind::kMaxPoolBackward, a, {dy, ref[1]}, {random_tensor(pc.x, 63)}, true);
        EXPECT_LT(max_rel_error(dfast[0].data, dref[0].data), 1e-6)
            << pc.x.to_string() << " k" << pc.kernel << " s" << pc.stride << " ties " << ties
            << " accumulate " << accumulate;
      }
    }
  }
}

TEST(PoolFast, AvgPoolForwardAndBackwardMatchReference) {
  for (const PoolCase& pc : kCases) {
    Attrs a = pool_attrs(pc.kernel, pc.stride, pc.pad);
    const Shape ys = out_shape(pc.x, a);
    HostTensor x = random_tensor(pc.x, 71);
    auto fast = run_op(OpKind::kAvgPool, a, {x}, {HostTensor{ys}}, false);
    auto ref = run_op(OpKind::kAvgPool, a, {x}, {HostTensor{ys}}, true);
    EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), 1e-6) << pc.x.to_string() << " k" << pc.kernel;
    HostTensor dy = random_tensor(ys, 72);
    for (bool accumulate : {false, true}) {
      a.accumulate_mask = accumulate ? 1u : 0u;
      auto dfast = run_op(OpKind::kAvgPoolBackward, a, {dy}, {random_tensor(pc.x, 73)}, false);
      auto dref = run_op(OpKind::kAvgPoolBackward, a, {dy}, {random_tensor(pc.x, 73)}, true);
      EXPECT_LT(max_rel_error(dfast[0].data, dref[0].data), 1e-6)
          << pc.x.to_string() << " k" << pc.kernel << " s" << pc.stride << " accumulate " << accumulate;
    }
  }
}

TEST(PoolFast, GlobalAvgPoolForwardAndBackwardMatchReference) {
  for (const Shape& xs : {Shape{3, 7, 7, 130}, Shape{2, 56, 56, 24}, Shape{1, 1, 1, 5}}) {
    const Shape ys = {xs[0], xs[3]};
    HostTensor x = random_tensor(xs, 81);
    auto fast = run_op(OpKind::kGlobalAvgPool, Attrs{}, {x}, {HostTensor{ys}}, false);
    auto ref = run_op(OpKind::kGlobalAvgPool, Attrs{}, {x}, {HostTensor{ys}}, true);
    EXPECT_LT(max_rel_error(fast[0].data, ref[0].data), 1e-6) << xs.to_string();
    HostTensor dy = random_tensor(ys, 82);
    for (bool accumulate : {false, true}) {
      Attrs a;
      a.accumulate_mask = accumulate ? 1u : 0u;
      auto dfast = run_op(OpKind::kGlobalAvgPoolBackward, a, {dy}, {random_tensor(xs, 83)}, false);
      auto dref = run_op(OpKind::kGlobalAvgPoolBackward, a, {dy}, {random_tensor(xs, 83)}, true);
      EXPECT_LT(max_rel_error(dfast[0].data, dref[0].data), 1e-6) << xs.to_string() << " acc " << accumulate;
    }
  }
}

TEST(PoolFast, BackwardWithNullOutputWritesNothing) {
  // A schedule may not need dx (everything before is frozen): the kernels must simply return.
  Attrs a = pool_attrs(3, 2, 1);
  const Shape xs = {1, 8, 8, 4}, ys = out_shape(xs, a);
  HostTensor x = random_tensor(xs, 91), dy = random_tensor(ys, 92);
  run_op(OpKind::kMaxPoolBackward, a, {dy, random_tensor(ys, 93)}, {absent(xs)}, false);
  run_op(OpKind::kAvgPoolBackward, a, {dy}, {absent(xs)}, false);
  run_op(OpKind::kGlobalAvgPoolBackward, Attrs{}, {random_tensor({1, 4}, 94)}, {absent(xs)}, false);
  SUCCEED();
}

}  // namespace
}  // namespace edgetrain
