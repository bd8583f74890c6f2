// Optimizer updates, in place, one node per trainable parameter, with torch.optim semantics.
//
// SGD (torch.optim.SGD, maximize=False):
//   g   = grad + weight_decay * p                       (L2 folded into the gradient)
//   buf = g                                  on the first step (optimizer_step == 1)
//   buf = momentum * buf + (1 - dampening) * g           afterwards        (only if momentum != 0)
//   g   = g + momentum * buf  (nesterov)  or  g = buf    (only if momentum != 0)
//   p   = p - lr * g
//
// AdamW (torch.optim.AdamW, amsgrad=False), t = optimizer_step (1-based):
//   p   = p * (1 - lr * weight_decay)                    (decoupled decay, before the Adam step)
//   m   = beta1 * m + (1 - beta1) * g                    (m = 0 before step 1)
//   v   = beta2 * v + (1 - beta2) * g * g                (v = 0 before step 1)
//   p   = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// lr = step.learning_rate * attrs.optim.lr_scale. The state buffers are (re)initialised on the
// first step, as torch creates them then, so their memory need not be zeroed by the caller.
//
// The naive functions are the element loops, written without per-element branches so that the
// compiler vectorises them; the fast kernels run them on disjoint chunks of the parameter on
// the thread pool (elementwise: chunking changes no result).
#include "optimizer/update_kernels.h"

#include <cmath>

#include "runtime/status.h"

namespace edgetrain {
namespace {

// Elements per parallel chunk: an update touches 3-4 floats per element at memory speed.
constexpr int64_t kMinChunk = int64_t{1} << 14;

float learning_rate(const KernelCall& call) {
  ET_CHECK(call.step != nullptr && call.attrs != nullptr);
  return call.step->learning_rate * call.attrs->optim.lr_scale;
}

}  // namespace

void sgd_update_naive(int64_t n, const OptimAttrs& a, float lr, float* param, const float* grad,
                      float* momentum_buffer, bool first_step) {
  const float wd = a.weight_decay, mu = a.momentum, keep = 1.0f - a.dampening;
  if (mu == 0.0f) {
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + wd * param[i]);
    return;
  }
  ET_CHECK(momentum_buffer != nullptr);
  float* buf = momentum_buffer;
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] + wd * param[i];
    const float b = first_step ? g : mu * buf[i] + keep * g;
    buf[i] = b;
    param[i] -= lr * (a.nesterov ? g + mu * b : b);
  }
}

void sgd_momentum_decay_naive(int64_t n, const OptimAttrs& a, const float* param, float* momentum_buffer,
                              bool first_step) {
  if (!first_step) return;  // decayed by the previous step's apply
  const float wd = a.weight_decay;
  for (int64_t i = 0; i < n; ++i) momentum_buffer[i] = wd * param[i];  // the buffer held no state yet
}

void sgd_apply_momentum_naive(int64_t n, const OptimAttrs& a, float lr, float* param, float* momentum_buffer) {
  const float wd = a.weight_decay, mu = a.momentum;
  float* buf = momentum_buffer;
  if (wd == 0.0f) {  // no weight decay: the decay needs no parameter
    for (int64_t i = 0; i < n; ++i) {
      param[i] -= lr * buf[i];
      buf[i] = mu * buf[i];
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float p = param[i] - lr * buf[i];
    param[i] = p;
    buf[i] = mu * buf[i] + wd * p;
  }
}

void adamw_update_naive(int64_t n, const OptimAttrs& a, float lr, int64_t step, float* param,
                        const float* grad, float* m, float* v) {
  ET_CHECK(step >= 1);
  // Step scalars in double, as torch computes them in Python before the tensor ops.
  const double t = static_cast<double>(step);
  const float decay = static_cast<float>(1.0 - double(lr) * double(a.weight_decay));
  const float step_size = static_cast<float>(double(lr) / (1.0 - std::pow(double(a.beta1), t)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(double(a.beta2), t)));
  const float one_minus_b1 = 1.0f - a.beta1, one_minus_b2 = 1.0f - a.beta2;
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps;
  const bool fresh = step == 1;  // moments start at zero
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i];
    const float m0 = fresh ? 0.0f : m[i];
    const float v0 = fresh ? 0.0f : v[i];
    const float mi = b1 * m0 + one_minus_b1 * g;
    const float vi = b2 * v0 + one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    param[i] = param[i] * decay - step_size * (mi / denom);
  }
}

void sgd_update(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2);
  const OptimAttrs& a = call.attrs->optim;
  const float lr = learning_rate(call);
  const bool first = call.step->optimizer_step == 1;
  float* p = call.in_f(0);
  const float* g = call.in_f(1);
  float* buf = call.in_f(2);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t b, int64_t e) {
    sgd_update_naive(e - b, a, lr, p + b, g + b, buf ? buf + b : nullptr, first);
  });
}

void sgd_update_reference(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2);
  sgd_update_naive(call.in_shape[0].numel(), call.attrs->optim, learning_rate(call), call.in_f(0),
                   call.in_f(1), call.in_f(2), call.step->optimizer_step == 1);
}

void sgd_momentum_decay(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2);
  // Only the first step writes the buffer (later ones were decayed by the previous apply): the
  // others return before the parallel loop, which woke the second thread for nothing (the
  // 2026-12-08 profile's two-thread samples: 30-60 ns for parameters over 300 KB, 5 ns below).
  if (call.step->optimizer_step != 1) return;
  const OptimAttrs& a = call.attrs->optim;
  const float* p = call.in_f(0);
  float* buf = call.in_f(1);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t b, int64_t e) {
    sgd_momentum_decay_naive(e - b, a, p + b, buf + b, /*first_step=*/true);
  });
}

void sgd_momentum_decay_reference(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2);
  sgd_momentum_decay_naive(call.in_shape[0].numel(), call.attrs->optim, call.in_f(0), call.in_f(1),
                           call.step->optimizer_step == 1);
}

void sgd_apply_momentum(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2);
  const OptimAttrs& a = call.attrs->optim;
  const float lr = learning_rate(call);
  float* p = call.in_f(0);
  float* buf = call.in_f(1);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t b, int64_t e) {
    sgd_apply_momentum_naive(e - b, a, lr, p + b, buf + b);
  });
}

void sgd_apply_momentum_reference(const KernelCall& call) {
  ET_CHECK(call.n_in >= 2);
  sgd_apply_momentum_naive(call.in_shape[0].numel(), call.attrs->optim, learning_rate(call), call.in_f(0),
                           call.in_f(1));
}

void adamw_update(const KernelCall& call) {
  ET_CHECK(call.n_in >= 4);
  const OptimAttrs& a = call.attrs->optim;
  const float lr = learning_rate(call);
  const int64_t t = call.step->optimizer_step;
  float* p = call.in_f(0);
  const float* g = call.in_f(1);
  float* m = call.in_f(2);
  float* v = call.in_f(3);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t b, int64_t e) {
    adamw_update_naive(e - b, a, lr, t, p + b, g + b, m + b, v + b);
  });
}

void adamw_update_reference(const KernelCall& call) {
  ET_CHECK(call.n_in >= 4);
  adamw_update_naive(call.in_shape[0].numel(), call.attrs->optim, learning_rate(call),
                     call.step->optimizer_step, call.in_f(0), call.in_f(1), call.in_f(2),
                     call.in_f(3));
}

}  // namespace edgetrain
