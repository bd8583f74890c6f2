// Winograd convolution F(m x m, 3x3) for dense (groups == 1) 3x3 stride-1 convs, forward and
// backward data (a stride-1 3x3 conv's backward data is itself a 3x3 conv: weights rotated by
// 180 degrees, input and output channels swapped, padding 2 - p), and F(3x3, m x m) for the
// weight gradient (ops/conv2d_winograd_weight.cc; the bias gradient stays in ops/conv2d.cc).
// ops/conv2d.cc dispatches here when winograd_tile() is nonzero.
//
// A tile of m x m outputs is computed from an (m+2) x (m+2) input patch as
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A,
// summed over input channels before the output transform, so that the channel sums become
// alpha^2 = (m+2)^2 independent GEMMs [tiles x Cin] x [Cin x Cout]: alpha^2 * Cin * Cout
// multiplies per m^2 outputs instead of 9 * Cin * Cout * m^2 (4x fewer for m = 4, 2.25x for m = 2).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/conv2d.h"
#include "ops/op.h"

namespace edgetrain {

// Output tile size m (2 or 4) the fast kernels use for this conv's forward and backward data,
// or 0 when Winograd does not apply (not dense 3x3 stride 1) or does not pay (tiny images, few
// channels, or a batch with too few output pixels for its output channels: small batches on
// small maps, where transforming and streaming the weights costs more than im2col's product).
int winograd_tile(const ConvGeometry& g);
// The same for the weight gradient, whose Winograd pays from fewer pixels (its kernel then picks
// its own plan: winograd_backward_weight_tile).
int winograd_weight_tile(const ConvGeometry& g);

// Benchmarks and A/B timings only: kAuto is winograd_tile's choice, kOff always im2col, kF2 /
// kF4 force that tile wherever Winograd applies. Workspaces depend on it: set it before
// planning, never while a plan built under another policy runs. The environment variable
// EDGETRAIN_WINOGRAD=off|f2|f4 sets the policy a process starts with (default auto).
enum class WinogradPolicy { kAuto, kOff, kF2, kF4 };
void set_winograd_policy(WinogradPolicy policy);
WinogradPolicy winograd_policy();

// Tests only: replaces the workspace budget (in floats; 0 restores the rule in the .cc) so that
// small convs take the routes big ones do (several blocks of output channels, several passes).
// Like the policy, set it before planning.
void set_winograd_budget_for_testing(int64_t floats);

// The tile winograd_backward_weight runs when asked for tile m (it may take 2 where 4 would
// need several passes over the tiles, ops/conv2d_winograd_weight.cc).
int winograd_backward_weight_tile(const ConvGeometry& g, int m);
// How winograd_backward_weight splits its work when asked for tile m: the tile it runs, blocks
// of output channels (rows of dW) and chunks of tiles. With several chunks every block transforms
// the tiles anew, and the products' sums are loaded and stored once per chunk (the cost model's
// features count both, planner/features.cc).
struct WinogradWeightSplit {
  int m = 4;
  int64_t blocks = 1, chunks = 1;
};
WinogradWeightSplit winograd_backward_weight_split(const ConvGeometry& g, int m);

// Workspace bytes for tile m: the transformed weights of one block of output channels, and the
// transformed inputs and products of one chunk of tiles (bounded whatever the batch size).
size_t winograd_forward_workspace_bytes(const ConvGeometry& g, int m);
size_t winograd_backward_data_workspace_bytes(const ConvGeometry& g, int m);
size_t winograd_backward_weight_workspace_bytes(const ConvGeometry& g, int m);

// y = conv(x, w) + b (b may be null). x NHWC, w OHWI, as conv2d_forward. With an epilogue,
// y = epilogue(conv(x, w) + b), applied by the output transform.
void winograd_forward(const Parallel& par, const ConvGeometry& g, int m, const float* x,
                      const float* w, const float* b, float* y, void* workspace,
                      size_t workspace_bytes, const ConvNormEpilogue* epilogue = nullptr);
// dx (+)= the gradient of conv(x, w) with respect to x, given dy.
void winograd_backward_data(const Parallel& par, const ConvGeometry& g, int m, const float* dy,
                            const float* w, float* dx, bool accumulate, void* workspace,
                            size_t workspace_bytes);
// dw (+)= the gradient of sum(conv(x, w) * dy) with respect to w (OHWI).
void winograd_backward_weight(const Parallel& par, const ConvGeometry& g, int m, const float* dy,
                              const float* x, float* dw, bool accumulate, void* workspace,
                              size_t workspace_bytes);

}  // namespace edgetrain
