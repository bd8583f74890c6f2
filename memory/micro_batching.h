// Micro-batching with gradient accumulation as a schedule transform. The training graph is built
// at the micro-batch size b; the transform gives it one [k*b, ...] input batch (and labels) whose
// slices the graph's nodes read through views, keeps parameter gradients alive across
// repetitions, and scales the loss by 1/(k*b). The executor then runs the forward/backward body
// k times, advancing the views and letting every repetition after the first add into the
// parameter gradients, and runs the optimizer updates once at the end. The sum of the k losses
// is the batch mean and the gradients equal the full batch's (up to summation order).
// Batch-norm statistics are per micro-batch, and running statistics are updated once per
// micro-batch, as in PyTorch loops that accumulate gradients.
//
// Looping instead of unrolling keeps the schedule (and its exact memory plan) the size of one
// micro-batch: planning many configurations stays fast.
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

// `g` is a training graph (forward + backward + update nodes, not yet finalized) at micro-batch
// size b. k == 1 returns g unchanged.
Result<Graph> loop_micro_batches(const Graph& g, int k);

}  // namespace edgetrain
