// ReLU and ReLU6. Backward takes the forward *output* y: dx = dy where the unit was active
// (0 < y, and y < 6 for ReLU6), so saved activations are post-ReLU tensors (sparse: the
// bitmap storage of issue 3 applies to exactly these).
#pragma once

#include <cstdint>

#include "ops/op.h"

namespace edgetrain {

template <typename T>
void relu_forward_naive(int64_t n, float cap, const T* x, T* y);  // cap <= 0: no upper bound
template <typename T>
void relu_backward_naive(int64_t n, float cap, const T* dy, const T* y, T* dx, bool accumulate);

void relu_forward(const KernelCall& call);
void relu_forward_reference(const KernelCall& call);
void relu_backward(const KernelCall& call);
void relu_backward_reference(const KernelCall& call);
void relu6_forward(const KernelCall& call);
void relu6_forward_reference(const KernelCall& call);
void relu6_backward(const KernelCall& call);
void relu6_backward_reference(const KernelCall& call);

}  // namespace edgetrain
