// Batch normalisation over N, H, W per channel (NHWC), training mode (batch statistics, running
// statistics updated torch-style with unbiased variance) and eval mode (running statistics).
// Forward saves the batch mean and 1/sqrt(var+eps) for backward.
//
// The data is seen as [rows][channels] with rows = N*H*W (any rank >= 2; channels = last dim),
// so the fast kernels run their inner loops over contiguous channels. Per-channel sums are
// accumulated in double; rows are split into a fixed number of blocks (a function of rows only,
// so results do not depend on the thread count) whose partial sums live in the workspace.
//
// Fusions (runtime/fusion.h): the forward may apply a ReLU/ReLU6 to its output
// (Attrs::activation); the backward may take that activation's backward in (Attrs::activation,
// input 0 the gradient of the activated output, input 5 beta): it recomputes the activation's
// input from x with the forward's exact expression and passes the gradient where it was active.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

// Shape rule: x has rank >= 2 and its last dim is C; param (gamma, beta, running_mean,
// running_var) is [C]. Training needs more than one value per channel (as torch demands: the
// unbiased running variance divides by rows - 1).
Result<Shape> batch_norm_output_shape(const Shape& x, const Shape& param, const NormAttrs& a);

// The per-channel scale an eval-mode norm multiplies (x - running_mean) by, gamma / sqrt(var + eps),
// rounded as the kernels round it (a conv's fused norm, ops/conv2d.h, uses it to match them).
float batch_norm_eval_scale(float gamma, float running_var, float eps);

// rows = N*H*W, channels = C; data is [rows][channels].
template <typename T>
void batch_norm_forward_naive(int64_t rows, int64_t channels, const NormAttrs& a, const T* x,
                              const T* gamma, const T* beta, T* running_mean, T* running_var,
                              T* y, T* saved_mean, T* saved_invstd);
// Training mode: mean_or_running_mean/invstd_or_running_var are the saved batch statistics.
// Eval mode: they are the running mean and running variance.
template <typename T>
void batch_norm_backward_naive(int64_t rows, int64_t channels, const NormAttrs& a, const T* dy,
                               const T* x, const T* gamma, const T* mean_or_running_mean,
                               const T* invstd_or_running_var, T* dx, T* dgamma, T* dbeta,
                               uint32_t accumulate_mask);

void batch_norm_forward(const KernelCall& call);
void batch_norm_forward_reference(const KernelCall& call);
void batch_norm_backward(const KernelCall& call);
void batch_norm_backward_reference(const KernelCall& call);
// Workspace of both the forward and the backward kernel (in[0] has x's shape in both).
size_t batch_norm_workspace(const Attrs&, const Shape* in, int n_in, const Shape* out, int n_out);

}  // namespace edgetrain
