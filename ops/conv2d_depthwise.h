// Depthwise convolution (groups == input channels == output channels), the fast kernels of all
// three directions. NHWC keeps a pixel's channels contiguous, so every kernel works on slices of
// 16 channels (one AVX-512 vector; then 8, then single channels for the tail). 3x3 kernels take
// two 16-channel slices per pass (each pass reads two adjacent cache lines of a pixel, and a row
// is walked half as often as slice by slice: up to 1.5x on the large maps); per pass the
// accumulators stay in registers and so do the 18 weights (forward, backward data) or the 18
// weight-gradient sums (backward weight), border pixels included: taps in the padding are
// skipped, the rest use the same registers, and a row's valid kernel rows are template constants
// (rows next to the padding run the interior loop). Other kernel sizes take each pixel's valid
// taps.
//   forward          y[p][c] = sum over taps x[..][c] * w[c][tap], groups of output rows per task;
//                    3x3 stride 1 with more than 32 channels (a multiple of 16) channels
//                    innermost: per block of 4 pixels of a row, every 16-channel vector, the
//                    weights tile-major [C / 16][9][16] from L1, input and output in address order
//   backward data    stride 1: the forward correlation of dy with the kernel rotated by 180
//                    degrees; 3x3 stride 2 gathers each dx pixel's 1, 2 or 4 products by row and
//                    column parity (padding 1: pixel pairs), and writes a dx over 8 MiB with
//                    non-temporal stores when it may (64-byte aligned, C % 16 == 0, not
//                    accumulating: dx is 4x dy, and an ordinary store reads every line first);
//                    other strides gather per dx pixel the dy pixels that read it
//   backward weight  rows of dy are split into a fixed number of chunks (whatever the thread
//                    count, so results do not depend on it), each chunk x slice sums into its
//                    own stretch of the workspace over groups of ~32K dy floats, then the chunks
//                    are added in order; 3x3 kernels with stride 1 or 2 and more than 32
//                    channels (a multiple of 16) sum channels innermost instead: per block of 4
//                    pixels of a row, every 16-channel vector's nine sums and db read from the
//                    chunk's sums (in L1, tile-major [C / 16][10][16]) and written back, so
//                    that dy and x are read in address order
// Maps one pixel wide (and non-3x3 kernels on maps up to 4 wide) go pixel by pixel over all
// channels instead, transposing only the weights they read (a 1x1 map: the centre tap); every
// parallel loop sizes its chunks by the taps really read, so tiny layers stay on one thread.
// Tiny layers take a few microseconds, as much as a second parallel loop or a serial pass over
// all weights, so:
//   3x3 kernels on maps up to 4x4 (not one pixel wide): forward (without an epilogue), stride-1
//                    backward data and backward weight run in one parallel loop over units of
//                    32 channels; each thread transposes only its own weights, and the weight
//                    gradient sums all dy rows in registers and writes dw and db directly
//                    (the weight gradient also on maps up to 7x7 with at least 256 channels)
//   one-pixel maps   the weight gradient sums each read tap over the batch in registers, straight
//                    into dw (unread taps 0, or kept when accumulating) and db; no workspace
// Chunking by channels, each channel's sums run in the same order on any thread count.
// Measured against XNNPACK's depthwise forward: bench/bench_depthwise_xnnpack.cc
// and bench/README.md. Prefetching the next input rows: an early version inside the stride-2
// column tiles measured 0.90-1.01x on an Intel host and was dropped; prefetch_next_rows (whole
// next rows, in the channels-innermost blocks) measured up to 1.37x on session 15's AMD host and
// is kept (not yet measured on an Intel host). Non-temporal stores for the forward's output
// measured slower and were not kept.
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
// Whether depthwise_backward_data writes dx with non-temporal stores (exposed for its tests).
bool depthwise_backward_data_streams(const ConvGeometry& g, const float* dx, bool accumulate);
// dw, db (+)= the gradients with respect to w (OHWI: [C][kh][kw][1]) and b; either may be null.
void depthwise_backward_weight(const Parallel& par, const ConvGeometry& g, const float* dy,
                               const float* x, float* dw, float* db, bool accumulate_dw,
                               bool accumulate_db, float* workspace);

// Which of the loops above a direction runs, decided as the kernels decide (the cost model's
// kernel-variant feature, planner/features.cc: the loops differ in speed at the same FLOPs, and
// a backward data writing over 8 MiB with non-temporal stores is bound by memory writes, so it
// runs no faster on two threads). Streaming assumes dx 64-byte aligned, as the arena lays tensors out.
enum class DepthwiseLoop : uint8_t {
  // forward, and backward data at stride 1 (a forward correlation)
  kChannelUnits,   // maps up to 4x4, 3x3 kernels: units of 32 channels per thread
  kPixels,         // one-pixel-wide maps (and other kernels on small maps): pixel by pixel
  kPixelBlocks,    // 3x3, channels innermost in blocks of 4 pixels
  kColumnTiles,    // 3x3 stride 2 over 32 channels: tiles of 8 output columns
  kSlices3x3,      // 3x3: slices of 16 channels over groups of rows
  kSlicesAnyKernel,
  // backward data at stride 2 and over
  kGather3x3Stride2,
  kGather3x3Stride2Streaming,  // dx over 8 MiB, non-temporal stores
  kGatherAny,
  // backward weight
  kOnePixelSums,
  kPixelSums,
  kChannelUnitSums,
  kPixelBlockSums,
  kRowChunks3x3,
  kRowChunksAnyKernel,
};
DepthwiseLoop depthwise_loop(const ConvGeometry& g, ConvDirection dir, bool has_epilogue, bool accumulate);

}  // namespace edgetrain
