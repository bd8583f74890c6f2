// Residual add, gradient copy and flatten: memory-bound loops, split over the thread pool when a
// tensor is big enough for the split to pay.
#include "ops/elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace edgetrain {
namespace {

// 32K floats (128 KiB) per chunk at least: below that, waking a worker costs more than it saves.
constexpr int64_t kMinChunk = int64_t{1} << 15;

void check_same_numel(const KernelCall& call, int n_in) {
  ET_CHECK(call.n_in >= n_in && call.n_out >= 1);
  for (int i = 1; i < n_in; ++i) ET_CHECK(call.in_shape[i].numel() == call.in_shape[0].numel());
  ET_CHECK(call.out_shape[0].numel() == call.in_shape[0].numel());
}

}  // namespace

Result<Shape> add_output_shape(const Shape& a, const Shape& b) {
  if (a != b)
    return invalid_argument("add: operand shapes differ: " + a.to_string() + " vs " +
                            b.to_string() + " (residual adds need equal shapes, no broadcasting)");
  return a;
}

Result<Shape> flatten_output_shape(const Shape& x) {
  if (x.rank < 1) return invalid_argument("flatten: input " + x.to_string() + " has rank 0, need [N, ...]");
  int64_t k = 1;
  for (int i = 1; i < x.rank; ++i) k *= x[i];
  return Shape{x[0], k};
}

// y = a + b, clamped to [lo, hi] by a fused activation (runtime/fusion.h).
void add_forward(const KernelCall& call) {
  check_same_numel(call, 2);
  const float* a = call.in_f(0);
  const float* b = call.in_f(1);
  float* y = call.out_f(0);
  if (y == nullptr) return;
  const FusedActivation act = call.attrs->activation;
  const float lo = fused_activation_low(act), hi = fused_activation_high(act);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t i0, int64_t i1) {
    if (act == FusedActivation::kNone) {
      for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
    } else {
      for (int64_t i = i0; i < i1; ++i) y[i] = std::min(std::max(a[i] + b[i], lo), hi);
    }
  });
}

void add_forward_reference(const KernelCall& call) {
  check_same_numel(call, 2);
  float* y = call.out_f(0);
  if (y == nullptr) return;
  const FusedActivation act = call.attrs->activation;
  const float lo = fused_activation_low(act), hi = fused_activation_high(act);
  const int64_t n = call.in_shape[0].numel();
  for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(call.in_f(0)[i] + call.in_f(1)[i], lo), hi);
}

void grad_copy(const KernelCall& call) {
  check_same_numel(call, 1);
  const float* dy = call.in_f(0);
  float* dx = call.out_f(0);
  if (dx == nullptr) return;
  const bool acc = call.attrs->accumulates(0);
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t lo, int64_t hi) {
    if (acc) {
      for (int64_t i = lo; i < hi; ++i) dx[i] += dy[i];
    } else if (dx != dy) {
      std::memcpy(dx + lo, dy + lo, static_cast<size_t>(hi - lo) * sizeof(float));
    }
  });
}

void grad_copy_reference(const KernelCall& call) {
  check_same_numel(call, 1);
  if (call.out_f(0) == nullptr) return;
  const bool acc = call.attrs->accumulates(0);
  const int64_t n = call.in_shape[0].numel();
  for (int64_t i = 0; i < n; ++i)
    call.out_f(0)[i] = acc ? call.out_f(0)[i] + call.in_f(0)[i] : call.in_f(0)[i];
}

// Flatten is a copy (not a view) so that every value owns its own arena slot; the bytes are the
// same because [N,H,W,C] row-major already is [N, H*W*C].
void flatten_forward(const KernelCall& call) {
  check_same_numel(call, 1);
  const float* x = call.in_f(0);
  float* y = call.out_f(0);
  if (y == nullptr || y == x) return;
  call.parallel.for_each(call.in_shape[0].numel(), kMinChunk, [&](int64_t lo, int64_t hi) {
    std::memcpy(y + lo, x + lo, static_cast<size_t>(hi - lo) * sizeof(float));
  });
}

}  // namespace edgetrain
