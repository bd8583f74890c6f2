// Batch normalisation over N, H, W per channel (NHWC), training mode (batch statistics, running
// statistics updated torch-style with unbiased variance) and eval mode (running statistics).
// Forward saves the batch mean and 1/sqrt(var+eps) for backward.
#pragma once

#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

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

}  // namespace edgetrain
