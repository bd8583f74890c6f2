// Max pooling, average pooling (count_include_pad, as torch's default) and global average
// pooling over NHWC tensors, forward and backward. Output size floor((H + 2p - k) / s) + 1
// (torch's ceil_mode=False). Max pool pads with -inf and gives a window's gradient to its first
// maximum in scan order (row-major over the window), as torch's CPU kernel does; its backward
// recomputes that argmax from x, so it needs no saved indices.
//
// Fast kernels run their inner loops over contiguous channels and split work over (n, row).
// Backward of max pool scatters into overlapping windows, so output rows run in ceil(k/s)
// phases whose windows never share an input row; backward of avg pool gathers per input row.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

// Shape rule of max and avg pool: x is [N,H,W,C]; kernel >= 1, stride >= 1, 0 <= pad <= kernel/2
// (torch rejects larger pads: a window could then hold only padding); kernel <= H + 2*pad and
// W + 2*pad. Returns [N, Ho, Wo, C].
Result<Shape> pool_output_shape(const Shape& x, const PoolAttrs& a);
// Shape rule of global average pool: [N,H,W,C] -> [N,C].
Result<Shape> global_avg_pool_output_shape(const Shape& x);

// Max pool keeps, when asked (argmax not null), each output's maximum as its position in the
// window clipped to the input: (ih - first row) * kernel + (iw - first column), -1 for a window
// of padding only; the first of equal maxima, a NaN over any number. The backward adds dy there.
template <typename T>
void max_pool_forward_naive(const Shape& x_shape, const PoolAttrs& a, const T* x, T* y, int32_t* argmax);
template <typename T>
void max_pool_backward_naive(const Shape& x_shape, const PoolAttrs& a, const T* dy, const int32_t* argmax, T* dx,
                             bool accumulate);
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
