// 2-D convolution, NHWC activations and OHWI weights ([Cout][kh][kw][Cin/groups]): forward,
// gradient with respect to the input (backward data) and to the weights and bias (backward
// weight), side by side. Fast paths: 1x1 stride-1 convs are one GEMM in every direction;
// other dense convs use im2col + GEMM over chunks of images, leaving out kernel taps that only
// read padding (ops/conv2d_im2col.h; the workspace holds a chunk's columns); depthwise convs use
// a direct kernel vectorised over channels. The *_naive templates are the
// reference every fast path is tested against; they also run in double for gradient checks.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/op.h"
#include "runtime/status.h"

namespace edgetrain {

struct ConvGeometry {
  int64_t n, h, w, c;        // input
  int64_t out_c;             // output channels
  int64_t kh, kw, sh, sw, ph, pw, groups;
  int64_t out_h, out_w;      // output spatial size
  int64_t c_per_group() const { return c / groups; }
  int64_t out_c_per_group() const { return out_c / groups; }
};

// An eval-mode batch norm (and the ReLU/ReLU6 fused into it) applied by a conv to its own
// output while it is still in cache (Attrs::conv_norm, made by runtime/fusion.h's
// fuse_conv_norms): y = act((conv + b - mean) * scale + beta), the expression and rounding of
// the batch-norm kernel (ops/batch_norm.cc), so a fused pair writes what the two ops wrote.
struct ConvNormEpilogue {
  const float* mean = nullptr;   // running mean [Cout]
  const float* scale = nullptr;  // gamma / sqrt(running_var + eps) [Cout]
  const float* beta = nullptr;   // [Cout]
  float lo = 0.0f, hi = 0.0f;    // the activation's clamp (-inf / +inf without one)

  float apply(float v, int64_t c) const {
    return std::min(std::max((v - mean[c]) * scale[c] + beta[c], lo), hi);
  }
  // In place over `rows` rows of `channels` contiguous outputs.
  void apply_rows(float* y, int64_t rows, int64_t channels) const;
};

// Range [k0, k1) of kernel taps along one axis that land inside the input for output position o.
inline void valid_taps(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t size,
                       int64_t* k0, int64_t* k1) {
  const int64_t start = o * stride - pad;
  *k0 = std::clamp<int64_t>(-start, 0, kernel);
  *k1 = std::clamp<int64_t>(size - start, *k0, kernel);
}

// Shape rule: validates the weight shape and attributes against the input.
Result<Shape> conv2d_output_shape(const Shape& x, const Shape& w, const ConvAttrs& a);
ConvGeometry conv2d_geometry(const Shape& x, const Shape& w, const ConvAttrs& a);

template <typename T>
void conv2d_forward_naive(const ConvGeometry& g, const T* x, const T* w, const T* b, T* y);
template <typename T>
void conv2d_backward_data_naive(const ConvGeometry& g, const T* dy, const T* w, T* dx, bool accumulate);
template <typename T>
void conv2d_backward_weight_naive(const ConvGeometry& g, const T* dy, const T* x, T* dw, T* db,
                                  bool accumulate_dw, bool accumulate_db);

// Which code path the fast kernel of one direction takes for g: the decision conv2d_forward,
// conv2d_backward_data and conv2d_backward_weight make, without running anything (the cost
// model's features follow it, planner/features.cc). kIm2col*: the im2col plan (which taps it
// keeps, ops/conv2d_im2col.h); kWinograd*: the tile the direction runs (backward weight may
// take F2 where F4 was chosen, ops/conv2d_winograd_weight.cc). Backward weight with only the
// bias gradient wanted runs none of these (a sum over rows).
enum class ConvDirection : uint8_t { kForward, kBackwardData, kBackwardWeight };
enum class ConvKernelPath : uint8_t {
  kDepthwise, kPointwise, kDirect, kIm2colPlain, kIm2colGlobal, kIm2colClasses, kWinogradF2, kWinogradF4
};
ConvKernelPath conv2d_kernel_path(const ConvGeometry& g, ConvDirection d);

void conv2d_forward(const KernelCall& call);
void conv2d_forward_reference(const KernelCall& call);
size_t conv2d_forward_workspace(const Attrs&, const Shape* in, int n_in, const Shape* out, int n_out);

void conv2d_backward_data(const KernelCall& call);
void conv2d_backward_data_reference(const KernelCall& call);
size_t conv2d_backward_data_workspace(const Attrs&, const Shape* in, int n_in, const Shape* out, int n_out);

void conv2d_backward_weight(const KernelCall& call);
void conv2d_backward_weight_reference(const KernelCall& call);
size_t conv2d_backward_weight_workspace(const Attrs&, const Shape* in, int n_in, const Shape* out, int n_out);

}  // namespace edgetrain
