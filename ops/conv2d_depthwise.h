// Depthwise convolution (groups == input channels == output channels), the fast kernels of all
// three directions. NHWC keeps a pixel's channels contiguous, so every kernel works on slices of
// 16 channels (one AVX-512 vector; then 8, then single channels for the tail): per slice the
// accumulators stay in registers, and for 3x3 kernels so do the 9 weights (forward, backward
// data) or the 9 weight-gradient sums (backward weight), so each multiply-add costs one load.
// Pixels whose taps reach into the padding take a general loop over their valid taps.
//   forward          y[p][c] = sum over taps x[..][c] * w[c][tap], one output row per task
//   backward data    stride 1: the forward correlation of dy with the kernel rotated by 180
//                    degrees; larger strides gather, per dx pixel, the dy pixels that read it
//   backward weight  rows of dy are split into a fixed number of chunks (whatever the thread
//                    count, so results do not depend on it), each chunk x slice sums into its
//                    own stretch of the workspace, then the chunks are added in order
// Measured against XNNPACK's depthwise forward: bench/bench_depthwise_xnnpack.cc.
#pragma once

#include <cstdint>

#include "ops/conv2d.h"
#include "ops/op.h"

namespace edgetrain {

bool is_depthwise(const ConvGeometry& g);
// Floats of workspace any direction needs: the weights as [tap][C] (channels contiguous), or the
// weight gradient's partial sums per chunk of rows.
int64_t depthwise_workspace_floats(const ConvGeometry& g);

// y = conv(x, w) + b (b may be null), then the epilogue when given.
void depthwise_forward(const Parallel& par, const ConvGeometry& g, const float* x, const float* w,
                       const float* b, float* y, float* workspace, const ConvNormEpilogue* epilogue);
// dx (+)= the gradient with respect to x.
void depthwise_backward_data(const Parallel& par, const ConvGeometry& g, const float* dy,
                             const float* w, float* dx, bool accumulate, float* workspace);
// dw, db (+)= the gradients with respect to w (OHWI: [C][kh][kw][1]) and b; either may be null.
void depthwise_backward_weight(const Parallel& par, const ConvGeometry& g, const float* dy,
                               const float* x, float* dw, float* db, bool accumulate_dw,
                               bool accumulate_db, float* workspace);

}  // namespace edgetrain
