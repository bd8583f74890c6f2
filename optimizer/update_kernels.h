// The optimizer update kernels the schedule runs, one node per trainable parameter (in place):
// SGD with momentum, dampening, Nesterov and L2 weight decay (torch.optim.SGD semantics) and
// AdamW (torch.optim.AdamW semantics, decoupled weight decay).
#pragma once

#include <cstdint>

#include "ops/op.h"

namespace edgetrain {

// One SGD step on n elements. momentum_buffer may be null when a.momentum == 0.
// first_step: the momentum buffer is set to the gradient, not read (torch's behaviour).
// The kernels below take lr = step.learning_rate * attrs.optim.lr_scale and
// first_step = (step.optimizer_step == 1).
void sgd_update_naive(int64_t n, const OptimAttrs& a, float lr, float* param, const float* grad,
                      float* momentum_buffer, bool first_step);
// One AdamW step; step is the 1-based update count (bias correction). At step 1 the moments m
// and v are taken as zero whatever they hold (torch creates them zeroed at its first step).
void adamw_update_naive(int64_t n, const OptimAttrs& a, float lr, int64_t step, float* param,
                        const float* grad, float* m, float* v);

void sgd_update(const KernelCall& call);
void sgd_update_reference(const KernelCall& call);
void adamw_update(const KernelCall& call);
void adamw_update_reference(const KernelCall& call);

}  // namespace edgetrain
