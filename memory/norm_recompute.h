// Batch-norm outputs recomputed for backward instead of kept: a graph rewrite, applied after
// checkpointing (memory/compression.h calls it first, with CompressionConfig::recompute_norm_outputs,
// on by default).
//
// A training-mode norm's backward reads its input x; the layer after it reads the norm's output
// y for its own backward (a conv's weight gradient, dw = dy^T y). So both stay live from the
// forward to the backward: in MobileNetV2 every conv's output and its normalised (ReLU6'd) copy,
// half the saved activation bytes. Here backward readers of y read y' instead, which a
// kBatchNorm node with NormAttrs::apply_saved computes from x and the statistics the forward
// saved, right before the first of them: one elementwise pass (no reduction), results equal to
// the forward's to the bit, so gradients are bit-identical to the plain schedule. y then dies
// after its last forward reader.
//
// Eval-mode norms (running statistics: frozen norms, TrainConfig::norm_statistics = kRunning)
// are recomputed by a copy of their forward node, which nothing in the step changes the inputs
// of before it runs (gamma and beta update after their last reader).
//
// Only norms whose x backward keeps anyway (its own backward reads it) and whose y is a plain
// step value (not kept, not a view, not the logits) are rewritten. It runs before packing and
// masks (a recomputed output needs no storage; they see the post-ReLU tensors left).
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

Result<Graph> recompute_norm_outputs(const Graph& g);

// The recompute nodes of a rewritten graph (norms run outside the forward and checkpointing's
// recompute phase; the lever's cost: one normalising pass each).
int count_norm_recomputes(const Graph& g);

}  // namespace edgetrain
