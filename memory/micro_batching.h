// Micro-batching with gradient accumulation as a graph transform. The training graph is built
// at the micro-batch size b; unrolling repeats its forward and backward nodes k times, each
// repetition on its own slice of one [k*b, ...] input batch (a view, no copy), with parameter
// gradients shared across repetitions and accumulated (every repetition after the first adds
// into them). The optimizer updates run once, after the last repetition. The loss of each
// repetition is scaled by 1/(k*b), so their sum is the mean over the whole batch and the
// gradients equal the full batch's (up to summation order). Batch-norm statistics are per
// micro-batch, and running statistics are updated once per micro-batch, as in PyTorch loops
// that accumulate gradients.
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

// `g` is a training graph (forward + backward + update nodes, not yet finalized) at micro-batch
// size b. k == 1 returns g unchanged.
Result<Graph> unroll_micro_batches(const Graph& g, int k);

}  // namespace edgetrain
