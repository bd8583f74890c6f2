// BitTrain-style activation compression as a graph rewrite, applied after checkpointing to the
// forward values that backward still reads:
//   - ReLU / ReLU6 backward reads a 1-bit mask (kPackMask right after the activation) instead of
//     the float output (relu_masks);
//   - a post-ReLU/ReLU6 tensor that other backward nodes read (a conv's input, for its weight
//     gradient) is packed as bitmap + nonzeros after its last forward use and unpacked right
//     before its first backward use (sparse_activations). Its slot holds `capacity` x elements
//     nonzeros; a denser batch sets the slot's overflow flag, which the executor checks before
//     any backward node runs (the Trainer then re-runs the step on a fallback schedule).
//   - first, batch-norm outputs that backward reads are recomputed from the norm's input instead
//     of kept (recompute_norm_outputs, the default; memory/norm_recompute.h): the two above then
//     see only the post-ReLU tensors no norm produced (after residual adds).
// All are lossless: gradients are bit-identical to the dense schedule.
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

Result<Graph> apply_compression(const Graph& g, const CompressionConfig& config);

}  // namespace edgetrain
