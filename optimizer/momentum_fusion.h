// Gradients straight into the momentum buffer: a schedule transform for SGD with momentum.
//
// torch's SGD step (no dampening, no Nesterov) is buf = momentum * buf + (grad + wd * param),
// param -= lr * buf. The sum can be built in buf itself: the buffer is decayed
// (buf = momentum * buf + wd * param) before the backward, the node that produces the
// parameter's gradient ADDS it into buf (its accumulate bit, as for micro-batches), and the
// update becomes param -= lr * buf. The gradient never gets its own memory: for ResNet-18 that
// removes a 9 MiB gradient from the training arena's peak, and with micro-batches every
// parameter gradient that would otherwise live across the whole step. The decay of step t + 1
// runs inside step t's apply, in the same pass over param and buf (optimizer/update_kernels.h);
// a prepare node (first in the schedule) starts the buffer on the first step and does nothing
// later. Results equal the plain update up to float summation order; between steps the buffer
// holds torch's buffer already decayed for the next step, so a fused schedule's optimizer state
// is not a plain schedule's (no schedule switches between them: momentum_fusion_applies is a
// property of the config).
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

// Whether a config's schedules use the fusion: SGD with momentum, no dampening, no Nesterov,
// config.fuse_momentum, gradients not retained for reading, and no sparse activation storage
// (a step whose packed activations overflow re-runs on a fallback schedule, which would decay
// the buffers twice).
bool momentum_fusion_applies(const TrainConfig& config);

// Rewrites every SGD update whose gradient has exactly one producer (a backward node that can
// accumulate into that output) into decay (Phase::kPrepare, first in the schedule; the first
// step's only) + accumulate + apply (which decays for the next step). Other updates stay as they
// are. Run before finalize_schedule().
Status fuse_gradients_into_momentum(Graph& g);

}  // namespace edgetrain
