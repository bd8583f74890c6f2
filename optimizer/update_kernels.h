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

// SGD momentum split around the gradient (optimizer/momentum_fusion.h): before the gradient, buf
// must hold momentum * buf + weight_decay * param; the gradient's producer adds the gradient into
// buf; then param -= lr * buf. The first step's decay sets buf = weight_decay * param (the decay
// node, a no-op on later steps); every apply decays buf for the next step in the same pass
// (buf = momentum * buf + weight_decay * param with the updated param): one pass over param and
// buf per step instead of two, the decay's reads were a third of the update's memory traffic.
// Together: torch's SGD step without dampening and Nesterov, up to float summation order; between
// steps the buffer holds torch's buffer already decayed for the next step.
void sgd_momentum_decay_naive(int64_t n, const OptimAttrs& a, const float* param, float* momentum_buffer,
                              bool first_step);
void sgd_apply_momentum_naive(int64_t n, const OptimAttrs& a, float lr, float* param, float* momentum_buffer);

void sgd_update(const KernelCall& call);
void sgd_update_reference(const KernelCall& call);
void sgd_momentum_decay(const KernelCall& call);
void sgd_momentum_decay_reference(const KernelCall& call);
void sgd_apply_momentum(const KernelCall& call);
void sgd_apply_momentum_reference(const KernelCall& call);
void adamw_update(const KernelCall& call);
void adamw_update_reference(const KernelCall& call);

}  // namespace edgetrain
