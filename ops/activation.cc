// ReLU and ReLU6: forward y = clamp(x, 0, cap) and backward dx = dy * [0 < y < cap], computed
// from the forward *output* so that only the post-activation tensor has to be kept.
//
// NaN passes through the forward (like torch.relu) so that a diverging run stays visible in the
// loss instead of being silently clamped to 0.
#include "ops/activation.h"

#include "runtime/status.h"

namespace edgetrain {
namespace {

// ReLU6's cap; plain ReLU passes a cap <= 0, meaning "no upper bound".
constexpr float kRelu6Cap = 6.0f;
// Below this many elements a parallel dispatch costs more than it saves (elementwise ops run at
// memory speed: 32K floats are 128 KiB, a few microseconds).
constexpr int64_t kMinChunk = int64_t{1} << 15;

// `x < 0 ? 0 : x` rather than std::max: it keeps NaN and still compiles to one vector max/blend.
template <typename T, bool kHasCap>
inline T clamp_unit(T x, T cap) {
  T v = x < T(0) ? T(0) : x;
  if constexpr (kHasCap) v = v > cap ? cap : v;
  return v;
}

template <typename T, bool kHasCap>
inline bool active(T y, T cap) {
  if constexpr (kHasCap) return (y > T(0)) & (y < cap);  // '&', not '&&': no branch in the loop
  return y > T(0);
}

// The fast loops: each instantiation is a straight loop over [b, e) without branches on options,
// so the compiler vectorises it.
template <bool kHasCap>
void forward_range(int64_t b, int64_t e, float cap, const float* x, float* y) {
  for (int64_t i = b; i < e; ++i) y[i] = clamp_unit<float, kHasCap>(x[i], cap);
}

template <bool kHasCap, bool kAccumulate>
void backward_range(int64_t b, int64_t e, float cap, const float* dy, const float* y, float* dx) {
  // No __restrict: dx may alias dy (an in-place backward) and y may alias x in the forward;
  // each element is read before it is written, and the compiler versions the loop for aliasing.
  for (int64_t i = b; i < e; ++i) {
    float g = active<float, kHasCap>(y[i], cap) ? dy[i] : 0.0f;
    if constexpr (kAccumulate) dx[i] += g;
    else dx[i] = g;
  }
}

void check_same_numel(const KernelCall& call, int n_in) {
  ET_CHECK(call.n_in >= n_in && call.n_out >= 1);
  for (int i = 1; i < n_in; ++i) ET_CHECK(call.in_shape[i].numel() == call.in_shape[0].numel());
  ET_CHECK(call.out_shape[0].numel() == call.in_shape[0].numel());
}

void forward_fast(const KernelCall& call, float cap) {
  check_same_numel(call, 1);
  const float* x = call.in_f(0);
  float* y = call.out_f(0);
  if (y == nullptr) return;
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t b, int64_t e) {
    if (cap > 0) forward_range<true>(b, e, cap, x, y);
    else forward_range<false>(b, e, cap, x, y);
  });
}

void backward_fast(const KernelCall& call, float cap) {
  check_same_numel(call, 2);
  const float* dy = call.in_f(0);
  const float* y = call.in_f(1);
  float* dx = call.out_f(0);
  if (dx == nullptr) return;
  const bool acc = call.attrs->accumulates(0);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t b, int64_t e) {
    if (cap > 0) {
      if (acc) backward_range<true, true>(b, e, cap, dy, y, dx);
      else backward_range<true, false>(b, e, cap, dy, y, dx);
    } else {
      if (acc) backward_range<false, true>(b, e, cap, dy, y, dx);
      else backward_range<false, false>(b, e, cap, dy, y, dx);
    }
  });
}

void forward_reference(const KernelCall& call, float cap) {
  check_same_numel(call, 1);
  if (call.out_f(0) == nullptr) return;
  relu_forward_naive<float>(call.in_shape[0].numel(), cap, call.in_f(0), call.out_f(0));
}

void backward_reference(const KernelCall& call, float cap) {
  check_same_numel(call, 2);
  if (call.out_f(0) == nullptr) return;
  relu_backward_naive<float>(call.in_shape[0].numel(), cap, call.in_f(0), call.in_f(1),
                             call.out_f(0), call.attrs->accumulates(0));
}

}  // namespace

template <typename T>
void relu_forward_naive(int64_t n, float cap, const T* x, T* y) {
  for (int64_t i = 0; i < n; ++i) {
    T v = x[i] < T(0) ? T(0) : x[i];
    if (cap > 0 && v > T(cap)) v = T(cap);
    y[i] = v;
  }
}

template <typename T>
void relu_backward_naive(int64_t n, float cap, const T* dy, const T* y, T* dx, bool accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    bool on = y[i] > T(0) && (cap <= 0 || y[i] < T(cap));
    T g = on ? dy[i] : T(0);
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

template void relu_forward_naive<float>(int64_t, float, const float*, float*);
template void relu_forward_naive<double>(int64_t, float, const double*, double*);
template void relu_backward_naive<float>(int64_t, float, const float*, const float*, float*, bool);
template void relu_backward_naive<double>(int64_t, float, const double*, const double*, double*, bool);

void relu_forward(const KernelCall& call) { forward_fast(call, 0.0f); }
void relu_forward_reference(const KernelCall& call) { forward_reference(call, 0.0f); }
void relu_backward(const KernelCall& call) { backward_fast(call, 0.0f); }
void relu_backward_reference(const KernelCall& call) { backward_reference(call, 0.0f); }
void relu6_forward(const KernelCall& call) { forward_fast(call, kRelu6Cap); }
void relu6_forward_reference(const KernelCall& call) { forward_reference(call, kRelu6Cap); }
void relu6_backward(const KernelCall& call) { backward_fast(call, kRelu6Cap); }
void relu6_backward_reference(const KernelCall& call) { backward_reference(call, kRelu6Cap); }

}  // namespace edgetrain
