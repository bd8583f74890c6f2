// Op fusion on a schedule: a batch norm or a residual add whose output only feeds a ReLU or
// ReLU6 writes the activation's output itself (Attrs::activation), and the activation node goes.
// One elementwise pass over the tensor instead of two, and the pre-activation tensor never needs
// memory. Backward is unchanged: the activation's backward reads its own output (or its mask);
// the batch norm's backward reads the norm's input and statistics and the add's backward only
// the incoming gradient, never the pre-activation.
#pragma once

#include "runtime/graph.h"
#include "runtime/status.h"

namespace edgetrain {

// Fuses every such pair in the same phase. Returns how many pairs were fused.
int fuse_activations(Graph& g);

}  // namespace edgetrain
