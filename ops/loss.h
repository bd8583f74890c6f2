// Softmax cross-entropy over class logits [N][K] with integer labels. Forward writes the scaled
// loss and the softmax probabilities (kept for backward; the probs output may be null when only
// the loss is wanted); backward writes scale * (probs - onehot(labels)). Labels outside [0, K)
// are rejected before a step runs (the data loaders check them); the kernel does not read out of
// bounds for one, it makes the loss NaN instead.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

// Shape rule: logits [N, K] with K >= 1, labels [N]; returns the loss shape [1].
Result<Shape> softmax_cross_entropy_output_shape(const Shape& logits, const Shape& labels);

template <typename T>
void softmax_cross_entropy_forward_naive(int64_t n, int64_t k, float scale, const T* logits,
                                         const int32_t* labels, T* loss, T* probs);
template <typename T>
void softmax_cross_entropy_backward_naive(int64_t n, int64_t k, float scale, const T* probs,
                                          const int32_t* labels, T* dlogits, bool accumulate);

void softmax_cross_entropy_forward(const KernelCall& call);
void softmax_cross_entropy_forward_reference(const KernelCall& call);
void softmax_cross_entropy_backward(const KernelCall& call);
void softmax_cross_entropy_backward_reference(const KernelCall& call);

}  // namespace edgetrain
