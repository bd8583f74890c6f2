// 2-D convolution: shape rule, naive reference kernels (float and double) and the fast kernels.
// Layouts: x, y NHWC; w OHWI = [Cout][kh][kw][Cin/groups]; b [Cout].
//
// The fast kernels pick one of four paths (conv_path below, then the direct stem kernel):
//   depthwise  groups == Cin == Cout: ops/conv2d_depthwise.h, register-blocked over slices of
//              16 contiguous channels.
//   pointwise  1x1, stride 1, no padding: an NHWC tensor already is the [N*H*W][C] matrix, so
//              each direction is one sgemm per group over all rows (groups use leading-dimension
//              strides), without im2col.
//   im2col     everything else (ops/conv2d_im2col.cc): per chunk of images and group, im2col
//              into the workspace ([rows][kh*kw*Cin/groups], same (ky, kx, ci) order as an OHWI
//              weight row), then sgemm; taps that only read padding are left out. Backward data
//              runs the sgemm into the columns and folds them back (col2im).
//   direct     forward and weight gradient of dense convs with at most 4 input channels (the
//              stems): ops/conv2d_direct.h.
// Before these, every direction of dense 3x3 stride-1 convs goes to Winograd
// (ops/conv2d_winograd.h) wherever winograd_tile() says it pays.
#include "ops/conv2d.h"

#include <cblas.h>

#include "ops/batch_norm.h"
#include "ops/conv2d_depthwise.h"
#include "ops/conv2d_direct.h"
#include "ops/conv2d_im2col.h"
#include "ops/conv2d_winograd.h"
#include "ops/gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace edgetrain {

// ---------------------------------------------------------------------------------------------
// Shape rule

Result<Shape> conv2d_output_shape(const Shape& x, const Shape& w, const ConvAttrs& a) {
  const std::string where = "conv2d (input " + x.to_string() + ", weight " + w.to_string() + "): ";
  if (x.rank != 4) return invalid_argument(where + "input must be rank 4 (NHWC)");
  if (w.rank != 4) return invalid_argument(where + "weight must be rank 4 (OHWI)");
  for (int i = 0; i < 4; ++i) {
    if (x[i] <= 0) return invalid_argument(where + "input dimensions must be positive");
    if (w[i] <= 0) return invalid_argument(where + "weight dimensions must be positive");
  }
  if (a.kernel_h <= 0 || a.kernel_w <= 0)
    return invalid_argument(where + "kernel size " + std::to_string(a.kernel_h) + "x" +
                            std::to_string(a.kernel_w) + " must be positive");
  if (a.stride_h <= 0 || a.stride_w <= 0)
    return invalid_argument(where + "stride " + std::to_string(a.stride_h) + "x" +
                            std::to_string(a.stride_w) + " must be positive");
  if (a.pad_h < 0 || a.pad_w < 0)
    return invalid_argument(where + "padding " + std::to_string(a.pad_h) + "x" +
                            std::to_string(a.pad_w) + " must not be negative");
  if (a.groups <= 0)
    return invalid_argument(where + "groups " + std::to_string(a.groups) + " must be positive");
  if (w[1] != a.kernel_h || w[2] != a.kernel_w)
    return invalid_argument(where + "weight kernel " + std::to_string(w[1]) + "x" +
                            std::to_string(w[2]) + " differs from the kernel size attribute " +
                            std::to_string(a.kernel_h) + "x" + std::to_string(a.kernel_w));
  if (x.c() % a.groups != 0)
    return invalid_argument(where + "groups " + std::to_string(a.groups) +
                            " does not divide the input channels " + std::to_string(x.c()));
  if (w[0] % a.groups != 0)
    return invalid_argument(where + "groups " + std::to_string(a.groups) +
                            " does not divide the output channels " + std::to_string(w[0]));
  if (w[3] != x.c() / a.groups)
    return invalid_argument(where + "channel mismatch: weight has " + std::to_string(w[3]) +
                            " input channels per group, input has " + std::to_string(x.c()) +
                            " channels in " + std::to_string(a.groups) + " group(s)");
  const int64_t padded_h = x.h() + 2 * int64_t{a.pad_h}, padded_w = x.w() + 2 * int64_t{a.pad_w};
  if (a.kernel_h > padded_h || a.kernel_w > padded_w)
    return invalid_argument(where + "kernel " + std::to_string(a.kernel_h) + "x" +
                            std::to_string(a.kernel_w) + " larger than padded input " +
                            std::to_string(padded_h) + "x" + std::to_string(padded_w));
  return Shape{x.n(), (padded_h - a.kernel_h) / a.stride_h + 1,
               (padded_w - a.kernel_w) / a.stride_w + 1, w[0]};
}

ConvGeometry conv2d_geometry(const Shape& x, const Shape& w, const ConvAttrs& a) {
  ConvGeometry g;
  g.n = x.n(), g.h = x.h(), g.w = x.w(), g.c = x.c();
  g.out_c = w[0];
  g.kh = a.kernel_h, g.kw = a.kernel_w, g.sh = a.stride_h, g.sw = a.stride_w;
  g.ph = a.pad_h, g.pw = a.pad_w, g.groups = a.groups;
  g.out_h = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.out_w = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}

// ---------------------------------------------------------------------------------------------
// Naive reference kernels: the definition of the op, written for clarity only.

template <typename T>
void conv2d_forward_naive(const ConvGeometry& g, const T* x, const T* w, const T* b, T* y) {
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group();
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < g.out_h; ++oy)
      for (int64_t ox = 0; ox < g.out_w; ++ox)
        for (int64_t oc = 0; oc < g.out_c; ++oc) {
          const int64_t c0 = (oc / opg) * cpg;  // first input channel of oc's group
          T acc = b ? b[oc] : T(0);
          for (int64_t ky = 0; ky < g.kh; ++ky)
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t iy = oy * g.sh - g.ph + ky, ix = ox * g.sw - g.pw + kx;
              if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
              for (int64_t ci = 0; ci < cpg; ++ci)
                acc += x[((n * g.h + iy) * g.w + ix) * g.c + c0 + ci] *
                       w[((oc * g.kh + ky) * g.kw + kx) * cpg + ci];
            }
          y[((n * g.out_h + oy) * g.out_w + ox) * g.out_c + oc] = acc;
        }
}

template <typename T>
void conv2d_backward_data_naive(const ConvGeometry& g, const T* dy, const T* w, T* dx, bool accumulate) {
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group();
  if (!accumulate) std::fill(dx, dx + g.n * g.h * g.w * g.c, T(0));
  // The forward loop nest, scattering dy back along every product it formed.
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < g.out_h; ++oy)
      for (int64_t ox = 0; ox < g.out_w; ++ox)
        for (int64_t oc = 0; oc < g.out_c; ++oc) {
          const int64_t c0 = (oc / opg) * cpg;
          const T d = dy[((n * g.out_h + oy) * g.out_w + ox) * g.out_c + oc];
          for (int64_t ky = 0; ky < g.kh; ++ky)
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t iy = oy * g.sh - g.ph + ky, ix = ox * g.sw - g.pw + kx;
              if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
              for (int64_t ci = 0; ci < cpg; ++ci)
                dx[((n * g.h + iy) * g.w + ix) * g.c + c0 + ci] +=
                    d * w[((oc * g.kh + ky) * g.kw + kx) * cpg + ci];
            }
        }
}

template <typename T>
void conv2d_backward_weight_naive(const ConvGeometry& g, const T* dy, const T* x, T* dw, T* db,
                                  bool accumulate_dw, bool accumulate_db) {
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group();
  if (dw && !accumulate_dw) std::fill(dw, dw + g.out_c * g.kh * g.kw * cpg, T(0));
  if (db && !accumulate_db) std::fill(db, db + g.out_c, T(0));
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t oy = 0; oy < g.out_h; ++oy)
      for (int64_t ox = 0; ox < g.out_w; ++ox)
        for (int64_t oc = 0; oc < g.out_c; ++oc) {
          const int64_t c0 = (oc / opg) * cpg;
          const T d = dy[((n * g.out_h + oy) * g.out_w + ox) * g.out_c + oc];
          if (db) db[oc] += d;
          if (!dw) continue;
          for (int64_t ky = 0; ky < g.kh; ++ky)
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t iy = oy * g.sh - g.ph + ky, ix = ox * g.sw - g.pw + kx;
              if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
              for (int64_t ci = 0; ci < cpg; ++ci)
                dw[((oc * g.kh + ky) * g.kw + kx) * cpg + ci] +=
                    d * x[((n * g.h + iy) * g.w + ix) * g.c + c0 + ci];
            }
        }
}

template void conv2d_forward_naive<float>(const ConvGeometry&, const float*, const float*,
                                          const float*, float*);
template void conv2d_forward_naive<double>(const ConvGeometry&, const double*, const double*,
                                           const double*, double*);
template void conv2d_backward_data_naive<float>(const ConvGeometry&, const float*, const float*,
                                                float*, bool);
template void conv2d_backward_data_naive<double>(const ConvGeometry&, const double*,
                                                 const double*, double*, bool);
template void conv2d_backward_weight_naive<float>(const ConvGeometry&, const float*, const float*,
                                                  float*, float*, bool, bool);
template void conv2d_backward_weight_naive<double>(const ConvGeometry&, const double*,
                                                   const double*, double*, double*, bool, bool);

// ---------------------------------------------------------------------------------------------
// Geometry of a kernel call. Each direction finds x's and w's shapes in different slots:
//   forward          in {x, w, b?}  out {y}
//   backward data    in {dy, w}     out {dx}
//   backward weight  in {dy, x}     out {dw?, db?}   (w's shape follows from dy, x and attrs, so
//                                                     it is known even when dw is null)

namespace {

Shape weight_shape_for_backward_weight(const Shape& dy, const Shape& x, const ConvAttrs& a) {
  return Shape{dy.c(), a.kernel_h, a.kernel_w, a.groups > 0 ? x.c() / a.groups : 0};
}

ConvGeometry forward_geometry(const KernelCall& call) {
  ConvGeometry g = conv2d_geometry(call.in_shape[0], call.in_shape[1], call.attrs->conv);
  ET_CHECK(call.out_shape[0] == (Shape{g.n, g.out_h, g.out_w, g.out_c}));
  return g;
}

ConvGeometry backward_data_geometry(const KernelCall& call) {
  ConvGeometry g = conv2d_geometry(call.out_shape[0], call.in_shape[1], call.attrs->conv);
  ET_CHECK(call.in_shape[0] == (Shape{g.n, g.out_h, g.out_w, g.out_c}));
  return g;
}

ConvGeometry backward_weight_geometry(const KernelCall& call) {
  const Shape& dy = call.in_shape[0];
  const Shape& x = call.in_shape[1];
  ConvGeometry g = conv2d_geometry(x, weight_shape_for_backward_weight(dy, x, call.attrs->conv),
                                   call.attrs->conv);
  ET_CHECK(dy == (Shape{g.n, g.out_h, g.out_w, g.out_c}));
  return g;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Reference kernels in the KernelCall convention (float).

void conv2d_forward_reference(const KernelCall& call) {
  const ConvGeometry g = forward_geometry(call);
  float* y = call.out_f(0);
  conv2d_forward_naive<float>(g, call.in_f(0), call.in_f(1), call.in_f(2), y);
  if (!call.attrs->conv_norm) return;
  // The fused batch norm, written out: eval mode, running statistics, then the activation.
  const float* gamma = call.in_f(3);
  const float* beta = call.in_f(4);
  const float* mean = call.in_f(5);
  const float* var = call.in_f(6);
  const float lo = fused_activation_low(call.attrs->activation), hi = fused_activation_high(call.attrs->activation);
  const int64_t rows = g.n * g.out_h * g.out_w;
  for (int64_t k = 0; k < g.out_c; ++k) {
    const float scale = batch_norm_eval_scale(gamma[k], var[k], call.attrs->norm.eps);
    for (int64_t r = 0; r < rows; ++r) {
      float& v = y[r * g.out_c + k];
      v = std::min(std::max((v - mean[k]) * scale + beta[k], lo), hi);
    }
  }
}

void conv2d_backward_data_reference(const KernelCall& call) {
  if (call.out_f(0) == nullptr) return;
  const ConvGeometry g = backward_data_geometry(call);
  conv2d_backward_data_naive<float>(g, call.in_f(0), call.in_f(1), call.out_f(0),
                                    call.attrs->accumulates(0));
}

void conv2d_backward_weight_reference(const KernelCall& call) {
  const ConvGeometry g = backward_weight_geometry(call);
  conv2d_backward_weight_naive<float>(g, call.in_f(0), call.in_f(1), call.out_f(0), call.out_f(1),
                                      call.attrs->accumulates(0), call.attrs->accumulates(1));
}

// ---------------------------------------------------------------------------------------------
// Fast kernels.

namespace {

enum class ConvPath { kDepthwise, kPointwise, kIm2col };

ConvPath conv_path(const ConvGeometry& g) {
  // Depthwise first: a 1x1 depthwise conv is also "pointwise", but C GEMMs of width 1 would
  // be absurd.
  if (is_depthwise(g)) return ConvPath::kDepthwise;
  if (g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0)
    return ConvPath::kPointwise;
  return ConvPath::kIm2col;
}

// Floats of workspace each direction needs: depthwise keeps a channel-contiguous copy of the
// weights or the weight gradient's partial sums (conv2d_depthwise.h), im2col keeps columns for a
// chunk of images (see conv2d_im2col.cc).
int64_t workspace_floats(const ConvGeometry& g) {
  switch (conv_path(g)) {
    case ConvPath::kDepthwise: return depthwise_workspace_floats(g);
    case ConvPath::kPointwise: return 0;
    case ConvPath::kIm2col: return im2col_workspace_floats(g);
  }
  return 0;
}

float* workspace_for(const KernelCall& call, const ConvGeometry& g) {
  ET_CHECK(call.workspace_bytes >= static_cast<size_t>(workspace_floats(g)) * sizeof(float));
  return static_cast<float*>(call.workspace);
}

inline void add_to(float* __restrict acc, const float* __restrict a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += a[i];
}


// y[m][:] = b for every row (or zero when b is null), so the GEMM can run with beta = 1 and add
// into it. OpenBLAS clears C in a separate pass when beta = 0, so prefilling costs nothing extra.
void fill_rows_with_bias(const Parallel& par, float* y, int64_t rows, int64_t cols, const float* b) {
  par.for_each(rows, min_chunk_for(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* __restrict row = y + r * cols;
      for (int64_t c = 0; c < cols; ++c) row[c] = b[c];
    }
  });
}

// db[c] (+)= sum over rows of dy[r][c]. Parallel over blocks of 16 channels so that each thread
// owns its part of db and no partial sums need merging.
constexpr int64_t kChannelBlock = 16;

void bias_gradient(const Parallel& par, const float* dy, int64_t rows, int64_t cols, float* db,
                   bool accumulate) {
  const int64_t blocks = (cols + kChannelBlock - 1) / kChannelBlock;
  par.for_each(blocks, min_chunk_for(rows * kChannelBlock), [&](int64_t b0, int64_t b1) {
    const int64_t c0 = b0 * kChannelBlock, c1 = std::min(cols, b1 * kChannelBlock);
    if (!accumulate) std::fill(db + c0, db + c1, 0.0f);
    for (int64_t r = 0; r < rows; ++r) add_to(db + c0, dy + r * cols + c0, c1 - c0);
  });
}

}  // namespace

void ConvNormEpilogue::apply_rows(float* y, int64_t rows, int64_t channels) const {
  const float* __restrict mu = mean;
  const float* __restrict sc = scale;
  const float* __restrict be = beta;
  for (int64_t r = 0; r < rows; ++r) {
    float* __restrict yr = y + r * channels;
    for (int64_t k = 0; k < channels; ++k) yr[k] = std::min(std::max((yr[k] - mu[k]) * sc[k] + be[k], lo), hi);
  }
}

namespace {

// The fused batch norm's per-channel scale lives in front of the conv's own workspace.
int64_t epilogue_floats(const Attrs& a, int64_t out_c) { return a.conv_norm ? (out_c + 15) / 16 * 16 : 0; }

// The epilogue of a conv_norm call: inputs 3..6 are gamma, beta, running mean, running var;
// the scale is computed as the batch-norm kernel computes it (ops/batch_norm.cc).
ConvNormEpilogue make_epilogue(const KernelCall& call, int64_t out_c, float* scale) {
  const float* gamma = call.in_f(3);
  const float* running_var = call.in_f(6);
  for (int64_t k = 0; k < out_c; ++k) scale[k] = batch_norm_eval_scale(gamma[k], running_var[k], call.attrs->norm.eps);
  ConvNormEpilogue e;
  e.mean = call.in_f(5);
  e.scale = scale;
  e.beta = call.in_f(4);
  e.lo = fused_activation_low(call.attrs->activation);
  e.hi = fused_activation_high(call.attrs->activation);
  return e;
}

// The GEMM paths write the whole output first; the epilogue then runs over it in parallel.
void normalise_all(const Parallel& par, const ConvNormEpilogue& e, float* y, int64_t rows, int64_t channels) {
  par.for_each(rows, min_chunk_for(channels), [&](int64_t r0, int64_t r1) {
    e.apply_rows(y + r0 * channels, r1 - r0, channels);
  });
}

}  // namespace

ConvKernelPath conv2d_kernel_path(const ConvGeometry& g, ConvDirection d) {
  // The one order of decisions: the three kernels below dispatch on it.
  const ConvPath path = conv_path(g);
  if (d == ConvDirection::kBackwardWeight && path == ConvPath::kDepthwise) return ConvKernelPath::kDepthwise;
  if (int m = d == ConvDirection::kBackwardWeight ? winograd_weight_tile(g) : winograd_tile(g)) {
    if (d == ConvDirection::kBackwardWeight) m = winograd_backward_weight_tile(g, m);
    return m == 2 ? ConvKernelPath::kWinogradF2 : ConvKernelPath::kWinogradF4;
  }
  if (path == ConvPath::kDepthwise) return ConvKernelPath::kDepthwise;
  if (d == ConvDirection::kForward && conv2d_direct_forward_applies(g)) return ConvKernelPath::kDirect;
  if (d == ConvDirection::kBackwardWeight && conv2d_direct_backward_weight_applies(g)) return ConvKernelPath::kDirect;
  if (path == ConvPath::kPointwise) return ConvKernelPath::kPointwise;
  switch (im2col_plan(g)) {
    case TapPruning::kGlobal: return ConvKernelPath::kIm2colGlobal;
    case TapPruning::kClasses: return ConvKernelPath::kIm2colClasses;
    default: return ConvKernelPath::kIm2colPlain;
  }
}

void conv2d_forward(const KernelCall& call) {
  const ConvGeometry g = forward_geometry(call);
  const float* x = call.in_f(0);
  const float* w = call.in_f(1);
  const float* b = call.in_f(2);
  float* y = call.out_f(0);
  // A fused batch norm takes the front of the workspace; the path gets the rest.
  KernelCall path_call = call;
  ConvNormEpilogue epilogue_storage;
  const ConvNormEpilogue* epilogue = nullptr;
  if (call.attrs->conv_norm) {
    const int64_t front = epilogue_floats(*call.attrs, g.out_c);
    ET_CHECK(call.workspace_bytes >= static_cast<size_t>(front) * sizeof(float));
    epilogue_storage = make_epilogue(call, g.out_c, static_cast<float*>(call.workspace));
    epilogue = &epilogue_storage;
    path_call.workspace = static_cast<float*>(call.workspace) + front;
    path_call.workspace_bytes = call.workspace_bytes - static_cast<size_t>(front) * sizeof(float);
  }
  const ConvKernelPath kernel = conv2d_kernel_path(g, ConvDirection::kForward);
  switch (kernel) {
    case ConvKernelPath::kWinogradF2:
    case ConvKernelPath::kWinogradF4:
      return winograd_forward(call.parallel, g, kernel == ConvKernelPath::kWinogradF2 ? 2 : 4, x, w, b, y,
                              path_call.workspace, path_call.workspace_bytes, epilogue);
    case ConvKernelPath::kDepthwise:
      return depthwise_forward(call.parallel, g, x, w, b, y, workspace_for(path_call, g), epilogue);
    case ConvKernelPath::kDirect:
      return conv2d_direct_forward(call.parallel, g, x, w, b, y, static_cast<float*>(path_call.workspace),
                                   epilogue);
    default:
      break;  // the GEMM paths below
  }

  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group();
  const int64_t kg = g.kh * g.kw * cpg;  // length of one weight row (one output channel)
  const int64_t pixels = g.out_h * g.out_w;
  if (b) fill_rows_with_bias(call.parallel, y, g.n * pixels, g.out_c, b);
  const float beta = b ? 1.0f : 0.0f;

  if (kernel == ConvKernelPath::kPointwise) {
    // Y[:, group g's outputs] = X[:, group g's inputs] * W_g^T over all N*H*W rows.
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm(call.parallel, false, true, g.n * pixels, opg, cpg, 1.0f,
                  x + gi * cpg, g.c, w + gi * opg * kg, kg, beta, y + gi * opg, g.out_c);
  } else {
    im2col_forward(path_call, g, x, w, beta, y);
  }
  if (epilogue) normalise_all(call.parallel, *epilogue, y, g.n * pixels, g.out_c);
}

void conv2d_backward_data(const KernelCall& call) {
  float* dx = call.out_f(0);
  if (dx == nullptr) return;
  const ConvGeometry g = backward_data_geometry(call);
  const float* dy = call.in_f(0);
  const float* w = call.in_f(1);
  const bool accumulate = call.attrs->accumulates(0);
  const ConvKernelPath kernel = conv2d_kernel_path(g, ConvDirection::kBackwardData);
  switch (kernel) {
    case ConvKernelPath::kWinogradF2:
    case ConvKernelPath::kWinogradF4:
      return winograd_backward_data(call.parallel, g, kernel == ConvKernelPath::kWinogradF2 ? 2 : 4, dy, w, dx,
                                    accumulate, call.workspace, call.workspace_bytes);
    case ConvKernelPath::kDepthwise:
      return depthwise_backward_data(call.parallel, g, dy, w, dx, accumulate, workspace_for(call, g));
    default:
      break;  // the GEMM paths below
  }

  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group();
  const int64_t kg = g.kh * g.kw * cpg;
  const int64_t pixels = g.out_h * g.out_w;
  if (kernel == ConvKernelPath::kPointwise) {
    // dX[:, group g's inputs] (+)= dY[:, group g's outputs] * W_g over all N*H*W rows.
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm(call.parallel, false, false, g.n * pixels, cpg, opg, 1.0f,
                  dy + gi * opg, g.out_c, w + gi * opg * kg, kg, accumulate ? 1.0f : 0.0f,
                  dx + gi * cpg, g.c);
    return;
  }
  im2col_backward_data(call, g, dy, w, dx, accumulate);
}

void conv2d_backward_weight(const KernelCall& call) {
  float* dw = call.out_f(0);
  float* db = call.out_f(1);
  if (dw == nullptr && db == nullptr) return;
  const ConvGeometry g = backward_weight_geometry(call);
  const float* dy = call.in_f(0);
  const float* x = call.in_f(1);
  const bool acc_dw = call.attrs->accumulates(0), acc_db = call.attrs->accumulates(1);
  const ConvKernelPath kernel = conv2d_kernel_path(g, ConvDirection::kBackwardWeight);
  if (kernel == ConvKernelPath::kDepthwise)
    return depthwise_backward_weight(call.parallel, g, dy, x, dw, db, acc_dw, acc_db, workspace_for(call, g));

  const int64_t pixels = g.out_h * g.out_w;
  if (db) bias_gradient(call.parallel, dy, g.n * pixels, g.out_c, db, acc_db);
  if (dw == nullptr) return;
  switch (kernel) {
    case ConvKernelPath::kWinogradF2:
    case ConvKernelPath::kWinogradF4:
      // The kernel takes winograd_weight_tile's tile and picks its own plan (winograd_backward_weight_tile).
      return winograd_backward_weight(call.parallel, g, winograd_weight_tile(g), dy, x, dw, acc_dw, call.workspace,
                                      call.workspace_bytes);
    case ConvKernelPath::kDirect:
      ET_CHECK(call.workspace_bytes >= static_cast<size_t>(conv2d_direct_backward_weight_workspace_floats(g)) * sizeof(float));
      return conv2d_direct_backward_weight(call.parallel, g, dy, x, dw, acc_dw, static_cast<float*>(call.workspace));
    default:
      break;  // the GEMM paths below
  }
  const int64_t cpg = g.c_per_group(), opg = g.out_c_per_group();
  const int64_t kg = g.kh * g.kw * cpg;
  if (kernel == ConvKernelPath::kPointwise) {
    // dW_g (+)= dY[:, group g's outputs]^T * X[:, group g's inputs] over all N*H*W rows.
    for (int64_t gi = 0; gi < g.groups; ++gi)
      gemm(call.parallel, true, false, opg, cpg, g.n * pixels, 1.0f,
                  dy + gi * opg, g.out_c, x + gi * cpg, g.c, acc_dw ? 1.0f : 0.0f,
                  dw + gi * opg * kg, kg);
    return;
  }
  im2col_backward_weight(call, g, dy, x, dw, acc_dw);
}

// ---------------------------------------------------------------------------------------------
// Workspace rules. Shapes are validated at graph build; an invalid one here needs no workspace
// (the kernel never runs on it).

namespace {
size_t workspace_bytes_for(const Shape& x, const Shape& w, const ConvAttrs& a) {
  if (!conv2d_output_shape(x, w, a).is_ok()) return 0;
  return static_cast<size_t>(workspace_floats(conv2d_geometry(x, w, a))) * sizeof(float);
}

// Winograd's workspace for one direction, or -1 when the conv does not use it.
enum class Direction { kForward, kData, kWeight };
int64_t winograd_bytes_for(const Shape& x, const Shape& w, const ConvAttrs& a, Direction d) {
  if (!conv2d_output_shape(x, w, a).is_ok()) return -1;
  const ConvGeometry g = conv2d_geometry(x, w, a);
  const int m = d == Direction::kWeight ? winograd_weight_tile(g) : winograd_tile(g);
  if (m == 0) return -1;
  return static_cast<int64_t>(d == Direction::kForward ? winograd_forward_workspace_bytes(g, m)
                              : d == Direction::kData  ? winograd_backward_data_workspace_bytes(g, m)
                                                       : winograd_backward_weight_workspace_bytes(g, m));
}
}  // namespace

namespace {
size_t path_forward_workspace(const Attrs& a, const Shape* in) {
  if (int64_t bytes = winograd_bytes_for(in[0], in[1], a.conv, Direction::kForward); bytes >= 0) return bytes;
  const ConvGeometry g = conv2d_geometry(in[0], in[1], a.conv);
  if (conv_path(g) != ConvPath::kDepthwise && conv2d_direct_forward_applies(g))
    return static_cast<size_t>(conv2d_direct_forward_workspace_floats(g)) * sizeof(float);
  return workspace_bytes_for(in[0], in[1], a.conv);
}
}  // namespace

size_t conv2d_forward_workspace(const Attrs& a, const Shape* in, int n_in, const Shape*, int) {
  if (n_in < 2) return 0;
  const size_t front = in[1].rank == 4 ? static_cast<size_t>(epilogue_floats(a, in[1][0])) * sizeof(float) : 0;
  return front + path_forward_workspace(a, in);
}

size_t conv2d_backward_data_workspace(const Attrs& a, const Shape* in, int n_in, const Shape* out,
                                      int n_out) {
  if (n_in < 2 || n_out < 1) return 0;
  if (int64_t bytes = winograd_bytes_for(out[0], in[1], a.conv, Direction::kData); bytes >= 0) return bytes;
  return workspace_bytes_for(out[0], in[1], a.conv);
}

size_t conv2d_backward_weight_workspace(const Attrs& a, const Shape* in, int n_in, const Shape*,
                                        int) {
  if (n_in < 2 || in[0].rank != 4 || in[1].rank != 4) return 0;
  const Shape w = weight_shape_for_backward_weight(in[0], in[1], a.conv);
  if (int64_t bytes = winograd_bytes_for(in[1], w, a.conv, Direction::kWeight); bytes >= 0) return bytes;
  if (conv2d_output_shape(in[1], w, a.conv).is_ok()) {
    const ConvGeometry g = conv2d_geometry(in[1], w, a.conv);
    if (conv_path(g) != ConvPath::kDepthwise && conv2d_direct_backward_weight_applies(g))
      return static_cast<size_t>(conv2d_direct_backward_weight_workspace_floats(g)) * sizeof(float);
  }
  return workspace_bytes_for(in[1], w, a.conv);
}

}  // namespace edgetrain
