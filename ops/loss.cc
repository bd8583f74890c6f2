// Softmax cross-entropy over logits[N][K] with int32 labels[N].
//   forward   p[n][k] = exp(l[n][k] - m_n) / s_n,  m_n = max_k l[n][k],  s_n = sum_k exp(l[n][k] - m_n)
//             loss    = scale * sum_n (m_n + log s_n - l[n][label_n])   (log-sum-exp: no overflow,
//                       and no log(0) even when p underflows to 0)
//   backward  dlogits = scale * (p - onehot(label))                      (accumulate bit 0)
//
// A label outside [0, K) is a data-loader bug (they validate labels); rather than reading out of
// bounds the forward makes the loss NaN and the backward leaves that row's one-hot out.
#include "ops/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "runtime/status.h"

namespace edgetrain {
namespace {

// Elements per parallel chunk in the backward (an elementwise pass, memory-bound).
constexpr int64_t kMinElementsPerChunk = int64_t{1} << 15;

// One row of the forward in T with the row's sum of exps in Acc; writes the row's
// probabilities when p is not null (an evaluation-only schedule may not keep them) and returns
// the row's -log p[label].
template <typename T, typename Acc>
Acc softmax_row(int64_t k, const T* l, int32_t label, T* p) {
  T m = l[0];
  for (int64_t j = 1; j < k; ++j) m = l[j] > m ? l[j] : m;
  Acc s = 0;
  for (int64_t j = 0; j < k; ++j) {
    T e = std::exp(l[j] - m);
    if (p) p[j] = e;
    s += e;
  }
  if (p) {
    const T inv = T(1) / T(s);
    for (int64_t j = 0; j < k; ++j) p[j] *= inv;
  }
  if (label < 0 || label >= k) return std::numeric_limits<Acc>::quiet_NaN();
  return Acc(m) + std::log(s) - Acc(l[label]);
}

template <typename T>
void backward_rows(int64_t r0, int64_t r1, int64_t k, T scale, const T* probs,
                   const int32_t* labels, T* dlogits, bool accumulate) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* p = probs + r * k;
    T* d = dlogits + r * k;
    if (accumulate) {
      for (int64_t j = 0; j < k; ++j) d[j] += scale * p[j];
    } else {
      for (int64_t j = 0; j < k; ++j) d[j] = scale * p[j];
    }
    if (labels[r] >= 0 && labels[r] < k) d[labels[r]] -= scale;
  }
}

struct Dims {
  int64_t n, k;
};

Dims dims(const KernelCall& call) {  // in {logits[N,K] or probs[N,K], labels[N]}
  ET_CHECK(call.n_in >= 2 && call.n_out >= 1);
  const Shape& l = call.in_shape[0];
  ET_CHECK(l.rank == 2 && l[1] > 0 && call.in_shape[1].numel() == l[0]);
  return {l[0], l[1]};
}

}  // namespace

Result<Shape> softmax_cross_entropy_output_shape(const Shape& logits, const Shape& labels) {
  if (logits.rank != 2 || logits[0] <= 0 || logits[1] <= 0)
    return invalid_argument("softmax cross-entropy: logits " + logits.to_string() +
                            " must be [N, classes] with N, classes >= 1");
  if (labels.rank != 1 || labels[0] != logits[0])
    return invalid_argument("softmax cross-entropy: labels " + labels.to_string() +
                            " must be [N] with N = " + std::to_string(logits[0]) +
                            " (the batch of logits " + logits.to_string() + ")");
  return Shape{1};
}

template <typename T>
void softmax_cross_entropy_forward_naive(int64_t n, int64_t k, float scale, const T* logits,
                                         const int32_t* labels, T* loss, T* probs) {
  T total = 0;
  for (int64_t r = 0; r < n; ++r)
    total += softmax_row<T, T>(k, logits + r * k, labels[r], probs ? probs + r * k : nullptr);
  *loss = T(scale) * total;
}

template <typename T>
void softmax_cross_entropy_backward_naive(int64_t n, int64_t k, float scale, const T* probs,
                                          const int32_t* labels, T* dlogits, bool accumulate) {
  backward_rows<T>(0, n, k, T(scale), probs, labels, dlogits, accumulate);
}

template void softmax_cross_entropy_forward_naive<float>(int64_t, int64_t, float, const float*,
                                                         const int32_t*, float*, float*);
template void softmax_cross_entropy_forward_naive<double>(int64_t, int64_t, float, const double*,
                                                          const int32_t*, double*, double*);
template void softmax_cross_entropy_backward_naive<float>(int64_t, int64_t, float, const float*,
                                                          const int32_t*, float*, bool);
template void softmax_cross_entropy_backward_naive<double>(int64_t, int64_t, float, const double*,
                                                           const int32_t*, double*, bool);

// The forward stays on one thread: it is O(N*K) (at most a few hundred thousand exps, well under
// a percent of a training step) and splitting it would need a per-thread partial loss, i.e. a
// workspace. Row statistics and the batch sum are kept in double so the loss does not depend on
// the batch size's rounding.
void softmax_cross_entropy_forward(const KernelCall& call) {
  const Dims d = dims(call);
  const float* logits = call.in_f(0);
  const int32_t* labels = call.in_i32(1);
  float* probs = call.out_f(1);
  double total = 0;
  for (int64_t r = 0; r < d.n; ++r)
    total += softmax_row<float, double>(d.k, logits + r * d.k, labels[r],
                                        probs ? probs + r * d.k : nullptr);
  if (float* loss = call.out_f(0)) loss[0] = static_cast<float>(double(call.attrs->loss.scale) * total);
}

void softmax_cross_entropy_forward_reference(const KernelCall& call) {
  const Dims d = dims(call);
  float loss = 0;
  softmax_cross_entropy_forward_naive<float>(d.n, d.k, call.attrs->loss.scale, call.in_f(0),
                                             call.in_i32(1), &loss, call.out_f(1));
  if (call.out_f(0)) call.out_f(0)[0] = loss;
}

void softmax_cross_entropy_backward(const KernelCall& call) {
  const Dims d = dims(call);
  float* dlogits = call.out_f(0);
  if (dlogits == nullptr) return;
  const float* probs = call.in_f(0);
  const int32_t* labels = call.in_i32(1);
  const float scale = call.attrs->loss.scale;
  const bool acc = call.attrs->accumulates(0);
  const int64_t min_rows = std::max<int64_t>(1, kMinElementsPerChunk / d.k);
  call.parallel.for_each(d.n, min_rows, [&](int64_t r0, int64_t r1) {
    backward_rows<float>(r0, r1, d.k, scale, probs, labels, dlogits, acc);
  });
}

void softmax_cross_entropy_backward_reference(const KernelCall& call) {
  const Dims d = dims(call);
  if (call.out_f(0) == nullptr) return;
  softmax_cross_entropy_backward_naive<float>(d.n, d.k, call.attrs->loss.scale, call.in_f(0),
                                              call.in_i32(1), call.out_f(0), call.attrs->accumulates(0));
}

}  // namespace edgetrain
