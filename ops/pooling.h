// Max pooling, average pooling (count_include_pad, as torch's default) and global average
// pooling over NHWC tensors, forward and backward.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

Result<Shape> pool_output_shape(const Shape& x, const PoolAttrs& a);

template <typename T>
void max_pool_forward_naive(const Shape& x_shape, const PoolAttrs& a, const T* x, T* y);
template <typename T>
void max_pool_backward_naive(const Shape& x_shape, const PoolAttrs& a, const T* dy, const T* x,
                             const T* y, T* dx, bool accumulate);
template <typename T>
void avg_pool_forward_naive(const Shape& x_shape, const PoolAttrs& a, const T* x, T* y);
template <typename T>
void avg_pool_backward_naive(const Shape& x_shape, const PoolAttrs& a, const T* dy, T* dx, bool accumulate);
template <typename T>
void global_avg_pool_forward_naive(const Shape& x_shape, const T* x, T* y);
template <typename T>
void global_avg_pool_backward_naive(const Shape& x_shape, const T* dy, T* dx, bool accumulate);

void max_pool_forward(const KernelCall& call);
void max_pool_forward_reference(const KernelCall& call);
void max_pool_backward(const KernelCall& call);
void max_pool_backward_reference(const KernelCall& call);
void avg_pool_forward(const KernelCall& call);
void avg_pool_forward_reference(const KernelCall& call);
void avg_pool_backward(const KernelCall& call);
void avg_pool_backward_reference(const KernelCall& call);
void global_avg_pool_forward(const KernelCall& call);
void global_avg_pool_forward_reference(const KernelCall& call);
void global_avg_pool_backward(const KernelCall& call);
void global_avg_pool_backward_reference(const KernelCall& call);

}  // namespace edgetrain
