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

// A convolution whose output only feeds an eval-mode batch norm (running statistics: frozen
// norms in training, every norm in evaluation) applies the norm, and the activation already fused
// into it, to its own output while that is in cache (Attrs::conv_norm, ops/conv2d.h), and the
// norm node goes: one pass over the tensor less, and the conv's raw output never needs memory.
// Only where nothing else reads the conv's output, which excludes every norm whose backward
// needs its input (trainable gamma): in training this is the frozen forward region (all of it
// for classifier-only training). Run after fuse_activations. Returns how many pairs were fused.
int fuse_conv_norms(Graph& g);
// The backward twin of fuse_activations: a ReLU/ReLU6 backward reading the output of a batch
// norm with that activation fused in, whose gradient only feeds that norm's backward, goes; the
// norm's backward takes the activation's incoming gradient and beta, recomputes the
// pre-activation from x (which it reads anyway) and passes the gradient where the activation
// did (ops/batch_norm.h). One pass over the tensor less, the gradient between them never needs
// memory, and the activation's output is no longer read by backward for it, so compression's
// 1-bit ReLU masks are not needed there (run before compression; it keeps masks for the ReLUs
// left, after residual adds). EDGETRAIN_ACTIVATION_BACKWARD_FUSION=off disables it. Returns how
// many pairs were fused.
int fuse_activation_backwards(Graph& g);
void set_activation_backward_fusion(bool enabled);

// Every fusion above, in the order they build on each other (activations into norms and adds,
// those norms into their convs, activation backwards into norm backwards). What schedules call,
// before checkpointing and compression (which see the fused graph). Returns how many fused.
int fuse_ops(Graph& g);

// Tests and A/B timings: off, fuse_conv_norms fuses nothing. A process starts with it on unless
// EDGETRAIN_CONV_NORM_FUSION=off. Set it before building schedules.
void set_conv_norm_fusion(bool enabled);

}  // namespace edgetrain
