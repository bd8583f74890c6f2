// Dropout (torch.nn.Dropout semantics in training: zero each element with probability p, scale
// the rest by 1/(1-p)); evaluation graphs contain no dropout node. The mask is a counter-based
// hash of (step seed, node salt, element index), so it is reproducible, independent of the
// thread split, and needs no generator state; it is saved as 1 bit per element for backward.
#pragma once

#include <cstdint>

#include "ops/op.h"

namespace edgetrain {

// True when element i is kept.
bool dropout_keep(uint64_t seed, uint32_t salt, int64_t i, float p);

template <typename T>
void dropout_forward_naive(int64_t n, float p, uint64_t seed, uint32_t salt, const T* x, T* y, uint64_t* mask);
template <typename T>
void dropout_backward_naive(int64_t n, float p, const T* dy, const uint64_t* mask, T* dx, bool accumulate);

void dropout_forward(const KernelCall& call);
void dropout_forward_reference(const KernelCall& call);
void dropout_backward(const KernelCall& call);
void dropout_backward_reference(const KernelCall& call);

}  // namespace edgetrain
