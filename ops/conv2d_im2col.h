// The im2col + GEMM path of the dense (non-depthwise, non-pointwise) conv kernels, with pruning
// of kernel taps that only ever read zero padding. Called by ops/conv2d.cc; see the comment at
// the top of conv2d_im2col.cc for how the pruning works.
#pragma once

#include <cstdint>

#include "ops/conv2d.h"
#include "ops/op.h"

namespace edgetrain {

// How the im2col path treats taps that fall into the padding.
//   kAuto     pick per shape (the default)
//   kNone     plain im2col: every tap of every output pixel, zeros where padding
//   kGlobal   one GEMM over all output pixels with K restricted to the rectangle of taps that
//             some output pixel can use
//   kClasses  output pixels grouped by their rectangle of valid taps (interior, edges,
//             corners); one GEMM per group with only its taps
enum class TapPruning { kAuto, kNone, kGlobal, kClasses };

// Process-wide override for tests and benchmarks (kAuto restores the default). The workspace
// rules follow it too, so set it before planning and running, and not while kernels run.
void set_tap_pruning_for_testing(TapPruning mode);

// The plan the im2col path runs for g: kNone (every tap), kGlobal or kClasses (never kAuto).
TapPruning im2col_plan(const ConvGeometry& g);

// Multiply-adds of the GEMMs the im2col path runs for g over the whole batch: only the taps its
// plan keeps (the same in every direction).
int64_t im2col_multiply_adds(const ConvGeometry& g);

// Floats of workspace the im2col path needs for g (the same in every direction).
int64_t im2col_workspace_floats(const ConvGeometry& g);

// y (N*Ho*Wo rows of out_c) = conv(x, w), plus y's old value when beta is 1 (y then holds the
// bias), overwritten when beta is 0.
void im2col_forward(const KernelCall& call, const ConvGeometry& g, const float* x, const float* w,
                    float beta, float* y);
// dx (+)= conv backward data.
void im2col_backward_data(const KernelCall& call, const ConvGeometry& g, const float* dy,
                          const float* w, float* dx, bool accumulate);
// dw (+)= conv backward weight; dw is not null.
void im2col_backward_weight(const KernelCall& call, const ConvGeometry& g, const float* dy,
                            const float* x, float* dw, bool accumulate);

}  // namespace edgetrain
