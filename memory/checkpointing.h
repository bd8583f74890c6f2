// Gradient checkpointing as a graph rewrite. The forward pass is cut into segments at cut
// points (values where the model is a chain: exactly one activation crosses). For every segment
// but the last, the backward nodes stop reading the segment's forward values; instead a
// recompute copy of the segment's forward nodes runs right before the segment's backward and
// they read its outputs. The forward values inside the segment then die right after their last
// forward use (liveness does the rest). Recomputation runs the same kernels on the same inputs,
// so gradients are bit-identical; recomputed batch norms do not update running statistics.
#pragma once

#include <cstddef>
#include <vector>

#include "runtime/graph.h"
#include "runtime/status.h"
#include "runtime/train_config.h"

namespace edgetrain {

struct CutPoint {
  ValueId value = kNoValue;   // the single activation crossing this point
  int forward_position = 0;   // index among forward nodes of the node that produces it
  size_t saved_bytes = 0;     // bytes backward reads from forward values produced up to here
};

// The cut points of a training graph (after autodiff), in forward order.
std::vector<CutPoint> checkpoint_cut_points(const Graph& g);

// Rewrites g with segments starting after each listed cut point (indices into
// checkpoint_cut_points(g), strictly increasing). Empty boundaries returns g unchanged.
Result<Graph> apply_checkpointing(const Graph& g, const std::vector<int>& boundaries);

// About `segments` segments of equal saved-activation bytes (segments <= 0: round(sqrt(cuts))).
// Splitting by bytes, not by layer count: early layers of a CNN hold most activation bytes.
std::vector<int> byte_balanced_boundaries(const std::vector<CutPoint>& cuts, size_t total_saved_bytes,
                                          int segments);

// Bytes backward reads from forward values (the saved activations without checkpointing).
size_t saved_activation_bytes(const Graph& g);

// Bytes the recompute nodes of a rewritten graph write (the cost of checkpointing).
size_t recomputed_bytes(const Graph& g);

}  // namespace edgetrain
