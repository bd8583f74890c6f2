#include "tests/support/op_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/thread_pool.h"

namespace edgetrain::testing {

HostTensor random_tensor(const Shape& shape, uint32_t seed, float lo, float hi) {
  HostTensor t;
  t.shape = shape;
  t.data.resize(static_cast<size_t>(shape.numel()));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (float& v : t.data) v = dist(rng);
  return t;
}

HostTensor labels_tensor(const std::vector<int32_t>& labels) {
  HostTensor t;
  t.shape = Shape{static_cast<int64_t>(labels.size())};
  t.data.resize(labels.size());
  std::memcpy(t.data.data(), labels.data(), labels.size() * sizeof(int32_t));
  return t;
}

HostTensor absent(const Shape& shape) {
  HostTensor t;
  t.shape = shape;
  t.present = false;
  return t;
}

std::vector<HostTensor> run_op(OpKind op, const Attrs& attrs, const std::vector<HostTensor>& inputs,
                               std::vector<HostTensor> outputs, bool reference, int threads,
                               std::vector<HostTensor>* inputs_after, const StepScalars& step) {
  std::vector<HostTensor> in = inputs;
  std::vector<void*> in_ptr;
  std::vector<Shape> in_shape;
  for (HostTensor& t : in) {
    // Padding of 16 floats: kernels such as XNNPACK may read a little past the end.
    t.data.resize(t.data.size() + 16);
    in_ptr.push_back(t.present ? t.data.data() : nullptr);
    in_shape.push_back(t.shape);
  }
  std::vector<void*> out_ptr;
  std::vector<Shape> out_shape;
  for (HostTensor& t : outputs) {
    if (t.present && t.data.empty()) t.data.assign(static_cast<size_t>(t.shape.numel()), 0.0f);
    out_ptr.push_back(t.present ? t.data.data() : nullptr);
    out_shape.push_back(t.shape);
  }
  const OpInfo& info = op_info(op);
  size_t ws_bytes = info.workspace ? info.workspace(attrs, in_shape.data(), (int)in_shape.size(),
                                                    out_shape.data(), (int)out_shape.size())
                                   : 0;
  // The workspace starts as NaN (a kernel must not read what it did not write) and is followed
  // by a guard band that must come back untouched (a kernel must stay inside its workspace).
  constexpr size_t kGuardFloats = 64;
  constexpr float kGuard = 12345.678f;
  const size_t ws_floats = (ws_bytes + sizeof(float) - 1) / sizeof(float);
  std::vector<float> workspace(ws_floats + kGuardFloats, std::numeric_limits<float>::quiet_NaN());
  std::fill(workspace.begin() + static_cast<std::ptrdiff_t>(ws_floats), workspace.end(), kGuard);
  ThreadPool pool(threads);
  KernelCall call;
  call.attrs = &attrs;
  call.in = in_ptr.data();
  call.in_shape = in_shape.data();
  call.n_in = static_cast<int>(in_ptr.size());
  call.out = out_ptr.data();
  call.out_shape = out_shape.data();
  call.n_out = static_cast<int>(out_ptr.size());
  call.workspace = workspace.data();
  call.workspace_bytes = ws_bytes;
  call.parallel = pool.parallel();
  call.step = &step;
  (reference ? info.reference : info.fast)(call);
  for (size_t i = ws_floats; i < workspace.size(); ++i)
    if (workspace[i] != kGuard) {
      ADD_FAILURE() << op_name(op) << ": kernel wrote past its " << ws_bytes << "-byte workspace";
      break;
    }
  if (inputs_after) {
    for (HostTensor& t : in) t.data.resize(t.data.size() - 16);
    *inputs_after = in;
  }
  return outputs;
}

double max_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    double d = std::fabs(double(a[i]) - double(b[i])) / std::max(1.0, std::fabs(double(b[i])));
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

std::vector<double> random_doubles(size_t n, uint32_t seed, double lo, double hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

double gradient_check(const std::vector<std::vector<double>>& inputs, const std::vector<int>& wrt,
                      const ForwardD& forward, const BackwardD& backward, double eps, uint32_t seed) {
  std::vector<double> y = forward(inputs);
  std::vector<double> dy = random_doubles(y.size(), seed);
  auto loss = [&](const std::vector<std::vector<double>>& x) {
    std::vector<double> out = forward(x);
    double s = 0;
    for (size_t i = 0; i < out.size(); ++i) s += out[i] * dy[i];
    return s;
  };
  std::vector<std::vector<double>> analytic = backward(inputs, dy);
  double worst = 0;
  for (size_t k = 0; k < wrt.size(); ++k) {
    int idx = wrt[k];
    std::vector<std::vector<double>> x = inputs;
    EXPECT_EQ(analytic[k].size(), x[idx].size()) << "gradient " << k << " has the wrong size";
    for (size_t i = 0; i < x[idx].size(); ++i) {
      double orig = x[idx][i];
      x[idx][i] = orig + eps;
      double lp = loss(x);
      x[idx][i] = orig - eps;
      double lm = loss(x);
      x[idx][i] = orig;
      double num = (lp - lm) / (2 * eps);
      double err = std::fabs(num - analytic[k][i]) / std::max(1.0, std::fabs(num));
      worst = std::max(worst, err);
    }
  }
  return worst;
}

}  // namespace edgetrain::testing
