// Direct convolution for layers with very few input channels (the 3-channel stem of MobileNetV2
// and ResNet): im2col + GEMM there has a reduction of only kh*kw*3 (27 for a 3x3 stem), too short
// for GEMM kernels (measured: MobileNetV2's stem ran at ~10 GFLOP/s, 12% of a 32x32 step) and
// the columns are kh*kw times the input. The direct kernel keeps a block of output channels in
// registers per output pixel and streams over the valid taps only (padding costs nothing).
#pragma once

#include <cstdint>

#include "ops/conv2d.h"
#include "ops/op.h"

namespace edgetrain {

// Dense (groups == 1) convs with at most this many input channels take the direct forward.
constexpr int64_t kDirectConvMaxInputChannels = 4;

bool conv2d_direct_forward_applies(const ConvGeometry& g);
// Floats of workspace: the weights reordered to [kh][kw][ci][Cout] (output channels contiguous,
// padded with zeros to whole vectors of 16).
int64_t conv2d_direct_forward_workspace_floats(const ConvGeometry& g);
// y = conv(x, w) + b (b may be null); workspace as above. With an epilogue, each output row is
// normalised right after it is written.
void conv2d_direct_forward(const Parallel& parallel, const ConvGeometry& g, const float* x, const float* w,
                           const float* b, float* y, float* workspace,
                           const ConvNormEpilogue* epilogue = nullptr);

// Weight gradient of the same convs: dw[co][tap][ci] (+)= sum over output pixels of
// dy[p][co] * x[p's tap][ci]. im2col would build columns [pixels][kh*kw*ci] for a GEMM whose
// output is only out_c x 27 (MobileNetV2) or 64 x 147 (ResNet): too small for OpenBLAS, measured
// 3-5 GFLOP/s and 9% of a MobileNetV2 32x32 step. Here a block of output channels (two vectors,
// else one) keeps up to 12 (kx, ci) sums of one kernel row in registers while it streams over a
// chunk of pixels, multiplying the dy vectors by one broadcast input value per sum. Chunks of rows are fixed by
// the shape, summed in order afterwards: results do not depend on the thread count. Every
// (kernel row, entries) task reads all of its chunk's dy; where a chunk's dy outgrows the L2
// (ResNet's stem at 224x224: 3.2 MB, read 14 times), a task runs every kernel row and entry
// group over a block of rows while the block is in L2, then the next block.
bool conv2d_direct_backward_weight_applies(const ConvGeometry& g);
// Rows of dy per block in that case (about 256 KiB of dy), 0 where chunks are not blocked.
int64_t conv2d_direct_backward_weight_block_rows(const ConvGeometry& g);
// Floats of workspace: the chunks' partial sums, [chunk][kh*kw*ci][out_c].
int64_t conv2d_direct_backward_weight_workspace_floats(const ConvGeometry& g);
void conv2d_direct_backward_weight(const Parallel& parallel, const ConvGeometry& g, const float* dy,
                                   const float* x, float* dw, bool accumulate, float* workspace);

}  // namespace edgetrain
